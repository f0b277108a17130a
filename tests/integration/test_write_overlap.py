"""Write-back's overlapping batches (bridge/write_batch.py) against a real asyncua server in
this process and a real Mosquitto: the next batch's Read goes out while the previous batch's
Write is at the server, yet two writes to one node keep their order (the second is read and
written only after the first Write is answered, and its audit line shows the value the first
wrote), and a batch whose Read the server refuses fails its own requests only.

The bridge's session is watched: each Read and Write it sends is noted, and the first Write
after :meth:`Watched.hold_next_write` is held back until the test releases it, so that the
test decides when a batch is "in flight"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback

from harness.mosquitto import MosquittoBroker
from harness.mqtt import adapter_options
from harness.processes import LOOPBACK, free_port
from harness.write_back import COMMANDS, Requester, serving_requester
from opcua_mqtt.adapters.mqtt import MqttSession
from opcua_mqtt.adapters.opcua import ConnectionOptions, connect
from opcua_mqtt.adapters.opcua.session import OpcUaSession, open_session
from opcua_mqtt.bridge.write_back import WriteBack, WriteBackSettings
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

NS = "urn:opcua-mqtt:test:overlap"
A, B = f"nsu={NS};s=A", f"nsu={NS};s=B"
WAIT_S = 10.0  # a guard against a hang, not a measure


class Watched:
    """The bridge's session, its Reads and Writes noted in ``log`` as ("read" | "write" |
    "read answered" | "write answered", {node: value written or None}) when sent and
    answered; everything else is the session's own."""

    def __init__(self, session: OpcUaSession) -> None:
        self._session = session
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.noted = asyncio.Event()
        self.holding = asyncio.Event()  # a Write is held back
        self._released = asyncio.Event()
        self._hold = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def hold_next_write(self) -> None:
        self._hold = True
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def read(self, items: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        nodes = {i.NodeId.Identifier: None for i in items}
        self._note("read", nodes)
        try:
            return await self._session.read(items)  # type: ignore[no-any-return]
        finally:
            self._note("read answered", nodes)

    async def write(self, values: Sequence[ua.WriteValue]) -> list[ua.StatusCode]:
        written = {v.NodeId.Identifier: v.Value.Value.Value for v in values}
        if self._hold:
            self._hold = False
            self.holding.set()
            await self._released.wait()
        self._note("write", written)
        try:
            return await self._session.write(values)  # type: ignore[no-any-return]
        finally:
            self._note("write answered", written)

    def _note(self, what: str, nodes: dict[str, Any]) -> None:
        self.log.append((what, nodes))
        self.noted.set()

    async def until(self, what: str, node: str) -> None:
        """Until the session sent (or had answered) ``what`` for ``node`` (an identifier)."""
        while not any(w == what and node in nodes for w, nodes in self.log):
            self.noted.clear()
            await self.noted.wait()

    def index(self, what: str, node: str, value: Any = None) -> int:
        """Where in the log ``what`` happened first for ``node`` (written as ``value``)."""
        for k, (w, nodes) in enumerate(self.log):
            if w == what and node in nodes and nodes[node] == value:
                return k
        raise AssertionError(f"no {what} of {node}={value!r} in {self.log}")


@dataclass
class Rig:
    server: Server
    watched: Watched
    requester: Requester
    refuse_reads_of_b: bool = False

    async def held(self, node: str) -> float:
        value = await self.server.get_node(f"ns=2;s={node}").read_value()
        return float(value)

    def ask(self, node: str, value: float) -> asyncio.Future[Any]:
        request = {"Targets": [{"NodeId": node, "Value": value}]}
        return asyncio.ensure_future(self.requester.ask(request, timeout=WAIT_S))


async def _server(port: int) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://{LOOPBACK}:{port}/overlap")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NS)
    assert ns == 2
    for name in ("A", "B"):
        node = await server.nodes.objects.add_variable(ua.NodeId(name, ns), name, 0.0)
        await node.set_writable()
    await server.start()
    return server


@contextlib.asynccontextmanager
async def rig(broker: MosquittoBroker) -> AsyncIterator[Rig]:
    """The server, the bridge's write-back on a watched session to it, and a requester."""
    port = free_port()
    server = await _server(port)
    options = ConnectionOptions(f"opc.tcp://{LOOPBACK}:{port}/overlap", trust_dir=None)
    try:
        async with open_session(lambda: connect(options)) as session:
            watched = Watched(session)
            mqtt = MqttSession(adapter_options(broker, "wb-overlap"))
            write_back = WriteBack(
                WriteBackSettings(allowed=frozenset({canonical_node_id(A), canonical_node_id(B)})),
                mqtt=mqtt,
                topic=COMMANDS,
                fields={},
                session=lambda _node, _field: watched,  # type: ignore[arg-type,return-value]
            )
            write_back.attach()
            await mqtt.start(wait=True)
            try:
                async with serving_requester(broker) as requester:
                    the_rig = Rig(server, watched, requester)

                    def refuse(event: ServerItemCallback, _dispatcher: Any) -> None:
                        nodes = event.request_params.NodesToRead
                        if the_rig.refuse_reads_of_b and any(
                            r.NodeId.Identifier == "B" for r in nodes
                        ):
                            raise ua.UaStatusCodeError(ua.StatusCodes.BadServerTooBusy)

                    server.subscribe_server_callback(CallbackType.PreRead, refuse)
                    yield the_rig
            finally:
                write_back.close()
                await mqtt.stop(drain_s=1)
    finally:
        await server.stop()


async def test_writes_to_one_node_keep_their_order_while_batches_overlap(
    shared_mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opcua_mqtt.bridge.write_back")
    async with rig(shared_mosquitto_tls) as r:
        w = r.watched
        w.hold_next_write()
        first = r.ask(A, 1.5)
        await asyncio.wait_for(w.holding.wait(), WAIT_S)  # its batch is past its Read
        other, again = r.ask(B, 2.5), r.ask(A, 3.5)
        # the next batch's Read goes out while the first batch's Write is not answered
        await asyncio.wait_for(w.until("read", "B"), WAIT_S)
        assert not first.done()
        w.release()
        answers = await asyncio.gather(first, other, again)
        assert [a["Result"]["Symbol"] for a in answers] == ["Good"] * 3, answers
        assert (await r.held("A"), await r.held("B")) == (3.5, 2.5)

        # the second write to A was read and written only after the first one was answered
        first_answered = w.index("write answered", "A", 1.5)
        reads_of_a = [k for k, (what, nodes) in enumerate(w.log) if what == "read" and "A" in nodes]
        assert len(reads_of_a) == 2 and reads_of_a[0] < first_answered < reads_of_a[1]
        assert first_answered < w.index("write", "A", 3.5)
        assert w.index("read", "B") < first_answered  # the overlap itself
    # the audit lines' previous values chain: each is what the write before it wrote
    audit = [m.getMessage() for m in caplog.records if " wrote " in m.getMessage()]
    wrote_a = [m.rsplit(": ", 2)[1:] for m in audit if repr(A) in m]
    assert wrote_a == [["0.0 -> 1.5", "Good"], ["1.5 -> 3.5", "Good"]]


async def test_a_batch_whose_read_fails_leaves_the_batch_in_flight_be(
    shared_mosquitto_tls: MosquittoBroker,
) -> None:
    async with rig(shared_mosquitto_tls) as r:
        w = r.watched
        w.hold_next_write()
        first = r.ask(A, 5.5)
        await asyncio.wait_for(w.holding.wait(), WAIT_S)
        r.refuse_reads_of_b = True
        refused = await r.ask(B, 6.5)  # answered while the first batch's Write is held
        assert refused["Result"]["Symbol"] == "BadServerTooBusy", refused
        assert "unknown" in refused["Message"]
        assert not first.done()
        w.release()
        assert (await first)["Result"]["Symbol"] == "Good"
        r.refuse_reads_of_b = False
        assert (await r.ask(B, 7.5))["Result"]["Symbol"] == "Good"  # the queue goes on
        assert (await r.held("A"), await r.held("B")) == (5.5, 7.5)

"""Write-back from the requester's side, shared by the end-to-end tests and the benchmark: an
MQTT client that sends write requests and waits for the answers, values to write per built-in
type, and independent reads of the OPC UA server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from harness.bridge import make_certs, write_config
from harness.mosquitto import MosquittoBroker
from harness.mqtt import adapter_options
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from harness.processes import Process
from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.uajson.codec import JsonCodec

PUBLISHER = "wb-bridge"  # the bridges' publisher_id
COMMANDS = f"opcua/json/cmd/{PUBLISHER}/write"
REPLIES = f"opcua/json/reply/{PUBLISHER}/test"  # below the bridge's default reply prefix

#: A target every test bridge refuses: its writer W publishes a Double field "Double".
PROBE = {"Writer": "W", "Field": "Double", "Value": "not a number"}

#: Two values per writable built-in type, as a client would send them (plain JSON or typed).
CANDIDATES: dict[str, tuple[Any, Any]] = {
    "Boolean": (True, False),
    "SByte": (-128, 127),
    "Byte": (0, 255),
    "Int16": (-32768, 32767),
    "UInt16": (0, 65535),
    "Int32": (-2147483648, 2147483647),
    "UInt32": (0, 4294967295),
    "Int64": ("-9223372036854775808", "9223372036854775807"),
    "UInt64": ("0", "18446744073709551615"),
    "Float": (1.5, -2.25),
    "Double": (3.25, -1e300),
    "String": ("written ✓", "other text"),
    "DateTime": ("2030-01-02T03:04:05.123Z", "2031-01-01T00:00:00Z"),
    "Guid": ("72962B91-FA75-4AE6-8D28-B404DC7DAF63", "00000000-0000-0000-0000-000000000001"),
    "ByteString": ("AAEC", "/w=="),
    "NodeId": ({"UaType": 17, "Value": "i=2255"}, {"UaType": 17, "Value": "i=85"}),
    "QualifiedName": ({"UaType": 20, "Value": "Written"}, {"UaType": 20, "Value": "Other"}),
    "LocalizedText": (
        {"UaType": 21, "Value": {"Locale": "en", "Text": "hi"}},
        {"UaType": 21, "Value": {"Locale": "de", "Text": "hallo"}},
    ),
}


def writable_scalars(server: OpcUaTestServer) -> dict[str, dict[str, Any]]:
    """One writable scalar per type of the asyncua test server, from the first machine's
    Parameters folder (its manifest entries by built-in type name)."""
    out: dict[str, dict[str, Any]] = {}
    for v in server.variables:
        if v["writable"] and v["value_rank"] == -1 and ".Parameters." in v["nodeid"]:
            out.setdefault(v["builtin_type"], v)
    return out


@dataclass(frozen=True)
class WriteBackNodes:
    """The asyncua test server's nodes behind a write-back bridge's writer W: a writable scalar
    per type of :data:`CANDIDATES`, a read-only Double and a writable Double that the allow list
    leaves out (manifest entries)."""

    writable: dict[str, dict[str, Any]]
    read_only: dict[str, Any]
    not_allowed: dict[str, Any]

    #: What a write-back bridge allows: every candidate field and ReadOnly (which the server
    #: refuses, not the bridge); not NotAllowed.
    ALLOW = (*(f"G/W/{t}" for t in CANDIDATES), "G/W/ReadOnly")

    @classmethod
    def of(cls, server: OpcUaTestServer) -> WriteBackNodes:
        writable = writable_scalars(server)
        assert set(CANDIDATES) <= set(writable)
        doubles = [
            v for v in server.variables if v["builtin_type"] == "Double" and v["value_rank"] == -1
        ]
        read_only = next(v for v in doubles if not v["writable"])
        not_allowed = next(
            v for v in doubles if v["writable"] and v["nodeid"] != writable["Double"]["nodeid"]
        )
        return cls(writable, read_only, not_allowed)

    def fields(self) -> list[dict[str, Any]]:
        """Writer W's fields: one per candidate type, named after it; ReadOnly; NotAllowed."""
        return [
            *(
                {"name": t, "node_id": self.writable[t]["nodeid"], "builtin_type": t}
                for t in CANDIDATES
            ),
            {"name": "ReadOnly", "node_id": self.read_only["nodeid"], "builtin_type": "Double"},
            {"name": "NotAllowed", "node_id": self.not_allowed["nodeid"], "builtin_type": "Double"},
        ]


def write_back_config(
    directory: Path,
    endpoint: str,
    broker: MosquittoBroker,
    fields: Sequence[Mapping[str, Any]],
    allow: Iterable[str],
    **limits: Any,
) -> Path:
    """``directory``/bridge.yaml of a bridge named :data:`PUBLISHER` whose writer W holds
    ``fields`` and that accepts writes to ``allow``; ``limits`` add to or override its
    write_back section (by default 1000 requests/s in bursts of 5000: no test runs into them).
    The metadata signing PKI is made in ``directory``/certs."""
    return write_config(
        directory / "bridge.yaml",
        endpoint=endpoint,
        broker=broker,
        signing_dir=make_certs(directory / "certs"),
        fields=fields,
        publisher_id=PUBLISHER,
        write_back={"enabled": True, "allow": list(allow), "rate_per_s": 1000, "burst": 5000}
        | limits,
    )


class Requester:
    """An MQTT client that sends write requests and collects the answers by RequestId."""

    def __init__(self, broker: MosquittoBroker, protocol: str = "5") -> None:
        self.v5 = protocol == "5"
        self.answers: dict[str, Any] = {}
        self.props: dict[str, Any] = {}
        self.arrived = asyncio.Event()
        self.session = MqttSession(
            adapter_options(broker, f"req-{uuid.uuid4().hex[:6]}", protocol=protocol)
        )
        self.session.subscribe(REPLIES, self._on_answer)

    def _on_answer(self, _topic: str, payload: bytes, props: dict[str, Any]) -> None:
        answer = json.loads(payload)
        self.answers[answer.get("RequestId") or f"anon-{len(self.answers)}"] = answer
        self.props[answer.get("RequestId") or ""] = props
        self.arrived.set()

    async def ask(
        self,
        request: dict[str, Any] | bytes,
        *,
        v5: bool | None = None,
        rid: str | None = None,
        timeout: float = 20,
    ) -> Any:
        """Publish ``request`` (a RequestId is added to a dict) and wait for its answer. With
        ``v5`` (by default when the session is MQTT 5) the reply topic and Correlation Data (the
        RequestId) travel as MQTT 5 properties; without, the request must say ``ReplyTo``."""
        v5 = self.v5 if v5 is None else v5
        if isinstance(request, dict):
            rid = request.setdefault("RequestId", str(uuid.uuid4()))
            payload = json.dumps(request).encode()
        else:
            payload = request
        props = {"response_topic": REPLIES, "correlation_data": (rid or "x").encode()} if v5 else {}
        before = len(self.answers)
        self.session.publish(Outgoing(COMMANDS, payload, qos=1, properties=props))

        async def wait() -> Any:
            while (rid not in self.answers) if rid else len(self.answers) == before:
                self.arrived.clear()
                await self.arrived.wait()
            return self.answers[rid] if rid else list(self.answers.values())[-1]

        return await asyncio.wait_for(wait(), timeout)

    async def until_served(self, bridge: Process | None = None, attempts: int = 100) -> None:
        """Wait until the bridge serves requests: it subscribes to its command topic once it is
        up, and it answers BadServerNotConnected until its OPC UA session is. It is asked to
        write :data:`PROBE`, which it refuses, so that waiting writes nothing. A ``bridge``
        process that exits meanwhile fails at once, with its output."""
        for _ in range(attempts):
            if bridge is not None and bridge.poll() is not None:
                raise AssertionError(
                    f"the bridge exited with {bridge.returncode}:\n{bridge.text()}"
                )
            try:
                answer = await self.ask({"Targets": [PROBE], "ReplyTo": REPLIES}, timeout=0.5)
            except TimeoutError:
                continue
            if answer["Result"].get("Symbol") != "BadServerNotConnected":
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the bridge did not serve write requests after {attempts} attempts")


@contextlib.asynccontextmanager
async def serving_requester(
    broker: MosquittoBroker, protocol: str = "5", *, bridge: Process | None = None
) -> AsyncIterator[Requester]:
    """A connected :class:`Requester` once the bridge serves requests (see ``until_served``)."""
    r = Requester(broker, protocol)
    await r.session.start(wait=True)
    try:
        await r.until_served(bridge)
        yield r
    finally:
        await r.session.stop(drain_s=1)


async def read_variant(endpoint: str, node_id: str) -> ua.Variant:
    """The node's value, read by a client of its own (not the bridge's session)."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        return (await client.get_node(parse_nodeid(node_id, ns)).read_data_value()).Value


async def call_control(server: OpcUaTestServer, method: str, *args: str) -> Any:
    """Call one of the test server's Control methods (harness/plant_control.py: they change
    the model at run time or count what clients wrote) with String arguments."""
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        control = client.get_node(parse_nodeid(server.manifest["control"]["object"], ns))
        target = parse_nodeid(server.manifest["control"][method], ns)
        return await control.call_method(
            target, *(ua.Variant(a, ua.VariantType.String) for a in args)
        )


async def server_count(server: OpcUaTestServer, method: str = "WriteCount") -> int:
    """The test server's own count of what clients wrote so far: the values (``WriteCount``)
    or the Write service calls that carried them (``WriteCalls``)."""
    return int(await call_control(server, method))


def check_response(answer: Any) -> None:
    """Fail unless ``answer`` is valid against the write-response schema."""
    errors = list(validator("write-response").iter_errors(answer))
    assert not errors, errors[0].message


def as_variant(codec: JsonCodec, value: Any, vt: ua.VariantType) -> ua.Variant:
    """What a request's ``Value`` (typed, or plain JSON for a node of type ``vt``) means."""
    if isinstance(value, dict) and "UaType" in value:
        return codec.decode_variant(value)
    return ua.Variant(codec.decode_value(value, vt), vt)


def pick_new_value(
    codec: JsonCodec, candidates: tuple[Any, Any], vt: ua.VariantType, current: ua.Variant
) -> tuple[Any, ua.Variant]:
    """The candidate that differs from the node's ``current`` value (so that a write that did
    nothing cannot pass), with the Variant it means. Compared as OPC UA JSON: asyncua reads an
    ExpandedNodeId back as a NodeId, for instance."""
    for choice in candidates:
        wanted = as_variant(codec, choice, vt)
        if codec.encode_variant(wanted) != codec.encode_variant(current):
            return choice, wanted
    raise AssertionError(f"both candidates equal the current value {current!r}")

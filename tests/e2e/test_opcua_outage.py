"""The OPC UA server goes away and comes back, with real processes: `opcua-mqtt run`, the
asyncua test server or the node-opcua plant server (stopped by PID, restarted on its port), a
Subscriber on a real Mosquitto over TLS. The fields turn Bad (BadServerNotConnected), the
ua-status goes Error while the server is away and Operational once the fields deliver again,
the values turn Good again, and each writer's SequenceNumbers go up by exactly one across the
outage (no reset, no duplicate). The bridge logs the outage as one WARNING and its end as one
INFO, with no traceback. The delays are printed for the notes, never asserted."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from harness.bridge import (
    BridgeProcess,
    BridgeProcesses,
    make_certs,
    simulated_fields,
    simulation_config,
    write_config,
)
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import (
    NodeOpcuaTestServer,
    OpcUaTestServer,
    ServerProcess,
    start_node_opcua_server,
    start_opcua_server,
)
from harness.processes import LOOPBACK, StartError, free_port
from harness.stall_proxy import StallProxy
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber
from tests.e2e.test_metrics import _readyz
from tests.e2e.test_run_cli import _secure_config, _subscriber

PUBLISHER = "e2e-bridge"
OUTAGE_S = 10


class Seen:
    """What a Subscriber received, stamped with time.monotonic() on arrival."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.datasets: list[tuple[float, ReceivedDataSet]] = []

    async def collect(self) -> None:
        async for ds in self.subscriber:
            self.datasets.append((time.monotonic(), ds))

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Poll ``check`` until it returns something truthy (a bound against a hang, not a
        measured figure)."""
        deadline = time.monotonic() + timeout
        while not (found := check()):
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout:g} s: {what}")
            await asyncio.sleep(0.05)
        return found

    def first(self, since: float, field: str, good: bool) -> float | None:
        """When ``field`` first arrived Good (or Bad) after ``since``."""
        for at, ds in self.datasets:
            value = ds.fields.get(field)
            if at >= since and value is not None and value.status.is_good() == good:
                return at
        return None

    def state(self) -> ua.PubSubState | None:
        return self.subscriber.publisher_state(PUBLISHER)


@contextlib.asynccontextmanager
async def _watching(broker: MosquittoBroker, ca: Path) -> AsyncIterator[Seen]:
    async with _subscriber(broker, ca) as sub:
        seen = Seen(sub)
        task = asyncio.create_task(seen.collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _sequences_are_unbroken(seen: Seen) -> int:
    """Every writer's SequenceNumbers go up by exactly one from message to message; the
    number of messages checked."""
    last: dict[int | None, int] = {}
    for _at, ds in seen.datasets:
        assert ds.sequence_number is not None
        before = last.get(ds.dataset_writer_id)
        if before is not None:
            assert ds.sequence_number == before + 1, (ds.dataset_writer_id, before, ds)
        last[ds.dataset_writer_id] = ds.sequence_number
    return len(seen.datasets)


async def _outage(
    bridge: BridgeProcess,
    seen: Seen,
    field: str,
    stop: Callable[[], None],
    restart: Callable[[], None],
    label: str,
) -> None:
    """Stop the server for OUTAGE_S, start it again, and check what the subscriber and the
    bridge's log show."""
    await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational")
    await seen.until(lambda: seen.first(0, field, good=True), f"a Good {field}")
    logged_before = len(bridge.records())

    stopped = time.monotonic()
    await asyncio.to_thread(stop)  # SIGTERM, and a wait until the process is gone
    bad = await seen.until(lambda: seen.first(stopped, field, good=False), f"a Bad {field}")
    bad_ds = next(ds for at, ds in seen.datasets if at == bad)
    assert bad_ds.fields[field].status.value == ua.StatusCodes.BadServerNotConnected
    await seen.until(lambda: seen.state() == ua.PubSubState.Error, "ua-status Error")
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
    assert seen.state() == ua.PubSubState.Error  # still away

    await asyncio.to_thread(restart)  # returns once the server listens
    back = time.monotonic()
    good = await seen.until(lambda: seen.first(back, field, good=True), f"{field} Good again")
    await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational again")
    await asyncio.sleep(1)  # a few messages after the return, for the sequence check
    checked = _sequences_are_unbroken(seen)

    records = bridge.records()[logged_before:]
    loud = [(r["level"], r["message"]) for r in records if r["level"] in ("warning", "error")]
    lines = [(r["level"], r["logger"], r["message"][:150]) for r in records]
    assert len(loud) == 1 and loud[0][0] == "warning", lines
    assert "OPC UA session on" in loud[0][1] and "lost (" in loud[0][1], loud
    assert not [r for r in records if "exception" in r]
    assert len([r for r in records if "up again after" in r["message"]]) == 1
    print(
        f"{label}: fields Bad {bad - stopped:.2f} s after the server stopped, Good "
        f"{good - back:.2f} s after it was back (outage {back - stopped:.1f} s, "
        f"{len(records)} log lines, {checked} DataSetMessages with unbroken sequence numbers)"
    )


@pytest.fixture
def restartable_opcua_server(
    small_opcua_server: OpcUaTestServer,
) -> Iterator[list[ServerProcess]]:
    """The small asyncua server, and whatever restarts it: every one is stopped at the end."""
    servers: list[ServerProcess] = [small_opcua_server]
    yield servers
    for server in servers:
        server.stop()


async def test_asyncua_server_stopped_and_restarted(
    tmp_path: Path,
    restartable_opcua_server: list[ServerProcess],
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    first = restartable_opcua_server[0]
    assert isinstance(first, OpcUaTestServer)
    config = write_config(
        tmp_path / "bridge.yaml",
        endpoint=first.endpoint,
        broker=mosquitto_tls,
        signing_dir=make_certs(tmp_path / "certs"),
        fields=simulated_fields(first, "Counter", "Sine"),
        status_interval_s=2,
    )
    bridge = bridges.start(config)

    def restart() -> None:
        restartable_opcua_server.append(
            start_opcua_server(
                first.workdir, variables=200, cert_dir=first.cert_dir, port=first.port
            )
        )

    async with _watching(mosquitto_tls, tmp_path / "certs" / "ca.pem") as seen:
        await _outage(bridge, seen, "Counter", first.stop, restart, "asyncua")


async def test_node_opcua_server_stopped_and_restarted(
    tmp_path: Path, mosquitto_tls: MosquittoBroker, bridges: BridgeProcesses
) -> None:
    servers: list[NodeOpcuaTestServer] = []
    try:
        try:
            servers.append(start_node_opcua_server(tmp_path / "plant", timeout=60))
        except StartError as e:
            pytest.fail(str(e), pytrace=False)
        first = servers[0]
        config = write_config(
            tmp_path / "bridge.yaml",
            endpoint=first.endpoint,
            broker=mosquitto_tls,
            signing_dir=make_certs(tmp_path / "certs"),
            fields=[
                {
                    "name": "BottleCount",
                    "node_id": first.nodeid("Plant.Line1.Filler.BottleCount"),
                    "builtin_type": "UInt32",
                },
                {
                    "name": "Pressure",
                    "node_id": first.nodeid("Plant.Utilities.Compressor.Pressure"),
                    "builtin_type": "Double",
                },
            ],
            status_interval_s=2,
        )
        bridge = bridges.start(config)

        def restart() -> None:
            servers.append(start_node_opcua_server(tmp_path / "plant", port=first.port))

        async with _watching(mosquitto_tls, tmp_path / "certs" / "ca.pem") as seen:
            await _outage(bridge, seen, "BottleCount", first.stop, restart, "node-opcua")
    finally:
        for server in servers:
            server.stop()


async def _logged(bridge: BridgeProcess, text: str, timeout: float = 60) -> float:
    """When (time.monotonic(), polled) a log line holding ``text`` first showed."""
    deadline = time.monotonic() + timeout
    while not any(text in r["message"] for r in bridge.records()):
        if time.monotonic() > deadline:
            pytest.fail(f"no log line with {text!r} within {timeout:g} s:\n{bridge.output()}")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def test_a_stalled_server_connection_is_dropped_and_a_new_session_made(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """A TCP proxy between bridge and server stops carrying traffic without closing anything:
    the keep-alive probe goes unanswered, the session is dropped (no goodbye waited for) and
    a new one made once the path carries again. Target: within 2 x keep-alive + 5 s."""
    server = shared_small_opcua_server
    keep_alive_s = 1
    async with StallProxy(LOOPBACK, server.port) as proxy:
        config = write_config(
            tmp_path / "bridge.yaml",
            endpoint=f"opc.tcp://{proxy.host}:{proxy.port}/opcua-mqtt/test",
            broker=mosquitto_tls,
            signing_dir=make_certs(tmp_path / "certs"),
            fields=simulated_fields(server, "Counter"),
            opcua={"keep_alive_s": keep_alive_s, "timeout_s": 3},
            status_interval_s=2,
        )
        bridge = bridges.start(config)
        async with _watching(mosquitto_tls, tmp_path / "certs" / "ca.pem") as seen:
            await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational")
            proxy.stall()
            stalled = time.monotonic()
            detected = await _logged(bridge, "lost (no answer to a keep-alive probe")
            proxy.resume()
            up = await _logged(bridge, "up again after")
            bad = await seen.until(lambda: seen.first(stalled, "Counter", good=False), "Bad")
            await seen.until(lambda: seen.first(up, "Counter", good=True), "Counter Good again")
            await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational")
            checked = _sequences_are_unbroken(seen)
        assert proxy.connections >= 2  # the new session went through the proxy too
    loud = [r["message"] for r in bridge.records() if r["level"] in ("warning", "error")]
    assert len(loud) == 1 and "stalled" in loud[0], loud
    print(
        f"stall detected after {detected - stalled:.1f} s, fields Bad after {bad - stalled:.1f} s, "
        f"new session up after {up - stalled:.1f} s (keep-alive {keep_alive_s} s, target "
        f"{2 * keep_alive_s + 5} s; {checked} DataSetMessages with unbroken sequence numbers)"
    )


def _fatal_config(
    tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, case: str
) -> Path:
    """A bridge configuration that cannot connect, for a reason retrying cannot fix."""
    trusted = tmp_path / "trusted-servers"
    trusted.mkdir()
    if case == "unknown host":
        return simulation_config(
            tmp_path, server, broker, endpoint="opc.tcp://no-such-host.invalid:4840/x"
        )
    if case == "user refused":
        shutil.copy(server.server_cert_path, trusted / "server.der")
        return _secure_config(tmp_path, server, broker, trusted, username=server.username)
    return _secure_config(tmp_path, server, broker, trusted)  # the server is not trusted


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown host", "does not resolve"),
        ("user refused", "the server refused user 'operator' (BadUserAccessDenied)"),
        ("server untrusted", "is not trusted"),
    ],
)
async def test_a_permanent_opcua_failure_is_an_error_in_readyz_and_exits_3(
    case: str,
    reason: str,
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = _fatal_config(tmp_path, shared_small_opcua_server, shared_mosquitto_tls, case)
    port = free_port()
    bridge = bridges.start(
        config, "--metrics-port", str(port), "--exit-on-fatal", "3", OPCUA_PASSWORD="wrong"
    )
    for _ in range(100):  # until the first attempt has failed (bounded)
        report = await _readyz(port, 503, timeout=20)
        if report["opcua"] != "disconnected":
            break
        await asyncio.sleep(0.1)
    assert "opcua" in report["down"]
    assert reason in report["opcua"], report
    code = await asyncio.to_thread(bridge.wait, 60)  # a guard against a hang, not a figure
    assert code == 3, bridge.output()
    records = bridge.records()
    errors = [r["message"] for r in records if r["level"] == "error"]
    # several attempts failed within the 3 s: one ERROR line (rate-limited), naming the cause
    assert len(errors) == 1 and reason in errors[0], errors
    assert not [r for r in records if r["logger"].endswith("outage") and r["level"] != "error"]
    said = [line for line in bridge.text().split("\n") if line.startswith("error: ")]
    assert len(said) == 1 and reason in said[0] and "--exit-on-fatal" in said[0], said

"""Status that cannot go stale, with real `opcua-mqtt run` processes, the small OPC UA test
server and a real Mosquitto over TLS: a live bridge republishes its ua-status (cyclic while
Operational, Part 14 §7.2.4.6.7 and §7.2.5.5.5) and ua-connection every period, each with an
MQTT 5 Message Expiry; it reports Error while its OPC UA server is away (Part 14 §6.2.1); and
the retained status of a bridge killed while the broker was down expires after the broker's
restart instead of claiming Operational, as does the last will of one killed while it was up."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asyncua import ua

from harness.bridge import BridgeProcesses, make_certs, simulated_fields, write_config
from harness.mosquitto import MosquittoBroker, run_broker
from harness.mqtt import MqttProbe, Received, adapter_options
from harness.opcua_servers import OpcUaTestServer
from harness.pki import Pki
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.metadata import StatusMessage, decode_status_message
from opcua_mqtt.subscriber import Subscriber
from tests.e2e.test_status_cli import _bridges_json, _status

PUBLISHER = "stale-check"


@pytest.fixture
def mosquitto_autosaving(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """TLS Mosquitto that writes its retained messages to disk every second, so a crash
    (SIGKILL) and restart keeps them; a clean stop would publish its clients' last wills."""
    workdir = tmp_path / "mosquitto-autosaving"
    extra = ("persistence true", f"persistence_location {workdir}/", "autosave_interval 1")
    yield from run_broker(mosquitto_executable, pki, workdir, mutual_tls=False, extra=extra)


def _config(
    tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, interval_s: float
) -> Path:
    return write_config(
        tmp_path / "bridge.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(tmp_path / "certs"),
        fields=simulated_fields(server, "Counter"),
        publisher_id=PUBLISHER,
        status_interval_s=interval_s,
    )


async def _saved_since(db: Path, since_ns: int) -> None:
    """Wait until the broker wrote its database after ``since_ns`` (bounded by tries)."""
    for _ in range(100):
        if db.exists() and db.stat().st_mtime_ns > since_ns:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the broker never saved {db}")


def _expiry(msg: Received) -> int:
    """The Message Expiry Interval the broker forwarded (what is left of it), in seconds."""
    value = msg.properties.get("message_expiry_interval")
    assert value is not None, f"no Message Expiry on {msg.topic}: {msg.properties}"
    return int(value[0] if isinstance(value, list) else value)


async def _collect(
    probe: MqttProbe, kind: str, enough: Callable[[list[Received]], bool]
) -> list[Received]:
    """Messages of ``kind`` (status, connection) until ``enough`` holds; bounded by a number
    of messages, each awaited with a generous timeout."""
    seen: list[Received] = []
    for _ in range(200):
        msg = await probe.next_message(15)
        if msg.topic.split("/")[2] == kind:
            seen.append(msg)
            if enough(seen):
                return seen
    pytest.fail(f"never enough {kind} messages: {[m.payload for m in seen]}")


def _decoded(msgs: list[Received]) -> list[StatusMessage]:
    return [decode_status_message(loads(m.payload)) for m in msgs]


def _cyclic_operational(msgs: list[Received]) -> list[StatusMessage]:
    return [s for s in _decoded(msgs) if s.is_cyclic and s.status == ua.PubSubState.Operational]


@pytest.mark.slow
async def test_live_bridge_refreshes_its_status_and_reports_error_while_the_server_is_away(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe(f"opcua/json/+/{PUBLISHER}")
        bridges.start(_config(tmp_path, small_opcua_server, mosquitto_tls, interval_s=1))

        statuses = await _collect(probe, "status", lambda m: len(_cyclic_operational(m)) >= 3)
        cyclic = _cyclic_operational(statuses)
        for s in cyclic:  # Timestamp and NextReportTime are required when cyclic (§7.2.5.5.5)
            assert s.timestamp is not None and s.next_report_time is not None
            assert s.next_report_time - s.timestamp == timedelta(seconds=1)
        stamps = [s.timestamp for s in cyclic]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert len({s.message_id for s in cyclic}) == len(cyclic)
        assert all(0 < _expiry(m) <= 2 for m in statuses)
        # Not cyclic outside Operational (§7.2.4.6.7): PreOperational at start-up
        for s in _decoded(statuses):
            assert s.is_cyclic == (s.status == ua.PubSubState.Operational)

        connections = await _collect(probe, "connection", lambda m: len(m) >= 2)
        assert all(0 < _expiry(m) <= 2 for m in connections)

        seen = await asyncio.to_thread(_bridges_json, mosquitto_tls)
        bridge = seen[PUBLISHER]
        assert (bridge["state"], bridge["is_cyclic"], bridge["overdue"]) == (
            "Operational",
            True,
            False,
        )
        assert bridge["operational"] is True
        async with Subscriber(adapter_options(mosquitto_tls, "live-subscriber")) as subscriber:
            for _ in range(100):
                if PUBLISHER in subscriber.statuses:
                    break
                await asyncio.sleep(0.1)
            assert subscriber.publisher_state(PUBLISHER) == ua.PubSubState.Operational

        # The OPC UA server goes away: Error (refreshed each period, not cyclic), not Operational.
        await asyncio.to_thread(small_opcua_server.stop)
        errors = await _collect(
            probe,
            "status",
            lambda m: sum(s.status == ua.PubSubState.Error for s in _decoded(m)) >= 2,
        )
        last = _decoded(errors)[-1]
        assert (last.status, last.is_cyclic) == (ua.PubSubState.Error, False)
        assert all(0 < _expiry(m) <= 2 for m in errors)
        seen = await asyncio.to_thread(_bridges_json, mosquitto_tls)
        assert (seen[PUBLISHER]["state"], seen[PUBLISHER]["operational"]) == ("Error", False)


@pytest.mark.slow
async def test_status_of_a_bridge_killed_while_the_broker_is_down_expires(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_autosaving: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    broker = mosquitto_autosaving
    bridge = bridges.start(_config(tmp_path, shared_small_opcua_server, broker, interval_s=5))
    for _ in range(60):
        seen = await asyncio.to_thread(_bridges_json, broker)
        if seen.get(PUBLISHER, {}).get("operational"):
            break
        await asyncio.sleep(0.3)
    else:
        pytest.fail(f"the bridge never became Operational: {seen}")
    await _saved_since(broker.workdir / "mosquitto.db", time.time_ns())

    # The broker crashes, the bridge dies unseen (no last will can fire), the broker comes
    # back with what it saved.
    await asyncio.to_thread(broker.kill)
    bridge.send_signal(signal.SIGKILL)
    bridge.wait(10)
    await broker.astart()
    kept = await asyncio.to_thread(_bridges_json, broker)
    assert kept[PUBLISHER]["state"] == "Operational", kept  # retained over the restart

    # A subscriber that takes the retained Operational learns, once NextReportTime has passed
    # by half a period with no new report, that the state is unknown.
    async with Subscriber(adapter_options(broker, "stale-subscriber")) as subscriber:
        for _ in range(200):
            if PUBLISHER in subscriber.statuses and subscriber.publisher_state(PUBLISHER) is None:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the subscriber never saw the status go stale: {subscriber.statuses}")
        assert subscriber.statuses[PUBLISHER].status == ua.PubSubState.Operational

    for _ in range(60):
        seen = await asyncio.to_thread(_bridges_json, broker)
        if PUBLISHER not in seen:
            break
        assert seen[PUBLISHER]["state"] == "Operational", seen  # no last will was published
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"the dead bridge's retained status never expired: {seen}")
    gone = _status(broker, "--wait", "0.5", "--publisher", PUBLISHER, "--require-operational")
    assert gone.returncode == 4, gone.stderr
    assert f"no bridge found: {PUBLISHER}" in gone.stderr


@pytest.mark.slow
async def test_the_last_will_expires_too(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """A bridge killed while the broker is up: the broker publishes its last will (Error, not
    cyclic) with the same Message Expiry, so the Error does not outlive it either."""
    config = _config(tmp_path, shared_small_opcua_server, mosquitto_tls, interval_s=1)
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe(f"opcua/json/status/{PUBLISHER}")
        bridge = bridges.start(config)
        await _collect(probe, "status", lambda m: len(_cyclic_operational(m)) >= 1)
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        statuses = await _collect(
            probe, "status", lambda m: _decoded(m)[-1].status == ua.PubSubState.Error
        )
        will = _decoded(statuses)[-1]
        assert will.is_cyclic is False and will.next_report_time is None
        assert 0 < _expiry(statuses[-1]) <= 2
    for _ in range(60):
        seen = await asyncio.to_thread(_bridges_json, mosquitto_tls)
        if PUBLISHER not in seen:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"the last will never expired: {seen}")

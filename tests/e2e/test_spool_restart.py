"""Nothing lost across a bridge restart during a broker outage, with real processes: the small
OPC UA test server, `opcua-mqtt run` with a disk spool (mqtt.spool.directory), Mosquitto over
TLS, and a subscriber connected to the broker directly. The bridge reaches the broker through
a proxy that is cut for the outage, so the broker (and the subscriber's session) stays up: what
the subscriber misses can only be the bridge's doing. The tests share the OPC UA server (none
stops it or changes its model); each has its own broker.

What must show (issue 13): a bridge SIGKILLed 30 s into the outage and restarted with the same
spool sends everything it had produced, sequence numbers continue without a reset or a gap,
and the only duplicates are QoS 1 repeats, each an exact copy of a message already received
(so a subscriber detects it by its SequenceNumber). A SIGTERM during an outage keeps the spool
and says how many messages wait.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from harness.bridge import (
    BridgeProcess,
    BridgeProcesses,
    make_certs,
    run_cli,
    simulated_fields,
    write_config,
)
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer
from harness.stall_proxy import StallProxy
from opcua_mqtt.adapters.spool_store import SpoolStore

PUBLISHER = "spool-restart"


def _config(
    tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, port: int | None = None
) -> Path:
    """A bridge with a disk spool ("spool" beside the file), reaching the broker on ``port``
    (a proxy's) if given."""
    return write_config(
        tmp_path / "bridge.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(tmp_path / "certs", PUBLISHER),
        fields=simulated_fields(server, "Counter"),
        publisher_id=PUBLISHER,
        mqtt={"spool": {"directory": "spool"}, "port": port or broker.port},
    )


class Stream:
    """The ua-data DataSetMessages received, per DataSetWriterId, in arrival order."""

    def __init__(self) -> None:
        self.by_writer: dict[int, list[dict[str, Any]]] = defaultdict(list)

    async def collect(self, probe: MqttProbe, count: int) -> None:
        """Receive ``count`` more DataSetMessages (each awaited with a generous timeout)."""
        for _ in range(count * 2):
            if count <= 0:
                return
            msg = await probe.next_message(20)
            for dsm in json.loads(msg.payload)["Messages"]:
                if dsm.get("MessageType", "ua-keyframe") != "ua-keepalive":
                    self.by_writer[dsm["DataSetWriterId"]].append(dsm)
                    count -= 1
        pytest.fail("the DataSetMessages stopped coming")


def _waiting(restored: str) -> int:
    """N of the log line "spool DIR holds N messages (B bytes) from before: ..."."""
    return int(restored.split(" holds ")[1].split(" messages")[0])


def _message(bridge: BridgeProcess, text: str) -> str:
    found = [r["message"] for r in bridge.records() if text in r.get("message", "")]
    assert found, f"no log line with {text!r}:\n{bridge.text()[-3000:]}"
    return found[0]


async def _wait_for_log(bridge: BridgeProcess, text: str) -> str:
    for _ in range(200):
        if any(text in r.get("message", "") for r in bridge.records()):
            return _message(bridge, text)
        await asyncio.sleep(0.1)
    return _message(bridge, text)


def _assert_one_unbroken_stream(stream: Stream) -> None:
    (writer,) = stream.by_writer.values()
    numbers = [m["SequenceNumber"] for m in writer]
    distinct = sorted(set(numbers))
    missing = sorted(set(range(distinct[0], distinct[-1] + 1)) - set(distinct))
    assert not missing, f"sequence numbers missing: {missing[:20]}"
    first_copy: dict[int, dict[str, Any]] = {}
    for m in writer:  # a repeat is an exact copy of what came before under that number
        assert first_copy.setdefault(m["SequenceNumber"], m) == m
    versions = {json.dumps(m["MetaDataVersion"]) for m in writer}
    assert len(versions) == 1, f"the ConfigurationVersion changed: {versions}"


async def _outage_then_restart(
    tmp_path: Path,
    server: OpcUaTestServer,
    broker: MosquittoBroker,
    bridges: BridgeProcesses,
    *,
    outage_s: float,
    stop_with: signal.Signals,
) -> tuple[Stream, BridgeProcess, BridgeProcess]:
    async with StallProxy(broker.host, broker.port) as proxy, MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe(f"opcua/json/data/{PUBLISHER}/#")
        config = _config(tmp_path, server, broker, proxy.port)
        first = bridges.start(config)
        stream = Stream()
        await stream.collect(probe, 20)

        proxy.cut()  # the broker is gone, as far as the bridge can tell
        await asyncio.sleep(outage_s)
        first.send_signal(stop_with)
        first.wait(30)
        second = bridges.start(config)
        restored = await _wait_for_log(second, "from before: they go out first")
        proxy.resume()

        # Everything the first bridge left in the spool, then 30 of the second one's own.
        await stream.collect(probe, _waiting(restored) + 30)
        return stream, first, second


@pytest.mark.slow
async def test_a_bridge_killed_during_a_broker_outage_sends_everything_after_its_restart(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    stream, _first, second = await _outage_then_restart(
        tmp_path,
        shared_small_opcua_server,
        mosquitto_tls,
        bridges,
        outage_s=30,
        stop_with=signal.SIGKILL,
    )
    _assert_one_unbroken_stream(stream)
    restored = _message(second, "from before: they go out first")
    # the outage's data (a message per 100 ms) was on disk, not lost with the process
    assert _waiting(restored) >= 30 / 0.1 / 2, restored
    assert "1 kept their ConfigurationVersion" in _message(second, "continuing 1 writers")


@pytest.mark.slow
async def test_a_bridge_stopped_during_a_broker_outage_keeps_its_spool_and_says_so(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    stream, first, _second = await _outage_then_restart(
        tmp_path,
        shared_small_opcua_server,
        mosquitto_tls,
        bridges,
        outage_s=5,
        stop_with=signal.SIGTERM,
    )
    assert first.returncode == 0
    line = _message(first, "messages wait in the spool")
    assert int(line.split()[0]) > 0, line
    _assert_one_unbroken_stream(stream)


def test_a_spool_directory_in_use_by_another_bridge_is_refused_at_start(
    tmp_path: Path, shared_small_opcua_server: OpcUaTestServer, mosquitto_tls: MosquittoBroker
) -> None:
    config = _config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    holder = SpoolStore(tmp_path / "spool")  # as a running bridge holds it
    try:
        refused = run_cli("run", str(config))
    finally:
        holder.close()
    assert refused.returncode == 2, refused.stderr
    assert f"error: spool directory {tmp_path / 'spool'} is in use by process" in refused.stderr
    assert "Traceback" not in refused.stderr

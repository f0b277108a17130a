"""A broker crash loses nothing: `opcua-mqtt run` publishes a fast stream from the asyncua test
server (churn variables written every 20 ms) through a Mosquitto with persistence to an
independent persistent-session subscriber (a raw gmqtt client: MQTT 5, Clean Start 0, Session
Expiry, QoS 1). The broker is SIGKILLed mid-stream and started again 5 s later on the same port
with the same database; the subscriber must then hold every DataSetMessage, SequenceNumber +1
per writer, in order (Part 14 §7.2.5.4).

Duplicates are allowed, and only these: QoS 1 is at-least-once, and a broker restarted from its
last save (harness.mosquitto.persistence_config) delivers again what the subscriber had already
acknowledged after that save, while the bridge re-sends what the broker had not acknowledged
before it died. Each such copy must be an exact repeat of a DataSetMessage seen before under the
same SequenceNumber (harness/sequence_check.py), so a subscriber can drop it by number; a number
reused for other content, or one missing, fails the test.

The second test takes the broker's memory of the bridge away: the broker comes back from a
database saved before the bridge connected, so the bridge's unacknowledged publishes are
discarded with its session (MQTT 5 §4.4) and only the bridge can send them again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.bridge import BridgeProcess, BridgeProcesses, make_certs, write_config
from harness.mosquitto import MosquittoBroker, persistence_config, run_broker
from harness.opcua_servers import OpcUaTestServer
from harness.pki import Pki
from harness.stream_subscriber import StreamSubscriber
from tests.conftest import _small_server

PUBLISHER = "kill-check"
WRITERS = {"W1": 11, "W2": 12}
IDS = list(WRITERS.values())
FIELDS_PER_WRITER = 10
CHURN_INTERVAL_MS = 20
OUTAGE_S = 5.0
SESSION_EXPIRY_S = 600


@pytest.fixture
def persistent_broker(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """TLS Mosquitto that saves sessions, queued and retained messages every second."""
    workdir = tmp_path / "mosquitto-persistent"
    extra = persistence_config(workdir)
    yield from run_broker(mosquitto_executable, pki, workdir, mutual_tls=False, extra=extra)


@pytest.fixture
def churn_server(tmp_path: Path, opcua_server_cert_dir: Path) -> Iterator[OpcUaTestServer]:
    """The small asyncua test server plus Double variables that all change every 20 ms."""
    yield from _small_server(
        tmp_path / "opcua-server",
        opcua_server_cert_dir,
        (len(WRITERS) * FIELDS_PER_WRITER, CHURN_INTERVAL_MS),
    )


def _config(tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker) -> Path:
    nodeids = server.manifest["churn"]["nodeids"]
    writers = [
        {
            "name": name,
            "dataset_writer_id": writer_id,
            "fields": [
                {"name": f"V{i}", "node_id": nodeids[i], "builtin_type": "Double"}
                for i in range(k * FIELDS_PER_WRITER, (k + 1) * FIELDS_PER_WRITER)
            ],
        }
        for k, (name, writer_id) in enumerate(WRITERS.items())
    ]
    return write_config(
        tmp_path / "bridge.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(tmp_path / "certs", PUBLISHER),
        fields=[],
        publisher_id=PUBLISHER,
        writers=writers,
        defaults={
            "publishing_interval_ms": CHURN_INTERVAL_MS,
            "sampling_interval_ms": CHURN_INTERVAL_MS / 2,
        },
    )


async def _saved_after_subscribing(broker: MosquittoBroker, subscribed_ns: int) -> None:
    """Wait until the broker saved its database after the subscription existed (bounded by
    tries): only then can a crash keep the subscriber's session."""
    db = broker.workdir / "mosquitto.db"
    for _ in range(100):
        if db.exists() and db.stat().st_mtime_ns > subscribed_ns:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the broker never saved {db}:\n{broker.log_text()}")


def _diagnosis(broker: MosquittoBroker, bridge: BridgeProcess) -> str:
    lines: list[Any] = [r.get("message") for r in bridge.records() if r.get("level") != "debug"]
    return "bridge log:\n" + "\n".join(map(str, lines[-30:])) + "\n" + broker.log_text()[-3000:]


async def _after_restart(
    sub: StreamSubscriber, broker: MosquittoBroker, bridge: BridgeProcess, killed_at: int
) -> None:
    """Resume the subscriber's session on the restarted broker, let 100 more frames per writer
    through, then stop the bridge cleanly (it drains its spool and sends Disabled last, after
    all its data) and wait for that Disabled."""
    resumed = await sub.connect(subscribe=False)
    assert resumed, "the restarted broker did not keep the subscriber's session"
    try:
        await sub.until(
            lambda: all(sub.frames(w) >= killed_at + 100 for w in IDS),
            "100 more frames per writer after the broker's restart",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_diagnosis(broker, bridge)}") from None
    await asyncio.to_thread(bridge.stop)
    await sub.until(sub.disabled, "the bridge's Disabled status")


def _assert_complete(sub: StreamSubscriber, broker: MosquittoBroker, bridge: BridgeProcess) -> None:
    """Every writer: one run from 0, nothing missing, nothing out of order."""
    problems = list(sub.ledger.problems())
    assert not problems, "\n".join(problems) + "\n" + _diagnosis(broker, bridge)
    for w in IDS:
        (run,) = sub.ledger.writers[w].runs
        assert run.first == 0, f"writer {w} starts at {run.first}"


@pytest.mark.slow
async def test_broker_sigkill_mid_stream_loses_no_dataset_message(
    tmp_path: Path,
    churn_server: OpcUaTestServer,
    persistent_broker: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    broker = persistent_broker
    sub = StreamSubscriber(broker, PUBLISHER, session_expiry_s=SESSION_EXPIRY_S)
    try:
        await sub.connect(subscribe=True)
        subscribed_ns = time.time_ns()
        bridge = bridges.start(_config(tmp_path, churn_server, broker))
        await sub.until(lambda: all(sub.frames(w) >= 50 for w in IDS), "50 frames per writer")
        await _saved_after_subscribing(broker, subscribed_ns)

        broker.kill()
        killed_at = max(sub.frames(w) for w in IDS)
        await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for an outcome
        await broker.astart()
        await _after_restart(sub, broker, bridge, killed_at)
    finally:
        await sub.close()
    _assert_complete(sub, broker, bridge)


@pytest.fixture
def snapshot_broker(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """TLS Mosquitto with persistence that saves only on a clean stop (within the test)."""
    workdir = tmp_path / "mosquitto-snapshot"
    extra = persistence_config(workdir, autosave_interval_s=3600)
    yield from run_broker(mosquitto_executable, pki, workdir, mutual_tls=False, extra=extra)


@pytest.mark.slow
async def test_broker_back_without_the_bridges_session_still_gets_what_was_in_flight(
    tmp_path: Path,
    churn_server: OpcUaTestServer,
    snapshot_broker: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """A broker that comes back from a crash without the bridge's session (its last save
    predates the bridge's connection, or it has no persistence) gives CONNACK Session Present
    0, and MQTT then discards the client's unacknowledged publishes: the bridge must send them
    again itself. Frozen (SIGSTOP), the broker takes the bridge's publishes without answering,
    so a full in-flight window is unacknowledged when it is killed."""
    broker = snapshot_broker
    sub = StreamSubscriber(broker, PUBLISHER, session_expiry_s=SESSION_EXPIRY_S)
    try:
        await sub.connect(subscribe=True)
        await broker.astop()  # a clean stop saves the subscriber's session, nothing else
        await broker.astart()
        assert await sub.connect(subscribe=False), "the subscriber's session was not saved"
        bridge = bridges.start(_config(tmp_path, churn_server, broker))
        await sub.until(lambda: all(sub.frames(w) >= 50 for w in IDS), "50 frames per writer")

        broker.freeze()
        killed_at = max(sub.frames(w) for w in IDS)
        await asyncio.sleep(1.0)  # publishes pile up unacknowledged: the window fills
        broker.kill()
        await broker.astart()
        await _after_restart(sub, broker, bridge, killed_at)
    finally:
        await sub.close()
    _assert_complete(sub, broker, bridge)

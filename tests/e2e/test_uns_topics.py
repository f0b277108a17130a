"""Custom topics for a Unified Namespace (docs/uns.md) end to end: `opcua-mqtt run` with
queue_name / metadata_queue_name templates (OPC 10000-14 1.05 §6.4.2.5.1, §6.4.2.5.5) behind a
Mosquitto ACL that lets it publish exactly the UNS prefix and its status and connection topics;
the retained metadata a late subscriber gets on the custom topic, the data beside it, and
`listen` across the custom topics, by filter and by discovery from ua-connection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.bridge import EXE, BridgeProcess, BridgeProcesses, simulated_fields, simulation_config
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer
from harness.processes import LOOPBACK, free_port
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.topics import TopicTree
from tests.e2e.test_metrics import _readyz

PUBLISHER = "e2e-bridge"  # harness/bridge.py's default
TREE = TopicTree()
UNS_PREFIX = "acme/site1"


def _uns_bridge(
    tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, bridges: BridgeProcesses
) -> tuple[BridgeProcess, int]:
    """The simulation bridge with two writers (W, W2) on acme/site1/G/<writer>, each with its
    retained metadata on .../metadata; returns it and its metrics port."""
    config = simulation_config(tmp_path, server, broker)
    doc = yaml.safe_load(config.read_text())
    doc["uns"] = {"enterprise": "acme", "site": "site1"}
    group = doc["writer_groups"][0]
    group["queue_name"] = "{enterprise}/{site}/{group}/{writer}"
    group["metadata_queue_name"] = "{enterprise}/{site}/{group}/{writer}/metadata"
    group["writers"].append(
        {"name": "W2", "dataset_writer_id": 1002, "fields": simulated_fields(server, "Sine")}
    )
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    port = free_port()
    return bridges.start(config, "--metrics-port", str(port)), port


def _listen(broker: MosquittoBroker, trust: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [EXE, "listen", f"{LOOPBACK}:{broker.port}", "--ca", str(broker.ca_cert),
         "--trust", str(trust), "--format", "json", "--count", "8", "--timeout", "30", *args],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_a_uns_bridge_behind_a_prefix_acl_publishes_on_its_custom_topics(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    broker = mosquitto_tls
    # Everyone reads; publishing is allowed on the UNS prefix and the bridge's status and
    # connection topics only: the standard data and metadata topics are refused.
    broker.set_acl(
        "topic read #\n"
        f"topic write {UNS_PREFIX}/#\n"
        f"topic write {TREE.status(PUBLISHER)}\n"
        f"topic write {TREE.connection(PUBLISHER)}\n"
    )
    await broker.astop()
    await broker.astart()
    bridge, port = _uns_bridge(tmp_path, small_opcua_server, broker, bridges)
    report = await _readyz(port, 200, 60)
    assert "mqtt_refused" not in report, report

    # A subscriber that comes after the metadata was sent still gets it: retained, on its
    # custom topic. The data comes beside it.
    async with MqttProbe() as probe:
        await probe.connect(LOOPBACK, broker.port, broker.ssl_context())
        await probe.subscribe(f"{UNS_PREFIX}/G/+/metadata")
        metadata = {}
        for _ in range(2):
            got = await probe.next_message(timeout=10)
            body = json.loads(got.payload)
            validator("ua-metadata").validate(body)
            metadata[got.topic] = body["DataSetWriterName"]
        assert metadata == {f"{UNS_PREFIX}/G/W/metadata": "W", f"{UNS_PREFIX}/G/W2/metadata": "W2"}
        await probe.subscribe(f"{UNS_PREFIX}/G/W")
        got = await probe.next_message(timeout=10)
        assert got.topic == f"{UNS_PREFIX}/G/W"
        data = json.loads(got.payload)
        validator("ua-data").validate(data)
        assert data["MessageType"] == "ua-data"

    # ua-connection tells where everything is.
    async with MqttProbe() as probe:
        await probe.connect(LOOPBACK, broker.port, broker.ssl_context())
        await probe.subscribe(TREE.connection(PUBLISHER))
        connection = json.loads((await probe.next_message(timeout=10)).payload)
    writers = connection["Connection"]["WriterGroups"][0]["DataSetWriters"]
    assert {w["Name"]: w["TransportSettings"]["QueueName"] for w in writers} == {
        "W": f"{UNS_PREFIX}/G/W",
        "W2": f"{UNS_PREFIX}/G/W2",
    }
    assert {w["TransportSettings"]["MetaDataQueueName"] for w in writers} == {
        f"{UNS_PREFIX}/G/W/metadata",
        f"{UNS_PREFIX}/G/W2/metadata",
    }

    trust = tmp_path / "certs" / "ca.pem"
    for how in (["--topic", f"{UNS_PREFIX}/#", "--no-discover"], []):  # filter, discovery
        seen = _listen(broker, trust, *how)
        assert {d["dataset_writer_name"] for d in seen} == {"W", "W2"}, how
        assert {d["topic"] for d in seen} == {f"{UNS_PREFIX}/G/W", f"{UNS_PREFIX}/G/W2"}
        assert {d["metadata"]["state"] for d in seen} == {"verified"}, seen
        assert all(d["refused"]["total"] == 0 for d in seen)

    refusals = [r for r in bridge.records() if "refused a publish" in r["message"]]
    assert refusals == []
    assert (await _readyz(port, 200, 5))["mqtt"] == "connected"


def test_listen_refuses_a_malformed_topic_filter_before_connecting() -> None:
    done = subprocess.run(
        [EXE, "listen", f"{LOOPBACK}:{free_port()}", "--topic", "acme/#/line4"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "'acme/#/line4' is not a topic filter: '#' is not the last level" in done.stderr

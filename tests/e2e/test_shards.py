"""Two shards of one configuration (`opcua-mqtt shard`) run as two bridges on one Mosquitto: a
subscriber of the whole tree gets the union of what the one configuration describes, each field
from exactly one shard, none missing, none twice."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.bridge import BridgeProcesses, make_certs, run_cli, simulated_fields, write_config
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer


def _two_group_config(tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker) -> Path:
    path = write_config(
        tmp_path / "plant.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(tmp_path / "certs", "plant"),
        fields=simulated_fields(server, "Counter", "Sine"),
        publisher_id="plant",
    )
    doc = yaml.safe_load(path.read_text())
    doc["writer_groups"].append(
        {
            "name": "H",
            "writers": [
                {
                    "name": "X",
                    "dataset_writer_id": 2001,
                    "fields": simulated_fields(server, "Toggle"),
                }
            ],
        }
    )
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def test_two_shards_deliver_the_union_with_no_field_twice_and_none_missing(
    tmp_path: Path,
    opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = _two_group_config(tmp_path, opcua_server, mosquitto_tls)
    made = run_cli("shard", str(config), "2", "--out", str(tmp_path / "shards"))
    assert made.returncode == 0, made.stderr
    files = sorted((tmp_path / "shards").glob("plant-shard*of2.yaml"))
    assert len(files) == 2, made.stdout
    for f in files:
        checked = run_cli("validate", str(f))
        assert checked.returncode == 0, checked.stdout + checked.stderr

    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe("opcua/json/data/#")
        for f in files:
            bridges.start(f)
        fields: dict[str, set[str]] = {}  # field -> publishers that sent it
        after_all = 0  # messages since every field was seen: a second sender would show
        for _ in range(400):
            msg = await probe.next_message(20)
            body = json.loads(msg.payload)
            for dsm in body["Messages"]:
                for name in dsm.get("Payload", {}):
                    fields.setdefault(name, set()).add(body["PublisherId"])
            after_all += len(fields) == 3
            if after_all > 30:
                break
    assert fields == {
        "Counter": {"plant-shard1of2"},
        "Sine": {"plant-shard1of2"},
        "Toggle": {"plant-shard2of2"},
    }

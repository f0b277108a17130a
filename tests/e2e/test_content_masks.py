"""Content masks as a user meets them (issue 15): `map --profile open62541` writes the mask set
docs/interop.md gives for open62541 1.5 (and `--profile standard` writes nothing extra),
`validate` refuses what Part 14 forbids with file, line, path and exit code 1, and a bridge run
with the profile publishes, through a real Mosquitto over TLS, data messages open62541's decoder
takes and our Subscriber and `listen` read, verified."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from harness.bridge import BridgeProcesses, run_cli, simulation_config
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.opcua_servers import OpcUaTestServer
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.profiles import OPEN62541
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.subscriber import Subscriber, TrustState
from tests.e2e.test_map_cli import browse_file
from tests.integration.test_content_masks_interop import open62541_refusal

PROFILE_DEFAULTS = {
    "network_message_content": list(OPEN62541.network_message_content),
    "dataset_message_content": list(OPEN62541.dataset_message_content),
}


def test_map_profile_open62541_writes_its_masks_and_standard_writes_none(tmp_path: Path) -> None:
    source = browse_file(tmp_path)
    standard = run_cli("map", str(source), "-o", str(tmp_path / "standard.yaml"), cwd=tmp_path)
    assert standard.returncode == 0, standard.stderr
    defaults = yaml.safe_load((tmp_path / "standard.yaml").read_text())["defaults"]
    assert not {"network_message_content", "dataset_message_content"} & set(defaults)
    out = tmp_path / "o62.yaml"
    mapped = run_cli("map", str(source), "--profile", "open62541", "-o", str(out), cwd=tmp_path)
    assert mapped.returncode == 0, mapped.stderr
    defaults = yaml.safe_load(out.read_text())["defaults"]
    assert {k: defaults[k] for k in PROFILE_DEFAULTS} == PROFILE_DEFAULTS
    assert defaults["key_frame_count"] == 1  # open62541 reads every DataSetMessage as a key frame
    assert "no SequenceNumber: a subscriber cannot detect lost messages" in mapped.stderr
    given = run_cli(
        "map",
        str(source),
        "--profile",
        "open62541",
        "--key-frame-count",
        "3",
        cwd=tmp_path,
    )
    assert yaml.safe_load(given.stdout)["defaults"]["key_frame_count"] == 3


def test_validate_refuses_a_forbidden_mask_with_file_line_and_path(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "version: 1\npublisher_id: p\nopcua:\n  endpoint: opc.tcp://127.0.0.1:4840\n"
        "defaults:\n  network_message_content: [DataSetMessageHeader, PublisherId]\n"
        "writer_groups: []\n"
    )
    result = run_cli("validate", str(config))
    assert result.returncode == 1
    assert (
        f"{config}:6: defaults/network_message_content: PublisherId is a member of the "
        "NetworkMessage header (Part 14 §7.2.5.3; §6.3.2.1.1: without NetworkMessageHeader the "
        "PublisherId and DataSetClassId bits shall be 0): add NetworkMessageHeader or leave "
        "them out"
    ) in result.stdout.splitlines()


async def test_a_bridge_with_the_open62541_profile_is_read_by_both(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    doc = yaml.safe_load(config.read_text())
    doc["defaults"].update(PROFILE_DEFAULTS, key_frame_count=OPEN62541.key_frame_count)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_cli("validate", str(config)).returncode == 0
    bridges.start(config)
    trust = TrustStore.from_pem((tmp_path / "certs" / "ca.pem").read_bytes())
    async with (
        MqttProbe() as probe,
        Subscriber(adapter_options(mosquitto_tls, "e2e-masks"), trust=trust) as sub,
    ):
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe("opcua/json/data/#")
        raw = [loads((await probe.next_message(20)).payload) for _ in range(5)]
        it = sub.__aiter__()
        seen = [await asyncio.wait_for(it.__anext__(), 20) for _ in range(5)]
    for message in raw:
        assert open62541_refusal(message) is None, message
        assert validator("ua-data").is_valid(message)
        assert "SequenceNumber" not in message["Messages"][0]
    assert {ds.verification.state for ds in seen} == {TrustState.VERIFIED}
    assert {(ds.dataset_writer_id, ds.dataset_writer_name, ds.writer_group) for ds in seen} == {
        (1001, "W", "G")
    }
    assert all(set(ds.fields) == {"Counter", "Sine"} for ds in seen if ds.fields)
    listened = run_cli(
        "listen",
        f"{mosquitto_tls.host}:{mosquitto_tls.port}",
        "--ca",
        str(mosquitto_tls.ca_cert),
        "--trust",
        str(tmp_path / "certs" / "ca.pem"),
        "--format",
        "json",
        "--count",
        "3",
        "--timeout",
        "30",
    )
    assert listened.returncode == 0, listened.stderr
    lines = [json.loads(line) for line in listened.stdout.splitlines()]
    assert {(line["dataset_writer_id"], line["metadata"]["state"]) for line in lines} == {
        (1001, "verified")
    }

"""The whole user path against an independent server (node-opcua): `map` the server, `run` the
bridge on that file, `listen` on the broker; every value equals an independent read."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import yaml
from asyncua import Client

from harness.bridge import EXE, BridgeProcesses, make_certs, simulated_fields, write_config
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

#: Variables the node-opcua plant changes every 100 ms: compared by type only.
CHANGING = {"BottleCount", "CapCount", "LastCap", "Pressure", "NozzleTemperatures"}
PUBLISHER = "node-opcua-bridge"


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def _mapped_config(tmp_path: Path, endpoint: str, broker: MosquittoBroker, certs: Path) -> Path:
    mapped = _cli(
        "map",
        endpoint,
        "--security-policy",
        "None",
        "--publishing-interval",
        "100",
        "--sampling-interval",
        "50",
        "--include",
        "Plant/**",
        "-o",
        "plant.yaml",
        cwd=tmp_path,
    )
    assert mapped.returncode == 0, mapped.stderr
    doc = yaml.safe_load((tmp_path / "plant.yaml").read_text())
    doc["publisher_id"] = PUBLISHER
    doc["mqtt"] = {"host": broker.host, "port": broker.port, "tls": {"ca": str(broker.ca_cert)}}
    doc["metadata_signing"] = {
        "private_key": str(certs / "metadata-signer.key"),
        "certificate_chain": str(certs / "metadata-signer.pem"),
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _cli("validate", str(path), cwd=tmp_path).returncode == 0
    return path


def _listen(
    tmp_path: Path, broker: MosquittoBroker, trust: Path, count: int
) -> list[dict[str, Any]]:
    run = _cli(
        "listen",
        f"{broker.host}:{broker.port}",
        "--ca",
        str(broker.ca_cert),
        "--trust",
        str(trust),
        "--format",
        "json",
        "--count",
        str(count),
        "--timeout",
        "30",
        cwd=tmp_path,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_map_run_listen_delivers_every_node_opcua_value_verified(
    tmp_path: Path,
    node_opcua_server: Any,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    certs = make_certs(tmp_path / "certs", PUBLISHER)
    config = _mapped_config(tmp_path, node_opcua_server.endpoint, mosquitto_tls, certs)
    bridges.start(config)
    # Delta frames carry only changed fields: a writer of constants shows its fields in key
    # frames only (every 10th tick, --key-frame-count's default), so read past two key-frame
    # periods of every writer, whenever listen joined.
    lines = _listen(tmp_path, mosquitto_tls, certs / "ca.pem", count=100)
    assert {line["metadata"]["state"] for line in lines} == {"verified"}
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        latest.update(line["fields"])
    fields = {
        f["name"]: f
        for g in yaml.safe_load(config.read_text())["writer_groups"]
        for w in g["writers"]
        for f in w["fields"]
    }
    assert set(latest) == set(fields)  # every mapped variable arrived

    async def expected() -> dict[str, Any]:
        async with Client(node_opcua_server.endpoint, timeout=10) as client:
            ns = await client.get_namespace_array()
            codec = JsonCodec(namespaces=NamespaceTable(ns))
            out = {}
            for name, f in fields.items():
                dv = await client.get_node(parse_nodeid(f["node_id"], ns)).read_data_value()
                out[name] = (dv.Value.VariantType.name, _json_value(codec, dv.Value))
            return out

    for name, (type_name, value) in asyncio.run(expected()).items():
        got = latest[name]
        assert got["type"] == type_name, name
        assert got["status"] == 0, name
        if name not in CHANGING:
            assert got["value"] == value, name


def test_listen_shows_metadata_signed_by_an_untrusted_key_as_unverified(
    tmp_path: Path,
    node_opcua_server: Any,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    certs = make_certs(tmp_path / "certs", PUBLISHER)
    other_ca = make_certs(tmp_path / "other", PUBLISHER) / "ca.pem"
    bridges.start(_mapped_config(tmp_path, node_opcua_server.endpoint, mosquitto_tls, certs))
    lines = _listen(tmp_path, mosquitto_tls, other_ca, count=3)
    states = {
        (line["metadata"]["state"], line["metadata"]["detail"].split(":")[0]) for line in lines
    }
    assert states == {("unverified", "untrusted-chain")}


def _json_value(codec: JsonCodec, variant: Any) -> Any:
    if variant.is_array:
        return codec.encode_array(variant.Value, variant.VariantType)
    return codec.encode_value(variant.Value, variant.VariantType)


def test_listen_refuses_a_malformed_topic_filter_as_a_usage_error() -> None:
    """Mosquitto drops a client for such a filter: refused before any connection is made."""
    run = subprocess.run(
        [EXE, "listen", "127.0.0.1:1", "opcua/#/data"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "'#' is not the last level" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_listen_table_at_160_columns_tells_long_field_names_apart(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """Two fields whose names share a long start (the writer's path): the table, in a terminal
    of 160 columns, shows each whole, with its value as Part 6 JSON."""
    certs = make_certs(tmp_path / "certs", publisher_id="opcua-mqtt-127.0.0.1")
    counter, sine = simulated_fields(small_opcua_server, "Counter", "Sine")
    config = write_config(
        tmp_path / "bridge.yaml",
        endpoint=small_opcua_server.endpoint,
        broker=mosquitto_tls,
        signing_dir=certs,
        fields=[counter | {"name": "TargetCount"}, sine | {"name": "TargetTemperature"}],
        publisher_id="opcua-mqtt-127.0.0.1",
    )
    doc = yaml.safe_load(config.read_text())
    doc["writer_groups"][0]["writers"][0]["name"] = "Line1.Filler.Dosing"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    bridges.start(config)
    broker = f"{mosquitto_tls.host}:{mosquitto_tls.port}"
    child = pexpect.spawn(
        EXE,
        ["listen", broker, "--ca", str(mosquitto_tls.ca_cert), "--trust", str(certs / "ca.pem")],
        dimensions=(24, 160),
        env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        encoding="utf-8",
        timeout=60,
    )
    try:
        frame = ""
        # A key frame may go out before the first values (BadWaitingForInitialData, drawn as
        # null): wait for a drawing of both fields with their values.
        while not (
            "TargetCount " in frame
            and "TargetTemperature " in frame
            and "verified" in frame
            and not re.search(r"Target\w+ +null ", frame)
        ):
            child.expect(r"\x1b\[J")
            child.expect(r"\x1b\[J|\x1b\[\d+F")  # one whole drawing
            frame = child.before
        child.sendintr()
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    lines = frame.replace("\r", "").split("\n")
    assert max(len(line) for line in lines) <= 160, frame
    label = "opcua-mqtt-127.0.0.1/Line1.Filler.Dosing/"
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(label)}
    assert set(rows) == {label + "TargetCount", label + "TargetTemperature"}, frame
    count, temperature = rows[label + "TargetCount"], rows[label + "TargetTemperature"]
    assert re.fullmatch(r"\d+", count[1]) and re.fullmatch(
        r"-?\d+(\.\d+)?(e-?\d+)?", temperature[1]
    )
    assert count[2] == temperature[2] == "Good" and count[-1] == "verified"

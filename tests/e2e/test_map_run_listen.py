"""The whole user path against an independent server (node-opcua): `map` the server, `run` the
bridge on that file, `listen` on the broker; every value equals an independent read."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client

from opcua_mqtt.core.json_encoding import JsonCodec, NamespaceTable
from tests.support.bridge import EXE, BridgeProcesses, make_certs
from tests.support.mosquitto import MosquittoBroker
from tests.support.opcua_server import parse_nodeid

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
    lines = _listen(tmp_path, mosquitto_tls, certs / "ca.pem", count=12)
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

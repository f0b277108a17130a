"""`map` of a whole server (no --include) as a user runs it, then `run` on the file unchanged.

node-opcua and open62541 put the browsing session's own diagnostics objects below the Server
object in namespace 1; they vanish with that session. A whole-server map must leave them out,
come out the same every time, and run as written: `opcua-mqtt certs`, `map --broker`, `run`.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.bridge import EXE, BridgeProcesses, make_certs
from harness.mosquitto import MosquittoBroker
from harness.pki import Pki


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def _certs_pki(certs: Path) -> Pki:
    """The folder of `opcua-mqtt certs` as the test broker's PKI (its broker certificate)."""
    client = (certs / "mqtt-client.pem", certs / "mqtt-client.key")
    return Pki(
        directory=certs,
        ca_cert=certs / "ca.pem",
        ca_key=certs / "ca.key",
        server_cert=certs / "broker.pem",
        server_key=certs / "broker.key",
        client_cert=client[0],
        client_key=client[1],
        rogue_ca_cert=certs / "ca.pem",  # not used here
        rogue_ca_key=certs / "ca.key",
        rogue_client_cert=client[0],
        rogue_client_key=client[1],
    )


@pytest.fixture
def plant_dir(tmp_path: Path, mosquitto_executable: str) -> Iterator[tuple[Path, MosquittoBroker]]:
    """A working folder with ./certs made by `opcua-mqtt certs`, and a Mosquitto that uses
    those certificates and wants a client certificate (mutual TLS)."""
    certs = make_certs(tmp_path / "certs", publisher_id="hall2-bridge")
    with MosquittoBroker(
        executable=mosquitto_executable,
        pki=_certs_pki(certs),
        workdir=tmp_path / "mosquitto",
        mutual_tls=True,
    ) as broker:
        yield tmp_path, broker


def _body(path: Path) -> str:
    """The file without its header comment."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[next(i for i, s in enumerate(lines) if not s.startswith("#")) :])


def _fields(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for g in doc["writer_groups"] for w in g["writers"] for f in w["fields"]]


def _map_whole_server(endpoint: str, workdir: Path, broker: MosquittoBroker, out: str) -> str:
    mapped = _cli(
        "map",
        endpoint,
        "--security-policy",
        "None",
        "--broker",
        f"{broker.host}:{broker.port}",
        "--publishing-interval",
        "200",
        "--sampling-interval",
        "100",
        "-o",
        out,
        cwd=workdir,
    )
    assert mapped.returncode == 0, mapped.stderr
    return mapped.stderr


@pytest.mark.slow
@pytest.mark.parametrize("server", ["node-opcua", "asyncua"])
def test_a_whole_server_map_is_stable_leaves_sessions_out_and_runs_as_written(
    server: str,
    request: pytest.FixtureRequest,
    plant_dir: tuple[Path, MosquittoBroker],
    bridges: BridgeProcesses,
) -> None:
    fixture = "node_opcua_server" if server == "node-opcua" else "small_opcua_server"
    endpoint = request.getfixturevalue(fixture).endpoint
    workdir, broker = plant_dir
    stderr = _map_whole_server(endpoint, workdir, broker, "bridge.yaml")
    assert "skipped" not in stderr  # nothing the filters keep is unreadable or malformed
    _map_whole_server(endpoint, workdir, broker, "again.yaml")
    assert _body(workdir / "bridge.yaml") == _body(workdir / "again.yaml")

    text = (workdir / "bridge.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["publisher_id"] == "hall2-bridge"  # the one ./certs is issued for
    assert "Server" not in [g["name"] for g in doc["writer_groups"]]
    names = [f["name"] for f in _fields(doc)] + [
        n["field"] for n in doc["write_back"]["writable_nodes"]
    ]
    assert not [n for n in names if "Session" in n or "Subscription" in n or "Diagnostics" in n]
    # what map knew is in the file: the broker, the PKI of ./certs, the browse's security
    assert (doc["mqtt"]["host"], doc["mqtt"]["port"]) == (broker.host, broker.port)
    assert doc["mqtt"]["tls"] | {"enabled": True} == {
        "enabled": True,
        "ca": "certs/ca.pem",
        "certificate": "certs/bridge-mqtt.pem",
        "private_key": "certs/bridge-mqtt.key",
        "verify": True,
    }
    assert doc["metadata_signing"] == {
        "private_key": "certs/metadata-signer.key",
        "certificate_chain": "certs/metadata-signer.pem",
    }
    assert "# the development PKI of `opcua-mqtt certs` in certs/" in text
    assert (doc["opcua"]["security_policy"], doc["opcua"]["security_mode"]) == ("None", "None")
    checked = _cli("validate", "bridge.yaml", cwd=workdir)
    assert checked.returncode == 0, checked.stdout
    warnings = [line for line in checked.stdout.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "security policy None" in warnings[0]  # asked for

    # hand edits survive a re-map of the same server: the file comes back as edited
    doc["defaults"]["queue_size"] = 5
    doc["writer_groups"][0]["publishing_interval_ms"] = 300
    double = next(f for f in _fields(doc) if f.get("builtin_type") == "Double")
    double["deadband"] = {"type": "absolute", "value": 0.5}
    doc["write_back"]["allow"] = [doc["write_back"]["writable_nodes"][0]["field"]]
    (workdir / "bridge.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    remapped = _cli(
        "map", endpoint, "--security-policy", "None", "-o", "bridge.yaml", "--force", cwd=workdir
    )
    assert remapped.returncode == 0, remapped.stderr
    assert yaml.safe_load((workdir / "bridge.yaml").read_text()) == doc

    bridge = bridges.start(workdir / "bridge.yaml")
    listened = _cli(
        "listen",
        f"{broker.host}:{broker.port}",
        "--ca",
        "certs/ca.pem",
        "--cert",
        "certs/mqtt-client.pem",
        "--key",
        "certs/mqtt-client.key",
        "--trust",
        "certs/ca.pem",
        "--format",
        "json",
        "--count",
        "3",
        "--timeout",
        "30",
        cwd=workdir,
        timeout=90,
    )
    assert listened.returncode == 0, listened.stderr + bridge.text()[-3000:]
    assert '"state":"verified"' in listened.stdout
    messages = [r.get("message", "") for r in bridge.records()]
    running = [m for m in messages if m.startswith("bridge running:")]
    assert len(running) == 1 and running[0].endswith(" monitored, 0 refused by the server)"), (
        bridge.text()[-3000:]
    )
    refused = [m for m in messages if "refused by the server" in m and m not in running]
    assert refused == [], refused[:5]
    assert len(_fields(doc)) > 0
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(timeout=15) == 0, bridge.text()[-3000:]

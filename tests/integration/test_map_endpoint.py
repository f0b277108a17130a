"""``opcua-mqtt map`` against a real OPC UA server: mapping the endpoint directly gives the same
file as mapping what ``browse`` saved, and the ids survive a second run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from opcua_mqtt.core.config import load_config
from tests.support.opcua_server import OpcUaTestServer

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=180, check=False, cwd=cwd
    )


def test_map_endpoint_equals_map_of_the_browse_file(
    small_opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    endpoint = small_opcua_server.endpoint
    insecure = ("--security-policy", "None")
    browsed = run("browse", endpoint, *insecure, "-o", "plc.json", cwd=tmp_path)
    assert browsed.returncode == 0, browsed.stderr
    from_file = run("map", "plc.json", *insecure, "-o", "a.yaml", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    direct = run("map", endpoint, *insecure, "-o", "b.yaml", cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr
    a = (tmp_path / "a.yaml").read_text(encoding="utf-8")
    b = (tmp_path / "b.yaml").read_text(encoding="utf-8")
    assert a.replace("validate a.yaml", "validate b.yaml") == b

    config = load_config(b, "b.yaml")
    assert config.opcua.server_uri == small_opcua_server.application_uri
    assert (config.opcua.security_policy, config.opcua.security_mode) == ("None", "None")
    plant = {
        v["nodeid"].lower()
        for v in small_opcua_server.variables
        if v["nodeid"].startswith(f"nsu={small_opcua_server.namespace_uri};")
    }
    mapped = {f.node_id.lower() for _, _, f in config.fields()}
    assert plant <= mapped
    assert run("validate", "b.yaml", cwd=tmp_path).returncode == 0

    again = run("map", endpoint, *insecure, "-o", "b.yaml", "--force", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.yaml").read_text(encoding="utf-8") == b
    assert yaml.safe_load(b)["write_back"]["enabled"] is False

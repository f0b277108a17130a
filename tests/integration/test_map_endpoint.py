"""``opcua-mqtt map`` against a real OPC UA server: mapping the endpoint directly gives the same
file as mapping what ``browse`` saved, and the ids survive a second run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml
from asyncua import Client

from opcua_mqtt.core.config.check import load_config
from tests.support.opcua_server import OpcUaTestServer, parse_nodeid

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


def test_a_variable_added_on_the_server_adds_one_field_and_moves_no_id(
    small_opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    endpoint = small_opcua_server.endpoint
    insecure = ("--security-policy", "None")
    assert run("map", endpoint, *insecure, "-o", "before.yaml", cwd=tmp_path).returncode == 0

    async def add() -> None:
        async with Client(endpoint, timeout=10) as client:
            ns = await client.get_namespace_array()
            control = client.get_node(
                parse_nodeid(small_opcua_server.manifest["control"]["object"], ns)
            )
            method = parse_nodeid(small_opcua_server.manifest["control"]["AddVariable"], ns)
            await control.call_method(method, "AddedLater")

    asyncio.run(add())
    assert run("map", endpoint, *insecure, "-o", "after.yaml", cwd=tmp_path).returncode == 0
    before = load_config((tmp_path / "before.yaml").read_text(), "before.yaml")
    after = load_config((tmp_path / "after.yaml").read_text(), "after.yaml")

    def ids(config: object) -> dict[str, tuple[int, str]]:
        return {
            f.node_id: (w.dataset_writer_id, str(f.dataset_field_id)) for _, w, f in config.fields()
        }  # type: ignore[attr-defined]

    old, new = ids(before), ids(after)
    assert set(new) - set(old) == {small_opcua_server.nodeid("Plant.Dynamic.AddedLater")}
    assert set(old) <= set(new)
    assert {k: new[k] for k in old} == old  # no writer id and no field id moved

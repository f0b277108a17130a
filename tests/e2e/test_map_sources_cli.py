"""``opcua-mqtt map a.json b.json``: one configuration from the browse files of two servers, one
source each, with the ids each server gets when mapped alone."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.bridge import run_cli as run
from opcua_mqtt.core.config.check import load_config
from tests.e2e.test_map_cli import browse_document


def _browse_file(tmp_path: Path, host: str) -> Path:
    doc = browse_document()
    doc["endpoint"] = f"opc.tcp://{host}:4840"
    doc["server_uri"] = f"urn:plant:{host}"
    path = tmp_path / f"{host}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_map_of_two_browse_files_gives_one_source_per_server(tmp_path: Path) -> None:
    plc1, plc2 = _browse_file(tmp_path, "plc1"), _browse_file(tmp_path, "plc2")
    both, alone = tmp_path / "plant.yaml", tmp_path / "plc1.yaml"
    result = run("map", str(plc1), str(plc2), "-o", str(both))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("mapped 8 of 8 variables into 4 writer groups")
    assert run("map", str(plc1), "-o", str(alone)).returncode == 0
    assert run("validate", str(both)).returncode == 0

    doc = yaml.safe_load(both.read_text(encoding="utf-8"))
    assert "opcua" not in doc
    assert [(s["name"], s["endpoint"], s["server_uri"]) for s in doc["sources"]] == [
        ("plc1", "opc.tcp://plc1:4840", "urn:plant:plc1"),
        ("plc2", "opc.tcp://plc2:4840", "urn:plant:plc2"),
    ]
    assert [(g["name"], g["source"]) for g in doc["writer_groups"]] == [
        ("plc1_Line1", "plc1"),
        ("plc1_Utilities", "plc1"),
        ("plc2_Line1", "plc2"),
        ("plc2_Utilities", "plc2"),
    ]
    assert [n["field"] for n in doc["write_back"]["writable_nodes"]] == [
        "plc1_Line1/Filler/Setpoint",
        "plc2_Line1/Filler/Setpoint",
    ]
    merged, single = (
        load_config(both.read_text(), "plant.yaml"),
        load_config(alone.read_text(), "plc1.yaml"),
    )
    # the first server's fields keep the ids of mapping it alone; the second's differ from them
    ids = {
        (g.name.removeprefix("plc1_"), w.name, f.name): f.dataset_field_id
        for g, w, f in merged.fields()
        if g.source == "plc1"
    }
    assert ids == {(g.name, w.name, f.name): f.dataset_field_id for g, w, f in single.fields()}
    others = {f.dataset_field_id for g, _, f in merged.fields() if g.source == "plc2"}
    assert len(others) == 4 and not others & set(ids.values())
    writer_ids = [w.dataset_writer_id for _, w in merged.writers()]
    assert len(set(writer_ids)) == len(writer_ids) == 6

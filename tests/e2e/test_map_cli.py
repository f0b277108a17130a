"""``opcua-mqtt map`` as a user runs it: a browse file (or an endpoint) in, a bridge
configuration, messages and exit codes out. Tests of what the mapping works out from its
options run the command in this process (``here``); exit codes, messages and the flows a user
follows run the real process (``run``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.bridge import run_cli as run
from harness.bridge import run_cli_here as here
from opcua_mqtt.core.config.check import load_config

NS = "urn:plant"


def _node(path: str, node_class: str, parent: str | None, **kw: Any) -> dict[str, Any]:
    parts = path.split("/")
    return {
        "node_id": kw.pop("node_id", f"nsu={NS};s={'.'.join(parts)}"),
        "node_class": node_class,
        "browse_name": parts[-1],
        "display_name": parts[-1],
        "browse_path": parts,
        "parent_node_id": parent or "i=85",
        **kw,
    }


def _var(path: str, parent: str, writable: bool = False) -> dict[str, Any]:
    return _node(
        path,
        "Variable",
        f"nsu={NS};s={parent}",
        data_type="i=11",
        data_type_name="Double",
        builtin_type=11,
        value_rank=-1,
        readable=True,
        writable=writable,
    )


def browse_document() -> dict[str, Any]:
    return {
        "format": "opcua-mqtt-browse/1",
        "endpoint": "opc.tcp://plc1:4840",
        "server_uri": "urn:plant:plc1",
        "namespaces": ["http://opcfoundation.org/UA/", NS],
        "start_node": "i=85",
        "nodes": [
            _node("Line1", "Object", None),
            _node("Line1/Filler", "Object", f"nsu={NS};s=Line1"),
            _var("Line1/Filler/Temperature", "Line1.Filler"),
            _var("Line1/Filler/Setpoint", "Line1.Filler", writable=True),
            _node("Line1/Capper", "Object", f"nsu={NS};s=Line1"),
            _var("Line1/Capper/Torque", "Line1.Capper"),
            _node("Utilities", "Object", None),
            _var("Utilities/Pressure", "Utilities"),
        ],
    }


def browse_file(tmp_path: Path, suffix: str = ".json") -> Path:
    path = tmp_path / f"plc1{suffix}"
    doc = browse_document()
    text = json.dumps(doc, indent=2) if suffix == ".json" else yaml.safe_dump(doc)
    path.write_text(text, encoding="utf-8")
    return path


def test_map_writes_a_configuration_that_validates(tmp_path: Path) -> None:
    source = browse_file(tmp_path)
    out = tmp_path / "bridge.yaml"
    assert run("certs", cwd=tmp_path).returncode == 0  # ./certs: map points TLS and signing there
    result = run("map", str(source), "-o", str(out), "--broker", "mqtt.plant:8884", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"mapped 4 of 4 variables into 2 writer groups, 3 writers (1 writable; write-back "
        f"disabled) -> {out}"
    )
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# opcua-mqtt bridge configuration, made by `opcua-mqtt map`")
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["writer_groups"]] == ["Line1", "Utilities"]
    assert doc["write_back"] == {
        "enabled": False,
        "allow": [],
        "writable_nodes": [
            {
                "node_id": f"nsu={NS};s=Line1.Filler.Setpoint",
                "field": "Line1/Filler/Setpoint",
                "builtin_type": "Double",
            }
        ],
    }
    assert doc["mqtt"]["host"] == "mqtt.plant" and doc["mqtt"]["port"] == 8884
    assert doc["mqtt"]["tls"]["ca"] == "certs/ca.pem"
    assert doc["metadata_signing"]["private_key"] == "certs/metadata-signer.key"
    assert doc["opcua"]["certificate"] == "certs/opcua-client.pem"
    check = run("validate", "--strict", str(out))
    assert check.returncode == 0, check.stdout


def test_map_twice_gives_identical_files_and_json_by_suffix(tmp_path: Path) -> None:
    source = browse_file(tmp_path)
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert here("map", str(source), "-o", str(first)).returncode == 0
    assert here("map", str(source), "-o", str(second)).returncode == 0
    assert first.read_text().replace("a.yaml", "b.yaml") == second.read_text()
    as_json = tmp_path / "c.json"
    assert here("map", str(source), "-o", str(as_json)).returncode == 0
    assert json.loads(as_json.read_text()) == yaml.safe_load(first.read_text())
    stdout = here("map", str(source), "--format", "json")
    assert stdout.returncode == 0 and stdout.stdout == as_json.read_text()


def test_map_reads_a_yaml_browse_file_to_stdout(tmp_path: Path) -> None:
    result = here("map", str(browse_file(tmp_path, ".yaml")), "--publishing-interval", "250")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["defaults"]["publishing_interval_ms"] == 250


def test_map_writes_a_queue_size_only_when_given(tmp_path: Path) -> None:
    """Not set, the bridge picks it per field (1 where sampling is no faster than publishing)."""
    source = str(browse_file(tmp_path))
    assert "queue_size" not in yaml.safe_load(here("map", source).stdout)["defaults"]
    given = here("map", source, "--queue-size", "5")
    assert given.returncode == 0, given.stderr
    assert yaml.safe_load(given.stdout)["defaults"]["queue_size"] == 5


def test_map_options_shape_the_result(tmp_path: Path) -> None:
    result = here(
        "map",
        str(browse_file(tmp_path)),
        "--include",
        "Line1/**",
        "--exclude",
        "**/Torque",
        "--group-by",
        "parent",
        "--key-frame-count",
        "1",
        "--keep-alive",
        "5000",
        "--encoding",
        "verbose",
        "--sampling-interval",
        "100",
        "--publisher-id",
        "line1",
    )
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["publisher_id"] == "line1"
    assert [(g["name"], [w["name"] for w in g["writers"]]) for g in doc["writer_groups"]] == [
        ("Filler", ["Filler"])
    ]
    assert (
        doc["defaults"]
        | {
            "key_frame_count": 1,
            "keep_alive_ms": 5000,
            "encoding": "verbose",
            "sampling_interval_ms": 100,
        }
        == doc["defaults"]
    )


def test_map_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "bridge.yaml"
    out.write_text("precious\n")
    result = run("map", str(browse_file(tmp_path)), "-o", str(out))
    assert result.returncode == 2
    assert "already exists; use --force" in result.stderr
    assert out.read_text() == "precious\n"
    # --force keeps a file's hand edits, so it will not replace a file it cannot read as one
    forced = run("map", str(browse_file(tmp_path)), "-o", str(out), "--force")
    assert forced.returncode == 1
    assert f"error: {out} does not validate (see above): its hand edits cannot be kept" in (
        forced.stderr
    )
    assert "hint: fix it, or delete it to map afresh" in forced.stderr
    assert out.read_text() == "precious\n"
    out.unlink()
    assert run("map", str(browse_file(tmp_path)), "-o", str(out)).returncode == 0
    assert run("map", str(browse_file(tmp_path)), "-o", str(out), "--force").returncode == 0


def test_remap_with_force_keeps_hand_edits_and_adds_new_nodes(tmp_path: Path) -> None:
    source = browse_file(tmp_path)
    out = tmp_path / "bridge.yaml"
    assert here("map", str(source), "-o", str(out)).returncode == 0
    first = yaml.safe_load(out.read_text())
    edited = yaml.safe_load(out.read_text())
    edited["publisher_id"] = "hall2"
    edited["opcua"] |= {"username": "bridge", "timeout_s": 3}
    edited["mqtt"] |= {"host": "broker.plant", "port": 8884}
    edited["mqtt"]["tls"] |= {"ca": "/etc/plant/ca.pem"}
    edited["metadata_signing"] = {
        "private_key": "/etc/plant/signer.key",
        "certificate_chain": "/etc/plant/signer.pem",
    }
    edited["defaults"]["queue_size"] = 3
    edited["write_back"] |= {"enabled": True, "allow": ["Line1/Filler/Setpoint"], "burst": 5}
    edited["writer_groups"][0]["publishing_interval_ms"] = 250
    filler = edited["writer_groups"][0]["writers"][1]
    assert filler["name"] == "Filler"
    filler["key_frame_count"] = 1
    filler["fields"][1]["deadband"] = {"type": "absolute", "value": 0.5}
    assert filler["fields"][1]["name"] == "Temperature"
    edited["metrics"] = {"port": 9464}
    out.write_text(yaml.safe_dump(edited, sort_keys=False))
    grown = browse_document()
    grown["nodes"].append(_var("Line1/Filler/Level", "Line1.Filler"))
    source.write_text(json.dumps(grown))

    result = here("map", str(source), "-o", str(out), "--force", "--sampling-interval", "100")
    assert result.returncode == 0, result.stderr
    assert "(1 writable; write-back enabled)" in result.stderr
    again = yaml.safe_load(out.read_text())
    new_field = {
        "name": "Level",
        "node_id": f"nsu={NS};s=Line1.Filler.Level",
        "dataset_field_id": again["writer_groups"][0]["writers"][1]["fields"][0][
            "dataset_field_id"
        ],
        "builtin_type": "Double",
        "data_type": "i=11",
    }
    expected = json.loads(json.dumps(edited))
    expected["defaults"]["sampling_interval_ms"] = 100  # the command line wins
    expected["metrics"]["host"] = "127.0.0.1"  # sections are written out in full
    expected["writer_groups"][0]["writers"][1]["fields"].insert(0, new_field)
    assert again == expected
    ids = {
        f["node_id"]: f["dataset_field_id"]
        for g in first["writer_groups"]
        for w in g["writers"]
        for f in w["fields"]
    }
    assert (
        ids.items()
        <= {
            f["node_id"]: f["dataset_field_id"]
            for g in again["writer_groups"]
            for w in g["writers"]
            for f in w["fields"]
        }.items()
    )
    assert here("validate", str(out)).returncode == 0

    moved = here("map", str(source), "-o", str(out), "--force", "--broker", "mqtt.new")
    assert moved.returncode == 0, moved.stderr
    mqtt = yaml.safe_load(out.read_text())["mqtt"]
    assert (mqtt["host"], mqtt["port"], mqtt["tls"]["ca"]) == (
        "mqtt.new",
        8883,
        "/etc/plant/ca.pem",
    )


def test_map_certs_option_points_at_the_folder_relative_to_the_file(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert run("certs", "--dir", str(pki)).returncode == 0
    (tmp_path / "conf").mkdir()
    source = str(browse_file(tmp_path))
    result = run(
        "map",
        source,
        "--certs",
        "pki",
        "--mqtt-protocol",
        "3.1.1",
        "-o",
        "conf/bridge.yaml",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "conf" / "bridge.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["mqtt"]["protocol"] == "3.1.1"
    assert doc["mqtt"]["tls"] == {
        "enabled": True,
        "ca": "../pki/ca.pem",
        "certificate": "../pki/bridge-mqtt.pem",
        "private_key": "../pki/bridge-mqtt.key",
        "verify": True,
    }
    assert doc["metadata_signing"] == {
        "private_key": "../pki/metadata-signer.key",
        "certificate_chain": "../pki/metadata-signer.pem",
    }
    assert (doc["opcua"]["certificate"], doc["opcua"]["trust_dir"]) == (
        "../pki/opcua-client.pem",
        "../pki/trusted-servers",
    )
    assert text.count("# the development PKI of `opcua-mqtt certs` in pki/") == 2
    empty = run("map", source, "--certs", str(tmp_path / "conf"))
    assert empty.returncode == 2
    assert f"error: {tmp_path / 'conf'}: no ca.pem (expected the files of `opcua-mqtt certs`)" in (
        empty.stderr
    )
    no_pki = run("map", source, cwd=tmp_path)  # no ./certs: nothing to point at
    assert no_pki.returncode == 0
    assert yaml.safe_load(no_pki.stdout)["metadata_signing"]["private_key"] is None
    assert "<map>: metadata_signing: warning: metadata is not signed" in no_pki.stderr


def test_map_when_nothing_matches_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bridge.yaml"
    result = run("map", str(browse_file(tmp_path)), "--include", "Nowhere/**", "-o", str(out))
    assert result.returncode == 1
    assert "error: no variable matched (4 in" in result.stderr
    assert not out.exists()


def test_map_refuses_to_write_an_invalid_configuration(tmp_path: Path) -> None:
    out = tmp_path / "bridge.yaml"
    result = run("map", str(browse_file(tmp_path)), "--publisher-id", "a/b", "-o", str(out))
    assert result.returncode == 1
    assert "<map>: publisher_id: expected a non-empty name without '/'" in result.stderr
    assert "refusing to write an invalid configuration" in result.stderr
    assert not out.exists()


def test_map_bad_sources_and_options_exit_2(tmp_path: Path) -> None:
    assert run("map", str(tmp_path / "missing.json")).returncode == 2
    not_browse = tmp_path / "config.json"
    not_browse.write_text('{"version": 1}')
    result = run("map", str(not_browse))
    assert result.returncode == 2
    assert "not an opcua-mqtt browse result (format opcua-mqtt-browse/1)" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "not valid JSON" in run("map", str(broken)).stderr
    wrong_types = browse_document()
    wrong_types["nodes"][2]["builtin_type"] = "Double"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(wrong_types))
    result = run("map", str(wrong))
    assert result.returncode == 2 and "malformed browse result" in result.stderr
    source = str(browse_file(tmp_path))
    assert run("map", source, "--node-id", "re:(").returncode == 2
    assert run("map", source, "--publishing-interval", "0").returncode == 2
    assert run("map", source, "--queue-size", "70000").returncode == 2


def test_map_an_unreachable_endpoint_exits_3(tmp_path: Path) -> None:
    result = run(
        "map",
        "opc.tcp://127.0.0.1:1",
        "--security-policy",
        "None",
        "--timeout",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "error:" in result.stderr


def test_help_texts_have_examples() -> None:
    for command in ("map", "validate"):
        result = run(command, "--help")
        assert result.returncode == 0
        assert "Examples:" in result.stdout and f"opcua-mqtt {command} " in result.stdout


@pytest.mark.parametrize("endpoint", ["opc.tcp//127.0.0.1:4840", "opc.tcp:/127.0.0.1:4840"])
def test_map_of_a_mistyped_endpoint_is_a_usage_error_not_a_missing_file(
    tmp_path: Path, endpoint: str
) -> None:
    mapped = run("map", endpoint, "--security-policy", "None", cwd=tmp_path)
    assert mapped.returncode == 2 and "Traceback" not in mapped.stderr
    assert [line for line in mapped.stderr.splitlines() if line.startswith("Error: ")] == [
        f"Error: {endpoint!r} is not an endpoint URL: expected opc.tcp://host[:port][/path]"
    ]


def test_map_topic_template_fills_in_uns_queue_names(tmp_path: Path) -> None:
    """{path} becomes the browse path of each writer's object; the uns variables and the
    names are left for the loader, which expands them (docs/uns.md)."""
    out = tmp_path / "bridge.yaml"
    result = here(
        "map", str(browse_file(tmp_path)), "-o", str(out), "--uns", "enterprise=acme",
        "--uns", "site=site1", "--topic-template", "{enterprise}/{site}/{path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert doc["uns"] == {"enterprise": "acme", "site": "site1"}
    writers = {w["name"]: w for g in doc["writer_groups"] for w in g["writers"]}
    assert writers["Filler"]["queue_name"] == "{enterprise}/{site}/Line1/Filler"
    assert writers["Filler"]["metadata_queue_name"] == "{enterprise}/{site}/Line1/Filler/metadata"
    assert writers["Utilities"]["queue_name"] == "{enterprise}/{site}/Utilities"
    config = load_config(out.read_text(encoding="utf-8"), str(out))
    topics = {w.name: (w.queue_name, w.metadata_queue_name) for _, w in config.writers()}
    assert topics["Capper"] == ("acme/site1/Line1/Capper", "acme/site1/Line1/Capper/metadata")


def test_map_topic_template_without_path_goes_on_the_groups(tmp_path: Path) -> None:
    result = here(
        "map", str(browse_file(tmp_path)), "--topic-template", "plant/{group}/{writer}",
        "--metadata-topic-template", "plant/meta/{group}/{writer}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    for group in doc["writer_groups"]:
        assert group["queue_name"] == "plant/{group}/{writer}"
        assert group["metadata_queue_name"] == "plant/meta/{group}/{writer}"
        assert all("queue_name" not in w for w in group["writers"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topic-template", "{enterprise/x"], "'{' that is not part of a {variable}"),
        (["--uns", "Site=x", "--topic-template", "a/{path}"], "expected NAME=VALUE"),
        (["--metadata-topic-template", "a/{path}"], "needs --topic-template"),
    ],
)
def test_map_topic_template_usage_errors_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("map", str(browse_file(tmp_path)), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_map_topic_template_with_an_unknown_variable_is_refused_by_the_loader(
    tmp_path: Path,
) -> None:
    result = run("map", str(browse_file(tmp_path)), "--topic-template", "{enterprise}/{path}")
    assert result.returncode == 1
    assert "unknown template variable {enterprise}" in result.stderr


def test_remap_with_a_new_topic_template_replaces_the_queue_names(tmp_path: Path) -> None:
    """--force keeps hand edits, but what the command line gives wins: a new template and new
    uns values replace the old ones; without them the old ones stay."""
    source, out = str(browse_file(tmp_path)), tmp_path / "bridge.yaml"
    first = ["--uns", "enterprise=a", "--topic-template", "{enterprise}/{path}"]
    assert here("map", source, "-o", str(out), *first).returncode == 0
    second = ["--uns", "enterprise=b", "--topic-template", "q/{enterprise}/{path}"]
    assert here("map", source, "-o", str(out), "--force", *second).returncode == 0
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert doc["uns"] == {"enterprise": "b"}
    filler = doc["writer_groups"][0]["writers"][1]
    assert filler["queue_name"] == "q/{enterprise}/Line1/Filler"
    assert here("map", source, "-o", str(out), "--force").returncode == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == doc

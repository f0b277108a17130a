"""The configuration file: schema, the rules beyond it, messages that point at the mistake."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import textwrap
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.config.check import (
    check_config,
    check_config_data,
    config_from_dict,
    load_config,
)
from opcua_mqtt.core.config.model import (
    BUILTIN_TYPES,
    Config,
    ConfigError,
    ConfigIssue,
    Deadband,
    MetadataSigningConfig,
    MqttConfig,
    OpcUaConfig,
    PublishingDefaults,
    StatusConfig,
    TlsConfig,
    WriteBackConfig,
    derive_field_id,
)
from opcua_mqtt.core.config.report import folded
from opcua_mqtt.core.config.text import dump_json, dump_yaml
from opcua_mqtt.core.schema_validation import load_schema, validator
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.example.yaml"
NS = "urn:plant"


def base() -> dict[str, Any]:
    """A small valid configuration (as the file's structure)."""
    return {
        "version": 1,
        "publisher_id": "plant1",
        "opcua": {"endpoint": "opc.tcp://127.0.0.1:4840", "server_uri": "urn:plant:server"},
        "metadata_signing": {
            "private_key": "certs/metadata-signer.key",
            "certificate_chain": "certs/metadata-signer.pem",
        },
        "writer_groups": [
            {
                "name": "Line1",
                "writers": [
                    {
                        "name": "Filler",
                        "dataset_writer_id": 7,
                        "fields": [
                            {"name": "Temp", "node_id": f"nsu={NS};s=Line1.Filler.Temp"},
                            {"name": "Level", "node_id": f"nsu={NS};s=Line1.Filler.Level"},
                        ],
                    },
                    {
                        "name": "Capper",
                        "dataset_writer_id": 8,
                        "fields": [{"name": "Torque", "node_id": f"nsu={NS};i=5003"}],
                    },
                ],
            }
        ],
    }


def issues_of(doc: Any) -> list[ConfigIssue]:
    return check_config_data(doc, "c.yaml").issues


def messages(doc: Any, severity: str = "error") -> dict[str, str]:
    """path -> message of the issues of one severity."""
    return {i.path: i.message for i in issues_of(doc) if i.severity == severity}


def yaml_issues(text: str, name: str = "bridge.yaml") -> list[ConfigIssue]:
    return check_config(textwrap.dedent(text), name).issues


# --------------------------------------------------------------------------------------- schema


def _walk_options(schema: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every option (object property) of the schema, with the path it is documented under."""
    out = []
    defs = load_schema("config")["$defs"]
    stack = [(where, schema)]
    seen: set[str] = set()
    while stack:
        path, node = stack.pop()
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                stack.append((path, defs[name]))
        for name, sub in node.get("properties", {}).items():
            out.append((f"{path}/{name}", sub | {"_required": name in node.get("required", [])}))
            stack.append((f"{path}/{name}", sub))
        if isinstance(node.get("items"), dict):
            stack.append((f"{path}/*", node["items"]))
    return out


def test_schema_is_valid_draft_2020_12_with_the_stable_id() -> None:
    schema = load_schema("config")
    assert schema["$id"] == "https://opcua-mqtt.dev/schemas/config.schema.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator("config")  # check_schema runs here


#: Options of which a file gives exactly one (core/config/rules.py): required, but not alone.
_ONE_OF_TWO = ("/opcua", "/sources")


def test_every_option_has_a_description_and_a_default_unless_required() -> None:
    options = _walk_options(load_schema("config"))
    assert len(options) > 80
    for path, option in options:
        assert option.get("description"), f"{path} has no description"
        if not option["_required"] and path not in _ONE_OF_TWO:
            assert "default" in option, f"{path} has no default"
            validator("config").evolve(schema=option).validate(option["default"])


def test_every_object_rejects_unknown_members() -> None:
    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node] if "properties" in node else []
            inner = [v for k, v in node.items() if k not in ("if", "then")]  # conditions
            return found + [o for v in inner for o in objects(v)]
        if isinstance(node, list):
            return [o for v in node for o in objects(v)]
        return []

    for obj in objects(load_schema("config")):
        assert obj.get("additionalProperties") is False, sorted(obj["properties"])


def test_python_defaults_are_the_schema_defaults() -> None:
    props = load_schema("config")["properties"]
    defs = load_schema("config")["$defs"]

    def same(section: dict[str, Any], instance: Any) -> None:
        for name, value in dataclasses.asdict(instance).items():
            if name in section and section[name].get("default", {}) != {}:  # not sections
                expected = section[name]["default"]
                got = list(value) if isinstance(value, tuple) else value
                assert got == expected, name

    same(props["defaults"]["properties"], PublishingDefaults())
    same(defs["source"]["properties"], OpcUaConfig(endpoint="opc.tcp://x:1"))
    same(props["mqtt"]["properties"], MqttConfig())
    same(props["mqtt"]["properties"]["tls"]["properties"], TlsConfig())
    same(props["metadata_signing"]["properties"], MetadataSigningConfig())
    same(props["write_back"]["properties"], WriteBackConfig())
    same(props["status"]["properties"], StatusConfig())
    assert props["write_back"]["properties"]["enabled"]["default"] is False
    tls = props["mqtt"]["properties"]["tls"]["properties"]
    assert tls["enabled"]["default"] is True and tls["verify"]["default"] is True


def test_builtin_type_names_are_part_6_in_order() -> None:
    from asyncua import ua

    assert [ua.VariantType(i).name for i in range(1, 26)] == list(BUILTIN_TYPES[1:])
    field = load_schema("config")["$defs"]["field"]["properties"]["builtin_type"]
    assert field["enum"] == [*BUILTIN_TYPES[1:], None]


def test_the_example_validates_without_warnings() -> None:
    result = check_config(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    assert result.ok, [str(i) for i in result.issues]
    assert result.issues == []
    assert result.config is not None
    assert result.config.write_back.enabled is False


# ----------------------------------------------------------------------------------- resolving


def test_defaults_fill_a_minimal_file() -> None:
    doc = base()
    del doc["metadata_signing"]
    config = config_from_dict(doc)
    assert config.mqtt.tls.enabled and config.mqtt.tls.verify
    assert config.mqtt.port == 8883 and config.mqtt.protocol == "5"
    assert config.opcua.security_policy == "Basic256Sha256"
    assert config.opcua.security_mode == "SignAndEncrypt"
    assert not config.write_back.enabled and config.write_back.allow == ()
    assert not config.metadata_signing.enabled
    assert messages(doc, "warning") == {
        "metadata_signing": "metadata is not signed: subscribers cannot tell it from forged "
        "metadata (docs/signing.md; `opcua-mqtt certs` makes a signing key to try it with)"
    }
    group = config.writer_groups[0]
    assert group.publishing_interval_ms == 1000 and group.qos == 1
    writer = group.writers[0]
    assert (writer.key_frame_count, writer.keep_alive_ms, writer.encoding) == (10, 10000, "compact")
    assert writer.field_content == ("status", "source_timestamp")
    field = writer.fields[0]
    assert (field.sampling_interval_ms, field.queue_size) == (500, None)
    assert field.monitored_queue_size(group.publishing_interval_ms) == 10  # sampled faster
    assert field.deadband == Deadband("none", 0)
    assert (field.value_rank, field.array_dimensions, field.builtin_type) == (-1, (), None)


def test_fields_share_the_objects_they_repeat() -> None:
    """The configuration lives as long as the bridge: at 100,000 fields a copy per field of
    what they repeat (type names, sampling intervals, deadbands, no overrides) is tens of MB.
    Parsed from YAML, as a file is, each field has its own copy of every string."""
    doc = base()
    for f in doc["writer_groups"][0]["writers"][0]["fields"]:
        f.update(builtin_type="Double", data_type="i=11")
    doc["defaults"] = {"sampling_interval_ms": 250.5}
    result = check_config(yaml.safe_dump(doc), "bridge.yaml")
    assert result.config is not None
    temp, level, torque = (f for _, _, f in result.config.fields())
    assert temp.builtin_type == "Double" and temp.builtin_type is level.builtin_type
    assert temp.data_type == "i=11" and temp.data_type is level.data_type
    assert temp.sampling_interval_ms == 250.5
    assert temp.sampling_interval_ms is level.sampling_interval_ms is torque.sampling_interval_ms
    assert temp.deadband is level.deadband is torque.deadband
    assert temp.overrides is torque.overrides


def test_an_unset_queue_size_is_one_where_sampling_is_no_faster_than_publishing() -> None:
    """OPC 10000-4 §5.13.1.5: a queue of one always holds the newest value, all the writer
    sends per publishing interval; a field sampled faster keeps 10; a set size is kept."""
    doc = base()
    group = doc["writer_groups"][0]
    group["publishing_interval_ms"] = 200
    filler, other = group["writers"]
    filler["fields"][0]["sampling_interval_ms"] = 200  # as fast as published
    filler["fields"][1]["sampling_interval_ms"] = 1000  # slower
    other["sampling_interval_ms"] = 100  # faster
    config = config_from_dict(doc)
    sizes = [f.monitored_queue_size(200) for _, _, f in config.fields()]
    assert sizes == [1, 1, 10]
    assert all(f.queue_size is None for _, _, f in config.fields())
    assert "queue_size" not in config.defaults.to_json()
    doc["defaults"] = {"queue_size": 4}
    other["fields"][0]["queue_size"] = 2
    config = config_from_dict(doc)
    assert [f.monitored_queue_size(200) for _, _, f in config.fields()] == [4, 4, 2]
    assert config.defaults.to_json()["queue_size"] == 4


def test_overrides_fall_back_field_writer_group_defaults() -> None:
    doc = base()
    doc["defaults"] = {"sampling_interval_ms": 400, "queue_size": 3, "key_frame_count": 5}
    group = doc["writer_groups"][0]
    group |= {"sampling_interval_ms": 300, "publishing_interval_ms": 250, "qos": 0}
    filler = group["writers"][0]
    filler |= {"sampling_interval_ms": 200, "key_frame_count": 1, "deadband": None}
    filler["fields"][0] |= {
        "sampling_interval_ms": 100,
        "deadband": {"type": "percent", "value": 5},
    }
    config = config_from_dict(doc)
    g = config.writer_groups[0]
    assert (g.publishing_interval_ms, g.qos) == (250, 0)
    f0, f1 = g.writers[0].fields
    assert f0.sampling_interval_ms == 100 and f0.deadband == Deadband("percent", 5)
    assert f1.sampling_interval_ms == 200 and f1.deadband == Deadband()  # null inherits
    assert g.writers[1].fields[0].sampling_interval_ms == 300
    assert all(f.queue_size == 3 for _, _, f in config.fields())
    assert (g.writers[0].key_frame_count, g.writers[1].key_frame_count) == (1, 5)


def test_omitted_field_ids_derive_from_server_uri_else_endpoint() -> None:
    config = config_from_dict(base())
    field = config.writer_groups[0].writers[0].fields[0]
    assert field.dataset_field_id == derive_field_id("urn:plant:server", field.node_id)
    assert field.dataset_field_id.version == 5
    doc = base()
    del doc["opcua"]["server_uri"]
    field2 = config_from_dict(doc).writer_groups[0].writers[0].fields[0]
    assert field2.dataset_field_id == derive_field_id("opc.tcp://127.0.0.1:4840", field.node_id)
    explicit = str(uuid.uuid4())
    doc["writer_groups"][0]["writers"][0]["fields"][0]["dataset_field_id"] = explicit
    field3 = config_from_dict(doc).writer_groups[0].writers[0].fields[0]
    assert field3.dataset_field_id == uuid.UUID(explicit)


def test_to_json_round_trips_through_yaml_and_json() -> None:
    config = load_config(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    doc = config.to_json()
    validator("config").validate(doc)
    assert config_from_dict(doc) == config
    assert load_config(dump_yaml(config), "x.yaml") == config
    assert load_config(dump_json(config), "x.json") == config
    assert dump_yaml(load_config(dump_yaml(config), "x.yaml")) == dump_yaml(config)
    # overrides stay where they were written
    writer = doc["writer_groups"][0]["writers"][0]
    assert writer["key_frame_count"] == 1 and "encoding" not in writer


def test_dump_yaml_writes_a_comment_header() -> None:
    text = dump_yaml(config_from_dict(base()), header="made by a test\nline two")
    assert text.startswith("# made by a test\n# line two\nversion: 1\n")


def test_canonical_node_id_treats_equal_forms_alike() -> None:
    assert canonical_node_id("nsu=urn:a%3Bb;s=X") == canonical_node_id(
        "nsu=urn:a;b;s=X".replace(";b", "%3bb")
    )
    assert canonical_node_id("i=2258") == "i=2258"
    with pytest.raises(ValueError, match="identifier"):
        canonical_node_id("nsu=urn:a;q=1")
    with pytest.raises(ValueError, match="null NodeId"):
        canonical_node_id("i=0")
    with pytest.raises(ValueError, match="empty"):
        canonical_node_id("nsu=;i=1")


# -------------------------------------------------------------------------- schema messages


def test_yaml_error_names_file_line_path_and_what_was_expected() -> None:
    found = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua:
          endpoint: opc.tcp://h:4840
          security_mode: SignEncrypt
        writer_groups: []
        """
    )
    assert [str(i) for i in found] == [
        "bridge.yaml:5: opcua/security_mode: expected one of None, Sign, SignAndEncrypt, "
        "got 'SignEncrypt' (did you mean 'SignAndEncrypt'?)"
    ]


def test_unknown_option_suggests_the_closest_known_one() -> None:
    found = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua: {endpoint: "opc.tcp://h:4840"}
        defaults:
          publising_interval_ms: 100
        writer_groups: []
        """
    )
    (issue,) = found
    assert (issue.line, issue.path) == (5, "defaults/publising_interval_ms")
    assert issue.message == (
        "unknown option 'publising_interval_ms' (did you mean 'publishing_interval_ms'?)"
    )


def test_an_option_in_the_wrong_place_says_where_it_belongs() -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][0]["qos"] = 2
    (message,) = messages(doc).values()
    assert message == "unknown option 'qos' here (it is an option of defaults and writer groups)"


def test_unknown_option_far_from_anything_has_no_suggestion() -> None:
    doc = base()
    doc["mqtt"] = {"zzzz": 1}
    assert messages(doc) == {"mqtt/zzzz": "unknown option 'zzzz'"}


REMOVED = object()  # what put() sets to delete an option


def put(doc: Any, where: str, value: Any) -> None:
    """Set the option at the slash path ``where`` (list items by index, missing mappings made
    on the way) to ``value``, or remove it if ``value`` is :data:`REMOVED`."""
    *parents, last = where.split("/")
    for step in parents:
        doc = doc[int(step)] if isinstance(doc, list) else doc.setdefault(step, {})
    if value is REMOVED:
        del doc[last]
    elif isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def wrong(where: str, value: Any, message: str, *, reported_at: str | None = None) -> Any:
    """A case: ``value`` at ``where`` in base() is refused with ``message``, reported at
    ``reported_at`` (``where`` unless given)."""
    path = where if reported_at is None else reported_at
    shown = "(removed)" if value is REMOVED else repr(value)
    return pytest.param(where, value, path, message, id=f"{where}={shown}")


W0 = "writer_groups/0/writers/0"


@pytest.mark.parametrize(
    ("where", "value", "path", "message"),
    [
        wrong("opcua/endpoint", REMOVED, "missing required option 'endpoint'", reported_at="opcua"),
        wrong("publisher_id", REMOVED, "missing required option 'publisher_id'", reported_at=""),
        wrong(
            "opcua/endpoint",
            "http://h",
            "expected an opc.tcp:// URL such as opc.tcp://plc1:4840, got 'http://h'",
        ),
        wrong("mqtt/port", 0, "expected an integer from 1 to 65535, got 0"),
        wrong("mqtt/port", "8883", "expected an integer, got '8883'"),
        wrong("mqtt/protocol", 5, "expected one of 5, 3.1.1, got 5 (write it as a string: '5')"),
        wrong("mqtt/tls/enabled", "yes", "expected true or false, got 'yes'"),
        wrong(
            "defaults/publishing_interval_ms",
            0,
            "expected a number > 0 and <= 86400000 (24 h), got 0",
        ),
        wrong(
            "defaults/keep_alive_ms",
            86_400_001,
            "expected a number > 0 and <= 86400000 (24 h), got 86400001",
        ),
        wrong("defaults/queue_size", 65536, "expected an integer from 1 to 65535, got 65536"),
        wrong("defaults/qos", 3, "expected an integer from 0 to 2, got 3"),
        wrong("defaults/key_frame_count", 0, "expected an integer from 1 to 4294967295, got 0"),
        wrong(
            "defaults/encoding",
            "json",
            "expected one of compact, verbose, reversible, non-reversible, got 'json'",
        ),
        wrong(
            "defaults/deadband",
            {"type": "percent", "value": 101},
            "expected a number from 0 to 100, got 101",
            reported_at="defaults/deadband/value",
        ),
        wrong(
            "defaults/deadband",
            {"type": "relative"},
            "expected one of none, absolute, percent, got 'relative'",
            reported_at="defaults/deadband/type",
        ),
        wrong(
            "defaults/field_content",
            ["status", "status"],
            "expected each item once, 'status' appears more than once",
        ),
        wrong(
            "defaults/field_content",
            ["sourcetimestamp"],
            "expected one of status, source_timestamp, server_timestamp, source_picoseconds, "
            "server_picoseconds, raw, got 'sourcetimestamp' (did you mean 'source_timestamp'?)",
            reported_at="defaults/field_content/0",
        ),
        wrong(f"{W0}/dataset_writer_id", 65536, "expected an integer from 1 to 65535, got 65536"),
        wrong(f"{W0}/dataset_writer_id", 0, "expected an integer from 1 to 65535, got 0"),
        wrong(f"{W0}/fields", [], "expected at least 1 item, got none"),
        wrong(
            "writer_groups/0/name",
            "a/b",
            "expected a non-empty name without '/' or control characters, got 'a/b'",
        ),
        wrong(
            f"{W0}/fields/0/dataset_field_id",
            "42",
            "expected a Guid such as 6f1c2a9e-0d5b-5c3e-9a41-2f7d8e1b0c55, got '42'",
        ),
        wrong(
            f"{W0}/fields/0/builtin_type",
            "Dobule",
            "expected one of " + ", ".join(BUILTIN_TYPES[1:]) + ", null, got 'Dobule' "
            "(did you mean 'Double'?)",
        ),
        wrong("version", 2, "expected 1, got 2"),
        wrong(
            "opcua/password_env",
            "MY-PASSWORD",
            "expected an environment variable name such as OPCUA_PASSWORD, got 'MY-PASSWORD'",
        ),
        wrong("writer_groups", {}, "expected a list, got a mapping"),
    ],
)
def test_schema_messages_say_what_was_expected(
    where: str, value: Any, path: str, message: str
) -> None:
    doc = base()
    put(doc, where, value)
    assert messages(doc) == {path: message}


def test_a_top_level_that_is_not_a_mapping() -> None:
    (issue,) = yaml_issues("- 1\n")
    assert (issue.path, issue.line, issue.message) == ("", 1, "expected a mapping, got a list")


# ---------------------------------------------------------------------------- parse failures


def test_yaml_syntax_error_has_its_line() -> None:
    (issue,) = yaml_issues("version: 1\nopcua: [1\nmqtt: 2\n")
    assert issue.line == 3 and issue.message.startswith("not valid YAML: ")


def test_json_syntax_error_has_its_line() -> None:
    (issue,) = check_config('{\n  "version": 1,\n  "x": [1,,2]\n}\n', "c.json").issues
    assert issue.line == 3 and issue.message.startswith("not valid JSON: Expecting value")


def test_json_issues_have_lines_when_yaml_can_read_the_json() -> None:
    doc = base()
    doc["mqtt"] = {"port": 0}
    (issue,) = check_config(json.dumps(doc, indent=2), "c.json").issues
    assert issue.path == "mqtt/port"
    assert issue.line is not None
    assert json.dumps(doc, indent=2).splitlines()[issue.line - 1].strip() == '"port": 0'


def test_json_issues_without_a_line_when_yaml_cannot_read_it() -> None:
    doc = base()
    doc["mqtt"] = {"port": 0}
    doc["opcua"]["username"] = "\ud83d"  # a lone surrogate: JSON may escape it, YAML not
    text = json.dumps(doc)
    (issue,) = check_config(text, "c.json").issues
    assert (issue.path, issue.line) == ("mqtt/port", None)
    assert str(issue) == "c.json: mqtt/port: expected an integer from 1 to 65535, got 0"


def test_json_is_sniffed_without_an_extension() -> None:
    doc = base()
    doc["mqtt"] = {"port": 0}
    (issue,) = check_config(json.dumps(doc), "config").issues
    assert issue.path == "mqtt/port"


def test_duplicate_keys_are_errors_in_yaml_and_json() -> None:
    (issue,) = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua: {endpoint: "opc.tcp://h:1"}
        writer_groups: []
        publisher_id: q
        """
    )
    assert (issue.line, issue.path) == (5, "publisher_id")
    assert issue.message == "option 'publisher_id' appears twice (first on line 2)"
    text = '{"version": 1, "version": 1}'
    (issue,) = check_config(text, "c.json").issues
    assert (issue.path, issue.line) == ("version", 1)
    text = '{"opcua": {"a": "\\ud83d", "a": 2}}'  # PyYAML cannot read it: no lines
    (issue,) = check_config(text, "c.json").issues
    assert (issue.path, issue.line, issue.message) == ("opcua/a", None, "option 'a' appears twice")


def test_non_finite_numbers_are_rejected() -> None:
    found = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua: {endpoint: "opc.tcp://h:1", timeout_s: .nan}
        defaults: {deadband: {type: absolute, value: .inf}}
        writer_groups: []
        """
    )
    assert {(i.path, i.line, i.message) for i in found} == {
        ("opcua/timeout_s", 3, "expected a finite number, got nan"),
        ("defaults/deadband/value", 4, "expected a finite number, got inf"),
    }
    text = '{"version": 1, "x": NaN}'
    assert check_config(text, "c.json").issues[0].message == "expected a finite number, got nan"


def test_self_containing_yaml_aliases_and_non_text_keys() -> None:
    found = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua: {endpoint: "opc.tcp://h:1"}
        writer_groups: &groups [*groups]
        defaults: {1: 2}
        """
    )
    assert {(i.path, i.line, i.message) for i in found} == {
        ("writer_groups/0", 4, "a YAML alias that contains itself"),
        ("defaults", 5, "option names are text, got 1"),
    }


def test_a_yaml_alias_bomb_is_refused_without_expanding_it() -> None:
    """The security review's 700-byte file (nine levels of nine aliases: 9**9 values) made
    `validate` use 4.4 GB; it is now one finding, and checking it allocates next to nothing."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    text = "version: 1\npublisher_id: p\n" + "\n".join(levels) + "\n"
    assert len(text.encode()) < 800
    tracemalloc.start()
    try:
        found = check_config(text, "bomb.yaml").issues
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(i.path, i.line) for i in found] == [("", 1)]
    expanded = re.search(r"expand this file to ([\d,]+) values", found[0].message)
    assert expanded is not None and int(expanded[1].replace(",", "")) > 9**9
    assert peak < 20 * 1024 * 1024


def test_shared_defaults_through_aliases_stay_allowed() -> None:
    groups = "\n".join(
        f"  - {{name: g{n}, publishing_interval_ms: 500, writers: *writers}}" for n in range(50)
    )
    text = (
        "version: 1\npublisher_id: p\nopcua: {endpoint: 'opc.tcp://h:1'}\n"
        "shared: &writers [{name: w, fields: [{name: f, node_id: 'nsu=urn:x;s=a'}]}]\n"
        f"writer_groups:\n{groups}\n"
    )
    assert not any("aliases expand" in i.message for i in check_config(text, "c.yaml").issues)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("[" * 5000, "deep.json"),
        ("a: " + "[" * 5000, "deep.yaml"),
        (
            "version: 1\nopcua:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 1500)),
            "deep.yaml",
        ),
    ],
)
def test_absurd_nesting_is_an_issue_not_a_crash(text: str, name: str) -> None:
    result = check_config(text, name)
    assert not result.ok and result.errors


def test_empty_file() -> None:
    (issue,) = check_config("\n", "c.yaml").issues
    assert issue.message.startswith("the file is empty")


def test_config_error_carries_every_issue() -> None:
    doc = base()
    doc["mqtt"] = {"port": 0, "host": ""}
    with pytest.raises(ConfigError) as info:
        config_from_dict(doc, "c.yaml")
    assert len(info.value.errors) == 2
    assert "(and 1 more)" in str(info.value)


# ----------------------------------------------------------------------------- semantic rules


def test_duplicate_writer_group_names() -> None:
    doc = base()
    doc["writer_groups"].append(copy.deepcopy(doc["writer_groups"][0]))
    doc["writer_groups"][1]["writers"][0]["dataset_writer_id"] = 9
    doc["writer_groups"][1]["writers"][1]["dataset_writer_id"] = 10
    assert messages(doc) == {
        "writer_groups/1/name": "writer group name 'Line1' is already used by writer_groups/0/name"
    }


def test_duplicate_writer_names_within_a_group_but_not_across_groups() -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][1]["name"] = "Filler"
    assert messages(doc) == {
        "writer_groups/0/writers/1/name": "writer name 'Filler' is already used by "
        "writer_groups/0/writers/0/name"
    }
    doc = base()
    doc["writer_groups"].append(
        {"name": "Line2", "writers": [copy.deepcopy(doc["writer_groups"][0]["writers"][0])]}
    )
    doc["writer_groups"][1]["writers"][0]["dataset_writer_id"] = 99
    doc["writer_groups"][1]["writers"][0]["fields"][0]["dataset_field_id"] = str(uuid.uuid4())
    doc["writer_groups"][1]["writers"][0]["fields"][1]["dataset_field_id"] = str(uuid.uuid4())
    assert messages(doc) == {}


def test_duplicate_dataset_writer_id_across_the_whole_file() -> None:
    doc = base()
    doc["writer_groups"].append(
        {
            "name": "Line2",
            "writers": [
                {
                    "name": "X",
                    "dataset_writer_id": 7,
                    "fields": [{"name": "a", "node_id": "i=2258"}],
                }
            ],
        }
    )
    assert messages(doc) == {
        "writer_groups/1/writers/0/dataset_writer_id": "dataset_writer_id 7 is already used by "
        "writer_groups/0/writers/0/dataset_writer_id"
    }


def test_duplicate_field_names_within_a_writer() -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][0]["fields"][1]["name"] = "Temp"
    assert messages(doc) == {
        "writer_groups/0/writers/0/fields/1/name": "field name 'Temp' is already used by "
        "writer_groups/0/writers/0/fields/0/name"
    }


def test_duplicate_dataset_field_id_is_an_error_in_a_writer_and_a_warning_across() -> None:
    fid = "6f1c2a9e-0d5b-5c3e-9a41-2f7d8e1b0c55"
    doc = base()
    filler = doc["writer_groups"][0]["writers"][0]
    filler["fields"][0]["dataset_field_id"] = fid
    filler["fields"][1]["dataset_field_id"] = fid.upper()
    assert messages(doc) == {
        "writer_groups/0/writers/0/fields/1/dataset_field_id": f"dataset_field_id {fid} is "
        "already used by writer_groups/0/writers/0/fields/0/dataset_field_id of this writer"
    }
    doc = base()
    doc["writer_groups"][0]["writers"][0]["fields"][0]["dataset_field_id"] = fid
    doc["writer_groups"][0]["writers"][1]["fields"][0]["dataset_field_id"] = fid
    assert messages(doc) == {}
    assert list(messages(doc, "warning")) == ["writer_groups/0/writers/1/fields/0/dataset_field_id"]


def test_the_same_node_twice_in_one_writer() -> None:
    doc = base()
    fields = doc["writer_groups"][0]["writers"][0]["fields"]
    fields[1]["node_id"] = fields[0]["node_id"].replace("nsu=urn:plant", "nsu=urn%3Aplant")
    assert messages(doc) == {
        "writer_groups/0/writers/0/fields/1/node_id": f"node {fields[1]['node_id']} is already "
        "published by writer_groups/0/writers/0/fields/0/node_id of this writer"
    }


@pytest.mark.parametrize(
    ("node_id", "reason"),
    [
        ("nsu=urn:plant;x=1", "unknown identifier type 'x'"),
        ("Line1.Temp", "'Line1.Temp' has no identifier (i=, s=, g= or b=)"),
        ("i=abc", "numeric identifier 'abc' is not a number"),
        ("i=4294967296", "numeric identifier 4294967296 exceeds UInt32"),
        ("ns=70000;i=1", "out of range"),
        ("g=not-a-guid", "Guid"),
        ("i=0", "the null NodeId names no node"),
    ],
)
def test_node_id_syntax(node_id: str, reason: str) -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][0]["fields"][0]["node_id"] = node_id
    (message,) = messages(doc).values()
    assert message.startswith(
        "expected a NodeId such as 'nsu=urn:plant;s=Line1.Temperature' or 'i=2258', "
        f"got {node_id!r}: "
    )
    assert reason in message


def test_data_type_node_id_syntax() -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][0]["fields"][0]["data_type"] = "Double"
    (message,) = messages(doc).values()
    assert message.startswith("expected a DataType NodeId such as")


def test_namespace_index_form_is_a_warning() -> None:
    doc = base()
    doc["writer_groups"][0]["writers"][0]["fields"][0]["node_id"] = "ns=2;s=X"
    assert messages(doc) == {}
    warning = messages(doc, "warning")["writer_groups/0/writers/0/fields/0/node_id"]
    assert warning.startswith("namespace index 2 can change")


def test_warnings_of_one_message_fold_after_three_into_a_count_with_their_lines() -> None:
    doc = base()
    fields = doc["writer_groups"][0]["writers"][0]["fields"]
    fields[:] = [{**fields[0], "name": f"F{i}", "node_id": f"ns=2;s=F{i}"} for i in range(8)]
    fields.append({**fields[0], "name": "Other", "node_id": "ns=3;s=Other"})
    issues = check_config(dump_yaml(doc), "plant.yaml").issues
    ns2 = [i for i in issues if i.message.startswith("namespace index 2")]
    assert len(ns2) == 8
    lines = folded(issues)
    assert lines[:3] == [str(i) for i in ns2[:3]]  # the first three as they are, in order
    assert sum("namespace index 2" in line for line in lines) == 4
    assert sum("namespace index 3" in line for line in lines) == 1  # another message
    rest = ns2[3:]
    assert lines[-1] == (
        f"plant.yaml: warning: 5 more like this (lines {rest[0].line}-{rest[-1].line}): "
        f"{ns2[0].message}"
    )


def test_errors_are_never_folded() -> None:
    errors = [ConfigIssue("a.yaml", f"x/{i}", i, "expected a number") for i in range(6)]
    assert folded(errors) == [str(e) for e in errors]


def test_sampling_slower_than_publishing_warns_once_where_it_is_set() -> None:
    doc = base()
    doc["defaults"] = {"sampling_interval_ms": 5000}
    assert messages(doc) == {}
    assert messages(doc, "warning") == {
        "defaults/sampling_interval_ms": "sampling_interval_ms 5000 is longer than the "
        "publishing_interval_ms 1000 of writer group 'Line1': most of its messages carry no new "
        "value from the fields sampled this slowly"
    }
    doc = base()
    doc["writer_groups"][0]["writers"][1]["fields"][0]["sampling_interval_ms"] = 1500
    assert list(messages(doc, "warning")) == [
        "writer_groups/0/writers/1/fields/0/sampling_interval_ms"
    ]


def test_keep_alive_shorter_than_publishing_warns() -> None:
    doc = base()
    doc["writer_groups"][0]["publishing_interval_ms"] = 20_000
    assert list(messages(doc, "warning")) == ["defaults/keep_alive_ms"]
    assert check_config_data(doc).ok


def test_write_back_allow_globs_must_match_a_field_while_any_node_id_may_be_allowed() -> None:
    doc = base()
    doc["write_back"] = {
        "enabled": True,
        "allow": [
            "Line1/Filler/Temp",
            "Line1/*/Tor*",
            "**/Level",
            f"nsu={NS};i=5003",
            "nsu=urn%3Aplant;s=Line1.Filler.Temp",
            "Line1/Filler/Tmep",
            "nsu=urn:other;i=1",
            "Line1/[z-a]",
        ],
    }
    # nsu=urn:other;i=1 is neither published nor listed in writable_nodes: still allowed
    # (docs/write-back.md), as only the server knows whether it exists.
    assert messages(doc) == {
        "write_back/allow/5": "'Line1/Filler/Tmep' matches no configured field "
        "(expected a NodeId or a <group>/<writer>/<field> glob)",
        "write_back/allow/7": "bad glob 'Line1/[z-a]': bad character range z-a at position 7",
    }


def test_write_back_signature_options_need_each_other() -> None:
    doc = base()
    doc["write_back"] = {
        "enabled": True,
        "allow": ["Line1/Filler/Temp"],
        "require_signature": True,
        "permissions": [{"identities": ["CN=op*"], "allow": ["Line1/Filler/Tmep"]}],
        "max_deadline_s": 600,
    }
    assert set(messages(doc)) == {
        "write_back/require_signature",  # no trust to verify with
        "write_back/permissions",  # certificate identities without trust
        "write_back/permissions/0/allow/0",  # matches no field, like an allow entry
        "write_back/max_deadline_s",  # beyond the idempotency window
    }
    doc["write_back"] |= {
        "trust": "requesters.pem",
        "max_deadline_s": 60,
        "permissions": [{"identities": ["CN=op*"], "allow": ["Line1/Filler/Temp"]}],
    }
    assert messages(doc) == {}
    config = config_from_dict(doc)
    assert config.write_back.signature_required
    assert config.write_back.permissions is not None
    assert config.write_back.permissions[0].actions == ("write",)
    assert config_from_dict(config.to_json()) == config
    tuned = config_from_dict(doc | {"write_back": doc["write_back"] | {"rate_per_s": 5}})
    assert config_from_dict(tuned.to_json()) == tuned


def test_write_back_allow_mismatch_is_a_warning_while_disabled() -> None:
    doc = base()
    doc["write_back"] = {"allow": ["Nothing/Here"]}
    assert messages(doc) == {}
    assert list(messages(doc, "warning")) == ["write_back/allow/0"]


def test_write_back_allow_may_name_a_writable_node_that_is_not_published() -> None:
    doc = base()
    node = f"nsu={NS};s=Line1.Filler.Setpoint"
    doc["write_back"] = {"enabled": True, "allow": [node], "writable_nodes": [{"node_id": node}]}
    assert issues_of(doc) == []


def test_write_back_enabled_with_nothing_allowed_warns() -> None:
    doc = base()
    doc["write_back"] = {"enabled": True}
    assert list(messages(doc, "warning")) == ["write_back/allow"]


def test_writable_nodes_naming_no_field_warn() -> None:
    doc = base()
    doc["write_back"] = {"writable_nodes": [{"node_id": "i=1", "field": "A/B/C"}]}
    assert list(messages(doc, "warning")) == ["write_back/writable_nodes/0/field"]


def test_security_policy_and_mode_must_agree() -> None:
    doc = base()
    doc["opcua"]["security_policy"] = "None"
    assert list(messages(doc)) == ["opcua/security_mode"]
    doc["opcua"]["security_mode"] = "None"
    assert messages(doc) == {}
    assert list(messages(doc, "warning")) == ["opcua/security_policy"]
    doc["opcua"]["security_policy"] = "Basic256Sha256"
    assert list(messages(doc)) == ["opcua/security_mode"]


def test_username_needs_a_password_variable() -> None:
    doc = base()
    doc["opcua"] |= {"username": "bridge", "password_env": None}
    assert list(messages(doc)) == ["opcua/password_env"]


def test_tls_off_or_unverified_warns() -> None:
    doc = base()
    doc["mqtt"] = {"tls": {"enabled": False}}
    assert list(messages(doc, "warning")) == ["mqtt/tls/enabled"]
    doc["mqtt"] = {"tls": {"verify": False}}
    assert list(messages(doc, "warning")) == ["mqtt/tls/verify"]


def test_mutual_tls_needs_certificate_and_key() -> None:
    doc = base()
    doc["mqtt"] = {"tls": {"certificate": "c.pem"}}
    assert messages(doc) == {
        "mqtt/tls/private_key": "mutual TLS needs both certificate and private_key"
    }


def test_metadata_signing_needs_both_members() -> None:
    doc = base()
    doc["metadata_signing"] = {"private_key": "k.pem"}
    assert list(messages(doc)) == ["metadata_signing/certificate_chain"]


@pytest.mark.parametrize("where", ["defaults", "group", "writer"])
def test_raw_field_content_stands_alone(where: str) -> None:
    doc = base()
    target = {
        "defaults": doc.setdefault("defaults", {}),
        "group": doc["writer_groups"][0],
        "writer": doc["writer_groups"][0]["writers"][0],
    }[where]
    target["field_content"] = ["raw", "status"]
    assert list(messages(doc).values()) == ["raw stands alone: write [raw] or leave raw out"]
    target["field_content"] = ["raw"]
    assert messages(doc) == {}


@pytest.mark.parametrize("prefix", ["a/+/b", "/opcua", "opcua/", "a//b", "x#"])
def test_topic_prefix_without_wildcards_or_empty_levels(prefix: str) -> None:
    doc = base()
    doc["mqtt"] = {"topic_prefix": prefix}
    assert list(messages(doc)) == ["mqtt/topic_prefix"]


def test_array_dimensions_fit_the_value_rank() -> None:
    doc = base()
    field = doc["writer_groups"][0]["writers"][0]["fields"][0]
    field |= {"value_rank": 2, "array_dimensions": [3]}
    assert messages(doc) == {
        "writer_groups/0/writers/0/fields/0/array_dimensions": "expected 2 dimensions for "
        "value_rank 2, got 1"
    }
    field |= {"value_rank": -1, "array_dimensions": [3]}
    assert list(messages(doc)) == ["writer_groups/0/writers/0/fields/0/array_dimensions"]
    field |= {"value_rank": 2, "array_dimensions": [3, 0]}
    assert messages(doc) == {}


def test_deadband_on_a_non_numeric_field() -> None:
    doc = base()
    field = doc["writer_groups"][0]["writers"][0]["fields"][0]
    field |= {"builtin_type": "String", "deadband": {"type": "absolute", "value": 1}}
    assert list(messages(doc)) == ["writer_groups/0/writers/0/fields/0/deadband"]
    field["builtin_type"] = "Float"
    assert messages(doc) == {}
    del field["deadband"]
    doc["defaults"] = {"deadband": {"type": "absolute", "value": 1}}
    field["builtin_type"] = "String"
    assert messages(doc) == {}  # an inherited deadband is simply not applied


def test_no_writer_groups_warns() -> None:
    doc = base()
    doc["writer_groups"] = []
    assert messages(doc) == {}
    assert list(messages(doc, "warning")) == ["writer_groups"]


def test_semantic_issues_have_yaml_lines() -> None:
    found = yaml_issues(
        """\
        version: 1
        publisher_id: p
        opcua: {endpoint: "opc.tcp://h:1"}
        writer_groups:
          - name: G
            writers:
              - name: W
                dataset_writer_id: 1
                fields:
                  - name: a
                    node_id: "nsu=urn:x;i=1"
                  - name: a
                    node_id: "nsu=urn:x;q=2"
        """
    )
    assert [str(i) for i in found if i.severity == "error"] == [
        "bridge.yaml:12: writer_groups/0/writers/0/fields/1/name: field name 'a' is already "
        "used by writer_groups/0/writers/0/fields/0/name (line 10)",
        "bridge.yaml:13: writer_groups/0/writers/0/fields/1/node_id: expected a NodeId such as "
        "'nsu=urn:plant;s=Line1.Temperature' or 'i=2258', got 'nsu=urn:x;q=2': unknown "
        "identifier type 'q'",
    ]


def test_issue_text_forms() -> None:
    assert str(ConfigIssue("a.json", "x/1", None, "m")) == "a.json: x/1: m"
    assert str(ConfigIssue("a.yaml", "", 3, "m", "warning")) == "a.yaml:3: (top level): warning: m"


# ---------------------------------------------------------------------- robustness (hypothesis)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["None", "Sign", "compact", "raw", "i=0", "nsu=;i=1", "ns=2;s=x", "a/b"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _containers(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _containers(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _containers(v, (*path, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = load_config(EXAMPLE.read_text(encoding="utf-8"), "x.yaml").to_json()
    for _ in range(draw(st.integers(1, 4))):
        paths = _containers(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = _get(doc, path[:-1])
        action = draw(st.sampled_from(["replace", "delete", "add", "rename", "duplicate"]))
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        elif action == "rename" and isinstance(parent, dict):
            parent[key + draw(st.sampled_from(["s", "_", ""]))] = parent.pop(key)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated(), as_json=st.booleans())
def test_mutated_configs_fail_only_with_config_error(doc: dict[str, Any], as_json: bool) -> None:
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    try:
        config = load_config(text, "m.json" if as_json else "m.yaml")
    except ConfigError as e:
        assert e.errors
        for issue in e.issues:
            assert issue.message and issue.source in ("m.json", "m.yaml")
    else:
        assert isinstance(config, Config)
        validator("config").validate(config.to_json())


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, 4000), st.integers(0, 5), st.text(max_size=3)), max_size=4
    )
)
def test_text_edits_fail_only_with_config_error(cuts: list[tuple[int, int, str]]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for at, remove, insert in cuts:
        at = at % (len(text) + 1)
        text = text[:at] + insert + text[at + remove :]
    try:
        load_config(text, "e.yaml")
    except ConfigError as e:
        assert e.errors

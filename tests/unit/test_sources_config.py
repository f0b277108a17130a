"""Several OPC UA servers in one configuration (`sources:`): checking (clear errors with the
path), the ids each source's fields get, the file form written back, and shards that keep each
writer group with its source."""

from __future__ import annotations

from typing import Any

import pytest

from opcua_mqtt.core.config.check import check_config_data, config_from_dict
from opcua_mqtt.core.config.model import derive_field_id
from opcua_mqtt.core.config.shard import move_paths, split

LINE1 = {"name": "line1", "endpoint": "opc.tcp://10.0.0.11:4840", "server_uri": "urn:line1"}
LINE2 = {"name": "line2", "endpoint": "opc.tcp://10.0.0.12:4840"}


def _group(name: str, source: str | None, wid: int, n: int = 2) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": name,
        "writers": [
            {
                "name": "W",
                "dataset_writer_id": wid,
                "fields": [{"name": f"F{i}", "node_id": f"ns=2;s=F{i}"} for i in range(n)],
            }
        ],
    }
    if source is not None:
        group["source"] = source
    return group


def _doc(*groups: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "publisher_id": "plant",
        "sources": [dict(LINE1), dict(LINE2)],
        "writer_groups": list(groups),
        **top,
    }


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{i.path}: {i.message}" for i in check_config_data(doc, "plant.yaml").errors]


def test_each_group_reads_from_its_source_with_ids_derived_from_that_server() -> None:
    config = config_from_dict(_doc(_group("A", "line1", 1), _group("B", "line2", 2, n=3)))
    assert [s.name for s in config.sources] == ["line1", "line2"]
    assert [g.source for g in config.writer_groups] == ["line1", "line2"]
    a, b = (g.writers[0].fields[0] for g in config.writer_groups)
    assert a.node_id == b.node_id  # the same NodeId on two servers: two variables, two ids
    assert a.dataset_field_id == derive_field_id("urn:line1", "ns=2;s=F0")
    assert b.dataset_field_id == derive_field_id("opc.tcp://10.0.0.12:4840", "ns=2;s=F0")
    assert config.source("line2").endpoint == LINE2["endpoint"]


def test_the_file_form_round_trips_with_sources_and_each_groups_source() -> None:
    config = config_from_dict(_doc(_group("A", "line1", 1), _group("B", "line2", 2)))
    out = config.to_json()
    assert "opcua" not in out
    assert [s["name"] for s in out["sources"]] == ["line1", "line2"]
    assert [g["source"] for g in out["writer_groups"]] == ["line1", "line2"]
    assert config_from_dict(out) == config


def test_an_opcua_section_is_the_one_source_named_default_and_stays_so_written() -> None:
    doc = _doc(_group("A", None, 1))
    doc["opcua"] = {"endpoint": LINE2["endpoint"]}
    del doc["sources"]
    config = config_from_dict(doc)
    assert [
        (s.name, g.source) for s, g in zip(config.sources, config.writer_groups, strict=True)
    ] == [("default", "default")]
    out = config.to_json()
    assert "sources" not in out and "name" not in out["opcua"]
    assert "source" not in out["writer_groups"][0]


def test_unknown_or_missing_sources_are_clear_errors_with_their_path() -> None:
    assert _errors(_doc(_group("A", "line3", 1))) == [
        "writer_groups/0/source: unknown source 'line3': expected one of line1, line2"
    ]
    assert _errors(_doc(_group("A", "line1", 1), _group("B", None, 2))) == [
        "writer_groups/1: writer group 'B' needs a source: one of line1, line2"
    ]


def test_opcua_and_sources_exactly_one_of_them_and_names_unique() -> None:
    both = _doc(_group("A", "line1", 1), opcua={"endpoint": "opc.tcp://x:4840"})
    assert _errors(both) == [
        "sources: give the OPC UA server as opcua (one server) or as sources (several), not both"
    ]
    neither = _doc(_group("A", None, 1))
    del neither["sources"]
    assert _errors(neither) == [
        ": give the OPC UA server as opcua (one server) or as sources (several), one of them "
        "is required"
    ]
    twice = _doc(_group("A", "line1", 1))
    twice["sources"][1]["name"] = "line1"
    assert _errors(twice) == [
        "sources/1/name: source name 'line1' is already used by sources/0/name"
    ]


def test_a_source_needs_a_name_and_its_options_are_checked_like_opcua() -> None:
    doc = _doc(_group("A", "line1", 1))
    del doc["sources"][1]["name"]
    assert any(e.startswith("sources/1") and "name" in e for e in _errors(doc))
    doc = _doc(_group("A", "line1", 1))
    doc["sources"][1]["security_mode"] = "None"
    assert _errors(doc) == [
        "sources/1/security_mode: security_mode None does not go with security_policy "
        "Basic256Sha256: policy None needs mode None, any other policy Sign or SignAndEncrypt"
    ]


@pytest.mark.parametrize("count", [2, 3])
def test_shards_keep_each_group_with_its_source_and_list_only_theirs(count: int) -> None:
    config = config_from_dict(
        _doc(_group("A", "line1", 1, n=5), _group("B", "line2", 2, n=4), _group("C", "line1", 3))
    )
    for shard in split(config, count):
        used = {g.source for g in shard.config.writer_groups}
        assert {s.name for s in shard.config.sources} == used
        for g in shard.config.writer_groups:
            assert g == next(o for o in config.writer_groups if o.name == g.name)
        assert config_from_dict(shard.config.to_json()) == shard.config  # valid, complete


def test_moved_paths_apply_to_every_source() -> None:
    config = config_from_dict(_doc(_group("A", "line1", 1), _group("B", "line2", 2)))
    moved = move_paths(config, lambda p: f"../{p}")
    assert [s.certificate for s in moved.sources] == ["../certs/opcua-client.pem"] * 2


def test_a_source_no_group_reads_from_is_a_warning() -> None:
    result = check_config_data(_doc(_group("A", "line1", 1)), "plant.yaml")
    assert result.ok
    about_sources = [f"{i.path}: {i.message}" for i in result.warnings if "source" in i.path]
    assert about_sources == [
        "sources/1/name: no writer group reads from source 'line2': its session would be "
        "opened for nothing"
    ]

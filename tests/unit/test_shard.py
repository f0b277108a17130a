"""Splitting a configuration into shards (core/config/shard.py): whole writer groups, balanced by
item count, each shard a complete and valid configuration with ids of its own that do not change
when re-sharded; write-back follows the fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.config.check import check_config_data, config_from_dict
from opcua_mqtt.core.config.model import Config
from opcua_mqtt.core.config.shard import ShardError, move_paths, shard_id, split


def _doc(sizes: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "publisher_id": "plant",
        "opcua": {"endpoint": "opc.tcp://127.0.0.1:4840"},
        "mqtt": {"client_id": "plant-client", "spool": {"directory": "spool"}},
        "writer_groups": [
            {
                "name": f"G{g}",
                "writers": [
                    {
                        "name": "W",
                        "dataset_writer_id": 100 + g,
                        "fields": [
                            {"name": f"F{i}", "node_id": f"ns=2;s=G{g}.F{i}"} for i in range(n)
                        ],
                    }
                ],
            }
            for g, n in enumerate(sizes)
        ],
        **extra,
    }


def _config(sizes: list[int], **extra: Any) -> Config:
    return config_from_dict(_doc(sizes, **extra))


def test_each_group_goes_to_exactly_one_shard_in_its_original_order() -> None:
    shards = split(_config([5, 1, 4, 2, 3]), 2)
    names = [[g.name for g in s.config.writer_groups] for s in shards]
    assert sorted(n for ns in names for n in ns) == ["G0", "G1", "G2", "G3", "G4"]
    for ns in names:
        assert ns == sorted(ns)  # the file's order within a shard
    assert sorted(s.items for s in shards) == [7, 8]


def test_shards_are_publishers_of_their_own_and_keep_their_ids_when_resharded() -> None:
    config = _config([3, 3, 3])
    shards = split(config, 3)
    assert [s.config.publisher_id for s in shards] == [
        "plant-shard1of3",
        "plant-shard2of3",
        "plant-shard3of3",
    ]
    assert [s.config.mqtt.client_id for s in shards] == [
        shard_id("plant-client", k, 3) for k in (1, 2, 3)
    ]
    assert [s.config.mqtt.spool.directory for s in shards] == [
        f"spool/shard{k}of3" for k in (1, 2, 3)
    ]
    assert split(config, 3) == shards


def test_every_shard_is_a_valid_configuration() -> None:
    config = _config([2, 2, 1], write_back={"enabled": True, "allow": ["G0/W/*", "ns=2;s=Other"]})
    known = {w.message for w in check_config_data(config.to_json()).warnings}
    # a shard with none of the writable fields still answers (refuses) commands sent to it
    known.add("write-back is enabled but allow is empty: every command will be refused")
    for s in split(config, 3):
        result = check_config_data(s.config.to_json())
        assert result.ok, [str(i) for i in result.issues]
        assert {w.message for w in result.warnings} <= known  # no new "matches nothing"


def test_write_back_entries_follow_their_fields_and_unpublished_nodes_stay_with_shard_1() -> None:
    config = _config(
        [2, 2],
        write_back={
            "enabled": True,
            "allow": ["G0/W/*", "ns=2;s=G1.F0", "ns=2;s=Elsewhere"],
            "writable_nodes": [{"node_id": "ns=2;s=Elsewhere", "builtin_type": "Double"}],
        },
    )
    first, second = split(config, 2)
    owner = {g.name: s for s in (first, second) for g in s.config.writer_groups}
    assert owner["G0"].config.write_back.allow[0] == "G0/W/*"
    assert "ns=2;s=G1.F0" in owner["G1"].config.write_back.allow
    assert "ns=2;s=G1.F0" not in owner["G0"].config.write_back.allow
    assert "ns=2;s=Elsewhere" in first.config.write_back.allow
    assert first.config.write_back.writable_nodes and not second.config.write_back.writable_nodes


def test_a_group_is_never_split_so_more_shards_than_groups_is_refused() -> None:
    with pytest.raises(ShardError, match="cannot split 2 writer groups into 3 shards"):
        split(_config([10, 10]), 3)
    with pytest.raises(ShardError, match="at least 1"):
        split(_config([1]), 0)


def test_moved_paths_name_the_same_files() -> None:
    config = _config(
        [1], metadata_signing={"private_key": "k.pem", "certificate_chain": "/abs.pem"}
    )
    moved = move_paths(config, lambda p: p if p.startswith("/") else f"../{p}")
    assert moved.metadata_signing.private_key == "../k.pem"
    assert moved.metadata_signing.certificate_chain == "/abs.pem"
    assert moved.mqtt.spool.directory == "../spool"
    assert moved.opcua.certificate == "../certs/opcua-client.pem"


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=12), data=st.data())
def test_the_balance_is_within_one_group_of_even(sizes: list[int], data: st.DataObject) -> None:
    count = data.draw(st.integers(1, len(sizes)))
    shards = split(_config(sizes), count)
    loads = [s.items for s in shards]
    assert sum(loads) == sum(sizes)
    assert max(loads) - min(loads) <= max(sizes)

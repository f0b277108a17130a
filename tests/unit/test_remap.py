"""Re-mapping keeps the user's parts of a file: what map owns comes from the server, the command
line wins, and an empty place takes what map found."""

from __future__ import annotations

from typing import Any

from opcua_mqtt.core.remap import keep_hand_edits


def _new() -> dict[str, Any]:
    return {
        "version": 1,
        "publisher_id": "opcua-mqtt-plc1",
        "opcua": {"endpoint": "opc.tcp://new:4840", "server_uri": "urn:new", "timeout_s": 10},
        "mqtt": {"host": "found", "tls": {"ca": "certs/ca.pem"}},
        "metadata_signing": {"private_key": "certs/s.key", "certificate_chain": "certs/s.pem"},
        "writer_groups": [
            {
                "name": "Line1",
                "writers": [
                    {
                        "name": "Filler",
                        "dataset_writer_id": 7,
                        "fields": [
                            {"name": "Temp", "node_id": "nsu=urn:p;s=T", "builtin_type": "Double"},
                            {"name": "Level", "node_id": "nsu=urn:p;s=L"},
                        ],
                    }
                ],
            }
        ],
        "write_back": {"enabled": False, "allow": [], "writable_nodes": [{"node_id": "x"}]},
    }


def _old() -> dict[str, Any]:
    return {
        "version": 1,
        "publisher_id": "hall2",
        "opcua": {"endpoint": "opc.tcp://old:4840", "server_uri": "urn:old", "timeout_s": 3},
        "mqtt": {"host": "broker.plant", "port": 8884, "tls": {"ca": None, "verify": False}},
        "metadata_signing": {"private_key": None, "certificate_chain": None},
        "writer_groups": [
            {
                "name": "Line1",
                "publishing_interval_ms": 250,
                "writers": [
                    {
                        "name": "Renamed",
                        "dataset_writer_id": 7,
                        "key_frame_count": 1,
                        "fields": [
                            {
                                "name": "T",
                                "node_id": "nsu=urn:p;s=T",
                                "builtin_type": "Float",
                                "deadband": {"type": "absolute", "value": 1},
                            },
                            {"name": "Gone", "node_id": "nsu=urn:p;s=G", "queue_size": 2},
                        ],
                    }
                ],
            },
            {"name": "Gone", "writers": []},
        ],
        "write_back": {"enabled": True, "allow": ["Line1/**"], "writable_nodes": [], "burst": 5},
        "metrics": {"port": 9464},
    }


def test_the_users_parts_are_kept_and_the_servers_taken_afresh() -> None:
    merged = keep_hand_edits(_new(), _old())
    assert merged["publisher_id"] == "hall2"
    assert merged["opcua"] == {
        "endpoint": "opc.tcp://new:4840",
        "server_uri": "urn:new",
        "timeout_s": 3,
    }
    # null in the file: what map found; anything else: the file's
    assert merged["mqtt"] == {
        "host": "broker.plant",
        "port": 8884,
        "tls": {"ca": "certs/ca.pem", "verify": False},
    }
    assert merged["metadata_signing"] == _new()["metadata_signing"]
    assert merged["write_back"] == {
        "enabled": True,
        "allow": ["Line1/**"],
        "writable_nodes": [{"node_id": "x"}],
        "burst": 5,
    }
    assert merged["metrics"] == {"port": 9464}
    assert merged["writer_groups"] == [
        {
            "name": "Line1",
            "publishing_interval_ms": 250,
            "writers": [
                {
                    "name": "Filler",  # names, types and the field list come from the server
                    "dataset_writer_id": 7,
                    "key_frame_count": 1,
                    "fields": [
                        {
                            "name": "Temp",
                            "node_id": "nsu=urn:p;s=T",
                            "builtin_type": "Double",
                            "deadband": {"type": "absolute", "value": 1},
                        },
                        {"name": "Level", "node_id": "nsu=urn:p;s=L"},
                    ],
                }
            ],
        }
    ]


def test_places_the_command_line_gave_are_not_taken_from_the_file() -> None:
    merged = keep_hand_edits(
        _new(), _old(), {("mqtt", "host"), ("publisher_id",), ("opcua", "timeout_s")}
    )
    assert (merged["publisher_id"], merged["mqtt"]["host"]) == ("opcua-mqtt-plc1", "found")
    assert merged["mqtt"]["port"] == 8884 and merged["opcua"]["timeout_s"] == 10

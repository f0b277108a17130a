"""Event writers in the configuration file (Part 14 §6.2.3.8 PublishedEventsDataType): defaults,
select paths, the where clause, and the rules a schema cannot express."""

from __future__ import annotations

from typing import Any

from opcua_mqtt.core.config.check import config_from_dict, load_config
from opcua_mqtt.core.config.events import DEFAULT_SELECT
from opcua_mqtt.core.config.text import dump_yaml
from tests.unit.test_config import base, messages


def with_events(*writers: dict[str, Any]) -> dict[str, Any]:
    doc = base()
    doc["event_writers"] = list(writers)
    return doc


def test_an_event_writer_gets_the_standard_fields_of_the_server_object() -> None:
    config = config_from_dict(with_events({"name": "Alarms", "dataset_writer_id": 90}))
    (w,) = config.event_writers
    assert (w.notifier, w.event_type, w.writer_group) == ("i=2253", "i=2041", "Events")
    assert [f.name for f in w.fields] == list(DEFAULT_SELECT)
    assert (w.of_types, w.min_severity, w.condition_refresh) == ((), None, True)
    assert (w.encoding, w.qos) == (config.defaults.encoding, config.defaults.qos)


def test_select_paths_and_where_clause() -> None:
    doc = with_events(
        {
            "name": "Alarms",
            "dataset_writer_id": 90,
            "writer_group": "Plant alarms",
            "notifier": "nsu=urn:plant;s=Area1",
            "event_type": "i=2915",
            "select": ["EventId", "ActiveState/Id", "ConditionId"],
            "where": {"of_type": ["i=2915"], "min_severity": 500},
            "encoding": "verbose",
        }
    )
    (w,) = config_from_dict(doc).event_writers
    assert [f.path for f in w.fields] == [("EventId",), ("ActiveState", "Id"), ("ConditionId",)]
    assert [f.is_condition_id for f in w.fields] == [False, False, True]
    assert (w.of_types, w.min_severity, w.encoding) == (("i=2915",), 500, "verbose")


def test_event_writers_round_trip_through_to_json() -> None:
    doc = with_events(
        {
            "name": "Alarms",
            "dataset_writer_id": 90,
            "select": ["Severity", "Message"],
            "where": {"min_severity": 100},
        }
    )
    config = config_from_dict(doc)
    again = load_config(dump_yaml(config.to_json()), "again.yaml")
    assert again.event_writers == config.event_writers


def test_mistakes_are_named_with_their_path() -> None:
    doc = with_events(
        {
            "name": "A",
            "dataset_writer_id": 7,  # the data writer's id in base()
            "writer_group": doc_group(),
            "notifier": "s=",
            "select": ["Severity", "ConditionId/Id"],
            "where": {"of_type": ["ns=x"]},
        },
    )
    found = messages(doc)
    assert (
        "is already used by writer_groups/0/writers/0" in found["event_writers/0/dataset_writer_id"]
    )
    assert "is a data writer group" in found["event_writers/0/writer_group"]
    assert "expected a NodeId" in found["event_writers/0/notifier"]
    assert "expected a NodeId" in found["event_writers/0/where/of_type/0"]
    assert "ConditionId stands alone" in found["event_writers/0/select/1"]


def test_the_schema_refuses_malformed_paths_and_severities() -> None:
    doc = with_events(
        {
            "name": "B",
            "dataset_writer_id": 91,
            "select": ["Bad//Path"],
            "where": {"min_severity": 0},
        }
    )
    found = messages(doc)
    assert "browse path" in found["event_writers/0/select/0"]
    assert "event_writers/0/where/min_severity" in found


def doc_group() -> str:
    return str(base()["writer_groups"][0]["name"])

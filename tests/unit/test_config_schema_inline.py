"""The configuration schema with its references inlined (schema_messages.inline_refs) finds
exactly what the schema as written finds: the same errors, at the same places, against the
same subschemas, so every message stays the same."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from opcua_mqtt.core.config.schema_messages import _ANNOTATIONS, inline_refs
from opcua_mqtt.core.schema_validation import load_schema, validator
from tests.unit.test_config import base
from tests.unit.test_event_config import with_events

INLINED = Draft202012Validator(inline_refs(load_schema("config")))


def _findings(v: Any, doc: Any) -> list[tuple[Any, ...]]:
    def shown(schema: Any) -> Any:
        """What the messages read of the failing subschema: its own assertions (bounds,
        pattern, x-expected, enum...) and its option names; nested schemas differ only in
        being inlined."""
        if not isinstance(schema, dict):
            return schema
        own = {
            k: v for k, v in schema.items() if k not in _ANNOTATIONS | {"$ref"} and not _nested(v)
        }
        return {**own, "properties": sorted(schema.get("properties", {}))}

    return sorted(
        (
            tuple(map(str, e.absolute_path)),
            e.validator,
            json.dumps(e.validator_value, sort_keys=True, default=str),
            json.dumps(e.instance, sort_keys=True, default=str),
            json.dumps(shown(e.schema), sort_keys=True, default=str),
        )
        for e in v.iter_errors(doc)
    )


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(x, dict) for x in value)
    )


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    where: Any = doc
    for key in path[:-1]:
        where = where.setdefault(key, {}) if isinstance(where, dict) else where[key]
    where[path[-1]] = value
    return doc


W = ("writer_groups", 0, "writers", 0)
MISTAKES = [
    (("opcua", "security_mode"), "SignEncrypt"),
    (("opcua", "endpoint"), 5),
    (("opcua", "timeot_s"), 5),
    (("sources",), [{"endpoint": "opc.tcp://h:1"}]),
    (("mqtt", "port"), 70000),
    (("mqtt", "tls", "verify"), "yes"),
    (("defaults", "deadband"), {"type": "relative", "value": 1}),
    (("writer_groups", 0, "name"), ""),
    (("writer_groups", 0, "deadband"), {"type": "absolute", "value": -1}),
    (("writer_groups", 0, "publishing_interval_ms"), "fast"),
    ((*W, "dataset_writer_id"), 0),
    ((*W, "deadband"), {"type": "percent", "value": "x"}),
    ((*W, "fields", 0, "name"), 7),
    ((*W, "fields", 0, "node_id"), ""),
    ((*W, "fields", 0, "builtin_type"), "double"),
    ((*W, "fields", 0, "samplng_interval_ms"), 100),
    ((*W, "fields"), []),
    (("event_writers", 0, "where", "min_severity"), 0),
    (("event_writers", 0, "select", 0), "/a//b"),
]


@pytest.mark.parametrize(
    ("path", "value"), MISTAKES, ids=["/".join(map(str, p)) for p, _ in MISTAKES]
)
def test_the_inlined_schema_finds_what_the_written_one_finds(
    path: tuple[Any, ...], value: Any
) -> None:
    doc = _set(
        with_events(
            {
                "name": "A",
                "dataset_writer_id": 90,
                "select": ["Severity"],
                "where": {"min_severity": 1},
            }
        ),
        path,
        value,
    )
    found = _findings(INLINED, doc)
    assert found, "the mistake must be found"
    assert found == _findings(validator("config"), doc)


def test_a_valid_file_stays_valid_and_no_reference_is_left() -> None:
    assert _findings(INLINED, base()) == []
    assert '"$ref"' not in json.dumps(inline_refs(load_schema("config")))

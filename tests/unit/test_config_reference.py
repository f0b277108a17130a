"""docs/configuration.md is generated from schemas/config.schema.json and kept current; the
generator documents every property and every kind of keyword a schema may hold."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from opcua_mqtt.core.schema_validation import load_schema
from opcua_mqtt.docs_gen.config_reference import (
    NO_DESCRIPTION,
    REGENERATE_COMMAND,
    config_reference,
    entries,
    md_escape,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema("config")


@pytest.fixture(scope="module")
def sections(schema: dict[str, Any]) -> dict[str, str]:
    """The generated text of each entry, by path."""
    parts = re.split(r"^#{2,3} `([^`]+)`$", config_reference(schema), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# -- an independent reading of the schema: properties and items through local $refs only ---------


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = schema
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _paths(
    schema: dict[str, Any], node: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[dict[str, Any], bool]]:
    """Every property path of the configuration schema (which has no variants) -> its schema and
    whether its object requires it."""
    node = _deref(schema, node)
    out: dict[str, tuple[dict[str, Any], bool]] = {}
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        sub = _deref(schema, sub)
        out[path] = (sub, name in node.get("required", ()))
        out.update(_paths(schema, sub, path))
        items, suffix = sub.get("items"), "[]"
        while isinstance(items, dict):
            out.update(_paths(schema, items, path + suffix))
            items, suffix = _deref(schema, items).get("items"), suffix + "[]"
    return out


# -- the real document ---------------------------------------------------------------------------


def test_docs_configuration_md_is_generated_from_the_current_schema(schema: dict[str, Any]) -> None:
    expected = config_reference(schema)
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if actual != expected:
        diff = difflib.unified_diff(
            actual.splitlines(),
            expected.splitlines(),
            "docs/configuration.md",
            "generated",
            n=0,
            lineterm="",
        )
        shown = "\n".join(list(diff)[:30])
        pytest.fail(
            "docs/configuration.md is out of date with schemas/config.schema.json; regenerate it "
            f"with\n\n    {REGENERATE_COMMAND}\n\nfirst differences:\n{shown}",
            pytrace=False,
        )


def test_the_regenerate_command_is_named_at_the_top_of_the_file(schema: dict[str, Any]) -> None:
    head = config_reference(schema).splitlines()[:6]
    assert any(REGENERATE_COMMAND in line for line in head)


def test_every_schema_property_has_exactly_one_entry(
    schema: dict[str, Any], sections: dict[str, str]
) -> None:
    expected = _paths(schema, schema)
    assert "writer_groups[].writers[].fields[].deadband.value" in expected  # $ref in items
    assert sorted(sections) == sorted(expected)
    assert [e.path for e in entries(schema)] == list(sections)


def test_every_entry_states_type_requiredness_default_description_and_constraints(
    schema: dict[str, Any], sections: dict[str, str]
) -> None:
    for path, (sub, required) in _paths(schema, schema).items():
        text = sections[path]
        assert f"- **Required:** {'yes' if required else 'no'}" in text, path
        assert "- **Type:** " in text, path
        if "default" in sub:
            default = json.dumps(sub["default"], ensure_ascii=False)
            assert f"- **Default:** `{default}`" in text, path
        if sub.get("description"):
            assert md_escape(sub["description"]) in text, path
        for value in sub.get("enum", []):
            assert f"`{json.dumps(value)}`" in text, (path, value)
        for key in ("minimum", "maximum", "exclusiveMinimum"):
            if key in sub:
                assert json.dumps(sub[key]) in text, (path, key)
        if "pattern" in sub:
            assert sub["pattern"] in text, path


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = [e.path for e in entries(schema) if not e.description]
    assert not missing, f"properties without a description in schemas/config.schema.json: {missing}"


def test_conditional_constraints_are_attached_to_the_property_they_limit(
    sections: dict[str, str],
) -> None:
    text = sections["defaults.deadband.value"]
    assert '- **Condition:** when `type` is `"percent"`: range at least 0, at most 100' in text


def test_the_document_is_clean_markdown(schema: dict[str, Any]) -> None:
    text = config_reference(schema)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert not [line for line in text.splitlines() if line != line.rstrip()]
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    assert len(headings) == len(set(headings))
    # GitHub's anchor of a heading: lower case, punctuation other than - and _ dropped.
    anchors = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and set(links) <= anchors


# -- the generator on schemas that use what the configuration schema does not (yet) ------------


def _render(schema: dict[str, Any]) -> dict[str, str]:
    parts = re.split(r"^#{2,3} `([^`]+)`$", config_reference(schema), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_ref_siblings_override_the_target_and_allof_is_merged() -> None:
    schema = {
        "type": "object",
        "allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}],
        "properties": {
            "b": {"$ref": "#/$defs/port", "description": "Own words.", "default": 8883},
        },
        "$defs": {"port": {"type": "integer", "minimum": 1, "description": "Target words."}},
    }
    out = _render(schema)
    assert list(out) == ["a", "b"]
    assert "- **Required:** yes" in out["a"]
    assert "Own words." in out["b"] and "Target words." not in out["b"]
    assert "- **Default:** `8883`" in out["b"] and "- **Range:** at least 1" in out["b"]


def test_oneof_and_anyof_variants_are_listed_and_their_members_documented() -> None:
    schema = {
        "type": "object",
        "properties": {
            "source": {
                "description": "Where from.",
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"file": {"type": "string", "description": "A path."}},
                        "required": ["file"],
                    },
                    {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}},
                ],
            },
            "level": {"anyOf": [{"type": "integer", "maximum": 4}, {"enum": ["low", "high"]}]},
        },
    }
    out = _render(schema)
    assert list(out) == ["source", "source.file", "source.url", "level"]
    assert "- **Type:** exactly one of 2 variants" in out["source"]
    assert "- **Variants (exactly one must match):** (1) object" in out["source"]
    assert "- **Required:** yes" in out["source.file"]
    assert "only in variant 1 of `source` (exactly one must match)" in out["source.file"]
    assert "- **Format:** `uri`" in out["source.url"]
    assert "(1) integer, range at most 4; (2) string, allowed values" in out["level"]
    assert NO_DESCRIPTION in out["level"]


def test_recursive_schemas_are_documented_once() -> None:
    schema = {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/node"}},
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    "parent": {"$ref": "#/$defs/node"},
                },
            }
        },
    }
    out = _render(schema)
    assert list(out) == ["tree", "tree.name", "tree.children", "tree.parent"]
    assert "each item has the members of `tree`" in out["tree.children"]
    assert "- **Recursive:** has the members of `tree`" in out["tree.parent"]


def test_other_keywords_are_shown_not_lost() -> None:
    schema = {
        "type": "object",
        "properties": {
            "labels": {
                "type": "object",
                "patternProperties": {"^[a-z]+$": {"type": "string", "maxLength": 63}},
                "additionalProperties": {"type": "integer"},
                "maxProperties": 8,
                "x-since": "0.2",
            },
            "mode": {"not": {"const": "off"}, "examples": ["on"], "deprecated": True},
        },
        "if": {"properties": {"mode": {"const": "on"}}},
        "then": {"required": ["labels"]},
        "else": {"minProperties": 1},
    }
    doc = config_reference(schema)
    out = _render(schema)
    assert (
        "- **Members matching `^[a-z]+$`:** string, length at most 63 characters" in out["labels"]
    )
    assert "- **Other members:** integer" in out["labels"]
    assert "- **Members:** at most 8 members" in out["labels"]
    assert '- **Also:** `x-since`: `"0.2"`' in out["labels"]
    assert '- **Condition:** when `mode` is `"on"`: required' in out["labels"]
    assert '- **Must not match:** string, allowed value `"off"`' in out["mode"]
    assert '- **Examples:** `"on"`' in out["mode"] and "- **Deprecated:** yes" in out["mode"]
    assert '- **Condition:** unless `mode` is `"on"`: any JSON value, members at least 1' in doc


@pytest.mark.parametrize(
    ("prose", "markdown"),
    [
        ("<group>/<writer> names", "&lt;group&gt;/&lt;writer&gt; names"),
        ("(Line1/**, */Filler/Set*)", r"(Line1/\*\*, \*/Filler/Set\*)"),
        ("dataset_field_id and _private_", r"dataset_field_id and \_private\_"),
        ("`<prefix>/**` stays code", "`<prefix>/**` stays code"),
        ("# not a heading", r"\# not a heading"),
        ("- not a list", r"\- not a list"),
        (r"a\b", r"a\\b"),
    ],
)
def test_md_escape(prose: str, markdown: str) -> None:
    assert md_escape(prose) == markdown

"""``schemas/config.schema.json`` checked, with jsonschema's messages rewritten to say what was
expected and unknown options answered with the closest known one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

from opcua_mqtt.core.config.model import SCHEMA, Path
from opcua_mqtt.core.config.report import Report, show
from opcua_mqtt.core.schema_validation import load_schema, validator

_TYPE_WORDS: Final = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _choice(value: Any) -> str:
    return "null" if value is None else str(value)


@lru_cache(maxsize=1)
def _option_places() -> dict[str, list[str]]:
    """For each option name, the sections that have it: for "unknown here, but known there"."""
    schema = load_schema(SCHEMA)
    defs = schema["$defs"]
    props = schema["properties"]
    sections = {
        "the top level": props,
        "opcua": defs["source"]["properties"],
        "mqtt": props["mqtt"]["properties"],
        "mqtt.tls": props["mqtt"]["properties"]["tls"]["properties"],
        "metadata_signing": props["metadata_signing"]["properties"],
        "defaults": props["defaults"]["properties"],
        "writer groups": defs["writer_group"]["properties"],
        "writers": defs["writer"]["properties"],
        "fields": defs["field"]["properties"],
        "write_back": props["write_back"]["properties"],
        "metrics": props["metrics"]["properties"],
    }
    places: dict[str, list[str]] = {}
    for label, members in sections.items():
        for name in members:
            places.setdefault(name, []).append(label)
    return places


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, [c for c in choices if c], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _range_text(schema: Mapping[str, Any]) -> str:
    types = schema.get("type")
    noun = "an integer" if types == "integer" or "integer" in (types or ()) else "a number"
    lo, lo_incl = schema.get("minimum"), True
    if "exclusiveMinimum" in schema:
        lo, lo_incl = schema["exclusiveMinimum"], False
    hi, hi_incl = schema.get("maximum"), True
    if "exclusiveMaximum" in schema:
        hi, hi_incl = schema["exclusiveMaximum"], False
    if lo is not None and hi is not None and lo_incl and hi_incl:
        text = f"{noun} from {lo} to {hi}"
    else:
        parts = []
        if lo is not None:
            parts.append(f"{'>=' if lo_incl else '>'} {lo}")
        if hi is not None:
            parts.append(f"{'<=' if hi_incl else '<'} {hi}")
        text = f"{noun} " + " and ".join(parts)
    if hi == 86_400_000:
        text += " (24 h)"
    return text


#: Keywords that only describe: merging them into a referenced schema changes no outcome.
_ANNOTATIONS: Final = frozenset({"description", "default", "title", "examples", "$comment"})


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its local ``#/$defs/...`` references replaced by what they name, so that
    validating 100,000 field objects does not resolve a reference for each (jsonschema spent a
    third of its time there). A reference with only annotations beside it becomes the named
    schema (plus those annotations it lacks); one with assertions beside it, an ``allOf`` of
    both (a ``$ref`` is an in-place applicator like ``allOf``: the same errors, each reported
    against the same subschema). A reference inside its own definition stays a reference."""
    defs = schema.get("$defs", {})
    prefix = "#/$defs/"

    def walk(node: Any, active: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(item, active) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value, active) for key, value in node.items() if key != "$ref"}
        ref = node.get("$ref")
        if not (isinstance(ref, str) and ref.startswith(prefix) and ref not in active):
            if ref is not None:
                out["$ref"] = ref
            return out
        target = walk(defs[ref.removeprefix(prefix)], active | {ref})
        if out.keys() <= _ANNOTATIONS:
            return {**out, **target}
        out["allOf"] = [*out.get("allOf", []), target]
        return out

    inlined: dict[str, Any] = walk(schema, frozenset())
    return inlined


@lru_cache(maxsize=1)
def _validator() -> Any:
    """The configuration schema's validator, references inlined (the same findings).

    jsonschema is imported here, not at the top: ``run`` checks its configuration in a forked
    child, so the bridge itself never loads it (~6 MiB) for that."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    validator(SCHEMA)  # checks the schema as written
    return Draft202012Validator(
        inline_refs(load_schema(SCHEMA)), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def schema_issues(data: Any, report: Report) -> None:
    for error in _validator().iter_errors(data):
        path: Path = tuple(error.absolute_path)
        keyword = error.validator
        schema = error.schema if isinstance(error.schema, dict) else {}
        instance = error.instance
        if keyword == "additionalProperties" and isinstance(instance, dict):
            known = list(schema.get("properties", {}))
            for key in instance:
                if key in known:
                    continue
                name = str(key)
                elsewhere = _option_places().get(name)
                if elsewhere:
                    hint = f" here (it is an option of {' and '.join(elsewhere)})"
                else:
                    hint = _did_you_mean(name, known)
                report.add((*path, key), f"unknown option {name!r}{hint}")
        elif keyword == "required" and isinstance(instance, dict):
            for name in error.validator_value:
                if name not in instance:
                    report.add(path, f"missing required option {name!r}")
        elif keyword == "enum":
            choices = list(error.validator_value)
            text = f"expected one of {', '.join(_choice(c) for c in choices)}, got {show(instance)}"
            if isinstance(instance, str):
                text += _did_you_mean(instance, [c for c in choices if isinstance(c, str)])
            elif not isinstance(instance, bool) and str(instance) in choices:
                text += f" (write it as a string: '{instance}')"
            report.add(path, text)
        elif keyword == "const":
            report.add(path, f"expected {_choice(error.validator_value)}, got {show(instance)}")
        elif keyword == "type":
            wanted = error.validator_value
            words = [
                _TYPE_WORDS.get(t, t) for t in ([wanted] if isinstance(wanted, str) else wanted)
            ]
            report.add(path, f"expected {' or '.join(words)}, got {show(instance)}")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            report.add(path, f"expected {_range_text(schema)}, got {show(instance)}")
        elif keyword == "minLength":
            report.add(path, "expected a non-empty string")
        elif keyword == "pattern":
            wanted = schema.get("x-expected", f"text matching {error.validator_value}")
            report.add(path, f"expected {wanted}, got {show(instance)}")
        elif keyword == "minItems":
            n = error.validator_value
            report.add(path, f"expected at least {n} item{'s' if n != 1 else ''}, got none")
        elif keyword == "uniqueItems" and isinstance(instance, list):
            dup = next(x for i, x in enumerate(instance) if x in instance[:i])
            report.add(path, f"expected each item once, {show(dup)} appears more than once")
        else:
            report.add(path, error.message)

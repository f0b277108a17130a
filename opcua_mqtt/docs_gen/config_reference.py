"""The configuration reference (docs/configuration.md), generated from the configuration schema.

:func:`config_reference` turns the parsed ``schemas/config.schema.json`` into Markdown: one entry
per property, depth-first in schema order, with its path (``writer_groups[].writers[].name``:
``[]`` stands for every item of an array), type, default, required-ness, allowed values, ranges,
patterns and description. Local ``$ref`` is resolved, ``allOf`` merged, ``oneOf``/``anyOf``
variants listed with their properties documented, ``if``/``then``/``else`` attached to the
properties it constrains, and a keyword not understood is shown verbatim, so nothing the schema
says is lost. Pure: no I/O; ``scripts/gen-docs`` writes the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "NO_DESCRIPTION",
    "REGENERATE_COMMAND",
    "Entry",
    "config_reference",
    "entries",
    "md_escape",
]

#: The command that rewrites docs/configuration.md; named in the file and in the staleness test.
REGENERATE_COMMAND: Final = "bash scripts/gen-docs"

#: Shown in place of a property's missing description.
NO_DESCRIPTION: Final = "*No description in the schema.*"

Schema = Mapping[str, Any]

# Keywords rendered specifically; any other keyword is shown verbatim under "Also".
_HANDLED: Final = frozenset(
    {
        "$schema", "$id", "$defs", "definitions", "$comment", "$ref", "title", "description",
        "default", "type", "const", "enum", "properties", "required", "additionalProperties",
        "patternProperties", "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
        "maxLength", "pattern", "format", "x-expected", "examples", "deprecated", "readOnly",
        "writeOnly", "oneOf", "anyOf", "allOf", "not", "if", "then", "else", "minProperties",
        "maxProperties",
    }
)  # fmt: skip

_FLAGS: Final = (
    ("deprecated", "Deprecated"),
    ("readOnly", "Read-only"),
    ("writeOnly", "Write-only"),
)
_VARIANT_KEYWORDS: Final = (("oneOf", "exactly one must match"), ("anyOf", "any may match"))


@dataclass
class Entry:
    """One documented property; ``facts`` are (label, Markdown text) pairs in display order."""

    path: str
    depth: int
    required: bool
    description: str | None
    facts: list[tuple[str, str]] = field(default_factory=list)


# --- Markdown ----------------------------------------------------------------------------------

_CODE_SPAN: Final = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_EMPHASIS: Final = re.compile(r"(?<![A-Za-z0-9])[*_]|[*_](?![A-Za-z0-9])")
_BLOCK_START: Final = re.compile(r"(#|>|[-+*] |\d+[.)] )")


def md_escape(text: str) -> str:
    """Schema prose as Markdown: code spans kept, ``<`` and ``>`` as entities, ``*`` and ``_``
    escaped where they could start or end emphasis, a leading block marker neutralised."""
    out: list[str] = []
    pos = 0
    for match in _CODE_SPAN.finditer(text):
        out += [_escape_plain(text[pos : match.start()]), match.group()]
        pos = match.end()
    out.append(_escape_plain(text[pos:]))
    escaped = "".join(out)
    return "\\" + escaped if _BLOCK_START.match(escaped) else escaped


def _escape_plain(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
    return _EMPHASIS.sub(lambda m: "\\" + m.group(), text)


def _code(text: str) -> str:
    """``text`` as one code span, whatever backticks it contains."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _json(value: Any) -> str:
    return _code(json.dumps(value, ensure_ascii=False))


def _anchor(path: str) -> str:
    """The anchor GitHub gives the heading `` `path` ``."""
    return re.sub(r"[^\w\- ]", "", path.lower()).replace(" ", "-")


# --- schema reading ----------------------------------------------------------------------------


def _pointer(root: Schema, ref: str) -> Schema:
    """The schema at the local JSON pointer ``ref`` (``#/$defs/name``)."""
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, Mapping) and key in node:
            node = node[key]
        else:
            raise ValueError(f"$ref {ref!r} points at nothing")
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} is not a schema object")
    return node


def _resolve(root: Schema, schema: Schema, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """``schema`` with a local ``$ref`` merged in (its own keywords win) and ``allOf`` folded in.
    A non-local ``$ref`` stays as it is and is shown verbatim."""
    merged: dict[str, Any] = {}
    own = dict(schema)
    ref = own.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        if ref in chain:
            raise ValueError(f"$ref cycle without a schema in between: {' -> '.join(chain)}")
        _merge_into(merged, _resolve(root, _pointer(root, ref), (*chain, ref)))
        del own["$ref"]
    for part in own.pop("allOf", ()):
        _merge_into(merged, _resolve(root, part, chain))
    _merge_into(merged, own)
    return merged


def _merge_into(target: dict[str, Any], extra: Schema) -> None:
    """Later keywords win, except that ``properties`` and ``required`` are combined."""
    for key, value in extra.items():
        if key == "properties" and isinstance(target.get(key), Mapping):
            target[key] = {**target[key], **value}
        elif key == "required" and isinstance(target.get(key), list):
            target[key] = [*target[key], *(r for r in value if r not in target[key])]
        else:
            target[key] = value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for python, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, python):
            return name
    return "array" if isinstance(value, list) else "object"


def _bounds(schema: Schema) -> str:
    words = (
        ("minimum", "at least"),
        ("exclusiveMinimum", "more than"),
        ("maximum", "at most"),
        ("exclusiveMaximum", "less than"),
        ("multipleOf", "a multiple of"),
    )
    return ", ".join(f"{word} {json.dumps(schema[k])}" for k, word in words if k in schema)


def _count(schema: Schema, low: str, high: str, unit: str) -> str:
    lo, hi = schema.get(low), schema.get(high)
    if lo is not None and hi is not None:
        return f"exactly {_units(lo, unit)}" if lo == hi else f"{lo} to {_units(hi, unit)}"
    if lo is not None:
        return f"at least {_units(lo, unit)}"
    return f"at most {_units(hi, unit)}" if hi is not None else ""


def _units(n: Any, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


# --- describing --------------------------------------------------------------------------------


class _Describer:
    """Walks one schema document and collects its entries."""

    def __init__(self, root: Schema) -> None:
        self.root = root
        self.entries: list[Entry] = []

    def resolve(self, schema: Schema) -> dict[str, Any]:
        return _resolve(self.root, schema)

    def type_text(self, schema: Schema) -> str:
        """``string or null``, ``array of integer``, ``exactly one of 2 variants`` ..."""
        declared = schema.get("type")
        if isinstance(declared, str | list):
            names = [declared] if isinstance(declared, str) else [str(t) for t in declared]
        else:
            values = [schema["const"]] if "const" in schema else schema.get("enum", [])
            names = list(dict.fromkeys(_json_type(v) for v in values))
        items = schema.get("items")
        parts = [
            f"array of {self.type_text(self.resolve(items))}"
            if name == "array" and isinstance(items, Mapping)
            else name
            for name in names
        ]
        if parts:
            return " or ".join(parts)
        for keyword, word in (("oneOf", "exactly one"), ("anyOf", "at least one")):
            if keyword in schema:
                return f"{word} of {len(schema[keyword])} variants"
        return "any JSON value"

    def summary(self, schema: Any) -> str:
        """A one-line description of a subschema, for variants and conditions."""
        if isinstance(schema, bool):
            return "anything" if schema else "nothing"
        resolved = self.resolve(schema)
        parts = [self.type_text(resolved)]
        parts += [f"{label.lower()} {text}" for label, text in self.constraints(resolved)]
        if "properties" in resolved:
            parts.append("members " + ", ".join(_code(p) for p in resolved["properties"]))
        if resolved.get("description"):
            parts.append(md_escape(resolved["description"]))
        return ", ".join(parts)

    def constraints(self, schema: Schema) -> list[tuple[str, str]]:
        """Facts of a (resolved) schema besides type, default, required-ness and description."""
        facts: list[tuple[str, str]] = []
        if "const" in schema:
            facts.append(("Allowed value", _json(schema["const"])))
        if "enum" in schema:
            facts.append(("Allowed values", ", ".join(_json(v) for v in schema["enum"])))
        for label, text in (
            ("Range", _bounds(schema)),
            ("Length", _count(schema, "minLength", "maxLength", "character")),
        ):
            if text:
                facts.append((label, text))
        expected = md_escape(schema["x-expected"]) if "x-expected" in schema else ""
        if "pattern" in schema:
            facts.append(
                ("Pattern", _code(schema["pattern"]) + (f": {expected}" if expected else ""))
            )
        elif expected:
            facts.append(("Expected", expected))
        if "format" in schema:
            facts.append(("Format", _code(schema["format"])))
        facts += self._array_facts(schema) + self._object_facts(schema)
        for keyword, word in _VARIANT_KEYWORDS:
            if keyword in schema:
                listed = (f"({i}) {self.summary(v)}" for i, v in enumerate(schema[keyword], 1))
                facts.append((f"Variants ({word})", "; ".join(listed)))
        if "not" in schema:
            facts.append(("Must not match", self.summary(schema["not"])))
        if "examples" in schema:
            facts.append(("Examples", ", ".join(_json(v) for v in schema["examples"])))
        facts += [(label, "yes") for key, label in _FLAGS if schema.get(key) is True]
        facts += [
            ("Also", f"{_code(k)}: {_json(v)}") for k, v in schema.items() if k not in _HANDLED
        ]
        return facts

    def _array_facts(self, schema: Schema) -> list[tuple[str, str]]:
        facts: list[tuple[str, str]] = []
        count = _count(schema, "minItems", "maxItems", "item")
        if count:
            facts.append(("Items", count))
        if schema.get("uniqueItems") is True:
            facts.append(("Unique items", "yes"))
        if "prefixItems" in schema:
            listed = (f"({i}) {self.summary(v)}" for i, v in enumerate(schema["prefixItems"], 1))
            facts.append(("Leading items", "; ".join(listed)))
        items = schema.get("items")
        if items is False:
            facts.append(("Items", "none beyond the leading items"))
        elif isinstance(items, Mapping):
            item = self.resolve(items)
            if item.get("description"):
                facts.append(("Each item", md_escape(item["description"])))
            facts += [
                (f"Item {label[0].lower()}{label[1:]}", text)
                for label, text in self.constraints(item)
            ]
            facts += [("Item condition", note) for note in self.conditions(item).get("", [])]
        return facts

    def _object_facts(self, schema: Schema) -> list[tuple[str, str]]:
        facts: list[tuple[str, str]] = []
        count = _count(schema, "minProperties", "maxProperties", "member")
        if count:
            facts.append(("Members", count))
        if schema.get("required") and "properties" in schema:
            facts.append(("Required members", ", ".join(_code(r) for r in schema["required"])))
        for pattern, sub in schema.get("patternProperties", {}).items():
            facts.append((f"Members matching {_code(pattern)}", self.summary(sub)))
        extra = schema.get("additionalProperties")
        if extra is False:
            facts.append(("Other members", "not allowed (an unknown member is an error)"))
        elif isinstance(extra, Mapping):
            facts.append(("Other members", self.summary(extra)))
        return facts

    def conditions(self, schema: Schema) -> dict[str, list[str]]:
        """``if``/``then``/``else`` as notes per property name; notes about the object itself
        are under the name ``""``."""
        if "if" not in schema:
            return {}
        when = self.condition_text(schema["if"])
        notes: dict[str, list[str]] = {}
        for branch, lead in (("then", f"when {when}"), ("else", f"unless {when}")):
            sub = schema.get(branch)
            if not isinstance(sub, Mapping):
                continue
            resolved = self.resolve(sub)
            for name, constraint in resolved.get("properties", {}).items():
                facts = (
                    self.constraints(self.resolve(constraint))
                    if isinstance(constraint, Mapping)
                    else []
                )
                text = "; ".join(f"{label.lower()} {body}" for label, body in facts)
                notes.setdefault(name, []).append(f"{lead}: {text or self.summary(constraint)}")
            for name in resolved.get("required", ()):
                notes.setdefault(name, []).append(f"{lead}: required")
            rest = {k: v for k, v in resolved.items() if k not in ("properties", "required")}
            if rest:
                notes.setdefault("", []).append(f"{lead}: {self.summary(rest)}")
        return notes

    def condition_text(self, condition: Any) -> str:
        """A condition on member values in words (`` `type` is "percent" ``); any other
        condition as its summary."""
        props = condition.get("properties", {}) if isinstance(condition, Mapping) else {}
        simple = (
            bool(props)
            and set(condition) <= {"properties", "required"}
            and all(
                isinstance(p, Mapping) and p and set(p) <= {"const", "enum"} for p in props.values()
            )
        )
        if not simple:
            return f"the object matches ({self.summary(condition)})"
        return " and ".join(
            f"{_code(name)} is {_json(p['const'])}"
            if "const" in p
            else f"{_code(name)} is one of {', '.join(_json(v) for v in p['enum'])}"
            for name, p in props.items()
        )

    # --- walking -------------------------------------------------------------------------------

    def document(
        self,
        path: str,
        schema: Schema,
        *,
        depth: int,
        required: bool,
        trail: Mapping[str, str],
        notes: list[str],
    ) -> None:
        """Add the entry of the property at ``path`` and the entries below it.

        ``trail`` maps the ``$ref`` targets already being documented to their paths, so a
        recursive schema is documented once and referred to after that.
        """
        ref = schema.get("$ref")
        resolved = self.resolve(schema)
        facts = [("Type", self.type_text(resolved)), ("Required", "yes" if required else "no")]
        if "default" in resolved:
            facts.append(("Default", _json(resolved["default"])))
        elif not required:
            facts.append(("Default", "none"))
        facts += self.constraints(resolved)
        conditions = self.conditions(resolved)
        facts += [("Condition", note) for note in [*notes, *conditions.get("", [])]]
        recursive = isinstance(ref, str) and ref in trail
        deeper = {**trail, ref: path} if isinstance(ref, str) and not recursive else trail
        items = resolved.get("items")
        item_ref = items.get("$ref") if isinstance(items, Mapping) else None
        if recursive:
            facts.append(("Recursive", f"has the members of {_code(trail[str(ref)])}"))
        elif isinstance(item_ref, str) and item_ref in deeper:
            facts.append(("Recursive", f"each item has the members of {_code(deeper[item_ref])}"))
        self.entries.append(Entry(path, depth, required, resolved.get("description"), facts))
        if not recursive:
            self.children(path, resolved, depth, deeper, conditions)

    def children(
        self,
        path: str,
        schema: Schema,
        depth: int,
        trail: Mapping[str, str],
        conditions: Mapping[str, list[str]],
    ) -> None:
        """Entries for the members, array items and variant members of ``schema``."""
        prefix = f"{path}." if path else ""
        required = schema.get("required", ())
        for name, sub in schema.get("properties", {}).items():
            self.document(
                prefix + name,
                sub if isinstance(sub, Mapping) else {},
                depth=depth + 1,
                required=name in required,
                trail=trail,
                notes=conditions.get(name, []),
            )
        items = schema.get("items")
        if isinstance(items, Mapping):
            ref = items.get("$ref")
            if not (isinstance(ref, str) and ref in trail):
                item = self.resolve(items)
                deeper = {**trail, ref: f"{path}[]"} if isinstance(ref, str) else trail
                self.children(f"{path}[]", item, depth, deeper, self.conditions(item))
        for keyword, word in _VARIANT_KEYWORDS:
            for i, variant in enumerate(schema.get(keyword, ()), 1):
                resolved = self.resolve(variant) if isinstance(variant, Mapping) else {}
                note = f"only in variant {i} of {_code(path or '(file)')} ({word})"
                variant_conditions = self.conditions(resolved)
                for name, sub in resolved.get("properties", {}).items():
                    self.document(
                        prefix + name,
                        sub if isinstance(sub, Mapping) else {},
                        depth=depth + 1,
                        required=name in resolved.get("required", ()),
                        trail=trail,
                        notes=[note, *variant_conditions.get(name, [])],
                    )


# --- public API --------------------------------------------------------------------------------


def entries(schema: Schema) -> list[Entry]:
    """Every property of ``schema``, depth-first in schema order."""
    describer = _Describer(schema)
    root = describer.resolve(schema)
    describer.children("", root, 0, {}, describer.conditions(root))
    return describer.entries


def config_reference(schema: Schema) -> str:
    """docs/configuration.md for the configuration schema ``schema``."""
    describer = _Describer(schema)
    root = describer.resolve(schema)
    listed = entries(schema)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from schemas/config.schema.json: do not edit by hand. "
        f"Regenerate with `{REGENERATE_COMMAND}`. -->",
        "",
        "*Generated from [`schemas/config.schema.json`](../schemas/config.schema.json) by "
        f"`{REGENERATE_COMMAND}`: edit the schema, then regenerate. "
        "`tests/unit/test_config_reference.py` fails when this file is out of date.*",
        "",
    ]
    if root.get("title") or root.get("description"):
        title = f"**{md_escape(root['title'])}.** " if root.get("title") else ""
        lines += [title + md_escape(root.get("description", "")), ""]
    lines += [
        "How to read an entry: the heading is the option's path in the file, with `.` between "
        "levels and `[]` for every item of an array (`writer_groups[].writers[].name` is the "
        "`name` of each writer of each writer group). *Required* means the member must be "
        "present in its object; *Default* is the value used when it is absent, written as JSON. "
        "How overrides inherit, and what `opcua-mqtt validate` checks beyond the schema, is in "
        "[configuration-design.md](configuration-design.md); "
        "[examples/config.example.yaml](../examples/config.example.yaml) is a commented example.",
        "",
    ]
    facts = describer.constraints(root)
    facts += [("Condition", note) for note in describer.conditions(root).get("", [])]
    if facts:
        lines += [*(f"- **{label}:** {text}" for label, text in facts), ""]
    lines += ["## Contents", ""]
    lines += [f"- [`{e.path}`](#{_anchor(e.path)})" for e in listed if e.depth == 1]
    for entry in listed:
        lines += ["", f"{'##' if entry.depth == 1 else '###'} `{entry.path}`", ""]
        lines += [md_escape(entry.description) if entry.description else NO_DESCRIPTION, ""]
        lines += [f"- **{label}:** {text}" for label, text in entry.facts]
    return "\n".join(lines) + "\n"

"""A configuration file's text: parsing YAML or JSON (duplicate keys, aliases, non-finite
numbers) and writing a configuration back out."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from opcua_mqtt.core.config.model import Config, Path, Severity
from opcua_mqtt.core.config.report import Loader, Report, show


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key (``writers:\\n  - name: …``), as people write YAML."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_yaml(doc: Config | Mapping[str, Any], header: str | None = None) -> str:
    """YAML text of a configuration, keys in schema order; ``header`` becomes ``#`` comments."""
    data = doc.to_json() if isinstance(doc, Config) else dict(doc)
    body = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    if not header:
        return body
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + body


def dump_json(doc: Config | Mapping[str, Any]) -> str:
    """JSON text of a configuration (2-space indent, UTF-8 kept, final newline)."""
    data = doc.to_json() if isinstance(doc, Config) else dict(doc)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _is_json(text: str, source: str) -> bool:
    lower = source.lower()
    if lower.endswith((".yaml", ".yml")):
        return False
    if lower.endswith(".json"):
        return True
    return text.lstrip()[:1] in ("{", "[")


def parse_text(text: str, report: Report) -> Any:
    text = text.removeprefix("\ufeff")
    parse = _parse_json if _is_json(text, report.source) else _parse_yaml
    data = parse(text, report)
    if report.failed:
        return None
    if data is None:
        report.add((), "the file is empty: expected a configuration (see config.example.yaml)")
        return None
    for path, line, first in report.lines.duplicates:
        report.add(path, f"option {path[-1]!r} appears twice (first on line {first})", line=line)
    check_values(data, (), report)
    return data


def _parse_yaml(text: str, report: Report) -> Any:
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        report.add((), *_yaml_problem(e))
        return None
    finally:
        loader.dispose()
    if node is not None:
        expanded, distinct = _node_counts(node)
        if expanded > distinct * ALIAS_EXPANSION + ALIAS_ALLOWANCE:
            report.add(
                (),
                f"YAML aliases expand this file to {expanded:,} values from {distinct:,}: "
                "anchors (&) and aliases (*) may repeat parts of a configuration, not multiply it",
                line=1,
            )
            return None
        report.lines.walk(node, ())
    return data


#: How far aliases may expand a YAML file: to this many times its own values, plus this many.
#: Shared defaults referenced by every writer stay far below; an alias bomb (a few hundred
#: bytes that expand to billions of values) is refused before anything walks the expansion.
ALIAS_EXPANSION = 10
ALIAS_ALLOWANCE = 10_000


def _node_counts(root: yaml.Node) -> tuple[int, int]:
    """(values as expanded, distinct values) of a composed YAML document, in linear time: each
    node's expanded size is computed once. A node inside itself counts once (refused later)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # while in progress: a cycle counts once
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = total
        return total

    expanded = size(root)
    return expanded, len(sizes)


def _parse_json(text: str, report: Report) -> Any:
    repeated: list[tuple[dict[str, Any], str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                repeated.append((obj, key))
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        message = f"not valid JSON: {e.msg} (column {e.colno})"
        report.add((), message, line=e.lineno)
        return None
    except (RecursionError, ValueError) as e:  # deep nesting, huge integers
        report.add((), "nested too deeply" if isinstance(e, RecursionError) else f"{e}")
        return None
    report.lines.pending = text
    if repeated and not (report.lines.compose(text) and report.lines.duplicates):
        for obj, key in repeated:  # no lines: PyYAML cannot read this JSON
            where = _path_of(data, obj) or ()
            report.add((*where, key), f"option {key!r} appears twice")
    report.lines.pending = None if repeated else text
    return data


def _path_of(data: Any, target: object, path: Path = ()) -> Path | None:
    """Where the object ``target`` sits in ``data`` (by identity), or None."""
    if data is target:
        return path
    if isinstance(data, dict):
        items: Iterable[tuple[str | int, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = _path_of(value, target, (*path, key))
        if found is not None:
            return found
    return None


def _yaml_problem(e: BaseException) -> tuple[str, Severity, int | None]:
    """The message, severity and line of a YAML parse failure."""
    if isinstance(e, RecursionError):
        return "nested too deeply", "error", None
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "syntax error"
        return f"not valid YAML: {what}", "error", mark.line + 1 if mark is not None else None
    return f"not valid YAML: {e}", "error", None


def check_values(
    value: Any, path: Path, report: Report, active: frozenset[int] = frozenset()
) -> None:
    """What JSON cannot hold but YAML and Python's json module let through: non-finite
    numbers, non-text keys, and YAML aliases that contain themselves."""
    if isinstance(value, float) and not math.isfinite(value):
        report.add(path, f"expected a finite number, got {value}")
        return
    if not isinstance(value, dict | list):
        return
    if id(value) in active:
        report.add(path, "a YAML alias that contains itself")
        return
    active = active | {id(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                report.add(path, f"option names are text, got {show(key)}")
                continue
            check_values(item, (*path, key), report, active)
    else:
        for i, item in enumerate(value):
            check_values(item, (*path, i), report, active)

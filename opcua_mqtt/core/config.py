"""The bridge configuration: one YAML or JSON file, checked, then resolved into frozen dataclasses.

Checking happens in three passes so that every mistake in a file is reported at once, each with
the file, the line (YAML always; JSON when PyYAML can read it, which it usually can) and a
JSON-pointer-like path such as ``writer_groups/0/writers/1/fields/3/node_id``:

1. parsing (syntax, duplicate keys, numbers that are not finite);
2. ``schemas/config.schema.json`` - the contract, with jsonschema's messages rewritten to say what
   was expected (``expected one of None, Sign, SignAndEncrypt, got 'SignEncrypt'``) and unknown
   options answered with the closest known one;
3. the rules a schema cannot express: unique names and ids, NodeId syntax, option combinations.
   Some are warnings (severity ``"warning"``): legal but probably not meant, they never fail
   validation.

Publishing options fall back from a field to its writer, its writer group, then ``defaults``, and
are resolved here, so the bridge never looks anything up twice. Pure: no file or network access;
the caller reads the file and passes its text and name.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

import yaml

from opcua_mqtt.core.globs import glob_match
from opcua_mqtt.core.schema_validation import load_schema, validator
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

__all__ = [
    "BUILTIN_TYPES",
    "FIELD_ID_NAMESPACE",
    "CheckResult",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Deadband",
    "FieldConfig",
    "MetadataSigningConfig",
    "MetricsConfig",
    "MqttConfig",
    "OpcUaConfig",
    "PermissionConfig",
    "PublishingDefaults",
    "Severity",
    "TlsConfig",
    "WritableNode",
    "WriteBackConfig",
    "WriterConfig",
    "WriterGroupConfig",
    "check_config",
    "check_config_data",
    "config_from_dict",
    "derive_field_id",
    "dump_json",
    "dump_yaml",
    "load_config",
]

SCHEMA: Final = "config"

#: Built-in type names by their Part 6 §5.1.2 id (1..25); index 0 is unused.
BUILTIN_TYPES: Final = (
    "",
    "Boolean",
    "SByte",
    "Byte",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float",
    "Double",
    "String",
    "DateTime",
    "Guid",
    "ByteString",
    "XmlElement",
    "NodeId",
    "ExpandedNodeId",
    "StatusCode",
    "QualifiedName",
    "LocalizedText",
    "ExtensionObject",
    "DataValue",
    "Variant",
    "DiagnosticInfo",
)
_NUMERIC: Final = frozenset(BUILTIN_TYPES[2:12])  # SByte .. Double: the types a deadband filters

#: Namespace of the name-based UUIDs (version 5) that ``map`` and the loader give to fields.
FIELD_ID_NAMESPACE: Final = uuid.uuid5(
    uuid.NAMESPACE_URL, "https://opcua-mqtt.dev/ids/dataset-field"
)

Severity = Literal["error", "warning"]
Path = tuple[str | int, ...]


# ------------------------------------------------------------------------------------ issues


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One finding in a configuration file.

    ``path`` is ``/``-separated (``writer_groups/0/name``; empty for the whole file); ``line`` is
    1-based, or None when unknown (JSON that PyYAML cannot read, or a document built in memory).
    """

    source: str
    path: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        kind = "warning: " if self.severity == "warning" else ""
        return f"{where}: {self.path or '(top level)'}: {kind}{self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` holds every finding (warnings too)."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        errors = self.errors
        first = str(errors[0]) if errors else "invalid configuration"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]


# ------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class Deadband:
    """Data-change filter of a monitored item (Part 4 DeadbandType and value)."""

    type: Literal["none", "absolute", "percent"] = "none"
    value: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "value": _num(self.value)}


@dataclass(frozen=True, slots=True)
class OpcUaConfig:
    endpoint: str
    server_uri: str | None = None
    security_policy: str = "Basic256Sha256"
    security_mode: str = "SignAndEncrypt"
    certificate: str | None = "certs/opcua-client.pem"
    private_key: str | None = "certs/opcua-client.key"
    trust_dir: str | None = "certs/trusted-servers"
    username: str | None = None
    password_env: str | None = "OPCUA_PASSWORD"
    timeout_s: float = 10.0

    @property
    def identity(self) -> str:
        """What stable ids are derived from: the ApplicationUri, else the endpoint."""
        return self.server_uri or self.endpoint


@dataclass(frozen=True, slots=True)
class TlsConfig:
    enabled: bool = True
    ca: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "localhost"
    port: int = 8883
    protocol: str = "5"
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    topic_prefix: str = "opcua"


@dataclass(frozen=True, slots=True)
class MetadataSigningConfig:
    private_key: str | None = None
    certificate_chain: str | None = None

    @property
    def enabled(self) -> bool:
        return self.private_key is not None


@dataclass(frozen=True, slots=True)
class PublishingDefaults:
    """The ``defaults`` section: what every group, writer and field uses unless it overrides."""

    publishing_interval_ms: float = 1000.0
    sampling_interval_ms: float = 500.0
    queue_size: int = 10
    deadband: Deadband = field(default_factory=Deadband)
    key_frame_count: int = 10
    keep_alive_ms: float = 10000.0
    qos: int = 1
    encoding: str = "compact"
    field_content: tuple[str, ...] = ("status", "source_timestamp")

    def to_json(self) -> dict[str, Any]:
        return _section(self)


@dataclass(frozen=True, slots=True)
class FieldConfig:
    """One published variable, with its monitoring options resolved.

    ``overrides`` holds the options this field set itself (as written), so that :meth:`to_json`
    writes back what the file said rather than every resolved value.
    """

    name: str
    node_id: str
    dataset_field_id: uuid.UUID
    builtin_type: str | None
    data_type: str | None
    value_rank: int
    array_dimensions: tuple[int, ...]
    sampling_interval_ms: float
    queue_size: int
    deadband: Deadband
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "node_id": self.node_id,
            "dataset_field_id": str(self.dataset_field_id),
        }
        if self.builtin_type is not None:
            out["builtin_type"] = self.builtin_type
        if self.data_type is not None:
            out["data_type"] = self.data_type
        if self.value_rank != -1:
            out["value_rank"] = self.value_rank
        if self.array_dimensions:
            out["array_dimensions"] = list(self.array_dimensions)
        out.update(self.overrides)
        return out


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """One DataSetWriter with its DataSet-level options resolved."""

    name: str
    dataset_writer_id: int
    fields: tuple[FieldConfig, ...]
    encoding: str
    field_content: tuple[str, ...]
    key_frame_count: int
    keep_alive_ms: float
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dataset_writer_id": self.dataset_writer_id}
        out.update(self.overrides)
        out["fields"] = [f.to_json() for f in self.fields]
        return out


@dataclass(frozen=True, slots=True)
class WriterGroupConfig:
    """One WriterGroup; its writers carry the resolved values they need."""

    name: str
    writers: tuple[WriterConfig, ...]
    publishing_interval_ms: float
    qos: int
    bundle_writers: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        out.update(self.overrides)
        if self.bundle_writers:
            out["bundle_writers"] = True
        out["writers"] = [w.to_json() for w in self.writers]
        return out


@dataclass(frozen=True, slots=True)
class WritableNode:
    node_id: str
    field: str | None = None
    builtin_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node_id": self.node_id}
        if self.field is not None:
            out["field"] = self.field
        if self.builtin_type is not None:
            out["builtin_type"] = self.builtin_type
        return out


@dataclass(frozen=True, slots=True)
class WriteBackConfig:
    enabled: bool = False
    allow: tuple[str, ...] = ()
    writable_nodes: tuple[WritableNode, ...] = ()
    max_request_bytes: int = 65536
    max_targets: int = 100
    rate_per_s: float = 20.0
    burst: int = 40
    idempotency_window_s: float = 300.0
    total_rate_per_s: float = 200.0
    total_burst: int = 400
    reply_prefixes: tuple[str, ...] = ()  # empty: <topic_prefix>/json/reply
    trust: str | None = None
    require_signature: bool | None = None  # None: true when trust is set
    max_deadline_s: float = 60.0
    permissions: tuple[PermissionConfig, ...] | None = None

    @property
    def signature_required(self) -> bool:
        return self.trust is not None if self.require_signature is None else self.require_signature


@dataclass(frozen=True, slots=True)
class PermissionConfig:
    """Requester identities (globs) that may do ``actions`` on what ``allow`` names."""

    identities: tuple[str, ...]
    allow: tuple[str, ...]
    actions: tuple[str, ...] = ("write",)

    def to_json(self) -> dict[str, Any]:
        return {
            "identities": list(self.identities),
            "allow": list(self.allow),
            "actions": list(self.actions),
        }


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The metrics and health endpoint; a Config without one serves nothing."""

    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, valid configuration. Build it with :func:`load_config` or
    :func:`config_from_dict`, which check it; the constructor does not."""

    publisher_id: str
    opcua: OpcUaConfig
    writer_groups: tuple[WriterGroupConfig, ...]
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    metadata_signing: MetadataSigningConfig = field(default_factory=MetadataSigningConfig)
    defaults: PublishingDefaults = field(default_factory=PublishingDefaults)
    write_back: WriteBackConfig = field(default_factory=WriteBackConfig)
    metrics: MetricsConfig | None = None
    version: int = 1

    def writers(self) -> Iterator[tuple[WriterGroupConfig, WriterConfig]]:
        for group in self.writer_groups:
            for writer in group.writers:
                yield group, writer

    def fields(self) -> Iterator[tuple[WriterGroupConfig, WriterConfig, FieldConfig]]:
        for group, writer in self.writers():
            for f in writer.fields:
                yield group, writer, f

    def to_json(self) -> dict[str, Any]:
        """The file form: sections in full (defaults written out, so a reader sees them),
        groups, writers and fields with only the options they set themselves."""
        out = {
            "version": self.version,
            "publisher_id": self.publisher_id,
            "opcua": _section(self.opcua),
            "mqtt": _section(self.mqtt),
            "metadata_signing": _section(self.metadata_signing),
            "defaults": _section(self.defaults),
            "writer_groups": [g.to_json() for g in self.writer_groups],
            "write_back": _write_back_json(self.write_back),
        }
        if self.metrics is not None:
            out["metrics"] = _section(self.metrics)
        return out


def _write_back_json(wb: WriteBackConfig) -> dict[str, Any]:
    """The write_back section as written by to_json: what a person sets, defaults left out."""
    out: dict[str, Any] = {
        "enabled": wb.enabled,
        "allow": list(wb.allow),
        "writable_nodes": [n.to_json() for n in wb.writable_nodes],
    }
    for f in dataclasses.fields(wb):
        value = getattr(wb, f.name)
        if f.name in out or value == f.default:
            continue
        if f.name == "permissions":
            value = [p.to_json() for p in value]
        out[f.name] = (
            list(value)
            if isinstance(value, tuple)
            else _num(value)
            if isinstance(value, float)
            else value
        )
    return out


def _section(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Deadband):
            value = value.to_json()
        elif dataclasses.is_dataclass(value):
            value = _section(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float):
            value = _num(value)
        out[f.name] = value
    return out


def _num(x: float) -> int | float:
    """1000.0 -> 1000, so files read as they were written."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


# ----------------------------------------------------------------------------------- output


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


# ----------------------------------------------------------------------------------- NodeIds

_NS_INDEX: Final = re.compile(r"ns=(\d+);")


def derive_field_id(identity: str, node_id: str) -> uuid.UUID:
    """The DataSetFieldId of a variable: a UUID version 5 of the server's identity
    (ApplicationUri, else endpoint) and the canonical NodeId. Same server, same node: same id."""
    return uuid.uuid5(FIELD_ID_NAMESPACE, f"{identity}\n{node_id}")


# ------------------------------------------------------------------------------------ parsing


#: libyaml's parser when PyYAML was built with it: ten times faster on big mapped files.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Lines:
    """Line numbers of the members of a composed YAML document. JSON composes as YAML too, but
    only when a line is asked for: a valid JSON file is never parsed twice."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, int, int]] = []  # (path, line, line of the first)
        self.pending: str | None = None  # JSON text not composed yet

    def line(self, path: Path) -> int | None:
        if self.pending is not None:
            text, self.pending = self.pending, None
            self.compose(text)
        for n in range(len(path), -1, -1):
            found = self.lines.get(path[:n])
            if found is not None:
                return found
        return None

    def compose(self, text: str) -> bool:
        """Read the lines of ``text``; False when PyYAML cannot (JSON with tabs, say)."""
        try:
            node = _compose(text)
        except (yaml.YAMLError, RecursionError, ValueError):
            return False
        if node is not None:
            self.walk(node, ())
        return True

    def walk(self, node: yaml.Node, path: Path, active: frozenset[int] = frozenset()) -> None:
        if path not in self.lines:
            self.lines[path] = node.start_mark.line + 1
        if id(node) in active:  # an alias inside its own anchor
            return
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is None:
                    continue
                line = key.start_mark.line + 1
                if name in seen:
                    self.duplicates.append(((*path, name), line, seen[name]))
                    continue
                seen[name] = line
                self.lines[(*path, name)] = line
                self.walk(value, (*path, name), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), active)


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _is_json(text: str, source: str) -> bool:
    lower = source.lower()
    if lower.endswith((".yaml", ".yml")):
        return False
    if lower.endswith(".json"):
        return True
    return text.lstrip()[:1] in ("{", "[")


class _Report:
    """Collects issues for one source, turning paths into text and lines."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = _Lines()
        self.issues: list[ConfigIssue] = []

    def add(
        self, path: Path, message: str, severity: Severity = "error", line: int | None = None
    ) -> None:
        text = "/".join(str(p) for p in path)
        where = line if line is not None else self.lines.line(path)
        issue = ConfigIssue(self.source, text, where, message, severity)
        if issue not in self.issues:
            self.issues.append(issue)

    def sorted(self) -> list[ConfigIssue]:
        return sorted(self.issues, key=lambda i: (i.line or 0, i.path, i.message))

    @property
    def failed(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


def _parse(text: str, report: _Report) -> Any:
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
    _check_values(data, (), report)
    return data


def _parse_yaml(text: str, report: _Report) -> Any:
    loader = _Loader(text)
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


def _parse_json(text: str, report: _Report) -> Any:
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
        report.issues.append(ConfigIssue(report.source, "", e.lineno, message))
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


def _check_values(
    value: Any, path: Path, report: _Report, active: frozenset[int] = frozenset()
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
                report.add(path, f"option names are text, got {_show(key)}")
                continue
            _check_values(item, (*path, key), report, active)
    else:
        for i, item in enumerate(value):
            _check_values(item, (*path, i), report, active)


# --------------------------------------------------------------------------- schema messages

_TYPE_WORDS: Final = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _show(value: Any) -> str:
    """A value as the message shows it: strings quoted, containers by kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    return f"a {type(value).__name__}"


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
        "opcua": props["opcua"]["properties"],
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


def _schema_issues(data: Any, report: _Report) -> None:
    for error in validator(SCHEMA).iter_errors(data):
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
            text = (
                f"expected one of {', '.join(_choice(c) for c in choices)}, got {_show(instance)}"
            )
            if isinstance(instance, str):
                text += _did_you_mean(instance, [c for c in choices if isinstance(c, str)])
            elif not isinstance(instance, bool) and str(instance) in choices:
                text += f" (write it as a string: '{instance}')"
            report.add(path, text)
        elif keyword == "const":
            report.add(path, f"expected {_choice(error.validator_value)}, got {_show(instance)}")
        elif keyword == "type":
            wanted = error.validator_value
            words = [
                _TYPE_WORDS.get(t, t) for t in ([wanted] if isinstance(wanted, str) else wanted)
            ]
            report.add(path, f"expected {' or '.join(words)}, got {_show(instance)}")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            report.add(path, f"expected {_range_text(schema)}, got {_show(instance)}")
        elif keyword == "minLength":
            report.add(path, "expected a non-empty string")
        elif keyword == "pattern":
            wanted = schema.get("x-expected", f"text matching {error.validator_value}")
            report.add(path, f"expected {wanted}, got {_show(instance)}")
        elif keyword == "minItems":
            n = error.validator_value
            report.add(path, f"expected at least {n} item{'s' if n != 1 else ''}, got none")
        elif keyword == "uniqueItems" and isinstance(instance, list):
            dup = next(x for i, x in enumerate(instance) if x in instance[:i])
            report.add(path, f"expected each item once, {_show(dup)} appears more than once")
        else:
            report.add(path, error.message)


# ----------------------------------------------------------------------------- semantic rules


_LEVELS: Final = ("field", "writer", "group")


class _Resolver:
    """Finds a publishing option's value and where it was set (field, writer, group, defaults)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.defaults: Mapping[str, Any] = data.get("defaults") or {}
        self.python = PublishingDefaults()

    def get(self, name: str, levels: Sequence[tuple[Mapping[str, Any], Path]]) -> tuple[Any, Path]:
        for raw, path in levels:
            value = raw.get(name)
            if value is not None:
                return value, (*path, name)
        if name in self.defaults:
            return self.defaults[name], ("defaults", name)
        value = getattr(self.python, name)
        if isinstance(value, Deadband):
            value = value.to_json()
        return value, ("defaults", name)


def _node_id_rule(value: str, path: Path, report: _Report, what: str = "NodeId") -> str | None:
    try:
        canonical = canonical_node_id(value)
    except ValueError as e:
        report.add(
            path,
            f"expected a {what} such as 'nsu=urn:plant;s=Line1.Temperature' or 'i=2258', "
            f"got {_show(value)}: {e}",
        )
        return None
    m = _NS_INDEX.match(value)
    if m and m.group(1) != "0":
        report.add(
            path,
            f"namespace index {m.group(1)} can change when the server restarts or is updated: "
            "write nsu=<namespace URI>;... (browse shows it)",
            "warning",
        )
    return canonical


_NODE_ID_LIKE: Final = re.compile(r"(?:[isgb]=|ns=\d+;|nsu=)")


def write_back_allowed(config: Config, entries: Iterable[str] | None = None) -> frozenset[str]:
    """The canonical NodeIds that write-back may write: the allow entries (``entries``, by
    default ``write_back.allow``) that are NodeIds, plus the nodes of the fields whose
    ``<group>/<writer>/<field>`` name an entry's glob matches. The same reading of ``allow`` as
    the "matches nothing" rule of :func:`check_config`."""
    names = {f"{g.name}/{w.name}/{f.name}": f.node_id for g, w, f in config.fields()}
    allowed: set[str] = set()
    for entry in config.write_back.allow if entries is None else entries:
        if _NODE_ID_LIKE.match(entry):
            allowed.add(canonical_node_id(entry))
        else:
            allowed |= {
                canonical_node_id(node) for name, node in names.items() if glob_match(entry, name)
            }
    return frozenset(allowed)


def _semantic_issues(data: Mapping[str, Any], report: _Report) -> None:
    _connection_rules(data, report)
    resolver = _Resolver(data)
    group_names: dict[str, Path] = {}
    writer_ids: dict[int, Path] = {}
    field_ids: dict[uuid.UUID, Path] = {}
    published: list[tuple[str, str | None]] = []  # (group/writer/field, canonical node id)
    identity = data["opcua"].get("server_uri") or data["opcua"]["endpoint"]
    timing_reported: set[tuple[Path, int, str]] = set()
    groups = data["writer_groups"]
    if not groups:
        report.add(("writer_groups",), "no writer groups: nothing is published", "warning")
    for gi, group in enumerate(groups):
        gpath: Path = ("writer_groups", gi)
        _unique(group["name"], (*gpath, "name"), group_names, report, "writer group name")
        pub, _ = resolver.get("publishing_interval_ms", [(group, gpath)])
        writer_names: dict[str, Path] = {}
        for wi, writer in enumerate(group["writers"]):
            wpath: Path = (*gpath, "writers", wi)
            _unique(writer["name"], (*wpath, "name"), writer_names, report, "writer name")
            wid = writer["dataset_writer_id"]
            if wid in writer_ids:
                report.add(
                    (*wpath, "dataset_writer_id"),
                    f"dataset_writer_id {wid} is already used by {_where(writer_ids[wid], report)}",
                )
            else:
                writer_ids[wid] = (*wpath, "dataset_writer_id")
            levels_w = [(writer, wpath), (group, gpath)]
            content, content_path = resolver.get("field_content", levels_w)
            if "raw" in content and len(content) > 1:
                report.add(content_path, "raw stands alone: write [raw] or leave raw out")
            keep, keep_path = resolver.get("keep_alive_ms", levels_w)
            if keep < pub and (keep_path, gi, "keep") not in timing_reported:
                timing_reported.add((keep_path, gi, "keep"))
                report.add(
                    keep_path,
                    f"keep_alive_ms {_num(keep)} is shorter than the publishing_interval_ms "
                    f"{_num(pub)} of writer group {group['name']!r}: keep-alives cannot come "
                    "more often than the group publishes",
                    "warning",
                )
            _field_rules(
                group,
                gi,
                writer,
                wpath,
                levels_w,
                pub,
                resolver,
                identity,
                field_ids,
                published,
                timing_reported,
                report,
            )
    _write_back_rules(data, published, report)


def _field_rules(
    group: Mapping[str, Any],
    gi: int,
    writer: Mapping[str, Any],
    wpath: Path,
    levels_w: list[tuple[Mapping[str, Any], Path]],
    pub: float,
    resolver: _Resolver,
    identity: str,
    field_ids: dict[uuid.UUID, Path],
    published: list[tuple[str, str | None]],
    timing_reported: set[tuple[Path, int, str]],
    report: _Report,
) -> None:
    names: dict[str, Path] = {}
    nodes: dict[str, Path] = {}
    own_ids: dict[uuid.UUID, Path] = {}
    for fi, f in enumerate(writer["fields"]):
        fpath: Path = (*wpath, "fields", fi)
        _unique(f["name"], (*fpath, "name"), names, report, "field name")
        node = _node_id_rule(f["node_id"], (*fpath, "node_id"), report)
        published.append((f"{group['name']}/{writer['name']}/{f['name']}", node))
        if f.get("data_type") is not None:
            _node_id_rule(f["data_type"], (*fpath, "data_type"), report, "DataType NodeId")
        duplicate_node = False
        if node is not None:
            if node in nodes:
                duplicate_node = True
                report.add(
                    (*fpath, "node_id"),
                    f"node {f['node_id']} is already published by {_where(nodes[node], report)} "
                    "of this writer",
                )
            else:
                nodes[node] = (*fpath, "node_id")
        explicit = f.get("dataset_field_id")
        fid: uuid.UUID | None = uuid.UUID(explicit) if explicit else None
        if fid is None and node is not None:
            fid = derive_field_id(identity, node)
        id_path: Path = (*fpath, "dataset_field_id") if explicit else fpath
        if fid is not None and not duplicate_node:
            if fid in own_ids:
                report.add(
                    id_path,
                    f"dataset_field_id {fid} is already used by {_where(own_ids[fid], report)} "
                    "of this writer",
                )
            elif fid in field_ids:
                report.add(
                    id_path,
                    f"dataset_field_id {fid} is also used by {_where(field_ids[fid], report)}: "
                    "subscribers that track fields by id across writers will mix them up",
                    "warning",
                )
            own_ids.setdefault(fid, id_path)
            field_ids.setdefault(fid, id_path)
        rank = f.get("value_rank", -1)
        dims = f.get("array_dimensions") or []
        if dims:
            wanted = {-1: 0, -3: 1}.get(rank, rank if rank > 0 else None)
            if wanted is not None and len(dims) != wanted and not (rank == -3 and len(dims) < 1):
                report.add(
                    (*fpath, "array_dimensions"),
                    f"expected {wanted} dimension{'s' if wanted != 1 else ''} for value_rank "
                    f"{rank}, got {len(dims)}",
                )
        builtin = f.get("builtin_type")
        deadband = f.get("deadband")
        if (
            deadband
            and deadband.get("type", "none") != "none"
            and builtin is not None
            and builtin not in _NUMERIC
        ):
            report.add(
                (*fpath, "deadband"),
                f"a deadband filters numeric values only, and this field is a {builtin}",
            )
        levels_f = [(f, fpath), *levels_w]
        sampling, sampling_path = resolver.get("sampling_interval_ms", levels_f)
        if sampling > pub and (sampling_path, gi, "sampling") not in timing_reported:
            timing_reported.add((sampling_path, gi, "sampling"))
            report.add(
                sampling_path,
                f"sampling_interval_ms {_num(sampling)} is longer than the "
                f"publishing_interval_ms {_num(pub)} of writer group {group['name']!r}: "
                "most of its messages carry no new value from the fields sampled this slowly",
                "warning",
            )


def _unique(name: str, path: Path, seen: dict[str, Path], report: _Report, what: str) -> None:
    if name in seen:
        report.add(path, f"{what} {name!r} is already used by {_where(seen[name], report)}")
    else:
        seen[name] = path


def _where(path: Path, report: _Report) -> str:
    text = "/".join(str(p) for p in path)
    line = report.lines.line(path)
    return f"{text} (line {line})" if line else text


def _connection_rules(data: Mapping[str, Any], report: _Report) -> None:
    opcua = data["opcua"]
    policy = opcua.get("security_policy", "Basic256Sha256")
    mode = opcua.get("security_mode", "SignAndEncrypt")
    if (policy == "None") != (mode == "None"):
        report.add(
            ("opcua", "security_mode"),
            f"security_mode {mode} does not go with security_policy {policy}: policy None "
            "needs mode None, any other policy Sign or SignAndEncrypt",
        )
    elif policy == "None":
        report.add(
            ("opcua", "security_policy"),
            "security policy None: the OPC UA session is neither signed nor encrypted",
            "warning",
        )
    if opcua.get("username") and not opcua.get("password_env", "OPCUA_PASSWORD"):
        report.add(
            ("opcua", "password_env"),
            "username needs password_env: the environment variable that holds its password",
        )
    mqtt = data.get("mqtt") or {}
    tls = mqtt.get("tls") or {}
    if not tls.get("enabled", True):
        report.add(
            ("mqtt", "tls", "enabled"),
            "TLS is off: data, metadata and any MQTT password travel in clear text",
            "warning",
        )
    elif not tls.get("verify", True):
        report.add(
            ("mqtt", "tls", "verify"),
            "the broker's certificate is not checked: anyone on the path can pose as the broker",
            "warning",
        )
    if (tls.get("certificate") is None) != (tls.get("private_key") is None):
        which = "certificate" if tls.get("certificate") is None else "private_key"
        report.add(("mqtt", "tls", which), "mutual TLS needs both certificate and private_key")
    prefix = mqtt.get("topic_prefix", "opcua")
    try:
        TopicTree(prefix=prefix)
    except ValueError as e:
        report.add(("mqtt", "topic_prefix"), f"expected a topic prefix, got {_show(prefix)}: {e}")
    signing = data.get("metadata_signing") or {}
    if (signing.get("private_key") is None) != (signing.get("certificate_chain") is None):
        which = "private_key" if signing.get("private_key") is None else "certificate_chain"
        report.add(
            ("metadata_signing", which),
            "signing needs both private_key and certificate_chain (or neither)",
        )
    elif signing.get("private_key") is None:
        report.add(
            ("metadata_signing",),
            "metadata is not signed: subscribers cannot tell it from forged metadata "
            "(docs/signing.md; `opcua-mqtt certs` makes a signing key to try it with)",
            "warning",
        )
    metrics_host = (data.get("metrics") or {}).get("host", "127.0.0.1")
    if not _is_loopback(metrics_host):
        report.add(
            ("metrics", "host"),
            f"the metrics endpoint on {metrics_host} has no authentication: anyone who can "
            "reach that address reads the bridge's state",
            "warning",
        )
    content = (data.get("defaults") or {}).get("field_content", [])
    if "raw" in content and len(content) > 1:
        report.add(("defaults", "field_content"), "raw stands alone: write [raw] or leave raw out")
    for gi, group in enumerate(data["writer_groups"]):
        content = group.get("field_content") or []
        if "raw" in content and len(content) > 1:
            report.add(
                ("writer_groups", gi, "field_content"),
                "raw stands alone: write [raw] or leave raw out",
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: where it points is decided elsewhere


def _write_back_rules(
    data: Mapping[str, Any], published: list[tuple[str, str | None]], report: _Report
) -> None:
    wb = data.get("write_back") or {}
    enabled = bool(wb.get("enabled", False))
    writable: list[str] = []
    field_names = {name for name, _ in published}
    for i, node in enumerate(wb.get("writable_nodes", [])):
        path: Path = ("write_back", "writable_nodes", i)
        canonical = _node_id_rule(node["node_id"], (*path, "node_id"), report)
        if canonical is not None:
            writable.append(canonical)
        if node.get("field") is not None and node["field"] not in field_names:
            report.add((*path, "field"), f"no field {node['field']!r} is configured", "warning")
    _signature_rules(wb, report)
    allow = wb.get("allow", [])
    if enabled and not allow:
        report.add(
            ("write_back", "allow"),
            "write-back is enabled but allow is empty: every command will be refused",
            "warning",
        )
    entries: list[tuple[Path, str]] = [(("write_back", "allow", i), e) for i, e in enumerate(allow)]
    for pi, permission in enumerate(wb.get("permissions") or []):
        entries += [
            (("write_back", "permissions", pi, "allow", i), e)
            for i, e in enumerate(permission["allow"])
        ]
    for path, entry in entries:
        if _NODE_ID_LIKE.match(entry):
            # Any node may be allowed, published or not (docs/write-back.md): only the syntax
            # can be checked here; the server says at write time whether the node exists.
            _node_id_rule(entry, path, report)
            continue
        try:
            if any(glob_match(entry, name) for name in field_names):
                continue
        except ValueError as e:
            report.add(path, str(e))
            continue
        report.add(
            path,
            f"{entry!r} matches no configured field "
            "(expected a NodeId or a <group>/<writer>/<field> glob)",
            "error" if enabled else "warning",
        )


def _signature_rules(wb: Mapping[str, Any], report: _Report) -> None:
    """Requester signatures and permissions: what needs what (docs/write-back.md)."""
    required = wb.get("require_signature")
    trust = wb.get("trust")
    if required and trust is None:
        report.add(
            ("write_back", "require_signature"),
            "signed commands are required but write_back.trust names no CA to verify them",
        )
    if wb.get("permissions") is not None and (trust is None or required is False):
        report.add(
            ("write_back", "permissions"),
            "permissions name certificate identities: they need write_back.trust, and "
            "require_signature not false",
        )
    window = float(wb.get("idempotency_window_s", 300.0))
    if float(wb.get("max_deadline_s", 60.0)) > window:
        report.add(
            ("write_back", "max_deadline_s"),
            f"longer than idempotency_window_s ({window:g} s): a signed command could be "
            "replayed after its RequestId is forgotten and before its Deadline",
        )


# ------------------------------------------------------------------------------------ building


def _build(data: Mapping[str, Any]) -> Config:
    resolver = _Resolver(data)
    opcua = _fill(OpcUaConfig, data["opcua"])
    identity = opcua.identity
    groups = []
    for graw in data["writer_groups"]:
        gl = [(graw, ())]
        writers = []
        for wraw in graw["writers"]:
            wl = [(wraw, ()), *gl]
            fields = []
            for fraw in wraw["fields"]:
                fl = [(fraw, ()), *wl]
                node = canonical_node_id(fraw["node_id"])
                explicit = fraw.get("dataset_field_id")
                fields.append(
                    FieldConfig(
                        name=fraw["name"],
                        node_id=fraw["node_id"],
                        dataset_field_id=uuid.UUID(explicit)
                        if explicit
                        else derive_field_id(identity, node),
                        builtin_type=fraw.get("builtin_type"),
                        data_type=fraw.get("data_type"),
                        value_rank=int(fraw.get("value_rank", -1)),
                        array_dimensions=tuple(int(d) for d in fraw.get("array_dimensions", [])),
                        sampling_interval_ms=float(resolver.get("sampling_interval_ms", fl)[0]),
                        queue_size=int(resolver.get("queue_size", fl)[0]),
                        deadband=_deadband(resolver.get("deadband", fl)[0]),
                        overrides=_overrides(fraw, _FIELD_OPTIONS),
                    )
                )
            writers.append(
                WriterConfig(
                    name=wraw["name"],
                    dataset_writer_id=int(wraw["dataset_writer_id"]),
                    fields=tuple(fields),
                    encoding=resolver.get("encoding", wl)[0],
                    field_content=tuple(resolver.get("field_content", wl)[0]),
                    key_frame_count=int(resolver.get("key_frame_count", wl)[0]),
                    keep_alive_ms=float(resolver.get("keep_alive_ms", wl)[0]),
                    overrides=_overrides(wraw, _WRITER_OPTIONS),
                )
            )
        groups.append(
            WriterGroupConfig(
                name=graw["name"],
                writers=tuple(writers),
                publishing_interval_ms=float(resolver.get("publishing_interval_ms", gl)[0]),
                qos=int(resolver.get("qos", gl)[0]),
                bundle_writers=bool(graw.get("bundle_writers", False)),
                overrides=_overrides(graw, _GROUP_OPTIONS),
            )
        )
    mqtt_raw = dict(data.get("mqtt") or {})
    tls = _fill(TlsConfig, mqtt_raw.pop("tls", None) or {})
    wb = data.get("write_back") or {}
    metrics = data.get("metrics")
    return Config(
        version=int(data["version"]),
        publisher_id=data["publisher_id"],
        opcua=opcua,
        mqtt=dataclasses.replace(_fill(MqttConfig, mqtt_raw), tls=tls),
        metadata_signing=_fill(MetadataSigningConfig, data.get("metadata_signing") or {}),
        defaults=PublishingDefaults(
            publishing_interval_ms=float(resolver.get("publishing_interval_ms", [])[0]),
            sampling_interval_ms=float(resolver.get("sampling_interval_ms", [])[0]),
            queue_size=int(resolver.get("queue_size", [])[0]),
            deadband=_deadband(resolver.get("deadband", [])[0]),
            key_frame_count=int(resolver.get("key_frame_count", [])[0]),
            keep_alive_ms=float(resolver.get("keep_alive_ms", [])[0]),
            qos=int(resolver.get("qos", [])[0]),
            encoding=resolver.get("encoding", [])[0],
            field_content=tuple(resolver.get("field_content", [])[0]),
        ),
        writer_groups=tuple(groups),
        write_back=WriteBackConfig(
            enabled=bool(wb.get("enabled", False)),
            allow=tuple(wb.get("allow", [])),
            writable_nodes=tuple(
                WritableNode(n["node_id"], n.get("field"), n.get("builtin_type"))
                for n in wb.get("writable_nodes", [])
            ),
            max_request_bytes=int(wb.get("max_request_bytes", 65536)),
            max_targets=int(wb.get("max_targets", 100)),
            rate_per_s=float(wb.get("rate_per_s", 20.0)),
            burst=int(wb.get("burst", 40)),
            idempotency_window_s=float(wb.get("idempotency_window_s", 300.0)),
            total_rate_per_s=float(wb.get("total_rate_per_s", 200.0)),
            total_burst=int(wb.get("total_burst", 400)),
            reply_prefixes=tuple(p.rstrip("/") for p in wb.get("reply_prefixes", [])),
            trust=wb.get("trust"),
            require_signature=wb.get("require_signature"),
            max_deadline_s=float(wb.get("max_deadline_s", 60.0)),
            permissions=None
            if wb.get("permissions") is None
            else tuple(
                PermissionConfig(
                    tuple(p["identities"]), tuple(p["allow"]), tuple(p.get("actions", ["write"]))
                )
                for p in wb["permissions"]
            ),
        ),
        metrics=None if metrics is None else _fill(MetricsConfig, metrics),
    )


_GROUP_OPTIONS: Final = (
    "publishing_interval_ms",
    "qos",
    "encoding",
    "field_content",
    "key_frame_count",
    "keep_alive_ms",
    "sampling_interval_ms",
    "queue_size",
    "deadband",
)
_WRITER_OPTIONS: Final = _GROUP_OPTIONS[2:]
_FIELD_OPTIONS: Final = _GROUP_OPTIONS[6:]
_FLOAT_OPTIONS: Final = frozenset(
    {"publishing_interval_ms", "sampling_interval_ms", "keep_alive_ms", "timeout_s"}
)


def _overrides(raw: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        if value is None:
            continue
        if name == "deadband":
            value = _deadband(value).to_json()
        elif isinstance(value, float):
            value = _num(value)
        out[name] = value
    return out


def _deadband(raw: Mapping[str, Any]) -> Deadband:
    return Deadband(type=raw.get("type", "none"), value=float(raw.get("value", 0)))


def _fill(cls: Any, raw: Mapping[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            value = raw[f.name]
            if f.name in _FLOAT_OPTIONS:
                value = float(value)
            elif f.name == "port":
                value = int(value)
            kwargs[f.name] = value
    return cls(**kwargs)


# ------------------------------------------------------------------------------ entry points


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What checking found: the configuration when there were no errors, and every issue."""

    config: Config | None
    issues: list[ConfigIssue]

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "warning"]


def _check(data: Any, report: _Report) -> CheckResult:
    if not report.failed:
        _schema_issues(data, report)
    if not report.failed:
        _semantic_issues(data, report)
    config = None if report.failed else _build(data)
    return CheckResult(config, report.sorted())


def check_config(text: str, source: str) -> CheckResult:
    """Parse and check the text of a configuration file named ``source`` (YAML or JSON, told
    apart by the extension, else by whether it starts with ``{``)."""
    report = _Report(source)
    try:
        data = _parse(text, report)
        if report.failed:
            return CheckResult(None, report.sorted())
        return _check(data, report)
    except RecursionError:
        return _too_deep(source)


def check_config_data(data: Any, source: str = "<config>") -> CheckResult:
    """Check a configuration already in memory (no line numbers)."""
    report = _Report(source)
    try:
        _check_values(data, (), report)
        return _check(data, report)
    except RecursionError:
        return _too_deep(source)


def _too_deep(source: str) -> CheckResult:
    return CheckResult(None, [ConfigIssue(source, "", None, "nested too deeply")])


def load_config(text: str, source: str) -> Config:
    """The configuration in ``text``; ConfigError (with every issue) if it has errors."""
    result = check_config(text, source)
    if result.config is None:
        raise ConfigError(result.issues)
    return result.config


def config_from_dict(data: Any, source: str = "<config>") -> Config:
    """The configuration in ``data`` (the file's structure); ConfigError if it has errors."""
    result = check_config_data(data, source)
    if result.config is None:
        raise ConfigError(result.issues)
    return result.config

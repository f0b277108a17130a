"""What a configuration is once checked: frozen dataclasses, the issues checking reports, and
the DataSetFieldId every field gets."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.messages.settings import STANDARD_DATASET_CONTENT, STANDARD_NETWORK_CONTENT

if TYPE_CHECKING:
    from opcua_mqtt.core.config.events import EventWriterConfig

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
NUMERIC: Final = frozenset(BUILTIN_TYPES[2:12])  # SByte .. Double: the types a deadband filters

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


class ConfigError(OpcUaMqttError):
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
        return {"type": self.type, "value": num(self.value)}


@dataclass(frozen=True, slots=True)
class OpcUaConfig:
    """One OPC UA server (a source): the ``opcua`` section, or one entry of ``sources``."""

    endpoint: str
    name: str = "default"
    server_uri: str | None = None
    security_policy: str = "Basic256Sha256"
    security_mode: str = "SignAndEncrypt"
    certificate: str | None = "certs/opcua-client.pem"
    private_key: str | None = "certs/opcua-client.key"
    trust_dir: str | None = "certs/trusted-servers"
    username: str | None = None
    password_env: str | None = "OPCUA_PASSWORD"
    timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    reconnect_max_s: float = 4.0

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
class SpoolConfig:
    directory: str | None = None
    max_messages: int = 100_000
    max_bytes: int = 256 * 1024 * 1024


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
    keep_alive_s: int = 15
    reconnect_max_s: float = 10.0
    spool: SpoolConfig = field(default_factory=SpoolConfig)


@dataclass(frozen=True, slots=True)
class MetadataSigningConfig:
    private_key: str | None = None
    certificate_chain: str | None = None

    @property
    def enabled(self) -> bool:
        return self.private_key is not None


#: The monitored item queue size of a field sampled faster than it is published, when not set.
DEFAULT_QUEUE_SIZE: Final = 10


@dataclass(frozen=True, slots=True)
class PublishingDefaults:
    """The ``defaults`` section: what every group, writer and field uses unless it overrides."""

    publishing_interval_ms: float = 1000.0
    sampling_interval_ms: float = 500.0
    queue_size: int | None = None  # not set: see FieldConfig.monitored_queue_size
    deadband: Deadband = field(default_factory=Deadband)
    key_frame_count: int = 10
    keep_alive_ms: float = 10000.0
    qos: int = 1
    encoding: str = "compact"
    field_content: tuple[str, ...] = ("status", "source_timestamp")
    # Content masks as bit names (Part 14 §6.3.2)
    network_message_content: tuple[str, ...] = STANDARD_NETWORK_CONTENT
    dataset_message_content: tuple[str, ...] = STANDARD_DATASET_CONTENT

    def to_json(self) -> dict[str, Any]:
        """The section in full, but for content masks that are the standard layout: a file
        names them only when it departs from the standard (``map --profile``)."""
        out = _section(self)
        if self.queue_size is None:
            del out["queue_size"]  # not set: the bridge picks it per field
        for name, standard in _STANDARD_MASKS.items():
            if out[name] == list(standard):
                del out[name]
        return out


_STANDARD_MASKS: Final = {
    "network_message_content": STANDARD_NETWORK_CONTENT,
    "dataset_message_content": STANDARD_DATASET_CONTENT,
}


@dataclass(frozen=True, slots=True)
class FieldConfig:
    """One published variable, with its monitoring options resolved; the bridge's plan holds
    it as is (one shape from the file to the monitored item).

    ``overrides`` holds the options this field set itself (as written), so that :meth:`to_json`
    writes back what the file said rather than every resolved value. The constructor's
    defaults are those of the ``defaults`` section, for plans built in code (tests, benchmark).
    """

    name: str
    node_id: str
    dataset_field_id: uuid.UUID
    builtin_type: str | None = None  # a BUILTIN_TYPES name; None: the node's DataType says
    data_type: str | None = None  # NodeId string, resolved against the server's namespaces
    value_rank: int = -1
    array_dimensions: tuple[int, ...] = ()
    sampling_interval_ms: float = 500.0
    queue_size: int | None = None  # None: not set anywhere, see monitored_queue_size
    deadband: Deadband = field(default_factory=Deadband)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def builtin_id(self) -> int:
        """The configured built-in type's id (Part 6 §5.1.2); 0: not configured, the bridge
        takes it from the node's DataType at its first start."""
        return BUILTIN_TYPES.index(self.builtin_type) if self.builtin_type in BUILTIN_TYPES else 0

    def monitored_queue_size(self, publishing_interval_ms: float) -> int:
        """The monitored item's QueueSize: as configured, else 1 where the field is sampled no
        faster than its group publishes (OPC 10000-4 §5.13.1.5: a queue of one always holds the
        newest value, and the writer sends only the newest per publishing interval anyway), else
        10 (the values sampled in between, for a server that reports each change)."""
        if self.queue_size is not None:
            return self.queue_size
        return 1 if self.sampling_interval_ms >= publishing_interval_ms else DEFAULT_QUEUE_SIZE

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
    # The expanded custom topics (core/config/queues.py); None: the standard tree's.
    queue_name: str | None = None
    metadata_queue_name: str | None = None
    dataset_message_content: tuple[str, ...] = STANDARD_DATASET_CONTENT

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
    # The group's own expanded custom topic (its WriterGroup QueueName); None: the standard
    # tree's, or its template names {writer} (core/config/queues.py).
    queue_name: str | None = None
    network_message_content: tuple[str, ...] = STANDARD_NETWORK_CONTENT
    source: str = "default"  # the name of the OPC UA server (source) it reads from

    def to_json(self, *, with_source: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if with_source:
            out["source"] = self.source
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
class CommandsConfig:
    """The ``commands`` section (docs/commands.md): what a command may act on."""

    allow: tuple[str, ...] = ()


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
class StatusConfig:
    """The ``status`` section: how often the retained ua-status and ua-connection are
    refreshed, so that a bridge that died unseen lets them expire (docs/operations.md)."""

    interval_s: float = 60.0


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
    sources: tuple[OpcUaConfig, ...]  # one or more; names unique
    writer_groups: tuple[WriterGroupConfig, ...]
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    metadata_signing: MetadataSigningConfig = field(default_factory=MetadataSigningConfig)
    defaults: PublishingDefaults = field(default_factory=PublishingDefaults)
    status: StatusConfig = field(default_factory=StatusConfig)
    write_back: WriteBackConfig = field(default_factory=WriteBackConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    metrics: MetricsConfig | None = None
    version: int = 1
    uns: Mapping[str, str] = field(default_factory=dict)  # queue name template variables
    event_writers: tuple[EventWriterConfig, ...] = ()

    @property
    def opcua(self) -> OpcUaConfig:
        """The first source: the only one of a configuration with an ``opcua`` section."""
        return self.sources[0]

    @property
    def several_sources(self) -> bool:
        """Whether the file form is ``sources`` (several, or one not named ``default``)."""
        return len(self.sources) > 1 or self.sources[0].name != "default"

    def source(self, name: str) -> OpcUaConfig:
        """The source called ``name`` (checked to exist when the configuration was built)."""
        return next(s for s in self.sources if s.name == name)

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
        several = self.several_sources
        servers: dict[str, Any] = (
            {"sources": [{"name": s.name, **_section(s)} for s in self.sources]}
            if several
            else {"opcua": {k: v for k, v in _section(self.opcua).items() if k != "name"}}
        )
        out = {
            "version": self.version,
            "publisher_id": self.publisher_id,
            **servers,
            "mqtt": _section(self.mqtt),
            "metadata_signing": _section(self.metadata_signing),
            "defaults": self.defaults.to_json(),
            "status": _section(self.status),
            **({"uns": dict(self.uns)} if self.uns else {}),
            "writer_groups": [g.to_json(with_source=several) for g in self.writer_groups],
            **(
                {"event_writers": [e.to_json() for e in self.event_writers]}
                if self.event_writers
                else {}
            ),
            "write_back": _write_back_json(self.write_back),
            **({"commands": _section(self.commands)} if self.commands.allow else {}),
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
            else num(value)
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
            value = num(value)
        out[f.name] = value
    return out


def num(x: float) -> int | float:
    """1000.0 -> 1000, so files read as they were written."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def derive_field_id(identity: str, node_id: str) -> uuid.UUID:
    """The DataSetFieldId of a variable: a UUID version 5 of the server's identity
    (ApplicationUri, else endpoint) and the canonical NodeId. Same server, same node: same id."""
    return uuid.uuid5(FIELD_ID_NAMESPACE, f"{identity}\n{node_id}")

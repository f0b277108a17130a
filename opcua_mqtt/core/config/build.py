"""Building the frozen :class:`~opcua_mqtt.core.config.model.Config` from checked data, with
publishing options resolved from a field to its writer, its group, then ``defaults``."""

from __future__ import annotations

import dataclasses
import functools
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opcua_mqtt.core.config.events import build_event_writers
from opcua_mqtt.core.config.model import (
    CommandsConfig,
    Config,
    Deadband,
    FieldConfig,
    MetadataSigningConfig,
    MetricsConfig,
    MqttConfig,
    OpcUaConfig,
    PermissionConfig,
    PublishingDefaults,
    SpoolConfig,
    StatusConfig,
    TlsConfig,
    WritableNode,
    WriteBackConfig,
    WriterConfig,
    WriterGroupConfig,
    derive_field_id,
    num,
)
from opcua_mqtt.core.config.queues import queue_names
from opcua_mqtt.core.config.rules import Resolver, raw_sources, source_identities
from opcua_mqtt.core.uajson.node_ids import canonical_node_id


def build_config(data: Mapping[str, Any]) -> Config:
    resolver = Resolver(data)
    queues = queue_names(data)
    sources = tuple(_fill(OpcUaConfig, raw) for raw, _ in raw_sources(data))
    identities = source_identities(data)
    groups = []
    for gi, graw in enumerate(data["writer_groups"]):
        identity = identities[gi]
        gl = [(graw, ())]
        writers = []
        for wi, wraw in enumerate(graw["writers"]):
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
                        builtin_type=_shared_str(fraw.get("builtin_type")),
                        data_type=_shared_str(fraw.get("data_type")),
                        value_rank=int(fraw.get("value_rank", -1)),
                        array_dimensions=tuple(int(d) for d in fraw.get("array_dimensions", [])),
                        sampling_interval_ms=_shared_float(
                            resolver.get("sampling_interval_ms", fl)[0]
                        ),
                        queue_size=_optional_int(resolver.get("queue_size", fl)[0]),
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
                    overrides=_overrides(wraw, _WRITER_OPTIONS + _QUEUE_OPTIONS + _WRITER_MASKS),
                    queue_name=queues.data[(gi, wi)],
                    metadata_queue_name=queues.metadata[(gi, wi)],
                    dataset_message_content=tuple(resolver.get("dataset_message_content", wl)[0]),
                )
            )
        groups.append(
            WriterGroupConfig(
                name=graw["name"],
                writers=tuple(writers),
                publishing_interval_ms=float(resolver.get("publishing_interval_ms", gl)[0]),
                qos=int(resolver.get("qos", gl)[0]),
                bundle_writers=bool(graw.get("bundle_writers", False)),
                overrides=_overrides(graw, _GROUP_OPTIONS + _QUEUE_OPTIONS + _GROUP_MASKS),
                queue_name=queues.groups[gi],
                network_message_content=tuple(resolver.get("network_message_content", gl)[0]),
                source=graw.get("source") or sources[0].name,
            )
        )
    mqtt_raw = dict(data.get("mqtt") or {})
    tls = _fill(TlsConfig, mqtt_raw.pop("tls", None) or {})
    spool = _fill(SpoolConfig, mqtt_raw.pop("spool", None) or {})
    wb = data.get("write_back") or {}
    metrics = data.get("metrics")
    return Config(
        version=int(data["version"]),
        publisher_id=data["publisher_id"],
        sources=sources,
        mqtt=dataclasses.replace(_fill(MqttConfig, mqtt_raw), tls=tls, spool=spool),
        metadata_signing=_fill(MetadataSigningConfig, data.get("metadata_signing") or {}),
        defaults=PublishingDefaults(
            publishing_interval_ms=float(resolver.get("publishing_interval_ms", [])[0]),
            sampling_interval_ms=float(resolver.get("sampling_interval_ms", [])[0]),
            queue_size=_optional_int(resolver.get("queue_size", [])[0]),
            deadband=_deadband(resolver.get("deadband", [])[0]),
            key_frame_count=int(resolver.get("key_frame_count", [])[0]),
            keep_alive_ms=float(resolver.get("keep_alive_ms", [])[0]),
            qos=int(resolver.get("qos", [])[0]),
            encoding=resolver.get("encoding", [])[0],
            field_content=tuple(resolver.get("field_content", [])[0]),
            network_message_content=tuple(resolver.get("network_message_content", [])[0]),
            dataset_message_content=tuple(resolver.get("dataset_message_content", [])[0]),
        ),
        status=_fill(StatusConfig, data.get("status") or {}),
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
        commands=CommandsConfig(tuple((data.get("commands") or {}).get("allow", []))),
        metrics=None if metrics is None else _fill(MetricsConfig, metrics),
        uns=dict(data.get("uns") or {}),
        event_writers=build_event_writers(
            data,
            {"encoding": resolver.get("encoding", [])[0], "qos": resolver.get("qos", [])[0]},
        ),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


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
#: Custom topic templates (core/config/queues.py): kept as written, not inherited by name.
_QUEUE_OPTIONS: Final = ("queue_name", "metadata_queue_name")
_FIELD_OPTIONS: Final = _GROUP_OPTIONS[6:]
#: The content masks (Part 14 §6.3.2): the group sets both, a writer its DataSetMessage's.
_GROUP_MASKS: Final = ("network_message_content", "dataset_message_content")
_WRITER_MASKS: Final = _GROUP_MASKS[1:]
_FLOAT_OPTIONS: Final = frozenset(
    {"publishing_interval_ms", "sampling_interval_ms", "keep_alive_ms", "timeout_s", "interval_s"}
)


#: What 100,000 fields that set nothing themselves share (read only, like the fields).
_NO_OVERRIDES: Final[Mapping[str, Any]] = {}


def _overrides(raw: Mapping[str, Any], names: Sequence[str]) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        if value is None:
            continue
        if name == "deadband":
            value = _deadband(value).to_json()
        elif isinstance(value, float):
            value = num(value)
        out[name] = value
    return out or _NO_OVERRIDES


def _shared_str(value: str | None) -> str | None:
    """The one copy of a string many fields repeat (a built-in type's name, a DataType): the
    YAML parser makes a new one for each of 100,000 fields."""
    return None if value is None else sys.intern(value)


@functools.lru_cache(maxsize=256)
def _shared_float(value: float) -> float:
    """One float object per distinct sampling interval (as :func:`_shared_deadband`)."""
    return float(value)


def _deadband(raw: Mapping[str, Any]) -> Deadband:
    return _shared_deadband(raw.get("type", "none"), float(raw.get("value", 0)))


@functools.lru_cache(maxsize=256)
def _shared_deadband(kind: str, value: float) -> Deadband:
    """One Deadband object per distinct setting: a large configuration has 100,000 fields and
    a handful of deadbands (the configuration is kept for the bridge's lifetime)."""
    return Deadband(type=kind, value=value)  # type: ignore[arg-type]


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

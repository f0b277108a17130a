"""Event writers in the configuration: what they select and filter, checked and built.

An event writer is a DataSetWriter of a PublishedEventsDataType (Part 14 §6.2.3.8): an event
notifier, SelectedFields (Part 14 §6.2.3.8.2) written as browse paths of BrowseNames from an
EventType, and a where clause reduced to what people ask for: OfType and Severity >= n (Part 4
§7.22.3 EventFilter, §7.7.4.5 SimpleAttributeOperand). The paths carry names only; the bridge
resolves each element to its QualifiedName in the server's type model at start
(adapters/opcua/events.py), so a file never holds a namespace index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opcua_mqtt.core.config.model import Path
from opcua_mqtt.core.config.report import Report, show
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

#: Select path that means the condition's own NodeId: ConditionType, empty browse path,
#: attribute NodeId (Part 9 §5.5.2, Table 10).
CONDITION_ID: Final = "ConditionId"
BASE_EVENT_TYPE: Final = "i=2041"
CONDITION_TYPE: Final = "i=2782"
SERVER_OBJECT: Final = "i=2253"
DEFAULT_SELECT: Final = (
    "EventId",
    "EventType",
    "SourceNode",
    "SourceName",
    "Time",
    "ReceiveTime",
    "Message",
    "Severity",
)


@dataclass(frozen=True, slots=True)
class EventField:
    """One select clause: ``path`` (BrowseNames) from the writer's event type or a supertype,
    published under its path as written."""

    name: str

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))

    @property
    def is_condition_id(self) -> bool:
        return self.name == CONDITION_ID


@dataclass(frozen=True, slots=True)
class EventWriterConfig:
    """One event writer with its options resolved."""

    name: str
    dataset_writer_id: int
    fields: tuple[EventField, ...]
    writer_group: str = "Events"
    notifier: str = SERVER_OBJECT
    event_type: str = BASE_EVENT_TYPE
    of_types: tuple[str, ...] = ()
    min_severity: int | None = None
    queue_size: int = 1000
    max_pending: int = 10_000
    encoding: str = "compact"
    qos: int = 1
    condition_refresh: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)  # options as the file set them

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dataset_writer_id": self.dataset_writer_id}
        out.update(self.overrides)
        out["select"] = [f.name for f in self.fields]
        return out


_OPTIONS: Final = (
    "writer_group",
    "notifier",
    "event_type",
    "where",
    "queue_size",
    "max_pending",
    "encoding",
    "qos",
    "condition_refresh",
)


def build_event_writers(
    data: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[EventWriterConfig, ...]:
    """The checked ``event_writers`` section, with ``encoding`` and ``qos`` falling back to
    ``defaults`` (already resolved)."""
    out = []
    for raw in data.get("event_writers") or ():
        event_type = raw.get("event_type") or BASE_EVENT_TYPE
        where = raw.get("where") or {}
        out.append(
            EventWriterConfig(
                name=raw["name"],
                dataset_writer_id=int(raw["dataset_writer_id"]),
                fields=tuple(EventField(s) for s in raw.get("select", DEFAULT_SELECT)),
                writer_group=raw.get("writer_group") or "Events",
                notifier=raw.get("notifier") or SERVER_OBJECT,
                event_type=event_type,
                of_types=tuple(where.get("of_type") or ()),
                min_severity=where.get("min_severity"),
                queue_size=int(raw.get("queue_size", 1000)),
                max_pending=int(raw.get("max_pending", 10_000)),
                encoding=raw.get("encoding") or defaults["encoding"],
                qos=int(raw["qos"] if raw.get("qos") is not None else defaults["qos"]),
                condition_refresh=bool(raw.get("condition_refresh", True)),
                overrides={k: raw[k] for k in _OPTIONS if raw.get(k) is not None},
            )
        )
    return tuple(out)


def event_writer_rules(data: Mapping[str, Any], report: Report) -> None:
    """Unique names and DataSetWriterIds (data writers' too), NodeIds that parse, a writer
    group name no data writer group uses, field names unique within a writer."""
    writer_ids: dict[int, Path] = {
        w["dataset_writer_id"]: ("writer_groups", gi, "writers", wi)
        for gi, g in enumerate(data["writer_groups"])
        for wi, w in enumerate(g["writers"])
    }
    data_groups = {g["name"] for g in data["writer_groups"]}
    names: dict[tuple[str, str], Path] = {}
    for ei, raw in enumerate(data.get("event_writers") or ()):
        path: Path = ("event_writers", ei)
        wid = raw["dataset_writer_id"]
        if wid in writer_ids:
            where = "/".join(str(p) for p in writer_ids[wid])
            report.add(
                (*path, "dataset_writer_id"), f"dataset_writer_id {wid} is already used by {where}"
            )
        else:
            writer_ids[wid] = path
        group = raw.get("writer_group") or "Events"
        if group in data_groups:
            report.add(
                (*path, "writer_group"),
                f"writer group {group!r} is a data writer group: give the event writers "
                "a group of their own",
            )
        key = (group, raw["name"])
        if key in names:
            where = "/".join(str(p) for p in names[key])
            report.add(
                (*path, "name"),
                f"event writer {raw['name']!r} of {group!r} is already used by {where}",
            )
        else:
            names[key] = path
        for option in ("notifier", "event_type"):
            if raw.get(option) is not None:
                _node_id(raw[option], (*path, option), report)
        for ti, t in enumerate((raw.get("where") or {}).get("of_type") or ()):
            _node_id(t, (*path, "where", "of_type", ti), report)
        for si, s in enumerate(raw.get("select", DEFAULT_SELECT)):
            if CONDITION_ID in s.split("/") and s != CONDITION_ID:
                report.add(
                    (*path, "select", si),
                    f"{CONDITION_ID} stands alone: it is the condition's NodeId",
                )


def _node_id(value: str, path: Path, report: Report) -> None:
    try:
        canonical_node_id(value)
    except ValueError as e:
        report.add(
            path,
            f"expected a NodeId such as 'i=2253' or 'nsu=urn:plant;s=Area1', "
            f"got {show(value)}: {e}",
        )

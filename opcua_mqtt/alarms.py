"""The current alarm list, rebuilt by a subscriber from a bridge's ua-event stream.

A condition's events carry its whole state (Part 9 §4.2): the latest event of a ConditionId
replaces the previous one, an event with Retain false removes it (nothing left to show or do).
After the bridge calls ConditionRefresh (Part 9 §5.5.7), the stream holds a RefreshStartEvent,
the current state of every retained condition and a RefreshEndEvent (§5.11.2-3); as Part 9
§4.5 asks of a client, the list flags every condition of that writer as suspect at the start,
clears the flag of each one that arrives, and drops those still suspect at the end: a
subscriber that joins late, or one that missed events, has the full picture after the next
refresh. Branches (BranchId) are not tracked: a list shows each condition's main branch.

Only DataSetMessages of type ua-event whose writer selects ``ConditionId`` (and, to see the
markers, ``EventType``) take part; the other fields used are ``Retain``, ``ActiveState/Id``,
``AckedState/Id``, ``ConfirmedState/Id``, ``Severity``, ``Message``, ``SourceName``,
``ConditionName``, ``Time`` and ``EventId`` (the one an Acknowledge must name), each optional.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.subscriber import FieldValue, ReceivedDataSet

__all__ = ["Alarm", "AlarmList"]

_REFRESH_START: Final = ua.NodeId(ua.ObjectIds.RefreshStartEventType)
_REFRESH_END: Final = ua.NodeId(ua.ObjectIds.RefreshEndEventType)

WriterKey = tuple[str | None, int | None]  # (PublisherId, DataSetWriterId)


@dataclass
class Alarm:
    """One condition as its latest event describes it."""

    publisher_id: str | None
    dataset_writer_id: int | None
    condition_id: ua.NodeId
    event_id: bytes | None = None
    source_name: str | None = None
    condition_name: str | None = None
    severity: int | None = None
    message: str | None = None
    time: datetime | None = None
    active: bool | None = None
    acked: bool | None = None
    confirmed: bool | None = None
    retain: bool | None = None

    def to_json(self, node_id: str) -> dict[str, Any]:
        """A JSON-ready view; ``node_id`` is the ConditionId in the 1.05 string form."""
        return {
            "publisher_id": self.publisher_id,
            "dataset_writer_id": self.dataset_writer_id,
            "condition_id": node_id,
            "event_id": base64.b64encode(self.event_id).decode() if self.event_id else None,
            "source_name": self.source_name,
            "condition_name": self.condition_name,
            "severity": self.severity,
            "message": self.message,
            "time": self.time.isoformat() if self.time else None,
            "active": self.active,
            "acked": self.acked,
            "confirmed": self.confirmed,
        }


class AlarmList:
    """The conditions of every event writer seen, kept current by :meth:`update`."""

    def __init__(self) -> None:
        self._alarms: dict[tuple[WriterKey, ua.NodeId], Alarm] = {}
        self._suspect: dict[WriterKey, set[ua.NodeId]] = {}  # writers in a refresh

    def __len__(self) -> int:
        return len(self._alarms)

    @property
    def alarms(self) -> list[Alarm]:
        """Every condition, the most severe first, then the newest."""
        return sorted(
            self._alarms.values(),
            key=lambda a: (-(a.severity or 0), -(a.time.timestamp() if a.time else 0.0)),
        )

    def refreshing(self, publisher_id: str | None, dataset_writer_id: int | None) -> bool:
        """Whether that writer is between a RefreshStart and its RefreshEnd."""
        return (publisher_id, dataset_writer_id) in self._suspect

    def update(self, ds: ReceivedDataSet) -> Alarm | None:
        """Take one received DataSet into account; the condition it changed, if any (an alarm
        whose ``retain`` is False has just left the list)."""
        if ds.message_type != "ua-event":
            return None
        writer: WriterKey = (ds.publisher_id, ds.dataset_writer_id)
        fields = ds.fields
        kind = _value(fields, "EventType")
        if kind == _REFRESH_START:
            self._suspect[writer] = {c for (w, c) in self._alarms if w == writer}
            return None
        if kind == _REFRESH_END:
            for condition in self._suspect.pop(writer, set()):
                self._alarms.pop((writer, condition), None)
            return None
        condition = _value(fields, "ConditionId")
        if not isinstance(condition, ua.NodeId) or condition.is_null():
            return None
        self._suspect.get(writer, set()).discard(condition)
        alarm = Alarm(
            ds.publisher_id,
            ds.dataset_writer_id,
            condition,
            event_id=_typed(fields, "EventId", bytes),
            source_name=_typed(fields, "SourceName", str),
            condition_name=_typed(fields, "ConditionName", str),
            severity=_typed(fields, "Severity", int),
            message=_text(_value(fields, "Message")),
            time=_typed(fields, "Time", datetime),
            active=_typed(fields, "ActiveState/Id", bool),
            acked=_typed(fields, "AckedState/Id", bool),
            confirmed=_typed(fields, "ConfirmedState/Id", bool),
            retain=_typed(fields, "Retain", bool),
        )
        if alarm.retain is False:
            self._alarms.pop((writer, condition), None)
        else:
            self._alarms[(writer, condition)] = alarm
        return alarm

    def counts(self) -> dict[str, int]:
        """How many conditions there are, how many active, and how many unacknowledged."""
        alarms = self._alarms.values()
        return {
            "total": len(self._alarms),
            "active": sum(a.active is True for a in alarms),
            "unacknowledged": sum(a.acked is False for a in alarms),
        }


def _value(fields: Mapping[str, FieldValue], name: str) -> Any:
    f = fields.get(name)
    return f.value if f is not None else None


def _typed(fields: Mapping[str, FieldValue], name: str, kind: type[Any]) -> Any:
    value = _value(fields, name)
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


def _text(value: Any) -> str | None:
    if isinstance(value, ua.LocalizedText):
        value = value.Text
    return value if isinstance(value, str) else None

"""The alarm list a subscriber rebuilds from ua-event messages (opcua_mqtt/alarms.py): latest
state per condition, Retain false removes, a refresh (Part 9 §4.5) drops what it did not
repeat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from opcua_mqtt.alarms import AlarmList
from opcua_mqtt.subscriber import FieldValue, ReceivedDataSet, TrustState, Verification

START = ua.NodeId(ua.ObjectIds.RefreshStartEventType)
END = ua.NodeId(ua.ObjectIds.RefreshEndEventType)
ALARM = ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)


def event(writer: int = 1, kind: str = "ua-event", **values: Any) -> ReceivedDataSet:
    fields = {
        name.replace("__", "/"): FieldValue(
            name.replace("__", "/"), v, ua.Variant(v).VariantType, ua.StatusCode(0), None, None
        )
        for name, v in values.items()
    }
    return ReceivedDataSet(
        topic="t",
        publisher_id="p",
        writer_group="Events",
        dataset_writer_id=writer,
        dataset_writer_name="Alarms",
        sequence_number=0,
        message_type=kind,
        timestamp=None,
        metadata_version=None,
        fields=fields,
        metadata=None,
        verification=Verification(TrustState.VERIFIED),
    )


def condition(name: str, severity: int = 500, **values: Any) -> ReceivedDataSet:
    values.setdefault("Retain", True)
    values.setdefault("ActiveState__Id", True)
    values.setdefault("AckedState__Id", False)
    return event(
        EventType=ALARM,
        ConditionId=ua.NodeId(name, 2),
        Severity=ua.Variant(severity, ua.VariantType.UInt16).Value,
        Message=ua.LocalizedText(f"{name} high"),
        Time=datetime(2026, 1, 1, tzinfo=UTC),
        EventId=name.encode(),
        **values,
    )


def names(alarms: AlarmList) -> list[str]:
    return [str(a.condition_id.Identifier) for a in alarms.alarms]


def test_the_latest_event_of_a_condition_replaces_its_state_and_retain_false_removes_it() -> None:
    alarms = AlarmList()
    alarms.update(condition("Tank", 300))
    alarms.update(condition("Jam", 800))
    changed = alarms.update(condition("Tank", 300, AckedState__Id=True))
    assert changed is not None and changed.acked is True and changed.event_id == b"Tank"
    assert names(alarms) == ["Jam", "Tank"]  # the most severe first
    assert alarms.counts() == {"total": 2, "active": 2, "unacknowledged": 1}
    gone = alarms.update(condition("Jam", Retain=False, ActiveState__Id=False))
    assert gone is not None and gone.retain is False
    assert names(alarms) == ["Tank"]


def test_a_refresh_drops_the_conditions_it_does_not_repeat() -> None:
    alarms = AlarmList()
    alarms.update(condition("Tank"))
    alarms.update(condition("Stale"))
    alarms.update(event(EventType=START))
    assert alarms.refreshing("p", 1) and not alarms.refreshing("p", 2)
    alarms.update(condition("Tank"))
    alarms.update(condition("New"))
    alarms.update(event(EventType=END))
    assert not alarms.refreshing("p", 1)
    assert sorted(names(alarms)) == ["New", "Tank"]


def test_a_refresh_of_one_writer_leaves_the_others_alone() -> None:
    alarms = AlarmList()
    alarms.update(condition("Tank"))
    other = condition("Other")
    alarms.update(
        ReceivedDataSet(**{**other.__dict__, "dataset_writer_id": 2})  # another writer
    )
    alarms.update(event(EventType=START))
    alarms.update(event(EventType=END))
    assert names(alarms) == ["Other"]


def test_what_is_no_condition_is_ignored() -> None:
    alarms = AlarmList()
    assert alarms.update(event(EventType=ua.NodeId(ua.ObjectIds.BaseEventType))) is None
    assert alarms.update(event(kind="ua-keyframe", ConditionId=ua.NodeId("x", 2))) is None
    assert alarms.update(event(EventType=ALARM, ConditionId=ua.NodeId())) is None
    assert len(alarms) == 0

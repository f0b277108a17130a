"""Field health: the states, the grace period and one log line per episode."""

from __future__ import annotations

import logging
import uuid

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from opcua_mqtt.bridge.field_health import FieldHealth, FieldState, grace_period_s
from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, WriterPlan
from opcua_mqtt.core.config.model import FieldConfig
from opcua_mqtt.core.field_key import FieldKey

A, B, C = FieldKey(0, 0, "A"), FieldKey(0, 0, "B"), FieldKey(0, 1, "C")
GOOD = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double))


def _status(code: int) -> ua.DataValue:
    return ua.DataValue(StatusCode=ua.StatusCode(code))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _health(clock: Clock) -> FieldHealth:
    names = {A: "G/W/A (ns=1;i=1)", B: "G/W/B (ns=1;i=2)", C: "G/V/C (i=3)"}
    health = FieldHealth([(key, 10.0) for key in names], names.__getitem__, clock)
    health.subscribed()
    return health


def test_the_grace_period_is_three_publishing_intervals_plus_sampling_plus_margin() -> None:
    assert grace_period_s(1000, 500) == pytest.approx(3.5 + 5)
    assert grace_period_s(100, 50) == pytest.approx(0.35 + 5)


def test_states_follow_the_values_and_the_refusals(clock: Clock) -> None:
    health = _health(clock)
    assert health.report().counts == {"refused": 0, "waiting": 3, "bad": 0, "good": 0}
    # value() says when a field stops waiting: the one change that can make it Operational.
    assert health.value(A, GOOD) and not health.value(A, GOOD)
    assert health.value(B, _status(ua.StatusCodes.BadSensorFailure))
    assert not health.value(A, _status(ua.StatusCodes.BadSensorFailure))
    assert not health.value(A, GOOD)
    health.refused(C, ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
    report = health.report()
    assert report.counts == {"refused": 1, "waiting": 0, "bad": 1, "good": 1}
    assert report.refused_names == ["G/V/C (i=3): BadNodeIdUnknown"]
    assert not report.delivering  # a refused field
    health.value(B, _status(ua.StatusCodes.UncertainLastUsableValue))
    assert health.report().counts["good"] == 2


def test_waiting_for_initial_data_is_waiting_and_overdue_after_the_grace_period(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    health = _health(clock)
    health.value(A, GOOD)
    health.value(B, GOOD)
    health.value(C, _status(ua.StatusCodes.BadWaitingForInitialData))
    assert health.report().delivering  # within the grace period
    clock.now += 10.5
    with caplog.at_level(logging.INFO, "opcua_mqtt.bridge.field_health"):
        for _ in range(3):
            report = health.report()
        assert not health.report(connected=False).overdue  # the session is what is down
        assert report.overdue == 1 and report.overdue_names == ["G/V/C (i=3)"]
        assert not report.delivering
        health.value(C, GOOD)
        assert health.report().delivering
    assert [r.getMessage() for r in caplog.records] == [
        "field G/V/C (i=3) has had no value 10 s after it was subscribed",
        "field G/V/C (i=3) delivers again",
    ]


def test_a_refusal_is_logged_once_per_episode(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    health = _health(clock)
    refusal = ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
    with caplog.at_level(logging.WARNING, "opcua_mqtt.bridge.field_health"):
        health.refused(A, refusal)
        health.subscribed()  # the session came back: a refused field stays refused
        assert health.report().counts["refused"] == 1
        gone = _status(ua.StatusCodes.BadNodeIdUnknown)  # e.g. the bridge's node check
        assert not health.value(A, gone) and health.report().counts["refused"] == 1
        health.monitoring()  # a new session tries again, and is refused again
        assert health.report().counts["refused"] == 0
        health.refused(A, refusal)
        health.report()
    assert [r.getMessage() for r in caplog.records] == [
        "field G/W/A (ns=1;i=1) refused by the server: BadNodeIdUnknown"
    ]
    health.monitoring()  # accepted this time: the episode ends with its first value
    health.value(A, GOOD)
    with caplog.at_level(logging.WARNING, "opcua_mqtt.bridge.field_health"):
        health.monitoring()
        health.refused(A, refusal)  # a new episode, logged again
    assert len(caplog.records) == 2


def test_a_lost_session_makes_every_field_wait_afresh(clock: Clock) -> None:
    health = _health(clock)
    for key in (A, B, C):
        health.value(key, GOOD)
    clock.now += 60
    health.subscribed()
    report = health.report()
    assert report.counts["waiting"] == 3 and report.delivering


def test_the_fields_of_one_source_wait_and_count_by_themselves(clock: Clock) -> None:
    """Group 1 (field D) reads from another source than group 0: its session's events touch
    only its fields, and while its source is away its fields are not overdue."""
    d = FieldKey(1, 0, "D")
    names = {A: "G/W/A (i=1)", d: "H/W/D (i=4)"}
    health = FieldHealth([(key, 10.0) for key in names], names.__getitem__, clock)
    health.monitoring()
    health.value(A, GOOD)
    health.value(d, GOOD)
    health.subscribed(groups=[1])  # the second source's session was lost
    assert health.report().counts == {"refused": 0, "waiting": 1, "bad": 0, "good": 1}
    clock.now += 60
    assert health.report(away=[1]).overdue == 0  # its source is away: not the field's fault
    assert health.report().overdue_names == ["H/W/D (i=4)"]


def test_the_grace_period_starts_when_the_items_exist(clock: Clock) -> None:
    """Creating many monitored items over a busy connection takes longer than a grace period:
    it starts once they exist, for the fields still waiting."""
    health = _health(clock)
    health.value(A, GOOD)
    clock.now += 60  # the items took a minute to create
    health.items_created([0])
    assert health.report().overdue == 0
    clock.now += 11
    assert health.report().overdue_names == ["G/W/B (ns=1;i=2)", "G/V/C (i=3)"]
    assert health.state(A).value == "good"


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["good", "bad", "initial", "refused", "monitoring", "subscribed"]),
            st.sampled_from([A, B, C]),
            st.floats(0, 20),
        ),
        max_size=30,
    )
)
def test_the_counts_kept_on_the_way_match_a_count_of_every_field(
    steps: list[tuple[str, FieldKey, float]],
) -> None:
    """The report counts states as they change and looks only at the fields that do not
    deliver: it must say what a look at every field says."""
    clock = Clock()
    health = _health(clock)
    since = dict.fromkeys((A, B, C), clock.now)  # when each field started waiting
    for step, key, dt in steps:
        clock.now += dt
        if step == "good":
            health.value(key, GOOD)
        elif step == "bad":
            health.value(key, _status(ua.StatusCodes.BadSensorFailure))
        elif step == "initial":
            health.value(key, _status(ua.StatusCodes.BadWaitingForInitialData))
        elif step == "refused":
            health.refused(key, ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
        else:
            getattr(health, step)([key.group])
        states = {k: health.state(k) for k in (A, B, C)}
        if step in ("monitoring", "subscribed"):
            for k in (A, B, C):
                if k.group == key.group and states[k] is FieldState.WAITING:
                    since[k] = clock.now
        report = health.report()
        assert report.counts == {s.value: list(states.values()).count(s) for s in FieldState}
        waiting = [k for k in (A, B, C) if states[k] is FieldState.WAITING]
        overdue = [k for k in waiting if clock.now - since[k] > 10.0]
        assert report.overdue == len(overdue)
        assert sorted(report.overdue_names) == sorted(health.name(k) for k in overdue)
        refused = [k for k in (A, B, C) if states[k] is FieldState.REFUSED]
        assert len(report.refused_names) == len(refused)


def test_a_plans_fields_are_named_group_writer_field_and_node_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The names are made when a field is logged or listed, from the plan (none is kept)."""
    plan = BridgePlan(
        "p",
        (
            GroupPlan("G", (WriterPlan("W", 1, (FieldConfig("A", "i=1", uuid.uuid4()),)),)),
            GroupPlan(
                "H",
                (
                    WriterPlan("X", 2, ()),
                    WriterPlan(
                        "Y",
                        3,
                        (
                            FieldConfig("B", "ns=1;s=b", uuid.uuid4()),
                            FieldConfig("C", "ns=1;s=c", uuid.uuid4()),
                        ),
                    ),
                ),
                publishing_interval_ms=100,
            ),
        ),
    )
    health = FieldHealth.of_plan(plan)
    assert len(health) == 3
    assert health.name(FieldKey(1, 1, "C")) == "H/Y/C (ns=1;s=c)"
    with caplog.at_level(logging.WARNING):
        health.refused(FieldKey(0, 0, "A"), ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
    assert caplog.messages == ["field G/W/A (i=1) refused by the server: BadNodeIdUnknown"]
    assert health.report().refused_names == ["G/W/A (i=1): BadNodeIdUnknown"]


def test_fields_overdue_in_one_report_or_back_between_two_share_one_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [FieldKey(0, 0, f"F{i}") for i in range(8)]
    health = FieldHealth([(k, 10.0) for k in keys], lambda k: f"G/W/{k[2]}", clock)
    health.subscribed()
    clock.now += 4
    health.value(keys[0], GOOD)  # in time: never overdue
    clock.now += 7
    with caplog.at_level(logging.INFO, "opcua_mqtt.bridge.field_health"):
        assert health.report().overdue == 7
        assert health.report().overdue == 7  # the same episode: no second line
        for key in keys[1:]:
            health.value(key, GOOD)
        assert health.report().delivering
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "7 fields have had no value for up to 11 s after they were subscribed: G/W/F1, "
            "G/W/F2, G/W/F3, G/W/F4, G/W/F5 and 2 more",
        ),
        ("INFO", "7 fields deliver again: G/W/F1, G/W/F2, G/W/F3, G/W/F4, G/W/F5 and 2 more"),
    ]

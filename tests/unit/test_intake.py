"""The bridge's intake (bridge/intake.py): newest value per field, shed counts, slices, and
overload episodes with one log line at each end (a fake clock, no waiting)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from opcua_mqtt.bridge.intake import HOLD_S, REPEAT_S, SLICE, Intake, Overload, Pending, Value
from opcua_mqtt.core.field_key import FieldKey

LOGGER = "opcua_mqtt.bridge.intake"


def _value(key: int, n: int) -> Value:
    return FieldKey(0, 0, f"F{key}"), ua.DataValue(ua.Variant(float(n), ua.VariantType.Double))


_batches = st.lists(st.lists(st.integers(0, 20), max_size=30), max_size=10)


@given(_batches, st.integers(1, 25))
def test_pending_keeps_the_newest_value_per_field_in_first_pending_order(
    batches: list[list[int]], limit: int
) -> None:
    pending = Pending()
    arrived = shed = 0
    newest: dict[FieldKey, ua.DataValue] = {}  # the model: a field's last value, first order
    for batch in batches:
        values = [_value(k, arrived + i) for i, k in enumerate(batch)]
        # shed: fields of this batch whose value was pending before it came
        expected_shed = len({k for k, _ in values} & newest.keys())
        got = pending.add(values)
        assert got == expected_shed
        shed += got
        arrived += len(values)
        for key, dv in values:
            newest[key] = dv
    taken: list[Value] = []
    while pending:
        chunk = pending.take(limit)
        assert 0 < len(chunk) <= limit
        taken += chunk
    assert taken == list(newest.items())


def test_values_of_one_field_within_one_response_are_not_shed() -> None:
    pending = Pending()
    assert pending.add([_value(1, 1), _value(1, 2), _value(2, 3)]) == 0
    assert pending.add([_value(1, 4), _value(1, 5)]) == 1  # replaces the one pending value
    assert [dv.Value.Value for _, dv in pending.take(10)] == [5.0, 3.0]


def test_discard_forgets_the_values_of_the_given_groups() -> None:
    pending = Pending()
    pending.add([(FieldKey(g, 0, "F"), ua.DataValue()) for g in (0, 1, 2)])
    pending.discard({1})
    assert [k.group for k, _ in pending.take(10)] == [0, 2]


async def test_the_consumer_takes_bounded_slices_and_yields_between_them() -> None:
    slices: list[int] = []
    intake = Intake(lambda values: slices.append(len(values)))
    task = asyncio.create_task(intake.run())
    try:
        intake.put("default", [_value(k, k) for k in range(2 * SLICE + 5)])
        await asyncio.sleep(0)  # the consumer wakes and takes one slice, then yields
        assert slices == [SLICE]
        await asyncio.sleep(0)
        assert slices == [SLICE, SLICE]
        while intake.pending:
            await asyncio.sleep(0)
        assert slices == [SLICE, SLICE, 5] and intake.taken == 2 * SLICE + 5
        assert intake.shed == {}
    finally:
        task.cancel()


async def test_a_paused_consumer_lets_values_pile_up_newest_per_field() -> None:
    taken: list[Value] = []
    intake = Intake(taken.extend)
    task = asyncio.create_task(intake.run())
    try:
        intake.pause()
        for n in range(3):
            intake.put("a", [_value(k, 10 * n + k) for k in range(4)])
            await asyncio.sleep(0)
        assert taken == [] and len(intake.pending) == 4
        assert intake.shed == {"a": 8}
        intake.resume()
        while intake.pending:
            await asyncio.sleep(0)
        assert [dv.Value.Value for _, dv in taken] == [20.0, 21.0, 22.0, 23.0]
    finally:
        task.cancel()


async def test_while_the_mqtt_side_is_behind_values_wait_newest_per_field_and_are_shed() -> None:
    behind = True
    taken: list[Value] = []
    intake = Intake(taken.extend, can_take=lambda: not behind)
    task = asyncio.create_task(intake.run())
    try:
        for n in range(3):
            intake.put("a", [_value(k, 10 * n + k) for k in range(4)])
            await asyncio.sleep(HOLD_S)  # the consumer asked and was held, every time
        assert taken == [] and len(intake.pending) == 4
        assert intake.shed == {"a": 8}
        behind = False
        while intake.pending:
            await asyncio.sleep(HOLD_S)
        assert [dv.Value.Value for _, dv in taken] == [20.0, 21.0, 22.0, 23.0]
    finally:
        task.cancel()


async def test_drained_returns_once_everything_put_has_been_taken() -> None:
    taken: list[Value] = []
    intake = Intake(taken.extend)
    await asyncio.wait_for(intake.drained(), 1)  # nothing put: at once
    intake.pause()
    task = asyncio.create_task(intake.run())
    try:
        intake.put("a", [_value(k, k) for k in range(3)])
        waiting = asyncio.create_task(intake.drained())
        await asyncio.sleep(0.01)
        assert not waiting.done() and taken == []
        intake.resume()
        await asyncio.wait_for(waiting, 1)
        assert len(taken) == 3 and not intake.pending
    finally:
        task.cancel()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_an_episode_logs_one_warning_with_the_rate_and_one_info_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    overload = Overload(quiet_s=5, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock.now += 1
    overload.check({"default": 0}, 1000)
    assert not overload.active and _messages(caplog) == []
    clock.now += 1  # in this second 4,000 arrived, 1,000 shed
    overload.check({"default": 1000}, 5000)
    assert overload.active and overload.rate == 1000
    for n in range(2, 10):  # shedding goes on: no more lines within REPEAT_S
        clock.now += 1
        overload.check({"default": 1000 * n}, 4000 * n + 1000)
    assert _messages(caplog) == [
        (
            logging.WARNING,
            "more value changes than the bridge can carry: keeping the newest value per field, "
            "shedding 1000 values/s (25 % of those arriving)",
        )
    ]
    for _ in range(4):  # quiet, not yet for 5 s
        clock.now += 1
        overload.check({"default": 9000}, 50_000)
    assert overload.active and overload.rate == 0
    clock.now += 1
    overload.check({"default": 9000}, 50_000)
    assert not overload.active
    assert _messages(caplog)[1:] == [
        (logging.INFO, "bridge no longer overloaded, no longer shedding: 9000 values shed in 9 s")
    ]


def test_a_long_episode_repeats_its_warning_with_the_current_rate_and_names_sources(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    overload = Overload(clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    shed = {"line1": 0, "line2": 0}
    arrived = 0
    for _ in range(int(REPEAT_S)):
        clock.now += 1
        shed["line2"] += 500
        arrived += 1000
        overload.check(shed, arrived)
    clock.now += 1
    shed["line1"] += 100
    arrived += 1000
    overload.check(shed, arrived)
    levels, texts = zip(*_messages(caplog), strict=True)
    assert levels == (logging.WARNING, logging.WARNING)
    assert texts[0].startswith("source 'line2': more value changes")
    assert "shedding 500 values/s (50 % of those arriving)" in texts[0]
    assert texts[1].startswith("source 'line1', 'line2': more value changes")
    assert "shedding 493 values/s (49 % of those arriving)" in texts[1]


def test_values_shed_while_sources_start_are_one_info_and_no_episode_unless_it_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    overload = Overload(quiet_s=5, clock=clock)
    caplog.set_level(logging.INFO, logger=LOGGER)
    for n in range(1, 4):  # initial values shed while the other sources create their items
        clock.now += 1
        overload.check({"s2": 3000 * n}, 20_000 * n, starting=True)
    assert not overload.active and _messages(caplog) == []
    clock.now += 1  # every source ready, nothing shed since
    overload.check({"s2": 9000}, 70_000)
    assert not overload.active
    assert _messages(caplog) == [
        (
            logging.INFO,
            "9000 initial values shed while the sources were starting (a newer value of the "
            "same field arrived before the bridge took it)",
        )
    ]
    clock.now += 1  # shedding after start-up is an episode; its rate leaves start-up out
    overload.check({"s2": 9500}, 72_000)
    assert overload.active
    assert _messages(caplog)[1:] == [
        (
            logging.WARNING,
            "source 's2': more value changes than the bridge can carry: keeping the newest "
            "value per field, shedding 500 values/s (25 % of those arriving)",
        )
    ]

"""A writer group's ticks move to just after its values arrive (bridge/tick_phase.py): values
wait about a tenth of an interval instead of up to a whole one, no tick moves by more than
half an interval, and arrivals without a rhythm move nothing."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from opcua_mqtt.bridge.tick_phase import DEADBAND, TARGET, WINDOW, TickPhase

INTERVAL = 0.1


def _simulate(phase_s: float, jitter: list[float], ticks: int) -> list[float]:
    """Ticks every INTERVAL from 0, moved by TickPhase; a server's Publish response arrives
    every INTERVAL at ``phase_s`` (+ jitter, cycled). The waits of the values each tick sent."""
    phase = TickPhase(INTERVAL)
    arrivals = [k * INTERVAL + phase_s + jitter[k % len(jitter)] for k in range(ticks + 2)]
    due, sent_up_to, waits = 0.0, 0, []
    for _ in range(ticks):
        due += INTERVAL
        fresh = [a for a in arrivals[sent_up_to:] if a <= due]
        sent_up_to += len(fresh)
        waited = due - fresh[0] if fresh else None
        if waited is not None:
            waits.append(waited)
        due -= phase.shift(waited)
    return waits


@given(
    phase_s=st.floats(0, INTERVAL, exclude_max=True),
    jitter=st.lists(st.floats(0, INTERVAL * TARGET / 2), min_size=1, max_size=7),
)
def test_ticks_settle_a_tenth_of_an_interval_after_steady_arrivals(
    phase_s: float, jitter: list[float]
) -> None:
    """Wherever the server's responses fall in the interval, jitter included (the bunch may
    straddle a tick at first), the values end up waiting a tenth of an interval or so."""
    waits = _simulate(phase_s, jitter, 60)
    settled = waits[-WINDOW * 2 :]
    assert max(settled) <= INTERVAL * (TARGET + DEADBAND) + max(jitter) + 1e-9, waits


@given(st.lists(st.one_of(st.none(), st.floats(0, 10 * INTERVAL)), max_size=50))
def test_a_tick_moves_by_at_most_half_an_interval(waits: list[float | None]) -> None:
    phase = TickPhase(INTERVAL)
    for waited in waits:
        assert abs(phase.shift(waited)) <= INTERVAL / 2


def test_arrivals_spread_over_the_interval_move_nothing() -> None:
    phase = TickPhase(INTERVAL)
    waits = [0.0, 0.03, 0.06, 0.09, 0.045] * 3  # no server rhythm to follow
    assert [phase.shift(w) for w in waits] == [0.0] * len(waits)


def test_a_bunch_straddling_the_tick_puts_the_tick_off_to_after_its_latest_arrival() -> None:
    phase = TickPhase(INTERVAL)
    # arrivals 2 ms before the tick (wait 0.002) and 5-10 ms after the one before (0.09-0.095)
    shifts = [phase.shift(w) for w in [0.09, 0.095, 0.002, 0.09, 0.093]]
    assert shifts[:-1] == [0.0] * 4
    assert math.isclose(shifts[-1], -(0.1 - 0.09 + TARGET * INTERVAL))  # latest +10 ms, then 10


def test_ticks_without_a_new_value_or_behind_by_an_interval_neither_count_nor_move() -> None:
    phase = TickPhase(INTERVAL)
    waits = [0.04, None, 0.04, 0.25, None, 0.04, 0.04]
    assert [phase.shift(w) for w in waits] == [0.0] * 7
    assert math.isclose(phase.shift(0.04), 0.04 - INTERVAL * TARGET)  # the fifth that counts

"""Where in its publishing interval a writer group ticks: shortly after its values arrive.

The server's subscription and the writer group both run on the publishing interval, each on
its own clock. A value then waits in the bridge for whatever part of an interval separates the
two: half an interval on average, almost a whole one at worst (the p99 of the end-to-end
latency, docs/benchmarks.md), and two values of a field that land between two ticks go out as
one. :class:`TickPhase` moves the group's ticks, not their interval, to just after the Publish
responses that carry its values.

It looks at the waits of the last :data:`WINDOW` ticks that sent a new value. A wait is where
in the interval the value arrived, seen from the tick; on that circle the arrivals of a server
publishing on the same interval bunch together, the largest gap between them is where none
comes, and the arrival at its end is the latest of the bunch (with jitter the bunch may
straddle the tick: some values wait almost nothing, some almost a whole interval). The next
tick then moves, earlier or later by at most half an interval, to :data:`TARGET` of an interval
after that latest arrival. Where arrivals do not bunch into half an interval (events, slow
changes, a server behind its schedule) nothing moves, nor for waits longer than an interval
(the bridge behind: then the phase does not matter). Pure: the caller measures the waits.
"""

from __future__ import annotations

import itertools

#: Ticks with a new value looked at before the phase may move.
WINDOW = 5
#: How long after the latest arrival the tick should come, as a fraction of the interval: room
#: for the intake to hand over a whole response and for the arrivals' jitter.
TARGET = 0.1
#: A move smaller than this fraction of the interval is jitter, not a phase to follow.
DEADBAND = 0.02


class TickPhase:
    """The phase of one writer group's ticks; ``interval_s`` its publishing interval."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._waits: list[float] = []

    def shift(self, waited: float | None) -> float:
        """Seconds to bring the next tick forward (negative: to put it off), after a tick whose
        oldest new value waited ``waited`` seconds since it reached the writer (None: the tick
        sent no new value)."""
        interval = self._interval
        if waited is None or not 0 <= waited < interval:
            return 0.0
        self._waits.append(waited)
        if len(self._waits) < WINDOW:
            return 0.0
        waits = sorted(self._waits)
        self._waits.clear()
        gaps = [(b - a, i + 1) for i, (a, b) in enumerate(itertools.pairwise(waits))]
        gap, after = max([*gaps, (waits[0] + interval - waits[-1], 0)])
        if gap < interval / 2:
            return 0.0  # no bunch to follow
        move = (waits[after] - TARGET * interval) % interval  # tick at latest + TARGET
        if move > interval / 2:
            move -= interval  # later rather than more than half an interval earlier
        return move if abs(move) >= DEADBAND * interval else 0.0

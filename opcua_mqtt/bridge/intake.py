"""The bridge's intake: value changes wait here, the newest per field, until the bridge takes
them, so that overload degrades instead of collapsing.

A Publish response carries up to some 100,000 notifications, decoded and handed over in
synchronous calls (parts of a few hundred values). Running the bridge's per-value work inside
those calls blocked the event loop for hundreds of ms, and everything behind it (the next
responses, MQTT acks, the writer groups' ticks) got older and older. Now the source's calls
only file each value under its field (:class:`Pending`: FieldKey -> newest DataValue, in the
order the fields became pending); a consumer task takes them in slices of :data:`SLICE` and
yields to the event loop between slices. Under normal load the values of a response are taken
in the loop turns after it and nothing is lost. When more changes arrive than the bridge can
carry, a value that replaces one still pending is shed: the bridge keeps the newest value per
field (what the writer sends at its next tick anyway), stays within about a publishing interval
of real time, and its memory stays bounded by the number of fields. Several values of one field
in one response (a queue size above 1) are the server's queue, not overload: only the newest is
taken, none is counted.

The MQTT side can be the narrower one (a broker's Receive Maximum of 20 messages in flight,
acknowledged over a busy loop): while more messages wait for the broker than a few rounds of
ticks make, the consumer takes nothing (``can_take``), so the values wait here, the newest per
field, instead of as ever more messages in the MQTT spool. A broker that is away does not hold
the intake: then the spool keeps every message, as it must (docs/operations.md, "The spool").

Shedding is an overload episode (:class:`Overload`): one WARNING naming the sources and the
rate at its start, again every :data:`REPEAT_S` while it lasts, one INFO at its end; meanwhile
/readyz, the ua-status and the metrics say so (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping

from asyncua import ua

from opcua_mqtt.core.field_key import FieldKey

_log = logging.getLogger(__name__)

Value = tuple[FieldKey, ua.DataValue]

#: Values per slice: at about 1 µs of bridge work per value a slice holds the loop for about
#: half a ms of CPU, while the cost of the yields between slices stays small (docs/benchmarks.md,
#: "Issue 14: intake"). Under a CPU limit every ms of CPU in one callback is several ms of
#: event-loop lag for everything else ready in that turn ("Issue 14: event-loop lag, round 3").
SLICE = 500
#: How long the consumer waits before it asks ``can_take`` again.
HOLD_S = 0.005
#: How often a WARNING repeats, with the current rate, while an episode lasts.
REPEAT_S = 60.0
#: An episode ends after this long without shedding (or two publishing intervals, if longer).
QUIET_S = 5.0


class Pending:
    """The newest value of each field not yet taken, in first-pending order. Pure."""

    def __init__(self) -> None:
        self._values: dict[FieldKey, ua.DataValue] = {}

    def __len__(self) -> int:
        return len(self._values)

    def add(self, batch: Iterable[Value]) -> int:
        """File ``batch`` (a Publish response or a part of one); return how many pending values
        it replaced (shed). A field keeps its place in the order; within ``batch`` the last
        value wins."""
        values = self._values
        if not values:  # normal load: everything was taken since the last response
            values.update(batch)
            return 0
        incoming = dict(batch)
        shed = len(values.keys() & incoming.keys())
        values.update(incoming)
        return shed

    def take(self, limit: int) -> list[Value]:
        """Up to ``limit`` values, the longest pending first."""
        values = self._values
        if len(values) <= limit:
            taken = list(values.items())
            values.clear()
            return taken
        taken = list(itertools.islice(values.items(), limit))
        for key, _ in taken:
            del values[key]
        return taken

    def discard(self, groups: Collection[int]) -> None:
        """Forget the pending values of ``groups`` (their session is gone)."""
        self._values = {k: v for k, v in self._values.items() if k.group not in groups}


def _sources_label(names: Iterable[str]) -> str:
    """How the log names the shedding sources; nothing for the one source of an ``opcua``
    section (bridge/sources.py logs it that way too)."""
    named = [n for n in names if n != "default"]
    return f"source {', '.join(map(repr, named))}: " if named else ""


class Overload:
    """Overload episodes from the shed counters, checked periodically; see the module
    docstring. ``clock`` in seconds (monotonic)."""

    def __init__(
        self, quiet_s: float = QUIET_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._quiet_s = quiet_s
        self._clock = clock
        now = clock()
        # the start of the window the next WARNING reports: time, shed per source, arrived
        self._mark: tuple[float, dict[str, int], int] = (now, {}, 0)
        self._last: tuple[float, int] = (now, 0)  # the last check: time, shed in all
        self._started: tuple[float, int] | None = None  # the episode's start: time, shed
        self._last_shed = now
        self._shed_starting = 0  # values shed before the first check after start-up
        self.rate = 0.0  # values shed per second since the check before the last one

    @property
    def active(self) -> bool:
        """An episode is going on."""
        return self._started is not None

    def check(self, shed: Mapping[str, int], arrived: int, *, starting: bool = False) -> None:
        """Look at the counters (``shed`` per source, ``arrived`` in all, both cumulative).

        ``starting``: not every source's monitored items exist yet. Initial values that arrive
        while the other sources still create theirs are shed (counted) without an episode:
        one INFO with their number at the first check after start-up, and an episode only if
        shedding goes on then."""
        now = self._clock()
        total = sum(shed.values())
        last_at, last_total = self._last
        self.rate = (total - last_total) / max(now - last_at, 1e-3)
        self._last = (now, total)
        if starting:
            self._mark = (now, dict(shed), arrived)
            self._shed_starting = total
            return
        if self._shed_starting:
            _log.info(
                "%d initial values shed while the sources were starting (a newer value of the "
                "same field arrived before the bridge took it)",
                self._shed_starting,
            )
            self._shed_starting = 0
        if total > last_total:
            self._last_shed = now
            if self._started is None:
                self._started = (self._mark[0], sum(self._mark[1].values()))
                self._warn(now, shed, arrived)
            elif now - self._mark[0] >= REPEAT_S:
                self._warn(now, shed, arrived)
        elif self._started is not None and now - self._last_shed >= self._quiet_s:
            started_at, shed_before = self._started
            _log.info(
                "bridge no longer overloaded, no longer shedding: %d values shed in %.0f s",
                total - shed_before,
                self._last_shed - started_at,
            )
            self._started = None
        if self._started is None:
            self._mark = (now, dict(shed), arrived)

    def _warn(self, now: float, shed: Mapping[str, int], arrived: int) -> None:
        at, shed_then, arrived_then = self._mark
        counts = {s: n - shed_then.get(s, 0) for s, n in shed.items()}
        values = sum(counts.values())
        _log.warning(
            "%smore value changes than the bridge can carry: keeping the newest value per "
            "field, shedding %.0f values/s (%.0f %% of those arriving)",
            _sources_label(s for s, n in counts.items() if n),
            values / max(now - at, 1e-3),
            100 * values / max(arrived - arrived_then, 1),
        )
        self._mark = (now, dict(shed), arrived)


class Intake:
    """Pending values, the task that hands them to ``consume`` slice by slice, the shed
    counters and the overload episodes; see the module docstring."""

    def __init__(
        self,
        consume: Callable[[list[Value]], None],
        *,
        can_take: Callable[[], bool] = lambda: True,
        quiet_s: float = QUIET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pending = Pending()
        self.shed: dict[str, int] = {}  # values shed, per source
        self.taken = 0  # values handed to ``consume``
        self.overload = Overload(quiet_s, clock)
        self._consume = consume
        self._can_take = can_take
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._open = asyncio.Event()
        self._open.set()

    @property
    def overloaded(self) -> bool:
        """An overload episode is going on: values are being shed."""
        return self.overload.active

    def put(self, source: str, batch: list[Value]) -> None:
        """File the values of a Publish response (or of a part of one) from ``source``; called
        synchronously."""
        shed = self.pending.add(batch)
        if shed:
            self.shed[source] = self.shed.get(source, 0) + shed
        if self.pending:
            self._empty.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Return once every value put has been taken. The sources send their next Publish
        request only then: while the bridge is behind, the server keeps the newest value per
        item (queue size 1) and the bridge decodes fewer values it would shed."""
        await self._empty.wait()

    async def run(self) -> None:
        """The consumer: one slice per loop turn while values are pending."""
        pending = self.pending
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                await self._open.wait()
                if not self._can_take():  # MQTT behind: values wait here, the newest per field
                    await asyncio.sleep(HOLD_S)
                    continue
                taken = pending.take(SLICE)
                self.taken += len(taken)
                self._consume(taken)
                if pending:
                    await asyncio.sleep(0)  # the next responses, acks and ticks go first
            self._empty.set()

    def pause(self) -> None:
        """Take nothing until :meth:`resume`: values pile up, the newest per field. Nothing in
        the bridge pauses; a test drives the bridge into overload with it, deterministically
        (no timing)."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def discard(self, groups: Collection[int]) -> None:
        """Drop the values of ``groups`` not yet taken: their session is lost and their
        fields turn Bad; a value from before the loss must not follow."""
        self.pending.discard(groups)
        if not self.pending:
            self._empty.set()

    def check(self, arrived: int, *, starting: bool = False) -> None:
        """Start or end an overload episode; ``arrived``: value changes received so far;
        ``starting``: see :meth:`Overload.check`."""
        self.overload.check(self.shed, arrived, starting=starting)

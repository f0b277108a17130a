"""Whether each configured field delivers: the truth behind /readyz, the fields metric, the
start-up summary and the ua-status.

A field is in one of four states:

* ``refused``: the server refused its monitored item (BadNodeIdUnknown, ...); it will deliver
  nothing until the configuration or the server changes;
* ``waiting``: monitored, but no value yet (or only BadWaitingForInitialData); past its grace
  period (:func:`grace_period_s`) it counts as not delivering;
* ``bad``: its last value has a Bad status (it travels with that status);
* ``good``: its last value is Good or Uncertain.

Each episode of a field not delivering (refused, or waiting past its grace period) is logged
once, naming the field as ``Group/Writer/Field (NodeId)``; the fields that become overdue in
one report, and those that deliver again between two, share one line (a slow server can leave
100,000 fields without a value at once). The state only changes on events,
so the hot path (:meth:`FieldHealth.value`) is one dictionary lookup and a comparison, and the
counts per state are kept as the states change: the report (every second, and for each
scrape) looks only at the fields that do not deliver, not at all of them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from enum import StrEnum

from asyncua import ua

from opcua_mqtt.bridge.plan import BridgePlan
from opcua_mqtt.core.field_key import FieldKey

_log = logging.getLogger(__name__)

_WAITING_FOR_DATA = ua.StatusCodes.BadWaitingForInitialData
_BAD = 0x80000000

#: Names listed per state in /readyz; the counts are always complete.
LISTED_NAMES = 5
#: Added to every grace period: servers send the first values of many items over several
#: Publish responses, and a busy server is late by a second now and then.
GRACE_MARGIN_S = 5.0


class FieldState(StrEnum):
    REFUSED = "refused"
    WAITING = "waiting"
    BAD = "bad"
    GOOD = "good"


def grace_period_s(publishing_interval_ms: float, sampling_interval_ms: float) -> float:
    """How long a field may wait for its first value: three publishing intervals plus its
    sampling interval, plus :data:`GRACE_MARGIN_S`."""
    return (3 * publishing_interval_ms + sampling_interval_ms) / 1000 + GRACE_MARGIN_S


def describe_field(plan: BridgePlan, key: FieldKey) -> str:
    """``Group/Writer/Field (NodeId)``: how logs and reports name field ``key`` of ``plan``
    (made when needed: 100,000 such strings would be ~10 MB)."""
    gi, wi, name = key
    g = plan.groups[gi]
    w = g.writers[wi]
    f = next(f for f in w.fields if f.name == name)
    return f"{g.name}/{w.name}/{f.name} ({f.node_id})"


@dataclass(slots=True)
class _Field:
    """One per configured field (100,000 in a large bridge): slots, and no name of its own
    (:class:`FieldHealth` describes a field only when it logs or reports it)."""

    grace_s: float
    state: FieldState = FieldState.WAITING
    since: float | None = None  # monotonic time the field started waiting; None: not yet
    reported: bool = False  # this episode has been logged


@dataclass(frozen=True)
class FieldReport:
    counts: dict[str, int]  # per FieldState value
    overdue: int  # waiting fields past their grace period
    refused_names: list[str]  # the first few, each with the reason
    overdue_names: list[str]  # the first few

    @property
    def delivering(self) -> bool:
        """No field refused, none waiting past its grace period."""
        return not self.counts[FieldState.REFUSED] and not self.overdue

    def as_json(self) -> dict[str, object]:
        return {
            **self.counts,
            "overdue": self.overdue,
            "refused_fields": self.refused_names,
            "overdue_fields": self.overdue_names,
        }


class FieldHealth:
    """The state of every field; see the module docstring."""

    def __init__(
        self,
        fields: Iterable[tuple[FieldKey, float]],
        describe: Callable[[FieldKey], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``fields``: (key, grace period in seconds); ``describe(key)``: how logs and reports
        name the field, ``Group/Writer/Field (NodeId)``."""
        self._clock = clock
        self._describe = describe
        self._fields = {key: _Field(grace) for key, grace in fields}
        self._reasons: dict[FieldKey, str] = {}
        self._counts = dict.fromkeys(FieldState, 0)
        self._counts[FieldState.WAITING] = len(self._fields)
        # The fields waiting or refused, in the order they first stopped delivering.
        self._undelivering: dict[FieldKey, _Field] = dict(self._fields)
        self._back: list[FieldKey] = []  # reported overdue, delivering since the last report

    @classmethod
    def of_plan(cls, plan: BridgePlan) -> FieldHealth:
        """The health of every field of ``plan``, each waiting for its first value."""
        graces: dict[float, float] = {}  # one float per distinct grace period, not per field
        return cls(
            (
                (
                    FieldKey(gi, wi, f.name),
                    graces.setdefault(
                        grace := grace_period_s(g.publishing_interval_ms, f.sampling_interval_ms),
                        grace,
                    ),
                )
                for gi, g in enumerate(plan.groups)
                for wi, w in enumerate(g.writers)
                for f in w.fields
            ),
            functools.partial(describe_field, plan),
        )

    def __len__(self) -> int:
        return len(self._fields)

    def keys(self, group: int) -> list[FieldKey]:
        """The keys of writer group ``group``'s fields, in the plan's order: the objects this
        health holds, for the source's routes to share (one FieldKey per field, not two)."""
        return [key for key in self._fields if key.group == group]

    def state(self, key: FieldKey) -> FieldState:
        return self._fields[key].state

    def name(self, key: FieldKey) -> str:
        """``Group/Writer/Field (NodeId)``."""
        return self._describe(key)

    def monitoring(self, groups: Container[int] | None = None) -> None:
        """Monitored items are about to be created on a new session: every field (of the
        writer groups ``groups``: those of one source; None: all), refused before or not,
        waits for a value, its grace period starting now."""
        self._wait(groups, refused_too=True)

    def subscribed(self, groups: Container[int] | None = None) -> None:
        """The session was lost, or is back with its monitored items re-created: every field
        (of ``groups``, as above) that has one waits for a value afresh, its grace period
        starting now."""
        self._wait(groups, refused_too=False)

    def _wait(self, groups: Container[int] | None, *, refused_too: bool) -> None:
        now = self._clock()
        for key, f in self._fields.items():
            if groups is not None and key.group not in groups:
                continue
            if refused_too or f.state is not FieldState.REFUSED:
                self._move(key, f, FieldState.WAITING)
                f.since, f.reported = now, False

    def items_created(self, groups: Container[int]) -> None:
        """The monitored items of ``groups`` exist now: the grace period of their fields still
        waiting starts now, not when their creation began (many items over a busy connection
        take longer than a grace period)."""
        now = self._clock()
        for key, f in self._fields.items():
            if key.group in groups and f.state is FieldState.WAITING:
                f.since = now

    def refused(self, key: FieldKey, status: ua.StatusCode) -> None:
        f = self._fields[key]
        reason = str(status.name)
        self._move(key, f, FieldState.REFUSED)
        f.reported = True
        if self._reasons.get(key) == reason:
            return  # the same episode: refused again on a new session
        self._reasons[key] = reason
        _log.warning("field %s refused by the server: %s", self._describe(key), reason)

    def value(self, key: FieldKey, dv: ua.DataValue) -> bool:
        """A value (or a status) arrived for the field ``key``; whether the field stopped
        waiting (the only change that can turn the ua-status Operational)."""
        code = dv.StatusCode
        raw = 0 if code is None else code.value
        if not raw & _BAD:
            state = FieldState.GOOD
        elif raw == _WAITING_FOR_DATA:
            return False  # still waiting, since the same moment
        else:
            state = FieldState.BAD
        f = self._fields.get(key)
        if f is None or f.state is state or f.state is FieldState.REFUSED:
            return False  # a refused field has no monitored item: this is the bridge's own note
        was = f.state
        self._move(key, f, state)
        self._reasons.pop(key, None)  # a refusal episode ends with a value
        if was is FieldState.WAITING:
            if f.reported:
                self._back.append(key)  # told by the next report
            return True
        return False

    def _move(self, key: FieldKey, f: _Field, state: FieldState) -> None:
        """Put field ``f`` in ``state``, keeping the counts and the undelivering fields."""
        self._counts[f.state] -= 1
        self._counts[state] += 1
        f.state = state
        if state is FieldState.WAITING or state is FieldState.REFUSED:
            self._undelivering[key] = f
        elif self._undelivering.pop(key, None) is not None and not self._undelivering:
            # A dict keeps the table of its largest size (every field, at the start: ~5 MiB
            # at 100,000): start afresh once the last field delivers.
            self._undelivering = {}

    def report(self, *, connected: bool = True, away: Container[int] = ()) -> FieldReport:
        """Counts per state, and the names of the fields that do not deliver; logs each field
        that has waited past its grace period, once per episode. While the session is down
        (``connected`` false; for the writer groups in ``away``, their source's session) no
        field is overdue: the connection is what is down, and it is reported once, by
        itself."""
        now = self._clock()
        counts = {s.value: self._counts[s] for s in FieldState}
        overdue = 0
        refused: list[str] = []
        late: list[str] = []
        newly: list[FieldKey] = []  # overdue since this report
        longest = 0.0
        for key, f in self._undelivering.items():
            if f.state is FieldState.REFUSED:
                if len(refused) < LISTED_NAMES:
                    refused.append(f"{self._describe(key)}: {self._reasons[key]}")
            elif (
                connected
                and key.group not in away
                and f.state is FieldState.WAITING
                and f.since is not None
                and now - f.since > f.grace_s
            ):
                overdue += 1
                if not f.reported:
                    f.reported = True
                    newly.append(key)
                    longest = max(longest, now - f.since)
                if len(late) < LISTED_NAMES:
                    late.append(self._describe(key))
        if self._back:
            self._log_fields(logging.INFO, self._back, "delivers again", "deliver again")
            self._back = []
        if newly:
            self._log_fields(
                logging.WARNING,
                newly,
                f"has had no value {longest:.0f} s after it was subscribed",
                f"have had no value for up to {longest:.0f} s after they were subscribed",
            )
        return FieldReport(counts, overdue, refused, late)

    def _log_fields(self, level: int, keys: list[FieldKey], one: str, many: str) -> None:
        """One line for ``keys``: the field's name, or their number and the first few names."""
        if len(keys) == 1:
            _log.log(level, "field %s %s", self._describe(keys[0]), one)
            return
        names = ", ".join(self._describe(k) for k in keys[:LISTED_NAMES])
        more = f" and {len(keys) - LISTED_NAMES} more" if len(keys) > LISTED_NAMES else ""
        _log.log(level, "%d fields %s: %s%s", len(keys), many, names, more)

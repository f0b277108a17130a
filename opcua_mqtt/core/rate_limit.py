"""Rate limits for write-back requests: per requester, under a global cap, refused cheaply.

One bucket for everyone let one commander's flood refuse another's legitimate write. Here each
requester has its own token bucket (:class:`RequesterLimits`), all of them under one global bucket
that bounds the work the bridge does for commands at all. A refusal is decided from the key alone,
before the request is parsed, and is counted in a :class:`RefusalTally` so that the log gets one
summary line per interval instead of one line per refused request.

Nothing here reads a clock: callers pass ``now`` (monotonic seconds).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

__all__ = ["RateLimiter", "RefusalTally", "RequesterLimits"]


class RateLimiter:
    """Token bucket: ``burst`` requests at once, ``rate_per_s`` on average over time."""

    def __init__(self, rate_per_s: float = 20.0, burst: int = 40) -> None:
        if not rate_per_s > 0 or math.isinf(rate_per_s):
            raise ValueError("rate_per_s must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        """Take one token if there is one; ``now`` is a monotonic clock in seconds."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until :meth:`allow` would succeed (0 if it would now)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate_per_s)

    def full(self, now: float) -> bool:
        """Whether the bucket is back to ``burst``: forgetting it then changes nothing."""
        self._refill(now)
        return self._tokens >= self.burst

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed = now - self._last
        if elapsed > 0:  # a clock that steps back refills nothing
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
            self._last = now


class RequesterLimits:
    """A bucket per requester key (``rate_per_s``/``burst`` each) under one global bucket
    (``total_rate_per_s``/``total_burst``).

    A request takes a token from its requester's bucket first, so a flooder empties only its
    own bucket and never the global one: another requester keeps its share as long as the
    flooders together stay within the global cap. Memory is bounded by ``max_requesters``
    buckets: past that, full buckets (which change nothing when forgotten) go first, then the
    least recently used one (whose requester then starts again with a full burst)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        total_rate_per_s: float,
        total_burst: int,
        max_requesters: int = 10_000,
    ) -> None:
        RateLimiter(rate_per_s, burst)  # ValueError for bad settings, before any request
        if max_requesters < 1:
            raise ValueError("max_requesters must be at least 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.max_requesters = max_requesters
        self._total = RateLimiter(total_rate_per_s, total_burst)
        self._buckets: OrderedDict[str, RateLimiter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float, *, total: bool = True) -> str | None:
        """None if the request may go on, else why not: ``"requester"`` (its own bucket is
        empty) or ``"total"`` (the global cap; not taken with ``total`` false, for a request
        that took its global token under another key already)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = RateLimiter(self.rate_per_s, self.burst)
            self._bound(now)
        else:
            self._buckets.move_to_end(key)
        if not bucket.allow(now):
            return "requester"
        if total and not self._total.allow(now):
            return "total"
        return None

    def _bound(self, now: float) -> None:
        if len(self._buckets) <= self.max_requesters:
            return
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        while len(self._buckets) > self.max_requesters:
            self._buckets.popitem(last=False)


@dataclass
class RefusalTally:
    """Requests refused for rate, counted per requester between two summaries."""

    counts: Counter[str] = field(default_factory=Counter)
    total: int = 0

    def add(self, key: str) -> bool:
        """Count one refusal; True when it is the first since the last summary (the caller
        then schedules the summary, and may answer this one request)."""
        first = self.total == 0
        self.counts[key] += 1
        self.total += 1
        return first

    def summary(self, interval_s: float, top: int = 3) -> str | None:
        """The log line for the refusals counted so far, and start counting anew; None if
        there were none."""
        if not self.total:
            return None
        worst = ", ".join(f"{k} ({n})" for k, n in self.counts.most_common(top))
        more = len(self.counts) - min(top, len(self.counts))
        line = (
            f"{self.total} write request(s) refused for rate in the last {interval_s:g} s, "
            f"from {len(self.counts)} requester(s): {worst}" + (f" and {more} more" if more else "")
        )
        self.counts.clear()
        self.total = 0
        return line

"""What both connections (MQTT broker, OPC UA server) do between attempts: a jittered, capped
back-off, and the bookkeeping of a failure that retrying cannot fix (for readiness, the rate of
its ERROR lines and ``run --exit-on-fatal``)."""

from __future__ import annotations

import random
import time

MIN_BACKOFF_S = 0.5
#: A connection that stayed up this long resets the back-off; one lost sooner (a server or
#: broker that drops every new connection, another client with the same client id) keeps
#: growing it.
STABLE_S = 30.0
#: A permanent connection failure that goes on is logged again at ERROR, at most this often.
FATAL_LOG_EVERY_S = 60.0


class Backoff:
    """Exponential back-off from MIN_BACKOFF_S up to ``cap``, each wait drawn at random from
    its upper half so that many bridges that lost the same peer do not return in step."""

    def __init__(self, cap: float) -> None:
        self.cap = max(cap, MIN_BACKOFF_S)
        self._next = MIN_BACKOFF_S

    def reset(self) -> None:
        self._next = MIN_BACKOFF_S

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return random.uniform(delay / 2, delay)


class FatalEpisode:
    """A run of connection attempts failing for a reason retrying cannot fix (an untrusted
    certificate, refused credentials): when it began and why, for readiness and for
    ``run --exit-on-fatal``; it ends with any other outcome of an attempt."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.since: float | None = None  # time.monotonic() of the first failure
        self._logged_at: float | None = None

    def failed(self, error: Exception) -> bool:
        """Record a permanent failure; whether to log it now (once a minute at most)."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.error = error
        if self._logged_at is None or now - self._logged_at >= FATAL_LOG_EVERY_S:
            self._logged_at = now
            return True
        return False

    def end(self) -> None:
        self.error = self.since = self._logged_at = None

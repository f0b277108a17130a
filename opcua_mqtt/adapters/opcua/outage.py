"""How the bridge rides out the OPC UA server's absence: when to try again, and what to log.

An outage runs from a lost session (or a first failed attempt) to the next session. It is
logged once, at WARNING, with its cause, and once at INFO when the session is back, however
many attempts lie between (those are logged at DEBUG). A failure that retrying cannot fix
(:attr:`OpcUaConnectionError.permanent`: the server's certificate not trusted, the user or our
certificate refused, a host name that does not exist, an endpoint the server refuses) is
logged at ERROR when it starts and again at most once a minute while it lasts, and kept in
:attr:`Outage.fatal` for readiness and ``run --exit-on-fatal``. The waits between attempts are
the jittered back-off both connections share (adapters/reconnect.py), capped by
``opcua.reconnect_max_s``.
"""

from __future__ import annotations

import logging
import time

from opcua_mqtt.adapters.opcua.failures import OpcUaConnectionError
from opcua_mqtt.adapters.reconnect import STABLE_S, Backoff, FatalEpisode

__all__ = ["Outage"]

_log = logging.getLogger(__name__)


class Outage:
    """The OPC UA side's reconnect policy and the state of its current outage."""

    def __init__(self, reconnect_max_s: float, label: str = "") -> None:
        """``label`` starts each log line's subject (``source 'plc1': ``; empty for a bridge
        of one server)."""
        self._label = label
        self.fatal = FatalEpisode()
        #: Why the server cannot be used now, one line; None while a session is up.
        self.cause: str | None = None
        self._backoff = Backoff(reconnect_max_s)
        self._since: float | None = None  # time.monotonic() when the outage began
        self._up_since: float | None = None

    def failed(self, error: OpcUaConnectionError) -> float:
        """An attempt to open a session failed: log it as the module says; return the wait
        before the next attempt."""
        first = self._since is None
        if first:
            self._since = time.monotonic()
        self.cause = str(error)
        if error.permanent:
            level = logging.ERROR if self.fatal.failed(error) else logging.DEBUG
        else:
            self.fatal.end()
            level = logging.WARNING if first else logging.DEBUG
        delay = self._backoff.next_delay()
        # The error last: its hint may end in a command to copy.
        _log.log(level, "OPC UA %s(next attempt in %.1f s): %s", self._label, delay, error)
        return delay

    def lost(self, endpoint: str, cause: str) -> float:
        """The session was lost: log it; return the wait before the first new attempt."""
        now = time.monotonic()
        if self._up_since is not None and now - self._up_since >= STABLE_S:
            self._backoff.reset()
        self._up_since, self._since = None, now
        self.cause = f"lost the session on {endpoint}: {cause}"
        _log.warning("OPC UA %ssession on %s lost (%s); reconnecting", self._label, endpoint, cause)
        return self._backoff.next_delay()

    def connected(self, endpoint: str) -> None:
        """A session is up (its subscriptions created): the outage, if any, is over."""
        now = time.monotonic()
        self.fatal.end()
        self.cause = None
        if self._since is not None:
            _log.info(
                "OPC UA %ssession on %s up again after %.1f s",
                self._label,
                endpoint,
                now - self._since,
            )
        self._since, self._up_since = None, now

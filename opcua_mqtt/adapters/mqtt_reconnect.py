"""When an MQTT session reconnects: a jittered, capped back-off, and a watchdog that drops a
stalled connection.

A stalled connection is one the network silently stopped carrying (a half-open TCP connection,
a NAT or firewall that forgot it, a broker that hangs): nothing closes it, so nothing tells
gmqtt. gmqtt notices the missing heartbeat after twice the keep-alive, but then closes the TLS
transport gracefully and waits 30 s for the TLS close_notify that cannot come ("SSL shutdown
timed out") before it reports the loss (gmqtt 0.8.0). The watchdog here aborts the transport
instead, so the session reconnects at once; QoS 1 messages not acknowledged by then stay in
gmqtt's storage and are sent again on the new connection.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

MIN_BACKOFF_S = 0.5
#: A connection that stayed up this long resets the back-off; one lost sooner (a broker that
#: drops every new connection, another client with the same client id) keeps growing it.
STABLE_S = 30.0


class Backoff:
    """Exponential back-off from MIN_BACKOFF_S up to ``cap``, each wait drawn at random from
    its upper half so that many bridges that lost the same broker do not return in step."""

    def __init__(self, cap: float) -> None:
        self.cap = max(cap, MIN_BACKOFF_S)
        self._next = MIN_BACKOFF_S

    def reset(self) -> None:
        self._next = MIN_BACKOFF_S

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return random.uniform(delay / 2, delay)


def silence_s(client: Any) -> tuple[float, float] | None:
    """How long nothing has arrived over ``client``'s current connection, and the keep-alive in
    force on it (the broker may have replaced ours with its Server Keep Alive); None without
    a connection or a keep-alive."""
    connection = getattr(client, "_connection", None)
    keepalive = getattr(connection, "keepalive", 0)
    last_in = getattr(connection, "_last_data_in", None)
    if not keepalive or last_in is None:
        return None
    return time.monotonic() - last_in, float(keepalive)


def abort_connection(client: Any) -> None:
    """Drop ``client``'s connection without the TLS close handshake a stalled peer never
    answers; gmqtt reports the loss (on_disconnect) at once."""
    connection = getattr(client, "_connection", None)
    transport = getattr(connection, "_transport", None)
    if transport is not None:
        transport.abort()


async def watch_for_stalls(
    client: Any, connected: Callable[[], bool], on_stall: Callable[[float, float], None]
) -> None:
    """Forever: while ``connected()``, call ``on_stall(silence, keepalive)`` and abort the
    connection once nothing has arrived for twice the keep-alive (gmqtt sends PINGREQ after
    0.8 x keep-alive of quiet, so a live broker always answers well within that)."""
    while True:
        measured = silence_s(client) if connected() else None
        keepalive = measured[1] if measured else 4.0
        if measured is not None and measured[0] >= 2 * keepalive:
            on_stall(*measured)
            abort_connection(client)
        await asyncio.sleep(min(1.0, keepalive / 4))


#: A permanent connection failure that goes on is logged again at ERROR, at most this often.
FATAL_LOG_EVERY_S = 60.0


class FatalEpisode:
    """A run of connection attempts failing for a reason retrying cannot fix (an untrusted
    broker certificate, refused credentials): when it began and why, for readiness and for
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

"""A watchdog that drops a stalled MQTT connection (the back-off between attempts is in
:mod:`.reconnect`, shared with the OPC UA side).

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
import time
from collections.abc import Callable
from typing import Any


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

"""What gmqtt 0.8.0 does not tell the MQTT session, made to tell, in one place: the reason code
of PUBACK and PUBREC, the packet id of a PUBLISH just sent, the cause of a lost connection; and
gmqtt's log lines about what the session reports itself, kept to DEBUG. One thing it does wrong
is mended here too: the packet ids of publishes dropped with a session the broker did not keep.
And one it does slowly: it writes every packet to the TLS transport on its own (one TLS record
and one send system call each); :class:`CoalescingTransport` joins the packets of a turn of
the event loop.
(The session's other reaches into gmqtt's internals, for its in-flight window and a quiet
disconnect, stay there.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gmqtt.storage import PersistentStorage

#: Bytes a :class:`CoalescingTransport` holds at most before it writes them at once.
COALESCE_BYTES = 64 * 1024


class TrackingStorage(PersistentStorage):  # type: ignore[misc]  # gmqtt is untyped
    """gmqtt's store of unacknowledged QoS 1/2 packets, which also remembers the packet id
    of the PUBLISH just sent: ``Client.publish`` does not return it. (gmqtt also stores the
    PUBREL here on a PUBREC, but only while handling that packet, never between a publish
    and the read of ``last_mid`` that follows it.)"""

    def __init__(self) -> None:
        super().__init__()
        self.last_mid = 0

    def push_message(self, mid: int, raw_package: bytes) -> None:
        self.last_mid = mid
        super().push_message(mid, raw_package)

    def count(self) -> int:
        """Packets in flight. (Not ``__len__``: gmqtt takes an empty store for none given.)"""
        return len(self._messages)


def instrument(client: Any, storage: TrackingStorage, on_ack: Callable[[bytes], None]) -> None:
    """Make gmqtt's ``client`` tell what it ignores: ``on_ack`` gets the body of every
    PUBACK and PUBREC (packet id, then the MQTT 5 reason code gmqtt drops).

    gmqtt's package handler lives as long as the ``Client`` and looks its packet handlers up
    by name on the first packet of each type, so instance attributes set here, before any
    connection, replace them for the client's lifetime; they still do gmqtt's work first.
    gmqtt's own reconnect is replaced by nothing: the session reconnects itself, and gmqtt's
    attempt, even switched off, logs a false ERROR on every disconnect. ``storage`` must be
    the one the client was made with.

    On a CONNACK without a session gmqtt empties ``storage`` (MQTT discards the old session's
    unacknowledged publishes) but keeps their packet ids in use: after a broker restart that
    lost a full window of them (Mosquitto's Receive Maximum is 20), no id was left and the
    client could never publish again. Their ids are released here with them.

    Each connection's transport is wrapped in a :class:`CoalescingTransport` as gmqtt hands
    the connection to the package handler.
    """
    handler = client._package_handler
    if handler._handler_cache or client._persistent_storage is not storage:
        raise RuntimeError("this gmqtt cannot be instrumented: see gmqtt_glue.instrument")
    puback, pubrec = handler._handle_puback_packet, handler._handle_pubrec_packet

    def on_puback(cmd: int, packet: bytes) -> None:
        puback(cmd, packet)
        on_ack(packet)

    def on_pubrec(cmd: int, packet: bytes) -> None:
        pubrec(cmd, packet)
        on_ack(packet)

    async def no_reconnect(delay: bool = False) -> None:
        return None

    clear = handler._clear_qos_callback
    set_connection = handler.set_connection

    def clear_and_release_ids() -> None:
        for mid, _packet in storage.get_all():
            handler.id_generator.free_id(mid)
        clear()

    def set_coalescing_connection(connection: Any) -> None:
        # Called by gmqtt's MQTTConnection.__init__, after the protocol has its transport
        # and before the CONNECT: every packet of this connection goes through it.
        coalescing = CoalescingTransport(connection._transport)
        connection._transport = connection._protocol._transport = coalescing
        set_connection(connection)

    handler._handle_puback_packet = on_puback
    handler._handle_pubrec_packet = on_pubrec
    handler._reconnect_callback = no_reconnect
    handler._clear_qos_callback = clear_and_release_ids
    handler.set_connection = set_coalescing_connection


class CoalescingTransport:
    """Stands in for gmqtt's transport: what is written in one turn of the event loop goes
    out in one write at the start of the next turn (or at once when ``COALESCE_BYTES`` wait).

    Why: gmqtt writes each packet on its own, and each write to a TLS transport is one TLS
    record and one send system call. Sixteen write-back answers (or PUBACKs for a read of
    sixteen requests, or a window of data messages) cost sixteen sends, each of which may wake
    the broker and hand it the CPU. Joined they cost one. Nothing waits longer than the turn
    of the event loop it was written in; order is kept.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport  # the real one
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= COALESCE_BYTES:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Hand what waits to the real transport (dropped if it is closing, as gmqtt does)."""
        data = b"".join(self._pending)
        self._drop()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes + self.transport.get_write_buffer_size()

    def close(self) -> None:
        """Close after what was written (a DISCONNECT, for one) has gone to the transport."""
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._drop()
        self.transport.abort()

    def _drop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()
        self._pending_bytes = 0

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)  # get_extra_info, pause_reading, ...


def loss_cause(client: Any) -> BaseException | None:
    """Why ``client``'s connection closed: gmqtt reports a loss without its exception, the
    asyncio protocol keeps it (None for a clean close)."""
    closed = getattr(getattr(client._connection, "_protocol", None), "closed", None)
    if isinstance(closed, asyncio.Future) and closed.done() and not closed.cancelled():
        return closed.exception()
    return None


class _ReportedHere(logging.Filter):
    """gmqtt records about what this module reports itself, in one line and per episode: a
    traceback for every lost connection, a line per refused QoS 2 message, a false ERROR for
    a refused CONNACK. They show only when gmqtt logs at DEBUG."""

    MESSAGES = frozenset(
        {
            "[EXC: CONN LOST]",
            "[TRYING WRITE TO CLOSED SOCKET]",
            "[MqttPackageHandler] CONNACK: %s",
            "[MqttPackageHandler] CONNACK %s is permanent, not reconnecting",
            "[MqttPackageHandler] not reconnecting after a permanent CONNACK refusal",
            "[MqttPackageHandler] PUBREC mid %s refused (%s); dropping message",
        }
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.MESSAGES or logging.getLogger("gmqtt").isEnabledFor(
            logging.DEBUG
        )


for _name in ("gmqtt.mqtt.protocol", "gmqtt.mqtt.handler"):
    logging.getLogger(_name).addFilter(_ReportedHere())

"""What gmqtt 0.8.0 does not tell the MQTT session, made to tell, in one place: the reason code
of PUBACK and PUBREC, the packet id of a PUBLISH just sent, the cause of a lost connection; and
gmqtt's log lines about what the session reports itself, kept to DEBUG. One thing it does wrong
is mended here too: the packet ids of publishes dropped with a session the broker did not keep.
(The session's other reaches into gmqtt's internals, for its in-flight window and a quiet
disconnect, stay there.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gmqtt.storage import PersistentStorage


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

    def clear_and_release_ids() -> None:
        for mid, _packet in storage.get_all():
            handler.id_generator.free_id(mid)
        clear()

    handler._handle_puback_packet = on_puback
    handler._handle_pubrec_packet = on_pubrec
    handler._reconnect_callback = no_reconnect
    handler._clear_qos_callback = clear_and_release_ids


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

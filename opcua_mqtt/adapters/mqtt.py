"""The MQTT side (gmqtt): one long-lived session that survives broker outages without losing data.

Why a wrapper around gmqtt, in a few measured facts (gmqtt 0.8.0, Mosquitto 2.0.11):

* gmqtt's own reconnect cannot be trusted (a connection dropped after the TLS handshake never
  counts as failed, so it retries forever and ``connect()`` never returns): it is switched off
  (``reconnect_retries=-2``) and this module reconnects with capped exponential back-off.
* gmqtt raises ``OverflowError`` once the QoS 1/2 in-flight count reaches the broker's Receive
  Maximum (Mosquitto: 20), and QoS 0 has no back-pressure at all: a sender task keeps its own
  in-flight window and watches the transport's write buffer.
* gmqtt keeps unacknowledged QoS 1/2 packets per ``Client`` object and replays them on the next
  ``connect()``; so one ``Client`` lives as long as the publisher, and messages published while
  the broker is away wait in a bounded spool here (:mod:`.mqtt_spool`: in memory or on disk,
  oldest data dropped first, counted and logged).
* That replay makes a packet the broker refuses a poison: Mosquitto drops the connection, and
  again after every reconnect. Topics it would refuse are therefore refused here, before they
  reach the spool; and a connection dropped again and again soon after connecting reconnects
  with growing back-off instead of five times a second.
* gmqtt takes 2 x keep-alive plus 30 s to report a stalled connection: :mod:`.mqtt_reconnect`
  drops it after 2 x keep-alive.
* gmqtt ignores the reason code of a PUBACK (0x87 Not authorized looks like success),
  ``Client.publish`` does not return the packet id, the DISCONNECT it reports on a lost
  connection carries no exception, and its own reconnect (even when switched off) logs "max
  number of failed connection attempts achieved" at ERROR on every normal disconnect.
  :mod:`.gmqtt_glue` deals with all of it in one place, per ``Client``; what the
  broker did with each message is kept by :mod:`.mqtt_delivery`.

Retained state (metadata, status, connection) travels in the same FIFO as data, so a new
metadata message is on the wire before the data it describes; the latest payload per retained
topic is also kept (compressed: :mod:`.mqtt_retained`) and re-sent first after every reconnect
(a broker may have lost it). Retained messages are never dropped from the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import reprlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTError

from opcua_mqtt.adapters.gmqtt_glue import TrackingStorage, instrument, loss_cause
from opcua_mqtt.adapters.mqtt_config import MqttError as MqttError
from opcua_mqtt.adapters.mqtt_config import MqttOptions as MqttOptions
from opcua_mqtt.adapters.mqtt_config import TlsOptions as TlsOptions
from opcua_mqtt.adapters.mqtt_config import (
    client_identity,
    describe_failure,
    describe_tls_files,
)
from opcua_mqtt.adapters.mqtt_delivery import DeliveryTracker, reason_name
from opcua_mqtt.adapters.mqtt_reconnect import watch_for_stalls
from opcua_mqtt.adapters.mqtt_retained import RetainedState
from opcua_mqtt.adapters.mqtt_spool import Entry, Spool
from opcua_mqtt.adapters.mqtt_spool import Outgoing as Outgoing
from opcua_mqtt.adapters.mqtt_stats import PublisherStats
from opcua_mqtt.adapters.reconnect import STABLE_S, Backoff, FatalEpisode
from opcua_mqtt.core.topics import string_problem, topic_matches, topic_problem

_log = logging.getLogger(__name__)

NO_RECONNECT = -2  # gmqtt: any negative value but -1 disables its reconnect logic
#: How often the latest retained state of a topic the broker refuses is offered again: a
#: refused metadata or status message must reach the broker once its ACL allows it, and
#: only an accepted publish ends a refusal episode.
REFUSED_RETRY_S = 5.0
#: How often acknowledged messages are deleted from a disk spool when fewer than a batch are.
_FLUSH_S = 0.25


MessageHandler = Callable[[str, bytes, dict[str, Any]], Awaitable[None] | None]


class MqttSession:
    """Publish and subscribe over one MQTT session that reconnects on its own.

    ``publish`` never blocks and never raises for a missing broker: messages wait in the spool.
    It, ``subscribe`` and the constructor (for the will) raise ``ValueError`` for a topic the
    broker would refuse: the callers are this program's own code, so such a topic is a bug to
    surface where it is made, not a message to count and forget.
    """

    def __init__(
        self,
        options: MqttOptions,
        *,
        will: Outgoing | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        on_refusal_change: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_refusal_change(True)``: the broker started refusing publishes (see
        :mod:`.mqtt_delivery`); ``False``: it accepts them on every topic again."""
        self.options = options
        self.stats = PublisherStats()
        self.delivery = DeliveryTracker(
            client_identity(options),
            on_refusal_change,
            log_level=logging.DEBUG if options.connect_attempts else logging.WARNING,
        )
        self.spool = Spool(options.spool_messages, options.spool_bytes, options.spool_directory)
        if self.spool.restored:
            _log.info(
                "spool %s holds %d messages (%d bytes) from before: they go out first",
                options.spool_directory,
                self.spool.restored,
                self.spool.bytes,
            )
        self._sending: dict[int, Entry] = {}  # packet id -> spooled message in flight
        self._retained = RetainedState()
        self._retained_dirty: set[str] = set()
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._on_connection_change = on_connection_change
        self._wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._ever_connected = False
        self._connack_seen = False  # in the current connection attempt
        self._disconnect_reason: int | None = None  # of the broker's DISCONNECT, if it sent one
        self._stalled: str | None = None  # why the watchdog dropped the current connection
        self._failure: MqttError | None = None  # why the last connection attempt failed
        self.fatal = FatalEpisode()  # attempts failing for good, one after the other
        self._gave_up = asyncio.Event()  # set when wait_connected must fail (see options)
        self._storage = TrackingStorage()
        will_message = None
        if will is not None:
            _check_sendable(will)
            will_message = gmqtt.Message(
                will.topic, will.payload, qos=will.qos, retain=will.retain, **will.properties
            )
        props: dict[str, Any] = {}
        if options.protocol == "5":
            props["session_expiry_interval"] = options.session_expiry_s
            if options.maximum_packet_size is not None:
                props["maximum_packet_size"] = options.maximum_packet_size
        # Session expiry 0 asks for no session at all: with MQTT 3.1.1 only a clean session
        # keeps the broker from holding (and queueing for) a one-shot client's id forever.
        self._client: Any = gmqtt.Client(
            options.client_id,
            clean_session=options.session_expiry_s == 0,
            will_message=will_message,
            persistent_storage=self._storage,
            **props,
        )
        self._client.set_config({"reconnect_retries": NO_RECONNECT, "reconnect_delay": 0})
        if options.username:
            self._client.set_auth_credentials(options.username, options.password)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        instrument(self._client, self._storage, self._acknowledged)

    def _acknowledged(self, packet: bytes) -> None:
        """PUBACK/PUBREC: packet id, then (MQTT 5, optional) the reason code; absent is 0."""
        if len(packet) < 2:
            return
        mid = int.from_bytes(packet[:2], "big")
        entry = self._sending.pop(mid, None)
        if entry is not None:
            self.spool.done(entry)  # accepted or refused: either way never sent again
        msg = self.delivery.acknowledged(mid, packet[2] if len(packet) > 2 else 0)
        if msg is not None:
            self.stats.published += 1
            self.stats.published_bytes += len(msg.payload)

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self, *, wait: bool = False) -> None:
        """Start connecting in the background; with ``wait``, return once connected (or raise)."""
        self._tasks.append(asyncio.create_task(self._connection_loop(), name="mqtt-connection"))
        self._tasks.append(asyncio.create_task(self._sender_loop(), name="mqtt-sender"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="mqtt-housekeeping"))
        watchdog = watch_for_stalls(self._client, self._connected.is_set, self._note_stall)
        self._tasks.append(asyncio.create_task(watchdog, name="mqtt-watchdog"))
        if wait:
            try:
                await self.wait_connected(self.options.connect_timeout_s)
            except MqttError:
                await self.stop(drain_s=0)
                raise

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected. Raise MqttError, naming the cause, after ``timeout``, or
        at once when the last attempt failed for good (see MqttOptions.connect_attempts)."""
        connected = asyncio.ensure_future(self._connected.wait())
        gave_up = asyncio.ensure_future(self._gave_up.wait())
        try:
            await asyncio.wait(
                {connected, gave_up}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            gave_up.cancel()
        if self._connected.is_set():
            return
        if self._gave_up.is_set() and self._failure is not None:
            raise self._failure
        o = self.options
        why = f": {self._failure}" if self._failure else ""
        raise MqttError(f"no MQTT connection to {o.host}:{o.port} within {timeout:g} s{why}")

    async def stop(self, final: list[Outgoing] | None = None, *, drain_s: float = 5.0) -> None:
        """Send ``final`` (e.g. a Disabled status), drain what is queued within ``drain_s``,
        then disconnect cleanly so the broker does not publish the last will. What could not
        be sent stays in a disk spool for the next start, or is lost (and said so)."""
        for msg in final or []:
            self.publish(msg)
        if self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), drain_s)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._client.is_connected:
            with contextlib.suppress(OSError, ssl.SSLError, ConnectionError):
                await self._client.disconnect()
        self._set_connected(False)
        self._close_spool()

    def _close_spool(self) -> None:
        waiting = len(self.spool) + len(self._sending)
        left = self.spool.close()
        if left:
            _log.warning(
                "%d messages wait in the spool %s for the broker: they are sent when the "
                "bridge starts again with this spool",
                left,
                self.options.spool_directory,
            )
        elif waiting and self.spool.store is None:
            _log.warning(
                "%d messages waiting for the broker are lost: no mqtt.spool.directory keeps "
                "them across a restart",
                waiting,
            )

    async def _drained(self) -> None:
        while len(self.spool) or self._retained_dirty or self._inflight() > 0:
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------------------- publishing

    def publish(self, msg: Outgoing) -> None:
        """Queue a message. Retained ones replace the previous state of their topic."""
        _check_sendable(msg)
        if msg.retain:
            self._retained.keep(msg, time.time())
        self.stats.dropped += self.spool.add(msg)
        self._wakeup.set()

    @property
    def spool_depth(self) -> int:
        return len(self.spool)

    @property
    def spool_bytes(self) -> int:
        return self.spool.bytes

    def _inflight(self) -> int:
        # gmqtt keeps unacknowledged QoS 1/2 packets in its persistent storage until PUBACK/PUBCOMP.
        return self._storage.count()

    def _window(self) -> int:
        handler = getattr(self._client, "_connection", None)
        limit = self.options.max_inflight
        props = getattr(getattr(handler, "_handler", None), "_connack_properties", None) or {}
        receive_max = props.get("receive_maximum") if isinstance(props, dict) else None
        if receive_max:
            limit = min(limit, int(receive_max[0]) - 1)
        return max(1, limit)

    def _write_buffer_full(self) -> bool:
        transport = getattr(getattr(self._client, "_connection", None), "_transport", None)
        return transport is not None and transport.get_write_buffer_size() > 1024 * 1024

    async def _sender_loop(self) -> None:
        while True:
            await self._connected.wait()
            sent = self._send_ready()
            if not sent:
                self._wakeup.clear()
                if len(self.spool) or self._retained_dirty:
                    await asyncio.sleep(0.005)  # window or buffer full: let acks arrive
                else:
                    await self._wakeup.wait()

    def _send_ready(self) -> bool:
        """Send as much as the window allows; return whether anything went out."""
        sent = False
        window = self._window()
        while self._client.is_connected and not self._write_buffer_full():
            replay = bool(self._retained_dirty)  # retained state re-sent after a reconnect
            if replay:
                entry: Entry | None = self._retained.entry(next(iter(self._retained_dirty)))
            else:
                entry = self.spool.head()
            if entry is None:
                break
            msg = entry.msg
            if msg.qos > 0 and self._inflight() >= window:
                break
            properties = entry.live_properties(time.time())
            if properties is None:  # expired while it waited: nobody may read it now
                self._take(entry, replay)
                if not replay:
                    self.spool.done(entry)
                continue
            try:
                self._client.publish(
                    msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, **properties
                )
            except (OverflowError, ConnectionError, OSError) as e:
                _log.debug("publish deferred: %s", e)
                break
            self._take(entry, replay)
            if msg.qos > 0:  # counted as published once the broker accepts it
                self.delivery.sent(self._storage.last_mid, msg)
                if not replay:
                    self._sending[self._storage.last_mid] = entry
            else:
                self.stats.published += 1
                self.stats.published_bytes += len(msg.payload)
                self.spool.done(entry)
            if not replay and msg.origin is not None:
                self.stats.latency.observe(time.monotonic() - msg.origin)
            sent = True
        return sent

    def _take(self, entry: Entry, replay: bool) -> None:
        if replay:
            self._retained_dirty.discard(entry.msg.topic)
        else:
            self.spool.pop()

    async def _housekeeping(self) -> None:
        """Delete acknowledged messages from a disk spool in batches, and offer the latest
        retained state of refused topics again now and then."""
        next_retry = time.monotonic() + REFUSED_RETRY_S
        while True:
            await asyncio.sleep(_FLUSH_S)
            self.spool.flush()
            if time.monotonic() < next_retry:
                continue
            next_retry += REFUSED_RETRY_S
            refused = {r.topic for r in self.delivery.refusals} & self._retained.topics()
            if refused and self._connected.is_set():
                self._retained_dirty.update(refused)
                self._wakeup.set()

    # ---------------------------------------------------------------------------- subscribing

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now and after every reconnect."""
        if problem := topic_problem(topic_filter, wildcards=True):
            raise ValueError(f"cannot subscribe to {reprlib.repr(topic_filter)}: {problem}")
        self._subscriptions[topic_filter] = (qos, handler)
        if self._client.is_connected:
            self._client.subscribe(topic_filter, qos=qos)

    def _handle_message(
        self, _client: Any, topic: str, payload: bytes, _qos: int, properties: dict[str, Any]
    ) -> int:
        called: set[int] = set()
        for topic_filter, (_q, handler) in self._subscriptions.items():
            if topic_matches(topic_filter, topic) and id(handler) not in called:
                called.add(id(handler))  # one call per handler, however many filters match
                result = handler(topic, payload, dict(properties))
                if asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_task_error)
        return 0

    # ---------------------------------------------------------------------------- connection

    async def _connection_loop(self) -> None:
        backoff = Backoff(self.options.reconnect_max_s)
        failures = 0
        o = self.options
        while not self._closing:
            try:
                await self._connect_once()
            except MqttError as e:
                failures += 1
                self._failure = e
                if e.permanent or 0 < o.connect_attempts <= failures:
                    self._gave_up.set()
                level = logging.WARNING if failures == 1 else logging.INFO
                if e.permanent:
                    level = logging.ERROR if self.fatal.failed(e) else logging.DEBUG
                else:
                    self.fatal.end()
                if o.connect_attempts and not self._ever_connected:
                    level = logging.DEBUG  # the caller gets the error from wait_connected
                _log.log(level, "%s", e)
                await self._quiet_disconnect()
                await asyncio.sleep(backoff.next_delay())
                continue
            failures = 0
            self._failure = None
            self.fatal.end()
            self._gave_up.clear()
            up_since = time.monotonic()
            await self._lost.wait()
            if self._closing:
                return
            self.stats.reconnects += 1
            _log.warning(
                "MQTT connection to %s:%d lost%s; reconnecting",
                o.host,
                o.port,
                self._disconnect_text(),
            )
            await self._quiet_disconnect()
            if time.monotonic() - up_since >= STABLE_S:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _connect_once(self) -> None:
        """Connect, or raise MqttError saying why not.

        gmqtt's ``connect()`` waits for a CONNACK that never comes when the broker closes the
        connection first (a refused client certificate under TLS 1.3 arrives after the
        handshake): the loss is raced against it, and its cause read from the transport.
        """
        o = self.options
        # Cleared before connecting, never after: gmqtt's connect() returns normally when
        # the connection drops while it waits for the replayed QoS packets to be
        # acknowledged, and on_disconnect has already reported that loss.
        self._lost.clear()
        self._connack_seen = False
        self._disconnect_reason = None
        self._stalled = None
        try:
            ssl_context = o.tls.context()
        except (OSError, ValueError) as e:
            raise self._connect_error(describe_tls_files(e), permanent=True) from None
        connect = asyncio.ensure_future(
            self._client.connect(
                o.host,
                o.port,
                ssl=ssl_context,
                keepalive=o.keepalive_s,
                version=MQTTv50 if o.protocol == "5" else MQTTv311,
            )
        )
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait(
                {connect, lost}, timeout=o.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the session stops
            connect.cancel()
            raise
        finally:
            lost.cancel()
        if connect.done():
            error = connect.exception()
        elif self._connack_seen:  # lost while gmqtt waits for replayed packets: handled later
            connect.cancel()
            return
        else:
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connect
            error = loss_cause(self._client) if lost.done() else TimeoutError()
            if error is None:
                error = ConnectionResetError("the broker closed the connection")
        if error is None:
            return
        if not isinstance(error, (OSError, TimeoutError, MQTTError)):
            raise error
        reason, permanent = describe_failure(error, o)
        raise self._connect_error(reason, permanent=permanent)

    def _connect_error(self, reason: str, *, permanent: bool) -> MqttError:
        o = self.options
        return MqttError(f"MQTT connect to {o.host}:{o.port} failed: {reason}", permanent=permanent)

    def _disconnect_text(self) -> str:
        """Why the connection was lost, for the log line: the reason code of the broker's
        DISCONNECT by name (MQTT 5), else the transport's error, else the likely cause of a
        silent close (Mosquitto before 2.0.15 closes a taken-over session without 0x8E)."""
        if self._stalled is not None:
            return f" ({self._stalled})"
        code = self._disconnect_reason
        same_id = f"the same client id {self.options.client_id!r}"
        if code == 0x8E:
            return (
                f" (the broker sent DISCONNECT {reason_name(code)}, 0x8E: another client "
                f"connected with {same_id}; give each client its own client id)"
            )
        if code is not None:
            return f" (the broker sent DISCONNECT {reason_name(code)}, 0x{code:02X})"
        cause = loss_cause(self._client)
        if cause is not None:
            return f" ({type(cause).__name__}: {cause})"
        return (
            " (the broker closed it without a reason; if this repeats, another client probably "
            f"connects with {same_id})"
        )

    def _note_stall(self, silence: float, keepalive: float) -> None:
        self._stalled = (
            f"stalled: nothing from the broker for {silence:.1f} s, twice the keep-alive of "
            f"{keepalive:g} s, so the connection was dropped"
        )

    async def _quiet_disconnect(self) -> None:
        # The connection is already broken; closing it can only re-raise the same failure.
        with contextlib.suppress(OSError, MQTTError, AttributeError):
            await self._client._disconnect()

    def _handle_connect(self, _client: Any, _flags: int, rc: int, _properties: Any) -> None:
        if rc != 0:
            return
        self._connack_seen = True
        _log.info("MQTT connected to %s:%d", self.options.host, self.options.port)
        lost = self.delivery.keep_only(mid for mid, _ in self._storage.get_all())
        if lost:
            self.spool.requeue(e for mid in lost if (e := self._sending.pop(mid, None)))
            _log.warning(
                "MQTT broker kept no session: %d messages sent but not acknowledged before "
                "the connection was lost are sent again",
                len(lost),
            )
        for topic_filter, (qos, _handler) in self._subscriptions.items():
            self._client.subscribe(topic_filter, qos=qos)
        if self._ever_connected:  # the broker may have lost retained state while we were away
            self._retained_dirty.update(self._retained.topics())
        self._ever_connected = True
        self._set_connected(True)
        self._wakeup.set()

    def _handle_disconnect(self, _client: Any, packet: Any = None, _exc: Any = None) -> None:
        # A DISCONNECT the broker sent carries its reason code first (MQTT 5); the one gmqtt
        # makes up for a closed connection is empty.
        if isinstance(packet, bytes) and packet and self._disconnect_reason is None:
            self._disconnect_reason = packet[0]
        self._set_connected(False)
        self._lost.set()

    def _set_connected(self, up: bool) -> None:
        if up == self.stats.connected:
            return
        self.stats.connected = up
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        if self._on_connection_change is not None:
            self._on_connection_change(up)


def _check_sendable(msg: Outgoing) -> None:
    """Raise ValueError for a topic, or a text property such as the Response Topic, that the
    broker would refuse. (Mosquitto passes on a Response Topic with wildcards, so only the
    rules of any MQTT string apply to properties.)"""
    if problem := topic_problem(msg.topic):
        raise ValueError(f"cannot publish to {reprlib.repr(msg.topic)}: {problem}")
    for name, value in msg.properties.items():
        if isinstance(value, str) and (problem := string_problem(value)):
            raise ValueError(f"cannot publish with {name} {reprlib.repr(value)}: {problem}")


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("MQTT message handler failed", exc_info=task.exception())

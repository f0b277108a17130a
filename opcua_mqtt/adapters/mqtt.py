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
  the broker is away wait in a bounded spool here (oldest data dropped first, counted and logged).
* That replay makes a packet the broker refuses a poison: Mosquitto drops the connection, and
  again after every reconnect. Topics it would refuse are therefore refused here, before they
  reach the spool; and a connection dropped again and again soon after connecting reconnects
  with growing back-off instead of five times a second.

Retained state (metadata, status, connection) travels in the same FIFO as data, so a new
metadata message is on the wire before the data it describes; the latest payload per retained
topic is also kept and re-sent first after every reconnect (a broker may have lost it). Retained
messages are never dropped from the spool.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import reprlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTError

from opcua_mqtt.core.topics import string_problem, topic_problem

_log = logging.getLogger(__name__)

NO_RECONNECT = -2  # gmqtt: any negative value but -1 disables its reconnect logic
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: A connection that stayed up this long resets the back-off; one lost sooner (a broker that
#: drops every new connection, another client with the same client id) keeps doubling it.
STABLE_S = MAX_BACKOFF_S


class MqttError(Exception):
    """A connection problem worth one clear line in the log or on the terminal."""


@dataclass(frozen=True)
class TlsOptions:
    enabled: bool = True
    ca: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext | bool:
        """The SSLContext for gmqtt, or False for plain TCP (never the default)."""
        if not self.enabled:
            return False
        ctx = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.certificate:
            ctx.load_cert_chain(self.certificate, self.private_key)
        return ctx


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int = 8883
    client_id: str = "opcua-mqtt"
    protocol: str = "5"  # "5" or "3.1.1"
    tls: TlsOptions = field(default_factory=TlsOptions)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 3600
    max_inflight: int = 64
    spool_messages: int = 100_000
    spool_bytes: int = 256 * 1024 * 1024
    # MQTT 5 Maximum Packet Size sent in CONNECT: the broker drops larger messages for us
    # instead of delivering them into memory (None: no limit beyond the protocol's).
    maximum_packet_size: int | None = None


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() when the oldest value this message carries reached the process; the
    # time from there to the send is observed in PublisherStats.latency.
    origin: float | None = None


#: Upper bounds (seconds) of the latency buckets: from a fast writer group's publishing
#: interval up to a broker outage ridden out in the spool.
LATENCY_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class LatencyHistogram:
    """Bucket counts, read by the metrics collector when scraped: observing a message costs a
    bisect and two additions, no lock (one event loop)."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS_S
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last: +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@dataclass
class PublisherStats:
    published: int = 0
    published_bytes: int = 0
    dropped: int = 0
    reconnects: int = 0  # connections lost (each one starts a reconnect)
    connected: bool = False
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


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
    ) -> None:
        self.options = options
        self.stats = PublisherStats()
        self._spool: collections.deque[Outgoing] = collections.deque()
        self._spool_bytes = 0
        self._retained: dict[str, Outgoing] = {}
        self._retained_dirty: set[str] = set()
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self._on_connection_change = on_connection_change
        self._wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._ever_connected = False
        will_message = None
        if will is not None:
            _check_sendable(will)
            will_message = gmqtt.Message(will.topic, will.payload, qos=will.qos, retain=will.retain)
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
            **props,
        )
        self._client.set_config({"reconnect_retries": NO_RECONNECT, "reconnect_delay": 0})
        if options.username:
            self._client.set_auth_credentials(options.username, options.password)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self, *, wait: bool = False) -> None:
        """Start connecting in the background; with ``wait``, return once connected (or raise)."""
        self._tasks.append(asyncio.create_task(self._connection_loop(), name="mqtt-connection"))
        self._tasks.append(asyncio.create_task(self._sender_loop(), name="mqtt-sender"))
        if wait:
            await self.wait_connected(self.options.connect_timeout_s)

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise MqttError(
                f"no MQTT connection to {self.options.host}:{self.options.port} "
                f"within {timeout:g} s"
            ) from None

    async def stop(self, final: list[Outgoing] | None = None, *, drain_s: float = 5.0) -> None:
        """Send ``final`` (e.g. a Disabled status), drain what is queued within ``drain_s``,
        then disconnect cleanly so the broker does not publish the last will."""
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

    async def _drained(self) -> None:
        while self._spool or self._retained_dirty or self._inflight() > 0:
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------------------- publishing

    def publish(self, msg: Outgoing) -> None:
        """Queue a message. Retained ones replace the previous state of their topic."""
        _check_sendable(msg)
        if msg.retain:
            self._retained[msg.topic] = msg
        self._spool.append(msg)
        self._spool_bytes += len(msg.payload)
        self._enforce_spool_limit()
        self._wakeup.set()

    def _enforce_spool_limit(self) -> None:
        o = self.options
        dropped = 0
        kept: list[Outgoing] = []
        while self._spool and (
            len(self._spool) + len(kept) > o.spool_messages or self._spool_bytes > o.spool_bytes
        ):
            old = self._spool.popleft()
            if old.retain:
                kept.append(old)  # state, not history: never dropped
                continue
            self._spool_bytes -= len(old.payload)
            dropped += 1
        self._spool.extendleft(reversed(kept))
        if dropped:
            if self.stats.dropped == 0 or (self.stats.dropped + dropped) // 1000 > (
                self.stats.dropped // 1000
            ):
                _log.warning(
                    "MQTT spool full (%d messages, %d bytes): dropped the oldest, %d so far",
                    len(self._spool),
                    self._spool_bytes,
                    self.stats.dropped + dropped,
                )
            self.stats.dropped += dropped

    @property
    def spool_depth(self) -> int:
        return len(self._spool)

    @property
    def spool_bytes(self) -> int:
        return self._spool_bytes

    def _inflight(self) -> int:
        # gmqtt keeps unacknowledged QoS 1/2 packets in its persistent storage until PUBACK/PUBCOMP.
        return len(self._client._persistent_storage._messages)

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
                if self._spool or self._retained_dirty:
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
                msg = self._retained[next(iter(self._retained_dirty))]
            elif self._spool:
                msg = self._spool[0]
            else:
                break
            if msg.qos > 0 and self._inflight() >= window:
                break
            try:
                self._client.publish(
                    msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, **msg.properties
                )
            except (OverflowError, ConnectionError, OSError) as e:
                _log.debug("publish deferred: %s", e)
                break
            if replay:
                self._retained_dirty.discard(msg.topic)
            else:
                self._spool.popleft()
                self._spool_bytes -= len(msg.payload)
                if msg.origin is not None:
                    self.stats.latency.observe(time.monotonic() - msg.origin)
            self.stats.published += 1
            self.stats.published_bytes += len(msg.payload)
            sent = True
        return sent

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
        backoff = MIN_BACKOFF_S
        first = True
        o = self.options
        version = MQTTv50 if o.protocol == "5" else MQTTv311
        while not self._closing:
            # Cleared before connecting, never after: gmqtt's connect() returns normally when
            # the connection drops while it waits for the replayed QoS packets to be
            # acknowledged, and on_disconnect has already reported that loss.
            self._lost.clear()
            try:
                await asyncio.wait_for(
                    self._client.connect(
                        o.host,
                        o.port,
                        ssl=o.tls.context(),
                        keepalive=o.keepalive_s,
                        version=version,
                    ),
                    o.connect_timeout_s,
                )
            except (OSError, TimeoutError, MQTTError) as e:
                reason = _describe(e, o)
                if first:
                    _log.warning("MQTT connect to %s:%d failed: %s", o.host, o.port, reason)
                else:
                    _log.info("MQTT reconnect to %s:%d failed: %s", o.host, o.port, reason)
                first = False
                await self._quiet_disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            first = False
            up_since = time.monotonic()
            await self._lost.wait()
            if self._closing:
                return
            self.stats.reconnects += 1
            _log.warning("MQTT connection to %s:%d lost; reconnecting", o.host, o.port)
            await self._quiet_disconnect()
            if time.monotonic() - up_since >= STABLE_S:
                backoff = MIN_BACKOFF_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _quiet_disconnect(self) -> None:
        # The connection is already broken; closing it can only re-raise the same failure.
        with contextlib.suppress(OSError, MQTTError, AttributeError):
            await self._client._disconnect()

    def _handle_connect(self, _client: Any, _flags: int, rc: int, _properties: Any) -> None:
        if rc != 0:
            return
        _log.info("MQTT connected to %s:%d", self.options.host, self.options.port)
        for topic_filter, (qos, _handler) in self._subscriptions.items():
            self._client.subscribe(topic_filter, qos=qos)
        if self._ever_connected:  # the broker may have lost retained state while we were away
            self._retained_dirty.update(self._retained)
        self._ever_connected = True
        self._set_connected(True)
        self._wakeup.set()

    def _handle_disconnect(self, _client: Any, _packet: Any = None, _exc: Any = None) -> None:
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


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (MQTT 5 §4.7): ``+`` one level, ``#`` the rest."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return not (i == 0 and topic.startswith("$"))
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
        if f == "+" and i == 0 and topic.startswith("$"):
            return False
    return len(f_levels) == len(t_levels)


def _check_sendable(msg: Outgoing) -> None:
    """Raise ValueError for a topic, or a text property such as the Response Topic, that the
    broker would refuse. (Mosquitto passes on a Response Topic with wildcards, so only the
    rules of any MQTT string apply to properties.)"""
    if problem := topic_problem(msg.topic):
        raise ValueError(f"cannot publish to {reprlib.repr(msg.topic)}: {problem}")
    for name, value in msg.properties.items():
        if isinstance(value, str) and (problem := string_problem(value)):
            raise ValueError(f"cannot publish with {name} {reprlib.repr(value)}: {problem}")


def _describe(e: BaseException, o: MqttOptions) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the broker's certificate is not trusted ({e.verify_message}); check tls.ca"
    if isinstance(e, TimeoutError):
        return (
            f"no answer within {o.connect_timeout_s:g} s (with mutual TLS this is how a broker "
            "refuses a missing or untrusted client certificate)"
        )
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: is the broker running on that port?"
    if isinstance(e, MQTTError):
        return f"the broker refused the connection ({e}); check user name, password and ACL"
    return f"{type(e).__name__}: {e}"


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("MQTT message handler failed", exc_info=task.exception())

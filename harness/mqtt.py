"""A small gmqtt test client whose every wait is bounded and which never reconnects on its own.

gmqtt pitfalls this wrapper works around (gmqtt 0.8.0, measured against Mosquitto 2.0.11):

* ``reconnect_retries=0`` does not disable reconnects: gmqtt reconnects while
  ``failed_connections <= reconnect_retries``, so 0 still allows one, and a connection that the
  broker drops after the TLS handshake completed never counts as failed at all. With TLS 1.3 a
  broker refuses a missing or untrusted client certificate only after the client considers the
  handshake done, so such a client reconnects forever (every ``reconnect_delay`` seconds, 6 by
  default) and ``connect()`` never returns or raises. Any negative value other than -1
  (unlimited) allows no reconnect at all.
* ``gmqtt.Client(client_id, reconnect_retries=...)`` does not configure the client: extra keyword
  arguments become MQTT CONNECT properties (gmqtt warns and drops unknown ones). Use
  ``set_config``.
* A server certificate that fails verification makes ``connect()`` raise
  ``ssl.SSLCertVerificationError`` right away, with no reconnect.
* After a TLS alert dropped the connection, ``disconnect()`` raises that alert again
  (``ssl.SSLError``) or ``ConnectionResetError``, depending on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import gmqtt

from harness.mosquitto import MosquittoBroker
from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions

#: ``reconnect_retries`` value that makes gmqtt never reconnect (see the module docstring).
NO_RECONNECT = -2


def adapter_options(
    broker: MosquittoBroker,
    client_id: str,
    *,
    ca: Path | None = None,
    client_cert: bool = False,
    **options: Any,
) -> MqttOptions:
    """Options for the product's MQTT adapter as a client of ``broker`` over TLS: trusting
    ``ca`` (the broker's CA unless given), presenting the test client certificate with
    ``client_cert``; ``options`` set any other MqttOptions field."""
    tls = TlsOptions(
        ca=str(ca or broker.ca_cert),
        certificate=str(broker.client_cert) if client_cert else None,
        private_key=str(broker.client_key) if client_cert else None,
    )
    return MqttOptions(host=broker.host, port=broker.port, client_id=client_id, tls=tls, **options)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    properties: dict[str, Any] = field(default_factory=dict)


class MqttProbe:
    """One gmqtt client (MQTT 5) for tests: records connects, drops, SUBACKs and messages."""

    def __init__(self, client_id: str | None = None, *, session_expiry_s: int = 0) -> None:
        """``session_expiry_s`` > 0: a persistent session (Clean Start 0, MQTT 5 Session Expiry
        Interval), so the broker keeps this client's subscriptions and queues its QoS 1/2
        messages while it is away; a new probe with the same ``client_id`` resumes it."""
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:12]}"
        session: dict[str, Any] = {}
        if session_expiry_s > 0:
            session = {"clean_session": False, "session_expiry_interval": session_expiry_s}
        self.client: Any = gmqtt.Client(self.client_id, **session)
        self.client.set_config({"reconnect_retries": NO_RECONNECT, "reconnect_delay": 0})
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.session_present = False  # of the last CONNACK: the broker resumed a session
        self.messages: asyncio.Queue[Received] = asyncio.Queue()
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # gmqtt callbacks --------------------------------------------------------------------------

    def _on_connect(self, _client: Any, flags: int, _rc: int, _properties: Any) -> None:
        self.session_present = bool(flags)
        self.disconnected.clear()
        self.connected.set()

    def _on_disconnect(self, _client: Any, *_args: Any) -> None:
        self.connected.clear()
        self.disconnected.set()

    def _on_message(
        self, _client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        self.messages.put_nowait(Received(topic, payload, qos, dict(properties)))
        return 0  # MQTT 5 reason code "Success" for the PUBACK

    def _on_subscribe(self, _client: Any, mid: int, qos: Any, _properties: Any) -> None:
        waiter = self._subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(list(qos))

    # API --------------------------------------------------------------------------------------

    async def connect(
        self, host: str, port: int, ssl_context: ssl.SSLContext, *, timeout: float = 5.0
    ) -> None:
        """Connect and wait for a successful CONNACK; raises what gmqtt raises, or TimeoutError."""
        await asyncio.wait_for(
            self.client.connect(host, port, ssl=ssl_context, keepalive=10), timeout
        )

    async def subscribe(self, topic: str, qos: int = 1, *, timeout: float = 2.0) -> list[int]:
        """Subscribe and return the granted QoS / reason codes from the SUBACK."""
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        mid = self.client.subscribe(topic, qos=qos)
        self._subacks[mid] = waiter
        return await asyncio.wait_for(waiter, timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, **properties: Any) -> None:
        self.client.publish(topic, payload, qos=qos, **properties)

    async def next_message(self, timeout: float = 2.0) -> Received:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def close(self) -> None:
        """Disconnect and stop for good; safe to call after a failed or refused connect.

        After the broker dropped the link with a TLS alert, gmqtt's ``disconnect()`` re-raises that
        alert (``ssl.SSLError``, or ``ConnectionResetError`` depending on timing): the connection
        is gone either way, which is all a cleanup needs.
        """
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await asyncio.wait_for(self.client.disconnect(), 2.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

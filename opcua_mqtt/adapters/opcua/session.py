"""One OPC UA server connection and what the bridge asks of it.

:class:`OpcUaSession` owns the asyncua client of one connection, its namespace table and codec,
one batcher (batching.py) for every many-operation service, and one set of server-fact caches
(facts.py). A session lives as long as its connection: when asyncua's supervisor finds the
connection gone (closed by the server, or a keep-alive probe unanswered: a stall), the session
says so (:meth:`OpcUaSession.wait_lost`, with the cause) and the bridge opens a new one, which
asks the server anew for what it learns (the server may have restarted with another model).
At the loss the client's publish loop is stopped at once: left running it would log a
traceback every second until the session is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from asyncua import Client, ua
from asyncua.observer import Observer, SubscriptionEvent
from asyncua.ua.uaerrors import UaStatusCodeError

from opcua_mqtt.adapters.opcua.batching import DEFAULT_CONCURRENCY, Batcher, BrowseStats
from opcua_mqtt.adapters.opcua.commands import CommandService
from opcua_mqtt.adapters.opcua.events import EventSink, EventSource
from opcua_mqtt.adapters.opcua.facts import BuiltinTypes, LengthLimits, StringLimits
from opcua_mqtt.adapters.opcua.failures import CONNECTION_LOST, status_name
from opcua_mqtt.adapters.opcua.publish_decoder import install as install_publish_decoder
from opcua_mqtt.adapters.opcua.publish_pipeline import install as install_publish_pipeline
from opcua_mqtt.adapters.opcua.source import Drained, Sink, SubscriptionSource
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

__all__ = ["Connector", "OpcUaSession", "open_session"]

_log = logging.getLogger(__name__)

#: Opens a connection: ``connection.connect(options)``, or an asyncua Client (tests, bench).
Connector = Callable[[], AbstractAsyncContextManager[Client]]

#: States in which requests cannot succeed (asyncua's UaClientState values).
_UNUSABLE = frozenset({"reconnecting", "disconnected", "disconnecting"})
#: Why a connection was lost, by what asyncua's supervisor saw.
_CLOSED = "the server closed the connection"
_STALLED = "no answer to a keep-alive probe: the connection stalled"


class _StateObserver(Observer):  # type: ignore[misc]
    def __init__(self, on_state: Callable[[str], None]) -> None:
        self._on_state = on_state

    def on_state_change(self, state: Any) -> None:
        self._on_state(str(getattr(state, "value", state)))

    def on_subscription_event(self, subscription_id: int | None, event: SubscriptionEvent) -> None:
        if event is not SubscriptionEvent.CREATED:
            _log.info("OPC UA subscription %s %s", subscription_id, getattr(event, "value", event))

    def on_request(self, request_type: str, duration: float, error: BaseException | None) -> None:
        return None

    def on_notification(self, subscription_id: int | None, event_count: int) -> None:
        return None


class OpcUaSession:
    """A connected server: its namespaces, batches, facts and services. Built by
    :func:`open_session`."""

    def __init__(self, client: Client, on_state: Callable[[str], None] | None = None) -> None:
        self._client = client
        self._on_state = on_state
        self.state = "connected"
        self._namespaces: list[str] | None = None
        self._codec = JsonCodec()
        self._batcher: Batcher | None = None
        self._types = BuiltinTypes()
        self._limits = StringLimits()
        self._lost = asyncio.Event()
        self.lost_cause: str | None = None
        client.uaclient.observer = _StateObserver(self._state_changed)
        client.connection_lost_callback = self._supervisor_saw
        # The fast decoder and the second Publish in flight first: the loss detection below
        # must wrap the publish that runs, not be replaced by it.
        install_publish_decoder(client.uaclient.session)
        install_publish_pipeline(client.uaclient.session)
        self._publish = client.uaclient.session.publish
        client.uaclient.session.publish = self._publish_or_lose

    async def _publish_or_lose(self, acks: list[ua.SubscriptionAcknowledgement]) -> Any:
        """asyncua's Publish, except that a fault saying the session is gone (a server shutting
        down closes its sessions before the connections) loses the connection at once instead
        of feeding the publish loop a traceback a second until the socket closes too."""
        try:
            return await self._publish(acks)
        except Exception as e:
            if self.state != "connected":
                # The connection is lost (the socket closed, failing every request in flight, or
                # the other Publish in flight failed first): end this loop as the cancellation
                # of the session's publishing does, not with asyncua's "Publish iteration
                # crashed" traceback a loop turn before that cancellation arrives.
                raise asyncio.CancelledError from e
            if not isinstance(e, UaStatusCodeError) or e.code not in CONNECTION_LOST:
                raise
            self.lost_cause = f"the server ended the session ({status_name(e.code)})"
            self._client.uaclient.notify_transport_lost()  # cancels this task (_state_changed)
            await asyncio.sleep(0)
            raise

    async def _supervisor_saw(self, exc: Exception) -> None:
        """asyncua's supervisor found the connection lost (before it marks it so, except when
        the socket closed: then the state changed first)."""
        if self.lost_cause is None:
            if isinstance(exc, TimeoutError):
                self.lost_cause = _STALLED
            elif isinstance(exc, UaStatusCodeError):
                self.lost_cause = f"the keep-alive probe failed: {status_name(exc.code)}"

    def _state_changed(self, state: str) -> None:
        was, self.state = self.state, state
        if state == "disconnected" and was == "connected":  # a close of ours goes step by step
            self.lost_cause = self.lost_cause or _CLOSED
            publishing = self._client.uaclient.session._publish_task
            if publishing is not None:
                publishing.cancel()
            self._lost.set()
        if self._on_state is not None:
            self._on_state(state)

    @property
    def endpoint(self) -> str:
        """The server's endpoint URL."""
        return str(self._client.server_url.geturl())

    async def wait_lost(self) -> str:
        """Return, with its cause, once the connection is lost."""
        await self._lost.wait()
        return self.lost_cause or _CLOSED

    @property
    def usable(self) -> bool:
        """Whether requests can succeed now (not while asyncua reconnects)."""
        return self.state not in _UNUSABLE

    async def _learn(self) -> Batcher:
        """The batcher, sized by the server's limits, and the namespace table; asked once per
        established session."""
        if self._namespaces is None or self._batcher is None:
            batcher = Batcher(self._client, BrowseStats(), DEFAULT_CONCURRENCY)
            await batcher.ask_limits()
            namespaces = [str(u) for u in await self._client.get_namespace_array()]
            self._batcher, self._namespaces = batcher, namespaces
            self._codec = JsonCodec(namespaces=NamespaceTable(namespaces))
        return self._batcher

    async def codec(self) -> JsonCodec:
        """The codec of the server's namespace table (NodeId strings with ``nsu=`` resolve)."""
        await self._learn()
        return self._codec

    @property
    def namespaces(self) -> list[str]:
        """The namespace table as last read (empty before the first question)."""
        return list(self._namespaces or ())

    # ---------------------------------------------------------------- services
    async def read(self, items: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        """Read ``items`` in batches within the server's limits; a DataValue per item."""
        return await (await self._learn()).read(items)

    async def read_attribute(
        self, node_ids: Sequence[ua.NodeId], attribute: ua.AttributeIds
    ) -> list[ua.DataValue]:
        """One attribute of each of ``node_ids``, batched."""
        return await self.read([ua.ReadValueId(NodeId=n, AttributeId=attribute) for n in node_ids])

    async def attributes(self, node_id: ua.NodeId, *attributes: ua.AttributeIds) -> list[Any]:
        """The values of ``attributes`` of one node in one Read; a Bad status raises
        :class:`UaStatusCodeError`, as asyncua's ``Node.read_*`` do."""
        values = await self.read(
            [ua.ReadValueId(NodeId=node_id, AttributeId=a) for a in attributes]
        )
        for dv in values:
            if dv.StatusCode is not None:
                dv.StatusCode.check()
        return [dv.Value.Value if dv.Value is not None else None for dv in values]

    async def write(self, values: Sequence[ua.WriteValue]) -> list[ua.StatusCode]:
        """Write ``values`` in batches within the server's limits; a status per value."""
        return await (await self._learn()).write(values)

    async def builtin_types(self, data_types: Iterable[ua.NodeId]) -> dict[ua.NodeId, int]:
        """The built-in type behind each DataType (Variant where none), remembered."""
        return await self._types.of(self._client, data_types, await self._learn())

    async def string_limits(self, nodes: Mapping[ua.NodeId, int]) -> dict[ua.NodeId, LengthLimits]:
        """The String/ByteString length limits of ``nodes`` (NodeId -> built-in type)."""
        return await self._limits.of(self._client, nodes)

    async def subscriptions(self, sink: Sink, drained: Drained | None = None) -> SubscriptionSource:
        """A source of monitored items that hands values to ``sink`` (close it when done); with
        ``drained``, the next Publish request waits for it."""
        batcher = await self._learn()
        # The supervisor's probe interval (connection.py sets it to the keep-alive).
        keep_alive_s = float(self._client._watchdog_intervall)
        return SubscriptionSource(
            self._client,
            sink,
            batcher=batcher,
            codec=self._codec,
            keep_alive_s=keep_alive_s,
            drained=drained,
        )

    def commands(self) -> CommandService:
        """What commands ask of the server, and the Call service (adapters/opcua/commands.py)."""
        return CommandService(self._client)

    async def event_source(self, sink: EventSink) -> EventSource:
        """A source of events (adapters/opcua/events.py) that hands them to ``sink``."""
        await self._learn()
        return EventSource(self._client, self._codec, sink)


@contextlib.asynccontextmanager
async def open_session(
    connector: Connector, on_state: Callable[[str], None] | None = None
) -> AsyncIterator[OpcUaSession]:
    """Connect with ``connector`` and yield the session; ``on_state`` hears every later change
    of the connection's state (asyncua's names: "reconnecting", "connected", ...)."""
    async with connector() as client:
        session = OpcUaSession(client, on_state)
        await session._learn()
        yield session

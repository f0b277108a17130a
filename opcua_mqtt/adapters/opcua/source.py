"""The OPC UA side of the bridge: monitored items in subscriptions, notifications as batches.

Measured pitfalls of asyncua 2.1 this module is shaped by (see shared/DESIGN.md):

* the handler style starts one asyncio task per notification (about 10 µs each) and the
  iterator style drops the oldest entries past 1,000: neither fits a gateway. A Subscription
  subclass hands each Publish response's DataChangeNotification to the sink in synchronous
  calls (one per part of a few hundred values, in order), so nothing is queued or dropped
  between asyncua and the writer groups;
* the server turns a requested queue size of 0 into 10,000: the configured size is always sent;
* decoding Publish responses was most of the bridge's CPU: publish_decoder.py decodes them;
* monitored items are created in batches within the server's MaxMonitoredItemsPerCall (the
  session's batcher, halving a batch the server finds too large);
* asyncua logs "Received data for unknown subscription" for the first keep-alive of each
  subscription created while its publish loop runs (see :class:`_EarlyKeepAlives`): that
  warning is held during CreateSubscription and dropped when it names the new subscription.

A lost connection ends the session (session.py); the bridge monitors its fields anew on the
next one. asyncua's stale-subscription check re-creates a subscription silent for 1.5 x its
keep-alive over the same connection, which cannot help on a stalled one: the subscriptions'
keep-alive is at least twice the session's keep-alive probe interval, so the probe (which drops
the connection) always comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import Subscription
from asyncua.common.utils import ServiceError
from asyncua.observer import SubscriptionEvent

from opcua_mqtt.adapters.opcua.batching import DEFAULT_CONCURRENCY, Batcher, BrowseStats
from opcua_mqtt.adapters.opcua.decoding import checked, undecodable_reason
from opcua_mqtt.adapters.opcua.publish_decoder import PART
from opcua_mqtt.adapters.opcua.publish_decoder import install as install_publish_decoder
from opcua_mqtt.adapters.opcua.publish_pipeline import install as install_publish_pipeline
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.field_key import FieldKey
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

_log = logging.getLogger(__name__)

# (key, DataValue) pairs from one Publish response (or one part of a large one), in the order the
# server sent them.
Sink = Callable[[list[tuple[FieldKey, ua.DataValue]]], None]
# Returns once the sink's consumer has taken what it was given: only then is the next Publish
# request sent (see _BatchSubscription.publish_callback).
Drained = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MonitoredField:
    """One node to monitor; ``key`` is how its values are routed back to their field. The
    source keeps it as the monitored item's route (100,000 in a large bridge: slots, and no
    string of its own: ``label`` is its writer's, shared by the writer's fields)."""

    key: FieldKey
    node_id: str  # 1.05 string form, namespace URI (``nsu=``) preferred
    label: str  # how logs name the field's writer, e.g. ``Group/Writer`` (the field's name follows)
    sampling_interval_ms: float
    queue_size: int = 10
    deadband_type: str = "none"  # none | absolute | percent
    deadband_value: float = 0.0


#: The longest a Publish request waits for the sink's consumer (_BatchSubscription).
DRAIN_WAIT_S = 1.0

# asyncua's warning for a Publish response whose subscription it has not registered.
_UNKNOWN_SUBSCRIPTION = "Received data for unknown subscription"


class _EarlyKeepAlives(logging.Filter):
    """Holds asyncua's "unknown subscription" warnings while a subscription is being created.

    The asyncua server answers a new subscription's first Publish at once: an empty keep-alive
    (no monitored items yet), in the same TCP read as the CreateSubscription response. The
    client's publish loop awaits its response directly, the CreateSubscription caller through
    a wait_for task (wait_for2, Python < 3.12), so the keep-alive is looked up before the new
    subscription is registered: a WARNING for each subscription after the first. Nothing is
    lost (data needs monitored items, created after the registration): a warning naming the
    new subscription is dropped; any other is logged, as it may be a lost notification.
    """

    def __init__(self) -> None:
        super().__init__()
        self.creating = 0
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.creating and str(record.msg).startswith(_UNKNOWN_SUBSCRIPTION):
            self.held.append(record)
            return False
        return True

    def release(self, subscription_id: int | None) -> None:
        """Drop the held warnings about ``subscription_id``; log the others after all."""
        held, self.held = self.held, []
        for record in held:
            if isinstance(record.args, tuple) and record.args[:1] == (subscription_id,):
                _log.debug(
                    "first keep-alive of subscription %s came before its registration",
                    subscription_id,
                )
            else:
                logging.getLogger(record.name).handle(record)


_early_keep_alives = _EarlyKeepAlives()


#: Creates the monitored items of these client handles (anew) in a subscription; returns
#: per item its MonitoredItemId or the StatusCode the server refused it with.
ItemCreator = Callable[["_BatchSubscription", Sequence[int]], Awaitable[list[object]]]


class _BatchSubscription(Subscription):  # type: ignore[misc]
    """A Subscription that delivers each DataChangeNotification as one list.

    asyncua keeps a SubscriptionItemData with a Node per monitored item (about 450 B each,
    45 MB at 100,000 items) only to route notifications, which the routes do here, and to
    re-create the items in :meth:`recreate`: this subscription keeps its client handles
    instead and creates the items again from their routes.
    """

    def __init__(
        self,
        *args: Any,
        sink: Sink,
        routes: list[MonitoredField | None],
        drained: Drained | None,
        create_items: ItemCreator,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._sink = sink
        self._routes = routes  # by client handle: the field its values go to (None: refused)
        # client handles whose last value was undecodable (each run is logged once)
        self._undecodable: set[int] = set()
        self._drained = drained
        self._create_items = create_items
        self._delivering = asyncio.Lock()  # one response's parts at a time (publish_callback)
        # Whether an item may have several values in one response (a queue size above 1).
        self.queued = False
        self.handles = range(0)  # client handles of this subscription's monitored items

    async def create_monitored_items(
        self, monitored_items: Iterable[ua.MonitoredItemCreateRequest]
    ) -> list[object]:
        """asyncua's CreateMonitoredItems without its per-item records (the class docstring):
        a MonitoredItemId per item created, the StatusCode of each one refused."""
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=self.subscription_id,
            ItemsToCreate=list(monitored_items),
            TimestampsToReturn=ua.TimestampsToReturn.Both,
        )
        try:
            results = await self.server.create_monitored_items(params)
        except ServiceError as e:  # as asyncua's: the batcher halves on BadTooManyOperations
            raise ua.UaStatusCodeError(e.code) from None
        return [r.MonitoredItemId if r.StatusCode.is_good() else r.StatusCode for r in results]

    async def recreate(self) -> None:
        """asyncua's stale-subscription watchdog: a new subscription (asyncua's recreate, which
        finds no items of its own), then every monitored item of this one again."""
        await super().recreate()
        if self._deleted or not self.handles:
            return
        results = await self._create_items(self, self.handles)
        refused = sum(isinstance(r, ua.StatusCode) for r in results)
        if refused:
            _log.warning(
                "OPC UA subscription %s re-created: the server refused %d of its %d monitored "
                "items",
                self.subscription_id,
                refused,
                len(results),
            )

    async def _create(self, event: SubscriptionEvent) -> ua.CreateSubscriptionResult:
        # asyncua's one CreateSubscription call, for init() and for recreate() on reconnect.
        _early_keep_alives.creating += 1
        try:
            return await super()._create(event)
        finally:
            _early_keep_alives.creating -= 1
            _early_keep_alives.release(self.subscription_id)

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        # Acquired before the first pause: responses decoded one after the other (in the order
        # they arrived, publish_decoder.py) are delivered one after the other too.
        async with self._delivering:
            delivered = await self._deliver(message.NotificationData)
        if delivered and self._drained is not None:  # every part delivered, in order
            await _wait_drained(self._drained)

    async def _deliver(self, notifications: list[Any]) -> bool:
        """Hand the data changes to the sink in parts of :data:`PART` values, pausing for the
        event loop between parts (a response of thousands of values is not one long callback);
        return whether anything was delivered.

        The sink keeps the newest value per field and counts a value replaced by a later
        batch as shed (overload), one replaced within its batch as the server's queue (a queue
        size above 1). So that the parts of one response do not turn the latter into the
        former, a response split into parts of a subscription with such queues has its items
        reduced to the newest per monitored item first (in the place of the first: the sink's
        order is first-pending anyway)."""
        delivered = False
        routes = self._routes
        for notification in notifications:
            if isinstance(notification, ua.DataChangeNotification):
                items = notification.MonitoredItems
                if self.queued and len(items) > PART:
                    items = list({item.ClientHandle: item for item in items}.values())
                # asyncua's publish loop holds the response until the next one arrives: without
                # its items (only the values go on), ~25,000 of them per source at 100,000 fields
                notification.MonitoredItems = []
                for start in range(0, len(items), PART):
                    if delivered:
                        await asyncio.sleep(0)
                    batch = []
                    for item in items[start : start + PART]:
                        try:
                            route = routes[item.ClientHandle]
                        except IndexError:  # not a handle of ours
                            continue
                        if route is not None:
                            batch.append((route.key, _decoded(self._undecodable, item, route)))
                    if batch:
                        self._sink(batch)
                        delivered = True
            elif isinstance(notification, ua.StatusChangeNotification):
                # BadShutdown: the connection is gone, which the bridge reports once itself.
                shutdown = notification.Status.value == ua.StatusCodes.BadShutdown
                _log.log(
                    logging.DEBUG if shutdown else logging.WARNING,
                    "OPC UA subscription %s status: %s",
                    self.subscription_id,
                    notification.Status.name,
                )
        return delivered


def _decoded(
    undecodable: set[int], item: ua.MonitoredItemNotification, route: MonitoredField
) -> ua.DataValue:
    """The item's value, or BadDecodingError for a value asyncua could not decode
    (decoding.py); the first of a run of such values is logged, naming the field.
    ``undecodable``: the client handles whose last value was undecodable."""
    dv = item.Value
    reason = undecodable_reason(dv)
    if reason is None:
        if undecodable:
            undecodable.discard(item.ClientHandle)
        return dv
    if item.ClientHandle not in undecodable:
        undecodable.add(item.ClientHandle)
        _log.warning(
            "%s/%s (%s): value cannot be decoded (%s): BadDecodingError",
            route.label,
            route.key.field,
            route.node_id,
            reason,
        )
    return checked(dv)


async def _wait_drained(drained: Drained) -> None:
    """asyncua's publish loop sends its next Publish request when the callback returns:
    while the sink's consumer is behind, the server keeps the newest value per item (queue
    size 1) instead of the bridge decoding values it would shed. At most
    :data:`DRAIN_WAIT_S`, so that Publish requests keep going out (asyncua re-creates a
    subscription silent for 1.5 keep-alive periods)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drained(), DRAIN_WAIT_S)


class SubscriptionSource:
    """Monitors fields on one connected client and feeds their values to ``sink`` in batches.

    The session (session.py) hands over its batcher and codec; alone, the source asks the
    server for its namespaces and limits itself, once.
    """

    def __init__(
        self,
        client: Client,
        sink: Sink,
        *,
        batcher: Batcher | None = None,
        codec: JsonCodec | None = None,
        max_notifications_per_publish: int = 10_000,
        keep_alive_s: float = 5.0,
        drained: Drained | None = None,
    ) -> None:
        self.client = client
        self._drained = drained
        self._keep_alive_ms = max(10_000.0, 2_000 * keep_alive_s)
        self._sink = sink
        self._subscriptions: list[_BatchSubscription] = []
        # Client handles count from 1 and index this list (not a dict: 100,000 handles cost
        # ~8 MiB as int keys); a refused item's entry is None.
        self._routes: list[MonitoredField | None] = [None]
        self._max_notifications = max_notifications_per_publish
        self._batcher = batcher
        self._codec = codec
        # UaSession's logger (asyncua.client.ua_session); addFilter ignores a second add.
        logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_early_keep_alives)
        # Publish responses were most of the bridge's CPU: decode them the fast way.
        install_publish_decoder(client.uaclient.session)
        install_publish_pipeline(client.uaclient.session)

    async def _namespace_codec(self) -> JsonCodec:
        if self._codec is None:
            namespaces = await self.client.get_namespace_array()
            self._codec = JsonCodec(namespaces=NamespaceTable(namespaces))
        return self._codec

    async def _sized_batcher(self) -> Batcher:
        if self._batcher is None:
            self._batcher = Batcher(self.client, BrowseStats(), DEFAULT_CONCURRENCY)
            await self._batcher.ask_limits()
        return self._batcher

    async def monitor(
        self, publishing_interval_ms: float, fields: Sequence[MonitoredField]
    ) -> dict[FieldKey, ua.StatusCode]:
        """Create one subscription for ``fields``; return the fields the server refused (by
        key, with the reason; the caller reports them, once per episode)."""
        codec = await self._namespace_codec()
        interval = max(publishing_interval_ms, 1)
        keep_alive_count = max(3, math.ceil(self._keep_alive_ms / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing_interval_ms,
            RequestedLifetimeCount=max(30, int(60_000 / interval) * 3, 3 * keep_alive_count),
            RequestedMaxKeepAliveCount=keep_alive_count,
            MaxNotificationsPerPublish=self._max_notifications,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _BatchSubscription(
            self.client.uaclient.session,
            params,
            sink=self._sink,
            routes=self._routes,
            drained=self._drained,
            create_items=self._create_items,
        )
        sub.set_overflow_disconnect_handler(self.client.uaclient.notify_transport_lost)
        await sub.init()
        # Registered with the client so asyncua's reconnect supervisor re-creates it.
        self.client._subscriptions.append(sub)
        self._subscriptions.append(sub)

        refused: dict[FieldKey, ua.StatusCode] = {}
        requests: list[ua.MonitoredItemCreateRequest] = []
        first = len(self._routes)
        for f in fields:
            try:
                node_id = codec.decode_node_id(f.node_id)
            except DecodeError as e:
                refused[f.key] = ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
                _log.debug("%s/%s: node id %r: %s", f.label, f.key.field, f.node_id, e)
                continue
            if node_id.NamespaceIndex == 0 and f.node_id.startswith("nsu="):
                # The server does not know the namespace URI: the node cannot exist there.
                refused[f.key] = ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
                continue
            handle = len(self._routes)
            self._routes.append(f)
            requests.append(self._request(handle, f, node_id))
        sub.handles = range(first, len(self._routes))
        sub.queued = any(f.queue_size > 1 for f in fields)
        results = await self._send(sub, requests)
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, ua.StatusCode):
                handle = request.RequestedParameters.ClientHandle
                route, self._routes[handle] = self._routes[handle], None
                assert route is not None  # routed when its request was made
                refused[route.key] = result
        return refused

    async def _create_items(self, sub: _BatchSubscription, handles: Sequence[int]) -> list[object]:
        """Create the monitored items of ``handles`` in ``sub`` again (see
        :meth:`_BatchSubscription.recreate`); handles no longer routed (refused) are skipped."""
        codec = await self._namespace_codec()
        requests = [
            self._request(h, route, codec.decode_node_id(route.node_id))
            for h in handles
            if (route := self._routes[h]) is not None
        ]
        return await self._send(sub, requests)

    async def _send(
        self, sub: _BatchSubscription, requests: list[ua.MonitoredItemCreateRequest]
    ) -> list[object]:
        """CreateMonitoredItems in batches within the server's MaxMonitoredItemsPerCall."""
        batcher = await self._sized_batcher()
        return await batcher.each(
            batcher.limits.monitored_items, requests, sub.create_monitored_items
        )

    @staticmethod
    def _request(
        handle: int, f: MonitoredField, node_id: ua.NodeId
    ) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=f.sampling_interval_ms,
            QueueSize=max(1, f.queue_size),  # 0 would become 10,000 on an asyncua server
            DiscardOldest=True,
        )
        if f.deadband_type != "none":
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=(
                    ua.DeadbandType.Absolute
                    if f.deadband_type == "absolute"
                    else ua.DeadbandType.Percent
                ),
                DeadbandValue=f.deadband_value,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=params,
        )

    async def close(self) -> None:
        """Delete the subscriptions on the server (a killed client would leave them behind);
        over a lost connection there is no one to ask (the server drops them with the
        session)."""
        connected = self.client.uaclient.state is UaClientState.CONNECTED
        for sub in self._subscriptions:
            try:
                if connected:
                    await sub.delete()
            except (ua.UaError, OSError, TimeoutError) as e:
                _log.info("could not delete subscription %s: %s", sub.subscription_id, e)
            if sub in self.client._subscriptions:
                self.client._subscriptions.remove(sub)
        self._subscriptions.clear()

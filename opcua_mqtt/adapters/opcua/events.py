"""OPC UA events in: EventFilters resolved against the server's type model, one subscription of
event monitored items, and ConditionRefresh after every (re)created subscription.

* Select clauses (Part 4 §7.22.3, §7.7.4.5): a configured path of BrowseNames is looked up from
  the writer's EventType upwards (HasSubtype inverse) to BaseEventType. Each element matches a
  child's BrowseName by name (any namespace: a file holds no namespace index); the clause names
  the most basic type that declares the path's first element, so that an event of another
  type still fills the fields it shares (a server evaluates a clause naming BaseEventType for
  every event). ``ConditionId`` is ConditionType's NodeId attribute (Part 9 §5.5.2, Table 10).
* Where clause: OfType (ORed) and Severity >= n (ANDed), as ContentFilterElements whose first
  element is the root (Part 4 §7.7.1).
* ConditionRefresh (Part 9 §5.5.7) is called with the subscription's id when the subscription
  is created and each time asyncua re-creates it; the server then sends a RefreshStartEvent,
  the retained conditions and a RefreshEndEvent (§5.11.2-3), whatever the where clause says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from opcua_mqtt.core.config.events import EventField, EventWriterConfig
from opcua_mqtt.core.errors import DecodeError, OpcUaMqttError
from opcua_mqtt.core.uajson.codec import JsonCodec

_log = logging.getLogger(__name__)

#: (writer index, the selected fields of one event in select order)
EventSink = Callable[[int, list[ua.Variant]], None]

_BASE_EVENT_TYPE = ua.NodeId(ua.ObjectIds.BaseEventType)
_CONDITION_TYPE = ua.NodeId(ua.ObjectIds.ConditionType)
_PUBLISHING_INTERVAL_MS = 100.0
_NO_SUCH_NOTIFIER = frozenset(
    {
        ua.StatusCodes.BadNodeIdUnknown,
        ua.StatusCodes.BadNodeIdInvalid,
        ua.StatusCodes.BadAttributeIdInvalid,
    }
)


class EventFilterError(OpcUaMqttError):
    """An event writer's notifier, type or select path does not exist in the server's model."""


@dataclass(frozen=True)
class SelectedField:
    """One resolved select clause and what the metadata says of its values."""

    name: str
    operand: ua.SimpleAttributeOperand
    data_type: ua.NodeId
    value_rank: int = -1


@dataclass(frozen=True)
class ResolvedWriter:
    """An event writer as the server's model makes it: its notifier, filter and fields."""

    notifier: ua.NodeId
    filter: ua.EventFilter
    fields: tuple[SelectedField, ...]


class _Model:
    """Browses the type model, remembering each node's children."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._children: dict[ua.NodeId, list[ua.ReferenceDescription]] = {}

    async def children(self, node: ua.NodeId) -> list[ua.ReferenceDescription]:
        if node not in self._children:
            self._children[node] = await self._client.get_node(node).get_children_descriptions(
                refs=ua.ObjectIds.HierarchicalReferences
            )
        return self._children[node]

    async def supertypes(self, event_type: ua.NodeId, label: str) -> list[ua.NodeId]:
        """``event_type`` and its supertypes up to BaseEventType, most derived first."""
        chain = [event_type]
        while chain[-1] != _BASE_EVENT_TYPE:
            refs = await self._client.get_node(chain[-1]).get_references(
                ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse
            )
            if not refs:
                raise EventFilterError(f"{label} is not an EventType (no BaseEventType above it)")
            chain.append(refs[0].NodeId)
            if len(chain) > 64:
                raise EventFilterError(f"{label}: its type hierarchy does not end")
        return chain

    async def child(self, node: ua.NodeId, name: str) -> ua.ReferenceDescription | None:
        found = [r for r in await self.children(node) if r.BrowseName.Name == name]
        found.sort(key=lambda r: r.BrowseName.NamespaceIndex)  # the standard's own first
        return found[0] if found else None


async def resolve_writer(
    client: Client, codec: JsonCodec, writer: EventWriterConfig
) -> ResolvedWriter:
    """The writer's notifier, EventFilter and field descriptions from the server's model;
    EventFilterError naming the writer and what is missing."""
    label = f"event writer {writer.name!r}"
    notifier = _node(codec, writer.notifier, f"{label}: notifier")
    try:
        flags = await client.get_node(notifier).read_event_notifier()
    except ua.UaStatusCodeError as e:
        raise EventFilterError(
            f"{label}: notifier {writer.notifier}: {ua.StatusCode(e.code).name}"
        ) from None
    if ua.EventNotifier.SubscribeToEvents not in flags:
        raise EventFilterError(
            f"{label}: notifier {writer.notifier} is not an event notifier (its EventNotifier "
            "attribute lacks SubscribeToEvents; `opcua-mqtt browse` shows the notifiers)"
        )
    model = _Model(client)
    event_type = _node(codec, writer.event_type, f"{label}: event_type")
    chain = await model.supertypes(event_type, f"{label}: event_type {writer.event_type}")
    fields = [
        await _select(model, client, f, chain, label, writer.event_type) for f in writer.fields
    ]
    clauses = [f.operand for f in fields]
    where = _where(codec, writer, label)
    return ResolvedWriter(
        notifier, ua.EventFilter(SelectClauses=clauses, WhereClause=where), tuple(fields)
    )


async def _select(
    model: _Model,
    client: Client,
    f: EventField,
    chain: list[ua.NodeId],
    label: str,
    type_text: str,
) -> SelectedField:
    if f.is_condition_id:
        return SelectedField(
            f.name,
            ua.SimpleAttributeOperand(
                TypeDefinitionId=_CONDITION_TYPE, BrowsePath=[], AttributeId=ua.AttributeIds.NodeId
            ),
            ua.NodeId(ua.ObjectIds.NodeId),
        )
    for declaring in reversed(chain):  # the most basic type that declares the first element
        ref = await model.child(declaring, f.path[0])
        if ref is None:
            continue
        names = [ref.BrowseName]
        node = ref.NodeId
        for element in f.path[1:]:
            below = await model.child(node, element)
            if below is None:
                raise EventFilterError(
                    f"{label}: select path {f.name!r}: {element!r} is not below "
                    f"{'/'.join(n.Name for n in names)} in the server's type model"
                )
            names.append(below.BrowseName)
            node = below.NodeId
        if ref.NodeClass not in (ua.NodeClass.Variable, ua.NodeClass.Object):
            break
        data_type, rank = ua.NodeId(ua.ObjectIds.BaseDataType), -2
        target = client.get_node(node)
        try:
            data_type = await target.read_data_type()
            rank = await target.read_value_rank()
        except ua.UaStatusCodeError:
            pass  # an Object at the end of the path: its value is whatever the server sends
        return SelectedField(
            f.name,
            ua.SimpleAttributeOperand(
                TypeDefinitionId=declaring, BrowsePath=names, AttributeId=ua.AttributeIds.Value
            ),
            data_type,
            rank,
        )
    raise EventFilterError(
        f"{label}: select path {f.name!r} does not exist in {type_text} or its supertypes "
        "in the server's type model"
    )


def _where(codec: JsonCodec, writer: EventWriterConfig, label: str) -> ua.ContentFilter:
    """(OfType t1 OR OfType t2 ...) AND Severity >= n; element 0 is the root (Part 4 §7.7.1)."""
    leaves = [
        ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.OfType,
            FilterOperands=[
                ua.LiteralOperand(
                    Value=ua.Variant(
                        _node(codec, t, f"{label}: where.of_type {t}"), ua.VariantType.NodeId
                    )
                )
            ],
        )
        for t in writer.of_types
    ]
    severity = None
    if writer.min_severity is not None:
        severity = ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.GreaterThanOrEqual,
            FilterOperands=[
                ua.SimpleAttributeOperand(
                    TypeDefinitionId=_BASE_EVENT_TYPE,
                    BrowsePath=[ua.QualifiedName("Severity")],
                    AttributeId=ua.AttributeIds.Value,
                ),
                ua.LiteralOperand(Value=ua.Variant(writer.min_severity, ua.VariantType.UInt16)),
            ],
        )
    elements: list[ua.ContentFilterElement] = []

    def place(element: ua.ContentFilterElement) -> ua.ElementOperand:
        elements.append(element)
        return ua.ElementOperand(Index=len(elements))  # index 0 is the root, placed last

    def either(items: list[ua.ContentFilterElement]) -> ua.ContentFilterElement:
        if len(items) == 1:
            return items[0]
        return ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.Or,
            FilterOperands=[place(items[0]), place(either(items[1:]))],
        )

    if leaves and severity is not None:
        root = ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.And,
            FilterOperands=[place(either(leaves)), place(severity)],
        )
    elif leaves:
        root = either(leaves)
    elif severity is not None:
        root = severity
    else:
        return ua.ContentFilter(Elements=[])
    return ua.ContentFilter(Elements=[root, *elements])


def _node(codec: JsonCodec, text: str, what: str) -> ua.NodeId:
    try:
        node = codec.decode_node_id(text)
    except DecodeError as e:
        raise EventFilterError(f"{what}: {e}") from None
    if node.NamespaceIndex == 0 and text.startswith("nsu="):
        raise EventFilterError(f"{what}: the server has no namespace {text.split(';')[0][4:]}")
    return node


class _EventSubscription(Subscription):  # type: ignore[misc]
    """Hands each event to the sink synchronously, in the server's order, and refreshes the
    conditions after asyncua re-created the subscription (reconnect)."""

    def __init__(self, *args: Any, source: EventSource, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._source = source

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        message = publish_result.NotificationMessage
        for notification in message.NotificationData or ():
            if isinstance(notification, ua.EventNotificationList):
                for event in notification.Events:
                    self._source.deliver(event)
            elif isinstance(notification, ua.StatusChangeNotification):
                _log.warning(
                    "OPC UA event subscription %s status: %s",
                    self.subscription_id,
                    notification.Status.name,
                )

    async def recreate(self) -> None:
        await super().recreate()
        await self._source.refresh()


class EventSource:
    """One subscription holding the event monitored items of every event writer."""

    def __init__(self, client: Client, codec: JsonCodec, sink: EventSink) -> None:
        self._client = client
        self._codec = codec
        self._sink = sink
        self._routes: dict[int, int] = {}  # client handle -> writer index
        self._refresh: tuple[int, ...] = ()  # client handles whose conditions are refreshed
        self._sub: _EventSubscription | None = None
        self.refreshes = 0  # ConditionRefresh calls the server accepted

    async def resolve(self, writer: EventWriterConfig) -> ResolvedWriter:
        """The writer's filter and fields as the server's model makes them."""
        return await resolve_writer(self._client, self._codec, writer)

    def deliver(self, event: ua.EventFieldList) -> None:
        writer = self._routes.get(event.ClientHandle)
        if writer is None:
            return
        self._sink(writer, list(event.EventFields))

    async def monitor(
        self, writers: Sequence[tuple[ResolvedWriter, int]], *, refresh: Sequence[int]
    ) -> None:
        """Subscribe to every writer's events (``(resolved writer, server queue size)``), then
        refresh the conditions of the writers at the indexes ``refresh``; a refused monitored
        item is an EventFilterError naming its notifier."""
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=_PUBLISHING_INTERVAL_MS,
            RequestedLifetimeCount=600,
            RequestedMaxKeepAliveCount=100,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _EventSubscription(self._client.uaclient.session, params, None, source=self)
        await sub.init()
        self._sub = sub
        self._client._subscriptions.append(sub)  # asyncua's reconnect re-creates it
        requests = []
        for index, (resolved, queue_size) in enumerate(writers):
            handle = index + 1
            self._routes[handle] = index
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(
                        NodeId=resolved.notifier, AttributeId=ua.AttributeIds.EventNotifier
                    ),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=handle,
                        SamplingInterval=0,
                        QueueSize=queue_size,
                        DiscardOldest=True,
                        Filter=resolved.filter,
                    ),
                )
            )
        results = await sub.create_monitored_items(requests)
        for (resolved, _), result in zip(writers, results, strict=True):
            if isinstance(result, ua.StatusCode):
                raise EventFilterError(
                    f"the server refused the event monitored item on {resolved.notifier}: "
                    f"{result.name}"
                )
        self._refresh = tuple(i + 1 for i in refresh)
        await self.refresh()

    async def refresh(self) -> None:
        """Replay the retained conditions: ConditionRefresh for the whole subscription when
        every monitored item wants it (Part 9 §5.5.7), else ConditionRefresh2 per monitored
        item (§5.5.8). A server without Alarms and Conditions answers Bad: logged, harmless."""
        sub = self._sub
        if not self._refresh or sub is None or sub.subscription_id is None:
            return
        sub_id = ua.Variant(sub.subscription_id, ua.VariantType.UInt32)
        if set(self._refresh) == set(self._routes):
            requests = [
                ua.CallMethodRequest(
                    ObjectId=_CONDITION_TYPE,
                    MethodId=ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                    InputArguments=[sub_id],
                )
            ]
        else:
            items = sub._monitored_items
            requests = [
                ua.CallMethodRequest(
                    ObjectId=_CONDITION_TYPE,
                    MethodId=ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh2),
                    InputArguments=[
                        sub_id,
                        ua.Variant(items[handle].server_handle, ua.VariantType.UInt32),
                    ],
                )
                for handle in self._refresh
                if handle in items
            ]
        try:
            results = await self._client.uaclient.call(requests)
        except (ua.UaError, OSError, TimeoutError) as e:
            _log.warning("ConditionRefresh failed: %s", e)
            return
        refused = [r.StatusCode.name for r in results if not r.StatusCode.is_good()]
        if refused:
            _log.warning(
                "the server refused ConditionRefresh: %s (retained conditions are not replayed)",
                ", ".join(sorted(set(refused))),
            )
        else:
            self.refreshes += 1
            _log.info("ConditionRefresh called for subscription %s", sub.subscription_id)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.delete()
        except (ua.UaError, OSError, TimeoutError) as e:
            _log.info("could not delete event subscription %s: %s", sub.subscription_id, e)
        if sub in self._client._subscriptions:
            self._client._subscriptions.remove(sub)

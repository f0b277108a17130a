"""The churn server's direct path (harness/churn_direct.py) against asyncua's own: the same
monitored-item queues and the same bytes on the wire, so that a benchmark using it measures the
same notifications at less of the server's CPU. Real asyncua server objects (address space,
subscription, monitored items), no network."""

from __future__ import annotations

import datetime as dt
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.ua.ua_binary import struct_to_binary

from harness.churn_direct import GOOD, DirectWriter, SharedValue, encode_data_changes

_T0 = dt.datetime(2026, 12, 8, 1, 0, tzinfo=dt.UTC)
_NODES = [ua.NodeId(f"Plant.Churn.V{i}", 2) for i in range(6)]


def _value(x: float, k: int = 0) -> SharedValue:
    at = _T0 + dt.timedelta(milliseconds=100 * k)
    return SharedValue(
        ua.Variant(x, ua.VariantType.Double),
        StatusCode=GOOD,
        SourceTimestamp=at,
        ServerTimestamp=at,
    )


def _item(
    node: ua.NodeId, handle: int, queue_size: int, **kw: Any
) -> ua.MonitoredItemCreateRequest:
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=kw.get("mode", ua.MonitoringMode.Reporting),
        RequestedParameters=ua.MonitoringParameters(
            ClientHandle=handle, QueueSize=queue_size, Filter=kw.get("filter")
        ),
    )


async def _subscription() -> tuple[AddressSpace, InternalSubscription, list[tuple[int, Any]]]:
    """Six Double variables monitored in the ways a client may ask for: queue sizes 1, 3 and 0
    (the server's maximum), a deadband, a timestamp trigger, a disabled item; and one more
    data-change callback that is not a monitored item's."""
    aspace = AddressSpace()
    for node in _NODES:
        data = NodeData(node)
        data.attributes[ua.AttributeIds.Value] = AttributeValue(_value(0.0))
        aspace[node] = data

    async def published(*_args: Any) -> None:
        raise AssertionError("no Publish in this test")

    sub = InternalSubscription(
        ua.CreateSubscriptionResult(SubscriptionId=1, RevisedPublishingInterval=100),
        aspace,
        published,
        ua.NodeId(1, 1),
    )
    deadband = ua.DataChangeFilter(
        Trigger=ua.DataChangeTrigger.StatusValue,
        DeadbandType=ua.DeadbandType.Absolute,
        DeadbandValue=1.5,
    )
    stamps = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
    items = [
        _item(_NODES[0], 10, 1),
        _item(_NODES[1], 11, 3),
        _item(_NODES[2], 12, 0),
        _item(_NODES[3], 13, 2, filter=deadband),
        _item(_NODES[4], 14, 0, filter=stamps),
        _item(_NODES[5], 15, 1, mode=ua.MonitoringMode.Disabled),
        _item(_NODES[0], 16, 2),  # a second item on the same node
    ]
    created = await sub.monitored_item_srv.create_monitored_items(
        ua.CreateMonitoredItemsParameters(ItemsToCreate=items)
    )
    assert all(r.StatusCode.is_good() for r in created)
    other: list[tuple[int, Any]] = []

    async def other_callback(handle: int, value: Any) -> None:
        other.append((handle, value))

    aspace.add_datachange_callback(_NODES[2], ua.AttributeIds.Value, other_callback)
    return aspace, sub, other


def _queued(sub: InternalSubscription) -> dict[int, list[Any]]:
    """The queued notifications by client handle (one handle per monitored item here)."""
    out: dict[int, list[Any]] = {}
    for queue in sub._triggered_datachanges.values():
        for n in queue:
            out.setdefault(n.ClientHandle, []).append(n.Value)
    return out


async def test_direct_writes_queue_what_asyncuas_writes_queue() -> None:
    """Changes, repeats (no change), steps inside and outside the deadband, a timestamp-only
    change, more changes than a queue holds: queues, last values and the other callback's
    calls are the same as through asyncua's write_attribute_value."""
    script = [(1.0, 1), (1.0, 1), (1.0, 2), (2.0, 3), (4.0, 4), (4.5, 5), (7.0, 6), (8.0, 7)]
    runs = []
    for direct in (False, True):
        aspace, sub, other = await _subscription()
        writer = DirectWriter(aspace, _NODES)
        for x, k in script:
            value = _value(x, k)
            if direct:
                await writer.write(_NODES, value)
            else:
                for node in _NODES:
                    await aspace.write_attribute_value(node, ua.AttributeIds.Value, value)
        last = [aspace.read_attribute_value(n, ua.AttributeIds.Value) for n in _NODES]
        runs.append((_queued(sub), last, other))
    assert runs[0] == runs[1]
    values = {h: [v.Value.Value for v in q] for h, q in runs[1][0].items()}
    assert values == {
        10: [8.0],  # queue size 1: the newest
        11: [4.5, 7.0, 8.0],
        12: [0.0, 1.0, 2.0, 4.0, 4.5, 7.0, 8.0],  # a repeated value is no change
        13: [4.0, 7.0],  # steps of more than 1.5 (the queue holds 2)
        14: [0.0, 1.0, 1.0, 2.0, 4.0, 4.5, 7.0, 8.0],  # a new timestamp is a change
        16: [7.0, 8.0],
    }  # 15 is disabled
    assert [v.Value.Value for _, v in runs[1][2]] == [x for x, _ in script]  # every write


def test_encoded_data_changes_are_asyncuas_bytes() -> None:
    """Values shared by many items (encoded once) and values of their own, of other types and
    status codes, with diagnostics and without items: asyncua's bytes."""
    shared = [_value(float(k), k) for k in range(3)]
    others = [
        ua.DataValue(ua.Variant("text"), StatusCode=ua.StatusCode(ua.StatusCodes.BadNoData)),
        ua.DataValue(ua.Variant([1, 2, 3], ua.VariantType.Int32), SourcePicoseconds=7),
        ua.DataValue(),
    ]
    items = [
        ua.MonitoredItemNotification(ClientHandle=h, Value=v)
        for h, v in enumerate([*shared * 4, *others, shared[0]])
    ]
    for notification in (
        ua.DataChangeNotification(MonitoredItems=items),
        ua.DataChangeNotification(MonitoredItems=items[:2], DiagnosticInfos=[ua.DiagnosticInfo()]),
        ua.DataChangeNotification(),
    ):
        assert encode_data_changes(notification) == struct_to_binary(notification)

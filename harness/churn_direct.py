"""The churn server's direct path (``python -m harness.opcua_server --churn N --churn-direct``):
the same asyncua server, address space, subscriptions and monitored items, at a fraction of the
CPU per change, so that a load test measures its client rather than its load source.

Measured on asyncua 2.1.0, a change written with ``write_attribute_value`` cost the server about
16 µs: the write service's checks and three coroutines per value (about 10 µs), and asyncua's
generic encoder in the Publish response (about 4 µs per MonitoredItemNotification). Here:

* :class:`DirectWriter` stores the value and queues the data change for each monitored item as
  ``MonitoredItemService.datachange_callback`` does (same trigger and deadband checks, same
  queue-size rule, through asyncua's own functions), in one plain call per item, without the
  per-write NodeId lookup and type check (the churn variables are Doubles written with Doubles)
  and without copying a :class:`SharedValue`;
* :func:`encode_publish_responses_directly` encodes each DataChangeNotification of a Publish
  response with every DataValue object encoded once (the churn writes one DataValue to a block
  of variables), byte for byte what asyncua would send (tests/unit/test_churn_direct.py).

What a client sees is unchanged: real DataChangeNotifications for the monitored items it
created, SourceTimestamp = the time of the change. A callback that is not a monitored item's
data-change callback, and subscriptions published at once (interval 0), take asyncua's path.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import create_list_serializer, struct_to_binary

_logger = logging.getLogger("harness.churn_direct")
_DATA_CHANGE = MonitoredItemService.datachange_callback
_DISABLED = ua.MonitoringMode.Disabled
_DATA_CHANGE_BINARY = ua.NodeId(ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
_INT32 = struct.Struct("<i").pack
_UINT32 = struct.Struct("<I").pack
_encode_diagnostics = create_list_serializer(ua.DiagnosticInfo)


#: The StatusCode of every churn value: one object, so that comparing two is one identity test.
GOOD = ua.StatusCode(ua.StatusCodes.Good)


class SharedValue(ua.DataValue):  # type: ignore[misc]
    """A DataValue nobody mutates, shared by a block of variables: asyncua's server deep-copies
    every written DataValue once per monitored item (about 40 µs each, measured), which would
    make the server, not its client, the limit of a load test."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedValue:
        return self


def queue_data_change(callback: Any, handle: int, value: ua.DataValue) -> bool:
    """Do what ``callback`` (a ``MonitoredItemService.datachange_callback``) does with a data
    change, in one plain call, without copying ``value``; False (nothing done) for any other
    callback and for a subscription published at once, which must take asyncua's path."""
    if getattr(callback, "__func__", None) is not _DATA_CHANGE:
        return False
    service = callback.__self__
    subscription = service.isub
    if subscription.data.RevisedPublishingInterval <= 0:
        return False
    mid = service._monitored_datachange[handle]
    item = service._monitored_items[mid]
    if item.mode == _DISABLED:
        return True
    values = item.mvalue
    old = values.old_dvalue = values.current_dvalue
    values.current_dvalue = value
    flt = item.filter
    if flt:
        passed = service._is_data_changed(values, flt.Trigger) and service._is_deadband_exceeded(
            values, flt
        )
    else:  # asyncua's _is_data_changed for its default trigger StatusValue, inline
        passed = (
            old is None
            or (old.StatusCode is not value.StatusCode and old.StatusCode != value.StatusCode)
            or old.Value != value.Value
        )
    if passed:
        notification = ua.MonitoredItemNotification(ClientHandle=item.client_handle, Value=value)
        queue = subscription._triggered_datachanges
        pending = queue.get(mid)
        if pending is None:
            queue[mid] = [notification]
        else:
            if item.queue_size and len(pending) >= item.queue_size:
                pending.pop(0)
            pending.append(notification)
    return True


class DirectWriter:
    """Writes DataValues to the Value attribute of ``nodes`` in an asyncua server's address
    space (``server.iserver.aspace``; Double variables written with Good Doubles, so without
    asyncua's checks) and queues their data changes with :func:`queue_data_change`."""

    def __init__(self, aspace: Any, nodes: Sequence[Any]) -> None:
        self._attributes = {n: aspace[n].attributes[ua.AttributeIds.Value] for n in nodes}

    async def write(self, nodes: Sequence[Any], value: ua.DataValue) -> None:
        """Write ``value`` to each of ``nodes`` (in order), as asyncua's write would."""
        attributes = self._attributes
        for node in nodes:
            attribute = attributes[node]
            attribute.value = value
            attribute.value_callback = None
            for handle, callback in attribute.datachange_callbacks.items():
                try:
                    if not queue_data_change(callback, handle, value):
                        await callback(handle, value)
                except Exception:  # as asyncua's write: one failing callback stops no other
                    _logger.exception("data change callback %s of %s failed", handle, node)


def encode_data_changes(notification: ua.DataChangeNotification) -> bytes:
    """The binary body of ``notification``, as asyncua encodes it, with each DataValue object
    encoded once however many items carry it."""
    encoded: dict[int, bytes] = {}
    items = notification.MonitoredItems
    parts = [_INT32(len(items))]
    for item in items:
        value = item.Value
        body = encoded.get(id(value))  # the items keep every value alive: ids stay unique
        if body is None:
            body = encoded[id(value)] = struct_to_binary(value)
        parts.append(_UINT32(item.ClientHandle))
        parts.append(body)
    parts.append(_encode_diagnostics(notification.DiagnosticInfos))
    return b"".join(parts)


def encode_publish_responses_directly() -> None:
    """From now on, in this process, every DataChangeNotification of a Publish response goes
    out as an ExtensionObject whose body :func:`encode_data_changes` made (the same bytes; kept
    so in the subscription's store for Republish too)."""
    forward = UaProcessor.forward_publish_response

    async def forward_publish_response(self: Any, result: Any, requestdata: Any) -> None:
        data = result.NotificationMessage.NotificationData
        for i, notification in enumerate(data):
            if type(notification) is ua.DataChangeNotification:
                data[i] = ua.ExtensionObject(
                    TypeId=_DATA_CHANGE_BINARY, Body=encode_data_changes(notification)
                )
        await forward(self, result, requestdata)

    UaProcessor.forward_publish_response = forward_publish_response

"""A large Publish response reaches the sink in parts (adapters/opcua/source.py,
``_BatchSubscription.publish_callback``): each part at most ``PART`` values, the event loop
runs between parts, the newest value per monitored item only where items have queues above 1
(so the intake does not count the server's own queue as shed values), and the parts of two
responses never interleave. The responses are built here and handed to the callback as
asyncua's publish loop would."""

from __future__ import annotations

import asyncio

import pytest
from asyncua import ua

from opcua_mqtt.adapters.opcua import source
from opcua_mqtt.adapters.opcua.source import MonitoredField, _BatchSubscription
from opcua_mqtt.core.field_key import FieldKey

PART = 4
Batch = list[tuple[FieldKey, ua.DataValue]]


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "PART", PART)


def _key(handle: int) -> FieldKey:
    return FieldKey(0, 0, f"F{handle}")


def _subscription(batches: list[Batch], handles: range) -> _BatchSubscription:
    routes: list[MonitoredField | None] = [
        MonitoredField(_key(h), f"ns=1;i={h}", "G/W", 100.0) for h in handles
    ]

    async def create_items(_sub: _BatchSubscription, _handles: object) -> list[object]:
        raise AssertionError("no monitored items are created here")

    return _BatchSubscription(
        None,  # no session: nothing here talks to a server
        ua.CreateSubscriptionParameters(),
        sink=batches.append,
        routes=routes,
        drained=None,
        create_items=create_items,
    )


def _result(sequence: int, values: list[tuple[int, float]]) -> ua.PublishResult:
    items = [
        ua.MonitoredItemNotification(h, ua.DataValue(ua.Variant(v, ua.VariantType.Double)))
        for h, v in values
    ]
    message = ua.NotificationMessage(sequence, NotificationData=[ua.DataChangeNotification(items)])
    return ua.PublishResult(1, NotificationMessage=message)


def _values(batch: Batch) -> list[tuple[str, float]]:
    return [(key.field, dv.Value.Value) for key, dv in batch]


async def test_a_large_response_arrives_in_parts_the_newest_value_per_item() -> None:
    batches: list[Batch] = []
    sub = _subscription(batches, range(10))
    sub.queued = True  # monitored with a queue size above 1 (SubscriptionSource.monitor)
    # items 0-9, then 0-4 again: 15 values, 10 items
    values = [(h, float(h)) for h in range(10)] + [(h, 100.0 + h) for h in range(5)]
    await sub.publish_callback(_result(1, values))
    assert [len(b) for b in batches] == [4, 4, 2]
    delivered = [v for b in batches for v in _values(b)]
    assert delivered == [(f"F{h}", 100.0 + h if h < 5 else float(h)) for h in range(10)]


async def test_the_event_loop_runs_between_parts() -> None:
    batches: list[Batch] = []
    sub = _subscription(batches, range(10))
    seen: list[int] = []

    async def other() -> None:
        while True:
            seen.append(len(batches))
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await sub.publish_callback(_result(1, [(h, 1.0) for h in range(10)]))
    task.cancel()
    assert seen == [1, 2]  # after the first part and after the second


async def test_the_parts_of_two_responses_do_not_interleave() -> None:
    batches: list[Batch] = []
    sub = _subscription(batches, range(10))
    first = asyncio.create_task(sub.publish_callback(_result(1, [(h, 1.0) for h in range(10)])))
    second = asyncio.create_task(sub.publish_callback(_result(2, [(h, 2.0) for h in range(10)])))
    await asyncio.gather(first, second)
    delivered = [v for b in batches for _, v in _values(b)]
    assert delivered == [1.0] * 10 + [2.0] * 10
    assert sub.last_sequence_number == 2


async def test_a_small_response_is_one_batch_as_sent() -> None:
    batches: list[Batch] = []
    sub = _subscription(batches, range(10))
    sub.queued = True
    await sub.publish_callback(_result(1, [(1, 1.0), (2, 2.0), (1, 3.0)]))
    assert [_values(b) for b in batches] == [[("F1", 1.0), ("F2", 2.0), ("F1", 3.0)]]


async def test_items_without_queues_are_delivered_as_sent() -> None:
    """Queue size 1 (where sampling equals publishing): one value per item and response, so
    nothing to reduce (no dictionary of a response's items on the hot path)."""
    batches: list[Batch] = []
    sub = _subscription(batches, range(10))
    values = [(h, float(h)) for h in range(6)] + [(1, 9.0)]  # as a server would never send
    await sub.publish_callback(_result(1, values))
    assert [v for b in batches for v in _values(b)] == [(f"F{h}", v) for h, v in values]

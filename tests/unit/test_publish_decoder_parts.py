"""Publish responses decoded in parts (adapters/opcua/publish_decoder.py, ``decode_in_parts``):
the result is the whole decoding's, whatever the part size, and the event loop gets a turn
between parts (the event-loop lag under a CPU limit, docs/benchmarks.md)."""

from __future__ import annotations

import asyncio

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_to_binary
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from opcua_mqtt.adapters.opcua.publish_decoder import decode_fast, decode_in_parts
from tests.unit.test_publish_decoder import assert_same, asyncua_decodes, publish_responses


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(publish_responses(), st.integers(1, 4))
def test_a_response_decoded_in_parts_equals_the_whole_decoding(
    response: ua.PublishResponse, part: int
) -> None:
    try:
        body = struct_to_binary(response)
    except (ua.UaError, KeyError, AttributeError):
        reject()  # what asyncua cannot encode (test_publish_decoder.py says which)
    expected = asyncua_decodes(body)
    assert_same(decode_fast(body, part), expected)
    assert_same(asyncio.run(decode_in_parts(Buffer(body), part)), expected)


def _response(items: int) -> bytes:
    """A Publish response of one DataChangeNotification of ``items`` Doubles."""
    notification = ua.DataChangeNotification(
        [
            ua.MonitoredItemNotification(
                h, ua.DataValue(ua.Variant(float(h), ua.VariantType.Double))
            )
            for h in range(items)
        ]
    )
    message = ua.NotificationMessage(7, NotificationData=[notification])
    return struct_to_binary(
        ua.PublishResponse(Parameters=ua.PublishResult(1, NotificationMessage=message))
    )


async def _turns_while_decoding(body: bytes, part: int) -> tuple[int, ua.PublishResponse]:
    """How often another task ran while ``body`` was decoded in parts of ``part``."""
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    response = await decode_in_parts(Buffer(body), part)
    task.cancel()
    return turns, response


@pytest.mark.parametrize(
    ("items", "part", "pauses"), [(10, 3, 3), (9, 3, 2), (10, 10, 0), (0, 3, 0)]
)
def test_the_loop_runs_other_tasks_between_parts(items: int, part: int, pauses: int) -> None:
    body = _response(items)
    turns, response = asyncio.run(_turns_while_decoding(body, part))
    assert turns == pauses
    assert_same(response, asyncua_decodes(body))

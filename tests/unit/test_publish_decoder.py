"""The specialised Publish response decoder (adapters/opcua/publish_decoder.py) gives what
asyncua's own decoder gives, on random responses encoded by asyncua's encoder.

Random responses cover every built-in type as scalar, array, matrix (empty ones included) and
null array, nested Variants and DataValues, status codes, timestamps and picoseconds,
DiagnosticInfos, event and status-change notifications (which the decoder hands to asyncua).
Compared by ``repr`` as well as ``==``: ``repr`` sees what asyncua's ``__eq__`` ignores
(a Variant's Dimensions and is_array, float NaNs, the Python types of values).

The one case left out of the random comparison is where the decoder reads the spec and asyncua
does not: a DataValue with SourcePicoseconds and a ServerTimestamp (see the module docstring);
tests below pin it on exact bytes.
"""

from __future__ import annotations

import dataclasses
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from opcua_mqtt.adapters.opcua.decoding import Undecodable
from opcua_mqtt.adapters.opcua.publish_decoder import decode_fast, decode_publish_response
from tests.strategies import (
    data_values,
    datetimes,
    diagnostic_infos,
    integers,
    status_codes,
    variants,
)

VT = ua.VariantType
U32 = integers(VT.UInt32)


def flat_diagnostic_infos() -> st.SearchStrategy[ua.DiagnosticInfo]:
    """DiagnosticInfos without an inner one: asyncua 2.1 types InnerDiagnosticInfo as an
    ExtensionObject and cannot encode one (the decoder hands DiagnosticInfos to asyncua)."""
    return diagnostic_infos().map(lambda d: dataclasses.replace(d, InnerDiagnosticInfo=None))


def _spec_order_agrees(value: Any) -> Any:
    """``value`` with SourcePicoseconds dropped from every DataValue that also has a
    ServerTimestamp (asyncua writes and reads those two in a non-standard order)."""
    if isinstance(value, ua.DataValue):
        return dataclasses.replace(
            value,
            Value=_spec_order_agrees(value.Value),
            SourcePicoseconds=None if value.ServerTimestamp else value.SourcePicoseconds,
        )
    if isinstance(value, ua.Variant):
        return ua.Variant(
            _spec_order_agrees(value.Value), value.VariantType, value.Dimensions, value.is_array
        )
    if isinstance(value, list):
        return [_spec_order_agrees(v) for v in value]
    return value


def monitored_items() -> st.SearchStrategy[ua.MonitoredItemNotification]:
    return st.builds(
        ua.MonitoredItemNotification,
        ClientHandle=U32,
        Value=data_values(depth=2).map(_spec_order_agrees),
    )


def notifications() -> st.SearchStrategy[Any]:
    diagnostics = st.lists(flat_diagnostic_infos(), max_size=2)
    return st.one_of(
        st.builds(
            ua.DataChangeNotification,
            MonitoredItems=st.lists(monitored_items(), max_size=8),
            DiagnosticInfos=diagnostics,
        ),
        st.builds(
            ua.EventNotificationList,
            Events=st.lists(
                st.builds(
                    ua.EventFieldList,
                    ClientHandle=U32,
                    EventFields=st.lists(variants(), max_size=3),
                ),
                max_size=2,
            ),
        ),
        st.builds(
            ua.StatusChangeNotification,
            Status=status_codes(),
            DiagnosticInfo=flat_diagnostic_infos(),
        ),
    )


def publish_responses() -> st.SearchStrategy[ua.PublishResponse]:
    header = st.builds(
        ua.ResponseHeader,
        Timestamp=datetimes(),
        RequestHandle=U32,
        ServiceResult=status_codes(),
        ServiceDiagnostics=flat_diagnostic_infos(),
        StringTable=st.lists(st.text(max_size=5), max_size=2),
    )
    message = st.builds(
        ua.NotificationMessage,
        SequenceNumber=U32,
        PublishTime=datetimes(),
        NotificationData=st.lists(notifications(), max_size=3),
    )
    result = st.builds(
        ua.PublishResult,
        SubscriptionId=U32,
        AvailableSequenceNumbers=st.lists(U32, max_size=3),
        MoreNotifications=st.booleans(),
        NotificationMessage=message,
        Results=st.lists(status_codes(), max_size=2),
        DiagnosticInfos=st.lists(flat_diagnostic_infos(), max_size=2),
    )
    return st.builds(ua.PublishResponse, ResponseHeader=header, Parameters=result)


def assert_same(actual: Any, expected: Any) -> None:
    assert repr(actual) == repr(expected)
    assert type(actual) is type(expected)


def asyncua_decodes(body: bytes) -> ua.PublishResponse:
    response: ua.PublishResponse = struct_from_binary(ua.PublishResponse, Buffer(body))
    return response


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(publish_responses())
def test_random_responses_decode_as_asyncua_decodes_them(response: ua.PublishResponse) -> None:
    try:
        body = struct_to_binary(response)
    except (ua.UaError, KeyError, AttributeError):
        # What asyncua cannot encode it never receives from an asyncua server either: a null
        # scalar DateTime, a null DateTime array element, a nested DiagnosticInfo.
        reject()
    expected = asyncua_decodes(body)
    assert_same(decode_fast(body), expected)  # no fallback: the fast path itself
    assert_same(decode_publish_response(Buffer(body)), expected)


def _data_change_response(*values: bytes) -> bytes:
    """A PublishResponse with one DataChangeNotification of the given encoded DataValues
    (client handles 1, 2, ...), written by asyncua's encoder around them."""
    frame = ua.PublishResponse(
        Parameters=ua.PublishResult(
            SubscriptionId=5,
            NotificationMessage=ua.NotificationMessage(
                SequenceNumber=3, PublishTime=datetime(2026, 1, 1, tzinfo=UTC), NotificationData=[]
            ),
        )
    )
    head = struct_to_binary(frame)
    # Replace the empty NotificationData (Int32 0) and the two empty arrays after it.
    tail = struct.pack("<ii", 0, 0)
    assert head.endswith(struct.pack("<i", 0) + tail)
    items = b"".join(struct.pack("<I", i + 1) + v for i, v in enumerate(values))
    body = struct.pack("<i", len(values)) + items + struct.pack("<i", -1)
    notification = (
        bytes([1, 0]) + (811).to_bytes(2, "little") + b"\x01" + struct.pack("<i", len(body)) + body
    )
    return head[: -len(tail) - 4] + struct.pack("<i", 1) + notification + tail


def _filetime(t: datetime) -> bytes:
    return struct.pack("<q", ua.datetime_to_win_epoch(t))


SOURCE = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
SERVER = datetime(2026, 5, 4, 3, 2, 1, 654321, tzinfo=UTC)


def test_data_value_members_are_read_in_the_order_of_part_6() -> None:
    """OPC 10000-6 §5.2.2.17: SourceTimestamp, SourcePicoseconds, ServerTimestamp,
    ServerPicoseconds (node-opcua's and open62541's order). asyncua reads both timestamps
    first and gets this ServerTimestamp wrong."""
    double = bytes([11]) + struct.pack("<d", 2.5)
    value = (
        bytes([0x01 | 0x04 | 0x08 | 0x10 | 0x20])
        + double
        + _filetime(SOURCE)
        + struct.pack("<H", 7)
        + _filetime(SERVER)
        + struct.pack("<H", 9)
    )
    body = _data_change_response(value)
    [notification] = decode_fast(body).Parameters.NotificationMessage.NotificationData
    [item] = notification.MonitoredItems
    assert item.ClientHandle == 1
    assert item.Value == ua.DataValue(
        ua.Variant(2.5, VT.Double),
        SourceTimestamp=SOURCE,
        SourcePicoseconds=7,
        ServerTimestamp=SERVER,
        ServerPicoseconds=9,
    )
    asyncua_value = asyncua_decodes(body).Parameters.NotificationMessage.NotificationData[0]
    assert asyncua_value.MonitoredItems[0].Value.ServerTimestamp != SERVER


def _matrix(type_id: int, flat: bytes, count: int, dims: list[int]) -> bytes:
    dims_bytes = struct.pack(f"<i{len(dims)}i", len(dims), *dims)
    return bytes([0x01, 0xC0 | type_id]) + struct.pack("<i", count) + flat + dims_bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # node-opcua's empty matrix: ArrayLength 0 and an empty ArrayDimensions array.
        (_matrix(3, b"", 0, []), []),
        (_matrix(6, b"", 0, [2, 0]), [[], []]),
        (_matrix(6, struct.pack("<4i", 1, 2, 3, 4), 4, [2, 2]), [[1, 2], [3, 4]]),
    ],
)
def test_matrices_are_nested_as_on_the_asyncua_path(value: bytes, expected: Any) -> None:
    body = _data_change_response(value)
    [notification] = decode_fast(body).Parameters.NotificationMessage.NotificationData
    assert notification.MonitoredItems[0].Value.Value.Value == expected
    assert_same(decode_fast(body), asyncua_decodes(body))


def test_a_matrix_that_does_not_fit_is_one_undecodable_value() -> None:
    bad = _matrix(6, struct.pack("<3i", 1, 2, 3), 3, [2, 2])
    good = bytes([0x01, 6]) + struct.pack("<i", 42)
    body = _data_change_response(bad, good)
    [notification] = decode_fast(body).Parameters.NotificationMessage.NotificationData
    first, second = notification.MonitoredItems
    assert isinstance(first.Value.Value.Value, Undecodable)
    assert second.Value.Value == ua.Variant(42, VT.Int32)


def test_an_unknown_variant_type_is_read_as_bytes_like_asyncua() -> None:
    value = bytes([0x01, 40]) + struct.pack("<i", 3) + b"abc"
    body = _data_change_response(value)
    assert_same(decode_fast(body), asyncua_decodes(body))


@pytest.mark.parametrize(
    "cut",
    [1, 7, 20],
    ids=["last byte", "inside the notification", "inside the header"],
)
def test_a_truncated_response_fails_as_asyncua_fails(cut: int) -> None:
    body = _data_change_response(bytes([0x01, 11]) + struct.pack("<d", 1.0))
    truncated = body[:-cut]
    with pytest.raises(ua.UaError) as expected:
        asyncua_decodes(truncated)
    with pytest.raises(type(expected.value)):
        decode_publish_response(Buffer(truncated))


def test_a_null_array_of_many_null_elements_is_left_to_asyncua() -> None:
    """An array of the Null type takes no bytes per element: asyncua builds what the length
    says; the fast path does not take that on and hands the response over."""
    value = bytes([0x01, 0x80]) + struct.pack("<i", 3)
    body = _data_change_response(value)
    with pytest.raises(ValueError, match="array of length 3"):
        decode_fast(body)
    assert_same(decode_publish_response(Buffer(body)), asyncua_decodes(body))

"""A specialised decoder for Publish responses carrying DataChangeNotifications.

Decoding Publish responses was 59-73 % of the bridge's CPU (docs/benchmarks.md): asyncua's
generic ``struct_from_binary`` walks every DataValue field by field through a chain of
closures, Buffer copies and per-field dicts. This module reads the same bytes with
``struct.unpack_from`` on one ``bytes`` object and builds the same asyncua objects
(``ua.PublishResponse``, ``ua.DataChangeNotification``, ``ua.DataValue``, ``ua.Variant``, ...),
so nothing above it changes. It decodes itself what is frequent and simple (the response
frame, DataChangeNotifications, DataValues, Variants of every built-in type, arrays and
matrices) and hands every part it does not specialise to asyncua's own decoder at that byte
position (the ResponseHeader, NodeIds, QualifiedNames, LocalizedTexts, ExtensionObjects,
DiagnosticInfos, and NotificationData other than DataChangeNotifications: events, status
changes, unknown encodings). Anything unexpected on the way (a truncated body, a negative
length, a Variant asyncua would refuse) abandons the fast path, and asyncua decodes the whole
response from the start: the result, or the exception, is then asyncua's own.

One deliberate difference from asyncua 2.1: a DataValue's members are read in the order of
OPC 10000-6 §5.2.2.17 (SourceTimestamp, SourcePicoseconds, ServerTimestamp,
ServerPicoseconds), as node-opcua and open62541 write them. asyncua reads both timestamps
before both picosecond counts, so a value with SourcePicoseconds and a ServerTimestamp comes
out of asyncua with a garbage ServerTimestamp. Everywhere else the result equals asyncua's
(tests/unit/test_publish_decoder.py proves it on random responses).

Matrices are nested by :func:`opcua_mqtt.adapters.opcua.decoding.reshape`, the same repair the
asyncua path uses, so an undecodable matrix is one Bad value, not a lost response.
:func:`install` routes one session's Publish responses through :func:`decode_in_parts`: the
same decoding, pausing for the event loop after every :data:`PART` data change items, so that a
response of thousands of values is not one long callback; the session's responses are still
decoded one at a time, in the order they arrived.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import types
import uuid
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any, TypeVar

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from asyncua.ua.uaerrors import UaStructParsingError

from opcua_mqtt.adapters.opcua.decoding import reshape

_log = logging.getLogger(__name__)

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U16 = struct.Struct("<H")
_MESSAGE_HEAD = struct.Struct("<?I")  # MoreNotifications, NotificationMessage.SequenceNumber

_DATA_CHANGE = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary
# The two ways a namespace-0 NodeId of 811 can be written: FourByte and Numeric.
_DATA_CHANGE_TYPE_IDS = (
    bytes([1, 0]) + _DATA_CHANGE.to_bytes(2, "little"),
    bytes([2, 0, 0]) + _DATA_CHANGE.to_bytes(4, "little"),
)

# struct format characters of the fixed-size built-in types, by type id (Part 6 §5.1.2).
_FIXED = {1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q", 9: "Q", 10: "f", 11: "d"}
_FIXED_STRUCTS = {t: struct.Struct("<" + c) for t, c in _FIXED.items()}
_VARIANT_TYPES: tuple[ua.VariantType, ...] = tuple(ua.VariantType)
# A Variant's encoding byte of a fixed-size scalar is its type id: how to read it.
_FIXED_SCALARS = {
    t: (st.unpack_from, st.size, _VARIANT_TYPES[t]) for t, st in _FIXED_STRUCTS.items()
}

_new = object.__new__
_Variant = ua.Variant
_DataValue = ua.DataValue
_MonitoredItemNotification = ua.MonitoredItemNotification

_GOOD = ua.StatusCode()
_STATUS_CACHE_LIMIT = 1024

Decoded = tuple[Any, int]  # a value and the position after it
T = TypeVar("T")
# A decoding in parts: each ``yield`` is a pause, the return value the result.
Steps = Generator[None, None, T]

#: Data change items decoded per part when a response is decoded in the event loop (about 1 µs
#: each): between parts the loop runs what else is ready, so that a large response does not
#: hold it for one long callback (the event-loop lag at a CPU limit, docs/benchmarks.md). Parts
#: of 1,000 measured no better: more values shed under overload, the loop lag the same.
PART = 400


class _Abandon(ValueError):
    """The fast path met something it leaves to asyncua."""


class _Reader:
    """Decodes from one ``bytes`` object; keeps the caches of one response.

    Positions are passed and returned explicitly (no Buffer object per read). Decoded values
    are shared where equal: datetimes by their raw FILETIME within a response (a response
    repeats a handful of timestamps thousands of times), StatusCodes by value across responses
    (nothing changes a decoded StatusCode in place).
    """

    __slots__ = ("data", "datetimes", "encoding", "end", "statuses")

    def __init__(self, data: bytes, statuses: dict[int, ua.StatusCode]) -> None:
        self.data = data
        self.end = len(data)
        self.encoding = ua_binary.get_string_encoding()
        self.datetimes: dict[int, datetime] = {}
        self.statuses = statuses

    # ---------------------------------------------------------------- scalars

    def bytes_(self, pos: int) -> Decoded:
        (n,) = _I32.unpack_from(self.data, pos)
        pos += 4
        if n == -1:
            return None, pos
        if n < 0 or pos + n > self.end:
            raise _Abandon(f"ByteString of length {n}")
        return self.data[pos : pos + n], pos + n

    def string(self, pos: int) -> Decoded:
        raw, pos = self.bytes_(pos)
        if raw is None:
            return None, pos
        return raw.decode(self.encoding, errors="surrogateescape"), pos

    def datetime_(self, pos: int) -> Decoded:
        (raw,) = _I64.unpack_from(self.data, pos)
        return self.datetimes.get(raw) or self.datetime_of(raw), pos + 8

    def datetime_of(self, raw: int) -> datetime:
        value: datetime = ua.win_epoch_to_datetime(raw)
        self.datetimes[raw] = value
        return value

    def guid(self, pos: int) -> Decoded:
        if pos + 16 > self.end:
            raise _Abandon("truncated Guid")
        return uuid.UUID(bytes_le=self.data[pos : pos + 16]), pos + 16

    def status(self, pos: int) -> Decoded:
        (code,) = _U32.unpack_from(self.data, pos)
        return self.statuses.get(code) or self.status_of(code), pos + 4

    def status_of(self, code: int) -> ua.StatusCode:
        value = ua.StatusCode(code)
        if len(self.statuses) < _STATUS_CACHE_LIMIT:
            self.statuses[code] = value
        return value

    def asyncua(self, decode: Callable[[Buffer], Any], pos: int) -> Decoded:
        """Let asyncua decode one element at ``pos`` (a type this module does not specialise)."""
        buf = Buffer(self.data, pos, self.end - pos)
        return decode(buf), buf.cur_pos

    # ---------------------------------------------------------------- Variant, DataValue

    def scalar(self, type_id: int, pos: int) -> Decoded:
        fixed = _FIXED_STRUCTS.get(type_id)
        if fixed is not None:
            return fixed.unpack_from(self.data, pos)[0], pos + fixed.size
        if type_id == 12:
            return self.string(pos)
        if type_id == 13:
            return self.datetime_(pos)
        if type_id == 14:
            return self.guid(pos)
        if type_id == 15 or type_id > 25:  # ByteString; asyncua reads unknown types as bytes
            return self.bytes_(pos)
        if type_id == 19:
            return self.status(pos)
        if type_id == 23:
            return self.data_value(pos)
        if type_id == 24:
            return self.variant(pos)
        if type_id == 0:
            return None, pos
        # XmlElement, NodeId, ExpandedNodeId, QualifiedName, LocalizedText, ExtensionObject,
        # DiagnosticInfo: rare in data changes, asyncua's decoders as they are.
        vtype = _VARIANT_TYPES[type_id]
        return self.asyncua(lambda buf: ua_binary.unpack_uatype(vtype, buf), pos)

    def array(self, type_id: int, pos: int) -> Decoded:
        (n,) = _I32.unpack_from(self.data, pos)
        pos += 4
        if n == -1:
            return None, pos
        if n < 0 or (type_id == 0 and n):  # asyncua would build n Nones from no bytes
            raise _Abandon(f"array of length {n}")
        char = _FIXED.get(type_id)
        if char is not None:
            fmt = struct.Struct(f"<{n}{char}")
            return list(fmt.unpack_from(self.data, pos)), pos + fmt.size
        out = []
        scalar = self.scalar
        for _ in range(n):
            value, pos = scalar(type_id, pos)
            out.append(value)
        return out, pos

    def variant(self, pos: int) -> Decoded:
        encoding = self.data[pos]
        pos += 1
        type_id = encoding & 0x3F
        is_array = bool(encoding & 0x80)
        if is_array:
            value, pos = self.array(type_id, pos)
        else:
            value, pos = self.scalar(type_id, pos)
        dims = None
        if encoding & 0x40:
            dims, pos = self.array(6, pos)
            if value is not None:
                value = reshape(value, dims)
        vtype = _VARIANT_TYPES[type_id] if type_id <= 25 else ua.VariantTypeCustom(type_id)
        return ua.Variant(value, vtype, dims, is_array), pos

    def data_value(self, pos: int) -> Decoded:
        """A DataValue, its members in the order of Part 6 §5.2.2.17 (see the module doc).

        The hot path of the bridge, hence written out: a scalar of a fixed-size type, the
        usual value, is built without ``Variant.__post_init__``, which has nothing to do for
        it (a known VariantType, not None, not an array); so is the DataValue around a Variant.
        """
        data = self.data
        mask = data[pos]
        pos += 1
        value = source = server = source_ps = server_ps = None
        status = _GOOD
        if mask & 0x01:
            fixed = _FIXED_SCALARS.get(data[pos])
            if fixed is None:
                value, pos = self.variant(pos)
            else:
                unpack, size, vtype = fixed
                value = _new(_Variant)
                value.Value = unpack(data, pos + 1)[0]
                value.VariantType = vtype
                value.Dimensions = None
                value.is_array = False
                pos += 1 + size
        if mask & 0x02:
            (code,) = _U32.unpack_from(data, pos)
            status = self.statuses.get(code) or self.status_of(code)
            pos += 4
        if mask & 0x04:
            (raw,) = _I64.unpack_from(data, pos)
            pos += 8
            source = self.datetimes.get(raw) or self.datetime_of(raw)
        if mask & 0x10:
            (source_ps,) = _U16.unpack_from(data, pos)
            pos += 2
        if mask & 0x08:
            (raw,) = _I64.unpack_from(data, pos)
            pos += 8
            server = self.datetimes.get(raw) or self.datetime_of(raw)
        if mask & 0x20:
            (server_ps,) = _U16.unpack_from(data, pos)
            pos += 2
        if value is None:  # DataValue.__post_init__ makes it a Null Variant
            return ua.DataValue(None, status, source, server, source_ps, server_ps), pos
        dv = _new(_DataValue)
        dv.Encoding = 0
        dv.Value = value
        dv.StatusCode = status
        dv.SourceTimestamp = source
        dv.ServerTimestamp = server
        dv.SourcePicoseconds = source_ps
        dv.ServerPicoseconds = server_ps
        return dv, pos

    # ---------------------------------------------------------------- notifications

    def data_change(self, pos: int, part: int) -> Steps[ua.DataChangeNotification]:
        """The body of a DataChangeNotification; it must end within this reader's bytes.
        Pauses (yields) after every ``part`` items but the last."""
        (n,) = _I32.unpack_from(self.data, pos)
        pos += 4
        items: list[ua.MonitoredItemNotification] = []
        append = items.append
        unpack_handle = _U32.unpack_from
        data = self.data
        data_value = self.data_value
        done = 0
        while done < n:  # asyncua reads a length of -1 here as no items
            if done:
                yield
            for _ in range(min(part, n - done)):
                (handle,) = unpack_handle(data, pos)
                dv, pos = data_value(pos + 4)
                item = _new(_MonitoredItemNotification)
                item.ClientHandle = handle
                item.Value = dv
                append(item)
            done += part
        diagnostics, pos = self.asyncua(_DIAGNOSTIC_INFOS, pos)
        if pos > self.end:
            raise _Abandon("DataChangeNotification longer than its body")
        return ua.DataChangeNotification(items, diagnostics)

    def notification(self, pos: int, part: int) -> Steps[Decoded]:
        """One NotificationData ExtensionObject: a DataChangeNotification decoded here (in
        parts of ``part`` items), anything else by asyncua."""
        data = self.data
        for type_id in _DATA_CHANGE_TYPE_IDS:
            if data.startswith(type_id, pos):
                at = pos + len(type_id)
                if data[at] & 0x01:
                    (length,) = _I32.unpack_from(data, at + 1)
                    start = at + 5
                    if length < 1 or start + length > self.end:
                        raise _Abandon(f"DataChangeNotification body of length {length}")
                    body = _Reader(data[start : start + length], self.statuses)
                    body.datetimes = self.datetimes
                    return (yield from body.data_change(0, part)), start + length
        return self.asyncua(ua_binary.extensionobject_from_binary, pos)

    def publish_response(self, part: int) -> Steps[ua.PublishResponse]:
        """The response, pausing (yielding) after every ``part`` data change items."""
        type_id, pos = self.asyncua(ua_binary.nodeid_from_binary, 0)
        header, pos = self.asyncua(_RESPONSE_HEADER, pos)
        (subscription_id,) = _U32.unpack_from(self.data, pos)
        available, pos = self.asyncua(_COUNTERS, pos + 4)
        more, sequence_number = _MESSAGE_HEAD.unpack_from(self.data, pos)
        publish_time, pos = self.datetime_(pos + _MESSAGE_HEAD.size)
        (n,) = _I32.unpack_from(self.data, pos)
        pos += 4
        notification_data: list[Any] | None = None
        if n != -1:
            if n < 0:
                raise _Abandon(f"{n} NotificationData")
            notification_data = []
            for _ in range(n):
                item, pos = yield from self.notification(pos, part)
                notification_data.append(item)
        results, pos = self.asyncua(_STATUS_CODES, pos)
        diagnostics, pos = self.asyncua(_DIAGNOSTIC_INFOS, pos)
        message = ua.NotificationMessage(sequence_number, publish_time, notification_data)
        result = ua.PublishResult(subscription_id, available, more, message, results, diagnostics)
        return ua.PublishResponse(type_id, header, result)


def _asyncua_array(vtype: ua.VariantType) -> Callable[[Buffer], Any]:
    return lambda buf: ua_binary.unpack_uatype_array(vtype, buf)


_RESPONSE_HEADER: Callable[[Buffer], Any] = lambda buf: ua_binary.struct_from_binary(  # noqa: E731
    ua.ResponseHeader, buf
)
_COUNTERS = _asyncua_array(ua.VariantType.UInt32)
_STATUS_CODES = _asyncua_array(ua.VariantType.StatusCode)
_DIAGNOSTIC_INFOS = _asyncua_array(ua.VariantType.DiagnosticInfo)

_statuses: dict[int, ua.StatusCode] = {}

# What the fast path raises on input it leaves to asyncua (asyncua's own decoders, called for
# parts of the response, raise UaError subclasses such as NotEnoughData).
_LEFT_TO_ASYNCUA = (struct.error, IndexError, ValueError, TypeError, OverflowError)


def _finish(steps: Steps[T]) -> T:
    """Run a decoding in parts to its end without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def decode_fast(body: bytes, part: int = 2**31) -> ua.PublishResponse:
    """The fast path alone: raises where :func:`decode_publish_response` falls back. ``part``
    only changes where the decoding may pause, never its result."""
    return _finish(_Reader(body, _statuses).publish_response(part))


def _fall_back(data: Buffer, e: Exception) -> ua.PublishResponse:
    # Rare by construction (a malformed or unusual response): asyncua decides.
    _log.debug("Publish response left to asyncua's decoder: %r", e)
    response: ua.PublishResponse = ua_binary.struct_from_binary(ua.PublishResponse, data.copy())
    return response


def decode_publish_response(data: Buffer) -> ua.PublishResponse:
    """Decode the body of a PublishResponse (the Buffer asyncua's transport hands over)."""
    try:
        return decode_fast(bytes(data))
    except (*_LEFT_TO_ASYNCUA, ua.UaError) as e:
        return _fall_back(data, e)


async def decode_in_parts(data: Buffer, part: int = PART) -> ua.PublishResponse:
    """:func:`decode_publish_response`, yielding to the event loop after every ``part`` data
    change items."""
    steps = _Reader(bytes(data), _statuses).publish_response(part)
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                response: ua.PublishResponse = done.value
                return response
            await asyncio.sleep(0)
    except (*_LEFT_TO_ASYNCUA, ua.UaError) as e:
        return _fall_back(data, e)


async def _publish(self: UaSession, acks: list[ua.SubscriptionAcknowledgement]) -> Any:
    """asyncua's ``UaSession.publish`` (asyncua 2.1) with this module's decoder, in parts.

    With several Publish requests in flight (publish_pipeline.py) the responses must reach the
    subscriptions in the order they arrived, or an older value of a field could follow a newer
    one: the session's lock (FIFO) lets one response at a time be decoded, and asyncua's loop
    hands it to the subscription's callback before it yields again (the lock is released at
    the return, the next decoding starts in a later turn of the loop)."""
    request = ua.PublishRequest()
    request.Parameters.SubscriptionAcknowledgements = acks if acks else []
    data = await self._send_request(request, timeout=0)
    try:
        async with self._opcua_mqtt_order:
            return await decode_in_parts(data, PART)
    except Exception as ex:
        self.logger.exception("Error parsing notification from server")
        raise UaStructParsingError from ex


def install(session: UaSession) -> None:
    """Decode this session's Publish responses with :func:`decode_in_parts`, in order.

    Only ``publish`` of this one session object changes (asyncua keeps the object across its
    reconnects); its publish loop, acknowledgements and error handling stay asyncua's.
    Idempotent: a second call keeps whatever wraps the first one's ``publish`` (session.py
    installs it before wrapping it with its loss detection; sources install it again).
    """
    if getattr(session, "_opcua_mqtt_decoder", False):
        return
    session.publish = types.MethodType(_publish, session)
    session._opcua_mqtt_order = asyncio.Lock()
    session._opcua_mqtt_decoder = True

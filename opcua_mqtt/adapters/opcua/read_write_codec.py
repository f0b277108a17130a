"""A specialised codec for Read and Write requests and responses (the write-back's two round
trips per batch).

asyncua encodes a request through its generic dataclass serializer, field by field through
closures, and decodes a response the same way: two to three times the CPU of what follows, and
after the answer's signature the largest part of the bridge's work per write-back request
(docs/benchmarks.md, "Third round"). Here:

* a ReadValueId's bytes, and a NodeId's, are asyncua's own, remembered by their content (a
  batch reads the same few attributes of the same nodes again and again);
* a WriteValue is written out around asyncua's own Variant encoder (a DataValue with
  timestamps, which the write path never sends, is left whole to asyncua);
* a response's DataValues and StatusCodes are read by the Publish decoder's reader
  (publish_decoder.py), every part it does not specialise by asyncua's decoders at that
  position; anything unexpected decodes the whole response with asyncua, whose result or
  exception is then the answer.

The bytes and objects equal asyncua's (tests/unit/test_read_write_codec.py, on random requests
and responses), except for the one deliberate difference of the Publish decoder: a DataValue's
SourcePicoseconds are read before its ServerTimestamp, as OPC 10000-6 says. Encoding goes
through asyncua's transport unchanged: :func:`install` routes the ``struct_to_binary`` of
asyncua's client protocol through :func:`encode_request` for these two request types only.
"""

from __future__ import annotations

import logging
import struct
import types
from collections.abc import Callable
from typing import Any, Final

from asyncua import ua
from asyncua.client import ua_client
from asyncua.client.ua_session import UaSession
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

from opcua_mqtt.adapters.opcua.publish_decoder import _RESPONSE_HEADER, _Reader, _statuses

_log = logging.getLogger(__name__)

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_READ_HEAD = struct.Struct("<di")  # MaxAge (Double), TimestampsToReturn (enum as Int32)
_NULL_ARRAY: Final = _I32.pack(-1)
_ORIGINAL_STRUCT_TO_BINARY: Final[Callable[[Any], bytes]] = ua_binary.struct_to_binary

_read_value_id_bytes: Callable[[ua.ReadValueId], bytes] = ua_binary.create_dataclass_serializer(
    ua.ReadValueId
)
_header_bytes: Callable[[ua.RequestHeader], bytes] = ua_binary.create_dataclass_serializer(
    ua.RequestHeader
)
_string_bytes: Callable[[str | bytes | None], bytes] = ua_binary.Primitives.String.pack

#: Encoded forms remembered, by content; emptied when full (a browse of a large server reads
#: many nodes once; write-back reads a few again and again).
_REMEMBERED: Final = 4096
_node_ids: dict[Any, bytes] = {}
_read_value_ids: dict[Any, bytes] = {}


def _node_key(node: ua.NodeId) -> Any:
    """What a plain NodeId's encoding depends on (NodeId's own ``==`` ignores the encoding
    form, and ``1 == True``), or None for one not remembered (an ExpandedNodeId)."""
    if type(node) is not ua.NodeId:
        return None
    identifier = node.Identifier
    return (node.NodeIdType, node.NamespaceIndex, type(identifier), identifier)


def _remember(cache: dict[Any, bytes], key: Any, encode: Callable[[Any], bytes], obj: Any) -> bytes:
    if key is None:
        return encode(obj)
    try:
        return cache[key]
    except KeyError:
        pass
    data = encode(obj)  # raises as asyncua raises: nothing is remembered then
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[key] = data
    return data


def _node_id(node: ua.NodeId) -> bytes:
    return _remember(_node_ids, _node_key(node), ua_binary.nodeid_to_binary, node)


def _read_value_id(item: ua.ReadValueId) -> bytes:
    node_key = _node_key(item.NodeId)
    encoding = item.DataEncoding
    key = None
    if node_key is not None and type(item) is ua.ReadValueId and type(encoding) is ua.QualifiedName:
        attribute, index_range = item.AttributeId, item.IndexRange
        key = (
            node_key,
            type(attribute),
            attribute,
            type(index_range),
            index_range,
            type(encoding.NamespaceIndex),
            encoding.NamespaceIndex,
            encoding.Name,
        )
    return _remember(_read_value_ids, key, _read_value_id_bytes, item)


def _data_value(dv: ua.DataValue) -> bytes:
    """A DataValue without timestamps written out (its Variant by asyncua); any other whole by
    asyncua (it writes the timestamps in an order of its own)."""
    if (
        type(dv) is not ua.DataValue
        or dv.SourceTimestamp is not None
        or dv.ServerTimestamp is not None
        or dv.SourcePicoseconds is not None
        or dv.ServerPicoseconds is not None
    ):
        return _ORIGINAL_STRUCT_TO_BINARY(dv)
    value, status = dv.Value, dv.StatusCode
    mask = (value is not None) | (status is not None) << 1
    parts = [bytes((mask,))]
    if value is not None:
        parts.append(ua_binary.variant_to_binary(value))
    if status is not None:
        parts.append(_U32.pack(status.value))
    return b"".join(parts)


def _write_value(item: ua.WriteValue) -> bytes:
    if type(item) is not ua.WriteValue:
        return _ORIGINAL_STRUCT_TO_BINARY(item)
    return b"".join(
        (
            _node_id(item.NodeId),
            _U32.pack(item.AttributeId),
            _string_bytes(item.IndexRange),
            _data_value(item.Value),
        )
    )


def _read_parameters(params: ua.ReadParameters) -> bytes:
    items = params.NodesToRead
    head = _READ_HEAD.pack(params.MaxAge, params.TimestampsToReturn)
    if items is None:
        return head + _NULL_ARRAY
    return b"".join((head, _I32.pack(len(items)), *map(_read_value_id, items)))


def _write_parameters(params: ua.WriteParameters) -> bytes:
    items = params.NodesToWrite
    if items is None:
        return _NULL_ARRAY
    return b"".join((_I32.pack(len(items)), *map(_write_value, items)))


_PARAMETERS: Final[dict[type, tuple[type, Callable[[Any], bytes]]]] = {
    ua.ReadRequest: (ua.ReadParameters, _read_parameters),
    ua.WriteRequest: (ua.WriteParameters, _write_parameters),
}


def encode_request(request: Any) -> bytes:
    """``request`` as asyncua's ``struct_to_binary`` encodes it: a ReadRequest or WriteRequest
    by this module (its header by asyncua), anything else by asyncua."""
    known = _PARAMETERS.get(type(request))
    if known is None or type(request.Parameters) is not known[0]:
        return _ORIGINAL_STRUCT_TO_BINARY(request)
    return b"".join(
        (
            _node_id(request.TypeId),
            _header_bytes(request.RequestHeader),
            known[1](request.Parameters),
        )
    )


# ------------------------------------------------------------------------ responses

# What the fast path raises on input it leaves to asyncua (see publish_decoder).
_LEFT_TO_ASYNCUA = (struct.error, IndexError, ValueError, TypeError, OverflowError, ua.UaError)
_DIAGNOSTIC_INFOS: Callable[[Buffer], Any] = lambda buf: ua_binary.unpack_uatype_array(  # noqa: E731
    ua.VariantType.DiagnosticInfo, buf
)


#: A ResponseHeader's end without ServiceDiagnostics, with an empty StringTable and without an
#: AdditionalHeader: what servers send with a Good answer.
_PLAIN_HEADER_END: Final = bytes(1) + _I32.pack(0) + bytes(3)
_HANDLE_AND_RESULT = struct.Struct("<II")


def _header(reader: _Reader, pos: int) -> tuple[Any, int]:
    """The ResponseHeader at ``pos``: a plain one read here, any other by asyncua."""
    if not reader.data.startswith(_PLAIN_HEADER_END, pos + 16):
        return reader.asyncua(_RESPONSE_HEADER, pos)
    timestamp, _ = reader.datetime_(pos)
    handle, code = _HANDLE_AND_RESULT.unpack_from(reader.data, pos + 8)
    result = reader.statuses.get(code) or reader.status_of(code)
    header = ua.ResponseHeader(
        timestamp, handle, result, ua.DiagnosticInfo(), [], ua.ExtensionObject()
    )
    return header, pos + 16 + len(_PLAIN_HEADER_END)


def _frame(reader: _Reader) -> tuple[Any, Any, int, int]:
    """TypeId, ResponseHeader, the Results' count and where they start."""
    type_id, pos = reader.asyncua(ua_binary.nodeid_from_binary, 0)
    header, pos = _header(reader, pos)
    (n,) = _I32.unpack_from(reader.data, pos)
    if n < -1:
        raise ValueError(f"{n} results")
    return type_id, header, n, pos + 4


def _tail(reader: _Reader, pos: int) -> Any:
    diagnostics, pos = reader.asyncua(_DIAGNOSTIC_INFOS, pos)
    if pos > reader.end:
        raise ValueError("response shorter than its content")
    return diagnostics


def decode_read_fast(body: bytes) -> ua.ReadResponse:
    """The fast path alone: raises where :func:`decode_read_response` falls back."""
    reader = _Reader(body, _statuses)
    type_id, header, n, pos = _frame(reader)
    results: list[ua.DataValue] | None = None
    if n != -1:
        results = []
        data_value = reader.data_value
        for _ in range(n):
            dv, pos = data_value(pos)
            results.append(dv)
    return ua.ReadResponse(type_id, header, results, _tail(reader, pos))


def decode_write_fast(body: bytes) -> ua.WriteResponse:
    """The fast path alone: raises where :func:`decode_write_response` falls back."""
    reader = _Reader(body, _statuses)
    type_id, header, n, pos = _frame(reader)
    results: list[ua.StatusCode] | None = None
    if n != -1:
        codes = struct.unpack_from(f"<{n}I", body, pos)
        pos += 4 * n
        statuses, status_of = reader.statuses, reader.status_of
        results = [statuses.get(code) or status_of(code) for code in codes]
    return ua.WriteResponse(type_id, header, results, _tail(reader, pos))


def _decode(fast: Callable[[bytes], Any], cls: type, data: Buffer) -> Any:
    try:
        return fast(bytes(data))
    except _LEFT_TO_ASYNCUA as e:
        _log.debug("%s left to asyncua's decoder: %r", cls.__name__, e)
        return ua_binary.struct_from_binary(cls, data.copy())


def decode_read_response(data: Buffer) -> ua.ReadResponse:
    """Decode the body of a ReadResponse (the Buffer asyncua's transport hands over)."""
    response: ua.ReadResponse = _decode(decode_read_fast, ua.ReadResponse, data)
    return response


def decode_write_response(data: Buffer) -> ua.WriteResponse:
    """Decode the body of a WriteResponse (the Buffer asyncua's transport hands over)."""
    response: ua.WriteResponse = _decode(decode_write_fast, ua.WriteResponse, data)
    return response


async def read(session: UaSession, parameters: ua.ReadParameters) -> list[ua.DataValue]:
    """asyncua's ``UaSession.read`` (asyncua 2.1) with this module's codec."""
    results: list[ua.DataValue] = await _call(
        session, ua.ReadRequest(Parameters=parameters), decode_read_response
    )
    return results


async def write(session: UaSession, parameters: ua.WriteParameters) -> list[ua.StatusCode]:
    """asyncua's ``UaSession.write`` (asyncua 2.1) with this module's codec."""
    results: list[ua.StatusCode] = await _call(
        session, ua.WriteRequest(Parameters=parameters), decode_write_response
    )
    return results


async def _call(session: UaSession, request: Any, decode: Callable[[Buffer], Any]) -> Any:
    """Send ``request``, decode its response with ``decode``, raise its ServiceResult if Bad;
    the Results."""
    response = decode(await session._send_request(request))
    response.ResponseHeader.ServiceResult.check()
    return response.Results


def install(uaclient: Any) -> None:
    """Encode the Read and Write requests of asyncua's client protocol with
    :func:`encode_request` (process-wide, every other request as before: the bytes are asyncua's
    own), and decode the Read and Write responses of ``uaclient``'s session with this module.

    Only ``read`` and ``write`` of that one session object change (asyncua keeps it across its
    reconnects); a stand-in without an asyncua session is left as it is. Idempotent.
    """
    ua_client.struct_to_binary = encode_request
    session = getattr(uaclient, "session", None)
    if not isinstance(session, UaSession) or getattr(session, "_opcua_mqtt_read_write", False):
        return
    session.read = types.MethodType(read, session)
    session.write = types.MethodType(write, session)
    session._opcua_mqtt_read_write = True

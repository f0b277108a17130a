"""One target's value to the ``ua.Variant`` to write, exactly or not at all: typed or plain
values, shapes, ranks, array dimensions and IndexRanges."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.uajson.arrays import empty_matrix_too_large, nest_matrix
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.scalars import (
    INT_RANGES,
    json_type,
)
from opcua_mqtt.core.write_request.guards import (
    check_exact,
    check_namespace_known,
    check_text,
    envelope,
    mismatch,
    to_datetime_value,
    to_double,
    to_float,
    to_int,
)
from opcua_mqtt.core.write_request.request import (
    ANY_TYPE,
    INDEX_RANGE,
    INDEX_RANGE_HELP,
    MAX_RANK,
    NULLABLE,
    VT,
    ConversionError,
    S,
    shorten,
)


@dataclass(frozen=True)
class _Limits:
    max_string_length: int | None
    max_byte_string_length: int | None
    string_owner: str = "the node's"
    byte_string_owner: str = "the node's"

    @property
    def string_limit_name(self) -> str:
        return f"{self.string_owner} MaxStringLength"


def convert_value(
    value: Any,
    *,
    builtin_type: int,
    value_rank: int = -1,
    array_dimensions: tuple[int, ...] = (),
    max_string_length: int | None = None,
    codec: JsonCodec | None = None,
    max_byte_string_length: int | None = None,
    index_range: str | None = None,
    max_string_length_of: str = "the node's",
    max_byte_string_length_of: str = "the node's",
) -> ua.Variant:
    """The Variant to write for ``value`` (plain JSON or a typed Variant object) to a node of
    built-in type ``builtin_type`` (0 or 24: any), ValueRank ``value_rank`` and ArrayDimensions
    ``array_dimensions``; exactly, or :class:`ConversionError`. ``codec`` holds the server's
    namespace table for NodeId-like values. ``index_range`` is the target's IndexRange: the value
    is then the part written. ``max_string_length`` (MaxStringLength: UTF-8 bytes of a String or
    of a LocalizedText's text) and ``max_byte_string_length`` (MaxByteStringLength) apply to each
    element; None or 0 means no limit. ``max_string_length_of`` and ``max_byte_string_length_of``
    say whose limit it is in a refusal's message ("the node's", "the server's"): a limit may be
    the server's rather than the node's own."""
    codec = codec if codec is not None else _DEFAULT_CODEC
    try:
        node_vt = VT(builtin_type)
    except ValueError:
        raise ConversionError(
            S.BadTypeMismatch, f"built-in type {builtin_type} is not one that can be written"
        ) from None
    limits = _Limits(
        max_string_length or None,
        max_byte_string_length or None,
        max_string_length_of,
        max_byte_string_length_of,
    )
    ranges = _index_ranges(index_range) if index_range is not None else None

    if isinstance(value, dict) and "UaType" in value:
        vt, body, dims = envelope(value)
        if node_vt not in ANY_TYPE and vt is not node_vt:
            raise ConversionError(
                S.BadTypeMismatch,
                f"the value is typed {_type_name(vt)}; the node's built-in type is "
                f"{_type_name(node_vt)}",
            )
        if vt is VT.Null:
            if ranges is not None:
                raise ConversionError(S.BadTypeMismatch, "a Null Variant cannot fill an IndexRange")
            _check_rank((), value_rank)
            return ua.Variant()
        shape, flat = _typed_shape(body, dims)
    else:
        if node_vt in ANY_TYPE:
            raise ConversionError(
                S.BadTypeMismatch,
                "the node's DataType is abstract (BaseDataType, Number, …): give a typed value "
                '{"UaType": <built-in type id>, "Value": …}',
            )
        vt = node_vt
        shape, flat = _plain_shape(value)

    if ranges is not None:
        shape = _fit_index_range(ranges, shape, vt, value_rank, array_dimensions)
    else:
        _check_rank(shape, value_rank)
        _check_dimensions(shape, array_dimensions)

    if not shape:
        scalar = _convert_element(flat[0], vt, codec, limits, "")
        if isinstance(scalar, ua.Variant):
            return scalar  # a scalar of type Variant: the Variant itself
        return ua.Variant(scalar, vt)
    elements = [
        _convert_element(x, vt, codec, limits, _element_path(i, shape)) for i, x in enumerate(flat)
    ]
    if len(shape) == 1:
        return ua.Variant(elements, vt, is_array=True)
    return ua.Variant(nest_matrix(elements, shape), vt, list(shape), is_array=True)


_DEFAULT_CODEC: Final = JsonCodec()


def _type_name(vt: ua.VariantType) -> str:
    return f"{vt.name} ({int(vt)})"


def _typed_shape(body: Any, dims: tuple[int, ...] | None) -> tuple[tuple[int, ...], list[Any]]:
    if dims is not None:
        if not isinstance(body, list):
            raise ConversionError(
                S.BadDecodingError, f"Dimensions need an array Value, got {json_type(body)}"
            )
        if math.prod(dims) != len(body):
            raise ConversionError(
                S.BadDecodingError,
                f"Dimensions {list(dims)} need {math.prod(dims)} elements, Value has {len(body)}",
            )
        if not body and empty_matrix_too_large(dims):
            raise ConversionError(S.BadOutOfRange, f"Dimensions {list(dims)} are too large")
        shape, flat = dims, body
    elif isinstance(body, list):
        shape, flat = (len(body),), body
    else:
        return (), [body]
    if any(isinstance(x, list) for x in flat):
        raise ConversionError(
            S.BadDecodingError,
            "a typed matrix is a flat Value with Dimensions (OPC 10000-6), not nested arrays",
        )
    return shape, flat


def _plain_shape(value: Any) -> tuple[tuple[int, ...], list[Any]]:
    """(shape, row-major elements) of nested JSON arrays; () and [value] for a scalar."""
    if not isinstance(value, list):
        return (), [value]
    shape: list[int] = []
    x: Any = value
    while isinstance(x, list):
        if len(shape) == MAX_RANK:
            raise ConversionError(S.BadOutOfRange, f"more than {MAX_RANK} array dimensions")
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    level: list[Any] = [value]
    for depth, n in enumerate(shape):
        following: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != n:
                raise ConversionError(
                    S.BadTypeMismatch,
                    f"the arrays are not rectangular (level {depth + 1} should have length {n})",
                )
            following.extend(item)
        level = following
    if any(isinstance(e, list) for e in level):
        raise ConversionError(
            S.BadTypeMismatch, f"the arrays are not rectangular (deeper than {len(shape)} levels)"
        )
    return tuple(shape), level


def _element_path(i: int, shape: tuple[int, ...]) -> str:
    index: list[int] = []
    for d in reversed(shape):
        if d == 0:
            return f"[{i}]"
        index.append(i % d)
        i //= d
    return "".join(f"[{k}]" for k in reversed(index))


_RANK_NAMES: Final = {
    -3: "a scalar or a one-dimensional array",
    -2: "any value",
    -1: "a scalar",
    0: "an array",
}


def _rank_ok(rank: int, value_rank: int) -> bool:
    if value_rank == -2:
        return True
    if value_rank == -1:
        return rank == 0
    if value_rank == -3:
        return rank <= 1
    if value_rank == 0:
        return rank >= 1
    return rank == value_rank


def _describe_rank(rank: int) -> str:
    if rank == 0:
        return "a scalar"
    return "a one-dimensional array" if rank == 1 else f"a {rank}-dimensional array"


def _check_rank(shape: tuple[int, ...], value_rank: int) -> None:
    if not _rank_ok(len(shape), value_rank):
        want = _RANK_NAMES.get(value_rank) or _describe_rank(value_rank)
        raise ConversionError(
            S.BadTypeMismatch,
            f"the node holds {want} (ValueRank {value_rank}); the value is "
            f"{_describe_rank(len(shape))}",
        )


def _check_dimensions(shape: tuple[int, ...], array_dimensions: tuple[int, ...]) -> None:
    if not shape or len(array_dimensions) != len(shape):
        return  # ArrayDimensions describe another rank: the server's metadata is not usable
    for i, (n, limit) in enumerate(zip(shape, array_dimensions, strict=True)):
        if limit and n > limit:
            raise ConversionError(
                S.BadOutOfRange,
                f"dimension {i + 1} has {n} elements; the node's ArrayDimensions allow {limit}",
            )


def parse_index_range(text: str) -> tuple[tuple[int, int], ...]:
    """A NumericRange (OPC 10000-4 §7.27) as inclusive (low, high) pairs, one per dimension.

    ``"2"`` is ((2, 2),), ``"1:3,0:1"`` is ((1, 3), (0, 1)). ValueError if malformed or if a
    range's low end is not below its high end."""
    if not INDEX_RANGE.fullmatch(text):
        raise ValueError(f"{shorten(repr(text), 60)} is {INDEX_RANGE_HELP}")
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        lo_text, _, hi_text = part.partition(":")
        if len(lo_text) > 10 or len(hi_text) > 10:
            raise ValueError(f"index {part!r} is beyond UInt32")
        lo = int(lo_text)
        hi = int(hi_text) if hi_text else lo
        if hi_text and lo >= hi:
            raise ValueError(f"in {part!r} the low end must be below the high end")
        if hi > 2**32 - 1:
            raise ValueError(f"index {hi} is beyond UInt32")
        out.append((lo, hi))
    if len(out) > MAX_RANK:
        raise ValueError(f"more than {MAX_RANK} dimensions")
    return tuple(out)


def _index_ranges(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return parse_index_range(text)
    except ValueError as e:
        raise ConversionError(S.BadIndexRangeInvalid, f"IndexRange: {e}") from None


def _fit_index_range(
    ranges: tuple[tuple[int, int], ...],
    shape: tuple[int, ...],
    vt: ua.VariantType,
    value_rank: int,
    array_dimensions: tuple[int, ...],
) -> tuple[int, ...]:
    """Check an IndexRange against the node and the value; the shape of the value to write."""
    n = len(ranges)
    if value_rank == -1:
        if vt in _SUBSTRING and n == 1:
            if shape:
                raise ConversionError(
                    S.BadTypeMismatch, f"a range of a {vt.name} is written with a {vt.name}"
                )
            return ()  # a substring: the server checks its length
        raise ConversionError(
            S.BadIndexRangeInvalid, "the node holds a scalar: an IndexRange selects nothing"
        )
    if (value_rank == -3 and n != 1) or (value_rank >= 1 and n != value_rank):
        raise ConversionError(
            S.BadIndexRangeInvalid,
            f"the IndexRange has {n} dimensions; the node's ValueRank is {value_rank}",
        )
    sizes = tuple(hi - lo + 1 for lo, hi in ranges)
    if len(array_dimensions) == n:
        for i, ((_, hi), limit) in enumerate(zip(ranges, array_dimensions, strict=True)):
            if limit and hi >= limit:
                raise ConversionError(
                    S.BadIndexRangeNoData,
                    f"index {hi} of dimension {i + 1} is past the node's ArrayDimensions ({limit})",
                )
    if not shape and all(s == 1 for s in sizes):
        return sizes  # one element, given as a scalar
    if shape != sizes:
        raise ConversionError(
            S.BadTypeMismatch,
            f"the IndexRange selects {_show_shape(sizes)} elements; the value has "
            f"{_show_shape(shape) if shape else 'a scalar'}",
        )
    return shape


_SUBSTRING: Final = frozenset({VT.String, VT.ByteString})


def _show_shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _convert_element(
    x: Any, vt: ua.VariantType, codec: JsonCodec, limits: _Limits, where: str
) -> Any:
    try:
        return _convert_scalar(x, vt, codec, limits)
    except ConversionError as e:
        if not where:
            raise
        raise ConversionError(e.status, f"element {where}: {e.message}") from None


def _convert_scalar(x: Any, vt: ua.VariantType, codec: JsonCodec, limits: _Limits) -> Any:
    if x is None:
        if vt is VT.XmlElement:
            return ua.XmlElement(None)
        if vt in NULLABLE:
            return None
        if vt is VT.Variant:
            return ua.Variant()
        raise ConversionError(S.BadTypeMismatch, f"null is not a {vt.name}")
    if vt is VT.Boolean:
        if not isinstance(x, bool):
            raise mismatch(x, vt)
        return x
    if vt in INT_RANGES:
        return to_int(x, vt)
    if vt is VT.Double:
        return to_double(x)
    if vt is VT.Float:
        return to_float(x)
    if vt is VT.String:
        if not isinstance(x, str):
            raise mismatch(x, vt)
        check_text(x, limits.max_string_length, limits.string_limit_name)
        return x
    if vt is VT.DateTime:
        return to_datetime_value(x)
    if vt is VT.XmlElement:
        if not isinstance(x, str):
            raise mismatch(x, vt)
        check_text(x, None, "")
        return ua.XmlElement(x)
    if vt is VT.ByteString and not isinstance(x, str):
        raise mismatch(x, vt)
    value = _decode(codec, x, vt)
    check_exact(x, value, "")
    if vt is VT.ByteString:
        limit = limits.max_byte_string_length
        if limit is not None and value is not None and len(value) > limit:
            raise ConversionError(
                S.BadOutOfRange,
                f"{len(value)} bytes; {limits.byte_string_owner} MaxByteStringLength is {limit}",
            )
    elif vt is VT.LocalizedText:
        if value.Text is not None:
            check_text(value.Text, limits.max_string_length, limits.string_limit_name)
        if value.Locale is not None:
            check_text(value.Locale, None, "")
    elif vt in (VT.NodeId, VT.ExpandedNodeId, VT.QualifiedName):
        check_namespace_known(x, value, vt)
    return value


def _decode(codec: JsonCodec, x: Any, vt: ua.VariantType) -> Any:
    try:
        return codec.decode_value(x, vt)
    except DecodeError as e:
        raise ConversionError(S.BadTypeMismatch, f"not a {vt.name}: {shorten(str(e))}") from None
    except RecursionError:
        raise ConversionError(S.BadTypeMismatch, f"not a {vt.name}: nested too deeply") from None

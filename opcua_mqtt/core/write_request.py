"""Write-back requests: parse, convert exactly, allow, answer.

The pure half of write-back (docs/write-back.md); ``opcua_mqtt.bridge.write_back`` does the I/O.
Nothing here reads a clock: callers pass ``now``.

Requests (``schemas/write-request.schema.json``)::

    {"RequestId": "9c1f…", "Deadline": "2026-11-25T12:00:05Z", "ReplyTo": "app/replies/7",
     "Targets": [{"Writer": "Filler", "Field": "Setpoint", "Value": 42.5},
                 {"NodeId": "nsu=urn:plant;s=Line1.Speed", "Value": {"UaType": 10, "Value": 1.5},
                  "IndexRange": "2"}]}

:func:`parse_request` refuses a whole request with :class:`RequestError` (size, JSON, schema,
number of targets). :func:`convert_value` turns one target's value into the ``ua.Variant`` to write,
exactly or not at all (:class:`ConversionError`):

* a *typed* value is an OPC UA JSON 1.05 Variant ``{"UaType": n, "Value": …, "Dimensions": […]}``
  (Compact and Verbose write Variants the same way). Its UaType must be the node's built-in type;
  a node whose DataType is BaseDataType or another abstract type (built-in 0 or 24) takes any.
  Unknown members are refused (a typo such as ``"Valeu"`` would otherwise write the default), and
  ``Value`` is required (except for the Null Variant ``{"UaType": 0}``).
* a *plain* JSON value is converted to the node's built-in type. Integers: JSON integers exactly,
  JSON floats only when integral and below 2**53 in magnitude (where a double is exact: 2**53+1
  arrives as 2**53), decimal strings for Int64/UInt64 (the Part 6 form). Float/Double: numbers,
  and the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; an integer must be held exactly, a
  fraction is rounded to the nearest Float (the answer shows the value written); values beyond the
  Float range, or a non-zero value that would become 0, are refused. Boolean: ``true``/``false``
  only. Strings must be valid Unicode and within MaxStringLength (UTF-8 bytes, OPC 10000-3
  §5.6.4). DateTime: RFC 3339 with a time zone, within 1601-01-01 … 9999-12-31T23:59:59Z (the
  Part 6 literal ``0001-01-01T00:00:00Z`` is DateTime.MinValue), no digits finer than a microsecond
  unless zero. Other types take their Part 6 Compact form (Guid, base64 ByteString, NodeId strings
  ``nsu=…;s=…``, QualifiedName strings, LocalizedText objects, …); a namespace URI that the server
  does not have is refused rather than turned into a namespace-0 string as a decoder would.
* an object (LocalizedText, StatusCode, a 1.04 NodeId or QualifiedName object, a structure, a
  DataValue, a Variant inside a value, …) must hold only its own members, at any depth: the
  decoder ignores the others, so ``{"Txet": "x"}`` would write an empty LocalizedText
  (BadTypeMismatch; BadDecodingError inside a typed Variant, as for the top-level one).
* arrays are JSON arrays; a matrix is nested arrays in plain form and a flat Value with
  ``Dimensions`` in typed form. The rank must fit the node's ValueRank, each length its
  ArrayDimensions (a maximum, 0 meaning none).
* with an IndexRange (OPC 10000-4 §7.27 NumericRange) the value is the part written: its shape must
  be the range's; a scalar is accepted for a range that selects one element. On a scalar String or
  ByteString node a one-dimensional range selects a substring and the value is a scalar.

Allow-list entries (:class:`AllowList`), deny by default:

* ``Writer/Field`` names with globs (``Line1*/Setpoint*``; ``*`` and ``?`` stay within one level,
  ``**`` crosses levels, ``[…]`` classes, see :mod:`opcua_mqtt.core.globs`); when the caller knows
  the WriterGroup they also match ``Group/Writer/Field`` (the configuration's form);
* a NodeId (an entry starting ``nsu=``, ``ns=<n>;``, ``i=``, ``s=``, ``g=`` or ``b=``), compared in
  canonical form, or a glob over the NodeId text when it has ``*``, ``?`` or ``[`` (write a
  literal ``*`` as ``[*]``; write ``;`` inside a namespace URI as ``%3B``);
* ``re:<regex>``: a Python regular expression that must match the whole NodeId (canonical form).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from asyncua import ua

# jsonschema ships no type information (types-jsonschema is not a dependency).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from opcua_mqtt.core.canonical_json import unique_members
from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.globs import glob_match, glob_regex
from opcua_mqtt.core.schema_validation import load_schema, validator
from opcua_mqtt.core.topics import topic_problem
from opcua_mqtt.core.uajson.arrays import empty_matrix_too_large, nest_matrix
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.node_ids import canonical_node_id
from opcua_mqtt.core.uajson.scalars import (
    DATETIME_MAX,
    DATETIME_MIN,
    INT_RANGES,
    JSON_DATETIME_MIN,
    json_type,
    status_symbol,
)
from opcua_mqtt.core.uajson.structures import UnknownStructure

__all__ = [
    "MAX_RANK",
    "AllowList",
    "ConversionError",
    "RequestError",
    "Target",
    "TargetResult",
    "WriteRequest",
    "build_response",
    "convert_value",
    "error_response",
    "parse_index_range",
    "parse_request",
    "status_json",
    "valid_request_id",
]

VT = ua.VariantType

REQUEST_SCHEMA: Final = "write-request"
RESPONSE_SCHEMA: Final = "write-response"

S = ua.StatusCodes

#: Arrays of more dimensions than this are refused (BadOutOfRange).
MAX_RANK: Final = 32
#: Integers a double holds exactly, with no neighbour that rounds to it: |n| < 2**53.
_EXACT_DOUBLE_INT: Final = 2**53
_FLOAT32_MAX: Final = 3.4028234663852886e38

_SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Types whose value may be JSON null (Part 6 Table 1: the nullable ones a write can mean).
_NULLABLE: Final = frozenset({VT.String, VT.ByteString, VT.XmlElement})
_ANY_TYPE: Final = frozenset({VT.Null, VT.Variant})  # built-in 0 or 24: BaseDataType & co.

_DIGITS: Final = re.compile(r"-?[0-9]{1,20}")
_DATETIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_INDEX_RANGE: Final = re.compile(r"[0-9]+(?::[0-9]+)?(?:,[0-9]+(?::[0-9]+)?)*")
_NODE_ID_LIKE: Final = re.compile(r"(?:[isgb]=|ns=[0-9]+;|nsu=)")


# ------------------------------------------------------------------------------------ errors


class _StatusError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message

    @property
    def symbol(self) -> str | None:
        """The StatusCode's symbolic name (``BadOutOfRange``), if it is a known code."""
        return status_symbol(self.status)


class RequestError(_StatusError):
    """A whole request refused; ``status`` is the OPC UA StatusCode value to answer with."""


class ConversionError(_StatusError):
    """One target's value refused: BadTypeMismatch, BadOutOfRange, BadIndexRangeInvalid, …"""


# ------------------------------------------------------------------------------------ request


@dataclass(frozen=True)
class Target:
    """One thing to write: by ``writer`` + ``field`` or by ``node_id``; ``value`` is the raw JSON
    (plain or a typed Variant object) for :func:`convert_value`."""

    writer: str | None
    field: str | None
    node_id: str | None
    value: Any
    index_range: str | None = None

    @property
    def label(self) -> str:
        """``Writer/Field`` or the NodeId, for log lines."""
        if self.node_id is not None:
            return self.node_id
        return f"{self.writer}/{self.field}"


@dataclass(frozen=True)
class WriteRequest:
    targets: tuple[Target, ...]
    request_id: str | None = None
    deadline: datetime | None = None  # aware, UTC
    reply_to: str | None = None
    #: The request as parsed, for its signature (:mod:`opcua_mqtt.core.request_auth`).
    document: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def expired(self, now: datetime) -> bool:
        """Whether the deadline has passed at ``now`` (an aware datetime)."""
        return self.deadline is not None and now >= self.deadline


def parse_request(
    payload: bytes, *, max_bytes: int = 65536, max_targets: int = 100
) -> WriteRequest:
    """Parse and validate one request; :class:`RequestError` says why a request is refused.

    BadRequestTooLarge past ``max_bytes``; BadDecodingError for anything that is not UTF-8 JSON
    valid against ``write-request.schema.json`` (the message names the member, e.g.
    ``Targets/0/IndexRange``); BadTooManyOperations past ``max_targets``.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    size = len(payload)
    if size > max_bytes:
        raise RequestError(
            S.BadRequestTooLarge, f"the request is {size} bytes; the limit is {max_bytes}"
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(S.BadDecodingError, f"not UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(
            text,
            parse_float=_json_float,
            parse_constant=_json_constant,
            object_pairs_hook=unique_members,
        )
    except RecursionError:
        raise RequestError(S.BadDecodingError, "not JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError and the hooks' errors
        raise RequestError(S.BadDecodingError, f"not JSON: {_short(str(e))}") from None
    if "\\u" in text:  # only an escape can smuggle in a lone surrogate
        _check_unicode(obj)
    if not isinstance(obj, dict):
        raise RequestError(S.BadDecodingError, f"expected a JSON object, got {json_type(obj)}")
    targets = obj.get("Targets")
    if isinstance(targets, list) and len(targets) > max_targets:
        raise RequestError(
            S.BadTooManyOperations,
            f"the request has {len(targets)} targets; the limit is {max_targets}",
        )
    _validate(obj)
    reply_to = obj.get("ReplyTo")
    # Past the schema, only the length in bytes is left to check (JSON Schema counts characters).
    if reply_to is not None and (problem := topic_problem(reply_to)) is not None:
        raise RequestError(S.BadDecodingError, f"ReplyTo: not an MQTT topic name: {problem}")
    deadline = _parse_deadline(obj["Deadline"]) if "Deadline" in obj else None
    parsed: list[Target] = []
    for i, t in enumerate(obj["Targets"]):
        index_range = t.get("IndexRange")
        if index_range is not None and not _INDEX_RANGE.fullmatch(index_range):
            raise RequestError(S.BadDecodingError, f"Targets/{i}/IndexRange: {_INDEX_RANGE_HELP}")
        parsed.append(
            Target(
                writer=t.get("Writer"),
                field=t.get("Field"),
                node_id=t.get("NodeId"),
                value=t["Value"],
                index_range=index_range,
            )
        )
    return WriteRequest(
        targets=tuple(parsed),
        request_id=obj.get("RequestId"),
        deadline=deadline,
        reply_to=reply_to,
        document=obj,
    )


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {_short(text, 40)} is beyond the range of a double")
    return value


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (a Float or Double takes the string {name!r})")


def _check_unicode(obj: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"``): they cannot be written, logged or echoed."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        x, path = stack.pop()
        if isinstance(x, str):
            _utf8(x, path)
        elif isinstance(x, list):
            stack.extend((v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(x))
        elif isinstance(x, dict):
            for k, v in x.items():
                _utf8(k, path)
                stack.append((v, f"{path}/{k}" if path else k))


def _utf8(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        where = _short(path, 80) or "(top level)"
        raise RequestError(
            S.BadDecodingError, f"{where}: a string holds a lone surrogate (not Unicode text)"
        ) from None


def _parse_deadline(text: str) -> datetime:
    m = _DATETIME.fullmatch(text)
    if m is None or m.group(8) is None:
        raise RequestError(S.BadDecodingError, f"Deadline: {_DEADLINE_HELP}")
    try:
        return _to_datetime(m)
    except (ValueError, OverflowError) as e:
        raise RequestError(S.BadDecodingError, f"Deadline: {e}") from None


def _to_datetime(m: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int(((m.group(7) or "") + "000000")[:6])
    dt = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=UTC)
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        dt = dt - offset if zone[0] == "+" else dt + offset
    return dt


_INDEX_RANGE_HELP: Final = "not a NumericRange (e.g. 2, 1:3 or 0:1,2:3)"
_DEADLINE_HELP: Final = "not an RFC 3339 date-time with a time zone (e.g. 2026-11-25T12:00:05Z)"
_PATTERN_HELP: Final = {
    "RequestId": "control characters are not allowed",
    "Deadline": _DEADLINE_HELP,
    "ReplyTo": "not an MQTT topic name the broker accepts (no + or #, control characters or "
    "noncharacters; not starting with $)",
    "NodeId": "not a NodeId in namespace-URI form (nsu=<uri>;s=… or i=…, s=…, g=…, b=…)",
    "IndexRange": _INDEX_RANGE_HELP,
    "Writer": "a name cannot contain / or control characters",
    "Field": "a name cannot contain / or control characters",
}
_TARGET_SHAPE: Final = "a target names either Writer and Field, or NodeId, and has a Value"


def _validate(obj: dict[str, Any]) -> None:
    try:
        error = best_match(validator(REQUEST_SCHEMA).iter_errors(obj))
    except RecursionError:  # jsonschema renders the instance into its messages
        raise RequestError(S.BadDecodingError, "a member is nested too deeply") from None
    if error is None:
        return
    # A oneOf (Writer+Field or NodeId) fails with a guess at a branch: say what the rule is.
    e = error
    while e is not None:
        if e.validator == "oneOf":
            path = _path(e)
            raise RequestError(S.BadDecodingError, f"{path or '(top level)'}: {_TARGET_SHAPE}")
        e = e.parent
    path = _path(error)
    raise RequestError(S.BadDecodingError, f"{path or '(top level)'}: {_schema_message(error)}")


def _path(error: Any) -> str:
    return _short("/".join(str(p) for p in error.absolute_path), 120)


def _schema_message(error: Any) -> str:
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    if kind == "type":
        want = value if isinstance(value, str) else " or ".join(value)
        return f"expected {want}, got {json_type(instance)}"
    if kind == "pattern":
        name = next((str(p) for p in reversed(error.absolute_path) if isinstance(p, str)), "")
        return _PATTERN_HELP.get(name, "has the wrong form")
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"must have at least {value} characters"
    if kind == "maxLength":
        return f"is too long (at most {value} characters)"
    if kind == "minItems":
        return "must not be empty"
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        extra = sorted(k for k in instance if k not in known)
        names = ", ".join(_short(repr(k), 40) for k in extra[:5])
        return f"unknown member {names}" if len(extra) == 1 else f"unknown members {names}"
    try:
        return _short(str(error.message))
    except RecursionError:
        return f"fails the schema's {kind!r} rule"


# ------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class _Limits:
    max_string_length: int | None
    max_byte_string_length: int | None
    string_owner: str = "the node's"
    byte_string_owner: str = "the node's"

    @property
    def string_limit_name(self) -> str:
        return f"{self.string_owner} MaxStringLength"


@cache
def _request_id_rule() -> Any:
    schema = load_schema(REQUEST_SCHEMA)["properties"]["RequestId"]
    return Draft202012Validator(schema)


def valid_request_id(value: object) -> bool:
    """Whether ``value`` is a RequestId the request schema accepts: the one rule for reading the
    RequestId of a request refused before it was parsed (to echo it and log it)."""
    return bool(_request_id_rule().is_valid(value))


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
        vt, body, dims = _envelope(value)
        if node_vt not in _ANY_TYPE and vt is not node_vt:
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
        if node_vt in _ANY_TYPE:
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


def _envelope(obj: dict[str, Any]) -> tuple[ua.VariantType, Any, tuple[int, ...] | None]:
    _only_members(obj, ("UaType", "Value", "Dimensions"), "a typed value", "", S.BadDecodingError)
    raw_type = obj["UaType"]
    if isinstance(raw_type, bool) or not isinstance(raw_type, int) or not 0 <= raw_type <= 25:
        raise ConversionError(
            S.BadDecodingError, f"UaType must be a built-in type id 0..25, got {_show(raw_type)}"
        )
    vt = VT(raw_type)
    if vt is VT.Null:
        if obj.get("Value") is not None or obj.get("Dimensions") is not None:
            raise ConversionError(S.BadDecodingError, "a Null Variant (UaType 0) has no Value")
        return vt, None, None
    if "Value" not in obj:
        raise ConversionError(
            S.BadDecodingError, "a typed value needs its Value (a write says what it writes)"
        )
    raw_dims = obj.get("Dimensions")
    if raw_dims is None:
        return vt, obj["Value"], None
    if not isinstance(raw_dims, list) or not raw_dims or len(raw_dims) > MAX_RANK:
        raise ConversionError(
            S.BadDecodingError, f"Dimensions must be an array of 1..{MAX_RANK} lengths"
        )
    dims: list[int] = []
    for d in raw_dims:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 2**31 - 1:
            raise ConversionError(
                S.BadDecodingError, f"Dimensions: {_show(d)} is not a length (0..2147483647)"
            )
        dims.append(d)
    return vt, obj["Value"], tuple(dims)


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
    if not _INDEX_RANGE.fullmatch(text):
        raise ValueError(f"{_short(repr(text), 60)} is {_INDEX_RANGE_HELP}")
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
        if vt in _NULLABLE:
            return None
        if vt is VT.Variant:
            return ua.Variant()
        raise ConversionError(S.BadTypeMismatch, f"null is not a {vt.name}")
    if vt is VT.Boolean:
        if not isinstance(x, bool):
            raise _mismatch(x, vt)
        return x
    if vt in INT_RANGES:
        return _to_int(x, vt)
    if vt is VT.Double:
        return _to_double(x)
    if vt is VT.Float:
        return _to_float(x)
    if vt is VT.String:
        if not isinstance(x, str):
            raise _mismatch(x, vt)
        _check_text(x, limits.max_string_length, limits.string_limit_name)
        return x
    if vt is VT.DateTime:
        return _to_datetime_value(x)
    if vt is VT.XmlElement:
        if not isinstance(x, str):
            raise _mismatch(x, vt)
        _check_text(x, None, "")
        return ua.XmlElement(x)
    if vt is VT.ByteString and not isinstance(x, str):
        raise _mismatch(x, vt)
    value = _decode(codec, x, vt)
    _check_exact(x, value, "")
    if vt is VT.ByteString:
        limit = limits.max_byte_string_length
        if limit is not None and value is not None and len(value) > limit:
            raise ConversionError(
                S.BadOutOfRange,
                f"{len(value)} bytes; {limits.byte_string_owner} MaxByteStringLength is {limit}",
            )
    elif vt is VT.LocalizedText:
        if value.Text is not None:
            _check_text(value.Text, limits.max_string_length, limits.string_limit_name)
        if value.Locale is not None:
            _check_text(value.Locale, None, "")
    elif vt in (VT.NodeId, VT.ExpandedNodeId, VT.QualifiedName):
        _check_namespace_known(x, value, vt)
    return value


def _decode(codec: JsonCodec, x: Any, vt: ua.VariantType) -> Any:
    try:
        return codec.decode_value(x, vt)
    except DecodeError as e:
        raise ConversionError(S.BadTypeMismatch, f"not a {vt.name}: {_short(str(e))}") from None
    except RecursionError:
        raise ConversionError(S.BadTypeMismatch, f"not a {vt.name}: nested too deeply") from None


# ------------------------------------------------------------------------- exact objects

_DATA_VALUE_MEMBERS: Final = (
    *("UaType", "Value", "Dimensions", "Status", "SourceTimestamp", "SourcePicoseconds"),
    *("ServerTimestamp", "ServerPicoseconds"),
)
_DIAGNOSTIC_MEMBERS: Final = (
    *("SymbolicId", "NamespaceUri", "Locale", "LocalizedText", "AdditionalInfo"),
    *("InnerStatusCode", "InnerDiagnosticInfo"),
)


def _check_exact(x: Any, value: Any, where: str) -> None:
    """Refuse what the decoder let pass but did not use: members it ignores (anywhere in the
    value) and structures it does not know. ``value`` is what the decoder made of ``x``; its
    type tells which form ``x`` was read as."""
    if isinstance(value, UnknownStructure):
        raise ConversionError(
            S.BadTypeMismatch,
            f"{_where(where)}the structure DataType {value.type_id.to_string()} is not known to "
            "the bridge",
        )
    if isinstance(x, list):
        if isinstance(value, list):
            for i, (xi, vi) in enumerate(zip(x, value, strict=True)):
                _check_exact(xi, vi, _member_path(where, i))
        return
    if not isinstance(x, dict):
        return
    if isinstance(value, ua.Variant):
        _check_variant(x, value, where)
        return
    if isinstance(value, ua.DataValue):
        _check_data_value(x, value, where)
        return
    form = _object_form(value)
    if form is None:
        return
    what, members = form
    _only_members(x, tuple(members), what, where, S.BadTypeMismatch)
    if isinstance(value, ua.StatusCode) and "Symbol" in x:
        symbol = status_symbol(value.value)
        if x["Symbol"] != symbol:
            raise ConversionError(
                S.BadTypeMismatch,
                f"{_where(where)}Symbol {_show(x['Symbol'])} is not that of Code {value.value} "
                f"({symbol or 'an unknown code, which has no Symbol'})",
            )
    for name, inner in members.items():
        if name in x and inner is not None:
            _check_exact(x[name], inner, _member_path(where, name))


def _object_form(value: Any) -> tuple[str, dict[str, Any]] | None:
    """What the JSON object decoded as ``value`` may hold: a name for messages, and each member
    with the part of ``value`` to check it against (None: nothing inside to check)."""
    if isinstance(value, ua.LocalizedText):
        return "a LocalizedText", dict.fromkeys(("Locale", "Text"))
    if isinstance(value, ua.QualifiedName):
        return "a QualifiedName", dict.fromkeys(("Name", "Uri"))
    if isinstance(value, ua.ExpandedNodeId):  # before NodeId, its base class
        return "an ExpandedNodeId", dict.fromkeys(("IdType", "Id", "Namespace", "ServerUri"))
    if isinstance(value, ua.NodeId):
        return "a NodeId", dict.fromkeys(("IdType", "Id", "Namespace"))
    if isinstance(value, ua.StatusCode):
        return "a StatusCode", dict.fromkeys(("Code", "Symbol"))
    if isinstance(value, ua.DiagnosticInfo):
        members = dict.fromkeys(_DIAGNOSTIC_MEMBERS)
        members["InnerStatusCode"] = value.InnerStatusCode
        members["InnerDiagnosticInfo"] = value.InnerDiagnosticInfo
        return "a DiagnosticInfo", members
    if isinstance(value, ua.ExtensionObject):
        return "an ExtensionObject", {"UaTypeId": value.TypeId, "UaEncoding": None, "UaBody": None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a structure: its fields, inline beside the ExtensionObject's UaTypeId (Part 6 §5.4.2.16)
        members = {
            f.name: getattr(value, f.name)
            for f in dataclasses.fields(value)
            if f.init and f.name != "Encoding"
        }
        members |= {"UaTypeId": getattr(type(value), "data_type", None), "UaEncoding": None}
        return f"the structure {type(value).__name__}", members
    return None


def _check_variant(x: dict[str, Any], variant: ua.Variant, where: str) -> None:
    """A Variant inside a value follows the rules of a typed value (:func:`_envelope`)."""
    if "UaType" not in x:
        raise ConversionError(
            S.BadDecodingError,
            f'{_where(where)}a Variant is {{"UaType": n, "Value": …}} (OPC UA JSON 1.05); '
            f"it has {_names(x) or 'no members'}",
        )
    try:
        vt, body, dims = _envelope(x)
    except ConversionError as e:
        raise ConversionError(e.status, f"{_where(where)}{e.message}") from None
    inside = _member_path(where, "Value")
    if isinstance(body, list):
        items = variant.Value if isinstance(variant.Value, list) else []
        for _ in range(len(dims or ()) - 1):  # the decoder nests a matrix; the JSON is flat
            items = [item for row in items for item in row]
        _check_exact(body, items, inside)
    elif vt is VT.Variant:
        _check_exact(body, variant, inside)  # the decoder unwraps a Variant in a Variant
    else:
        _check_exact(body, variant.Value, inside)


def _check_data_value(x: dict[str, Any], dv: ua.DataValue, where: str) -> None:
    _only_members(x, _DATA_VALUE_MEMBERS, "a DataValue", where, S.BadTypeMismatch)
    if "UaType" in x:
        inline: dict[str, Any] = {k: x[k] for k in ("UaType", "Value", "Dimensions") if k in x}
        _check_variant(inline, dv.Value if dv.Value is not None else ua.Variant(), where)
    elif "Value" in x or "Dimensions" in x:
        raise ConversionError(
            S.BadDecodingError,
            f"{_where(where)}a DataValue's value needs its UaType beside it (OPC UA JSON 1.05)",
        )
    if "Status" in x:
        _check_exact(x["Status"], dv.StatusCode, _member_path(where, "Status"))


def _only_members(
    obj: dict[str, Any], known: tuple[str, ...], what: str, where: str, status: int
) -> None:
    """Refuse members of ``obj`` outside ``known``, naming them and ``what`` has instead."""
    unknown = [k for k in obj if k not in known]
    if unknown:
        noun = "member" if len(unknown) == 1 else "members"
        raise ConversionError(
            status,
            f"{_where(where)}unknown {noun} {_names(unknown)} in {what} "
            f"({_short(', '.join(known), 120)})",
        )


def _names(keys: Any) -> str:
    return ", ".join(_short(repr(k), 40) for k in sorted(keys)[:5])


def _member_path(where: str, name: str | int) -> str:
    return f"{where}/{name}" if where else str(name)


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _mismatch(x: Any, vt: ua.VariantType) -> ConversionError:
    return ConversionError(S.BadTypeMismatch, f"{_show(x)} is not a {vt.name}")


def _to_int(x: Any, vt: ua.VariantType) -> int:
    lo, hi = INT_RANGES[vt]
    if isinstance(x, bool):
        raise _mismatch(x, vt)
    if isinstance(x, int):
        n = x
    elif isinstance(x, float):
        if math.isnan(x):
            raise _mismatch(x, vt)
        if math.isinf(x) or not lo <= x <= hi:
            raise ConversionError(S.BadOutOfRange, f"{_show(x)} is out of range for {_range(vt)}")
        if not x.is_integer():
            raise ConversionError(S.BadTypeMismatch, f"{_show(x)} is not an integer ({vt.name})")
        if abs(x) >= _EXACT_DOUBLE_INT:
            raise ConversionError(
                S.BadTypeMismatch,
                f"{_show(x)} is a JSON float at or past 2**53, where floats are not exact: "
                "send a JSON integer or a decimal string",
            )
        n = int(x)
    elif isinstance(x, str):
        if vt not in (VT.Int64, VT.UInt64) or not _DIGITS.fullmatch(x):
            raise _mismatch(x, vt)
        n = int(x)
    else:
        raise _mismatch(x, vt)
    if not lo <= n <= hi:
        raise ConversionError(S.BadOutOfRange, f"{_show(n)} is out of range for {_range(vt)}")
    return n


def _range(vt: ua.VariantType) -> str:
    lo, hi = INT_RANGES[vt]
    return f"{vt.name} [{lo}, {hi}]"


def _to_double(x: Any) -> float:
    if isinstance(x, bool):
        raise _mismatch(x, VT.Double)
    if isinstance(x, float):
        return x
    if isinstance(x, int):
        try:
            f = float(x)
        except OverflowError:
            raise ConversionError(S.BadOutOfRange, f"{_show(x)} is beyond Double") from None
        if f != x:
            raise ConversionError(
                S.BadOutOfRange,
                f"{_show(x)} cannot be held exactly by a Double (it would be {f!r})",
            )
        return f
    if isinstance(x, str) and x in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[x]
    raise _mismatch(x, VT.Double)


def _to_float(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        raise _mismatch(x, VT.Float)
    if isinstance(x, str):
        if x in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[x]
        raise _mismatch(x, VT.Float)
    if isinstance(x, float) and not math.isfinite(x):
        return x
    if abs(x) > _FLOAT32_MAX:
        raise ConversionError(S.BadOutOfRange, f"{_show(x)} is out of range for Float")
    f = float(x)  # exact for an int within the Float range? not always: compared below
    single = _float32(f)
    if isinstance(x, int) or f.is_integer():
        if single != x:
            raise ConversionError(
                S.BadOutOfRange,
                f"{_show(x)} cannot be held exactly by a Float (it would be {single!r})",
            )
    elif single == 0.0:
        raise ConversionError(
            S.BadOutOfRange, f"{_show(x)} is too small for a Float (it would be 0)"
        )
    return single


def _float32(f: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", f))[0])
    except OverflowError:  # rounds past the largest Float
        raise ConversionError(S.BadOutOfRange, f"{f!r} is out of range for Float") from None


def _check_text(text: str, limit: int | None, what: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConversionError(
            S.BadTypeMismatch, "the text holds a lone surrogate (not Unicode)"
        ) from None
    if limit is not None and size > limit:
        raise ConversionError(S.BadOutOfRange, f"the text is {size} UTF-8 bytes; {what} is {limit}")


def _to_datetime_value(x: Any) -> datetime:
    if not isinstance(x, str):
        raise _mismatch(x, VT.DateTime)
    if x == JSON_DATETIME_MIN:
        return DATETIME_MIN  # Part 6 §5.4.2.6: the literal for DateTime.MinValue
    m = _DATETIME.fullmatch(x)
    if m is None:
        raise ConversionError(S.BadTypeMismatch, f"{_show(x)} is not an ISO 8601 date and time")
    if m.group(8) is None:
        raise ConversionError(
            S.BadTypeMismatch, f"{_show(x)} has no time zone (add Z for UTC, or ±hh:mm)"
        )
    fraction = m.group(7) or ""
    if fraction[6:].strip("0"):
        raise ConversionError(
            S.BadOutOfRange, f"{_show(x)} is finer than a microsecond, which cannot be written"
        )
    if int(m.group(6)) == 60:
        raise ConversionError(S.BadOutOfRange, f"{_show(x)} is a leap second")
    try:
        dt = _to_datetime(m)
    except ValueError as e:
        raise ConversionError(S.BadTypeMismatch, f"{_show(x)} is not a valid date: {e}") from None
    except OverflowError:
        raise ConversionError(S.BadOutOfRange, f"{_show(x)} is out of range for DateTime") from None
    if not DATETIME_MIN <= dt <= DATETIME_MAX:
        raise ConversionError(
            S.BadOutOfRange,
            f"{_show(x)} is outside the DateTime range 1601-01-01 … 9999-12-31T23:59:59Z",
        )
    return dt


def _check_namespace_known(x: Any, value: Any, vt: ua.VariantType) -> None:
    """Refuse what a Part 6 decoder turns into a namespace-0 string (an unknown URI)."""
    if not isinstance(x, str) or not x.startswith(("nsu=", "svu=")):
        return
    if vt is VT.QualifiedName:
        unknown = value.NamespaceIndex == 0 and value.Name == x
    else:
        unknown = (
            value.NamespaceIndex == 0
            and value.NodeIdType == ua.NodeIdType.String
            and value.Identifier == x
        )
    if unknown:
        raise ConversionError(
            S.BadTypeMismatch,
            f"the namespace (or server) URI of {_show(x)} is not in the server's table",
        )


# ------------------------------------------------------------------------------- allow-list


class AllowList:
    """What write-back may write; empty allows nothing. See the module docstring for the syntax.

    ValueError from the constructor names an entry that cannot be read (a bad regex, a NodeId
    that is not one)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        self._names: list[str] = []
        self._node_ids: set[str] = set()
        self._node_globs: list[str] = []
        self._regexes: list[re.Pattern[str]] = []
        for entry in self.patterns:
            if not isinstance(entry, str) or not entry:
                raise ValueError("an allow-list entry must be a non-empty string")
            if entry.startswith("re:"):
                try:
                    self._regexes.append(re.compile(entry[3:]))
                except re.error as e:
                    raise ValueError(
                        f"allow-list entry {entry!r}: bad regular expression: {e}"
                    ) from None
            elif _NODE_ID_LIKE.match(entry):
                if any(c in entry for c in "*?["):
                    glob_regex(entry)  # ValueError for a bad class
                    self._node_globs.append(entry)
                else:
                    try:
                        self._node_ids.add(canonical_node_id(entry))
                    except ValueError as e:
                        raise ValueError(f"allow-list entry {entry!r}: {e}") from None
            else:
                glob_regex(entry)
                self._names.append(entry)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows(
        self,
        *,
        writer: str | None,
        field: str | None,
        node_id: str,
        group: str | None = None,
    ) -> bool:
        """Whether an entry names this node: by ``node_id`` (give it in ``nsu=`` form), or by
        ``writer``/``field`` (and ``group``, if known) when the node is a published field."""
        forms = {node_id}
        with contextlib.suppress(ValueError):  # not a NodeId: only the text itself can match
            forms.add(canonical_node_id(node_id))
        if self._node_ids & forms:
            return True
        for text in forms:
            if any(glob_match(g, text) for g in self._node_globs):
                return True
            if any(r.fullmatch(text) for r in self._regexes):
                return True
        if writer and field:
            name = f"{writer}/{field}"
            if any(glob_match(p, name) for p in self._names):
                return True
            if group:
                full = f"{group}/{name}"
                return any(glob_match(p, full) for p in self._names)
        return False


# ---------------------------------------------------------------------------------- response


@dataclass(frozen=True)
class TargetResult:
    """The outcome of one target; ``written`` is the value written (when Good)."""

    status: int
    written: ua.Variant | None = None
    node_id: str | None = None
    writer: str | None = None
    field: str | None = None
    message: str | None = None


def status_json(code: int) -> dict[str, Any]:
    """``{"Code": n, "Symbol": "…"}``: Code always (0 included), Symbol when the code is known.

    Unlike a Part 6 StatusCode (which omits Good and writes Symbol only in Verbose), a write-back
    answer always says both, so that a reader need not know the rules."""
    out: dict[str, Any] = {"Code": int(code)}
    symbol = status_symbol(int(code))
    if symbol is not None:
        out["Symbol"] = symbol
    return out


def _is_good(code: int) -> bool:
    return code & 0xC0000000 == 0


def build_response(
    request_id: str | None, results: Sequence[TargetResult], codec: JsonCodec
) -> dict[str, Any]:
    """The answer to a request that was carried out (``write-response.schema.json``).

    ``Result`` is Good when every target is Good, else the first target's status that is not.
    Each target: ``Status``, ``Written`` (Compact Variant of the value written), ``Writer``,
    ``Field``, ``NodeId``, ``Message`` (members without a value are left out)."""
    compact = (
        codec
        if codec.encoding is FieldEncoding.COMPACT
        else JsonCodec(FieldEncoding.COMPACT, codec.namespaces, codec.server_uris)
    )
    overall = next((r.status for r in results if not _is_good(r.status)), S.Good)
    out: dict[str, Any] = {}
    if request_id is not None:
        out["RequestId"] = request_id
    out["Result"] = status_json(overall)
    targets: list[dict[str, Any]] = []
    for r in results:
        t: dict[str, Any] = {"Status": status_json(r.status)}
        message = r.message
        if r.written is not None:
            try:
                written = compact.encode_variant(r.written)
            except (EncodeError, ValueError, TypeError) as e:
                message = (
                    f"{message + '; ' if message else ''}the value written cannot be shown: {e}"
                )
            else:
                t["Written"] = written if written is not None else {"UaType": 0}
        if r.writer is not None:
            t["Writer"] = r.writer
        if r.field is not None:
            t["Field"] = r.field
        if r.node_id is not None:
            t["NodeId"] = r.node_id
        if message is not None:
            t["Message"] = message
        targets.append(t)
    out["Targets"] = targets
    return out


def error_response(request_id: str | None, status: int, message: str) -> dict[str, Any]:
    """The answer to a request refused as a whole: no targets were written."""
    out: dict[str, Any] = {}
    if request_id is not None:
        out["RequestId"] = request_id
    out["Result"] = status_json(status)
    out["Message"] = message
    return out


# ----------------------------------------------------------------------------------- helpers


def _show(x: Any) -> str:
    """A short rendering of a JSON value for a message."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None:
        return "null"
    if isinstance(x, int):
        text = str(x) if x.bit_length() < 200 else f"an integer of {x.bit_length()} bits"
        return text
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, str):
        text = _short(json.dumps(x, ensure_ascii=False), 60)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return json_type(x)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Scalars of the built-in types: their JSON text, ranges and defaults (Part 6 §5.4.2)."""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from asyncua import ua
from asyncua.ua import status_codes

from opcua_mqtt.core.errors import DecodeError, EncodeError

VT = ua.VariantType

# DateTime range (Part 6 §5.1.4/§5.4.2.6): a UA DateTime cannot precede 1601 (binary tick 0) nor
# pass 9999-12-31T23:59:59; JSON writes the ends as these two literal strings.
DATETIME_MIN: Final = datetime(1601, 1, 1, tzinfo=UTC)
DATETIME_MAX: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
JSON_DATETIME_MIN: Final = "0001-01-01T00:00:00Z"
JSON_DATETIME_MAX: Final = "9999-12-31T23:59:59Z"

#: Value range of each integer built-in type (OPC 10000-6 §5.1.2).
INT_RANGES: Final[dict[ua.VariantType, tuple[int, int]]] = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX: Final = 3.4028234663852886e38
# Types whose scalar value may be null (Part 6 §5.1.x: String, ByteString, XmlElement, …).
NULLABLE: Final = frozenset(
    {VT.Null, VT.String, VT.ByteString, VT.XmlElement, VT.DateTime, VT.ExtensionObject}
)


def status_symbol(code: int) -> str | None:
    """The symbolic name of a StatusCode, ignoring InfoBits (Part 6 §5.4.2.12)."""
    # Not get_name_and_doc: for an unknown code it answers the bare severity ("Bad"), which is
    # the literal of another code; §5.4.2.12 omits the Symbol of an unknown code instead.
    entry = status_codes.code_to_name_doc.get(code & 0xFFFF0000)
    if entry is None or not entry[0]:
        return None
    name: str = entry[0]
    return name


def status_value(status: ua.StatusCode | int) -> int:
    return int(status.value if isinstance(status, ua.StatusCode) else status)


def variant_type_of(vt: Any) -> ua.VariantType:
    if isinstance(vt, VT):
        return vt
    raise EncodeError(f"unsupported variant type {vt!r}")


def decode_vtype(x: Any, key: str) -> ua.VariantType:
    if isinstance(x, bool) or not isinstance(x, int):
        raise DecodeError(key, f"expected a built-in type id, got {json_type(x)}")
    try:
        return VT(x)
    except ValueError:
        raise DecodeError(key, f"{x} is not a built-in type id (0..25)") from None


def default_scalar(vt: ua.VariantType) -> Any:
    if vt is VT.XmlElement:
        return ua.XmlElement(None)  # asyncua's null XmlElement; a Variant cannot hold None here
    if vt in NULLABLE:
        return None
    return DEFAULTS[vt]()


DEFAULTS: Final[dict[ua.VariantType, Callable[[], Any]]] = {
    VT.Boolean: lambda: False,
    **{vt: int for vt in INT_RANGES},
    VT.Float: float,
    VT.Double: float,
    VT.Guid: lambda: uuid.UUID(int=0),
    VT.NodeId: lambda: ua.NodeId(0, 0, ua.NodeIdType.Numeric),
    VT.ExpandedNodeId: lambda: ua.ExpandedNodeId(0, 0, ua.NodeIdType.Numeric),
    VT.StatusCode: lambda: ua.StatusCode(0),
    VT.QualifiedName: lambda: ua.QualifiedName("", 0),
    VT.LocalizedText: ua.LocalizedText,
    VT.DataValue: ua.DataValue,
    VT.Variant: ua.Variant,
    VT.DiagnosticInfo: ua.DiagnosticInfo,
}


def json_type(x: Any) -> str:
    """How an error message names the JSON type of ``x`` ("a string", "an array", "null")."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int | float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "an array"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


def expect_str(x: Any, what: str) -> str:
    if not isinstance(x, str):
        raise DecodeError("", f"expected {what} as a string, got {json_type(x)}")
    return x


def decode_int(x: Any, vt: ua.VariantType, path: str = "") -> int:
    lo, hi = INT_RANGES[vt]
    if isinstance(x, bool):
        raise DecodeError(path, f"expected {vt.name}, got a boolean")
    if isinstance(x, int):
        v = x
    elif isinstance(x, float) and x.is_integer():
        v = int(x)
    elif isinstance(x, str) and _INT_TEXT.fullmatch(x):
        v = int(x)  # Int64/UInt64 travel as strings; others are tolerated the same way
    else:
        raise DecodeError(path, f"expected {vt.name}, got {json_type(x)}")
    if not lo <= v <= hi:
        raise DecodeError(path, f"{v} is out of range for {vt.name}")
    return v


_INT_TEXT: Final = re.compile(r"-?\d{1,20}")


def enc_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise EncodeError(f"Boolean needs a bool, got {type(v).__name__}")
    return v


def enc_double(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def enc_float32(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f) and abs(f) > _FLOAT32_MAX:
        raise EncodeError(f"{f} is out of range for Float")
    return enc_double(_to_float32(f) if math.isfinite(f) else f)


def _to_float32(f: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", f))[0])


def decode_float(x: Any, vt: ua.VariantType) -> float:
    if isinstance(x, bool):
        raise DecodeError("", f"expected {vt.name}, got a boolean")
    if isinstance(x, int | float):
        f = float(x)
    elif x == "NaN":
        f = math.nan
    elif x == "Infinity":
        f = math.inf
    elif x == "-Infinity":
        f = -math.inf
    else:
        raise DecodeError("", f"expected {vt.name}, got {json_type(x)}")
    if vt is VT.Float and math.isfinite(f):
        if abs(f) > _FLOAT32_MAX:
            raise DecodeError("", f"{f} is out of range for Float")
        f = _to_float32(f)
    return f


def enc_string(v: Any) -> str:
    if not isinstance(v, str):
        raise EncodeError(f"String needs a str, got {type(v).__name__}")
    return v


def enc_guid(v: Any) -> str:
    if not isinstance(v, uuid.UUID):
        raise EncodeError(f"Guid needs a uuid.UUID, got {type(v).__name__}")
    return str(v).upper()


def decode_guid(x: str) -> uuid.UUID:
    if not _GUID_TEXT.fullmatch(x):
        raise DecodeError("", f"{x!r} is not a Guid (8-4-4-4-12 hex digits)")
    return uuid.UUID(x)


_GUID_TEXT: Final = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def enc_bytes(v: Any) -> str:
    if not isinstance(v, bytes | bytearray):
        raise EncodeError(f"ByteString needs bytes, got {type(v).__name__}")
    return base64.b64encode(bytes(v)).decode("ascii")


def decode_bytes(x: Any) -> bytes | None:
    if x is None:
        return None
    if not isinstance(x, str):
        raise DecodeError("", f"expected base64 text, got {json_type(x)}")
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        if not _B64_LENIENT.fullmatch(x):
            raise DecodeError("", "invalid base64") from None
        try:  # some stacks write base64url or drop the padding; be lenient on input
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            raise DecodeError("", "invalid base64") from None


_B64_LENIENT: Final = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def enc_xml(v: Any) -> str | None:
    if isinstance(v, ua.XmlElement):
        v = v.Value
        if v is None:
            return None  # the null XmlElement (Part 6 Table 1: nullable)
    if isinstance(v, str):
        return v
    raise EncodeError(f"XmlElement needs text, got {type(v).__name__}")


#: Recently formatted DateTimes. A Publish response repeats a few timestamps for thousands of
#: values (publish_decoder.py even hands out one datetime object per distinct timestamp), and
#: formatting was the largest part of JSON encoding (docs/benchmarks.md).
_DATETIME_TEXTS: dict[datetime, str] = {}
_DATETIME_TEXTS_MAX: Final = 4096


def encode_datetime(v: datetime) -> str:
    """ISO 8601 UTC with only the fraction digits needed; clamped as Part 6 §5.4.2.6 says."""
    if not isinstance(v, datetime):
        raise EncodeError(f"DateTime needs a datetime, got {type(v).__name__}")
    text = _DATETIME_TEXTS.get(v)
    if text is None:
        if len(_DATETIME_TEXTS) >= _DATETIME_TEXTS_MAX:
            _DATETIME_TEXTS.clear()
        text = _DATETIME_TEXTS[v] = _format_datetime(v)
    return text


def _format_datetime(v: datetime) -> str:
    # asyncua's naive datetimes are UTC
    try:
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    except OverflowError:  # an offset pushed it past year 1 or 9999: out of range either way
        return JSON_DATETIME_MIN if v.year < 5000 else JSON_DATETIME_MAX
    if v <= DATETIME_MIN:
        return JSON_DATETIME_MIN
    if v >= DATETIME_MAX:
        return JSON_DATETIME_MAX
    # "YYYY-MM-DDTHH:MM:SS.ffffff" (the year is 1601..9999), trailing zeros of the fraction off
    return v.isoformat(timespec="microseconds")[:26].rstrip("0").rstrip(".") + "Z"


_DT_TEXT: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?"
)


def decode_datetime(x: Any) -> datetime:
    """Parse ISO 8601; the JSON min/max literals map to the UA DateTime range's ends."""
    if not isinstance(x, str):
        raise DecodeError("", f"expected a DateTime string, got {json_type(x)}")
    m = _DT_TEXT.fullmatch(x)
    if m is None:
        raise DecodeError("", f"{x!r} is not an ISO 8601 date and time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    micro = int((frac + "000000")[:6])  # decoders may truncate digits past their precision
    zone = m.group(8)
    try:
        if second == 60:  # a leap second: keep the instant just before the next minute
            second, micro = 59, 999999
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as e:
        raise DecodeError("", f"{x!r} is not a valid date: {e}") from None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        try:
            dt = dt - sign * offset
        except OverflowError:
            return DATETIME_MIN if sign < 0 else DATETIME_MAX
    if dt <= DATETIME_MIN:
        return DATETIME_MIN
    if dt >= DATETIME_MAX:
        return DATETIME_MAX
    return dt


def picoseconds(x: Any) -> int:
    return decode_int(x, VT.UInt16)


def opt_member(obj: dict[str, Any], key: str, fn: Callable[[Any], Any]) -> Any:
    v = obj.get(key)
    if v is None:
        return None
    try:
        return fn(v)
    except DecodeError as e:
        raise e.within(key) from None

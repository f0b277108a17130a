"""What a decoder would accept silently and a write must not: unknown members at any depth,
inexact numbers, over-long text, out-of-range dates, namespaces the server lacks."""

from __future__ import annotations

import dataclasses
import math
import struct
from datetime import datetime
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.uajson.scalars import (
    DATETIME_MAX,
    DATETIME_MIN,
    INT_RANGES,
    JSON_DATETIME_MIN,
    status_symbol,
)
from opcua_mqtt.core.uajson.structures import UnknownStructure
from opcua_mqtt.core.write_request.request import (
    DATETIME,
    DIGITS,
    EXACT_DOUBLE_INT,
    FLOAT32_MAX,
    MAX_RANK,
    SPECIAL_FLOATS,
    VT,
    ConversionError,
    S,
    shorten,
    show,
    to_datetime,
)

_DATA_VALUE_MEMBERS: Final = (
    *("UaType", "Value", "Dimensions", "Status", "SourceTimestamp", "SourcePicoseconds"),
    *("ServerTimestamp", "ServerPicoseconds"),
)
_DIAGNOSTIC_MEMBERS: Final = (
    *("SymbolicId", "NamespaceUri", "Locale", "LocalizedText", "AdditionalInfo"),
    *("InnerStatusCode", "InnerDiagnosticInfo"),
)


def check_exact(x: Any, value: Any, where: str) -> None:
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
                check_exact(xi, vi, _member_path(where, i))
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
                f"{_where(where)}Symbol {show(x['Symbol'])} is not that of Code {value.value} "
                f"({symbol or 'an unknown code, which has no Symbol'})",
            )
    for name, inner in members.items():
        if name in x and inner is not None:
            check_exact(x[name], inner, _member_path(where, name))


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


def envelope(obj: dict[str, Any]) -> tuple[ua.VariantType, Any, tuple[int, ...] | None]:
    _only_members(obj, ("UaType", "Value", "Dimensions"), "a typed value", "", S.BadDecodingError)
    raw_type = obj["UaType"]
    if isinstance(raw_type, bool) or not isinstance(raw_type, int) or not 0 <= raw_type <= 25:
        raise ConversionError(
            S.BadDecodingError, f"UaType must be a built-in type id 0..25, got {show(raw_type)}"
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
                S.BadDecodingError, f"Dimensions: {show(d)} is not a length (0..2147483647)"
            )
        dims.append(d)
    return vt, obj["Value"], tuple(dims)


def _check_variant(x: dict[str, Any], variant: ua.Variant, where: str) -> None:
    """A Variant inside a value follows the rules of a typed value (:func:`envelope`)."""
    if "UaType" not in x:
        raise ConversionError(
            S.BadDecodingError,
            f'{_where(where)}a Variant is {{"UaType": n, "Value": …}} (OPC UA JSON 1.05); '
            f"it has {_names(x) or 'no members'}",
        )
    try:
        vt, body, dims = envelope(x)
    except ConversionError as e:
        raise ConversionError(e.status, f"{_where(where)}{e.message}") from None
    inside = _member_path(where, "Value")
    if isinstance(body, list):
        items = variant.Value if isinstance(variant.Value, list) else []
        for _ in range(len(dims or ()) - 1):  # the decoder nests a matrix; the JSON is flat
            items = [item for row in items for item in row]
        check_exact(body, items, inside)
    elif vt is VT.Variant:
        check_exact(body, variant, inside)  # the decoder unwraps a Variant in a Variant
    else:
        check_exact(body, variant.Value, inside)


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
        check_exact(x["Status"], dv.StatusCode, _member_path(where, "Status"))


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
            f"({shorten(', '.join(known), 120)})",
        )


def _names(keys: Any) -> str:
    return ", ".join(shorten(repr(k), 40) for k in sorted(keys)[:5])


def _member_path(where: str, name: str | int) -> str:
    return f"{where}/{name}" if where else str(name)


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def mismatch(x: Any, vt: ua.VariantType) -> ConversionError:
    return ConversionError(S.BadTypeMismatch, f"{show(x)} is not a {vt.name}")


def to_int(x: Any, vt: ua.VariantType) -> int:
    lo, hi = INT_RANGES[vt]
    if isinstance(x, bool):
        raise mismatch(x, vt)
    if isinstance(x, int):
        n = x
    elif isinstance(x, float):
        if math.isnan(x):
            raise mismatch(x, vt)
        if math.isinf(x) or not lo <= x <= hi:
            raise ConversionError(S.BadOutOfRange, f"{show(x)} is out of range for {_range(vt)}")
        if not x.is_integer():
            raise ConversionError(S.BadTypeMismatch, f"{show(x)} is not an integer ({vt.name})")
        if abs(x) >= EXACT_DOUBLE_INT:
            raise ConversionError(
                S.BadTypeMismatch,
                f"{show(x)} is a JSON float at or past 2**53, where floats are not exact: "
                "send a JSON integer or a decimal string",
            )
        n = int(x)
    elif isinstance(x, str):
        if vt not in (VT.Int64, VT.UInt64) or not DIGITS.fullmatch(x):
            raise mismatch(x, vt)
        n = int(x)
    else:
        raise mismatch(x, vt)
    if not lo <= n <= hi:
        raise ConversionError(S.BadOutOfRange, f"{show(n)} is out of range for {_range(vt)}")
    return n


def _range(vt: ua.VariantType) -> str:
    lo, hi = INT_RANGES[vt]
    return f"{vt.name} [{lo}, {hi}]"


def to_double(x: Any) -> float:
    if isinstance(x, bool):
        raise mismatch(x, VT.Double)
    if isinstance(x, float):
        return x
    if isinstance(x, int):
        try:
            f = float(x)
        except OverflowError:
            raise ConversionError(S.BadOutOfRange, f"{show(x)} is beyond Double") from None
        if f != x:
            raise ConversionError(
                S.BadOutOfRange,
                f"{show(x)} cannot be held exactly by a Double (it would be {f!r})",
            )
        return f
    if isinstance(x, str) and x in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[x]
    raise mismatch(x, VT.Double)


def to_float(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        raise mismatch(x, VT.Float)
    if isinstance(x, str):
        if x in SPECIAL_FLOATS:
            return SPECIAL_FLOATS[x]
        raise mismatch(x, VT.Float)
    if isinstance(x, float) and not math.isfinite(x):
        return x
    if abs(x) > FLOAT32_MAX:
        raise ConversionError(S.BadOutOfRange, f"{show(x)} is out of range for Float")
    f = float(x)  # exact for an int within the Float range? not always: compared below
    single = _float32(f)
    if isinstance(x, int) or f.is_integer():
        if single != x:
            raise ConversionError(
                S.BadOutOfRange,
                f"{show(x)} cannot be held exactly by a Float (it would be {single!r})",
            )
    elif single == 0.0:
        raise ConversionError(
            S.BadOutOfRange, f"{show(x)} is too small for a Float (it would be 0)"
        )
    return single


def _float32(f: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", f))[0])
    except OverflowError:  # rounds past the largest Float
        raise ConversionError(S.BadOutOfRange, f"{f!r} is out of range for Float") from None


def check_text(text: str, limit: int | None, what: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConversionError(
            S.BadTypeMismatch, "the text holds a lone surrogate (not Unicode)"
        ) from None
    if limit is not None and size > limit:
        raise ConversionError(S.BadOutOfRange, f"the text is {size} UTF-8 bytes; {what} is {limit}")


def to_datetime_value(x: Any) -> datetime:
    if not isinstance(x, str):
        raise mismatch(x, VT.DateTime)
    if x == JSON_DATETIME_MIN:
        return DATETIME_MIN  # Part 6 §5.4.2.6: the literal for DateTime.MinValue
    m = DATETIME.fullmatch(x)
    if m is None:
        raise ConversionError(S.BadTypeMismatch, f"{show(x)} is not an ISO 8601 date and time")
    if m.group(8) is None:
        raise ConversionError(
            S.BadTypeMismatch, f"{show(x)} has no time zone (add Z for UTC, or ±hh:mm)"
        )
    fraction = m.group(7) or ""
    if fraction[6:].strip("0"):
        raise ConversionError(
            S.BadOutOfRange, f"{show(x)} is finer than a microsecond, which cannot be written"
        )
    if int(m.group(6)) == 60:
        raise ConversionError(S.BadOutOfRange, f"{show(x)} is a leap second")
    try:
        dt = to_datetime(m)
    except ValueError as e:
        raise ConversionError(S.BadTypeMismatch, f"{show(x)} is not a valid date: {e}") from None
    except OverflowError:
        raise ConversionError(S.BadOutOfRange, f"{show(x)} is out of range for DateTime") from None
    if not DATETIME_MIN <= dt <= DATETIME_MAX:
        raise ConversionError(
            S.BadOutOfRange,
            f"{show(x)} is outside the DateTime range 1601-01-01 … 9999-12-31T23:59:59Z",
        )
    return dt


def check_namespace_known(x: Any, value: Any, vt: ua.VariantType) -> None:
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
            f"the namespace (or server) URI of {show(x)} is not in the server's table",
        )

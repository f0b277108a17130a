"""RFC 8785 JSON Canonicalization Scheme (JCS) for Python JSON values.

``canonicalize(value)`` returns the one byte sequence RFC 8785 assigns to a JSON value, so that a
signature over it survives any re-serialisation (member order, whitespace, escapes, number
spelling) between publisher and subscriber.

Accepted input (nothing else, not even subclasses' custom serialisations):

========================  ========================================================
Python                    JSON
========================  ========================================================
``dict`` with str keys     object; members sorted by the UTF-16 code units of names
``list``, ``tuple``        array
``str``                    string (must be valid Unicode: no lone surrogates)
``int`` (not bool)         number; ``|i| <= 2**53`` or ``ValueError``
``float``                  number per ECMAScript ``Number.prototype.toString``;
                           NaN and ±Infinity raise ``ValueError``
``True``/``False``/None    ``true``/``false``/``null``
========================  ========================================================

Any other type raises ``TypeError`` naming the offending path. OPC UA JSON (Part 6 §5.4) writes
Int64/UInt64 as strings and NaN/Infinity as strings, so neither limit is reached by a correct
encoder; both exist so that precision can never be lost silently.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

__all__ = ["MAX_SAFE_INTEGER_MAGNITUDE", "canonicalize"]

#: Largest integer magnitude accepted. Every integer up to 2**53 is an exact IEEE 754 double.
MAX_SAFE_INTEGER_MAGNITUDE = 2**53

_SURROGATE = re.compile("[\ud800-\udfff]")

def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 serialisation of ``value``.

    Raises ``TypeError`` for a non-JSON type or a non-string object key, and ``ValueError`` for
    NaN/Infinity, an integer beyond ±2**53, or a string that is not valid Unicode (lone
    surrogate). The error message names the path of the offending value (``$/Fields/0/Name``).
    """
    try:
        return orjson.dumps(_prepared(value), option=orjson.OPT_SORT_KEYS)
    except (_Exact, TypeError):
        pass  # the exact path below decides: its bytes, or its error naming the path
    parts: list[str] = []
    try:
        _write(value, parts)
    except _Refused as refused:
        path = "/".join(["$", *map(str, reversed(refused.where))])
        raise refused.kind(f"canonical JSON: {path}: {refused.why}") from None
    return "".join(parts).encode("utf-8")


class _Exact(Exception):
    """A value :func:`_prepared` leaves to the exact path."""


def _prepared(value: Any) -> Any:
    """``value`` as orjson writes it canonically: each float as an ``orjson.Fragment`` of its
    ECMAScript form, the rest as it is. Raises :class:`_Exact` for what orjson would write
    otherwise than RFC 8785 or not refuse as it must (an object name that is not ASCII, sorted
    by UTF-16 there; an integer beyond ±2**53; NaN, Infinity; a subclass or another type).

    Why: a write-back answer's canonicalisation cost as much as its ECDSA signature written
    out member by member; orjson sorts ASCII names as RFC 8785 does (by code unit), escapes
    strings as it does (see :func:`_string`) and refuses lone surrogates (TypeError, which also
    sends the value to the exact path, to be reported there)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER_MAGNITUDE <= value <= MAX_SAFE_INTEGER_MAGNITUDE:
            return value
        raise _Exact
    if kind is float:
        if math.isfinite(value):
            return orjson.Fragment(_number(value))
        raise _Exact
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise _Exact
            out[key] = _prepared(item)
        return out
    if kind is list or kind is tuple:
        return [_prepared(item) for item in value]
    raise _Exact


class _Refused(Exception):
    """A value canonical JSON cannot hold; ``where`` is filled in, innermost key first, as it
    travels up, so that the path is only made for a value refused (signing a write-back answer
    made it for every value: a third of the time canonicalisation took)."""

    def __init__(self, kind: type[Exception], why: str) -> None:
        self.kind, self.why = kind, why
        self.where: list[object] = []


def _write(value: Any, out: list[str]) -> None:
    # Order matters: bool is a subclass of int.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(float(value)))
    elif isinstance(value, dict):
        _object(value, out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            try:
                _write(item, out)
            except _Refused as refused:
                refused.where.append(index)
                raise
        out.append("]")
    else:
        raise _Refused(
            TypeError,
            f"{type(value).__name__} is not a JSON type "
            "(dict, list, tuple, str, int, float, bool or None)",
        )


def _object(value: dict[Any, Any], out: list[str]) -> None:
    for key in value:
        if not isinstance(key, str):
            raise _Refused(TypeError, f"object key {key!r} is {type(key).__name__}, not str")
    # Sorting by UTF-16BE bytes is sorting by UTF-16 code units (RFC 8785 §3.2.3), which is
    # sorting by code points unless a name holds a character from U+E000 on. Lone surrogates
    # would make encode() fail: report them as invalid strings.
    if "".join(value).isascii():
        items = sorted(value.items())
    else:
        try:
            items = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        except UnicodeEncodeError:
            raise _Refused(ValueError, "object key is not valid Unicode (lone surrogate)") from None
    out.append("{")
    for index, (key, item) in enumerate(items):
        if index:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        try:
            _write(item, out)
        except _Refused as refused:
            refused.where.append(key)
            raise
    out.append("}")


def _string(value: str) -> str:
    # RFC 8785 §3.2.2.2: the only escapes are \" \\ \b \t \n \f \r and \u00xx (lowercase
    # hex) for the other controls U+0000..U+001F; everything else is written as itself. orjson
    # escapes exactly so (the tests check every character), and refuses invalid Unicode.
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        surrogate = _SURROGATE.search(value)
        where = f" U+{ord(surrogate.group()):04X}" if surrogate else ""
        raise _Refused(
            ValueError, f"string contains a lone surrogate{where} (not valid Unicode)"
        ) from None


def _integer(value: int) -> str:
    value = int(value)  # int subclasses (IntEnum, ...) serialise as their numeric value
    if abs(value) > MAX_SAFE_INTEGER_MAGNITUDE:
        raise _Refused(
            ValueError,
            f"integer {value} exceeds ±2**53 and cannot be represented "
            "exactly as a JSON number (encode 64-bit integers as strings)",
        )
    # Exact as a double, and below 1e21, so ECMAScript prints the plain decimal digits.
    return str(value)


def _number(value: float) -> str:
    """ECMAScript Number::toString for a finite double (ECMA-262 6.1.6.1.20, RFC 8785 §3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise _Refused(
            ValueError,
            f"{value!r} is not a JSON number "
            '(OPC UA encodes it as the string "NaN", "Infinity" or "-Infinity")',
        )
    if value == 0.0:
        return "0"  # also -0.0
    if value < 0:
        return "-" + _number(-value)
    digits, n = _shortest_digits(value)
    k = len(digits)
    # value == 0.d1d2...dk × 10**n with d1 != 0 and dk != 0, k as small as possible.
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{sign}{abs(exponent)}"


def _shortest_digits(value: float) -> tuple[str, int]:
    """Return (digits, n) with ``value == 0.<digits> × 10**n`` for the shortest round-trip digits.

    Python's ``repr(float)`` produces the shortest digit string that round-trips (David Gay's
    algorithm), which is the digit string ECMAScript requires; when two shortest strings exist
    both pick the one closest to the exact value. Only the layout differs, so parse it.
    """
    text = repr(value)  # e.g. "123.45", "1e+21", "1.5e-07", "5e-324"
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    raw = whole + fraction
    stripped = raw.lstrip("0")
    leading_zeros = len(raw) - len(stripped)
    digits = stripped.rstrip("0")
    # value == int(raw) × 10**(exponent - len(fraction)); the first significant digit sits at
    # position len(whole) - leading_zeros relative to the decimal point.
    n = len(whole) - leading_zeros + exponent
    return digits, n


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook that refuses a repeated member name: parsers disagree on
    which copy wins, so a signed or commanded document must not have one (I-JSON, RFC 7493 §2.3)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key[:60]!r}")
        out[key] = value
    return out

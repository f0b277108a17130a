"""A write request refused whole or parsed: size, JSON, schema, number of targets, deadline.

Also the errors every step raises and the short renderings of JSON values their messages use."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.canonical_json import unique_members
from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.schema_validation import load_schema, validator
from opcua_mqtt.core.topics import topic_problem
from opcua_mqtt.core.uajson.scalars import (
    json_type,
    status_symbol,
)

VT = ua.VariantType

REQUEST_SCHEMA: Final = "write-request"
RESPONSE_SCHEMA: Final = "write-response"

S = ua.StatusCodes

#: Arrays of more dimensions than this are refused (BadOutOfRange).
MAX_RANK: Final = 32
#: Integers a double holds exactly, with no neighbour that rounds to it: |n| < 2**53.
EXACT_DOUBLE_INT: Final = 2**53
FLOAT32_MAX: Final = 3.4028234663852886e38

SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Types whose value may be JSON null (Part 6 Table 1: the nullable ones a write can mean).
NULLABLE: Final = frozenset({VT.String, VT.ByteString, VT.XmlElement})
ANY_TYPE: Final = frozenset({VT.Null, VT.Variant})  # built-in 0 or 24: BaseDataType & co.

DIGITS: Final = re.compile(r"-?[0-9]{1,20}")
DATETIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
INDEX_RANGE: Final = re.compile(r"[0-9]+(?::[0-9]+)?(?:,[0-9]+(?::[0-9]+)?)*")


# ------------------------------------------------------------------------------------ errors


class _StatusError(OpcUaMqttError):
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
    #: A command target (docs/commands.md) as parsed JSON; core/commands.py reads it.
    command: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """``Writer/Field`` or the NodeId, for log lines."""
        if self.command is not None:
            c = self.command
            return f"{c['Method']} {c.get('ConditionId') or c.get('MethodId')}"
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
        raise RequestError(S.BadDecodingError, f"not JSON: {shorten(str(e))}") from None
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
    commands = sum("Method" in t for t in obj["Targets"])
    if commands not in (0, len(obj["Targets"])):
        raise RequestError(
            S.BadDecodingError, "Targets: a request holds writes or commands, not both"
        )
    for i, t in enumerate(obj["Targets"]):
        if "Method" in t:
            parsed.append(Target(None, None, None, None, command=t))
            continue
        index_range = t.get("IndexRange")
        if index_range is not None and not INDEX_RANGE.fullmatch(index_range):
            raise RequestError(S.BadDecodingError, f"Targets/{i}/IndexRange: {INDEX_RANGE_HELP}")
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
        raise ValueError(f"the number {shorten(text, 40)} is beyond the range of a double")
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
        where = shorten(path, 80) or "(top level)"
        raise RequestError(
            S.BadDecodingError, f"{where}: a string holds a lone surrogate (not Unicode text)"
        ) from None


def _parse_deadline(text: str) -> datetime:
    m = DATETIME.fullmatch(text)
    if m is None or m.group(8) is None:
        raise RequestError(S.BadDecodingError, f"Deadline: {_DEADLINE_HELP}")
    try:
        return to_datetime(m)
    except (ValueError, OverflowError) as e:
        raise RequestError(S.BadDecodingError, f"Deadline: {e}") from None


def to_datetime(m: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int(((m.group(7) or "") + "000000")[:6])
    dt = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=UTC)
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        dt = dt - offset if zone[0] == "+" else dt + offset
    return dt


INDEX_RANGE_HELP: Final = "not a NumericRange (e.g. 2, 1:3 or 0:1,2:3)"
_DEADLINE_HELP: Final = "not an RFC 3339 date-time with a time zone (e.g. 2026-11-25T12:00:05Z)"
_PATTERN_HELP: Final = {
    "RequestId": "control characters are not allowed",
    "Deadline": _DEADLINE_HELP,
    "ReplyTo": "not an MQTT topic name the broker accepts (no + or #, control characters or "
    "noncharacters; not starting with $)",
    "NodeId": "not a NodeId in namespace-URI form (nsu=<uri>;s=… or i=…, s=…, g=…, b=…)",
    "IndexRange": INDEX_RANGE_HELP,
    "Writer": "a name cannot contain / or control characters",
    "Field": "a name cannot contain / or control characters",
}
_TARGET_SHAPE: Final = "a target names either Writer and Field, or NodeId, and has a Value"


@dataclass(frozen=True)
class _StringRule:
    """A ``"type": "string"`` rule of the request schema: lengths and pattern, as jsonschema
    applies them (``pattern`` is searched, lengths count code points)."""

    min_length: int
    max_length: int
    pattern: re.Pattern[str]
    date_time: bool  # format "date-time": also readable by Python (else jsonschema judges)

    @classmethod
    def of(cls, rule: dict[str, Any]) -> _StringRule:
        if (
            rule.get("type") != "string"
            or set(rule) - _STRING_KEYWORDS
            or rule.get("format", "date-time") != "date-time"
        ):
            raise ValueError(f"not a plain string rule: {sorted(rule)}")
        return cls(
            rule.get("minLength", 0),
            rule.get("maxLength", 2**63),
            re.compile(rule["pattern"]),
            "format" in rule,
        )

    def ok(self, value: object) -> bool:
        return (
            isinstance(value, str)
            and self.min_length <= len(value) <= self.max_length
            and self.pattern.search(value) is not None
            and (not self.date_time or _iso_datetime(value))
        )


_STRING_KEYWORDS: Final = frozenset(
    {"type", "minLength", "maxLength", "pattern", "format", "description"}
)


@cache
def _fast_rules() -> tuple[dict[str, _StringRule], dict[str, _StringRule]]:
    """The string rules of the request's members and of a target's, read from the schema."""
    schema = load_schema(REQUEST_SCHEMA)
    defs = schema["$defs"]
    top = {k: _StringRule.of(v) for k, v in schema["properties"].items() if k != "Targets"}
    target = {
        k: _StringRule.of(defs[v["$ref"].rsplit("/", 1)[1]] if "$ref" in v else v)
        for k, v in defs["Target"]["properties"].items()
        if k != "Value"
    }
    return top, target


def fast_valid(obj: dict[str, Any]) -> bool:
    """Whether the request schema surely accepts ``obj``, checked directly: True only where
    the schema's rules (its string rules, the members allowed and required, the Writer+Field
    or NodeId choice) all hold; False means "ask jsonschema", which finds the error or accepts
    (a Deadline Python cannot read, for one). jsonschema took most of the time of parsing a
    request; the property test in tests/unit/test_write_request.py holds the two together."""
    top, target_rules = _fast_rules()
    for key, value in obj.items():
        if key == "Targets":
            continue
        rule = top.get(key)
        if rule is None or not rule.ok(value):
            return False
    targets = obj.get("Targets")
    if not isinstance(targets, list) or not targets:
        return False
    for t in targets:
        if not isinstance(t, dict) or "Value" not in t:
            return False
        for key, value in t.items():
            if key != "Value" and not ((rule := target_rules.get(key)) and rule.ok(value)):
                return False
        by_node = "NodeId" in t
        if by_node == ("Writer" in t or "Field" in t):
            return False
        if not by_node and not ("Writer" in t and "Field" in t):
            return False
    return True


def _iso_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _validate(obj: dict[str, Any]) -> None:
    if fast_valid(obj):
        return
    # jsonschema only for a request the fast check doubts: a bridge that is never sent a bad
    # one never loads it (~6 MiB).
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

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
    return shorten("/".join(str(p) for p in error.absolute_path), 120)


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
        names = ", ".join(shorten(repr(k), 40) for k in extra[:5])
        return f"unknown member {names}" if len(extra) == 1 else f"unknown members {names}"
    try:
        return shorten(str(error.message))
    except RecursionError:
        return f"fails the schema's {kind!r} rule"


@cache
def _request_id_rule() -> Any:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    schema = load_schema(REQUEST_SCHEMA)["properties"]["RequestId"]
    return Draft202012Validator(schema)


def valid_request_id(value: object) -> bool:
    """Whether ``value`` is a RequestId the request schema accepts: the one rule for reading the
    RequestId of a request refused before it was parsed (to echo it and log it)."""
    return bool(_request_id_rule().is_valid(value))


# ----------------------------------------------------------------------------------- helpers


def show(x: Any) -> str:
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
        text = shorten(json.dumps(x, ensure_ascii=False), 60)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return json_type(x)


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Write-back's small helpers: reading a command's MQTT properties and, leniently, a refused
payload; what may be answered to; log-line forms of values, status codes and who asked."""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Mapping
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.opcua.facts import LengthLimits
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.request_auth import Identity
from opcua_mqtt.core.topics import topic_problem
from opcua_mqtt.core.uajson.node_ids import canonical_node_id
from opcua_mqtt.core.uajson.scalars import status_symbol
from opcua_mqtt.core.write_request.request import valid_request_id

S = ua.StatusCodes


def length_limits(limits: LengthLimits) -> dict[str, Any]:
    """convert_value's keyword arguments for ``limits``."""
    out: dict[str, Any] = {}
    if (string := limits.string) is not None:
        out |= {"max_string_length": string.length, "max_string_length_of": string.owner}
    if (byte_string := limits.byte_string) is not None:
        out |= {
            "max_byte_string_length": byte_string.length,
            "max_byte_string_length_of": byte_string.owner,
        }
    return out


#: NodeId texts longer than this are not remembered by :func:`canonical_or_none` (a request
#: may name any string: the cache must stay small whatever requesters send).
_REMEMBERED_NODE_ID_CHARS = 256


def canonical_or_none(node_id: str) -> str | None:
    """The canonical form of a NodeId text (None if it is none): remembered for the texts
    requests repeat, as each request needs it twice (its claims, the allow-list)."""
    if len(node_id) > _REMEMBERED_NODE_ID_CHARS:
        return _canonical_or_none(node_id)
    return _remembered_canonical_or_none(node_id)


def _canonical_or_none(node_id: str) -> str | None:
    try:
        return canonical_node_id(node_id)
    except ValueError:
        return None


_remembered_canonical_or_none = functools.lru_cache(maxsize=4096)(_canonical_or_none)


def brief_repr() -> reprlib.Repr:
    """Values in log lines: a 60 kB string or a deeply nested array is shown by its start."""
    brief = reprlib.Repr()  # keyword arguments only from Python 3.12 on
    brief.maxlevel, brief.maxlist, brief.maxdict = 3, 8, 8
    brief.maxstring = brief.maxother = 80
    return brief


BRIEF = brief_repr()


def extra(request_id: str | None, who: Identity | None = None, **fields: str) -> dict[str, str]:
    """Structured log fields (``--log-format json``): the RequestId when there is one, and who
    asked (``requester``, and ``requester_proven`` "true" for a verified certificate)."""
    if who is not None:
        fields = {"requester": who.name, "requester_proven": str(who.proven).lower(), **fields}
    return fields if request_id is None else {"request_id": request_id, **fields}


def publishable(topic: str) -> bool:
    """Whether an answer may go to ``topic``: the broker drops a client that publishes to a
    topic it refuses (see ``topic_problem``), which would stop publishing; ``$`` topics are the
    broker's own."""
    return not topic.startswith("$") and topic_problem(topic) is None


def status_name(code: int) -> str:
    """The StatusCode's name as the answers write it, or its hex value if it is not known."""
    return status_symbol(int(code)) or f"0x{int(code):08X}"


def failure_status(e: Exception) -> int:
    if isinstance(e, ua.UaStatusCodeError):
        return int(e.code)
    if isinstance(e, OSError | TimeoutError):  # ConnectionError is an OSError
        return int(S.BadCommunicationError)
    return int(S.BadInternalError)


def int_value(dv: ua.DataValue) -> int:
    if not dv.StatusCode.is_good() or dv.Value is None or dv.Value.Value is None:
        return 0
    return int(dv.Value.Value)


def prop(props: Mapping[str, Any], name: str) -> Any:
    value = props.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value


def lenient(payload: bytes, max_bytes: int) -> tuple[str | None, str | None]:
    """RequestId and ReplyTo of a request refused as a whole, where they can be read at all;
    a payload over the size limit is not parsed (its refusal must stay cheap)."""
    if len(payload) > max_bytes:
        return None, None
    try:
        obj = loads(payload)
    except DecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    rid, reply = obj.get("RequestId"), obj.get("ReplyTo")
    return (
        rid if valid_request_id(rid) else None,
        reply if isinstance(reply, str) else None,
    )

"""The answer to a write request: per-target results and the overall StatusCode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import ua

from opcua_mqtt.core.errors import EncodeError
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import (
    status_symbol,
)
from opcua_mqtt.core.write_request.request import S


@dataclass(frozen=True)
class TargetResult:
    """The outcome of one target; ``written`` is the value written (when Good)."""

    status: int
    written: ua.Variant | None = None
    node_id: str | None = None
    writer: str | None = None
    field: str | None = None
    message: str | None = None
    method: str | None = None  # a command's (docs/commands.md)
    outputs: tuple[ua.Variant, ...] | None = None  # a Call's OutputArguments


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
        if r.method is not None:
            t["Method"] = r.method
        if r.outputs is not None:
            try:
                t["OutputArguments"] = [compact.encode_variant(v) for v in r.outputs]
            except (EncodeError, ValueError, TypeError) as e:
                message = f"{message + '; ' if message else ''}the outputs cannot be shown: {e}"
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

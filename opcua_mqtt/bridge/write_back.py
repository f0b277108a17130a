"""Write-back: MQTT commands that write OPC UA nodes, deny-by-default and always answered.

Order of checks for one request (docs/write-back.md): rate limit, size, syntax and schema,
deadline, idempotency (a repeated RequestId gets the first answer again, nothing is written
twice), then per target: allow-list, the server's AccessLevel and UserAccessLevel, exact
conversion to the node's DataType; only then one batched Write. Every attempt is logged once
with the old value, the new value and the result. Nothing here can stop publishing: a failure
becomes an error response (or a log line when there is nowhere to answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, ua

from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.adapters.opcua_types import builtin_type_of
from opcua_mqtt.core.config import canonical_node_id
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.json_encoding import JsonCodec, NamespaceTable
from opcua_mqtt.core.messages import dumps, loads
from opcua_mqtt.core.topics import TopicTree, escape_level
from opcua_mqtt.core.write_request import (
    ConversionError,
    IdempotencyCache,
    RateLimiter,
    RequestError,
    Target,
    TargetResult,
    WriteRequest,
    build_response,
    convert_value,
    error_response,
    parse_request,
)

_log = logging.getLogger(__name__)

S = ua.StatusCodes
_WRITE_BIT = 1 << 1  # AccessLevel CurrentWrite (OPC 10000-3 §8.57)


@dataclass(frozen=True)
class WriteBackSettings:
    allowed: frozenset[str] = frozenset()  # canonical NodeIds (core.config.write_back_allowed)
    max_bytes: int = 65536
    max_targets: int = 100
    rate_per_s: float = 20.0
    burst: int = 40
    idempotency_window_s: float = 300.0


def command_topic(topics: TopicTree, publisher_id: str) -> str:
    """``<prefix>/json/cmd/<PublisherId>/write``: beside the Part 14 tree, never inside a
    standard message type, so standard subscribers never see commands."""
    return f"{topics.prefix}/{topics.encoding}/cmd/{escape_level(publisher_id)}/write"


class WriteBack:
    """Serves the command topic of one bridge."""

    def __init__(
        self,
        settings: WriteBackSettings,
        *,
        mqtt: MqttSession,
        topic: str,
        fields: Mapping[tuple[str, str], str],
        client: Callable[[], Client | None],
        namespaces: Callable[[], list[str]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self._mqtt = mqtt
        self._fields = dict(fields)  # (writer, field) -> NodeId string
        self._client = client
        self._namespaces = namespaces
        self._monotonic = monotonic
        self._seen = IdempotencyCache(settings.idempotency_window_s)
        self._rate = RateLimiter(settings.rate_per_s, settings.burst)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one request at a time: writes stay in arrival order
        self.counts: dict[str, int] = {}

    def attach(self) -> None:
        self._mqtt.subscribe(self.topic, self._on_message, qos=1)
        _log.info(
            "write-back listening on %s (%d nodes allowed)", self.topic, len(self.settings.allowed)
        )

    def _on_message(self, _topic: str, payload: bytes, props: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._serve(payload, props))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, payload: bytes, props: Mapping[str, Any]) -> None:
        reply = _prop(props, "response_topic")
        correlation = _prop(props, "correlation_data")
        request_id: str | None = None
        try:
            if not self._rate.allow(self._monotonic()):
                raise RequestError(S.BadResourceUnavailable, "rate limit exceeded; retry later")
            request = parse_request(
                payload, max_bytes=self.settings.max_bytes, max_targets=self.settings.max_targets
            )
            request_id = request.request_id
            reply = reply or request.reply_to
            if request.deadline is not None and request.deadline <= datetime.now(UTC):
                raise RequestError(S.BadTimeout, "the request's deadline has passed; not written")
            if request_id is not None:
                cached = self._seen.get(request_id, self._monotonic())
                if cached is not None:
                    self._count("duplicate")
                    self._answer(reply, correlation, cached)
                    return
            async with self._lock:
                # Again inside the lock: a copy that arrived meanwhile must not write twice.
                cached = self._seen.get(request_id, self._monotonic()) if request_id else None
                if cached is not None:
                    self._count("duplicate")
                    self._answer(reply, correlation, cached)
                    return
                response = dumps(await self._execute(request))
            if request_id is not None:
                self._seen.put(request_id, response, self._monotonic())
            self._answer(reply, correlation, response)
        except RequestError as e:
            self._count("refused")
            request_id = request_id or _lenient_request_id(payload)
            reply = reply or _lenient_reply_to(payload)
            _log.warning("write request %s refused: %s", request_id or "(no id)", e.message)
            self._answer(reply, correlation, dumps(error_response(request_id, e.status, e.message)))

    def _answer(self, reply: str | None, correlation: Any, payload: bytes) -> None:
        if not reply:
            _log.info("write request has no reply address; the answer is only logged")
            return
        props = {"correlation_data": correlation} if correlation is not None else {}
        self._mqtt.publish(Outgoing(reply, payload, qos=1, properties=props))

    def _count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1

    async def _execute(self, request: WriteRequest) -> dict[str, Any]:
        namespaces = self._namespaces()
        codec = JsonCodec(namespaces=NamespaceTable(namespaces))
        client = self._client()
        results: list[TargetResult | None] = []
        pending: list[tuple[int, Target, str, ua.NodeId]] = []
        for i, target in enumerate(request.targets):
            node_text = target.node_id
            if node_text is None:
                node_text = self._fields.get((target.writer or "", target.field or ""))
                if node_text is None:
                    results.append(
                        _result(
                            target,
                            S.BadNodeIdUnknown,
                            None,
                            f"no field {target.writer}/{target.field}",
                        )
                    )
                    continue
            if _canonical(node_text) not in self.settings.allowed:
                results.append(
                    _result(
                        target, S.BadUserAccessDenied, node_text, "not on the write-back allow-list"
                    )
                )
                continue
            if client is None:
                results.append(
                    _result(
                        target,
                        S.BadServerNotConnected,
                        node_text,
                        "the OPC UA server is not connected",
                    )
                )
                continue
            try:
                node_id = codec.decode_node_id(node_text)
            except DecodeError as e:
                results.append(_result(target, S.BadNodeIdInvalid, node_text, str(e)))
                continue
            results.append(None)
            pending.append((i, target, node_text, node_id))
        if pending and client is not None:
            await self._write(client, codec, pending, results)
        final = [r for r in results if r is not None]
        for r in final:
            self._count("good" if r.status == 0 else "bad")
        return build_response(request.request_id, final, codec)

    async def _write(
        self,
        client: Client,
        codec: JsonCodec,
        pending: list[tuple[int, Target, str, ua.NodeId]],
        results: list[TargetResult | None],
    ) -> None:
        attrs = (
            ua.AttributeIds.DataType,
            ua.AttributeIds.ValueRank,
            ua.AttributeIds.ArrayDimensions,
            ua.AttributeIds.AccessLevel,
            ua.AttributeIds.UserAccessLevel,
            ua.AttributeIds.Value,
        )
        read = await client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=n, AttributeId=a) for _, _, _, n in pending for a in attrs
                ]
            )
        )
        writes: list[tuple[int, Target, str, ua.Variant, Any]] = []
        for k, (i, target, text, _node_id) in enumerate(pending):
            dtype, rank, dims, access, user_access, old = read[
                k * len(attrs) : (k + 1) * len(attrs)
            ]
            if not dtype.StatusCode.is_good():
                results[i] = _result(target, dtype.StatusCode.value, text, "cannot read the node")
                continue
            writable = _int(access) & _WRITE_BIT and (
                not user_access.StatusCode.is_good() or _int(user_access) & _WRITE_BIT
            )
            if not writable:
                results[i] = _result(
                    target, S.BadNotWritable, text, "the server says this node is not writable"
                )
                continue
            try:
                builtin = await builtin_type_of(client, dtype.Value.Value)
                variant = convert_value(
                    target.value,
                    builtin_type=builtin,
                    value_rank=int(rank.Value.Value) if rank.StatusCode.is_good() else -1,
                    array_dimensions=tuple(dims.Value.Value or ())
                    if dims.StatusCode.is_good() and dims.Value is not None and dims.Value.Value
                    else (),
                    codec=codec,
                    index_range=target.index_range,
                )
            except ConversionError as e:
                results[i] = _result(target, e.status, text, e.message)
                continue
            writes.append((i, target, text, variant, old.Value.Value if old.Value else None))
        if not writes:
            return
        statuses = await client.uaclient.write(
            ua.WriteParameters(
                NodesToWrite=[
                    ua.WriteValue(
                        NodeId=codec.decode_node_id(text),
                        AttributeId=ua.AttributeIds.Value,
                        IndexRange=target.index_range,
                        Value=ua.DataValue(variant),
                    )
                    for _, target, text, variant, _ in writes
                ]
            )
        )
        for (i, target, text, variant, old_value), status in zip(writes, statuses, strict=True):
            code = status.value
            _log.info(
                "write %s: %r -> %r: %s",
                text,
                old_value,
                variant.Value,
                ua.StatusCode(code).name,
                extra={"node_id": text, "result": ua.StatusCode(code).name},
            )
            results[i] = TargetResult(
                status=code,
                written=variant if code == 0 else None,
                node_id=text,
                writer=target.writer,
                field=target.field,
            )


def _canonical(node_id: str) -> str | None:
    try:
        return canonical_node_id(node_id)
    except ValueError:
        return None


def _result(target: Target, status: int, node_id: str | None, message: str) -> TargetResult:
    return TargetResult(
        status=int(status),
        node_id=node_id,
        writer=target.writer,
        field=target.field,
        message=message,
    )


def _int(dv: ua.DataValue) -> int:
    if not dv.StatusCode.is_good() or dv.Value is None or dv.Value.Value is None:
        return 0
    return int(dv.Value.Value)


def _prop(props: Mapping[str, Any], name: str) -> Any:
    value = props.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value


def _lenient_request_id(payload: bytes) -> str | None:
    """The RequestId of a request refused as a whole, if one can be read at all."""
    try:
        obj = loads(payload)
    except DecodeError:
        return None
    rid = obj.get("RequestId") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None


def _lenient_reply_to(payload: bytes) -> str | None:
    try:
        obj = loads(payload)
    except DecodeError:
        return None
    reply = obj.get("ReplyTo") if isinstance(obj, dict) else None
    if isinstance(reply, str) and reply and not any(c in reply for c in "+#\0"):
        return reply
    return None

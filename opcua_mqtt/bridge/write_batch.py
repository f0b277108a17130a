"""Write-back's carrying out: requests in arrival order, batched into one Read and one Write.

Requests that wait for their turn while a batch is at the server (or that arrive in the same
turn of the event loop) are carried out together: one Read of the attributes the checks need
and one Write for every target of every request of the batch, so that 16 requests in flight
cost two OPC UA round trips instead of 32. The Read asks for what may change between two
writes (AccessLevel, UserAccessLevel, the value replaced); a node's DataType, ValueRank and
ArrayDimensions are read once per session (see :class:`_Shape`).

Batches overlap, two at most: the next one starts (its Read goes out) once the previous one's
Read is answered and only its Write is left, so that a Read and a Write share each round trip
to the server instead of following each other, and requests arriving meanwhile wait one round
trip, not two.

Arrival order is kept where it matters: a batch is taken from the head of the queue and ends
before the first request that writes a node a request already in it, or in the batch still in
flight, writes (or repeats a RequestId of its requester); a request whose node the batch in
flight writes waits until that batch is done, and so does everything behind it. So writes to
one node are carried out in request order, each Read and Write after the previous Write to it
is answered, and the value before the write in the audit line is the one the request replaced.
A batch with a command (Acknowledge, Call, ...) overlaps no other: what a command changes is
not known beforehand.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.opcua.session import OpcUaSession
from opcua_mqtt.bridge.write_back_support import (
    BRIEF,
    canonical_or_none,
    extra,
    int_value,
    length_limits,
    status_name,
)
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.request_auth import Identity, RequestAuth
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.write_request.convert import convert_value
from opcua_mqtt.core.write_request.request import ConversionError, Target, WriteRequest
from opcua_mqtt.core.write_request.response import TargetResult, build_response

_log = logging.getLogger("opcua_mqtt.bridge.write_back")  # the audit lines keep their logger

S = ua.StatusCodes
_WRITE_BIT = 1 << 1  # AccessLevel CurrentWrite (OPC 10000-3 §8.57)
#: What the checks read of each target's node in every batch: whether the server lets the
#: bridge write it now, and the value the write replaces (for the audit line).
_FRESH = (
    ua.AttributeIds.AccessLevel,
    ua.AttributeIds.UserAccessLevel,
    ua.AttributeIds.Value,
)
#: What they read once per node and session (see :class:`_Shape`).
_SHAPE = (
    ua.AttributeIds.DataType,
    ua.AttributeIds.ValueRank,
    ua.AttributeIds.ArrayDimensions,
)
_UNTYPED = frozenset({0, int(ua.VariantType.Variant)})  # abstract DataTypes take any type
#: Requests per batch at most: bounds the Read and Write (at most this × max_targets
#: operations, split further by the server's OperationLimits) and the wait of the last one.
MAX_BATCH = 64
#: Batches carried out at once: the next one's Read goes out while the previous one's Write
#: is at the server.
DEPTH = 2


@dataclass(eq=False)
class Job:
    """A request whose turn has not come yet; ``done`` gets its answer as sent (None when a
    copy's answer was repeated instead) or the exception that refused or failed it."""

    request: WriteRequest
    who: Identity
    key: tuple[str, str | None]  # (requester, RequestId): the idempotency key
    digest: str
    expires: float | None  # monotonic time its MQTT 5 message expiry passes
    reply: str | None
    correlation: Any
    #: What no other request of its batch may share: the nodes it writes, its idempotency key.
    claims: frozenset[object]
    done: asyncio.Future[bytes | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def exclusive(self) -> bool:
        """A command (Acknowledge, Call, ...): its effects on nodes are not known beforehand,
        so its batch overlaps no other."""
        return self.request.targets[0].command is not None


def claims_of(
    request: WriteRequest, who: Identity, fields: Mapping[tuple[str, str], str]
) -> frozenset[object]:
    """The nodes ``request`` writes (canonical NodeIds where they parse, else as written) and,
    if it has a RequestId, its idempotency key."""
    claims: set[object] = set()
    for t in request.targets:
        text = t.node_id or fields.get((t.writer or "", t.field or ""), t.label)
        claims.add(canonical_or_none(text) or text)
    if request.request_id is not None:
        claims.add((who.key, request.request_id))
    return frozenset(claims)


class WriteQueue:
    """Requests in arrival order, handed to ``run`` in batches (see the module docstring),
    at most ``depth`` batches at once; ``run(batch, checked)`` must settle every job's
    ``done`` and call ``checked()`` once the batch's Reads are answered and only its Writes
    are left (the next batch may start then; a batch that ends counts as checked)."""

    def __init__(
        self,
        run: Callable[[list[Job], Callable[[], None]], Awaitable[None]],
        max_batch: int = MAX_BATCH,
        depth: int = DEPTH,
    ):
        self._run = run
        self._max = max_batch
        self._depth = depth
        self._waiting: deque[Job] = deque()
        self._flights: list[_Flight] = []  # batches carried out now, oldest first
        self._moved = asyncio.Event()  # a batch in flight was checked or ended
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0  # batches started so far

    def submit(self, job: Job) -> None:
        self._waiting.append(job)
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Start batches while requests wait; the flights own themselves (each ends by
        settling its jobs), so this ends as soon as nothing waits."""
        try:
            while self._waiting:
                await asyncio.sleep(0)  # requests arriving in this turn of the loop join
                batch = self._take() if self._room() else []
                if not batch:  # wait for a batch in flight to move on
                    self._moved.clear()
                    await self._moved.wait()
                    continue
                flight = _Flight(batch)
                self._flights.append(flight)
                self.batches += 1
                flight.task = asyncio.ensure_future(self._fly(flight))
        finally:
            self._drainer = None

    def _room(self) -> bool:
        """Whether a batch may start now: fewer than ``depth`` in flight, the newest past its
        Reads (so that requests keep gathering while a Read is at the server) and none that
        holds a command (they overlap nothing)."""
        flights = self._flights
        return not flights or (
            len(flights) < self._depth
            and flights[-1].checked
            and not any(f.exclusive for f in flights)
        )

    async def _fly(self, flight: _Flight) -> None:
        """Carry out one batch; whatever happens, each of its requests is settled and the
        queue hears that the batch is gone."""
        batch = flight.jobs
        try:
            await self._run(batch, functools.partial(self._checked, flight))
        except Exception as e:  # noqa: BLE001 - a bug: each request answers it (failed)
            for job in batch:
                if not job.done.done():
                    job.done.set_exception(e)
        finally:
            for job in batch:
                if not job.done.done():  # cancelled while at the server
                    job.done.cancel()
            self._flights.remove(flight)
            self._moved.set()

    def _checked(self, flight: _Flight) -> None:
        flight.checked = True
        self._moved.set()

    def _take(self) -> list[Job]:
        """From the head of the queue, up to the first request that shares a claim with the
        batch or a batch in flight (or, with one in flight, holds a command); empty when the
        head itself does: it waits for that batch to end, and so does everything behind it."""
        claimed: set[object] = set()
        for flight in self._flights:
            claimed |= flight.claims
        overlapping = bool(self._flights)
        batch: list[Job] = []
        while self._waiting and len(batch) < self._max:
            job = self._waiting[0]
            if not claimed.isdisjoint(job.claims) or (overlapping and job.exclusive):
                break
            claimed |= job.claims
            batch.append(self._waiting.popleft())
        return batch


@dataclass(eq=False)
class _Flight:
    """A batch being carried out: what it claims, and whether it is past its Reads."""

    jobs: list[Job]
    checked: bool = False
    task: asyncio.Task[None] | None = None
    claims: frozenset[object] = field(init=False)
    exclusive: bool = field(init=False)

    def __post_init__(self) -> None:
        self.claims = frozenset().union(*(j.claims for j in self.jobs))
        self.exclusive = any(j.exclusive for j in self.jobs)


@dataclass(frozen=True)
class _Shape:
    """A node's DataType, ValueRank and ArrayDimensions, remembered per session: reading them
    for every write was half of the bridge's work per write (asyncua encodes and decodes six
    attributes per node). A new session (a restarted server) reads them anew; within one, a
    node whose current value no longer fits (another built-in type, or array against scalar:
    the DataType was changed at run time) has them read again before its write."""

    data_type: ua.NodeId
    value_rank: int
    dimensions: tuple[int, ...]

    def fits(self, builtin: int, value: ua.DataValue) -> bool:
        """Whether ``value``, the node's current one, can be of this shape (``builtin``: the
        DataType's built-in type): of that type unless it is abstract, an array where the
        ValueRank says array and a scalar where it says scalar."""
        variant = value.Value
        if variant is None or variant.VariantType == ua.VariantType.Null:
            return True
        if builtin not in _UNTYPED and variant.VariantType.value != builtin:
            return False
        if self.value_rank == -1:
            return not variant.is_array
        return variant.is_array or self.value_rank < 0  # -2 and -3 allow a scalar


@dataclass
class _Pending:
    """A target that passed the checks that need no server: where its result goes."""

    job: Job
    results: list[TargetResult | None]
    slot: int
    target: Target
    text: str  # the NodeId as the request or the configuration wrote it
    node_id: ua.NodeId


#: A target to write: the value converted, and the value it replaces (for the audit line).
_Write = tuple[_Pending, ua.Variant, Any]


class TargetWriter:
    """Checks and writes the targets of a batch of requests: the requester's allow-list, the
    server's AccessLevel and UserAccessLevel, exact conversion; one Read, one Write."""

    def __init__(
        self,
        *,
        allowed: frozenset[str],
        auth: RequestAuth,
        fields: Mapping[tuple[str, str], str],
        session: Callable[[str | None, tuple[str, str] | None], OpcUaSession | None],
    ) -> None:
        """``session(canonical NodeId, (writer, field) or None)``: the session of the source
        that publishes the target (bridge/sources.py), None while it is away."""
        self._allowed = allowed
        self._auth = auth
        self._fields = fields
        self._session = session
        self._shapes: weakref.WeakKeyDictionary[OpcUaSession, dict[ua.NodeId, _Shape]] = (
            weakref.WeakKeyDictionary()
        )

    async def execute(
        self, jobs: Sequence[Job], checked: Callable[[], None]
    ) -> list[tuple[dict[str, Any], bool]]:
        """Each job's answer (unsealed) and whether every one of its targets was written:
        one Read and one Write per server (source) the batch writes to; ``checked()`` when
        the Reads are answered and only the Writes are left."""
        servers: dict[int, tuple[OpcUaSession, JsonCodec, list[_Pending]]] = {}
        all_results = [await self._resolve(job, servers) for job in jobs]
        writes = [
            (session, await self._check(session, server_codec, pending))
            for session, server_codec, pending in servers.values()
            if pending
        ]
        checked()
        for session, passed in writes:
            if passed:
                await self._write(session, passed)
        # the answers' NodeIds in the namespaces of the first server written to, if any
        codec = next(iter(servers.values()))[1] if servers else JsonCodec()
        out: list[tuple[dict[str, Any], bool]] = []
        for job, results in zip(jobs, all_results, strict=True):
            final = [r for r in results if r is not None]
            good = all(r.status == 0 for r in final)
            out.append((build_response(job.request.request_id, final, codec), good))
        return out

    async def _resolve(
        self, job: Job, servers: dict[int, tuple[OpcUaSession, JsonCodec, list[_Pending]]]
    ) -> list[TargetResult | None]:
        """The checks without the server; the targets that pass go to their server's list in
        ``servers``, their result slots stay None until the Write."""
        who = job.who
        allowed = self._auth.allowed(who, self._allowed)
        results: list[TargetResult | None] = []

        def refuse(target: Target, status: int, node_id: str | None, message: str) -> None:
            results.append(refusal(job, target, status, node_id, message))

        for target in job.request.targets:
            node_text = target.node_id
            if node_text is None:
                node_text = self._fields.get((target.writer or "", target.field or ""))
                if node_text is None:
                    refuse(
                        target, S.BadNodeIdUnknown, None, f"no field {target.writer}/{target.field}"
                    )
                    continue
            canonical = canonical_or_none(node_text)
            if canonical not in allowed:
                why = (
                    f"not permitted for {who.name}"
                    if canonical in self._allowed
                    else "not on the write-back allow-list"
                )
                refuse(target, S.BadUserAccessDenied, node_text, why)
                continue
            field = (
                None if target.node_id is not None else (target.writer or "", target.field or "")
            )
            session = self._session(canonical, field)  # of the field's (or node's) source
            if session is None:
                refuse(
                    target, S.BadServerNotConnected, node_text, "the OPC UA server is not connected"
                )
                continue
            if id(session) not in servers:
                servers[id(session)] = (session, await session.codec(), [])
            _, codec, pending = servers[id(session)]
            try:
                node_id = codec.decode_node_id(node_text)
            except DecodeError as e:
                refuse(target, S.BadNodeIdInvalid, node_text, str(e))
                continue
            pending.append(_Pending(job, results, len(results), target, node_text, node_id))
            results.append(None)
        return results

    async def _read(
        self, session: OpcUaSession, pending: list[_Pending]
    ) -> tuple[list[ua.DataValue], dict[ua.NodeId, int]]:
        """``_FRESH`` of every target, and the shapes of their nodes: one Read (two when a
        remembered shape no longer fits its node's value). Returns the ``_FRESH`` values and
        the status of each node whose shape could not be read."""
        known = self._shapes.setdefault(session, {})
        unknown = list(dict.fromkeys(p.node_id for p in pending if p.node_id not in known))
        read = await session.read(
            [ua.ReadValueId(NodeId=p.node_id, AttributeId=a) for p in pending for a in _FRESH]
            + [ua.ReadValueId(NodeId=node, AttributeId=a) for node in unknown for a in _SHAPE]
        )
        fresh = read[: len(pending) * len(_FRESH)]
        unreadable = _remember(known, unknown, read[len(fresh) :])
        just_read = set(unknown)
        remembered = [
            (k, p.node_id, known[p.node_id])
            for k, p in enumerate(pending)
            if p.node_id in known and p.node_id not in just_read
        ]
        builtins = await session.builtin_types(shape.data_type for _, _, shape in remembered)
        value_at = len(_FRESH) - 1  # the Value, last of each target's _FRESH
        stale = list(
            dict.fromkeys(
                node
                for k, node, shape in remembered
                if not shape.fits(builtins[shape.data_type], fresh[k * len(_FRESH) + value_at])
            )
        )
        if stale:
            again = await session.read(
                [ua.ReadValueId(NodeId=node, AttributeId=a) for node in stale for a in _SHAPE]
            )
            unreadable |= _remember(known, stale, again)
        return fresh, unreadable

    async def _check(
        self, session: OpcUaSession, codec: JsonCodec, pending: list[_Pending]
    ) -> list[_Write]:
        """The server's checks of ``pending`` (one Read) and the conversion; the targets
        refused get their results, those that passed are returned to be written."""
        fresh, unreadable = await self._read(session, pending)
        known = self._shapes[session]
        shapes = [known.get(p.node_id) for p in pending]
        builtins = await session.builtin_types(s.data_type for s in shapes if s is not None)
        limits = await session.string_limits(
            {p.node_id: builtins[s.data_type] for p, s in zip(pending, shapes, strict=True) if s}
        )
        writes: list[_Write] = []
        n = len(_FRESH)
        for k, (p, shape) in enumerate(zip(pending, shapes, strict=True)):
            access, user_access, old = fresh[k * n : (k + 1) * n]
            status = unreadable.get(p.node_id)
            if status is None and not access.StatusCode.is_good():  # gone since it was read
                status = access.StatusCode.value
                known.pop(p.node_id, None)
            if shape is None or status is not None:
                p.results[p.slot] = refusal(
                    p.job, p.target, status or S.BadNodeIdUnknown, p.text, "cannot read the node"
                )
                continue
            writable = int_value(access) & _WRITE_BIT and (
                not user_access.StatusCode.is_good() or int_value(user_access) & _WRITE_BIT
            )
            if not writable:
                p.results[p.slot] = refusal(
                    p.job,
                    p.target,
                    S.BadNotWritable,
                    p.text,
                    "the server says this node is not writable",
                )
                continue
            try:
                variant = convert_value(
                    p.target.value,
                    builtin_type=builtins[shape.data_type],
                    value_rank=shape.value_rank,
                    array_dimensions=shape.dimensions,
                    codec=codec,
                    index_range=p.target.index_range,
                    **length_limits(limits[p.node_id]),
                )
            except ConversionError as e:
                p.results[p.slot] = refusal(p.job, p.target, e.status, p.text, e.message)
                continue
            writes.append((p, variant, old.Value.Value if old.Value else None))
        return writes

    async def _write(self, session: OpcUaSession, writes: list[_Write]) -> None:
        """One Write (split by the server's limits) of ``writes``; an audit line and a result
        for each."""
        statuses = await session.write(
            [
                ua.WriteValue(
                    NodeId=p.node_id,
                    AttributeId=ua.AttributeIds.Value,
                    IndexRange=p.target.index_range,
                    Value=ua.DataValue(variant),
                )
                for p, variant, _ in writes
            ]
        )
        for (p, variant, old_value), status in zip(writes, statuses, strict=True):
            code = status.value
            symbol = status_name(code)
            rid, who = p.job.request.request_id, p.job.who
            _log.info(
                "write request %s from %s: wrote %s: %s -> %s: %s",
                rid or "(no id)",
                who,
                BRIEF.repr(p.text),
                BRIEF.repr(old_value),
                BRIEF.repr(variant.Value),
                symbol,
                extra=extra(rid, who, node_id=p.text, result=symbol),
            )
            p.results[p.slot] = TargetResult(
                status=code,
                written=variant if code == 0 else None,
                node_id=p.text,
                writer=p.target.writer,
                field=p.target.field,
            )


def _remember(
    known: dict[ua.NodeId, _Shape], nodes: Sequence[ua.NodeId], read: list[ua.DataValue]
) -> dict[ua.NodeId, int]:
    """Remember in ``known`` the shapes ``read`` holds (``_SHAPE`` of each of ``nodes``);
    return the status of those that could not be read (a node the server does not have)."""
    unreadable: dict[ua.NodeId, int] = {}
    n = len(_SHAPE)
    for k, node in enumerate(nodes):
        dtype, rank, dims = read[k * n : (k + 1) * n]
        if not dtype.StatusCode.is_good():
            known.pop(node, None)
            unreadable[node] = dtype.StatusCode.value
            continue
        known[node] = _Shape(
            dtype.Value.Value,
            int(rank.Value.Value) if rank.StatusCode.is_good() else -1,
            tuple(dims.Value.Value or ())
            if dims.StatusCode.is_good() and dims.Value is not None and dims.Value.Value
            else (),
        )
    return unreadable


def refusal(
    job: Job, target: Target, status: int, node_id: str | None, message: str
) -> TargetResult:
    """A target refused before the Write: logged once, with the reason and the value."""
    symbol = status_name(status)
    rid, who = job.request.request_id, job.who
    _log.warning(
        "write request %s from %s: %s not written (%s): %s; value %s",
        rid or "(no id)",
        who,
        BRIEF.repr(target.label),
        symbol,
        message,
        BRIEF.repr(target.value),
        extra=extra(rid, who, node_id=node_id or target.label, result=symbol),
    )
    return TargetResult(
        status=int(status),
        node_id=node_id,
        writer=target.writer,
        field=target.field,
        message=message,
    )

"""One batcher per OPC UA session: N operations within the server's per-call limits.

Every service that sends many operations (Browse, Read, Write, CreateMonitoredItems) goes
through :class:`Batcher`: chunks no larger than the server's OperationLimits (or our own ceiling),
a bound on requests in flight, and a request the server finds too large
(BadTooManyOperations, BadResponseTooLarge, BadEncodingLimitsExceeded) sent again in halves,
later chunks no larger than a half. Requests go through ``client.uaclient`` directly:
asyncua's ``Node`` helpers send one request per node. Read and Write are encoded and decoded by
read_write_codec.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from opcua_mqtt.adapters.opcua import read_write_codec
from opcua_mqtt.adapters.opcua.decoding import checked, undecodable_reason

_log = logging.getLogger(__name__)

# Batch sizes when the server states no OperationLimits, and our own ceiling when it states
# larger ones: on the asyncua server (limits 10,000) 1,000 per request with 3 in flight browsed
# 10k variables fastest, and keeps each request short enough not to starve keep-alive probes.
DEFAULT_NODES_PER_BROWSE: Final = 500
DEFAULT_NODES_PER_READ: Final = 1000
MAX_NODES_PER_BROWSE: Final = 1000
MAX_NODES_PER_READ: Final = 1000
DEFAULT_NODES_PER_WRITE: Final = 1000
DEFAULT_ITEMS_PER_CALL: Final = 1000  # monitored items per CreateMonitoredItems
# Requests in flight at once during browse: the server works on one while we decode another.
DEFAULT_CONCURRENCY: Final = 3


@dataclass
class BrowseStats:
    """What a browse cost: service calls, operations, time; and the limits it worked within."""

    browse_requests: int = 0
    browse_next_requests: int = 0
    read_requests: int = 0
    browse_operations: int = 0
    read_operations: int = 0
    server_max_nodes_per_browse: int = 0  # the server's OperationLimits; 0 = not stated
    server_max_nodes_per_read: int = 0
    browse_batch: int = 0  # what was used
    read_batch: int = 0
    seconds: float = 0.0


#: Service results saying a request was too large for the server: it goes again in halves.
_TOO_LARGE: Final = frozenset(
    {
        ua.StatusCodes.BadTooManyOperations,
        ua.StatusCodes.BadResponseTooLarge,
        ua.StatusCodes.BadEncodingLimitsExceeded,
    }
)


@dataclass
class _Batch:
    """How many operations a request of one service carries; it shrinks when one is refused."""

    service: str  # "Read", "Browse": for the log
    unit: str  # what an operation is: "items", "nodes"
    size: int


class _Limits:
    def __init__(self) -> None:
        self.browse = _Batch("Browse", "nodes", DEFAULT_NODES_PER_BROWSE)
        self.read = _Batch("Read", "items", DEFAULT_NODES_PER_READ)
        self.write = _Batch("Write", "values", DEFAULT_NODES_PER_WRITE)
        self.monitored_items = _Batch("CreateMonitoredItems", "items", DEFAULT_ITEMS_PER_CALL)
        self.continuation_points = 0

    def stated(
        self,
        *,
        per_browse: int = 0,
        per_read: int = 0,
        per_write: int = 0,
        per_monitored_items: int = 0,
        continuation_points: int = 0,
    ) -> None:
        """The server's OperationLimits (0: not stated), within our own ceilings."""
        self.browse.size = min(per_browse or DEFAULT_NODES_PER_BROWSE, MAX_NODES_PER_BROWSE)
        self.read.size = min(per_read or DEFAULT_NODES_PER_READ, MAX_NODES_PER_READ)
        self.write.size = per_write or DEFAULT_NODES_PER_WRITE
        self.monitored_items.size = per_monitored_items or DEFAULT_ITEMS_PER_CALL
        self.continuation_points = continuation_points


def _null_view() -> ua.ViewDescription:
    view = ua.ViewDescription()
    view.Timestamp = ua.get_win_epoch()
    return view


def browse_descriptions(
    nodes: Iterable[ua.NodeId],
    direction: ua.BrowseDirection,
    reference_type: int,
    *,
    subtypes: bool,
) -> list[ua.BrowseDescription]:
    """What to browse of each of ``nodes``: its references of one type (with ``subtypes``, of
    its subtypes too) in one direction, to nodes of any class, every result field."""
    return [
        ua.BrowseDescription(
            NodeId=n,
            BrowseDirection=direction,
            ReferenceTypeId=ua.NodeId(reference_type),
            IncludeSubtypes=subtypes,
            NodeClassMask=0,
            ResultMask=ua.BrowseResultMask.All,
        )
        for n in nodes
    ]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def stated_limit(dv: ua.DataValue) -> int:
    """A stated limit: the value when it is a Good integer, else 0 (none stated)."""
    good = dv.StatusCode is None or dv.StatusCode.is_good()
    value = dv.Value.Value if dv.Value is not None else None
    return int(value) if good and isinstance(value, int) and not isinstance(value, bool) else 0


_T = TypeVar("_T")
_R = TypeVar("_R")
_Send = Callable[[Sequence[_T]], Awaitable[list[_R]]]


class Batcher:
    """Batched Browse/BrowseNext/Read/Write (and any other per-operation service, see
    :meth:`each`) on one session, with a bound on requests in flight."""

    def __init__(self, client: Client, stats: BrowseStats, concurrency: int) -> None:
        self.uaclient = client.uaclient
        read_write_codec.install(self.uaclient)
        self.stats = stats
        self.slots = asyncio.Semaphore(concurrency)
        self.limits = _Limits()

    async def _send(
        self, service: str, call: Callable[[Any], Awaitable[list[Any]]], params: Any, count: int
    ) -> list[Any]:
        """One request, in a free slot; its answer must hold a result per operation."""
        async with self.slots:
            results: list[Any] = await call(params)
        if len(results) != count:
            raise ua.UaError(f"{service} answered {len(results)} results for {count}")
        return results

    async def _batched(
        self,
        batch: _Batch,
        items: Sequence[_T],
        send: _Send[_T, _R],
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> list[_R]:
        """``send`` ``items`` in chunks of the batch size, several in flight; results in order.

        ``on_chunk(first, count)`` is told of each chunk done.
        """
        size = batch.size

        async def one(start: int) -> list[_R]:
            chunk = items[start : start + size]
            result = await send(chunk)
            if on_chunk is not None:
                on_chunk(start, len(chunk))
            return result

        parts = await asyncio.gather(*(one(s) for s in range(0, len(items), size)))
        return [r for part in parts for r in part]

    async def _halves(
        self,
        batch: _Batch,
        items: Sequence[_T],
        refusal: UaStatusCodeError,
        send: _Send[_T, _R],
    ) -> list[_R]:
        """After the server refused ``items`` in one request: ``send`` them in two halves if it
        found the request too large (later batches no larger than a half), else re-raise."""
        if refusal.code not in _TOO_LARGE or len(items) < 2:
            raise refusal
        half = len(items) // 2
        batch.size = max(1, min(batch.size, half))
        _log.info(
            "%s of %d %s refused (%s): halving", batch.service, len(items), batch.unit, refusal
        )
        first = await send(items[:half])
        return first + await send(items[half:])

    async def each(
        self, batch: _Batch, items: Sequence[_T], call: Callable[[Sequence[_T]], Awaitable[Any]]
    ) -> list[_R]:
        """``call`` on ``items`` in chunks of ``batch``, halving a chunk the server finds too
        large; ``call`` must answer one result per item, in order."""

        async def split(chunk: Sequence[_T]) -> list[_R]:
            try:
                return await self._send(batch.service, call, chunk, len(chunk))
            except UaStatusCodeError as e:
                return await self._halves(batch, chunk, e, split)

        return await self._batched(batch, items, split)

    async def ask_limits(self) -> None:
        """Size the batches by the server's OperationLimits, asked in one Read (a limit the
        server does not state, or refuses to tell, leaves our default)."""
        ids = ua.ObjectIds
        limits = (
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
            ids.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ids.Server_ServerCapabilities_MaxBrowseContinuationPoints,
        )
        values = await self.read(
            [ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=ua.AttributeIds.Value) for i in limits]
        )
        per_browse, per_read, per_write, per_call, points = (stated_limit(dv) for dv in values)
        self.limits.stated(
            per_browse=per_browse,
            per_read=per_read,
            per_write=per_write,
            per_monitored_items=per_call,
            continuation_points=points,
        )

    # ---------------------------------------------------------------- Write
    async def write(self, values: Sequence[ua.WriteValue]) -> list[ua.StatusCode]:
        """Write ``values`` in chunks of MaxNodesPerWrite; a status per value, in order."""

        def call(chunk: Sequence[ua.WriteValue]) -> Awaitable[list[ua.StatusCode]]:
            return self.uaclient.write(ua.WriteParameters(NodesToWrite=list(chunk)))  # type: ignore[no-any-return]

        return await self.each(self.limits.write, values, call)

    # ----------------------------------------------------------------- Read
    async def read(
        self,
        items: Sequence[ua.ReadValueId],
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> list[ua.DataValue]:
        """Read ``items`` in chunks of MaxNodesPerRead, several in flight; results in order."""
        return await self._batched(self.limits.read, items, self._read_split, on_chunk)

    async def _read_split(self, items: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        self.stats.read_requests += 1
        self.stats.read_operations += len(items)
        params = ua.ReadParameters(
            MaxAge=0, TimestampsToReturn=ua.TimestampsToReturn.Neither, NodesToRead=list(items)
        )
        try:
            results = await self._send("Read", self.uaclient.read, params, len(items))
        except UaStatusCodeError as e:
            return await self._halves(self.limits.read, items, e, self._read_split)
        return [_decoded(item, dv) for item, dv in zip(items, results, strict=True)]

    # ---------------------------------------------------------------- Browse
    async def browse(
        self, descriptions: Sequence[ua.BrowseDescription]
    ) -> list[tuple[list[Any], int]]:
        """Browse ``descriptions`` in chunks within the limits, several chunks in flight."""
        # Full batches even when the server states few MaxBrowseContinuationPoints: with
        # RequestedMaxReferencesPerNode 0 servers hand out continuation points only for nodes
        # with very many references, and running out is repaired below.
        results = await self._batched(self.limits.browse, descriptions, self._browse_chunk)
        # Nodes the server had no continuation point for: again, in batches no larger than its
        # supply, one batch at a time (each batch's points are used up before the next).
        for _attempt in range(8):
            retry = [
                i
                for i, (_, status) in enumerate(results)
                if status == ua.StatusCodes.BadNoContinuationPoints
            ]
            if not retry:
                break
            step = max(1, (self.limits.continuation_points or 1))
            for chunk in _chunks(retry, step):
                again = await self._browse_chunk([descriptions[i] for i in chunk])
                for i, result in zip(chunk, again, strict=True):
                    results[i] = result
        return results

    async def _browse_chunk(
        self, descriptions: Sequence[ua.BrowseDescription]
    ) -> list[tuple[list[Any], int]]:
        """One Browse request (halved if too large), then BrowseNext while points are left."""
        self.stats.browse_requests += 1
        self.stats.browse_operations += len(descriptions)
        params = ua.BrowseParameters(
            View=_null_view(), RequestedMaxReferencesPerNode=0, NodesToBrowse=list(descriptions)
        )
        try:
            results = await self._send("Browse", self.uaclient.browse, params, len(descriptions))
        except UaStatusCodeError as e:
            return await self._halves(self.limits.browse, descriptions, e, self._browse_chunk)
        refs: list[list[Any]] = []
        status: list[int] = []
        origin: dict[bytes, int] = {}
        for i, r in enumerate(results):
            refs.append(list(r.References or []))
            status.append(int(r.StatusCode.value))
            if r.ContinuationPoint and r.StatusCode.is_good():
                origin[bytes(r.ContinuationPoint)] = i
        while origin:
            points = list(origin)
            self.stats.browse_next_requests += 1
            more = await self._send(
                "BrowseNext",
                self.uaclient.browse_next,
                ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=points),
                len(points),
            )
            next_origin: dict[bytes, int] = {}
            for point, r in zip(points, more, strict=True):
                i = origin[point]
                refs[i].extend(r.References or [])
                if not r.StatusCode.is_good():
                    status[i] = int(r.StatusCode.value)
                elif r.ContinuationPoint:
                    next_origin[bytes(r.ContinuationPoint)] = i
            origin = next_origin
        return list(zip(refs, status, strict=True))


def _decoded(item: ua.ReadValueId, dv: ua.DataValue) -> ua.DataValue:
    """``dv``, or BadDecodingError (logged, naming the node) for a value asyncua could not
    decode (decoding.py)."""
    reason = undecodable_reason(dv)
    if reason is None:
        return dv
    _log.warning(
        "%s: value cannot be decoded (%s): BadDecodingError", item.NodeId.to_string(), reason
    )
    return checked(dv)

"""The session's batcher (adapters/opcua/batching.py) on services other than Browse and Read
(those are covered by test_browse_walker.py): Write within MaxNodesPerWrite, and any
per-operation service halved when the server finds a request too large."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import ua

from opcua_mqtt.adapters.opcua.batching import Batcher, BrowseStats


class _Writes:
    """Answers Write like ``UaClient.write``; refuses more than ``max_ops`` values at once."""

    def __init__(self, max_ops: int) -> None:
        self.max_ops = max_ops
        self.requests: list[int] = []

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        values = params.NodesToWrite
        self.requests.append(len(values))
        if len(values) > self.max_ops:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)
        return [ua.StatusCode(int(v.NodeId.Identifier) % 2) for v in values]  # odd: "bad"


def _batcher(uaclient: Any, concurrency: int = 1) -> Batcher:
    client: Any = SimpleNamespace(uaclient=uaclient)
    return Batcher(client, BrowseStats(), concurrency)


def _values(n: int) -> list[ua.WriteValue]:
    return [
        ua.WriteValue(
            NodeId=ua.NodeId(i, 1),
            AttributeId=ua.AttributeIds.Value,
            Value=ua.DataValue(ua.Variant(i)),
        )
        for i in range(n)
    ]


async def test_writes_go_in_batches_of_the_stated_limit_with_a_status_each_in_order() -> None:
    server = _Writes(max_ops=4)
    batcher = _batcher(server)
    batcher.limits.stated(per_write=4)
    statuses = await batcher.write(_values(10))
    assert [s.value for s in statuses] == [i % 2 for i in range(10)]
    assert sorted(server.requests) == [2, 4, 4]


async def test_a_write_the_server_finds_too_large_goes_again_in_halves() -> None:
    server = _Writes(max_ops=3)  # states no limit, refuses more than 3
    batcher = _batcher(server)
    statuses = await batcher.write(_values(12))
    assert [s.value for s in statuses] == [i % 2 for i in range(12)]
    assert server.requests == [12, 6, 3, 3, 6, 3, 3]  # refused requests are halved
    assert batcher.limits.write.size == 3  # later batches start small
    server.requests.clear()
    await batcher.write(_values(6))
    assert server.requests == [3, 3]


async def test_other_refusals_are_not_halved() -> None:
    async def refuse(_chunk: Sequence[int]) -> list[int]:
        raise ua.UaStatusCodeError(ua.StatusCodes.BadUserAccessDenied)

    batcher = _batcher(SimpleNamespace())
    with pytest.raises(ua.UaStatusCodeError):
        await batcher.each(batcher.limits.monitored_items, [1, 2, 3, 4], refuse)


async def test_an_answer_with_too_few_results_is_an_error() -> None:
    async def short(chunk: Sequence[int]) -> list[int]:
        return list(chunk)[1:]

    batcher = _batcher(SimpleNamespace())
    with pytest.raises(ua.UaError, match="answered 1 results for 2"):
        await batcher.each(batcher.limits.monitored_items, [1, 2], short)

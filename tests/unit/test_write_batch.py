"""Write-back's queue: batches in arrival order, never two requests with a shared claim (a node,
a RequestId) in one batch, bounded; a batch that fails fails its requests, not the queue."""

from __future__ import annotations

import asyncio

import pytest

from opcua_mqtt.bridge.write_batch import Job, WriteQueue, claims_of
from opcua_mqtt.core.request_auth import Identity
from opcua_mqtt.core.write_request.request import Target, WriteRequest

WHO = Identity("hmi-7", proven=False)


def _job(rid: str, *nodes: str) -> Job:
    request = WriteRequest(targets=tuple(Target(None, None, n, 1.0) for n in nodes), request_id=rid)
    return Job(request, WHO, (WHO.key, rid), "", None, None, None, claims_of(request, WHO, {}))


async def test_batches_keep_arrival_order_and_end_before_a_shared_claim() -> None:
    batches: list[list[str | None]] = []

    async def run(batch: list[Job]) -> None:
        batches.append([j.request.request_id for j in batch])
        await asyncio.sleep(0)
        for j in batch:
            j.done.set_result(None)

    queue = WriteQueue(run, max_batch=3)
    jobs = [
        _job("a", "i=1"),
        _job("b", "i=2", "i=3"),
        _job("c", "ns=0;i=1"),  # i=1 again, written another way: waits for the next batch
        _job("d", "i=4"),
        _job("e", "i=5"),
        _job("f", "i=6"),  # the batch is full
        _job("f", "i=7"),  # the same RequestId of the same requester
    ]
    for job in jobs:
        queue.submit(job)
    await asyncio.gather(*(j.done for j in jobs))
    assert batches == [["a", "b"], ["c", "d", "e"], ["f"], ["f"]]
    assert queue.batches == 4


async def test_a_batch_that_raises_fails_its_requests_and_the_next_batch_runs() -> None:
    async def run(batch: list[Job]) -> None:
        if batch[0].request.request_id == "bad":
            raise RuntimeError("boom")
        for j in batch:
            j.done.set_result(b"answer")

    queue = WriteQueue(run)
    bad, also_bad, good = _job("bad", "i=1"), _job("x", "i=2"), _job("y", "i=1")
    for job in (bad, also_bad, good):
        queue.submit(job)
    for job in (bad, also_bad):
        with pytest.raises(RuntimeError, match="boom"):
            await job.done
    assert await good.done == b"answer"

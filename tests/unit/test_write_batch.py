"""Write-back's queue: batches in arrival order, never two requests with a shared claim (a node,
a RequestId) in one batch, bounded; a batch that fails fails its requests, not the queue. Two
batches overlap at most, the next starting once the previous one is past its Reads, never with
a node or a command of the batch in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from opcua_mqtt.bridge.write_batch import Job, WriteQueue, claims_of
from opcua_mqtt.core.request_auth import Identity
from opcua_mqtt.core.write_request.request import Target, WriteRequest

WHO = Identity("hmi-7", proven=False)


def _job(rid: str, *nodes: str) -> Job:
    request = WriteRequest(targets=tuple(Target(None, None, n, 1.0) for n in nodes), request_id=rid)
    return Job(request, WHO, (WHO.key, rid), "", None, None, None, claims_of(request, WHO, {}))


def _command(rid: str) -> Job:
    command: dict[str, Any] = {"Method": "Acknowledge", "ConditionId": "i=9", "EventId": "AA=="}
    target = Target(None, None, None, None, command=command)
    request = WriteRequest(targets=(target,), request_id=rid)
    return Job(request, WHO, (WHO.key, rid), "", None, None, None, claims_of(request, WHO, {}))


def _ids(batch: list[Job]) -> list[str | None]:
    return [j.request.request_id for j in batch]


async def _turns(n: int = 20) -> None:
    """Let the event loop run whatever is ready (the queue starts batches in later turns)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Stages:
    """A ``run`` whose batches stop before their Reads are answered (``read``) and before
    their Writes are (``write``), each until the test lets batch ``k`` on."""

    def __init__(self) -> None:
        self.started: list[list[str | None]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._gates: dict[tuple[int, str], asyncio.Event] = {}

    def let(self, k: int, stage: str) -> None:
        self._gate(k, stage).set()

    def _gate(self, k: int, stage: str) -> asyncio.Event:
        return self._gates.setdefault((k, stage), asyncio.Event())

    async def run(self, batch: list[Job], checked: Callable[[], None]) -> None:
        k = len(self.started)
        self.started.append(_ids(batch))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._gate(k, "read").wait()
            checked()
            await self._gate(k, "write").wait()
            for j in batch:
                j.done.set_result(None)
        finally:
            self.in_flight -= 1


async def test_batches_keep_arrival_order_and_end_before_a_shared_claim() -> None:
    batches: list[list[str | None]] = []

    async def run(batch: list[Job], _checked: Callable[[], None]) -> None:
        batches.append(_ids(batch))
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


async def test_the_next_batch_starts_once_the_previous_is_past_its_reads_two_at_most() -> None:
    """A request whose node the batch in flight writes waits for that batch to end, and so
    does everything behind it; two batches at most are carried out at once."""
    stages = Stages()
    queue = WriteQueue(stages.run)
    jobs = [_job("a", "i=1")]
    queue.submit(jobs[0])
    await _turns()
    jobs += [_job("b", "i=2"), _job("c", "i=1"), _job("d", "i=3")]
    for job in jobs[1:]:
        queue.submit(job)
    await _turns()
    assert stages.started == [["a"]]  # a's Read is not answered: b, c, d gather
    stages.let(0, "read")
    await _turns()
    assert stages.started == [["a"], ["b"]]  # c writes i=1, which a is writing
    stages.let(1, "read")
    stages.let(1, "write")
    await _turns()
    assert stages.started == [["a"], ["b"]]  # b is done, but c still waits for a
    assert not jobs[2].done.done()
    stages.let(0, "write")
    await _turns()
    assert stages.started == [["a"], ["b"], ["c", "d"]]
    stages.let(2, "read")
    stages.let(2, "write")
    await asyncio.gather(*(j.done for j in jobs))
    assert stages.most_in_flight == 2


async def test_no_third_batch_while_two_are_in_flight() -> None:
    stages = Stages()
    queue = WriteQueue(stages.run)
    jobs = [_job("a", "i=1")]
    queue.submit(jobs[0])
    await _turns()
    jobs.append(_job("b", "i=2"))
    queue.submit(jobs[1])
    stages.let(0, "read")
    await _turns()
    jobs.append(_job("c", "i=3"))
    queue.submit(jobs[2])
    stages.let(1, "read")  # both are past their Reads, neither is done
    await _turns()
    assert stages.started == [["a"], ["b"]]
    stages.let(1, "write")
    await _turns()
    assert stages.started == [["a"], ["b"], ["c"]]
    stages.let(0, "write")
    stages.let(2, "read")
    stages.let(2, "write")
    await asyncio.gather(*(j.done for j in jobs))
    assert stages.most_in_flight == 2


async def test_a_batch_with_a_command_overlaps_no_other() -> None:
    stages = Stages()
    queue = WriteQueue(stages.run)
    jobs = [_job("a", "i=1")]
    queue.submit(jobs[0])
    await _turns()
    jobs += [_command("ack"), _job("b", "i=2")]
    for job in jobs[1:]:
        queue.submit(job)
    stages.let(0, "read")
    await _turns()
    assert stages.started == [["a"]]  # the command waits for a to end, and b behind it
    stages.let(0, "write")
    await _turns()
    assert stages.started == [["a"], ["ack", "b"]]  # nothing in flight: they go together
    jobs.append(_job("c", "i=3"))
    queue.submit(jobs[-1])
    stages.let(1, "read")
    await _turns()
    assert stages.started == [["a"], ["ack", "b"]]  # no batch overlaps the command's
    stages.let(1, "write")
    stages.let(2, "read")
    stages.let(2, "write")
    await asyncio.gather(*(j.done for j in jobs))
    assert stages.started == [["a"], ["ack", "b"], ["c"]]


async def test_a_batch_that_raises_fails_its_requests_and_the_next_batch_runs() -> None:
    async def run(batch: list[Job], _checked: Callable[[], None]) -> None:
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


async def test_a_batch_that_fails_while_another_is_in_flight_leaves_that_one_be() -> None:
    """The batch after one past its Reads raises (its Read failed): its requests fail, the
    one in flight is carried out to the end, and later batches run."""
    stages = Stages()

    async def run(batch: list[Job], checked: Callable[[], None]) -> None:
        if batch[0].request.request_id == "bad":
            raise RuntimeError("the Read failed")
        await stages.run(batch, checked)

    queue = WriteQueue(run)
    first, bad, later = _job("first", "i=1"), _job("bad", "i=2"), _job("later", "i=2")
    queue.submit(first)
    await _turns()
    queue.submit(bad)
    stages.let(0, "read")
    with pytest.raises(RuntimeError, match="the Read failed"):
        await bad.done
    assert not first.done.done()
    queue.submit(later)
    stages.let(1, "read")
    stages.let(1, "write")
    assert await later.done is None  # started while first is still writing
    stages.let(0, "write")
    assert await first.done is None
    assert stages.started == [["first"], ["later"]]

"""Waiting for data sets with the product's Subscriber in end-to-end tests: a key frame may go
out before a field's first value arrives (BadWaitingForInitialData), so a test that wants a
value waits for the first data set that has it, a bounded number of data sets long."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber


async def first_where(
    sub: Subscriber,
    wanted: Callable[[ReceivedDataSet], bool],
    attempts: int,
    failure: str,
    timeout: float = 10,
) -> ReceivedDataSet:
    """The first of the next ``attempts`` data sets (each within ``timeout`` s) that is
    ``wanted``; else the test fails with ``failure`` and the last data set's fields."""
    iterator = sub.__aiter__()
    for _ in range(attempts):
        ds = await asyncio.wait_for(iterator.__anext__(), timeout)
        if wanted(ds):
            return ds
    pytest.fail(f"{failure}; last: {ds.fields}")


async def first_good(
    sub: Subscriber,
    *names: str,
    present: tuple[str, ...] = (),
    attempts: int = 40,
    timeout: float = 30,
) -> ReceivedDataSet:
    """The first data set in which every field of ``names`` has a Good value and every field
    of ``present`` is there (Good or not: a field whose status never changes is in key frames
    only)."""
    return await first_where(
        sub,
        lambda ds: all(n in ds.fields for n in present)
        and all(n in ds.fields and ds.fields[n].status.is_good() for n in names),
        attempts,
        f"{', '.join(names)} never all had Good values"
        + (f" with {', '.join(present)} in the same data set" if present else ""),
        timeout,
    )

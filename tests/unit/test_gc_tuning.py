"""The garbage collector settings of `run` (opcua_mqtt.gc_tuning)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from opcua_mqtt import gc_tuning


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@pytest.mark.usefixtures("restored_gc")
def test_tune_collects_the_youngest_generation_less_often() -> None:
    gc_tuning.tune()
    assert gc.get_threshold()[0] == gc_tuning.GEN0_THRESHOLD
    assert gc.isenabled()  # cycles are still collected


@pytest.mark.usefixtures("restored_gc")
async def test_what_lives_when_the_bridge_is_ready_is_frozen_then() -> None:
    gc.unfreeze()
    ready = asyncio.Event()
    task = asyncio.create_task(gc_tuning.freeze_when_ready(ready))
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == 0  # not before
    survivor = [object()]
    ready.set()
    await task
    assert gc.get_freeze_count() > 0
    assert not any(survivor is o for o in gc.get_objects())  # frozen: no longer scanned


class _Node:
    """An object in a reference cycle (as a lost session's client and protocol are)."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("restored_gc")
def test_refreeze_frees_a_cycle_that_became_garbage_while_frozen() -> None:
    gc.unfreeze()
    cycle = _Node()
    gone = weakref.ref(cycle)
    gc.freeze()
    del cycle
    gc.collect()
    assert gone() is not None  # frozen: never collected
    gc_tuning.refreeze()
    assert gone() is None
    assert gc.get_freeze_count() > 0  # what lives is frozen again

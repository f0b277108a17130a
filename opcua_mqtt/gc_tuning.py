"""Garbage collector settings of the long-running bridge process (``run``).

Every notification brings new objects (DataValue, Variant, MonitoredItemNotification) that live
until the next writer tick or longer, so with CPython's default thresholds (700, 10, 10) they
reach the oldest generation and its full collections walk the whole heap (asyncua's type
tables, the plan, every field's latest value) again and again. Two settings avoid that: the
objects that exist once the bridge is up are frozen (``gc.freeze``: never scanned again; they
live as long as the process anyway), and the youngest generation is collected every
:data:`GEN0_THRESHOLD` allocations (one Publish response of 10,000 values makes 30,000).
Cycles are still collected; the measurements are in docs/benchmarks.md, "Issue 14: hot path
and uvloop".
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Final

__all__ = ["GEN0_THRESHOLD", "freeze_when_ready", "refreeze", "tune"]

_log = logging.getLogger(__name__)

GEN0_THRESHOLD: Final = 50_000
_GEN1_THRESHOLD: Final = 20
_GEN2_THRESHOLD: Final = 100


def tune() -> None:
    """Collect the youngest generation less often (see the module docstring)."""
    gc.set_threshold(GEN0_THRESHOLD, _GEN1_THRESHOLD, _GEN2_THRESHOLD)


async def freeze_when_ready(ready: asyncio.Event) -> None:
    """Once ``ready`` is set the first time, collect once and freeze what survives: the
    modules, the configuration and what the first session built, which live as long as the
    process."""
    await ready.wait()
    gc.collect()
    gc.freeze()
    _log.debug("garbage collector: %d objects frozen", gc.get_freeze_count())


def refreeze() -> None:
    """Thaw what was frozen, collect, and freeze what survives. Frozen objects are never
    collected, so what a lost OPC UA session leaves in reference cycles (its asyncua client,
    protocol, tasks and subscriptions with their routes: ~100 MiB at 100,000 items) would stay
    for good, once more with every reconnect; this frees it (one full collection)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _log.debug("garbage collector: %d objects frozen again", gc.get_freeze_count())

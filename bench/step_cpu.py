"""CPU time of the bridge's task steps, for the bench's bridge child (bridge_load.py).

The event-loop lag under a CPU limit is the CPU of one loop turn stretched by the limit, so the
unit to cut is the CPU a single callback holds the loop for. Wall-clock measures (asyncio's
debug mode, ``slow_callback_duration``) swell with the machine's load and the limit; CPU time
does not. Turned on by ``OPCUA_MQTT_BENCH_STEP_CPU=1`` in the bench's environment (the child
inherits it): a task factory wraps each task's coroutine so that every step (one ``send`` or
``throw``, i.e. one callback of the loop) is timed with :func:`time.thread_time`, and the child
prints, per coroutine, the longest step, the number of steps over 3 ms and their CPU in all.
On the standard loop (``--loop asyncio``) the CPU of each whole loop turn (``_run_once``) is
taken too, and on any loop each garbage collection (``gc.callbacks``), which runs inside
whatever step allocated last. Callbacks that are not task steps (protocols'
``data_received``, timers) are not seen on uvloop. Costs about 1 µs per step; off by default.
"""

from __future__ import annotations

import asyncio
import collections.abc
import gc
import os
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

ENV = "OPCUA_MQTT_BENCH_STEP_CPU"
#: A step longer than this (CPU seconds) is counted as long.
LONG_S = 0.003

_thread_time = time.thread_time


class StepCpu:
    """Longest step, long steps and CPU per coroutine name; longest loop turn."""

    def __init__(self, where: bool = False) -> None:
        self.where = where  # name long steps by where they resumed and suspended
        self.steps: dict[str, list[float]] = {}  # name -> [longest, long count, total, count]
        self.turn_max = 0.0
        self.turns_long = 0
        self._gc_started = 0.0

    def add(self, name: str, cpu: float) -> None:
        entry = self.steps.get(name)
        if entry is None:
            entry = self.steps[name] = [0.0, 0, 0.0, 0]
        if cpu > entry[0]:
            entry[0] = cpu
        if cpu > LONG_S:
            entry[1] += 1
        entry[2] += cpu
        entry[3] += 1

    def reset(self) -> None:
        """Forget what was seen so far (the start of the bench's window)."""
        self.steps.clear()
        self.turn_max = 0.0
        self.turns_long = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        def factory(
            loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
        ) -> asyncio.Task[Any]:
            timed = _Where(coro, self) if self.where else _Timed(coro, self)
            return asyncio.Task(timed, loop=loop, **kw)

        loop.set_task_factory(factory)  # type: ignore[arg-type]
        gc.callbacks.append(self._gc)
        run_once = getattr(loop, "_run_once", None)  # asyncio's own loop only
        if run_once is not None:
            loop._run_once = self._timed_turn(run_once)  # type: ignore[attr-defined]

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = _thread_time()
        else:
            self.add(f"(gc generation {info['generation']})", _thread_time() - self._gc_started)

    def _timed_turn(self, run_once: Callable[[], None]) -> Callable[[], None]:
        def timed() -> None:
            t0 = _thread_time()
            run_once()
            cpu = _thread_time() - t0
            self.turn_max = max(self.turn_max, cpu)
            self.turns_long += cpu > 10 * LONG_S

        return timed

    def summary(self, top: int = 14) -> dict[str, Any]:
        """The ``top`` coroutines by longest step, in ms."""
        ranked = sorted(self.steps.items(), key=lambda kv: -kv[1][0])[:top]
        out: dict[str, Any] = {
            name: {
                "max_ms": round(e[0] * 1000, 2),
                "long": int(e[1]),
                "cpu_s": round(e[2], 2),
                "steps": int(e[3]),
            }
            for name, e in ranked
        }
        if self.turn_max:
            out["(loop turn)"] = {"max_ms": round(self.turn_max * 1000, 2), "long": self.turns_long}
        return out


class _Timed(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine that times each step of the one it wraps."""

    __slots__ = ("_clock", "_coro", "_name")

    def __init__(self, coro: Coroutine[Any, Any, Any], clock: StepCpu) -> None:
        self._coro = coro
        self._name = getattr(coro, "__qualname__", type(coro).__name__)
        self._clock = clock

    def send(self, value: Any) -> Any:
        t0 = _thread_time()
        try:
            return self._coro.send(value)
        finally:
            self._clock.add(self._name, _thread_time() - t0)

    def throw(self, *args: Any) -> Any:
        t0 = _thread_time()
        try:
            return self._coro.throw(*args)
        finally:
            self._clock.add(self._name, _thread_time() - t0)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coro.__await__()


def _suspended_at(coro: Any) -> str:
    """Where the innermost coroutine (or generator) awaited by ``coro`` stands."""
    while True:
        inner = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if inner is None or (not hasattr(inner, "cr_frame") and not hasattr(inner, "gi_frame")):
            break
        coro = inner
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    return "done" if frame is None else f"{frame.f_code.co_qualname}:{frame.f_lineno}"


class _Where(_Timed):
    """:class:`_Timed` that names a long step by where it resumed and where it suspended
    (a few µs per step: for finding a long step, not for the figures)."""

    __slots__ = ("_at",)

    def __init__(self, coro: Coroutine[Any, Any, Any], clock: StepCpu) -> None:
        super().__init__(coro, clock)
        self._at = "start"

    def send(self, value: Any) -> Any:
        t0 = _thread_time()
        try:
            return self._coro.send(value)
        finally:
            cpu = _thread_time() - t0
            at, self._at = self._at, _suspended_at(self._coro)
            self._clock.add(self._name, cpu)
            if cpu > LONG_S:
                self._clock.add(f"{self._name} [{at} -> {self._at}]", cpu)


def from_env() -> StepCpu | None:
    """A :class:`StepCpu` when the bench asked for one (``1``; ``where``: with the places of
    long steps)."""
    value = os.environ.get(ENV)
    return StepCpu(where=value == "where") if value in ("1", "where") else None

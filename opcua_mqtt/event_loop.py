"""Which asyncio event loop the long-running commands (``run``, ``demo``) use.

uvloop (libuv) runs the same asyncio code with less CPU per callback, socket read and timer
(docs/benchmarks.md, "Issue 14: uvloop"); it is optional (the ``fast`` extra) and not on
Windows. ``auto`` takes it when it can be imported, ``asyncio`` keeps the standard loop (to
rule the loop out when something misbehaves), ``uvloop`` insists on it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from opcua_mqtt.core.errors import OpcUaMqttError

__all__ = ["LOOPS", "LoopUnavailableError", "loop_factory", "run"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: The choices of ``--loop``; the first is the default.
LOOPS: Final = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailableError(OpcUaMqttError):
    """``uvloop`` was asked for but cannot be imported."""


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The factory of the loop ``choice`` names (None: asyncio's own) and the loop's name."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}; expected one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as e:
        if choice == "uvloop":
            raise LoopUnavailableError(
                f"--loop uvloop: uvloop cannot be imported ({e}); install opcua-mqtt[fast] "
                "or use --loop asyncio"
            ) from None
        return None, "asyncio"
    factory: LoopFactory = uvloop.new_event_loop
    return factory, "uvloop"


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names; logs which loop once.

    Raises :class:`LoopUnavailableError` (``main`` closed unawaited) for ``uvloop`` without
    uvloop installed.
    """
    try:
        factory, name = loop_factory(choice)
    except (LoopUnavailableError, ValueError):
        main.close()
        raise
    _log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

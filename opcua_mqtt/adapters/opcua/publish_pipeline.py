"""More than one Publish request in flight on one asyncua session.

asyncua 2.1's ``UaSession._publish_loop`` sends a Publish request, awaits its response, runs the
subscription's callback and only then sends the next request. While the client decodes one
response the server holds no request to answer with: notifications wait in its monitored item
queues for a full round trip plus the client's decoding, and the next response is all the
larger (docs/benchmarks.md: 100,000 notifications in one response at 10,000 items x 100 ms).
OPC 10000-4 §5.13.5 expects a client to keep several Publish requests queued at the server for
exactly this reason.

:func:`install` makes the session run ``depth`` copies of asyncua's own publish loop
concurrently, each with its own acknowledgements: ``depth`` requests are outstanding. Responses
still reach the callbacks in the order they arrive (each loop resumes when its own response is
in, and our callback runs to completion without yielding), so a subscription sees its sequence
numbers in order. The copies end together: when one returns (no subscription left) or the task
is cancelled (session closed), the others are cancelled.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine
from typing import Any

from asyncua.client.ua_session import UaSession

#: Publish requests kept outstanding per session. Two are enough to keep one queued at the server
#: while the client decodes the other; more only add responses that are empty keep-alives.
DEFAULT_DEPTH = 2

_asyncua_publish_loop: Callable[[UaSession], Coroutine[Any, Any, None]] = UaSession._publish_loop


def install(session: UaSession, depth: int = DEFAULT_DEPTH) -> None:
    """Keep ``depth`` Publish requests in flight on ``session`` (idempotent; 1 = asyncua's)."""

    async def publish_loops(self: UaSession) -> None:
        others: list[asyncio.Task[None]] = [
            asyncio.create_task(_asyncua_publish_loop(self)) for _ in range(depth - 1)
        ]
        try:
            await _asyncua_publish_loop(self)
        finally:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    session._publish_loop = types.MethodType(publish_loops, session)

"""A minimal HTTP/1.1 server on the running event loop, for the metrics and health endpoints.

Why not prometheus_client's ``start_http_server``: it serves from a thread, and a thread that
answers ``/healthz`` proves nothing about the event loop doing the work, while an answer from
here means the loop runs. Why not a web framework: a few GET routes that return bytes. Each
connection sends one request head (bounded in size and time), gets one answer with a
Content-Length, and is closed; bodies, keep-alive and chunking are not needed by scrapers.

Slow clients cannot starve the process: each connection has one deadline for its whole life (head
read and answer written), and at most ``MAX_CONNECTIONS`` are open at once. The connection that
tips it over the cap is served, and the oldest one still sending its head is closed instead: a
scraper's request completes in milliseconds, so what waits longest is what holds a slot without
using it (300 silent connections once exhausted the bridge's file descriptors).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0
#: Seconds one connection may live, head and answer: a reader that never drains holds no slot.
CONNECTION_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    headers: Mapping[str, str]  # names in lower case


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


class _BadRequest(Exception):
    """The request head cannot be read as HTTP/1.x."""


async def start_http_server(host: str, port: int, routes: Mapping[str, Route]) -> asyncio.Server:
    """Listen on ``host:port`` (port 0: any free one); GET and HEAD of ``routes``' paths."""
    handler = functools.partial(_serve, dict(routes), _Slots(MAX_CONNECTIONS))
    return await asyncio.start_server(handler, host, port, limit=MAX_HEAD_BYTES)


class _Slots:
    """The open connections of one server, oldest first, and which still read their head."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[asyncio.StreamWriter, bool] = {}  # insertion order: oldest first

    def enter(self, writer: asyncio.StreamWriter) -> None:
        if len(self.open) >= self.limit:
            idle = next((w for w, reading in self.open.items() if reading), None)
            victim = idle or next(iter(self.open))
            self.open.pop(victim)
            victim.transport.abort()  # frees the descriptor now; its task ends on the error
        self.open[writer] = True

    def answering(self, writer: asyncio.StreamWriter) -> None:
        if writer in self.open:
            self.open[writer] = False

    def leave(self, writer: asyncio.StreamWriter) -> None:
        self.open.pop(writer, None)


async def _serve(
    routes: Mapping[str, Route],
    slots: _Slots,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    slots.enter(writer)
    try:
        # A client that went quiet or away, or was evicted, has nobody left to answer.
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            async with asyncio.timeout(CONNECTION_TIMEOUT_S):
                await _exchange(routes, slots, reader, writer)
    finally:
        slots.leave(writer)
        writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


async def _exchange(
    routes: Mapping[str, Route],
    slots: _Slots,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        request = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT_S)
    except _BadRequest as e:
        slots.answering(writer)
        await _write(writer, Response(400, f"{e}\n".encode()), head_only=False)
        return
    slots.answering(writer)
    await _write(writer, _dispatch(routes, request), head_only=request.method == "HEAD")


def _dispatch(routes: Mapping[str, Route], request: Request) -> Response:
    route = routes.get(request.path)
    if route is None:
        return Response(404, f"no {request.path} here; try {', '.join(routes)}\n".encode())
    if request.method not in ("GET", "HEAD"):
        return Response(405, b"GET or HEAD only\n", headers={"Allow": "GET, HEAD"})
    return route(request)


async def _read_head(reader: asyncio.StreamReader) -> Request:
    lines: list[str] = []
    size = 0
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest("request head too large") from None
        size += len(raw)
        if size > MAX_HEAD_BYTES:
            raise _BadRequest("request head too large")
        line = raw.rstrip(b"\r\n")
        if not line:
            break
        try:
            lines.append(line.decode("ascii"))
        except UnicodeDecodeError:
            raise _BadRequest("request head is not ASCII") from None
    if not lines:
        raise _BadRequest("empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise _BadRequest("expected a request line such as 'GET /metrics HTTP/1.1'")
    headers: dict[str, str] = {}
    for header in lines[1:]:
        name, colon, value = header.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(f"malformed header line {header[:40]!r}")
        headers[name.lower()] = value.strip()
    return Request(parts[0], parts[1].partition("?")[0], headers)


async def _write(writer: asyncio.StreamWriter, response: Response, *, head_only: bool) -> None:
    reason = http.HTTPStatus(response.status).phrase
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in response.headers.items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
    if not head_only:
        writer.write(response.body)
    await writer.drain()

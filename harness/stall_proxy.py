"""A TCP proxy on loopback that can stop carrying traffic without closing anything: a stalled
network path (a half-open connection, a firewall that forgot it) between a client and a broker;
or cut the path: an outage of the broker as one client sees it, while others stay connected.

While stalled, whatever either side sends is read and thrown away, so neither side sees an
error, a close or back-pressure; only the silence tells. Connections made while stalled are
accepted and swallowed the same way. While cut, every connection is reset and new ones are
reset as soon as they are accepted.

It also counts the TLS records the clients send (``records_up``, read from the records'
headers): how many writes a TLS client made, seen from outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from harness.processes import free_port


class StallProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.connections = 0  # accepted so far
        self.records_up = 0  # TLS records from the clients, forwarded or not
        self._forwarding = True
        self._cut = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def stall(self) -> None:
        self._forwarding = False

    def cut(self) -> None:
        self._cut = True
        for task in list(self._tasks):
            task.cancel()  # its connection is reset as the pump ends

    def resume(self) -> None:
        self._forwarding = True
        self._cut = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, _TlsRecords(self))),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        records: _TlsRecords | None = None,
    ) -> None:
        """Copy until EOF or an error; while stalled, drop what arrives."""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if records is not None:
                    records.feed(data)
                if self._forwarding:
                    writer.write(data)
                    await writer.drain()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _TlsRecords:
    """Counts the TLS records of one direction of a connection into ``proxy.records_up``: a
    record is a 5-byte header (type, version, body length) and its body; reads split both."""

    def __init__(self, proxy: StallProxy) -> None:
        self._proxy = proxy
        self._header = b""  # of the next record, while incomplete
        self._body_left = 0  # bytes of the current record's body still to come

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self._body_left:
                step = min(self._body_left, len(data) - i)
                self._body_left -= step
                i += step
                continue
            step = min(5 - len(self._header), len(data) - i)
            self._header += data[i : i + step]
            i += step
            if len(self._header) == 5:
                self._proxy.records_up += 1
                self._body_left = int.from_bytes(self._header[3:5], "big")
                self._header = b""

#!/usr/bin/env python3
"""A loopback TCP proxy that holds every chunk it carries for a fixed time, each way, in order:
a network with that much latency between a client and a server, for benchmarks whose figure
depends on round trips (bench_write_back.py ``--opcua-delay-ms``). It costs little CPU and
runs in its own process, so the processes measured are not charged for it.

    python bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import sys
import time

LOOPBACK = "127.0.0.1"


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Read from ``reader`` and write each chunk ``delay`` seconds after it arrived."""
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await held.get()
            if not chunk:
                break
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    chunk = b"-"
    while chunk:
        try:
            chunk = await reader.read(65536)
        except ConnectionError:  # the peer is gone: what is held goes out, then we close
            chunk = b""
        held.put_nowait((time.monotonic() + delay, chunk))
    await sender


async def serve(listen: int, target: int, delay: float) -> None:
    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(LOOPBACK, target)
        await asyncio.gather(
            _carry(client_r, server_w, delay),
            _carry(server_r, client_w, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(connection, LOOPBACK, listen)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    listen, target, delay_ms = int(argv[0]), int(argv[1]), float(argv[2])
    asyncio.run(serve(listen, target, delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

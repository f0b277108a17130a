#!/usr/bin/env python3
"""How long `browse` takes on address spaces of growing size, and how many requests it sends.

    python bench/bench_browse.py [--sizes 1000,10000,50000] [--repeat 3] [--values]
                                 [--security None|Basic256Sha256]

For each size N it starts the asyncua test server (``python -m harness.opcua_server
--variables N``) in its own process, waits until it is ready, then times
:func:`opcua_mqtt.adapters.opcua.browse_endpoint` from the Objects folder with all
variable attributes (DataType resolved to a built-in type, ValueRank, ArrayDimensions, access
levels, Description; ``--values`` adds the current values), connection set-up included. The
table shows the median of ``--repeat`` runs: nodes reported, seconds, CPU seconds of this
(client) process, nodes per second, and the Browse (+BrowseNext) and Read requests of one run.
The last line says how time grows with size (the exponent k of t ~ N^k between the smallest and
the largest size).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.opcua_servers import start_opcua_server  # noqa: E402
from opcua_mqtt.adapters.opcua import (  # noqa: E402
    BrowseStats,
    ConnectionOptions,
    browse_endpoint,
)


def options(
    endpoint: str, security: str, workdir: Path, username: str, password: str
) -> ConnectionOptions:
    if security == "None":
        return ConnectionOptions(endpoint, security_policy="None", security_mode="None")
    return ConnectionOptions(
        endpoint,
        security_policy=security,
        security_mode="SignAndEncrypt",
        certificate=workdir / "client.pem",
        private_key=workdir / "client.key",
        trust_dir=workdir / "trusted",
        trust_server_cert=True,
        username=username,
        password=password,
    )


def measure(size: int, repeat: int, values: bool, security: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-browse-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        server = start_opcua_server(workdir / "server", variables=size, timeout=600.0)
        server_ready = time.perf_counter() - started
        try:
            opts = options(server.endpoint, security, workdir, server.username, server.password)
            times: list[float] = []
            cpu: list[float] = []
            stats = BrowseStats()
            nodes = variables = 0
            for _ in range(repeat):
                stats = BrowseStats()
                t0, c0 = time.perf_counter(), time.process_time()
                result = asyncio.run(browse_endpoint(opts, read_values=values, stats=stats))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                nodes, variables = len(result.nodes), len(result.variables())
        finally:
            server.stop()
    seconds = statistics.median(times)
    return {
        "size": size,
        "nodes": nodes,
        "variables": variables,
        "seconds": seconds,
        "client_cpu": statistics.median(cpu),
        "best": min(times),
        "rate": nodes / seconds,
        "browse": stats.browse_requests + stats.browse_next_requests,
        "read": stats.read_requests,
        "read_operations": stats.read_operations,
        "server_ready": server_ready,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,50000", help="variable counts, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median shown)")
    parser.add_argument("--values", action="store_true", help="read the current values too")
    parser.add_argument("--security", default="None", choices=["None", "Basic256Sha256"])
    args = parser.parse_args(argv)
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # revised session timeouts etc.
    sizes = [int(s) for s in args.sizes.split(",") if s]

    print(
        f"# browse_endpoint from Objects, attributes{' + values' if args.values else ''}, "
        f"security {args.security}; median of {args.repeat}"
    )
    print(
        f"# Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        "| variables asked | nodes | variables | seconds | client CPU s | nodes/s "
        "| Browse requests | Read requests | Read operations |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for size in sizes:
        row = measure(size, args.repeat, args.values, args.security)
        rows.append(row)
        print(
            f"| {size:,} | {row['nodes']:,.0f} | {row['variables']:,.0f} | {row['seconds']:.2f} | "
            f"{row['client_cpu']:.2f} | {row['rate']:,.0f} | {row['browse']:.0f} | "
            f"{row['read']:.0f} | {row['read_operations']:,.0f} |",
            flush=True,
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        k = math.log(last["seconds"] / first["seconds"]) / math.log(last["nodes"] / first["nodes"])
        shape = (
            "linearly" if 0.85 <= k <= 1.15 else ("sub-linearly" if k < 0.85 else "super-linearly")
        )
        print(
            f"\nTime grows {shape} with size: t ~ N^{k:.2f} from {first['nodes']:,.0f} to "
            f"{last['nodes']:,.0f} nodes ({last['seconds'] / first['seconds']:.1f}x the time for "
            f"{last['nodes'] / first['nodes']:.1f}x the nodes)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

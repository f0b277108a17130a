#!/usr/bin/env python3
"""Write-back round trips: MQTT request -> bridge -> OPC UA Write -> answer, each part in its own
process.

    python bench/bench_write_back.py [--requests 1000] [--concurrency 1,4,16] [--warmup 50]

* the asyncua test server (``python -m harness.opcua_server --variables 200``), started as
  the tests start it, in its own process;
* Mosquitto with TLS on a free loopback port (stock settings, see harness/);
* the bridge: ``opcua-mqtt run`` as a user runs it, on a configuration with one writer whose
  field ``Double`` is a writable Double of the server and the only node write-back allows; the
  rate limit is raised out of the way (``rate_per_s`` and ``burst`` 100,000); its log, with the
  one audit line per write, goes to a file;
* this process: an MQTT 5 requester (``harness.write_back.Requester``, QoS 1), which sets
  the Response Topic and, as Correlation Data, the request's RequestId (a new UUID each).

Each request writes one value, a new one each time. For each K of ``--concurrency`` the
requester sends ``--requests`` requests with K in flight (K workers, each sending its next
request when its answer has arrived); K = 1 is the sequential case. Latency is the requester's
time from publishing a request to receiving its answer; writes/s is requests over the wall time
of the batch. The bridge serves requests one at a time in arrival order (docs/write-back.md), so
K > 1 overlaps only the MQTT and scheduling hops. Above the broker's Receive Maximum (20 for
stock Mosquitto) requests wait in the requester's own send window and that wait is latency too.

Every answer must be Good, name the request's RequestId and carry its Correlation Data, and the
server must hold the last value answered at the end (an independent read): otherwise the bench
exits with status 1. CPU is per process from /proc, as in bench_bridge.py, with the machine's
total: the figures are only as good as the machine was quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench_bridge import cpu_percent, percentile, proc_status_kib, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.bridge import EXE, simulated_fields  # noqa: E402
from harness.mosquitto import NOT_INSTALLED_MESSAGE, MosquittoBroker  # noqa: E402
from harness.opcua_servers import OpcUaTestServer, start_opcua_server  # noqa: E402
from harness.pki import generate_pki  # noqa: E402
from harness.processes import Process, find_mosquitto, spawn  # noqa: E402
from harness.write_back import (  # noqa: E402
    Requester,
    read_variant,
    serving_requester,
    writable_scalars,
    write_back_config,
)


@dataclass
class Batch:
    """One batch of requests with ``in_flight`` of them outstanding at a time."""

    in_flight: int
    latencies: list[float]  # seconds, sorted
    seconds: float
    cpu: dict[str, float]  # percent of one core, per process, and "machine"
    failures: list[str]

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds


class Load:
    """Sends write requests for the field ``W/Double``, each with a new value, and checks every
    answer."""

    def __init__(self, requester: Requester) -> None:
        self.requester = requester
        self.sent = 0
        self.last_answered: float | None = None

    async def one(self, failures: list[str]) -> float:
        """One round trip; returns its latency in seconds."""
        self.sent += 1
        value = self.sent + 0.25
        rid = str(uuid.uuid4())
        request = {
            "RequestId": rid,
            "Targets": [{"Writer": "W", "Field": "Double", "Value": value}],
        }
        started = time.perf_counter()
        answer = await self.requester.ask(request, rid=rid)
        latency = time.perf_counter() - started
        correlation = self.requester.props[rid].get("correlation_data")
        if answer["Result"]["Code"] != 0 or answer.get("RequestId") != rid:
            failures.append(f"{rid}: {answer}")
        elif correlation not in ([rid.encode()], rid.encode()):
            failures.append(f"{rid}: correlation data {correlation!r}")
        self.last_answered = value
        return latency

    async def batch(self, count: int, in_flight: int, pids: dict[str, int]) -> Batch:
        latencies: list[float] = []
        failures: list[str] = []
        left = iter(range(count))

        async def worker() -> None:
            for _ in left:
                latencies.append(await self.one(failures))

        cpu0, t0 = snapshot(pids), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        seconds = time.perf_counter() - t0
        cpu = cpu_percent(cpu0, snapshot(pids), seconds)
        return Batch(in_flight, sorted(latencies), seconds, cpu, failures)


def spawn_bridge(config: Path, workdir: Path) -> Process:
    return spawn([EXE, "--log-format", "json", "run", str(config)], workdir, "bridge", REPO_ROOT)


def start_broker(stack: contextlib.ExitStack, workdir: Path) -> MosquittoBroker:
    """A TLS Mosquitto (stock settings, a PKI of its own in ``workdir``), stopped by ``stack``."""
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise SystemExit(NOT_INSTALLED_MESSAGE)
    broker = MosquittoBroker(
        executable=mosquitto,
        pki=generate_pki(workdir / "pki"),
        workdir=workdir / "mosquitto",
        mutual_tls=False,
    )
    broker.start()
    stack.callback(broker.stop)
    return broker


def start_rig(
    stack: contextlib.ExitStack, workdir: Path, *simulated: str, **limits: Any
) -> tuple[MosquittoBroker, OpcUaTestServer, str, Path]:
    """What both write-back benchmarks stand on, stopped by ``stack``: a TLS broker, the asyncua
    test server (200 variables) and a configuration (not started) whose writer W holds the
    ``simulated`` variables and the server's writable Double, and accepts writes to the Double
    within the write-back ``limits``. Returns (broker, server, the Double's NodeId, path)."""
    broker = start_broker(stack, workdir)
    # Blocking on purpose: nothing else runs yet, and a Ctrl-C cannot orphan the server.
    server = start_opcua_server(workdir / "server", variables=200, timeout=120.0)
    stack.callback(server.stop)
    node = writable_scalars(server)["Double"]["nodeid"]
    double = {"name": "Double", "node_id": node, "builtin_type": "Double"}
    fields = [*simulated_fields(server, *simulated), double]
    config = write_back_config(workdir, server.endpoint, broker, fields, ["G/W/Double"], **limits)
    return broker, server, node, config


async def measure(workdir: Path, args: argparse.Namespace) -> tuple[list[Batch], dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        broker, server, node, config = start_rig(stack, workdir, rate_per_s=100_000, burst=100_000)
        bridge = spawn_bridge(config, workdir)
        stack.callback(bridge.stop)
        async with serving_requester(broker, bridge=bridge) as requester:
            load = Load(requester)
            pids = {
                "bridge": bridge.pid,
                "server": server.pid,
                "mosquitto": broker.pid or 0,
                "requester": os.getpid(),
            }
            warmup = await load.batch(args.warmup, 1, pids)
            batches = [await load.batch(args.requests, k, pids) for k in args.concurrency]
            held = (await read_variant(server.endpoint, node)).Value
        info = {
            "warmup_failures": warmup.failures,
            "held": held,
            "last_answered": load.last_answered,
            "bridge_hwm_mib": (proc_status_kib(bridge.pid, "VmHWM") or 0) / 1024,
        }
    return batches, info


def print_report(batches: list[Batch], info: dict[str, Any]) -> None:
    print(
        "| in flight | requests | writes/s | p50 ms | p99 ms | max ms | bridge CPU % "
        "| bridge CPU µs/write |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in batches:
        bridge_cpu = b.cpu.get("bridge", float("nan"))
        print(
            f"| {b.in_flight} | {len(b.latencies):,} | {b.per_s:,.0f} | "
            f"{1000 * percentile(b.latencies, 0.50):.2f} | "
            f"{1000 * percentile(b.latencies, 0.99):.2f} | {1000 * b.latencies[-1]:.2f} | "
            f"{bridge_cpu:.0f} | {1e6 * bridge_cpu / 100 / b.per_s:,.0f} |",
            flush=True,
        )
    for b in batches:
        ours = sum(v for k, v in b.cpu.items() if k != "machine")
        machine = b.cpu.get("machine", 0.0)
        print(
            f"#   {b.in_flight} in flight: {b.seconds:.2f} s; CPU %: bridge "
            f"{b.cpu.get('bridge', 0):.0f}, server {b.cpu.get('server', 0):.0f}, mosquitto "
            f"{b.cpu.get('mosquitto', 0):.0f}, requester {b.cpu.get('requester', 0):.0f} "
            f"(sum {ours:.0f}; machine {machine:.0f} of {100 * (os.cpu_count() or 1)}, so "
            f"{machine - ours:.0f} % other work); {len(b.failures)} failed"
        )
    print(
        f"#   bridge peak RSS {info['bridge_hwm_mib']:.0f} MiB; the server holds "
        f"{info['held']!r}, the last value answered was {info['last_answered']!r}"
    )


def failed(batches: list[Batch], info: dict[str, Any]) -> list[str]:
    problems = [*info["warmup_failures"], *(f for b in batches for f in b.failures)]
    if info["last_answered"] is not None and info["held"] != info["last_answered"]:
        problems.append(f"the server holds {info['held']!r}, not {info['last_answered']!r}")
    return problems


async def run(args: argparse.Namespace) -> int:
    print(
        f"# write-back round trips: {args.requests:,} requests per batch, in flight "
        f"{', '.join(map(str, args.concurrency))}, after {args.warmup} sequential warm-up "
        "requests; MQTT 5 requester -> Mosquitto TLS -> `opcua-mqtt run` -> asyncua test server"
    )
    print(
        f"# {dt.date.today()}, Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"gmqtt {version('gmqtt')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-write-back-") as tmp:
        batches, info = await measure(Path(tmp), args)
    print_report(batches, info)
    problems = failed(batches, info)
    for problem in problems[:10]:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, comma-separated")
    return counts


def _count(text: str) -> int:
    (count,) = _counts(text)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for what is measured and how.",
    )
    parser.add_argument(
        "--requests", type=_count, default=1000, help="requests per batch (default 1000)"
    )
    parser.add_argument(
        "--concurrency",
        type=_counts,
        default=[1, 4, 16],
        help="requests in flight, one batch per value, comma-separated (default 1,4,16)",
    )
    parser.add_argument(
        "--warmup", type=int, default=50, help="sequential requests first, not counted"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def terminate(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # run the clean-up, as on Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

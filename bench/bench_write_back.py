#!/usr/bin/env python3
"""Write-back round trips: MQTT request -> bridge -> OPC UA Write -> answer, each part in its own
process.

    python bench/bench_write_back.py [--requests 1000] [--concurrency 1,4,16] [--warmup 50]
                                     [--nodes 16] [--opcua-delay-ms 0] [--profile]

* the asyncua test server (``python -m harness.opcua_server --variables 200``, more when
  ``--nodes`` needs more writable Doubles), started as the tests start it, in its own process;
* Mosquitto with TLS on a free loopback port (stock settings, see harness/);
* the bridge: ``opcua-mqtt run`` as a user runs it, on a configuration with one writer whose
  fields ``Double``, ``Double1``, ... are writable Doubles of the server and the only nodes
  write-back allows; the
  rate limits are raised out of the way (``rate_per_s``, ``burst``, ``total_rate_per_s`` and
  ``total_burst`` 100,000); its log, with the
  one audit line per write, goes to a file;
* this process: an MQTT 5 requester (``harness.write_back.Requester``, QoS 1), which sets
  the Response Topic and, as Correlation Data, the request's RequestId (a new UUID each).

Each request writes one value, a new one each time, to the next of ``--nodes`` writable Doubles
in turn. For each K of ``--concurrency`` the requester sends ``--requests`` requests with K in
flight (K workers, each sending its next request when its answer has arrived); K = 1 is the
sequential case. Latency is the requester's time from publishing a request to receiving its
answer; writes/s is requests over the wall time of the batch. The bridge carries requests out in
arrival order, in batches of those that wait while a Write is at the server (one Read and one
Write per batch), but never two writes to one node in a batch (docs/write-back.md): with
``--nodes 1`` it is one Write per request. Above the broker's Receive Maximum (20 for stock
Mosquitto) requests wait in the requester's own send window and that wait is latency too.

With ``--opcua-delay-ms D`` the bridge reaches the server through ``bench/delay_proxy.py``,
which holds every chunk D ms each way (a network with a round trip of 2 D more): the figures
then depend on round trips more than on CPU, which a shared machine disturbs less.

Every answer must be Good, name the request's RequestId and carry its Correlation Data, and the
server must hold the last value answered in each node at the end (an independent read):
otherwise the bench exits with status 1. CPU is per process from /proc, as in bench_bridge.py,
with the machine's total: the figures are only as good as the machine was quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bridge_load import (
    cpu_percent,
    percentile,
    proc_status_kib,
    run_to_the_end,
    snapshot,
)
from profile_report import print_top, profile_table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.bridge import EXE, simulated_fields  # noqa: E402
from harness.mosquitto import NOT_INSTALLED_MESSAGE, MosquittoBroker  # noqa: E402
from harness.opcua_servers import OpcUaTestServer, start_opcua_server  # noqa: E402
from harness.pki import generate_pki  # noqa: E402
from harness.plant_model import VARIABLES_PER_MACHINE  # noqa: E402
from harness.processes import LOOPBACK, Process, find_mosquitto, free_port, spawn  # noqa: E402
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
    """Sends write requests for writer W's ``nodes`` Double fields in turn, each with a new
    value, and checks every answer."""

    def __init__(self, requester: Requester, nodes: int) -> None:
        self.requester = requester
        self.nodes = nodes
        self.sent = 0
        #: field -> the value of its latest request answered (by the order sent)
        self.last_answered: dict[str, tuple[int, float]] = {}

    async def one(self, failures: list[str]) -> float:
        """One round trip; returns its latency in seconds."""
        self.sent += 1
        seq, value = self.sent, self.sent + 0.25
        name = double_field(seq % self.nodes)
        rid = str(uuid.uuid4())
        request = {
            "RequestId": rid,
            "Targets": [{"Writer": "W", "Field": name, "Value": value}],
        }
        started = time.perf_counter()
        answer = await self.requester.ask(request, rid=rid)
        latency = time.perf_counter() - started
        correlation = self.requester.props[rid].get("correlation_data")
        if answer["Result"]["Code"] != 0 or answer.get("RequestId") != rid:
            failures.append(f"{rid}: {answer}")
        elif correlation not in ([rid.encode()], rid.encode()):
            failures.append(f"{rid}: correlation data {correlation!r}")
        if seq > self.last_answered.get(name, (0, 0.0))[0]:
            self.last_answered[name] = (seq, value)
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


def spawn_bridge(config: Path, workdir: Path, profile: Path | None = None) -> Process:
    """``opcua-mqtt run``; under cProfile (written to ``profile`` when it stops) if asked."""
    profiler = [] if profile is None else [sys.executable, "-m", "cProfile", "-o", str(profile)]
    command = [*profiler, EXE, "--log-format", "json", "run", str(config)]
    return spawn(command, workdir, "bridge", REPO_ROOT)


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


def start_delay_proxy(
    stack: contextlib.ExitStack, workdir: Path, server: OpcUaTestServer, delay_ms: float
) -> tuple[str, Process]:
    """``server``'s endpoint through bench/delay_proxy.py holding each chunk ``delay_ms`` each
    way, once it listens; the proxy is stopped by ``stack``."""
    listen = free_port()
    script = Path(__file__).with_name("delay_proxy.py")
    command = [sys.executable, str(script), str(listen), str(server.port), f"{delay_ms:g}"]
    proxy = spawn(command, workdir, "delay-proxy", REPO_ROOT, die_with_parent=True)
    stack.callback(proxy.stop)
    for _ in range(200):
        try:
            socket.create_connection((LOOPBACK, listen), timeout=1).close()
            break
        except OSError:
            if not proxy.running:
                raise SystemExit(
                    f"the delay proxy exited: {proxy.stderr_path.read_text()}"
                ) from None
            time.sleep(0.05)
    else:
        raise SystemExit(f"the delay proxy does not listen on {listen}")
    return server.endpoint.replace(f":{server.port}", f":{listen}", 1), proxy


def start_rig(
    stack: contextlib.ExitStack,
    workdir: Path,
    *simulated: str,
    nodes: int = 1,
    endpoint: Callable[[OpcUaTestServer], str] = lambda server: server.endpoint,
    **limits: Any,
) -> tuple[MosquittoBroker, OpcUaTestServer, list[str], Path]:
    """What the write-back benchmarks stand on, stopped by ``stack``: a TLS broker, the asyncua
    test server (200 variables, more when ``nodes`` needs them) and a configuration (not
    started) whose writer W holds the ``simulated`` variables and ``nodes`` writable Doubles of
    the server (fields ``Double``, ``Double1``, ...), and accepts writes to those within the
    write-back ``limits``; the bridge reaches the server at ``endpoint(server)``. Returns
    (broker, server, the Doubles' NodeIds, path)."""
    broker = start_broker(stack, workdir)
    # Blocking on purpose: nothing else runs yet, and a Ctrl-C cannot orphan the server.
    # Each machine of the test plant has a writable Double among its Parameters.
    variables = max(200, 20 + VARIABLES_PER_MACHINE * nodes)
    server = start_opcua_server(workdir / "server", variables=variables, timeout=120.0)
    stack.callback(server.stop)
    first = writable_scalars(server)["Double"]["nodeid"]
    others = [
        v["nodeid"]
        for v in server.variables
        if v["writable"]
        and v["builtin_type"] == "Double"
        and v["value_rank"] == -1
        and ".Parameters." in v["nodeid"]
        and v["nodeid"] != first
    ]
    node_ids = [first, *others][:nodes]
    if len(node_ids) < nodes:
        raise SystemExit(f"the test server has {len(node_ids)} writable Doubles, not {nodes}")
    names = [double_field(i) for i in range(nodes)]
    doubles = [
        {"name": name, "node_id": node, "builtin_type": "Double"}
        for name, node in zip(names, node_ids, strict=True)
    ]
    fields = [*simulated_fields(server, *simulated), *doubles]
    allow = [f"G/W/{name}" for name in names]
    config = write_back_config(workdir, endpoint(server), broker, fields, allow, **limits)
    return broker, server, node_ids, config


def double_field(i: int) -> str:
    """The name of writer W's field for the ``i``-th writable Double."""
    return "Double" if i == 0 else f"Double{i}"


async def measure(workdir: Path, args: argparse.Namespace) -> tuple[list[Batch], dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        proxies: list[Process] = []

        def endpoint(server: OpcUaTestServer) -> str:
            if not args.opcua_delay_ms:
                return server.endpoint
            via, proxy = start_delay_proxy(stack, workdir, server, args.opcua_delay_ms)
            proxies.append(proxy)
            return via

        broker, server, node_ids, config = start_rig(
            stack,
            workdir,
            nodes=args.nodes,
            endpoint=endpoint,
            rate_per_s=100_000,
            burst=100_000,
            total_rate_per_s=100_000,
            total_burst=100_000,
        )
        bridge = spawn_bridge(config, workdir, workdir / "bridge.prof" if args.profile else None)
        stack.callback(bridge.stop)
        async with serving_requester(broker, bridge=bridge) as requester:
            load = Load(requester, args.nodes)
            pids = {
                "bridge": bridge.pid,
                "server": server.pid,
                "mosquitto": broker.pid or 0,
                "requester": os.getpid(),
            }
            for proxy in proxies:
                pids["delay proxy"] = proxy.pid
            warmup = await load.batch(args.warmup, 1, pids)
            batches = [await load.batch(args.requests, k, pids) for k in args.concurrency]
            held = {
                double_field(i): (await read_variant(server.endpoint, node)).Value
                for i, node in enumerate(node_ids)
            }
        info = {
            "warmup_failures": warmup.failures,
            "held": held,
            "last_answered": {name: value for name, (_, value) in load.last_answered.items()},
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
            f"{b.cpu.get('mosquitto', 0):.0f}, requester {b.cpu.get('requester', 0):.0f}"
            + (f", delay proxy {b.cpu['delay proxy']:.0f}" if "delay proxy" in b.cpu else "")
            + " "
            f"(sum {ours:.0f}; machine {machine:.0f} of {100 * (os.cpu_count() or 1)}, so "
            f"{machine - ours:.0f} % other work); {len(b.failures)} failed"
        )
    same = sum(info["held"].get(k) == v for k, v in info["last_answered"].items())
    print(
        f"#   bridge peak RSS {info['bridge_hwm_mib']:.0f} MiB; the server holds the last value "
        f"answered in {same} of {len(info['last_answered'])} nodes written"
    )


def failed(batches: list[Batch], info: dict[str, Any]) -> list[str]:
    problems = [*info["warmup_failures"], *(f for b in batches for f in b.failures)]
    for name, value in info["last_answered"].items():
        if info["held"].get(name) != value:
            problems.append(f"the server holds {info['held'].get(name)!r} in {name}, not {value!r}")
    return problems


async def run(args: argparse.Namespace) -> int:
    print(
        f"# write-back round trips: {args.requests:,} requests per batch, in flight "
        f"{', '.join(map(str, args.concurrency))}, to {args.nodes} nodes in turn, after "
        f"{args.warmup} sequential warm-up requests; MQTT 5 requester -> Mosquitto TLS -> "
        "`opcua-mqtt run` -> asyncua test server"
        + (
            f" through a proxy holding each chunk {args.opcua_delay_ms:g} ms each way"
            if args.opcua_delay_ms
            else ""
        )
    )
    print(
        f"# {dt.date.today()}, Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"gmqtt {version('gmqtt')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-write-back-") as tmp:
        batches, info = await measure(Path(tmp), args)
        print_report(batches, info)
        if args.profile:
            table, busy, idle = profile_table(Path(tmp) / "bridge.prof")
            print(f"# bridge cProfile, whole run: {busy:.2f} s busy, {idle:.2f} s in epoll")
            print_top(table, busy, 25, column=3)
            print_top(table, busy, 15)
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
    parser.add_argument(
        "--nodes",
        type=_count,
        default=16,
        help="writable Doubles the requests write in turn (default 16; 1 = every request the "
        "same node, which the bridge writes one request per Write, in request order)",
    )
    parser.add_argument(
        "--opcua-delay-ms",
        type=float,
        default=0.0,
        help="hold every chunk between the bridge and the OPC UA server this long, each way "
        "(bench/delay_proxy.py; default 0: no proxy)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the bridge under cProfile; print its top"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    return run_to_the_end(run(args))


if __name__ == "__main__":
    sys.exit(main())

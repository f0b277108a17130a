#!/usr/bin/env python3
"""Issue 14's table in one run: our bridge and the naive one (naive_bridge.py) measured the
same way, one after the other, on the same machine; overload, shards and write-back.

    bench/run [--seconds 15] [--warmup 5] [--servers 3] [--source asyncua-direct]
              [--server-nice 0] [--bridge-cpu 0.3] [--bridge-cpu-period-ms 10] [--requests 2000]
              [--with-100k [--minutes 10]]

(``bench/run`` runs this file with the repository's .venv; about 10 minutes, 12 more with
``--with-100k``.) Every bridge figure comes from bench_bridge.py's ``measure`` (churn server
processes, Mosquitto TLS, bridge in its own process, CPU from /proc, latency source ->
subscriber, counted by the light subscriber with every metadata signature verified),
write-back from bench_write_back.py's. The runs (write-back, run 5, goes first: its requester
lives in this process):

1. ours and the naive bridge at 1,000 items x 100 ms from one server (10,000 changes/s offered):
   CPU per notification that reached the bridge and per fresh value delivered; the naive one
   also at QoS 0, its best case (at QoS 1 it runs out of gmqtt's packet ids, see
   docs/benchmarks.md);
2. both at 10,000 items x 100 ms from ``--servers`` server processes (a load source that is
   not the limit; the naive one at QoS 1 and QoS 0): fresh values/s delivered, p99 latency,
   sequence gaps;
3. overload: ours with its CPU limited to ``--bridge-cpu`` cores (a cgroup; needs root), first
   at 1,000 items (not overloaded: its cost per notification under the limit gives the
   capacity, limit / cost), then at 10,000 items from the same servers as run 2 (offered >
   capacity): delivered / capacity and the event loop's largest lag. The naive one has no
   limit: its QoS 0 run 2 against one core at its run-1 cost;
4. shards: run 2's load through ``opcua-mqtt shard CONFIG 2`` (two bridge processes) against
   run 2's one bridge: delivered, p99, CPU per process and summed;
5. write-back with 16 requests in flight to 16 nodes, and to one node (one Write per request,
   as writes to one node stay in request order);
6. with ``--with-100k``: bench_many_sources.py (100,000 items over four servers, 10 s change
   interval) for ``--minutes``.

The sources' own rate (what the servers wrote, by their own count), which source
(``--source``: by default asyncua-direct, the asyncua churn servers with their changes queued
directly, harness/churn_direct.py; ``asyncua`` for write_attribute_value per change) and the
servers' CPU stand beside every figure.
Child processes are stopped by PID on the way out, also after Ctrl-C. Exit status 2 (one line)
when the CPU limit cannot be set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bench_bridge
import bench_many_sources
import bench_write_back
from bridge_load import percentile, run_to_the_end

ONE_CORE_US = 1_000_000.0


def bridge_args(
    args: argparse.Namespace,
    *,
    naive: bool = False,
    qos: int = 1,
    servers: int = 1,
    cpu: float | None = None,
    shards: int = 1,
) -> argparse.Namespace:
    """bench_bridge.py's options for one run (its defaults, the window of ``args``)."""
    return bench_bridge.parser().parse_args(
        [
            *("--seconds", str(args.seconds), "--warmup", str(args.warmup)),
            *("--drain-limit", str(args.drain_limit), "--qos", str(qos)),
            *("--servers", str(servers), "--shards", str(shards)),
            *("--server-nice", str(args.server_nice), "--source", args.source),
            *(["--bridge-cpu", str(cpu)] if cpu else []),
            *("--bridge-cpu-period-ms", str(args.bridge_cpu_period_ms)),
            *(["--naive"] if naive else []),
        ]
    )


def planned_runs(args: argparse.Namespace) -> dict[str, tuple[int, argparse.Namespace]]:
    k = args.servers
    return {
        "ours 1k": (1000, bridge_args(args)),
        "naive 1k": (1000, bridge_args(args, naive=True)),
        "naive 1k qos0": (1000, bridge_args(args, naive=True, qos=0)),
        "ours 10k": (10000, bridge_args(args, servers=k)),
        "naive 10k": (10000, bridge_args(args, naive=True, servers=k)),
        "naive 10k qos0": (10000, bridge_args(args, naive=True, qos=0, servers=k)),
        "ours 1k limited": (1000, bridge_args(args, cpu=args.bridge_cpu)),
        "ours 10k limited": (10000, bridge_args(args, servers=k, cpu=args.bridge_cpu)),
        "ours 10k 2 shards": (10000, bridge_args(args, servers=k, shards=2)),
    }


async def bridge_runs(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, Any]]:
    env = bench_bridge.make_env(workdir)
    out: dict[str, dict[str, Any]] = {}
    for name, (size, run_args) in planned_runs(args).items():
        print(f"# measuring {name} ...", flush=True)
        env.workdir = workdir / name.replace(" ", "-")
        env.workdir.mkdir()
        try:
            out[name] = await bench_bridge.measure(env, size, run_args)
        except RuntimeError as e:  # a bridge that never got ready or stopped answering
            if not run_args.naive:
                raise
            last = str(e).strip().splitlines()[-1:] or ["?"]
            print(f"# {name} COLLAPSED: {last[0]}", flush=True)
            out[name] = {"collapsed": last[0]}
    return out


async def write_back_runs(args: argparse.Namespace, workdir: Path) -> dict[int, Any]:
    out = {}
    for nodes in (16, 1):
        print(f"# measuring write-back, 16 in flight, {nodes} node(s) ...", flush=True)
        wb_args = argparse.Namespace(
            requests=args.requests,
            concurrency=[16],
            warmup=50,
            nodes=nodes,
            opcua_delay_ms=0.0,
            profile=False,
        )
        directory = workdir / f"write-back-{nodes}"
        directory.mkdir()
        batches, info = await bench_write_back.measure(directory, wb_args)
        problems = bench_write_back.failed(batches, info)
        if problems:
            raise SystemExit(f"write-back failed: {problems[:3]}")
        out[nodes] = batches[0]
    return out


def _source(r: dict[str, Any]) -> str:
    """What the load source wrote by its own count, which source, and its CPU."""
    if "collapsed" in r:
        return "—"
    rates = r["server_rates"]
    each = f" ({' + '.join(f'{x:,.0f}' for x in rates)})" if len(rates) > 1 else ""
    return (
        f"{r['server'].get('values_per_s', float('nan')):,.0f}/s written{each} by "
        f"{r['source']}, {r['cpu'].get('server', float('nan')):.0f} % CPU"
    )


def delivered(r: dict[str, Any]) -> float:
    """Fresh values/s: those written inside the window that reached the subscriber (after the
    drain), over the window."""
    return float(r["delivered"]) / r["seconds"]


def _cost(r: dict[str, Any]) -> str:
    if "collapsed" in r:
        return f"collapsed: {r['collapsed']}"
    return (
        f"{r['bridge_us_per_notification']:.1f} µs/notification, "
        f"{r['bridge_us_per_value']:.1f} µs/value delivered"
    )


def _flow(r: dict[str, Any]) -> str:
    if "collapsed" in r:
        return f"collapsed: {r['collapsed']}"
    return (
        f"{delivered(r):,.0f} delivered/s, {r['lost'] / max(r['expected'], 1):.1%} "
        f"lost, {r['seq_gaps']} sequence gaps"
    )


def _latency(r: dict[str, Any]) -> str:
    if "collapsed" in r:
        return "—"
    return f"{r['p50_ms']:,.0f} / {r['p99_ms']:,.0f} ms"


def _overload(r: dict[str, Any], cap: float) -> str:
    if "collapsed" in r:
        return f"collapsed: {r['collapsed']}"
    offered = r["server"].get("values_per_s", r["offered_per_s"])
    shed = r["values_shed_per_s"]
    p99 = "— (nothing of the window arrived)" if r["delivered"] == 0 else f"{r['p99_ms']:,.0f} ms"
    return (
        f"{delivered(r) / cap:.0%} of {cap:,.0f}/s ({offered:,.0f}/s offered), loop lag max "
        f"{r['max_loop_lag_ms']:,.0f} ms, p99 {p99}; values shed "
        f"{'(no such metric)' if shed is None else f'{shed:,.0f}/s'}"
    )


def _shards(r: dict[str, Any]) -> str:
    each = " + ".join(f"{c:.0f}" for c in r["bridge_cpu"])
    return (
        f"{delivered(r):,.0f} delivered/s, p99 {r['p99_ms']:,.0f} ms, {r['seq_gaps']} gaps; "
        f"bridge CPU {r['cpu']['bridge']:.0f} %" + (f" ({each})" if r["bridges"] > 1 else "")
    )


def table_rows(b: dict[str, dict[str, Any]], w: dict[int, Any]) -> list[tuple[str, ...]]:
    ours1, naive1, naive0 = b["ours 1k"], b["naive 1k"], b["naive 1k qos0"]
    ours10, naive10, naive10q0 = b["ours 10k"], b["naive 10k"], b["naive 10k qos0"]
    limited1, limited10 = b["ours 1k limited"], b["ours 10k limited"]
    servers = ours10["servers"]
    rows = [
        (
            "bridge CPU per notification, end to end, at 10,000/s (1,000 items × 100 ms)",
            _cost(ours1),
            f"QoS 1: {_cost(naive1)}; QoS 0: {_cost(naive0)}",
            _source(ours1),
        ),
        (
            f"10,000 items × 100 ms from {servers} server processes: fresh values/s delivered",
            _flow(ours10),
            f"QoS 1: {_flow(naive10)}; QoS 0: {_flow(naive10q0)}",
            f"{_source(ours10)}; naive runs: {_source(naive10)}; {_source(naive10q0)}",
        ),
        (
            "same: latency source → subscriber p50 / p99",
            _latency(ours10),
            f"QoS 1: {_latency(naive10)}; QoS 0: {_latency(naive10q0)}",
            "as above",
        ),
    ]
    cap = limited1["cpu_limit"] * ONE_CORE_US / max(limited1["bridge_us_per_notification"], 1e-9)
    naive_cap = (
        ONE_CORE_US / max(naive0["bridge_us_per_notification"], 1e-9)
        if "collapsed" not in naive0
        else float("nan")
    )
    rows.append(
        (
            f"overload: delivered ÷ capacity, event-loop lag max (ours: CPU limited to "
            f"{limited1['cpu_limit']:g} core, capacity = limit ÷ its cost at 1,000 items, "
            f"{limited1['bridge_us_per_notification']:.1f} µs)",
            _overload(limited10, cap),
            "no limit, QoS 0, one core at its 1,000-item cost: "
            + _overload(naive10q0, min(naive_cap, naive10q0.get("offered_per_s", naive_cap))),
            f"{_source(limited10)}; naive: {_source(naive10q0)}",
        )
    )
    many, one = w[16], w[1]
    rows.append(
        (
            "write-back, 16 requests in flight: writes/s, p99 (16 nodes; 1 node)",
            f"{many.per_s:,.0f}/s, p99 {1000 * percentile(many.latencies, 0.99):.1f} ms; "
            f"{one.per_s:,.0f}/s, p99 {1000 * percentile(one.latencies, 0.99):.1f} ms",
            "—",
            "requester: 16 in flight",
        )
    )
    ratio = "—"
    if "collapsed" not in naive0:
        per_value = naive0["bridge_us_per_value"] / max(ours1["bridge_us_per_value"], 1e-9)
        ratio = f"{per_value:.1f}×"
    qos1 = (
        f"QoS 1: {delivered(naive1):,.0f}/s delivered"
        if "collapsed" not in naive1
        else f"QoS 1: collapsed: {naive1['collapsed']}"
    )
    rows.append(
        (
            "ratio to the naive bridge: its CPU per value delivered ÷ ours (1,000 × 100 ms, "
            "naive at QoS 0)",
            ratio,
            qos1,
            _source(naive0),
        )
    )
    rows.append(
        (
            "one shard vs two (`opcua-mqtt shard CONFIG 2`), the load of the 10,000-item row",
            f"one: {_shards(ours10)}; two: {_shards(b['ours 10k 2 shards'])}",
            "—",
            f"{_source(ours10)}; two shards: {_source(b['ours 10k 2 shards'])}",
        )
    )
    return rows


def _lag(r: dict[str, Any], name: str) -> str:
    lags = r["lags"]
    return f"{lags.get(f'{name}_p50_ms', '?')}/{lags.get(f'{name}_p99_ms', '?')} ms"


def print_table(b: dict[str, dict[str, Any]], w: dict[int, Any]) -> None:
    print("| measure | ours | naive bridge | source |")
    print("| --- | --- | --- | --- |")
    for row in table_rows(b, w):
        print("| " + " | ".join(row) + " |")
    print()
    for name, r in b.items():
        if "collapsed" in r:
            print(f"#   {name}: collapsed: {r['collapsed']}")
            continue
        cpu = r["cpu"]
        print(
            f"#   {name}: bridge CPU {cpu.get('bridge', 0):.0f} %, servers "
            f"{cpu.get('server', 0):.0f} %, subscriber {cpu.get('subscriber', 0):.0f} %, other "
            f"work {bench_bridge.other_work(r):.0f} %; {r['bridge_in_per_s']:,.0f} "
            f"notifications/s into the bridge; peak RSS {r['bridge_hwm_mib']:.0f} MiB; "
            f"source->bridge p50/p99 {_lag(r, 'arrival_lag')}, arrival->writer tick p50/p99 "
            f"{_lag(r, 'tick_wait')}, writer tick->subscriber p50/p99 "
            f"{_lag(r, 'tick_to_subscriber')}"
            + (f"; throttled {r['throttled_s']:.1f} s" if r["cpu_limit"] else "")
        )
    for nodes, batch in w.items():
        cpu = batch.cpu
        print(
            f"#   write-back {nodes} node(s): bridge CPU {cpu.get('bridge', 0):.0f} %, "
            f"{1e6 * cpu.get('bridge', 0) / 100 / batch.per_s:,.0f} µs/write, p50 "
            f"{1000 * percentile(batch.latencies, 0.5):.1f} ms"
        )


async def run(args: argparse.Namespace) -> None:
    print(
        f"# issue 14 comparison: {dt.date.today()}, Python {platform.python_version()}, asyncua "
        f"{version('asyncua')}, gmqtt {version('gmqtt')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; window "
        f"{args.seconds:g} s after {args.warmup:g} s; load source {args.source} "
        f"({bench_bridge.SOURCES[args.source]})"
    )
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        workdir = Path(tmp)
        # Write-back first: its requester lives in this process, which the bridge runs leave
        # holding their results (after them: 1,440 writes/s against 2,094 in a fresh process).
        w = await write_back_runs(args, workdir)
        b = await bridge_runs(args, workdir)
    print_table(b, w)
    if args.with_100k:
        print(f"\n# 100,000 items over 4 servers, {args.minutes:g} min ...", flush=True)
        many = bench_many_sources.parser().parse_args(["--minutes", str(args.minutes)])
        bench_many_sources.report(await bench_many_sources.run(many), many)
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="window per bridge run (default 15 s)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument(
        "--drain-limit", type=float, default=20.0, help="wait for late values (default 20 s)"
    )
    parser.add_argument(
        "--servers", type=int, default=3, help="churn server processes at 10,000 items (default 3)"
    )
    parser.add_argument(
        "--source",
        choices=list(bench_bridge.SOURCES),
        default="asyncua-direct",
        help="the churn servers' way of making changes (default asyncua-direct; see "
        "bench_bridge.py --source)",
    )
    parser.add_argument(
        "--server-nice",
        type=int,
        default=0,
        metavar="N",
        help="the churn servers' nice level (default 0; see bench_bridge.py --server-nice)",
    )
    parser.add_argument(
        "--bridge-cpu",
        type=float,
        default=0.3,
        metavar="CORES",
        help="our bridge's CPU limit in the overload runs (default 0.3 core; cgroup v1, root)",
    )
    parser.add_argument(
        "--bridge-cpu-period-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="the CPU limit's period (default 10 ms; see bench_bridge.py)",
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="write-back requests per run (default 2000)"
    )
    parser.add_argument(
        "--with-100k",
        action="store_true",
        help="also run bench_many_sources.py (100,000 items, --minutes long)",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="for --with-100k")
    args = parser.parse_args(argv)
    problem = bench_bridge.check_cpu_limit(args.bridge_cpu)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("opcua_mqtt.subscriber").setLevel(logging.ERROR)
    return run_to_the_end(run(args))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Issue 14's table in one run: our bridge and the naive one (naive_bridge.py) measured the
same way, one after the other, on the same machine, and write-back.

    bench/run [--seconds 20] [--warmup 5] [--requests 2000]

(``bench/run`` runs this file with the repository's .venv.) Every bridge figure comes from
bench_bridge.py's ``measure`` (asyncua churn server, Mosquitto TLS, bridge in its own process,
CPU from /proc, latency source -> subscriber), write-back from bench_write_back.py's. The runs:

1. ours and the naive bridge at 1,000 items x 100 ms (10,000 changes/s offered): CPU per
   notification that reached the bridge and per fresh value delivered; the naive one also at
   QoS 0, its best case (at QoS 1 it runs out of gmqtt's packet ids, see docs/benchmarks.md);
2. both at 10,000 items x 100 ms (as fast as the churn server can write, ~40,000-60,000/s;
   the naive one at QoS 1 and QoS 0): fresh values/s delivered, p99 latency, sequence gaps;
3. overload, from run 2: delivered / capacity, where capacity is what one core carries at the
   cost per notification measured in run 1 (1,000,000 µs / µs per notification; the naive one's
   at QoS 0), or the offered rate where that is lower; and the event loop's largest lag;
4. write-back with 16 requests in flight to 16 nodes, and to one node (one Write per request,
   as writes to one node stay in request order).

The source's own rate (what the server wrote, by its timestamps) stands beside every figure.
Child processes are stopped by PID on the way out, also after Ctrl-C.
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
import bench_write_back

ONE_CORE_US = 1_000_000.0


def bridge_args(args: argparse.Namespace, *, naive: bool, qos: int = 1) -> argparse.Namespace:
    """bench_bridge.py's options for one run (its defaults, the window of ``args``)."""
    return argparse.Namespace(
        interval_ms=100.0,
        publishing_interval_ms=None,
        seconds=args.seconds,
        warmup=args.warmup,
        drain_limit=args.drain_limit,
        fields_per_writer=100,
        qos=qos,
        queue_size=10,
        profile=False,
        naive=naive,
    )


async def bridge_runs(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, Any]]:
    env = bench_bridge.make_env(workdir)
    runs = {
        "ours 1k": (1000, bridge_args(args, naive=False)),
        "naive 1k": (1000, bridge_args(args, naive=True)),
        "naive 1k qos0": (1000, bridge_args(args, naive=True, qos=0)),
        "ours 10k": (10000, bridge_args(args, naive=False)),
        "naive 10k": (10000, bridge_args(args, naive=True)),
        "naive 10k qos0": (10000, bridge_args(args, naive=True, qos=0)),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (size, run_args) in runs.items():
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
            requests=args.requests, concurrency=[16], warmup=50, nodes=nodes, profile=False
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
    if "collapsed" in r:
        return "—"
    return f"{r['server'].get('values_per_s', float('nan')):,.0f}/s written"


def _other(r: dict[str, Any]) -> float:
    cpu = r["cpu"]
    return cpu.get("machine", 0.0) - sum(v for k, v in cpu.items() if k != "machine")


def delivered(r: dict[str, Any]) -> float:
    """Fresh values/s: those written inside the window that reached the subscriber (after the
    drain), over the window."""
    return float(r["delivered"]) / r["seconds"]


def capacity(r: dict[str, Any]) -> float:
    """Notifications/s one core carries at the cost per notification of run ``r``."""
    return ONE_CORE_US / max(r["bridge_us_per_notification"], 1e-9)


def print_table(b: dict[str, dict[str, Any]], w: dict[int, Any]) -> None:
    ours1, naive1, naive0 = b["ours 1k"], b["naive 1k"], b["naive 1k qos0"]
    ours10, naive10, naive10q0 = b["ours 10k"], b["naive 10k"], b["naive 10k qos0"]
    rows = []

    def cost(r: dict[str, Any]) -> str:
        if "collapsed" in r:
            return f"collapsed: {r['collapsed']}"
        return (
            f"{r['bridge_us_per_notification']:.1f} µs/notification, "
            f"{r['bridge_us_per_value']:.1f} µs/value delivered"
        )

    rows.append(
        (
            "bridge CPU per notification, end to end, at 10,000/s (1,000 items × 100 ms)",
            cost(ours1),
            f"QoS 1: {cost(naive1)}; QoS 0: {cost(naive0)}",
            _source(ours1),
        )
    )

    def flow(r: dict[str, Any]) -> str:
        if "collapsed" in r:
            return f"collapsed: {r['collapsed']}"
        return (
            f"{delivered(r):,.0f} delivered/s, {r['lost'] / max(r['expected'], 1):.1%} "
            f"lost, {r['seq_gaps']} sequence gaps"
        )

    rows.append(
        (
            "10,000 items × 100 ms: fresh values/s delivered",
            flow(ours10),
            f"QoS 1: {flow(naive10)}; QoS 0: {flow(naive10q0)}",
            f"{_source(ours10)}; naive runs: {_source(naive10)}; {_source(naive10q0)}",
        )
    )

    def latency(r: dict[str, Any]) -> str:
        if "collapsed" in r:
            return "—"
        return f"{r['p50_ms']:,.0f} / {r['p99_ms']:,.0f} ms"

    rows.append(
        (
            "same: latency source → subscriber p50 / p99",
            latency(ours10),
            f"QoS 1: {latency(naive10)}; QoS 0: {latency(naive10q0)}",
            "as above",
        )
    )

    def overload(r: dict[str, Any], cap: float) -> str:
        if "collapsed" in r:
            return f"collapsed: {r['collapsed']}"
        carried = min(cap, r["server"].get("values_per_s", r["offered_per_s"]))
        return (
            f"{delivered(r) / carried:.0%} of {carried:,.0f}/s, loop lag max "
            f"{r['max_loop_lag_ms']:,.0f} ms"
        )

    rows.append(
        (
            "overload (10,000 × 100 ms): delivered ÷ capacity (one core at the run-1 cost), "
            "event-loop lag max",
            overload(ours10, capacity(ours1)),
            "QoS 0: " + overload(naive10q0, capacity(naive0)) if "collapsed" not in naive0 else "—",
            "as above",
        )
    )
    many, one = w[16], w[1]
    rows.append(
        (
            "write-back, 16 requests in flight: writes/s, p99 (16 nodes; 1 node)",
            f"{many.per_s:,.0f}/s, p99 {1000 * bench_bridge.percentile(many.latencies, 0.99):.1f}"
            f" ms; {one.per_s:,.0f}/s, p99 "
            f"{1000 * bench_bridge.percentile(one.latencies, 0.99):.1f} ms",
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
    print("| measure | ours | naive bridge | source |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for name, r in b.items():
        if "collapsed" in r:
            print(f"#   {name}: collapsed: {r['collapsed']}")
            continue
        cpu = r["cpu"]
        print(
            f"#   {name}: bridge CPU {cpu.get('bridge', 0):.0f} %, server "
            f"{cpu.get('server', 0):.0f} %, other work {_other(r):.0f} %; "
            f"{r['bridge_in_per_s']:,.0f} notifications/s into the bridge; peak RSS "
            f"{r['bridge_hwm_mib']:.0f} MiB"
        )
    for nodes, batch in w.items():
        cpu = batch.cpu
        print(
            f"#   write-back {nodes} node(s): bridge CPU {cpu.get('bridge', 0):.0f} %, "
            f"{1e6 * cpu.get('bridge', 0) / 100 / batch.per_s:,.0f} µs/write, p50 "
            f"{1000 * bench_bridge.percentile(batch.latencies, 0.5):.1f} ms"
        )


async def run(args: argparse.Namespace) -> None:
    print(
        f"# issue 14 comparison: {dt.date.today()}, Python {platform.python_version()}, asyncua "
        f"{version('asyncua')}, gmqtt {version('gmqtt')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; window "
        f"{args.seconds:g} s after {args.warmup:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        workdir = Path(tmp)
        b = await bridge_runs(args, workdir)
        w = await write_back_runs(args, workdir)
    print_table(b, w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="window per bridge run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument(
        "--drain-limit", type=float, default=20.0, help="wait for late values (default 20 s)"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="write-back requests per run (default 2000)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("opcua_mqtt.subscriber").setLevel(logging.ERROR)

    return bench_bridge.run_to_the_end(run(args))


if __name__ == "__main__":
    sys.exit(main())

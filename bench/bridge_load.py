#!/usr/bin/env python3
"""The load of the bridge benchmarks and what they measure it with: churn servers (one process
each), the bridge's configuration (one source per server), the bridge in a child process of its
own (ours, run as ``python bench/bridge_load.py CONFIG.yaml``, or the naive one), /proc readings
and a CPU limit for the bridge (a cgroup v1 ``cpu`` group).

Used by bench_bridge.py (notification path, overload, shards) and bench_many_sources.py (100,000
items); the servers and the configuration are the same in both.

The bridge child builds the bridge from the configuration file as ``opcua-mqtt run`` does
(``bridge_setup``, ``build_bridge``) and reports on stdout: ``READY``, ``STATS`` once a second,
``MARK`` on SIGUSR1 (the window's edges; the first MARK starts the profiler, the second stops
it), ``FINAL`` and ``LAGS`` at the end. It stops by itself when its parent goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from bridge_probes import Probes  # noqa: E402
from step_cpu import from_env as step_cpu_from_env  # noqa: E402

from harness.processes import LOOPBACK, Process, spawn  # noqa: E402
from opcua_mqtt import event_loop, gc_tuning  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHED_METRIC = r"opcua_mqtt_values_shed_total(?:\{[^}]*\})?"


# ------------------------------------------------------------------------------------ /proc


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` entry of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run_to_the_end(main: Coroutine[Any, Any, int | None]) -> int:
    """Run a benchmark's ``main``: SIGTERM, like Ctrl-C, goes through its clean-up (the
    child processes are stopped) and exits 130."""

    def terminate(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(main) or 0
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130


def snapshot(pids: dict[str, int]) -> dict[str, float | None]:
    taken: dict[str, float | None] = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    taken["machine"] = machine_cpu_seconds()
    return taken


def cpu_percent(
    a: dict[str, float | None], b: dict[str, float | None], seconds: float
) -> dict[str, float]:
    out = {}
    for name, before in a.items():
        after = b.get(name)
        if before is not None and after is not None:
            out[name] = 100 * (after - before) / seconds
    return out


# ------------------------------------------------------------------------ the CPU limit


class CgroupError(RuntimeError):
    """The CPU limit cannot be set (no cgroup v1 cpu controller, or not writable)."""


class CpuLimit:
    """A cgroup v1 ``cpu`` group with a CFS quota of ``cores`` (0.3: 30 % of one core) per
    period of ``period_ms`` for the processes :meth:`add` puts in it; :meth:`close` moves them
    back and removes the group.

    The period decides what the limit looks like to the bridge: once its quota of a period is
    used, the group is frozen for the rest of it. At the kernel's default of 100 ms and 0.3 core
    that is a 70 ms stop every 100 ms, which the event-loop lag then measures instead of the
    bridge; at 10 ms the stops are at most 7 ms, closer to a slower CPU, the thing the limit
    stands for.

    Created on construction, so that a missing or read-only controller fails before anything
    is started (never a run without the limit)."""

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, cores: float, period_ms: float = 10.0) -> None:
        self.cores = cores
        self.path = self.ROOT / f"opcua-mqtt-bench-{os.getpid()}"
        period_us = round(period_ms * 1000)
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(round(cores * period_us)))
        except OSError as e:
            self.close()
            raise CgroupError(
                f"cannot limit the bridge's CPU: {self.ROOT} is not a writable cgroup v1 cpu "
                f"controller ({e.strerror or e}); --bridge-cpu needs root and cgroup v1"
            ) from None

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as e:
            raise CgroupError(f"cannot move pid {pid} into {self.path}: {e.strerror}") from None

    def throttled_s(self) -> float:
        """Seconds the group's processes waited for quota so far (cpu.stat throttled_time)."""
        stat = (self.path / "cpu.stat").read_text()
        found = re.search(r"^throttled_time (\d+)$", stat, re.M)
        return int(found.group(1)) / 1e9 if found else 0.0

    def close(self) -> None:
        """Move what is left back to the root group and remove the group; idempotent."""
        if not self.path.exists():
            return
        procs = self.path / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else ():
            try:
                (self.ROOT / "cgroup.procs").write_text(pid)
            except OSError:  # gone meanwhile
                continue
        self.path.rmdir()


# ------------------------------------------------------------------------ the load


@dataclass
class Env:
    workdir: Path
    pki: Any
    signer_key: Path
    signer_chain: Path
    trust_pem: bytes
    mosquitto: str


def make_env(workdir: Path) -> Env:
    from harness.mosquitto import NOT_INSTALLED_MESSAGE
    from harness.pki import generate_pki
    from harness.processes import find_mosquitto
    from opcua_mqtt import devpki

    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise SystemExit(NOT_INSTALLED_MESSAGE)
    now = dt.datetime.now(dt.UTC)
    ca = devpki.make_ca("bench CA", now)
    leaf = devpki.issue(ca, "bench bridge signer", now)
    key, chain = workdir / "signer.key", workdir / "signer-chain.pem"
    key.write_bytes(leaf.key_pem())
    key.chmod(0o600)
    chain.write_bytes(leaf.cert_pem() + ca.cert_pem())
    return Env(workdir, generate_pki(workdir / "pki"), key, chain, ca.cert_pem(), mosquitto)


#: The load sources (bench_bridge.py --source), all asyncua churn servers.
SOURCES = {
    "asyncua-direct": "asyncua churn servers, changes queued directly (--churn-direct)",
    "asyncua": "asyncua churn servers, write_attribute_value per change",
}


def start_churn_servers(
    workdir: Path,
    servers: int,
    items: int,
    interval_ms: float,
    *,
    session_timeout_s: int = 60,
    nice: int = 0,
    source: str = "asyncua",
) -> list[Any]:
    """``servers`` asyncua churn servers (``python -m harness.opcua_server --churn``), each a
    process of its own writing ``items // servers`` variables every ``interval_ms``, the
    changes going the way ``source`` (a key of :data:`SOURCES`) says.

    ``nice`` > 0 lowers their scheduling priority (every thread): a server behind its schedule
    writes all the time, and on a small machine would take the CPU the bridge needs, where in a
    plant the servers are other machines. Blocking on purpose: nothing else runs yet, and a
    Ctrl-C cannot orphan a server. The caller stops them (``server.stop``), also when a later
    one fails to start."""
    from harness.opcua_servers import start_opcua_server

    started = []
    try:
        for k in range(1, servers + 1):
            started.append(
                start_opcua_server(
                    workdir / f"server{k}",
                    variables=10,
                    timeout=600.0,
                    extra_args=[
                        "--churn",
                        str(items // servers),
                        "--churn-interval-ms",
                        f"{interval_ms:g}",
                        "--max-session-timeout",
                        str(session_timeout_s),
                        *(["--churn-direct"] if source == "asyncua-direct" else []),
                    ],
                )
            )
            if nice:
                for tid in os.listdir(f"/proc/{started[-1].pid}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(tid), nice)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def bridge_config(
    path: Path,
    servers: list[Any],
    env: Env,
    broker: Any,
    *,
    publisher: str,
    per_writer: int,
    interval_ms: float,
    queue_size: int | None,
    qos: int = 1,
) -> int:
    """Write the bridge's configuration: one source and one writer group per server, writers of
    ``per_writer`` Double fields named ``V<i>`` (i counts over all servers), publishing and
    sampling every ``interval_ms``; return the number of fields. The naive bridge reads the
    same file."""
    groups = []
    total = 0
    for k, server in enumerate(servers, 1):
        nodeids = server.manifest["churn"]["nodeids"]
        writers = [
            {
                "name": f"W{w + 1}",
                "dataset_writer_id": k * 1000 + w + 1,
                "fields": [
                    {"name": f"V{total + i}", "node_id": nodeids[i], "builtin_type": "Double"}
                    for i in range(start, min(start + per_writer, len(nodeids)))
                ],
            }
            for w, start in enumerate(range(0, len(nodeids), per_writer))
        ]
        total += len(nodeids)
        groups.append({"name": f"line{k}", "source": f"s{k}", "qos": qos, "writers": writers})
    doc = {
        "version": 1,
        "publisher_id": publisher,
        "sources": [
            {
                "name": f"s{k}",
                "endpoint": s.endpoint,
                "security_policy": "None",
                "security_mode": "None",
                "timeout_s": 60,
            }
            for k, s in enumerate(servers, 1)
        ],
        "mqtt": {"host": broker.host, "port": broker.port, "tls": {"ca": str(broker.ca_cert)}},
        "metadata_signing": {
            "private_key": str(env.signer_key),
            "certificate_chain": str(env.signer_chain),
        },
        "defaults": {
            "publishing_interval_ms": interval_ms,
            "sampling_interval_ms": interval_ms,
            **({"queue_size": queue_size} if queue_size is not None else {}),
        },
        "writer_groups": groups,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return total


def churn_lines(server: Any) -> Iterator[dict[str, Any]]:
    """The server's ``CHURN`` lines so far (its output keeps only the tail)."""
    for line in server.output().splitlines():
        if line.startswith("CHURN "):
            yield json.loads(line[6:])


def churn_window(lines: list[dict[str, Any]], t0: float, t1: float) -> dict[str, float]:
    """The server's own account of the window from its CHURN lines (nearest lines outside)."""
    before = [x for x in lines if x["t"] <= t0]
    after = [x for x in lines if x["t"] >= t1]
    if not before or not after:
        return {}
    a, b = before[-1], after[0]
    span = b["elapsed_s"] - a["elapsed_s"]
    return {
        "values_per_s": (b["values"] - a["values"]) / span,
        "busy_pct": 100 * (b["busy_s"] - a["busy_s"]) / span,
        "late_ticks": b["late_ticks"] - a["late_ticks"],
        "skipped_ticks": b["skipped_ticks"] - a["skipped_ticks"],
        "ticks": b["tick"] - a["tick"],
        "max_tick_ms": b["max_tick_ms"],
    }


# ------------------------------------------------------------------------ child processes


def metric(port: int, pattern: str) -> float | None:
    """The sum of the samples of a bridge's /metrics matching ``pattern`` (a regular
    expression for the name and labels); None while it does not answer or has no such
    metric."""
    try:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    found = re.findall(rf"^{pattern} (\S+)$", text, re.M)
    return sum(float(v) for v in found) if found else None


def lines(child: Process, kind: str) -> list[dict[str, Any]]:
    """The JSON payloads of the child's ``KIND {json}`` lines on stdout so far."""
    text = child.text()
    prefix = kind + " "
    return [json.loads(ln[len(prefix) :]) for ln in text.splitlines() if ln.startswith(prefix)]


def has_line(child: Process, text: str) -> bool:
    return text in child.text().splitlines()


def metrics_port(bridge: Process) -> int | None:
    """The port of the bridge child's /metrics (its ``METRICS`` line; the naive one has none)."""
    for line in bridge.text().splitlines():
        if line.startswith("METRICS "):
            return int(line.split()[1])
    return None


async def values_shed(ports: list[int | None]) -> float | None:
    """The bridges' values-shed counters summed, read from their /metrics; None where none has
    such a metric (a bridge without shedding)."""
    found = [
        await asyncio.to_thread(metric, port, SHED_METRIC) for port in ports if port is not None
    ]
    counts = [f for f in found if f is not None]
    return sum(counts) if counts else None


def shard_configs(config: Path, shards: int) -> list[Path]:
    """``config`` split by ``opcua-mqtt shard CONFIG N``, as a user would; [config] for 1."""
    from harness.bridge import EXE  # not at the top: the bridge child imports this module

    if shards == 1:
        return [config]
    out = config.parent / "shards"
    run = subprocess.run(
        [EXE, "shard", str(config), str(shards), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"opcua-mqtt shard failed ({run.returncode}): {run.stderr.strip()}")
    found = sorted(out.glob("*.yaml"))
    if len(found) != shards:
        raise RuntimeError(f"opcua-mqtt shard wrote {len(found)} files, not {shards}")
    return found


def spawn_bridge(
    config: Path,
    workdir: Path,
    *,
    name: str = "bridge",
    naive: bool = False,
    profile: Path | None = None,
    loop: str = "auto",
) -> Process:
    """Our bridge in a child process (on the event loop ``loop``, as ``opcua-mqtt run --loop``),
    or with ``naive`` the naive one (naive_bridge.py)."""
    here = Path(__file__).resolve()
    if naive:
        cmd = [sys.executable, str(here.with_name("naive_bridge.py")), str(config)]
    else:
        cmd = [sys.executable, str(here), str(config), "--loop", loop]
        if profile is not None:
            cmd += ["--profile", str(profile)]
    return spawn(cmd, workdir, name, REPO_ROOT)


# ------------------------------------------------------------------------ the bridge process


def run_bridge_child(config_path: Path, profile_path: Path | None, loop: str = "auto") -> int:
    """The bridge process: run the configuration until SIGTERM, report on stdout; on the event
    loop and with the garbage collector settings of ``opcua-mqtt run``."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    profiler = cProfile.Profile() if profile_path is not None else None
    gc_tuning.tune()
    event_loop.run(_bridge_main(config_path, profiler), loop)
    if profiler is not None and profile_path is not None:
        profiler.dump_stats(profile_path)
    return 0


async def _bridge_main(config_path: Path, profiler: cProfile.Profile | None) -> None:
    from opcua_mqtt.bridge.from_config import bridge_setup, build_bridge
    from opcua_mqtt.bridge.metrics import serve_metrics
    from opcua_mqtt.core.config.check import load_config

    steps = step_cpu_from_env()  # CPU per task step (bench/step_cpu.py), before any task
    if steps is not None:
        steps.install(asyncio.get_running_loop())
    config = load_config(config_path.read_text(), str(config_path))
    bridge = build_bridge(bridge_setup(config, config_path))

    probes = Probes(bridge)  # responses, values superseded, lags (bench/bridge_probes.py)
    batches = probes.counts
    marks = {"n": 0}

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    lag = {"max": 0.0, "window": 0.0, "spool": 0}

    def report(kind: str) -> None:
        s = bridge.stats
        line = {
            "t": time.time(),
            "cpu": time.process_time(),
            "value_changes": s.value_changes,
            "messages": sum(s.messages.values()),
            "bytes": sum(s.bytes.values()),
            "mqtt_published": bridge.mqtt.stats.published,
            "mqtt_dropped": bridge.mqtt.stats.dropped,
            "mqtt_reconnects": bridge.mqtt.stats.reconnects,
            "spool": bridge.mqtt.spool_depth,
            "max_spool": lag["spool"],
            "opcua_state": s.opcua_state,
            "publish_responses": batches["count"],
            "notifications": batches["values"],
            "max_response": batches["max"],
            "repeated_in_response": batches["repeated"],
            "superseded": batches["superseded"],
            "arrival_lags": len(probes.arrival_lag),
            "max_loop_lag_s": round(lag["max"], 4),
            "max_loop_lag_window_s": round(lag["window"], 4),  # since the first MARK
            "vm_hwm_kib": proc_status_kib(os.getpid(), "VmHWM"),
        }
        print(f"{kind} {json.dumps(line)}", flush=True)

    def mark() -> None:
        marks["n"] += 1
        probes.window = marks["n"] == 1
        if marks["n"] == 1:
            lag["window"] = 0.0
        if steps is not None:
            if marks["n"] == 1:
                steps.reset()
            elif marks["n"] == 2:
                print(f"STEPS {json.dumps(steps.summary())}", flush=True)
        if profiler is not None:
            if marks["n"] == 1:
                profiler.enable()
            elif marks["n"] == 2:
                profiler.disable()
        report("MARK")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, mark)

    async with serve_metrics(bridge, LOOPBACK, 0) as metrics:
        print(f"METRICS {metrics.sockets[0].getsockname()[1]}", flush=True)
        await _bridge_loop(bridge, stop, lag, report)
    if profiler is not None and marks["n"] == 1:
        profiler.disable()
    report("FINAL")
    summary = {}
    for name, found in (("arrival_lag", probes.arrival_lag), ("tick_wait", probes.tick_wait)):
        lags = sorted(found)
        for q in (0.5, 0.99) if lags else ():
            summary[f"{name}_p{round(q * 100)}_ms"] = round(percentile(lags, q) * 1000, 1)
    if summary:
        print(f"LAGS {json.dumps(summary)}", flush=True)


async def _bridge_loop(
    bridge: Any, stop: asyncio.Event, lag: dict[str, Any], report: Callable[[str], None]
) -> None:
    """Run the bridge until ``stop`` or its parent goes away: ``READY`` once it is, then
    ``STATS`` once a second, and the event loop's lag."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(bridge.run(stop))
    ready = asyncio.create_task(bridge.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what stopped the bridge
        return
    await gc_tuning.freeze_when_ready(bridge.ready)  # as `opcua-mqtt run` does
    print("READY", flush=True)
    parent = os.getppid()
    next_stats = loop.time() + 1.0
    while not task.done():
        # The event loop's lag: how late a 0.1 s sleep wakes up (a blocked loop wakes late).
        before = loop.time()
        await asyncio.sleep(0.1)
        late = loop.time() - before - 0.1
        lag["max"] = max(lag["max"], late)
        lag["window"] = max(lag["window"], late)
        lag["spool"] = max(lag["spool"], bridge.mqtt.spool_depth)
        if loop.time() >= next_stats:
            next_stats = max(next_stats + 1.0, loop.time())
            report("STATS")
        if os.getppid() != parent:
            stop.set()
        if stop.is_set():
            break
    await task


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bridge_load.py", description="the bench's bridge process")
    p.add_argument("config", type=Path)
    p.add_argument("--profile", type=Path)
    p.add_argument("--loop", default="auto")
    args = p.parse_args(argv)
    return run_bridge_child(args.config, args.profile, args.loop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""End-to-end throughput, latency and cost of the bridge: OPC UA server -> bridge -> Mosquitto
(TLS) -> subscriber, each in its own process.

    python bench/bench_bridge.py [--sizes 1000,10000] [--interval-ms 100] [--seconds 20]
                                 [--warmup 5] [--fields-per-writer 100] [--qos 1] [--profile]

For each size N:

* the asyncua test server (``python -m harness.opcua_server --churn N
  --churn-interval-ms I``) runs in its own process and writes the tick number, as a Double with a
  SourceTimestamp taken at write time, to N variables every I ms (in blocks of 250);
* Mosquitto listens with TLS on a free loopback port (stock settings, see harness/);
* the bridge runs in a child process (this script with ``--run-bridge CONFIG``; the plan travels
  as JSON): one writer group with publishing interval I, N/F DataSetWriters of F fields each,
  QoS 1, signed metadata. A process of its own, so that its CPU time and peak RSS are its own and
  nothing the harness does slows its event loop;
* this process runs the subscriber (:class:`opcua_mqtt.subscriber.Subscriber`), checks every
  value it gets and samples /proc for the CPU time of all four processes.

After ``--warmup`` seconds the measurement window of ``--seconds`` starts. Counted are the ticks
whose first value received carries a SourceTimestamp inside the window; each of them should reach
the subscriber once per variable, so ``lost`` = N x ticks - distinct (variable, tick) pairs
received. The count waits (``--drain-limit``) until every variable has a value written after the
window: per variable values arrive in order, so nothing later can still belong to the window.
"Offered" is the server's write rate by its own timestamps. Latency is the subscriber's
``received_at`` (after decoding) minus the value's SourceTimestamp, same machine, same clock; with
equal periods it includes up to one interval of waiting in the server and one in the bridge.
Bridge CPU % is its user+system time over the window (100 % = one core); peak RSS is its VmHWM.
The CPU of the server, Mosquitto, this process and the whole machine is shown too: the figures
are only as good as the machine was quiet.

Where values go missing, the breakdown line says at which stage: the server's writes (CHURN lines
of the server), the notifications reaching the bridge (``bridge.stats.value_changes``) and the
values reaching the subscriber; DataSetMessage sequence gaps show MQTT-side loss.

``--profile`` runs cProfile in the bridge during the window (slower: use it for the shape, not
for the figures) and prints where the bridge's time goes, grouped by package.

Everything runs on 127.0.0.1 and stops by itself; child processes are stopped by PID on the way
out, also after Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import json
import logging
import os
import platform
import pstats
import signal
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.processes import Process, spawn  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DOUBLE = 11


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


# ------------------------------------------------------------------------ the bridge process


def _bridge_plan(cfg: dict[str, Any]) -> Any:
    from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, WriterPlan
    from opcua_mqtt.core.config.model import BUILTIN_TYPES, FieldConfig

    per = cfg["fields_per_writer"]
    nodeids = cfg["nodeids"]
    writers = []
    for w, start in enumerate(range(0, len(nodeids), per)):
        fields = tuple(
            FieldConfig(
                name=f"V{i}",
                node_id=nodeids[i],
                builtin_type=BUILTIN_TYPES[DOUBLE],
                data_type=f"i={DOUBLE}",
                dataset_field_id=uuid.uuid5(uuid.NAMESPACE_URL, nodeids[i]),
                sampling_interval_ms=cfg["publishing_interval_ms"],
                queue_size=cfg["queue_size"],
            )
            for i in range(start, min(start + per, len(nodeids)))
        )
        writers.append(WriterPlan(f"W{w + 1}", w + 1, fields))
    group = GroupPlan(
        "G", tuple(writers), publishing_interval_ms=cfg["publishing_interval_ms"], qos=cfg["qos"]
    )
    return BridgePlan(cfg["publisher_id"], (group,))


def run_bridge_child(config_path: str) -> int:
    """The bridge process: run the plan until SIGTERM, report on stdout.

    Lines: ``READY``, ``STATS`` once a second, ``MARK`` on SIGUSR1 (the window's edges; the first
    MARK starts the profiler, the second stops it), ``FINAL`` at the end. Stops by itself when its
    parent goes away.
    """
    cfg = json.loads(Path(config_path).read_text())
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    profiler = cProfile.Profile() if cfg.get("profile") else None
    asyncio.run(_bridge_main(cfg, profiler))
    if profiler is not None:
        profiler.dump_stats(cfg["profile"])
    return 0


async def _bridge_main(cfg: dict[str, Any], profiler: cProfile.Profile | None) -> None:
    from asyncua import Client

    from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
    from opcua_mqtt.bridge.runtime import Bridge
    from opcua_mqtt.core.signing import Signer
    from opcua_mqtt.core.writer_state import WriterState

    signer = Signer.from_pem(
        Path(cfg["signer_key"]).read_bytes(), Path(cfg["signer_chain"]).read_bytes()
    )
    mqtt = MqttOptions(
        host=cfg["mqtt_host"],
        port=cfg["mqtt_port"],
        client_id=f"bench-bridge-{os.getpid()}",
        tls=TlsOptions(ca=cfg["mqtt_ca"]),
    )

    def connect() -> Client:
        # As opcua_mqtt.adapters.opcua does: asyncua's 1 s watchdog probe would declare a
        # busy connection dead; give it the request timeout.
        return Client(cfg["endpoint"], timeout=30, watchdog_intervall=30)

    bridge = Bridge(_bridge_plan(cfg), mqtt, connect, signer=signer)

    # Instrumentation only, about 1 µs per value: the sink the OPC UA source calls once per
    # Publish response (how many responses, how large, how old their first value is), and the
    # writers' ticks, to count values replaced by a newer one before a tick sent them.
    batches = {"count": 0, "values": 0, "max": 0, "repeated": 0, "superseded": 0}
    marks = {"n": 0}
    arrival_lag = array("f")
    pending: set[tuple[int, str]] = set()  # (id(WriterState), field) updated, not yet sent
    put = bridge.intake.put  # the sink's end: the bridge's intake (bridge/intake.py)
    writers = bridge._writers

    def counting_sink(source: str, batch: list[Any]) -> None:
        batches["count"] += 1
        batches["values"] += len(batch)
        batches["max"] = max(batches["max"], len(batch))
        batches["repeated"] += len(batch) - len({key for key, _ in batch})
        ts = batch[0][1].SourceTimestamp
        if ts is not None and marks["n"] == 1:  # inside the measurement window
            arrival_lag.append(time.time() - ts.timestamp())
        superseded = 0
        for (gi, wi, name), _dv in batch:
            k = (id(writers[(gi, wi)].state), name)
            if k in pending:
                superseded += 1
            else:
                pending.add(k)
        batches["superseded"] += superseded
        put(source, batch)

    bridge.intake.put = counting_sink  # type: ignore[method-assign]
    plain_tick = WriterState.tick

    def counting_tick(self: WriterState, now: dt.datetime) -> Any:
        frame = plain_tick(self, now)
        if frame is not None:
            me = id(self)
            for name in frame.fields:
                pending.discard((me, name))
        return frame

    WriterState.tick = counting_tick  # type: ignore[method-assign]

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    lag = {"max": 0.0, "spool": 0}

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
            "shed": sum(bridge.intake.shed.values()),
            "arrival_lags": len(arrival_lag),
            "max_loop_lag_s": round(lag["max"], 4),
            "vm_hwm_kib": proc_status_kib(os.getpid(), "VmHWM"),
        }
        print(f"{kind} {json.dumps(line)}", flush=True)

    def mark() -> None:
        marks["n"] += 1
        if profiler is not None:
            if marks["n"] == 1:
                profiler.enable()
            elif marks["n"] == 2:
                profiler.disable()
        report("MARK")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, mark)

    task = asyncio.create_task(bridge.run(stop))
    ready = asyncio.create_task(bridge.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises what stopped the bridge
        return
    print("READY", flush=True)
    parent = os.getppid()
    next_stats = loop.time() + 1.0
    while not task.done():
        before = loop.time()
        await asyncio.sleep(0.1)
        lag["max"] = max(lag["max"], loop.time() - before - 0.1)
        lag["spool"] = max(lag["spool"], bridge.mqtt.spool_depth)
        if loop.time() >= next_stats:
            next_stats = max(next_stats + 1.0, loop.time())
            report("STATS")
        if os.getppid() != parent:
            stop.set()
        if stop.is_set():
            break
    await task
    if profiler is not None and marks["n"] == 1:
        profiler.disable()
    report("FINAL")
    lags = sorted(arrival_lag)
    if lags:
        summary = {
            "arrival_lag_p50_ms": round(lags[len(lags) // 2] * 1000, 1),
            "arrival_lag_p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1),
        }
        print(f"LAGS {json.dumps(summary)}", flush=True)


# ------------------------------------------------------------------------ child processes


def lines(child: Process, kind: str) -> list[dict[str, Any]]:
    """The JSON payloads of the child's ``KIND {json}`` lines on stdout so far."""
    text = child.text()
    prefix = kind + " "
    return [json.loads(ln[len(prefix) :]) for ln in text.splitlines() if ln.startswith(prefix)]


def has_line(child: Process, text: str) -> bool:
    return text in child.text().splitlines()


def spawn_bridge(config: Path, workdir: Path, naive: bool = False) -> Process:
    """Our bridge in a child process, or with ``naive`` the naive one (naive_bridge.py)."""
    here = Path(__file__).resolve()
    if naive:
        cmd = [sys.executable, str(here.with_name("naive_bridge.py")), str(config)]
    else:
        cmd = [sys.executable, str(here), "--run-bridge", str(config)]
    return spawn(cmd, workdir, "bridge", REPO_ROOT)


# ------------------------------------------------------------------------ the subscriber side


class Receiver:
    """Consumes the Subscriber's DataSets; per tick: values seen first time, their latencies."""

    def __init__(self, n: int) -> None:
        self.last_tick = [-1] * n
        self.tick_count: dict[int, int] = {}
        self.tick_first_src: dict[int, float] = {}
        self.tick_lat: dict[int, array[float]] = {}
        self.repeats = 0  # values already seen (key frames resend unchanged fields)
        self.out_of_order = 0
        self.datasets = 0
        self.last_seq: dict[int, int] = {}
        self.seq_gaps = 0
        self.unverified = 0
        self.last_arrival = 0.0

    def take(self, ds: Any) -> None:
        self.datasets += 1
        self.last_arrival = time.monotonic()
        wid = ds.dataset_writer_id
        seq = ds.sequence_number
        if ds.message_type == "ua-keepalive":
            return
        if wid is not None and seq is not None:
            prev = self.last_seq.get(wid)
            if prev is not None and seq != (prev + 1) % 2**32:
                self.seq_gaps += 1
            self.last_seq[wid] = seq
        if not ds.verification.ok:
            self.unverified += 1
        recv = ds.received_at.timestamp()
        last = self.last_tick
        for name, fv in ds.fields.items():
            if fv.value is None or fv.source_timestamp is None:
                continue
            i = int(name[1:])
            tick = int(fv.value)
            if tick <= last[i]:
                if tick < last[i]:
                    self.out_of_order += 1
                else:
                    self.repeats += 1
                continue
            last[i] = tick
            src = fv.source_timestamp.timestamp()
            lat = self.tick_lat.get(tick)
            if lat is None:
                lat = self.tick_lat[tick] = array("f")
                self.tick_count[tick] = 0
                self.tick_first_src[tick] = src
            elif src < self.tick_first_src[tick]:
                self.tick_first_src[tick] = src
            self.tick_count[tick] += 1
            lat.append(recv - src)

    def all_past(self, t: float) -> bool:
        """Whether every variable has received a value of a tick first seen written at ``t`` or
        later."""
        oldest = min(self.last_tick)
        return oldest >= 0 and self.tick_first_src.get(oldest, 0.0) >= t

    def window(self, t0: float, t1: float) -> tuple[list[int], int, list[float]]:
        """Ticks written in [t0, t1) (by the first value seen of each, gaps included), values
        delivered of them, and their latencies in seconds, sorted."""
        inside = [k for k, src in self.tick_first_src.items() if t0 <= src < t1]
        if not inside:
            return [], 0, []
        ticks = list(range(min(inside), max(inside) + 1))
        delivered = sum(self.tick_count.get(k, 0) for k in ticks)
        lats: list[float] = []
        for k in ticks:
            lats.extend(self.tick_lat.get(k, ()))
        lats.sort()
        return ticks, delivered, lats


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# ------------------------------------------------------------------------ one measurement


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
    chain.write_bytes(leaf.cert_pem() + ca.cert_pem())
    return Env(workdir, generate_pki(workdir / "pki"), key, chain, ca.cert_pem(), mosquitto)


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


async def _wait_line(child: Process, kind: str, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = lines(child, kind)
        if len(found) >= count:
            return found[count - 1]
        if not child.running or time.monotonic() > deadline:
            raise RuntimeError(f"bridge: no {kind} line #{count}\n{child.output(3000)}")
        await asyncio.sleep(0.02)


async def measure(env: Env, size: int, args: argparse.Namespace) -> dict[str, Any]:
    from cryptography import x509
    from naive_bridge import NaiveSubscriber

    from harness.mosquitto import MosquittoBroker
    from harness.opcua_servers import start_opcua_server
    from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
    from opcua_mqtt.core.identity import SignerMap
    from opcua_mqtt.core.signing import TrustStore
    from opcua_mqtt.subscriber import Subscriber

    workdir = env.workdir / f"size-{size}"
    workdir.mkdir()
    for name in ("gmqtt", "asyncio"):  # silenced at the end of the previous size
        logging.getLogger(name).setLevel(logging.NOTSET)
    interval = args.interval_ms
    with contextlib.ExitStack() as stack:
        broker = MosquittoBroker(
            executable=env.mosquitto, pki=env.pki, workdir=workdir / "mosquitto", mutual_tls=False
        )
        broker.start()
        stack.callback(broker.stop)
        # Blocking on purpose: nothing else runs yet, and a Ctrl-C cannot orphan the server.
        server = start_opcua_server(
            workdir / "server",
            variables=50,
            timeout=300.0,
            extra_args=[
                "--churn",
                str(size),
                "--churn-interval-ms",
                str(interval),
                "--max-session-timeout",
                "15",
            ],
        )
        stack.callback(server.stop)
        nodeids = server.manifest["churn"]["nodeids"]
        config = workdir / "bridge.json"
        config.write_text(
            json.dumps(
                {
                    "endpoint": server.endpoint,
                    "nodeids": nodeids,
                    "publishing_interval_ms": args.publishing_interval_ms or interval,
                    "fields_per_writer": args.fields_per_writer,
                    "qos": args.qos,
                    "queue_size": args.queue_size,
                    "publisher_id": f"bench-{size}",
                    "mqtt_host": broker.host,
                    "mqtt_port": broker.port,
                    "mqtt_ca": str(broker.ca_cert),
                    "signer_key": str(env.signer_key),
                    "signer_chain": str(env.signer_chain),
                    "profile": str(workdir / "bridge.prof") if args.profile else None,
                }
            )
        )
        mqtt = MqttOptions(
            host=broker.host,
            port=broker.port,
            client_id=f"bench-sub-{size}",
            tls=TlsOptions(ca=str(broker.ca_cert)),
        )
        receiver = Receiver(size)
        # The bench signer is not bound to bench-<size> by a SAN URI: the subscriber allows it.
        signer_cert = x509.load_pem_x509_certificates(env.signer_chain.read_bytes())[0]
        subscriber = (
            NaiveSubscriber(mqtt)
            if args.naive
            else Subscriber(
                mqtt,
                trust=TrustStore.from_pem(env.trust_pem),
                signers=SignerMap({f"bench-{size}": [signer_cert]}),
                queue_size=100_000,
            )
        )
        async with subscriber as sub:

            async def consume() -> None:
                async for ds in sub:
                    receiver.take(ds)

            consumer = asyncio.create_task(consume())
            bridge = spawn_bridge(config, workdir, naive=args.naive)
            stack.callback(bridge.stop)
            started = time.monotonic()
            while not has_line(bridge, "READY"):
                if not bridge.running or time.monotonic() - started > 300:
                    raise RuntimeError(f"the bridge did not get ready\n{bridge.output(3000)}")
                await asyncio.sleep(0.05)
            setup_s = time.monotonic() - started
            pids = {
                "bridge": bridge.pid,
                "server": server.pid,
                "mosquitto": broker.pid or 0,
                "subscriber": os.getpid(),
            }
            await asyncio.sleep(args.warmup)
            bridge.proc.send_signal(signal.SIGUSR1)
            t0, cpu0 = time.time(), snapshot(pids)
            await asyncio.sleep(args.seconds)
            bridge.proc.send_signal(signal.SIGUSR1)
            t1, cpu1 = time.time(), snapshot(pids)
            hwm = proc_status_kib(bridge.pid, "VmHWM")
            rss = proc_status_kib(bridge.pid, "VmRSS")
            # The bridge answers between two callbacks: a blocked event loop answers late.
            mark0 = await _wait_line(bridge, "MARK", 1, 60)
            mark1 = await _wait_line(bridge, "MARK", 2, 60)
            # Drain: values written inside the window may still be on their way. Per variable
            # they arrive in order, so once every variable has a value written after the window,
            # nothing more of the window will come.
            drain_started = time.monotonic()
            drained = False
            while time.monotonic() - drain_started < args.drain_limit:
                await asyncio.sleep(0.1)
                if receiver.all_past(t1):
                    drained = True
                    break
            drain_s = time.monotonic() - drain_started
            for _ in range(50):  # the server reports once a second
                if any(x["t"] >= t1 for x in _churn_lines(server)):
                    break
                await asyncio.sleep(0.1)
            churn = churn_window([*_churn_lines(server)], t0, t1)
            bridge.stop()
            final = lines(bridge, "FINAL")
            lags = lines(bridge, "LAGS")
            # Closing the subscriber with messages still arriving makes gmqtt and asyncio's SSL
            # transport complain; the measurement is over, so that is noise here.
            logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            sub_dropped = sub.dropped
    seconds = t1 - t0
    ticks, delivered, lats = receiver.window(t0, t1)
    expected = size * len(ticks)
    # The write rate by the server's own timestamps (first value seen of the first and the last
    # tick): not quantised by where the window edges fall between ticks.
    offered_per_s = expected / seconds
    if len(ticks) >= 2:
        first = receiver.tick_first_src[ticks[0]]
        last = receiver.tick_first_src[ticks[-1]]
        if last > first:
            offered_per_s = size * (len(ticks) - 1) / (last - first)
    cpu = cpu_percent(cpu0, cpu1, seconds)
    span = mark1["t"] - mark0["t"]
    return {
        "size": size,
        "seconds": seconds,
        "setup_s": setup_s,
        "drain_s": drain_s,
        "drained": drained,
        "nominal_per_s": size * 1000 / interval,
        "offered_per_s": offered_per_s,
        "server": churn,
        "bridge_in_per_s": (mark1["value_changes"] - mark0["value_changes"]) / span,
        "responses_per_s": (mark1["publish_responses"] - mark0["publish_responses"]) / span,
        "max_response": mark1["max_response"],
        "repeated_per_s": (mark1["repeated_in_response"] - mark0["repeated_in_response"]) / span,
        "superseded_per_s": (mark1["superseded"] - mark0["superseded"]) / span,
        "shed_per_s": (mark1["shed"] - mark0["shed"]) / span,
        "messages_per_s": (mark1["messages"] - mark0["messages"]) / span,
        "mbytes_per_s": (mark1["bytes"] - mark0["bytes"]) / span / 1e6,
        "delivered_per_s": offered_per_s * delivered / max(expected, 1),
        "ticks": len(ticks),
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "p50_ms": percentile(lats, 0.50) * 1000,
        "p99_ms": percentile(lats, 0.99) * 1000,
        "max_ms": (lats[-1] * 1000) if lats else float("nan"),
        "cpu": cpu,
        "bridge_us_per_value": 1e6 * cpu.get("bridge", 0) / 100 * seconds / max(delivered, 1),
        "bridge_us_per_notification": 1e6
        * cpu.get("bridge", 0)
        / 100
        / max((mark1["value_changes"] - mark0["value_changes"]) / span, 1),
        "bridge_hwm_mib": (hwm or 0) / 1024,
        "bridge_rss_mib": (rss or 0) / 1024,
        "mqtt_dropped": mark1["mqtt_dropped"],
        "mqtt_reconnects": mark1["mqtt_reconnects"],
        "spool": mark1["spool"],
        "max_spool": mark1["max_spool"],
        "max_loop_lag_ms": mark1["max_loop_lag_s"] * 1000,
        "opcua_state": mark1["opcua_state"],
        "seq_gaps": receiver.seq_gaps,
        "out_of_order": receiver.out_of_order,
        "unverified": receiver.unverified,
        "sub_dropped": sub_dropped,
        "final": final[-1] if final else {},
        "lags": lags[-1] if lags else {},
        "profile": workdir / "bridge.prof" if args.profile else None,
    }


def _churn_lines(server: Any) -> Iterator[dict[str, Any]]:
    for line in server.output().splitlines():
        if line.startswith("CHURN "):
            yield json.loads(line[6:])


# ------------------------------------------------------------------------ reporting


# (label, file suffix, function, indented: part of the line above). Cumulative times; cProfile
# counts a recursive function's time once, at its outermost call.
PROFILE_ENTRIES = (
    (
        "decode Publish responses (publish_decoder)",
        "opcua_mqtt/adapters/opcua/publish_decoder.py",
        "decode_publish_response",
        False,
    ),
    (
        "asyncua: struct_from_binary (its decoding)",
        "asyncua/ua/ua_binary.py",
        "struct_from_binary",
        False,
    ),
    ("bridge: notifications -> writers", "opcua_mqtt/bridge/runtime.py", "_on_values", False),
    ("type check (_type_changed)", "opcua_mqtt/bridge/model_watch.py", "_type_changed", True),
    ("WriterState.update", "opcua_mqtt/core/writer_state.py", "update", True),
    ("bridge: ticks (_tick_group)", "opcua_mqtt/bridge/runtime.py", "_tick_group", False),
    ("JSON encoding", "opcua_mqtt/core/messages/data.py", "encode_network_message", True),
    ("MQTT session: send", "opcua_mqtt/adapters/mqtt.py", "_send_ready", False),
)


def profile_table(path: Path) -> tuple[dict[Any, Any], float, float]:
    """A cProfile dump's table, and its busy and idle (waiting in epoll) seconds."""
    table: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    idle = sum(v[2] for (f, _l, func), v in table.items() if "poll" in func and f == "~")
    return table, max(total - idle, 1e-9), idle


def print_top(table: dict[Any, Any], busy: float, top: int, column: int = 2) -> None:
    """The ``top`` functions by own time (``column`` 2) or cumulative time (3)."""
    kind = "own" if column == 2 else "cumulative"
    print(f"# top {top} functions by {kind} time (share of the busy time)")
    rows = sorted(
        ((k, v) for k, v in table.items() if not (k[0] == "~" and "poll" in k[2])),
        key=lambda kv: -kv[1][column],
    )[:top]
    for (filename, line, func), v in rows:
        short = "/".join(Path(filename).parts[-2:])
        print(f"#   {100 * v[column] / busy:5.1f} %  {v[1]:>9} calls  {short}:{line}({func})")


def print_profile(path: Path, top: int = 15) -> None:
    table, busy, idle = profile_table(path)
    print(
        f"\n# bridge cProfile during the window: {busy:.2f} s busy, {idle:.2f} s waiting in "
        "epoll; share of the busy time (cumulative):"
    )
    for label, suffix, func, indented in PROFILE_ENTRIES:
        cum = sum(v[3] for (f, _l, fn), v in table.items() if f.endswith(suffix) and fn == func)
        pad = "    of which " if indented else ""
        print(f"#   {pad + label:<46} {100 * cum / busy:5.1f} %")
    print_top(table, busy, top)


def print_row(r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    lost_pct = 100 * r["lost"] / max(r["expected"], 1)
    print(
        f"| {r['size']:,} | {r['offered_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
        f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {cpu.get('bridge', float('nan')):.0f} | "
        f"{r['bridge_hwm_mib']:.0f} | {r['lost']:,} ({lost_pct:.1f} %) |",
        flush=True,
    )


def print_details(r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    s = r["server"]
    print(
        f"#   {r['size']:,} items: window {r['seconds']:.1f} s, {r['ticks']} ticks; bridge set-up "
        f"{r['setup_s']:.1f} s; drain {r['drain_s']:.1f} s"
        f"{'' if r['drained'] else ' (INCOMPLETE: late values count as lost)'}. "
        f"Server: nominal {r['nominal_per_s']:,.0f}/s, wrote "
        f"{s.get('values_per_s', float('nan')):,.0f}/s, busy {s.get('busy_pct', float('nan')):.0f}"
        f" % of the time, late ticks {s.get('late_ticks', '?')}, skipped "
        f"{s.get('skipped_ticks', '?')}, slowest tick {s.get('max_tick_ms', '?')} ms."
    )
    print(
        f"#     flow per second: server wrote {s.get('values_per_s', float('nan')):,.0f}, "
        f"notifications reached the bridge {r['bridge_in_per_s']:,.0f}, of which "
        f"{r['superseded_per_s']:,.0f} were replaced by a newer value of the same item before a "
        f"writer tick sent them ({r['repeated_per_s']:,.0f} already within one Publish "
        f"response; {r['shed_per_s']:,.0f} shed by the intake in overload), subscriber got "
        f"{r['delivered_per_s']:,.0f} new values; MQTT: {r['seq_gaps']} sequence gaps, "
        f"{r['sub_dropped']} subscriber queue drops. Bridge CPU per value delivered: "
        f"{r['bridge_us_per_value']:.1f} µs, per notification received: "
        f"{r['bridge_us_per_notification']:.1f} µs."
    )
    print(
        f"#     bridge: {r['bridge_in_per_s']:,.0f} notifications/s in "
        f"{r['responses_per_s']:.1f} Publish responses/s (largest {r['max_response']:,}), "
        f"{r['messages_per_s']:,.0f} MQTT messages/s, {r['mbytes_per_s']:.1f} MB/s JSON, "
        f"loop lag max {r['max_loop_lag_ms']:.0f} ms, MQTT spool {r['spool']} at the end "
        f"(max {r['max_spool']}), spool drops "
        f"{r['mqtt_dropped']}, MQTT reconnects {r['mqtt_reconnects']}; "
        f"RSS now {r['bridge_rss_mib']:.0f} MiB. Source->bridge lag p50/p99 "
        f"{r['lags'].get('arrival_lag_p50_ms', '?')}/{r['lags'].get('arrival_lag_p99_ms', '?')}"
        " ms (first value of each response)."
    )
    ours = sum(v for k, v in cpu.items() if k != "machine")
    print(
        f"#     CPU %: bridge {cpu.get('bridge', 0):.0f}, server {cpu.get('server', 0):.0f}, "
        f"mosquitto {cpu.get('mosquitto', 0):.0f}, subscriber {cpu.get('subscriber', 0):.0f} "
        f"(sum {ours:.0f}; machine {cpu.get('machine', 0):.0f} of {100 * (os.cpu_count() or 1)}, "
        f"so {cpu.get('machine', 0) - ours:.0f} % other work). Subscriber: "
        f"latency max {r['max_ms']:.0f} ms, sequence gaps {r['seq_gaps']}, out of order "
        f"{r['out_of_order']}, queue drops {r['sub_dropped']}, unverified {r['unverified']}."
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    publishing = args.publishing_interval_ms or args.interval_ms
    print(
        f"# bridge end to end: server --churn N every {args.interval_ms:g} ms -> bridge "
        f"(publishing interval {publishing:g} ms, {args.fields_per_writer} fields per "
        f"writer, QoS {args.qos}, queue size {args.queue_size}) -> Mosquitto TLS -> "
        f"Subscriber; window {args.seconds:g} s after {args.warmup:g} s warm-up"
        f"{'; PROFILED' if args.profile else ''}"
        f"{'; THE NAIVE BRIDGE (bench/naive_bridge.py)' if args.naive else ''}"
    )
    print(
        f"# {dt.date.today()}, Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"gmqtt {version('gmqtt')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        env = make_env(Path(tmp))
        for size in sizes:
            rows.append(await measure(env, size, args))
        print(
            "| items | changes/s offered | changes/s delivered | p50 ms | p99 ms | bridge CPU % "
            "| bridge peak RSS MiB | lost |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print_row(r)
        for r in rows:
            print_details(r)
        for r in rows:
            if r["profile"] is not None and r["profile"].exists():
                print(f"\n# --- {r['size']:,} items ---", end="")
                print_profile(r["profile"])
    return rows


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--run-bridge"] and len(argv) == 2:
        return run_bridge_child(argv[1])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for what is measured and how.",
    )
    parser.add_argument("--sizes", default="1000,10000", help="monitored items, comma-separated")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=100.0,
        help="server change period = bridge publishing interval (default 100)",
    )
    parser.add_argument(
        "--publishing-interval-ms",
        type=float,
        default=None,
        help="the bridge's publishing (and sampling) interval if not --interval-ms",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per size")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=60.0,
        help="at most this long after the window for its values to arrive (default 60 s)",
    )
    parser.add_argument("--fields-per-writer", type=int, default=100)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--queue-size",
        type=int,
        default=10,
        help="monitored item queue size (default 10, the configuration's default)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the bridge during the window"
    )
    parser.add_argument(
        "--naive",
        action="store_true",
        help="measure the naive bridge (naive_bridge.py) instead of ours, the same way",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("opcua_mqtt.subscriber").setLevel(logging.ERROR)  # one line per metadata

    async def measure() -> None:
        await run(args)  # it prints as it goes; what it returns is for compare.py

    return run_to_the_end(measure())


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


if __name__ == "__main__":
    sys.exit(main())

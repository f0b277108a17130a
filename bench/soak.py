#!/usr/bin/env python3
"""Soak: a long run of `opcua-mqtt run` at a steady load while the broker crashes now and then
and the bridge is killed once, counted by an independent subscriber. Not part of the test suite.

    python bench/soak.py [--duration 1800] [--changes-per-s 5000] [--broker-restart-every 300]
                         [--broker-outage-s 5] [--bridge-kill-at SECONDS] [--spool DIR]

Each part runs in its own process, on 127.0.0.1:

* the asyncua test server (``python -m harness.opcua_server --churn N --churn-interval-ms I``)
  writes N Double variables every I ms (``--interval-ms``, default 100), N chosen to make
  ``--changes-per-s``; its own rate (from its ``CHURN`` lines) is printed, since a busy machine
  may make it fall short (one process offers well above 5,000/s, see docs/benchmarks.md);
* Mosquitto over TLS with persistence, saving every second (harness.mosquitto.persistence_config),
  SIGKILLed every ``--broker-restart-every`` seconds and started again ``--broker-outage-s``
  later on the same port and database: a crash, not a clean stop;
* the bridge, ``opcua-mqtt run --metrics-port P CONFIG``: writers of ``--fields-per-writer``
  churn variables each, publishing every I ms at QoS 1. At ``--bridge-kill-at`` (default: half
  the duration plus half an outage) it is SIGKILLed and started again at once with the same
  configuration. With the defaults that moment is 2.5 s into the third broker crash, so the
  bridge dies with 2.5 s of data waiting for the broker: lost unless a disk spool keeps it
  (without one, the run's "sent but never received" shows it). ``--spool DIR`` writes
  ``mqtt.spool.directory: DIR`` into the configuration (that key needs the disk spool; without
  the option the configuration has no spool key);
* this process: a persistent-session MQTT 5 subscriber (harness.stream_subscriber, QoS 1,
  resumed after every broker restart) that books every DataSetMessage by writer and
  SequenceNumber (harness.sequence_check), and scrapes the bridge's /metrics and
  /proc/PID/status every second.

At the end the bridge is stopped cleanly (it drains its spool and sends Disabled last) and the
counts are printed: messages sent (the bridge's ``opcua_mqtt_published_messages_total``, summed
over its processes, each read just before it was killed or stopped, so within one publishing
interval), received (duplicates included), distinct, lost (SequenceNumber gaps), duplicated
(exact QoS 1 repeats), out of order, sequence restarts (a writer numbering from 0 again: a
bridge restart without kept state), and the bridge's RSS at start (first data), middle (half
the duration) and end. Exit status 1 when frames were lost or out of order, when ``--spool``
was given and a writer's numbering restarted, or when the end was not reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from bridge_load import churn_lines, proc_status_kib, run_to_the_end
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.bridge import EXE, make_certs, write_config  # noqa: E402
from harness.mosquitto import (  # noqa: E402
    NOT_INSTALLED_MESSAGE,
    MosquittoBroker,
    persistence_config,
)
from harness.opcua_servers import OpcUaTestServer, start_opcua_server  # noqa: E402
from harness.pki import generate_pki  # noqa: E402
from harness.processes import LOOPBACK, Process, find_mosquitto, free_port, spawn  # noqa: E402
from harness.stream_subscriber import StreamSubscriber  # noqa: E402

PUBLISHER = "soak"
#: Counters read from each bridge process's /metrics (summed over its labels).
COUNTERS = (
    "opcua_mqtt_published_messages_total",
    "opcua_mqtt_value_changes_total",
    "opcua_mqtt_spool_dropped_messages_total",
)


@dataclass
class BridgeRun:
    """One `opcua-mqtt run` process and what was last read from it."""

    process: Process
    metrics_port: int
    counters: dict[str, float] = field(default_factory=dict)
    mqtt_connected: bool = False
    peak_rss_kib: int = 0
    end: str = "running"  # killed, stopped

    def scrape(self) -> None:
        """Read its counters and RSS; a process that does not answer keeps the last ones."""
        rss = proc_status_kib(self.process.pid, "VmHWM")
        self.peak_rss_kib = max(self.peak_rss_kib, rss or 0)
        conn = http.client.HTTPConnection(LOOPBACK, self.metrics_port, timeout=2)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except OSError:
            return
        finally:
            conn.close()
        counters = dict.fromkeys(COUNTERS, 0.0)
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name in counters:
                    counters[sample.name] += sample.value
                elif sample.name == "opcua_mqtt_connected" and sample.labels["side"] == "mqtt":
                    self.mqtt_connected = sample.value == 1
        self.counters = counters

    def rss_mib(self) -> float:
        return (proc_status_kib(self.process.pid, "VmRSS") or 0) / 1024


class Rig:
    """Broker, server, configuration and the bridge processes, stopped by ``stack``."""

    def __init__(
        self, stack: contextlib.ExitStack, workdir: Path, args: argparse.Namespace
    ) -> None:
        mosquitto = find_mosquitto()
        if mosquitto is None:
            raise SystemExit(NOT_INSTALLED_MESSAGE)
        self.workdir = workdir
        broker_dir = workdir / "mosquitto"
        self.broker = MosquittoBroker(
            executable=mosquitto,
            pki=generate_pki(workdir / "pki"),
            workdir=broker_dir,
            mutual_tls=False,
            extra_config=persistence_config(broker_dir),
        )
        self.broker.start()
        stack.callback(self.broker.stop)
        self.items = max(1, round(args.changes_per_s * args.interval_ms / 1000))
        churn = ("--churn", str(self.items), "--churn-interval-ms", str(args.interval_ms))
        # Blocking on purpose: nothing else runs yet, and a Ctrl-C cannot orphan the server.
        self.server: OpcUaTestServer = start_opcua_server(
            workdir / "server", variables=200, timeout=120.0, extra_args=churn
        )
        stack.callback(self.server.stop)
        self.config = self._write_config(args)
        self.bridges: list[BridgeRun] = []
        stack.callback(self._stop_bridges)

    def _write_config(self, args: argparse.Namespace) -> Path:
        nodeids = self.server.manifest["churn"]["nodeids"]
        per = args.fields_per_writer
        writers = [
            {
                "name": f"W{k + 1}",
                "dataset_writer_id": k + 1,
                "fields": [
                    {"name": f"V{i}", "node_id": nodeids[i], "builtin_type": "Double"}
                    for i in range(start, min(start + per, len(nodeids)))
                ],
            }
            for k, start in enumerate(range(0, len(nodeids), per))
        ]
        interval = args.interval_ms
        return write_config(
            self.workdir / "bridge.yaml",
            endpoint=self.server.endpoint,
            broker=self.broker,
            signing_dir=make_certs(self.workdir / "certs", PUBLISHER),
            fields=[],
            publisher_id=PUBLISHER,
            writers=writers,
            defaults={"publishing_interval_ms": interval, "sampling_interval_ms": interval / 2},
            mqtt={"spool": {"directory": str(args.spool.absolute())}} if args.spool else None,
        )

    def start_bridge(self) -> BridgeRun:
        port = free_port()
        cmd = [EXE, "--log-format", "json", "run", "--metrics-port", str(port), str(self.config)]
        name = f"bridge-{len(self.bridges)}"
        run = BridgeRun(spawn(cmd, self.workdir, name, REPO_ROOT, merge=True), port)
        self.bridges.append(run)
        return run

    def _stop_bridges(self) -> None:
        for run in self.bridges:
            run.process.stop()


@dataclass
class Timeline:
    """What happened when, in seconds after the first data arrived."""

    rss_mib: dict[str, float] = field(default_factory=dict)  # start, middle, end
    broker_restarts: list[float] = field(default_factory=list)
    bridge_kill: float | None = None
    reached_end: bool = False
    seconds: float = 0.0


async def _broker_crash(broker: MosquittoBroker, outage_s: float) -> None:
    broker.kill()
    await asyncio.sleep(outage_s)
    await broker.astart()


async def _scrape_loop(rig: Rig) -> None:
    while True:
        await asyncio.to_thread(rig.bridges[-1].scrape)
        await asyncio.sleep(1.0)


async def soak(rig: Rig, args: argparse.Namespace) -> tuple[StreamSubscriber, Timeline]:
    sub = StreamSubscriber(rig.broker, PUBLISHER)
    timeline = Timeline()
    await sub.connect(subscribe=True)
    keeper = asyncio.create_task(sub.stay_connected())
    bridge = rig.start_bridge()
    scraper = asyncio.create_task(_scrape_loop(rig))
    crashes: list[asyncio.Task[None]] = []
    try:
        await sub.until(lambda: sub.ledger.frames > 0, "the first data", tries=1200)
        t0 = time.monotonic()
        timeline.rss_mib["start"] = bridge.rss_mib()
        events: list[tuple[float, int, str]] = [(args.duration / 2, 0, "middle")]
        every = args.broker_restart_every
        events += [(k * every, 1, "broker") for k in range(1, math.ceil(args.duration / every))]
        kill_at = _bridge_kill_at(args)
        if 0 <= kill_at < args.duration:
            events.append((kill_at, 2, "bridge"))
        for at, _order, what in sorted(events):
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            sub.check()
            now = round(time.monotonic() - t0, 1)
            if what == "middle":
                timeline.rss_mib["middle"] = bridge.rss_mib()
            elif what == "broker":
                timeline.broker_restarts.append(now)
                print(
                    f"# {now:7.1f} s: broker SIGKILL, back in {args.broker_outage_s:g} s",
                    flush=True,
                )
                crashes.append(asyncio.create_task(_broker_crash(rig.broker, args.broker_outage_s)))
            else:
                await asyncio.to_thread(bridge.scrape)
                bridge.process.kill()
                bridge.end = "killed"
                timeline.bridge_kill = now
                bridge = rig.start_bridge()
                pid = bridge.process.pid
                print(f"# {now:7.1f} s: bridge SIGKILL, started again (pid {pid})", flush=True)
        await asyncio.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        await asyncio.gather(*crashes)  # the broker is back before the end
        timeline.rss_mib["end"] = bridge.rss_mib()
        scraper.cancel()
        # Stopped only once connected: a bridge stopped while it reconnects would drop what its
        # memory spool holds (issue 13), which is not what the end of a soak is to measure.
        for _ in range(600):
            await asyncio.to_thread(bridge.scrape)
            if bridge.mqtt_connected:
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(bridge.process.stop, 60.0)
        bridge.end = "stopped"
        timeline.seconds = time.monotonic() - t0
        await sub.until(sub.disabled, "the bridge's Disabled status after its clean stop")
        timeline.reached_end = True
    except AssertionError as e:
        print(f"FAILED {e}", file=sys.stderr)
    finally:
        for task in (keeper, scraper, *crashes):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(keeper, scraper, *crashes)
        await sub.close()
    return sub, timeline


def report(rig: Rig, sub: StreamSubscriber, timeline: Timeline, args: argparse.Namespace) -> int:
    ledger = sub.ledger
    sent = sum(b.counters.get(COUNTERS[0], 0.0) for b in rig.bridges)
    changes = sum(b.counters.get(COUNTERS[1], 0.0) for b in rig.bridges)
    dropped = sum(b.counters.get(COUNTERS[2], 0.0) for b in rig.bridges)
    churn = list(churn_lines(rig.server))
    last = churn[-1] if churn else {}
    offered = last.get("values", 0) / last["elapsed_s"] if last.get("elapsed_s") else 0.0
    rss = timeline.rss_mib
    rows = [
        ("messages sent (bridge metrics, ua-data)", f"{sent:,.0f}"),
        ("received (duplicates included)", f"{ledger.frames:,}"),
        ("distinct", f"{ledger.distinct:,}"),
        ("lost (SequenceNumber gaps)", f"{ledger.missing:,}"),
        ("sent but never received", f"{sent - ledger.distinct:,.0f}"),
        ("duplicated (exact QoS 1 repeats)", f"{ledger.duplicates:,}"),
        ("out of order", f"{ledger.late:,}"),
        ("sequence restarts (writers x times)", f"{ledger.restarts:,}"),
        ("spool drops (bridge metrics)", f"{dropped:,.0f}"),
        ("server changes/s (its own rate)", f"{offered:,.0f}"),
        ("value changes received by the bridge", f"{changes:,.0f}"),
        (
            "bridge RSS MiB start / middle / end",
            " / ".join(f"{rss.get(k, float('nan')):.0f}" for k in ("start", "middle", "end")),
        ),
        (
            "bridge peak RSS MiB per process",
            ", ".join(f"{b.peak_rss_kib / 1024:.0f} ({b.end})" for b in rig.bridges),
        ),
        (
            "broker crashes (s after first data)",
            ", ".join(f"{t:g}" for t in timeline.broker_restarts) or "none",
        ),
        (
            "bridge SIGKILL (s after first data)",
            f"{timeline.bridge_kill:g}" if timeline.bridge_kill is not None else "none",
        ),
        ("subscriber connections", f"{sub.connects}"),
    ]
    print("| measure | value |")
    print("| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if last:
        print(
            f"#   server: {last.get('late_ticks', 0)} late and {last.get('skipped_ticks', 0)} "
            f"skipped ticks of {last.get('tick', 0)}, slowest tick {last.get('max_tick_ms', 0)} ms"
        )
    problems = list(ledger.problems())
    for line in problems[:20]:
        print(f"#   {line}")
    failed = ledger.missing > 0 or ledger.late > 0 or not timeline.reached_end
    if args.spool and ledger.restarts:
        print("FAILED a writer's numbering restarted although a spool keeps it", file=sys.stderr)
        failed = True
    if ledger.missing or ledger.late:
        print(f"FAILED {ledger.missing} frames lost, {ledger.late} out of order", file=sys.stderr)
    return 1 if failed else 0


async def run(args: argparse.Namespace) -> int:
    kill_at = _bridge_kill_at(args)
    print(
        f"# soak: {args.duration:g} s at {args.changes_per_s:,} changes/s asked (every "
        f"{args.interval_ms:g} ms), {args.fields_per_writer} fields per writer, QoS 1; broker "
        f"SIGKILL every {args.broker_restart_every:g} s ({args.broker_outage_s:g} s down), "
        f"bridge SIGKILL at {kill_at:g} s; spool: {args.spool or 'memory only (no spool key)'}"
    )
    print(
        f"# {dt.date.today()}, Python {platform.python_version()}, asyncua {version('asyncua')}, "
        f"gmqtt {version('gmqtt')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        else:
            workdir = args.workdir.absolute()
            workdir.mkdir(parents=True, exist_ok=True)
        rig = Rig(stack, workdir, args)
        print(
            f"# {rig.items} variables in {math.ceil(rig.items / args.fields_per_writer)} writers, "
            f"work directory {workdir}",
            flush=True,
        )
        sub, timeline = await soak(rig, args)
        return report(rig, sub, timeline, args)


def _bridge_kill_at(args: argparse.Namespace) -> float:
    """Seconds after the first data: as given, else half-way plus half an outage (which puts
    it inside a broker outage when the restarts fall on the middle, as with the defaults)."""
    if args.bridge_kill_at is not None:
        return float(args.bridge_kill_at)
    return float(args.duration / 2 + args.broker_outage_s / 2)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for what is measured and how.",
    )
    parser.add_argument("--duration", type=_positive, default=1800.0, help="seconds (1800)")
    parser.add_argument("--changes-per-s", type=int, default=5000, help="asked of the server")
    parser.add_argument("--interval-ms", type=_positive, default=100.0, help="server and bridge")
    parser.add_argument("--fields-per-writer", type=int, default=50)
    parser.add_argument("--broker-restart-every", type=_positive, default=300.0, help="seconds")
    parser.add_argument("--broker-outage-s", type=_positive, default=5.0)
    parser.add_argument(
        "--bridge-kill-at",
        type=float,
        help="seconds after the first data (default: half-way plus half an outage)",
    )
    parser.add_argument(
        "--spool", type=Path, help="mqtt.spool.directory for the bridge (needs the disk spool)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the logs, configuration and broker database here (default: a temporary "
        "folder, removed at the end)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The subscriber's own gmqtt client logs a false ERROR each time the broker goes away.
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)

    return run_to_the_end(run(args))


if __name__ == "__main__":
    sys.exit(main())

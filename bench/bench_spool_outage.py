#!/usr/bin/env python3
"""Bridge memory during a long broker outage, and what arrives after it.

    python bench/bench_spool_outage.py [--spool disk|memory] [--outage-s 600] [--items 500]
        [--interval-ms 100] [--writers 10] [--sample-s 30]

* the asyncua test server with ``--churn ITEMS --churn-interval-ms MS`` (ITEMS x 1000/MS
  changes/s: 5,000/s by default), its own rate printed from its CHURN lines;
* Mosquitto with TLS on a free loopback port;
* the bridge (``opcua-mqtt run``), ITEMS fields in ``--writers`` writers of one writer group
  publishing every MS, reaching the broker through a TCP proxy in this process (so the outage is
  the bridge's alone: the broker and the subscriber stay up), with a disk spool
  (``mqtt.spool.directory``) or the in-memory one;
* this process: a subscriber of the bridge's ua-data connected to the broker directly, counting
  each DataSetWriter's sequence numbers.

After a warm-up the proxy is cut for ``--outage-s`` seconds; every ``--sample-s`` the bridge's
RSS (/proc VmRSS), its spool (metrics endpoint) and the disk spool's files are printed. Then the
proxy is restored and the bench waits until the spool is empty and the subscriber has caught up:
it prints the drain time, messages received, sequence gaps (lost) and repeats (QoS 1
duplicates). Exit status 1 when a message is missing while the spool dropped nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from bench_write_back import spawn_bridge, start_broker
from bridge_load import proc_status_kib

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.bridge import make_certs, write_config  # noqa: E402
from harness.mosquitto import MosquittoBroker  # noqa: E402
from harness.opcua_servers import start_opcua_server  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.stall_proxy import StallProxy  # noqa: E402
from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession, TlsOptions  # noqa: E402

PUBLISHER = "spool-bench"


class Sequences:
    """Each writer's sequence numbers as they arrive."""

    def __init__(self) -> None:
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.messages = 0
        self.repeats = 0

    def __call__(self, _topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        for m in json.loads(payload).get("Messages", []):
            if m.get("MessageType") == "ua-keepalive":
                continue
            self.messages += 1
            numbers = self.seen[m["DataSetWriterId"]]
            if m["SequenceNumber"] in numbers:
                self.repeats += 1
            numbers.add(m["SequenceNumber"])

    def gaps(self) -> int:
        return sum(max(s) - min(s) + 1 - len(s) for s in self.seen.values() if s)


def metrics(port: int) -> dict[str, float]:
    """The bridge's unlabelled metrics (name -> value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def configure(
    workdir: Path,
    args: argparse.Namespace,
    server: Any,
    broker: MosquittoBroker,
    proxy: StallProxy,
    metrics_port: int,
) -> Path:
    nodes = server.manifest["churn"]["nodeids"]
    path = write_config(
        workdir / "bridge.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(workdir / "certs", PUBLISHER),
        fields=[],
        publisher_id=PUBLISHER,
    )
    doc = yaml.safe_load(path.read_text())
    per = -(-len(nodes) // args.writers)
    doc["writer_groups"] = [
        {
            "name": "G",
            "writers": [
                {
                    "name": f"W{w}",
                    "dataset_writer_id": 1000 + w,
                    "fields": [
                        {"name": f"V{i}", "node_id": n, "builtin_type": "Double"}
                        for i, n in enumerate(nodes[w * per : (w + 1) * per], w * per)
                    ],
                }
                for w in range(args.writers)
            ],
        }
    ]
    doc["defaults"] |= {
        "publishing_interval_ms": args.interval_ms,
        "sampling_interval_ms": args.interval_ms,
        "queue_size": 1,
    }
    doc["mqtt"]["port"] = proxy.port
    if args.spool == "disk":
        doc["mqtt"]["spool"] = {"directory": "spool"}
    doc["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def disk_mib(directory: Path) -> float:
    return (
        sum(p.stat().st_size for p in directory.glob("spool.db*")) / 2**20
        if directory.exists()
        else 0.0
    )


def churn_rate(server: Any) -> float:
    lines = [json.loads(x[6:]) for x in server.output().splitlines() if x.startswith("CHURN ")]
    if len(lines) < 2:
        return float("nan")
    a, b = lines[0], lines[-1]
    return (b["values"] - a["values"]) / max(b["elapsed_s"] - a["elapsed_s"], 1e-9)


async def run(workdir: Path, args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        broker = start_broker(stack, workdir)
        server = start_opcua_server(
            workdir / "server",
            variables=10,
            timeout=120.0,
            extra_args=["--churn", str(args.items), "--churn-interval-ms", str(args.interval_ms)],
        )
        stack.callback(server.stop)
        async with StallProxy(broker.host, broker.port) as proxy:
            metrics_port = free_port()
            config = configure(workdir, args, server, broker, proxy, metrics_port)
            bridge = spawn_bridge(config, workdir)
            stack.callback(bridge.stop)
            seqs = Sequences()
            sub = MqttSession(
                MqttOptions(
                    host=broker.host,
                    port=broker.port,
                    client_id="bench-sub",
                    tls=TlsOptions(ca=str(broker.ca_cert)),
                )
            )
            sub.subscribe(f"opcua/json/data/{PUBLISHER}/#", seqs)
            await sub.start(wait=True)
            for _ in range(120):
                await asyncio.sleep(1)
                if seqs.messages > 50:
                    break
            else:
                print(bridge.output()[-3000:])
                raise SystemExit("the bridge never delivered")
            await asyncio.sleep(args.warm_s)
            print(
                f"# {args.spool} spool, {args.items} items every {args.interval_ms} ms in "
                f"{args.writers} writers, outage {args.outage_s:g} s; source rate "
                f"{churn_rate(server):,.0f} changes/s"
            )
            print("| t s | bridge RSS MiB | spool messages | spool MiB | dropped | disk MiB |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: |")
            spool_dir = config.parent / "spool"

            def sample(t: float) -> dict[str, float]:
                m = metrics(metrics_port)
                rss = (proc_status_kib(bridge.pid, "VmRSS") or 0) / 1024
                print(
                    f"| {t:.0f} | {rss:.1f} | {m['opcua_mqtt_spool_messages']:,.0f} | "
                    f"{m['opcua_mqtt_spool_bytes'] / 2**20:.1f} | "
                    f"{m.get('opcua_mqtt_spool_dropped_messages_total', 0):,.0f} | "
                    f"{disk_mib(spool_dir):.1f} |",
                    flush=True,
                )
                return m | {"rss": rss}

            start = time.monotonic()
            sample(0)
            proxy.cut()
            rss = []
            while (t := time.monotonic() - start) < args.outage_s:
                await asyncio.sleep(min(args.sample_s, args.outage_s - t))
                rss.append(sample(time.monotonic() - start)["rss"])
            before = seqs.messages
            proxy.resume()
            resumed = time.monotonic()
            drained = None
            while time.monotonic() - resumed < 600:
                await asyncio.sleep(1)
                m = metrics(metrics_port)
                if m["opcua_mqtt_spool_messages"] < 50:
                    drained = time.monotonic() - resumed
                    break
            await asyncio.sleep(5)  # the last ones in flight, then live data
            final = sample(time.monotonic() - start)
            await sub.stop()
            dropped = final.get("opcua_mqtt_spool_dropped_messages_total", 0)
            print(
                f"# RSS during the outage: first {rss[0]:.1f} MiB, max {max(rss):.1f} MiB, "
                f"last {rss[-1]:.1f} MiB"
            )
            print(
                f"# after the outage: spool drained in "
                f"{'never' if drained is None else f'{drained:.1f} s'}; "
                f"{seqs.messages - before:,} DataSetMessages arrived after it, "
                f"{seqs.messages:,} in all; sequence gaps (lost) {seqs.gaps():,}, repeats "
                f"(QoS 1 duplicates) {seqs.repeats:,}, dropped by a full spool {dropped:,.0f}"
            )
            print(f"# {platform.node()}, {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
            return 1 if seqs.gaps() and not dropped else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spool", choices=("disk", "memory"), default="disk")
    p.add_argument("--outage-s", type=float, default=600)
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--writers", type=int, default=10)
    p.add_argument("--sample-s", type=float, default=30)
    p.add_argument("--warm-s", type=float, default=10, help="delivering before the cut")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as d:
        return asyncio.run(run(Path(d), args))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Many items over several OPC UA servers: how long `opcua-mqtt run` takes from start to its
first data and to every field valued, and whether its memory stays flat over minutes.

    python bench/bench_many_sources.py [--servers 4] [--items 100000] [--interval-ms 10000]
                                       [--fields-per-writer 100] [--minutes 10]

* ``--servers`` asyncua test servers (``python -m harness.opcua_server --churn N/servers
  --churn-interval-ms I``), each a process of its own, each writing a new value to each of its
  variables every I ms (the load source; each prints its own rate, shown beside the figures);
* Mosquitto with TLS on a free loopback port;
* the bridge as a user runs it: ``opcua-mqtt run CONFIG --metrics-port P`` with one source per
  server (``sources:``), one writer group per source (publishing interval 1 s), writers of
  ``--fields-per-writer`` Double fields, QoS 1, signed metadata;
* this process subscribes (:class:`opcua_mqtt.subscriber.Subscriber`) until every field has had
  a Good value, then unsubscribes (a Python subscriber of every value would measure itself).

Measured from the moment the bridge process is started (the servers are up already): the first
DataSetMessage received, and every configured field valued (Good) at least once. Then, for
``--minutes``, the bridge's RSS (VmRSS) every 10 s, its CPU, and the notifications it took
(``opcua_mqtt_value_changes_total``) against what the servers wrote (their CHURN lines).
"Flat" is judged on the slope of RSS over the second half of the run.

Everything runs on 127.0.0.1 and stops by itself; child processes are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bridge_load import (  # noqa: E402
    bridge_config,
    churn_lines,
    churn_window,
    make_env,
    metric,
    proc_cpu_seconds,
    proc_status_kib,
    start_churn_servers,
)

from harness.bridge import EXE  # noqa: E402
from harness.processes import free_port, spawn  # noqa: E402

_CHANGES = "opcua_mqtt_value_changes_total"
_PUBLISHED = r"opcua_mqtt_published_messages_total\{[^}]*\}"


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    num = sum((t - mt) * (r - mr) for t, r in samples)
    den = sum((t - mt) ** 2 for t, _ in samples) or 1.0
    return 60 * num / den


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cryptography import x509

    from harness.mosquitto import MosquittoBroker
    from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
    from opcua_mqtt.core.identity import SignerMap
    from opcua_mqtt.core.signing import TrustStore
    from opcua_mqtt.subscriber import Subscriber

    workdir = Path(tempfile.mkdtemp(prefix="bench-many-sources-"))
    env = make_env(workdir)
    publisher = "bench-many"
    per_server = args.items // args.servers
    result: dict[str, Any] = {"items": per_server * args.servers, "servers": args.servers}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        broker = MosquittoBroker(
            executable=env.mosquitto, pki=env.pki, workdir=workdir / "mosquitto", mutual_tls=False
        )
        broker.start()
        stack.callback(broker.stop)
        started = time.monotonic()
        servers = start_churn_servers(workdir, args.servers, args.items, args.interval_ms)
        for server in servers:
            stack.callback(server.stop)
        print(
            f"{args.servers} servers, {per_server:,} items each, up in "
            f"{time.monotonic() - started:.0f} s"
        )
        config = workdir / "bridge.yaml"
        # Publishing and sampling every 1 s, queue size 1: a plant's setting at 10 s changes.
        total = bridge_config(
            config,
            servers,
            env,
            broker,
            publisher=publisher,
            per_writer=args.fields_per_writer,
            interval_ms=1000,
            queue_size=1,
        )
        port = free_port()
        mqtt = MqttOptions(
            host=broker.host,
            port=broker.port,
            client_id="bench-many-sub",
            tls=TlsOptions(ca=str(broker.ca_cert)),
        )
        signer_cert = x509.load_pem_x509_certificates(env.signer_chain.read_bytes())[0]
        valued: set[tuple[int | None, str]] = set()
        first: list[float] = []
        async with Subscriber(
            mqtt,
            trust=TrustStore.from_pem(env.trust_pem),
            signers=SignerMap({publisher: [signer_cert]}),
            queue_size=1_000_000,
        ) as sub:
            cmd = [EXE, "run", str(config), "--metrics-port", str(port)]
            t_start = time.monotonic()
            bridge = spawn(cmd, workdir, "bridge", merge=True)
            stack.callback(bridge.stop)

            async def consume() -> None:
                async for ds in sub:
                    if not first:
                        first.append(time.monotonic())
                    for name, value in ds.fields.items():
                        if value.status.is_good():
                            valued.add((ds.dataset_writer_id, name))

            consumer = asyncio.create_task(consume())
            deadline = t_start + args.start_limit_s
            published: float | None = None  # the bridge's first data message, by its metrics
            while len(valued) < total and time.monotonic() < deadline and bridge.running:
                await asyncio.sleep(0.1)
                if published is None:
                    sent = await asyncio.to_thread(metric, port, _PUBLISHED)
                    published = time.monotonic() if sent else None
            all_valued = time.monotonic() if len(valued) >= total else None
            logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        if not bridge.running:
            raise SystemExit(f"the bridge stopped:\n{bridge.output(3000)}")
        result["first_data_s"] = first[0] - t_start if first else None
        result["first_published_s"] = published - t_start if published else None
        result["all_valued_s"] = all_valued - t_start if all_valued else None
        result["valued"] = len(valued)
        # The steady state: RSS every 10 s, CPU and rates over the whole window.
        t0, cpu0, in0 = time.time(), proc_cpu_seconds(bridge.pid), metric(port, _CHANGES)
        await asyncio.sleep(1.5)  # the servers' next CHURN line: the window's first edge
        churn = [list(churn_lines(s)) for s in servers]  # output() keeps only its tail
        rss: list[tuple[float, float]] = []
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            kib = proc_status_kib(bridge.pid, "VmRSS")
            if kib is None:
                raise SystemExit(f"the bridge is gone:\n{bridge.output(3000)}")
            rss.append((time.time() - t0, kib / 1024))
            print(f"  +{rss[-1][0]:5.0f} s  RSS {rss[-1][1]:6.1f} MiB", flush=True)
            await asyncio.sleep(10)
        t1, cpu1, in1 = time.time(), proc_cpu_seconds(bridge.pid), metric(port, _CHANGES)
        for _ in range(100):  # each server reports once a second
            if all(any(x["t"] >= t1 for x in churn_lines(s)) for s in servers):
                break
            await asyncio.sleep(0.1)
        rates = [
            churn_window([*before, *churn_lines(s)], t0, t1)
            for s, before in zip(servers, churn, strict=True)
        ]
        result["source_per_s"] = sum(r.get("values_per_s", 0.0) for r in rates)
        result["source_busy_pct"] = [round(r.get("busy_pct", 0.0)) for r in rates]
        result["bridge_in_per_s"] = (in1 - in0) / (t1 - t0) if in0 is not None and in1 else None
        result["bridge_cpu_pct"] = (
            100 * (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else None
        )
        half = [s for s in rss if s[0] >= rss[-1][0] / 2]
        result["rss_mib"] = {
            "first": rss[0][1],
            "min": min(r for _, r in rss),
            "max": max(r for _, r in rss),
            "last": rss[-1][1],
            "slope_second_half_mib_per_min": slope_mib_per_min(half),
        }
        result["peak_rss_mib"] = (proc_status_kib(bridge.pid, "VmHWM") or 0) / 1024
        result["minutes"] = (t1 - t0) / 60
        warnings = [ln for ln in bridge.text().splitlines() if "WARNING" in ln or "ERROR" in ln]
        result["bridge_warnings"] = warnings[:5]
    return result


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    src = r.get("source_per_s", 0.0)
    print()
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(
        f"{r['items']:,} items over {r['servers']} server processes, change interval "
        f"{args.interval_ms / 1000:g} s; source rate {src:,.0f} values/s "
        f"(servers busy {r['source_busy_pct']} %)"
    )

    def sec(x: float | None) -> str:
        return "not within the limit" if x is None else f"{x:.1f} s"

    print("| measure | figure | target | source rate |")
    print("| --- | --- | --- | --- |")
    print(
        f"| start -> first data | {sec(r['first_data_s'])} at the subscriber "
        f"({sec(r['first_published_s'])} published by the bridge) | <= 30 s | {src:,.0f}/s |"
    )
    print(
        f"| start -> every field valued | {sec(r['all_valued_s'])} ({r['valued']:,} of "
        f"{r['items']:,}) | <= 60 s | {src:,.0f}/s |"
    )
    m = r["rss_mib"]
    print(
        f"| bridge RSS over {r['minutes']:.1f} min | first {m['first']:.0f}, min {m['min']:.0f}, "
        f"max {m['max']:.0f}, last {m['last']:.0f} MiB; slope of the second half "
        f"{m['slope_second_half_mib_per_min']:+.2f} MiB/min | <= 300 MB and flat | {src:,.0f}/s |"
    )
    print(
        f"| bridge CPU, notifications taken | {r['bridge_cpu_pct']:.0f} % of a core, "
        f"{r['bridge_in_per_s'] or 0:,.0f}/s | - | {src:,.0f}/s |"
    )
    if r["bridge_warnings"]:
        print("bridge warnings:", *r["bridge_warnings"], sep="\n  ")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, default=4)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--interval-ms", type=int, default=10_000)
    p.add_argument("--fields-per-writer", type=int, default=100)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--start-limit-s", type=float, default=300.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(run(args))
    report(result, args)
    return 0 if result["all_valued_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())

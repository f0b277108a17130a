#!/usr/bin/env python3
"""End-to-end throughput, latency and cost of the bridge: OPC UA servers -> bridge -> Mosquitto
(TLS) -> subscriber, each in its own process.

    python bench/bench_bridge.py [--sizes 1000,10000] [--interval-ms 100] [--seconds 20]
                                 [--warmup 5] [--servers 1] [--source asyncua-direct]
                                 [--fields-per-writer 100] [--qos 1] [--verify]
                                 [--bridge-cpu 0.3] [--shards 2] [--profile]

For each size N:

* ``--servers`` K asyncua test servers (``python -m harness.opcua_server --churn N/K
  --churn-interval-ms I``), each in its own process, write the tick number, as a Double with a
  SourceTimestamp taken at write time, to their N/K variables every I ms (in blocks of 250);
  each prints its own rate (CHURN lines), shown per server and summed. ``--source``: by default
  ``asyncua-direct`` (``--churn-direct``: the changes are queued for the monitored items
  directly and each shared DataValue is encoded once, harness/churn_direct.py; about 4 µs of
  server CPU per change), or ``asyncua`` (``write_attribute_value`` per change, about 16 µs:
  one such server is the limit above ~25,000 changes/s);
* Mosquitto listens with TLS on a free loopback port (stock settings, see harness/);
* the bridge runs in a child process (bridge_load.py with the configuration a user would write:
  one source and one writer group per server, publishing interval I, writers of F fields,
  QoS 1, signed metadata). A process of its own, so that its CPU time and peak RSS are its own
  and nothing the harness does slows its event loop; on the event loop and with the garbage
  collector settings of ``opcua-mqtt run`` (``--loop``, :mod:`opcua_mqtt.gc_tuning`). With
  ``--shards 2`` the configuration is split by ``opcua-mqtt shard CONFIG 2`` and two bridge
  processes share the load;
* this process counts what arrives (value_counter.py): by default a light subscriber (raw
  gmqtt + orjson, ~1-2 µs per value; every metadata signature verified), with ``--verify``
  the product's Subscriber (every value decoded and matched to verified metadata, 10+ µs per
  value, which competes with the bridge for the machine), and samples /proc for the CPU time
  of every process.

After ``--warmup`` seconds the measurement window of ``--seconds`` starts. Counted are the ticks
whose first value received carries a SourceTimestamp inside the window; each of them should reach
the subscriber once per variable, so ``lost`` = values expected - distinct (variable, tick) pairs
received. The count waits (``--drain-limit``) until every variable has a value written after the
window: per variable values arrive in order, so nothing later can still belong to the window.
If that wait ends first (a bridge far behind), what the servers wrote in the window by their own
count is expected, so that ticks never seen count as lost too.
"Offered" is the servers' write rate by their own timestamps. Latency is the time of arrival
at the subscriber minus the value's SourceTimestamp, same machine, same clock; with equal
periods it includes up to one interval of waiting in the server and one in the bridge.
Bridge CPU % is its user+system time over the window (100 % = one core); peak RSS is its VmHWM.
Where the latency goes: the source->bridge lag (age of the first value of each Publish response
when the bridge gets it) and the wait of each value sent from its arrival to the writer tick that
took it into a DataSetMessage (the bridge ticks on its own publishing-interval clock), and (light
subscriber) each DataSetMessage's time from that tick (its Timestamp) to the subscriber.
The CPU of the servers, Mosquitto, this process and the whole machine is shown too: the figures
are only as good as the machine was quiet.

Where values go missing, the breakdown line says at which stage: the servers' writes, the
notifications reaching the bridge (``bridge.stats.value_changes``) and the values reaching the
subscriber; DataSetMessage sequence gaps show MQTT-side loss.

``--bridge-cpu C`` runs the bridge in a cgroup v1 ``cpu`` group with a quota of C cores (needs
root; exit status 2 with one line if the group cannot be made): the overload measure, where the
sources offer more than the bridge can carry. The quota's period is 10 ms
(``--bridge-cpu-period-ms``): at the kernel's 100 ms the group stops for up to 70 ms of each
period, and the loop lag measured would be those stops. The bridge's values-shed counter
(``opcua_mqtt_values_shed_total``) is shown where its /metrics has one.

``OPCUA_MQTT_BENCH_STEP_CPU=1`` in the environment prints the CPU time of the bridge's longest
task steps and garbage-collector passes in the window (bench/step_cpu.py).

``--profile`` runs cProfile in the bridge during the window (slower: use it for the shape, not
for the figures) and prints where the bridge's time goes, grouped by package.

Everything runs on 127.0.0.1 and stops by itself; child processes are stopped by PID on the way
out, also after Ctrl-C or an error.
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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from bridge_load import (
    SOURCES,
    CgroupError,
    CpuLimit,
    Env,
    bridge_config,
    churn_lines,
    churn_window,
    cpu_percent,
    has_line,
    lines,
    make_env,
    metrics_port,
    percentile,
    proc_status_kib,
    run_to_the_end,
    shard_configs,
    snapshot,
    spawn_bridge,
    start_churn_servers,
    values_shed,
)
from profile_report import print_profile
from value_counter import LightSubscriber, Receiver

from harness.processes import Process
from opcua_mqtt import event_loop

# ------------------------------------------------------------------------ one measurement


async def _wait_line(child: Process, kind: str, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = lines(child, kind)
        if len(found) >= count:
            return found[count - 1]
        if not child.running or time.monotonic() > deadline:
            raise RuntimeError(f"bridge: no {kind} line #{count}\n{child.output(3000)}")
        await asyncio.sleep(0.02)


def _subscriber(env: Env, broker: Any, receiver: Receiver, args: Any, configs: list[Path]) -> Any:
    """What counts the values: the light subscriber, the product's Subscriber (``--verify``) or
    the naive bridge's."""
    from cryptography import x509
    from naive_bridge import NaiveSubscriber

    from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
    from opcua_mqtt.core.identity import SignerMap
    from opcua_mqtt.core.signing import TrustStore
    from opcua_mqtt.subscriber import Subscriber

    trust = TrustStore.from_pem(env.trust_pem)
    if not (args.naive or args.verify):
        return LightSubscriber(broker, receiver, trust)
    mqtt = MqttOptions(
        host=broker.host,
        port=broker.port,
        client_id=f"bench-sub-{os.getpid()}",
        tls=TlsOptions(ca=str(broker.ca_cert)),
    )
    if args.naive:
        return NaiveSubscriber(mqtt)
    # The bench signer is not bound to the PublisherIds by a SAN URI: the subscriber allows it.
    cert = x509.load_pem_x509_certificates(env.signer_chain.read_bytes())[0]
    publishers = [yaml.safe_load(c.read_text())["publisher_id"] for c in configs]
    return Subscriber(
        mqtt, trust=trust, signers=SignerMap({p: [cert] for p in publishers}), queue_size=100_000
    )


async def measure(env: Env, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run at ``size`` items; what it measured (see the module docstring)."""
    from harness.mosquitto import MosquittoBroker

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
        servers = start_churn_servers(
            workdir,
            args.servers,
            size,
            interval,
            session_timeout_s=15,
            nice=args.server_nice,
            source=args.source,
        )
        for server in servers:
            stack.callback(server.stop)
        config = workdir / "bridge.yaml"
        bridge_config(
            config,
            servers,
            env,
            broker,
            publisher=f"bench-{size}",
            per_writer=args.fields_per_writer,
            interval_ms=args.publishing_interval_ms or interval,
            queue_size=args.queue_size,
            qos=args.qos,
        )
        configs = shard_configs(config, args.shards)
        limit = CpuLimit(args.bridge_cpu, args.bridge_cpu_period_ms) if args.bridge_cpu else None
        if limit is not None:
            stack.callback(limit.close)
        receiver = Receiver([len(s.manifest["churn"]["nodeids"]) for s in servers])
        async with _subscriber(env, broker, receiver, args, configs) as sub:

            async def consume() -> None:
                async for ds in sub:
                    receiver.take(ds)

            consumer = None if isinstance(sub, LightSubscriber) else asyncio.create_task(consume())
            if consumer is not None:  # also when a bridge never gets ready
                stack.callback(consumer.cancel)
            bridges = []
            for k, c in enumerate(configs, 1):
                profile = workdir / f"bridge{k}.prof" if args.profile else None
                bridge = spawn_bridge(
                    c, workdir, name=f"bridge{k}", naive=args.naive, profile=profile, loop=args.loop
                )
                stack.callback(bridge.stop)
                if limit is not None:
                    limit.add(bridge.pid)
                bridges.append(bridge)
            started = time.monotonic()
            for bridge in bridges:
                while not has_line(bridge, "READY"):
                    if not bridge.running or time.monotonic() - started > 300:
                        raise RuntimeError(f"the bridge did not get ready\n{bridge.output(3000)}")
                    await asyncio.sleep(0.05)
            setup_s = time.monotonic() - started
            ports = [metrics_port(b) for b in bridges]
            pids = {f"bridge{k}": b.pid for k, b in enumerate(bridges, 1)}
            pids.update({f"server{k}": s.pid for k, s in enumerate(servers, 1)})
            pids.update({"mosquitto": broker.pid or 0, "subscriber": os.getpid()})
            await asyncio.sleep(args.warmup)
            throttled0 = limit.throttled_s() if limit is not None else 0.0
            shed0 = await values_shed(ports)
            for bridge in bridges:
                bridge.proc.send_signal(signal.SIGUSR1)
            t0, cpu0 = time.time(), snapshot(pids)
            await asyncio.sleep(args.seconds)
            for bridge in bridges:
                bridge.proc.send_signal(signal.SIGUSR1)
            t1, cpu1 = time.time(), snapshot(pids)
            throttled = (limit.throttled_s() if limit is not None else 0.0) - throttled0
            hwm = [proc_status_kib(b.pid, "VmHWM") or 0 for b in bridges]
            rss = [proc_status_kib(b.pid, "VmRSS") or 0 for b in bridges]
            # A bridge answers between two callbacks: a blocked event loop answers late.
            marks = [
                (await _wait_line(b, "MARK", 1, 60), await _wait_line(b, "MARK", 2, 60))
                for b in bridges
            ]
            shed1 = await values_shed(ports)
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
            for _ in range(50):  # the servers report once a second
                if all(any(x["t"] >= t1 for x in churn_lines(s)) for s in servers):
                    break
                await asyncio.sleep(0.1)
            churn = [churn_window([*churn_lines(s)], t0, t1) for s in servers]
            for bridge in bridges:
                bridge.stop()
            final = [lines(b, "FINAL")[-1:] for b in bridges]
            lags = [lines(b, "LAGS")[-1:] for b in bridges]
            # Closing the subscriber with messages still arriving makes gmqtt and asyncio's SSL
            # transport complain; the measurement is over, so that is noise here.
            logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            if consumer is not None:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
            sub_dropped = getattr(sub, "dropped", 0)
            unverified = (
                sub.unverified_writers()
                if isinstance(sub, LightSubscriber)
                else receiver.unverified
            )
    seconds = t1 - t0
    w = receiver.window(t0, t1)
    delivered, lats = w["delivered"], w["lats"]
    written = _sum_churn(churn)
    # Drained, every tick of the window has been seen: its count is exact. Otherwise ticks the
    # subscriber never saw (a bridge far behind) are lost too: what the servers wrote in the
    # window by their own count.
    expected = w["expected"]
    if not drained and written:
        expected = max(expected, round(written["values_per_s"] * seconds))
    cpu = cpu_percent(cpu0, cpu1, seconds)
    per_bridge = [cpu.get(f"bridge{k}", 0.0) for k in range(1, len(bridges) + 1)]
    cpu["bridge"] = sum(per_bridge)
    cpu["server"] = sum(cpu.get(f"server{k}", 0.0) for k in range(1, len(servers) + 1))

    def total(key: str) -> float:
        """Sum over the bridges of a counter's growth per second of the window."""
        return sum((m1[key] - m0[key]) / (m1["t"] - m0["t"]) for m0, m1 in marks)

    notifications = total("value_changes")
    return {
        "size": size,
        "source": args.source,
        "servers": len(servers),
        "bridges": len(bridges),
        "seconds": seconds,
        "setup_s": setup_s,
        "drain_s": drain_s,
        "drained": drained,
        "nominal_per_s": size * 1000 / interval,
        "offered_per_s": w["offered_per_s"],
        "server": written,
        "server_rates": [c.get("values_per_s", float("nan")) for c in churn],
        "bridge_in_per_s": notifications,
        "responses_per_s": total("publish_responses"),
        "max_response": max(m1["max_response"] for _m0, m1 in marks),
        "repeated_per_s": total("repeated_in_response"),
        "superseded_per_s": total("superseded"),
        "messages_per_s": total("messages"),
        "mbytes_per_s": total("bytes") / 1e6,
        "delivered_per_s": delivered / seconds,
        "ticks": w["ticks"],
        "expected": expected,
        "delivered": delivered,
        "lost": max(expected - delivered, 0),
        "p50_ms": percentile(lats, 0.50) * 1000,
        "p99_ms": percentile(lats, 0.99) * 1000,
        "max_ms": (lats[-1] * 1000) if lats else float("nan"),
        "cpu": cpu,
        "bridge_cpu": per_bridge,
        "bridge_us_per_value": 1e6 * cpu["bridge"] / 100 * seconds / max(delivered, 1),
        "bridge_us_per_notification": 1e6 * cpu["bridge"] / 100 / max(notifications, 1),
        "bridge_hwm_mib": max(hwm) / 1024,
        "bridge_rss_mib": max(rss) / 1024,
        "mqtt_dropped": sum(m1["mqtt_dropped"] for _m0, m1 in marks),
        "mqtt_reconnects": sum(m1["mqtt_reconnects"] for _m0, m1 in marks),
        "spool": sum(m1["spool"] for _m0, m1 in marks),
        "max_spool": max(m1["max_spool"] for _m0, m1 in marks),
        "max_loop_lag_ms": max(m1["max_loop_lag_s"] for _m0, m1 in marks) * 1000,
        "window_loop_lag_ms": max(m1["max_loop_lag_window_s"] for _m0, m1 in marks) * 1000,
        "steps": [s[0] for b in bridges if (s := lines(b, "STEPS")[-1:])],
        "values_shed_per_s": (
            (shed1 - shed0) / seconds if shed0 is not None and shed1 is not None else None
        ),
        "cpu_limit": args.bridge_cpu,
        "throttled_s": throttled,
        "opcua_state": marks[0][1]["opcua_state"],
        "seq_gaps": receiver.seq_gaps,
        "out_of_order": receiver.out_of_order,
        "unverified": unverified,
        "subscriber": "naive" if args.naive else "verify" if args.verify else "light",
        "sub_dropped": sub_dropped,
        "final": [f[0] for f in final if f],
        # the bridge's own (from its LAGS line; the first bridge's) and the subscriber's
        "lags": {**(lags[0][0] if lags[0] else {}), **w["tick_to_subscriber"]},
        "profile": workdir / "bridge1.prof" if args.profile else None,
    }


def _sum_churn(windows: list[dict[str, float]]) -> dict[str, float]:
    """The servers' accounts together: rates and late/skipped ticks summed, busy % the
    busiest server's, the slowest tick of any."""
    if not windows or any(not w for w in windows):
        return {}
    return {
        "values_per_s": sum(w["values_per_s"] for w in windows),
        "busy_pct": max(w["busy_pct"] for w in windows),
        "late_ticks": sum(w["late_ticks"] for w in windows),
        "skipped_ticks": sum(w["skipped_ticks"] for w in windows),
        "max_tick_ms": max(w["max_tick_ms"] for w in windows),
    }


# ------------------------------------------------------------------------ reporting


def print_row(r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    lost_pct = 100 * r["lost"] / max(r["expected"], 1)
    print(
        f"| {r['size']:,} | {r['servers']} | {r['server'].get('values_per_s', float('nan')):,.0f}"
        f" | {r['delivered_per_s']:,.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
        f"{cpu.get('bridge', float('nan')):.0f} | {r['bridge_us_per_notification']:.1f} | "
        f"{r['bridge_hwm_mib']:.0f} | {r['lost']:,} ({lost_pct:.1f} %) | {r['seq_gaps']} |",
        flush=True,
    )


def print_details(r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    s = r["server"]
    rates = ", ".join(f"{x:,.0f}" for x in r["server_rates"])
    print(
        f"#   {r['size']:,} items: window {r['seconds']:.1f} s, {r['ticks']} ticks; bridge set-up "
        f"{r['setup_s']:.1f} s; drain {r['drain_s']:.1f} s"
        f"{'' if r['drained'] else ' (INCOMPLETE: late values count as lost)'}. "
        f"{r['servers']} server(s): nominal {r['nominal_per_s']:,.0f}/s, wrote "
        f"{s.get('values_per_s', float('nan')):,.0f}/s ({rates}), busiest "
        f"{s.get('busy_pct', float('nan')):.0f} % of the time, late ticks "
        f"{s.get('late_ticks', '?')}, skipped {s.get('skipped_ticks', '?')}, slowest tick "
        f"{s.get('max_tick_ms', '?')} ms."
    )
    if s.get("busy_pct", 0.0) >= 95:
        print(
            "#     NOTE: a server was busy writing nearly all the time (behind its schedule): "
            "it answers Publish requests late, in large responses, so the load source shapes "
            "the figures; more servers (--servers), or a quieter machine."
        )
    print(
        f"#     flow per second: servers wrote {s.get('values_per_s', float('nan')):,.0f}, "
        f"notifications reached the bridge {r['bridge_in_per_s']:,.0f}, of which "
        f"{r['superseded_per_s']:,.0f} were replaced by a newer value of the same item before a "
        f"writer tick sent them ({r['repeated_per_s']:,.0f} already within one Publish "
        f"response), subscriber got {r['delivered_per_s']:,.0f} new values; MQTT: "
        f"{r['seq_gaps']} sequence gaps, {r['sub_dropped']} subscriber queue drops. Bridge CPU "
        f"per value delivered: {r['bridge_us_per_value']:.1f} µs, per notification received: "
        f"{r['bridge_us_per_notification']:.1f} µs."
    )
    shed = r["values_shed_per_s"]
    print(
        f"#     bridge: {r['bridge_in_per_s']:,.0f} notifications/s in "
        f"{r['responses_per_s']:.1f} Publish responses/s (largest {r['max_response']:,}), "
        f"{r['messages_per_s']:,.0f} MQTT messages/s, {r['mbytes_per_s']:.1f} MB/s JSON, "
        f"loop lag max {r['max_loop_lag_ms']:.0f} ms (window {r['window_loop_lag_ms']:.0f}), "
        f"MQTT spool {r['spool']} at the end "
        f"(max {r['max_spool']}), spool drops {r['mqtt_dropped']}, MQTT reconnects "
        f"{r['mqtt_reconnects']}; values shed "
        f"{'(no such metric)' if shed is None else f'{shed:,.0f}/s'}; RSS now "
        f"{r['bridge_rss_mib']:.0f} MiB. Source->bridge lag p50/p99 "
        f"{r['lags'].get('arrival_lag_p50_ms', '?')}/{r['lags'].get('arrival_lag_p99_ms', '?')}"
        " ms (first value of each response); arrival->writer tick p50/p99 "
        f"{r['lags'].get('tick_wait_p50_ms', '?')}/{r['lags'].get('tick_wait_p99_ms', '?')} ms "
        "(each value sent); writer tick->subscriber p50/p99 "
        f"{r['lags'].get('tick_to_subscriber_p50_ms', '?')}/"
        f"{r['lags'].get('tick_to_subscriber_p99_ms', '?')} ms (each DataSetMessage)."
    )
    for steps in r["steps"]:  # OPCUA_MQTT_BENCH_STEP_CPU=1 (bench/step_cpu.py)
        print(f"#     task steps' CPU in the window (longest first): {steps}")
    if r["cpu_limit"]:
        print(
            f"#     CPU limit {r['cpu_limit']:g} core (cgroup): throttled {r['throttled_s']:.1f} s "
            f"of the window; at this run's cost the limit carries "
            f"{capacity(r):,.0f} notifications/s."
        )
    ours = sum(v for k, v in cpu.items() if k not in ("machine", "bridge", "server"))
    per_bridge = " + ".join(f"{c:.0f}" for c in r["bridge_cpu"])
    print(
        f"#     CPU %: bridge {cpu.get('bridge', 0):.0f}"
        f"{f' ({per_bridge})' if r['bridges'] > 1 else ''}, servers {cpu.get('server', 0):.0f}, "
        f"mosquitto {cpu.get('mosquitto', 0):.0f}, subscriber ({r['subscriber']}) "
        f"{cpu.get('subscriber', 0):.0f} (sum {ours:.0f}; machine {cpu.get('machine', 0):.0f} of "
        f"{100 * (os.cpu_count() or 1)}, so {cpu.get('machine', 0) - ours:.0f} % other work). "
        f"Subscriber: latency max {r['max_ms']:.0f} ms, sequence gaps {r['seq_gaps']}, out of "
        f"order {r['out_of_order']}, unverified {r['unverified']}."
    )


def capacity(r: dict[str, Any]) -> float:
    """Notifications/s the bridge's CPU (its limit, else one core per bridge) carries at the
    cost per notification of run ``r``."""
    cores = r["cpu_limit"] or r["bridges"]
    return cores * 1e6 / max(r["bridge_us_per_notification"], 1e-9)


def other_work(r: dict[str, Any]) -> float:
    """CPU % of the machine that none of the run's processes used."""
    cpu = r["cpu"]
    ours = sum(v for k, v in cpu.items() if k not in ("machine", "bridge", "server"))
    return cpu.get("machine", 0.0) - ours


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    publishing = args.publishing_interval_ms or args.interval_ms
    limit = (
        f", CPU limit {args.bridge_cpu:g} core per {args.bridge_cpu_period_ms:g} ms"
        if args.bridge_cpu
        else ""
    )
    print(
        f"# bridge end to end: source {args.source} ({SOURCES[args.source]}): {args.servers} "
        f"server(s) (nice {args.server_nice}) --churn N/{args.servers} every "
        f"{args.interval_ms:g} ms -> {args.shards} bridge process(es) (publishing interval "
        f"{publishing:g} ms, {args.fields_per_writer} fields per writer, QoS {args.qos}, queue "
        f"size {args.queue_size or 'not set'}{limit}"
        f") -> Mosquitto TLS -> {'Subscriber' if args.verify else 'light subscriber'}; window "
        f"{args.seconds:g} s after {args.warmup:g} s warm-up"
        f"{'; PROFILED' if args.profile else ''}"
        f"{'; THE NAIVE BRIDGE (bench/naive_bridge.py)' if args.naive else ''}"
        f"{'' if args.naive else '; event loop ' + event_loop.loop_factory(args.loop)[1]}"
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
            "| items | servers | changes/s written (source) | fresh values/s delivered | p50 ms "
            "| p99 ms | bridge CPU % | µs/notification | bridge peak RSS MiB | lost | seq gaps |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print_row(r)
        for r in rows:
            print_details(r)
        for r in rows:
            if r["profile"] is not None and r["profile"].exists():
                print(f"\n# --- {r['size']:,} items ---", end="")
                print_profile(r["profile"])
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for what is measured and how. Exit status: 0 done, "
        "2 --bridge-cpu cannot be applied (no writable cgroup v1 cpu controller), 130 "
        "interrupted.",
    )
    p.add_argument("--sizes", default="1000,10000", help="monitored items, comma-separated")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=100.0,
        help="server change period = bridge publishing interval (default 100)",
    )
    p.add_argument(
        "--publishing-interval-ms",
        type=float,
        default=None,
        help="the bridge's publishing (and sampling) interval if not --interval-ms",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window per size")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    p.add_argument(
        "--drain-limit",
        type=float,
        default=60.0,
        help="at most this long after the window for its values to arrive (default 60 s)",
    )
    p.add_argument(
        "--servers", type=int, default=1, help="churn server processes sharing the items"
    )
    p.add_argument(
        "--source",
        choices=list(SOURCES),
        default="asyncua-direct",
        help="how the churn servers make changes: asyncua-direct (default; the same "
        "notifications at about a quarter of the server CPU, harness/churn_direct.py) or "
        "asyncua (write_attribute_value per change, as before 2026-12-08)",
    )
    p.add_argument(
        "--server-nice",
        type=int,
        default=0,
        metavar="N",
        help="run the churn servers at nice N (e.g. 10: the bridge first, the servers on what "
        "is left, as if they were other machines; default 0)",
    )
    p.add_argument("--fields-per-writer", type=int, default=100)
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument(
        "--queue-size",
        type=int,
        help="monitored item queue size (default: not set, so the configuration's default: 1 "
        "where sampling equals publishing)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="count with the product's Subscriber (decodes and verifies every value; costly)",
    )
    p.add_argument(
        "--bridge-cpu",
        type=float,
        default=None,
        metavar="CORES",
        help="limit the bridge to CORES of CPU (cgroup v1 quota, e.g. 0.3; needs root)",
    )
    p.add_argument(
        "--bridge-cpu-period-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="the quota's period (default 10; the kernel's 100 freezes the bridge up to 70 ms)",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split the configuration with `opcua-mqtt shard CONFIG N`: N bridge processes",
    )
    p.add_argument("--profile", action="store_true", help="cProfile the bridge during the window")
    p.add_argument(
        "--loop",
        choices=event_loop.LOOPS,
        default=event_loop.LOOPS[0],
        help="the event loop of our bridge's process, as `opcua-mqtt run --loop` (default auto)",
    )
    p.add_argument(
        "--naive",
        action="store_true",
        help="measure the naive bridge (naive_bridge.py) instead of ours, the same way",
    )
    return p


def check_cpu_limit(cores: float | None) -> str | None:
    """Why ``--bridge-cpu`` cannot be applied here (one line), or None: tried before anything
    starts, so that a run never goes on without its limit."""
    if not cores:
        return None
    try:
        CpuLimit(cores).close()
    except CgroupError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = check_cpu_limit(args.bridge_cpu)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("opcua_mqtt.subscriber").setLevel(logging.ERROR)  # one line per metadata

    async def measure_all() -> None:
        await run(args)  # it prints as it goes; what it returns is for compare.py

    return run_to_the_end(measure_all())


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Telemetry latency while one commander floods the write-back command topic.

    python bench/bench_write_flood.py [--requests 40000] [--quiet-s 5]

* the asyncua test server (``python -m harness.opcua_server --variables 200``), whose
  simulated Counter changes every 100 ms, in its own process;
* Mosquitto with TLS on a free loopback port (stock settings, see harness/);
* the bridge: ``opcua-mqtt run`` publishing the Counter every 100 ms (``publishing_interval_ms``
  100) and serving write-back with the default rate limits (20/s in bursts of 40 per requester,
  200/s in bursts of 400 in all); its log goes to a file;
* a flooder: this script again in a process of its own (``--flood-to``), an MQTT 5 client that
  publishes ``--requests`` write requests at QoS 0 as fast as it can, all with its own Response
  Topic;
* this process: a subscriber of the bridge's ua-data, and a second commander that sends one
  request during the flood.

Latency of a ua-data message = the time it arrives here minus its DataSetMessage Timestamp (the
bridge's clock, the same machine); the gap = the time between two ua-data messages arriving
(a bridge whose event loop is held up publishes late, which a Timestamp taken late would hide).
Measured for ``--quiet-s`` seconds without commands, then from the flood's start until 11 s after
it was sent (past the bridge's 10 s summary of refusals). The bench fails (exit 1) when the
flood's worst latency or gap exceeds the quiet worst by more than one publishing interval, when
the other commander's request is not answered Good, or when the bridge logged more than a handful
of write-back lines for the flood.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from bench_write_back import spawn_bridge, start_rig
from bridge_load import percentile, run_to_the_end

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

from harness.write_back import (  # noqa: E402
    COMMANDS,
    PUBLISHER,
    serving_requester,
)
from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession, Outgoing, TlsOptions  # noqa: E402

INTERVAL_S = 0.1  # the bridge's publishing interval


class DataLatency:
    """ua-data messages as they arrive: (arrival, latency) pairs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    def __call__(self, _topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        now = time.time()
        message = json.loads(payload)
        for m in message.get("Messages", [message]):
            stamp = m.get("Timestamp")
            if stamp:
                sent = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                self.samples.append((now, now - sent))

    def between(self, start: float, end: float) -> list[float]:
        return sorted(lat for t, lat in self.samples if start <= t < end)

    def gaps(self, start: float, end: float) -> list[float]:
        times = sorted({t for t, _ in self.samples if start <= t < end})
        return sorted(b - a for a, b in itertools.pairwise(times))


async def flood(host: str, port: int, ca: str, count: int) -> None:
    """The flooder process: ``count`` requests at QoS 0, then wait until they are written."""
    session = MqttSession(
        MqttOptions(host=host, port=port, client_id="flooder", tls=TlsOptions(ca=ca))
    )
    await session.start(wait=True)
    props = {"response_topic": f"opcua/json/reply/{PUBLISHER}/flooder"}
    payload = json.dumps({"Targets": [{"Writer": "W", "Field": "Double", "Value": 1.0}]}).encode()
    for i in range(count):
        session.publish(Outgoing(COMMANDS, payload, qos=0, properties=props))
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the transport write
    await session.stop(drain_s=10)


async def measure(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        # The configuration's own write-back limits (20/s, bursts of 40 per requester).
        broker, _server, _nodes, config = start_rig(
            stack, workdir, "Counter", rate_per_s=20, burst=40
        )
        doc = yaml.safe_load(config.read_text())
        doc["defaults"]["publishing_interval_ms"] = INTERVAL_S * 1000
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        bridge = spawn_bridge(config, workdir)
        stack.callback(bridge.stop)
        data = DataLatency()
        async with serving_requester(broker, bridge=bridge) as requester:
            requester.session.subscribe(f"opcua/json/data/{PUBLISHER}/#", data)
            await asyncio.sleep(1)  # the SUBACK, and the data flowing
            quiet_start = time.time()
            await asyncio.sleep(args.quiet_s)
            flood_start = time.time()
            flooder = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--requests",
                str(args.requests),
                "--flood-to",
                f"{broker.host}:{broker.port}",
                str(broker.ca_cert),
            )
            await asyncio.sleep(0.5)  # the flood is under way
            asked = time.perf_counter()
            rid = str(uuid.uuid4())
            request = {
                "RequestId": rid,
                "Targets": [{"Writer": "W", "Field": "Double", "Value": 2.5}],
            }
            answer = await requester.ask(request, rid=rid, timeout=60)
            answered_in = time.perf_counter() - asked
            await flooder.wait()
            sent_in = time.time() - flood_start
            await asyncio.sleep(11)
            flood_end = time.time()
    return {
        "quiet": data.between(quiet_start, flood_start),
        "flood": data.between(flood_start, flood_end),
        "quiet gap": data.gaps(quiet_start, flood_start),
        "flood gap": data.gaps(flood_start, flood_end),
        "sent_in": sent_in,
        "answer": answer,
        "answered_in": answered_in,
    }


async def run(args: argparse.Namespace) -> int:
    print(
        f"# write-back flood: {args.requests:,} requests at QoS 0 from one commander; ua-data "
        f"every {INTERVAL_S * 1000:g} ms; MQTT 5 -> Mosquitto TLS -> `opcua-mqtt run`"
    )
    print(
        f"# {dt.date.today()}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-write-flood-") as tmp:
        r = await measure(Path(tmp), args)
        log = "".join(
            (Path(tmp) / f).read_text(errors="replace") for f in ("bridge.out", "bridge.err")
        )
    lines = [json.loads(x) for x in log.split("\n") if x.startswith("{")]
    warnings = [x for x in lines if x["level"] == "warning" and "write" in x["logger"]]
    print(f"flooder process done in {r['sent_in']:.2f} s")
    print("| phase | ua-data messages | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for phase in ("quiet", "flood", "quiet gap", "flood gap"):
        lat = r[phase]
        worst = lat[-1] if lat else float("nan")
        print(
            f"| {phase} | {len(lat)} | {percentile(lat, 0.5) * 1000:.1f} | "
            f"{percentile(lat, 0.99) * 1000:.1f} | {worst * 1000:.1f} |"
        )
    print(
        f"other commander's request during the flood: {r['answer']['Result'].get('Symbol')} "
        f"in {r['answered_in'] * 1000:.0f} ms"
    )
    print(f"bridge WARNING lines about write-back: {len(warnings)}")
    for w in warnings[:5]:
        print(f"  {w['message'][:160]}")
    problems = []
    if not r["flood"] or not r["quiet"]:
        problems.append("no data measured")
    else:
        for what in ("", " gap"):
            if r[f"flood{what}"][-1] > r[f"quiet{what}"][-1] + INTERVAL_S:
                problems.append(f"data latency{what} during the flood grew by over an interval")
    if r["answer"]["Result"]["Code"] != 0:
        problems.append(f"the other commander was refused: {r['answer']}")
    if len(warnings) > 10:
        problems.append(f"{len(warnings)} warning lines for one flood")
    for p in problems:
        print(f"FAILED {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40_000, help="flood size (40000)")
    parser.add_argument("--quiet-s", type=float, default=5.0, help="seconds without commands (5)")
    parser.add_argument("--flood-to", nargs=2, metavar=("HOST:PORT", "CA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.flood_to:
        host, port = args.flood_to[0].rsplit(":", 1)
        asyncio.run(flood(host, int(port), args.flood_to[1], args.requests))
        return 0
    return run_to_the_end(run(args))


if __name__ == "__main__":
    sys.exit(main())

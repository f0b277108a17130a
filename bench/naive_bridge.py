#!/usr/bin/env python3
"""The naive bridge the benchmarks compare us with: asyncua subscribe + json.dumps + gmqtt
publish per change, the way a first OPC UA -> MQTT script is written.

    python bench/naive_bridge.py CONFIG.yaml

CONFIG is the bridge configuration bench_bridge.py writes for our bridge (bridge_load.py's
``bridge_config``: sources, writer groups of Double fields, the defaults' publishing interval
and queue size, the groups' QoS, the broker). The naive bridge opens one session per source and
subscribes to every field of its groups in one asyncua subscription (sampling = publishing
interval, the same queue size), and for every data change asyncua hands its handler, publishes
``{"name", "value", "source_timestamp"}`` with ``json.dumps`` to ``naive/<name>`` with gmqtt
at the configured QoS over TLS: no batching, no metadata, no signing, no overload handling.
It speaks bench_bridge.py's child protocol on stdout (``READY``, ``STATS``, ``MARK`` on
SIGUSR1, ``FINAL``; the counters it does not have are 0), so that bench_bridge.py measures it
exactly as it measures ours (``--naive``), and :class:`NaiveSubscriber` turns its messages back
into what value_counter.py's Receiver counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # harness

TOPIC = "naive"


async def naive_main(cfg: dict[str, Any]) -> None:
    import gmqtt
    from asyncua import Client

    from harness.plant_manifest import parse_nodeid

    stats = {"value_changes": 0, "messages": 0, "bytes": 0}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lag = {"max": 0.0, "window": 0.0, "marks": 0}

    def report(kind: str) -> None:
        line = {
            "t": time.time(),
            "cpu": time.process_time(),
            "value_changes": stats["value_changes"],
            "messages": stats["messages"],
            "bytes": stats["bytes"],
            "mqtt_published": stats["messages"],
            "mqtt_dropped": 0,
            "mqtt_reconnects": 0,
            "spool": 0,
            "max_spool": 0,
            "opcua_state": "connected",
            "publish_responses": 0,
            "notifications": stats["value_changes"],
            "max_response": 0,
            "repeated_in_response": 0,
            "superseded": 0,
            "arrival_lags": 0,
            "max_loop_lag_s": round(lag["max"], 4),
            "max_loop_lag_window_s": round(lag["window"], 4),  # since the first MARK
            "vm_hwm_kib": _vm_hwm_kib(),
        }
        print(f"{kind} {json.dumps(line)}", flush=True)

    def mark() -> None:
        lag["marks"] += 1
        if lag["marks"] == 1:
            lag["window"] = 0.0
        report("MARK")

    loop.add_signal_handler(signal.SIGUSR1, mark)
    mqtt = gmqtt.Client(f"naive-{os.getpid()}")
    context = ssl.create_default_context(cafile=cfg["mqtt"]["tls"]["ca"])
    await mqtt.connect(cfg["mqtt"]["host"], cfg["mqtt"]["port"], ssl=context)
    qos = cfg["writer_groups"][0].get("qos", 1)

    class Handler:
        def __init__(self, names: dict[Any, str]) -> None:
            self.names = names

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            stats["value_changes"] += 1
            name = self.names[node.nodeid]
            ts = data.monitored_item.Value.SourceTimestamp
            payload = json.dumps(
                {
                    "name": name,
                    "value": val,
                    "source_timestamp": ts.isoformat() if ts is not None else None,
                }
            )
            mqtt.publish(f"{TOPIC}/{name}", payload, qos=qos)
            stats["messages"] += 1
            stats["bytes"] += len(payload)

    interval = cfg["defaults"]["publishing_interval_ms"]
    # Not set: the configuration's default where sampling equals publishing, as for ours.
    queue_size = cfg["defaults"].get("queue_size", 1)
    async with contextlib.AsyncExitStack() as stack:
        for source in cfg["sources"]:
            client = Client(source["endpoint"], timeout=30, watchdog_intervall=30)
            await stack.enter_async_context(client)
            ns = await client.get_namespace_array()
            fields = [
                f
                for g in cfg["writer_groups"]
                if g["source"] == source["name"]
                for w in g["writers"]
                for f in w["fields"]
            ]
            nodes = [client.get_node(parse_nodeid(f["node_id"], ns)) for f in fields]
            names = {node.nodeid: f["name"] for node, f in zip(nodes, fields, strict=True)}
            subscription = await client.create_subscription(interval, Handler(names))
            for start in range(0, len(nodes), 1000):
                await subscription.subscribe_data_change(
                    nodes[start : start + 1000], queuesize=queue_size, sampling_interval=interval
                )
        print("READY", flush=True)
        parent = os.getppid()
        next_stats = loop.time() + 1.0
        while not stop.is_set() and os.getppid() == parent:
            before = loop.time()
            await asyncio.sleep(0.1)
            late = loop.time() - before - 0.1
            lag["max"] = max(lag["max"], late)
            lag["window"] = max(lag["window"], late)
            if loop.time() >= next_stats:
                next_stats = max(next_stats + 1.0, loop.time())
                report("STATS")
    report("FINAL")
    await mqtt.disconnect()


def _vm_hwm_kib() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


class NaiveSubscriber:
    """Subscribes to the naive bridge's topics and yields each message as the DataSet-like
    object value_counter.py's Receiver takes (one field, no sequence number, no signature)."""

    def __init__(self, options: Any) -> None:
        from opcua_mqtt.adapters.mqtt import MqttSession

        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.dropped = 0
        self._session = MqttSession(options)
        self._session.subscribe(f"{TOPIC}/#", self._on_message, qos=1)

    def _on_message(self, _topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        received = datetime.now(UTC)
        msg = json.loads(payload)
        ts = msg["source_timestamp"]
        field = SimpleNamespace(
            value=msg["value"], source_timestamp=datetime.fromisoformat(ts) if ts else None
        )
        self._queue.put_nowait(
            SimpleNamespace(
                publisher_id=None,
                dataset_writer_id=None,
                sequence_number=None,
                message_type="naive",
                verification=SimpleNamespace(ok=True),
                received_at=received,
                fields={msg["name"]: field},
            )
        )

    async def __aenter__(self) -> NaiveSubscriber:
        await self._session.start(wait=True)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self._session.stop(drain_s=0)

    def __aiter__(self) -> NaiveSubscriber:
        return self

    async def __anext__(self) -> Any:
        return await self._queue.get()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: naive_bridge.py CONFIG.yaml (written by bench_bridge.py)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(naive_main(yaml.load(Path(argv[0]).read_text(), Loader=yaml.CSafeLoader)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

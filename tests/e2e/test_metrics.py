"""`opcua-mqtt run --metrics-port`: the metrics and health endpoints of a real bridge process,
scraped while data flows, while the broker or the OPC UA server is away, and after it returns."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.bridge import EXE, BridgeProcess, BridgeProcesses, simulation_config
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from harness.processes import LOOPBACK, free_port
from opcua_mqtt import __version__

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_bridge(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> tuple[int, BridgeProcess]:
    """`opcua-mqtt run --metrics-port PORT` publishing the simulated Counter and Sine, on a
    free port: the port and the process."""
    port = free_port()
    config = simulation_config(tmp_path, small_opcua_server, mosquitto_tls)
    return port, bridges.start(config, "--metrics-port", str(port))


def _request(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def _get(port: int, path: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(_request, port, path)


async def _scrape(port: int) -> Samples:
    status, body = await _get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.2)


async def _readyz(
    port: int,
    expected: int,
    timeout: float,
    where: Callable[[dict[str, Any]], bool] = lambda report: True,
) -> dict[str, Any]:
    """Poll /readyz until it answers ``expected`` with a report ``where`` accepts (e.g. one that
    names a cause found after a first attempt); its JSON report."""
    answer: list[tuple[int, bytes]] = []

    async def answered() -> bool:
        try:
            answer[:] = [await _get(port, "/readyz")]
        except OSError:
            return False  # not listening yet
        return answer[0][0] == expected and where(json.loads(answer[0][1]))

    await _until(answered, timeout, f"/readyz {expected}")
    report: dict[str, Any] = json.loads(answer[0][1])
    return report


async def _scrape_until(
    port: int, check: Callable[[Samples], bool], timeout: float, what: str
) -> Samples:
    found: list[Samples] = []

    async def scraped() -> bool:
        found[:] = [await _scrape(port)]
        return check(found[0])

    await _until(scraped, timeout, what)
    return found[0]


async def test_metrics_move_with_traffic_and_readiness_follows_the_broker(
    mosquitto_tls: MosquittoBroker, metrics_bridge: tuple[int, BridgeProcess]
) -> None:
    port, proc = metrics_bridge
    assert (await _readyz(port, 200, 30))["down"] == []
    assert await _get(port, "/healthz") == (200, b"ok\n")

    first = await _scrape(port)
    assert _value(first, "opcua_mqtt_connected", side="opcua") == 1
    assert _value(first, "opcua_mqtt_connected", side="mqtt") == 1
    assert _value(first, "opcua_mqtt_reconnects_total", side="mqtt") == 0
    info = {"publisher_id": "e2e-bridge", "version": __version__}
    assert _value(first, "opcua_mqtt_bridge_info", **info) == 1

    def moved(s: Samples) -> bool:
        return (
            _value(s, "opcua_mqtt_published_messages_total", writer_group="G")
            >= _value(first, "opcua_mqtt_published_messages_total", writer_group="G") + 3
            and _value(s, "opcua_mqtt_published_bytes_total", writer_group="G")
            > _value(first, "opcua_mqtt_published_bytes_total", writer_group="G")
            and _value(s, "opcua_mqtt_value_changes_total")
            > _value(first, "opcua_mqtt_value_changes_total")
            and _value(s, "opcua_mqtt_sent_messages_total")
            > _value(first, "opcua_mqtt_sent_messages_total")
        )

    flowing = await _scrape_until(port, moved, 20, "counters moving with the traffic")
    observed = _value(flowing, "opcua_mqtt_publish_latency_seconds_count")
    assert observed > 0
    assert _value(flowing, "opcua_mqtt_publish_latency_seconds_bucket", le="+Inf") == observed
    assert _value(flowing, "opcua_mqtt_publish_latency_seconds_sum") > 0

    await mosquitto_tls.astop()
    report = await _readyz(port, 503, 20)
    assert report["down"] == ["mqtt"] and report["mqtt"] == "disconnected", report
    away = await _scrape_until(
        port,
        lambda s: _value(s, "opcua_mqtt_spool_messages") > 0,
        20,
        "data waiting in the spool while the broker is away",
    )
    assert _value(away, "opcua_mqtt_connected", side="mqtt") == 0
    assert _value(away, "opcua_mqtt_connected", side="opcua") == 1
    assert _value(away, "opcua_mqtt_spool_bytes") > 0
    assert await _get(port, "/healthz") == (200, b"ok\n")  # alive, only not ready

    await mosquitto_tls.astart()
    await _readyz(port, 200, 60)
    back = await _scrape_until(
        port,
        lambda s: _value(s, "opcua_mqtt_spool_messages") == 0,
        30,
        "the spool drained after the broker returned",
    )
    assert _value(back, "opcua_mqtt_reconnects_total", side="mqtt") >= 1
    assert _value(back, "opcua_mqtt_reconnects_total", side="opcua") == 0
    assert _value(back, "opcua_mqtt_connected", side="mqtt") == 1
    assert _value(back, "opcua_mqtt_spool_dropped_messages_total") == 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    logs = proc.text()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in logs


async def test_readiness_names_the_opcua_side_when_the_server_goes_away(
    small_opcua_server: OpcUaTestServer, metrics_bridge: tuple[int, BridgeProcess]
) -> None:
    port, _proc = metrics_bridge
    await _readyz(port, 200, 30)
    await asyncio.to_thread(small_opcua_server.stop)
    report = await _readyz(port, 503, 30)
    assert report["down"] == ["opcua"], report
    samples = await _scrape(port)
    assert _value(samples, "opcua_mqtt_connected", side="opcua") == 0
    assert _value(samples, "opcua_mqtt_reconnects_total", side="opcua") >= 1


def test_a_metrics_port_in_use_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "publisher_id": "x",
                "opcua": {
                    "endpoint": "opc.tcp://127.0.0.1:1",
                    "security_policy": "None",
                    "security_mode": "None",
                },
                "writer_groups": [],
            }
        )
    )
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [EXE, "run", "--metrics-port", str(port), str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2, run.stderr
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in run.stderr

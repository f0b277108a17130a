"""The metrics collector, the health probes and the HTTP server that carries them, against a
real (not running) Bridge and real loopback connections; and the metrics configuration."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from opcua_mqtt import __version__
from opcua_mqtt.adapters.http_endpoint import MAX_CONNECTIONS, Response, start_http_server
from opcua_mqtt.adapters.mqtt import MqttOptions, Outgoing
from opcua_mqtt.bridge.field_health import FieldState
from opcua_mqtt.bridge.metrics import bridge_registry, readiness, serve_metrics
from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, WriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.bridge.write_back import WriteBackSettings
from opcua_mqtt.core.config.check import check_config_data, config_from_dict
from opcua_mqtt.core.config.model import FieldConfig, MetricsConfig

LOOPBACK = "127.0.0.1"
STATES = [s.value for s in FieldState]
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _no_opcua() -> AbstractAsyncContextManager[Client]:
    raise AssertionError("these tests never connect")


def _bridge(publisher_id: str = "p1", *, write_back: bool = True) -> Bridge:
    def group(name: str, writer_id: int) -> GroupPlan:
        field = FieldConfig("F", "ns=1;i=1", uuid.uuid4(), "Double", "i=11")
        return GroupPlan(name, (WriterPlan("W", writer_id, (field,)),))

    plan = BridgePlan(publisher_id, (group("G", 1), group("H", 2)))
    return Bridge(
        plan,
        MqttOptions(host=LOOPBACK, port=1),
        _no_opcua,
        signer=None,
        write_back=WriteBackSettings() if write_back else None,
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(bridge: Bridge) -> str:
    return generate_latest(bridge_registry(bridge)).decode()


# ------------------------------------------------------------------------------ the collector


def test_every_series_exists_from_the_start_at_zero() -> None:
    s = _samples(_scrape(_bridge()))
    for group in ("G", "H"):
        assert s[("opcua_mqtt_published_messages_total", frozenset({("writer_group", group)}))] == 0
        assert s[("opcua_mqtt_published_bytes_total", frozenset({("writer_group", group)}))] == 0
    for side in ("opcua", "mqtt"):
        assert s[("opcua_mqtt_reconnects_total", frozenset({("side", side)}))] == 0
        assert s[("opcua_mqtt_connected", frozenset({("side", side)}))] == 0
    for result in ("good", "bad", "refused", "failed", "duplicate"):
        assert s[("opcua_mqtt_write_back_requests_total", frozenset({("result", result)}))] == 0
    assert s[("opcua_mqtt_publish_latency_seconds_count", frozenset())] == 0
    info = frozenset({("publisher_id", "p1"), ("version", __version__)})
    assert s[("opcua_mqtt_bridge_info", info)] == 1


def test_the_collector_reads_the_counters_at_scrape_time() -> None:
    bridge = _bridge()
    before = _scrape(bridge)
    bridge.stats.messages["G"] = 3
    bridge.stats.bytes["G"] = 300
    bridge.stats.value_changes = 7
    bridge.stats.opcua_state = "connected"
    bridge.stats.opcua_reconnects = 2
    bridge.mqtt.publish(Outgoing("t", b"12345", qos=1))  # no broker: it waits in the spool
    assert bridge.write_back is not None
    bridge.write_back.counts["refused"] = 4
    bridge.mqtt.stats.latency.observe(0.03)
    bridge.mqtt.stats.latency.observe(400)
    s = _samples(_scrape(bridge))
    assert _samples(before)[("opcua_mqtt_value_changes_total", frozenset())] == 0
    assert s[("opcua_mqtt_published_messages_total", frozenset({("writer_group", "G")}))] == 3
    assert s[("opcua_mqtt_published_bytes_total", frozenset({("writer_group", "G")}))] == 300
    assert s[("opcua_mqtt_value_changes_total", frozenset())] == 7
    assert s[("opcua_mqtt_connected", frozenset({("side", "opcua")}))] == 1
    assert s[("opcua_mqtt_reconnects_total", frozenset({("side", "opcua")}))] == 2
    assert s[("opcua_mqtt_spool_messages", frozenset())] == 1
    assert s[("opcua_mqtt_spool_bytes", frozenset())] == 5
    assert s[("opcua_mqtt_write_back_requests_total", frozenset({("result", "refused")}))] == 4
    bucket = "opcua_mqtt_publish_latency_seconds_bucket"
    assert s[(bucket, frozenset({("le", "0.025")}))] == 0
    assert s[(bucket, frozenset({("le", "0.05")}))] == 1  # cumulative from here on
    assert s[(bucket, frozenset({("le", "300.0")}))] == 1
    assert s[(bucket, frozenset({("le", "+Inf")}))] == 2
    assert s[("opcua_mqtt_publish_latency_seconds_sum", frozenset())] == pytest.approx(400.03)


def test_each_bridge_has_its_own_registry_and_the_global_one_stays_empty() -> None:
    one, two = _bridge("one"), _bridge("two", write_back=False)
    one.stats.value_changes = 1
    assert 'publisher_id="one"' in _scrape(one) and 'publisher_id="two"' not in _scrape(one)
    assert "opcua_mqtt_value_changes_total 0.0" in _scrape(two)
    assert "opcua_mqtt_" not in generate_latest(REGISTRY).decode()


def test_operations_doc_lists_every_metric_and_nothing_else() -> None:
    families = {f.name for f in text_string_to_metric_families(_scrape(_bridge()))}
    ours = {name for name in families if name.startswith("opcua_mqtt_")}
    table = re.findall(r"^\| `(opcua_mqtt_\w+)`", OPERATIONS.read_text(encoding="utf-8"), re.M)
    assert {re.sub(r"_total$", "", name) for name in table} == ours


def test_readiness_names_what_is_down() -> None:
    bridge = _bridge()
    assert readiness(bridge) == (
        False,
        {
            "ready": False,
            "down": ["opcua", "mqtt", "subscriptions"],
            "opcua": "disconnected",
            "sources": {"default": "disconnected"},
            "mqtt": "disconnected",
            "subscriptions": False,
            "fields": {
                "refused": 0,
                "waiting": 2,
                "bad": 0,
                "good": 0,
                "overdue": 0,
                "refused_fields": [],
                "overdue_fields": [],
            },
        },
    )
    bridge.stats.opcua_state = "connected"
    bridge.ready.set()
    ready, report = readiness(bridge)
    assert not ready and report["down"] == ["mqtt"]


def test_a_refused_field_makes_the_bridge_unready_and_shows_in_the_metric() -> None:
    bridge = _bridge()
    bridge.stats.opcua_state = "connected"
    bridge.mqtt.stats.connected = True
    bridge.ready.set()
    bridge.fields.subscribed()
    assert readiness(bridge)[0]
    bridge.fields.refused((1, 0, "F"), ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
    bridge.fields.value((0, 0, "F"), ua.DataValue(ua.Variant(1.5, ua.VariantType.Double)))
    ready, report = readiness(bridge)
    assert not ready and report["down"] == ["fields"]
    assert report["fields"]["refused_fields"] == ["H/W/F (ns=1;i=1): BadNodeIdUnknown"]
    s = _samples(_scrape(bridge))
    counts = {state: s[("opcua_mqtt_fields", frozenset({("state", state)}))] for state in STATES}
    assert counts == {"refused": 1, "waiting": 0, "bad": 0, "good": 1}


def test_shedding_makes_the_bridge_unready_and_shows_in_the_metrics() -> None:
    bridge = _bridge()
    bridge.stats.opcua_state = "connected"
    bridge.mqtt.stats.connected = True
    bridge.ready.set()
    bridge.fields.subscribed()
    s = _samples(_scrape(bridge))
    assert s[("opcua_mqtt_values_shed_total", frozenset({("source", "default")}))] == 0
    assert s[("opcua_mqtt_overloaded", frozenset())] == 0
    value = ua.DataValue(ua.Variant(1.5, ua.VariantType.Double))
    for gi in (0, 1):
        bridge.fields.value((gi, 0, "F"), value)
    assert readiness(bridge)[0]
    for _ in range(3):  # nothing takes them (the bridge does not run): two are shed
        bridge.intake.put("default", [((0, 0, "F"), value)])
    bridge.intake.check(3)
    ready, report = readiness(bridge)
    assert not ready and report["down"] == ["intake"]
    assert set(report["intake"]) == {"shedding_values_per_s"}
    s = _samples(_scrape(bridge))
    assert s[("opcua_mqtt_values_shed_total", frozenset({("source", "default")}))] == 2
    assert s[("opcua_mqtt_overloaded", frozenset())] == 1
    assert s[("opcua_mqtt_pending_values", frozenset())] == 1


# ---------------------------------------------------------------------------- the HTTP server


@pytest.fixture
async def endpoint() -> AsyncIterator[int]:
    """The port of a bridge's metrics endpoint on a free loopback port."""
    async with serve_metrics(_bridge(), LOOPBACK, 0) as server:
        yield server.sockets[0].getsockname()[1]


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # the server closes after answering
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert int(headers["content-length"]) == len(body) or not body
    return int(status_line.split(" ")[1]), headers, body


async def test_get_and_head_of_metrics(endpoint: int) -> None:
    status, headers, body = await _raw(endpoint, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert headers["connection"] == "close"
    assert b"opcua_mqtt_value_changes_total 0.0" in body
    assert int(headers["content-length"]) == len(body)
    # HEAD: the headers of a GET without its body. Compared on /healthz, whose body is fixed;
    # /metrics changes between two requests (the process_* series move).
    status, headers, head_body = await _raw(endpoint, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status == 200 and head_body == b"" and int(headers["content-length"]) > 0
    status, headers, head_body = await _raw(endpoint, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status == 200 and head_body == b"" and int(headers["content-length"]) == len(b"ok\n")


async def test_openmetrics_when_the_scraper_asks_for_it(endpoint: int) -> None:
    accept = b"Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n"
    status, headers, body = await _raw(endpoint, b"GET /metrics HTTP/1.1\r\n" + accept + b"\r\n")
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"# UNIT opcua_mqtt_publish_latency_seconds seconds" in body


async def test_health_probes(endpoint: int) -> None:
    assert (await _raw(endpoint, b"GET /healthz HTTP/1.1\r\n\r\n"))[::2] == (200, b"ok\n")
    assert (await _raw(endpoint, b"GET /healthz?verbose=1 HTTP/1.0\n\n"))[0] == 200  # bare LF
    status, headers, body = await _raw(endpoint, b"GET /readyz HTTP/1.1\r\n\r\n")
    assert status == 503 and headers["content-type"] == "application/json"
    assert b'"down": ["opcua", "mqtt", "subscriptions"]' in body


async def test_unknown_path_404_and_other_methods_405(endpoint: int) -> None:
    status, _, body = await _raw(endpoint, b"GET /nothing HTTP/1.1\r\n\r\n")
    assert status == 404 and b"/metrics" in body
    status, headers, _ = await _raw(
        endpoint, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 405 and headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "request_head",
    [
        b"garbage\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nX-Name: \xff\r\n\r\n",
        b"\r\n",
        b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X-Many: a\r\n" * 1000 + b"\r\n",
    ],
)
async def test_malformed_requests_get_400(endpoint: int, request_head: bytes) -> None:
    status, _, body = await _raw(endpoint, request_head)
    assert status == 400 and body


async def test_a_client_that_leaves_early_does_not_disturb_the_next(endpoint: int) -> None:
    _, writer = await asyncio.open_connection(LOOPBACK, endpoint)
    writer.write(b"GET /metr")
    writer.close()
    await writer.wait_closed()
    assert (await _raw(endpoint, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200


async def test_a_taken_port_raises_oserror() -> None:
    server = await start_http_server(LOOPBACK, 0, {})
    try:
        with pytest.raises(OSError):
            await start_http_server(LOOPBACK, server.sockets[0].getsockname()[1], {})
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------- configuration


def _config(metrics: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "publisher_id": "p",
        "opcua": {"endpoint": "opc.tcp://127.0.0.1:4840"},
        "writer_groups": [],
    }
    if metrics != "absent":
        doc["metrics"] = metrics
    return doc


def test_metrics_are_off_unless_configured_and_on_loopback_by_default() -> None:
    assert config_from_dict(_config("absent")).metrics is None
    assert config_from_dict(_config(None)).metrics is None
    config = config_from_dict(_config({"port": 9464}))
    assert config.metrics == MetricsConfig(port=9464, host="127.0.0.1")
    assert config.to_json()["metrics"] == {"port": 9464, "host": "127.0.0.1"}
    assert "metrics" not in config_from_dict(_config("absent")).to_json()


@pytest.mark.parametrize(
    ("metrics", "path", "message"),
    [
        ({}, "metrics", "missing required option 'port'"),
        ({"port": 0}, "metrics/port", "expected an integer from 1 to 65535, got 0"),
        ({"port": "9464"}, "metrics/port", "expected an integer, got '9464'"),
        ({"port": 1, "hots": "x"}, "metrics/hots", "unknown option 'hots' (did you mean 'host'?)"),
    ],
)
def test_metrics_errors_say_what_was_expected(metrics: Any, path: str, message: str) -> None:
    result = check_config_data(_config(metrics))
    assert [(i.path, i.message) for i in result.errors] == [(path, message)]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_loopback_hosts_are_quiet(host: str) -> None:
    result = check_config_data(_config({"port": 9464, "host": host}))
    assert not [i for i in result.issues if i.path.startswith("metrics")]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "metrics.plant.local"])
def test_other_hosts_warn_that_the_endpoint_has_no_authentication(host: str) -> None:
    result = check_config_data(_config({"port": 9464, "host": host}))
    assert result.ok
    [warning] = [i for i in result.warnings if i.path == "metrics/host"]
    assert "no authentication" in warning.message


async def test_silent_connections_cannot_exhaust_the_endpoint() -> None:
    """300 connections that never send a request (the slow-loris of the security review) leave
    at most MAX_CONNECTIONS open on the server, and a real scrape is still answered."""
    server = await start_http_server(LOOPBACK, 0, {"/healthz": lambda _r: Response(200, b"ok\n")})
    port = server.sockets[0].getsockname()[1]
    silent = [await asyncio.open_connection(LOOPBACK, port) for _ in range(300)]
    try:
        await asyncio.sleep(0.2)  # let the server accept (and evict) them all
        assert (await _raw(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[::2] == (200, b"ok\n")
        evicted = [await _closed_by_server(reader) for reader, _writer in silent]
        assert len(silent) - sum(evicted) <= MAX_CONNECTIONS < len(silent)
        assert not all(evicted)  # the newest silent ones are still waiting for their head
    finally:
        for _reader, writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.05) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False

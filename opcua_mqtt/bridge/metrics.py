"""Prometheus metrics and health probes of one running bridge, served from its event loop.

The collector reads, at scrape time, the counters the bridge, its MQTT session and write-back
keep anyway: the hot path gains no metric calls, and a scrape sees the state of this moment.
Each bridge has its own CollectorRegistry (never the global one), so two bridges in one
process, or in one test, never mix their numbers.

Publish latency is measured from the moment a value change reaches the bridge (the Publish
response carrying it has been decoded) to the moment the MQTT message holding it is written to
the broker connection. Not from the SourceTimestamp: that is the server's (or the device's)
clock, and an unchanged value in a key frame keeps its old SourceTimestamp, so the figure would
mix clock skew and data age with the bridge's own delay. Not to the PUBACK: that adds the
broker's round trip, which the broker's own metrics show, and does not exist for QoS 0. What is
measured is what the bridge controls: the wait for the publishing interval, the spool while the
broker is away and the in-flight window. Keep-alives, metadata and status carry no value change
and are not observed.

``/healthz`` answers 200 whenever the event loop runs; ``/readyz`` answers 200 only while the MQTT
session and every OPC UA source's session are up (``sources`` names each with its state), the
broker takes what is published, the subscriptions exist and every field delivers (none refused
by the server, none without a value past its grace period: bridge/field_health.py), no event
writer drops events and no value changes are shed (``intake``: bridge/intake.py), else 503
with a JSON body naming what is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from opcua_mqtt import __version__
from opcua_mqtt.adapters.http_endpoint import Request, Response, Route, start_http_server
from opcua_mqtt.adapters.mqtt_delivery import reason_label, reason_name
from opcua_mqtt.adapters.mqtt_stats import LatencyHistogram
from opcua_mqtt.bridge.runtime import Bridge

_log = logging.getLogger(__name__)

#: Write-back results reported even before the first request, so that rate() works at once.
WRITE_BACK_RESULTS = ("good", "bad", "refused", "failed", "duplicate")
#: Refusal reasons reported even before the first refusal: Not authorized (an ACL) and the
#: catch-all Unspecified error.
REFUSAL_REASONS = (0x80, 0x87)


class BridgeCollector:
    """Turns a bridge's counters into metric families whenever the registry is collected."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Metric]:
        bridge = self._bridge
        stats = bridge.stats
        mqtt = bridge.mqtt
        groups = [g.name for g in bridge.plan.groups]
        info = InfoMetricFamily("opcua_mqtt_bridge", "The bridge's PublisherId and version.")
        info.add_metric([], {"publisher_id": bridge.plan.publisher_id, "version": __version__})
        yield info
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_published_messages",
            "ua-data NetworkMessages handed to the MQTT session (sent, or spooled while the "
            "broker is away), per writer group.",
            "writer_group",
            {g: stats.messages.get(g, 0) for g in groups},
        )
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_published_bytes",
            "Payload bytes of those NetworkMessages, per writer group.",
            "writer_group",
            {g: stats.bytes.get(g, 0) for g in groups},
        )
        yield CounterMetricFamily(
            "opcua_mqtt_published_metadata_messages",
            "ua-metadata messages published (one per writer at start, then one per new "
            "ConfigurationVersion).",
            value=stats.metadata_published,
        )
        events = CounterMetricFamily(
            "opcua_mqtt_events",
            "OPC UA events of each event writer: published (handed to the MQTT session) or "
            "dropped (its queue held max_pending events).",
            labels=["writer", "result"],
        )
        for w in bridge.events.writers:
            events.add_metric([w.name, "published"], w.published)
            events.add_metric([w.name, "dropped"], w.dropped)
        yield events
        yield CounterMetricFamily(
            "opcua_mqtt_value_changes",
            "Value changes (monitored item notifications) received from the OPC UA server.",
            value=stats.value_changes,
        )
        intake = bridge.intake
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_values_shed",
            "Value changes shed in overload, per source: replaced by a newer value of the same "
            "field before the bridge could take them (bridge/intake.py).",
            "source",
            {s.name: intake.shed.get(s.name, 0) for s in bridge.sources},
        )
        yield GaugeMetricFamily(
            "opcua_mqtt_overloaded",
            "1 while the bridge sheds value changes (an overload episode), else 0.",
            value=intake.overloaded,
        )
        yield GaugeMetricFamily(
            "opcua_mqtt_pending_values",
            "Value changes received and not yet taken by the bridge (at most one per field).",
            value=len(intake.pending),
        )
        yield CounterMetricFamily(
            "opcua_mqtt_sent_messages",
            "MQTT PUBLISH packets the broker took (QoS 1/2: acknowledged with success; QoS 0: "
            "written to the connection), of every kind (data, metadata, status, write-back "
            "answers, retained state re-sent after a reconnect).",
            value=mqtt.stats.published,
        )
        refused = mqtt.delivery.refused_counts
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_refused_messages",
            "MQTT PUBLISH packets the broker refused (MQTT 5 PUBACK/PUBREC reason code of "
            "0x80 or above), by reason: the messages are lost.",
            "reason",
            {
                reason_label(code): refused.get(code, 0)
                for code in sorted({*REFUSAL_REASONS, *refused})
            },
        )
        yield CounterMetricFamily(
            "opcua_mqtt_sent_bytes",
            "Payload bytes of those packets.",
            value=mqtt.stats.published_bytes,
        )
        yield GaugeMetricFamily(
            "opcua_mqtt_spool_messages",
            "Messages waiting in the store-and-forward spool for the broker.",
            value=mqtt.spool_depth,
        )
        yield GaugeMetricFamily(
            "opcua_mqtt_spool_bytes",
            "Payload bytes waiting in the spool.",
            value=mqtt.spool_bytes,
        )
        yield CounterMetricFamily(
            "opcua_mqtt_spool_dropped_messages",
            "Data messages dropped, oldest first, because the spool was full.",
            value=mqtt.stats.dropped,
        )
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_reconnects",
            "Connections lost, each of which starts a reconnect, per side (opcua, mqtt).",
            "side",
            {"opcua": stats.opcua_reconnects, "mqtt": mqtt.stats.reconnects},
        )
        yield _labelled(
            GaugeMetricFamily,
            "opcua_mqtt_connected",
            "1 while the session of that side (opcua, mqtt) is up, else 0.",
            "side",
            {"opcua": _opcua_up(bridge), "mqtt": mqtt.stats.connected},
        )
        yield _labelled(
            GaugeMetricFamily,
            "opcua_mqtt_source_connected",
            "1 while the session with that OPC UA server (source, as named in the "
            "configuration; `default` for the opcua section) is up, else 0.",
            "source",
            {s.name: s.state == "connected" for s in bridge.sources},
        )
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_source_reconnects",
            "OPC UA sessions lost, per source.",
            "source",
            {s.name: s.reconnects for s in bridge.sources},
        )
        counts = bridge.write_back.counts if bridge.write_back is not None else {}
        yield _labelled(
            CounterMetricFamily,
            "opcua_mqtt_write_back_requests",
            "Write-back requests by result: good (every target written), bad (a target not "
            "written), refused (as a whole: rate, size, schema, deadline), failed (an error, "
            "outcome unknown), duplicate (a repeated RequestId answered from the cache).",
            "result",
            {r: counts.get(r, 0) for r in (*WRITE_BACK_RESULTS, *sorted(counts))},
        )
        yield _latency(mqtt.stats.latency)
        yield _labelled(
            GaugeMetricFamily,
            "opcua_mqtt_fields",
            "Configured fields by state: refused (the server refused the monitored item), "
            "waiting (no value yet), bad (last value Bad), good (last value Good or Uncertain).",
            "state",
            bridge.field_report().counts,
        )


def _labelled(
    family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    metric = family(name, documentation, labels=[label])
    for key, value in values.items():
        metric.add_metric([key], value)
    return metric


def _latency(histogram: LatencyHistogram) -> Metric:
    cumulative = 0
    buckets = []
    for bound, count in zip((*histogram.bounds, "+Inf"), histogram.counts, strict=True):
        cumulative += count
        buckets.append((str(bound), cumulative))
    return HistogramMetricFamily(
        "opcua_mqtt_publish_latency_seconds",
        "Seconds from a value change reaching the bridge to the MQTT message carrying it "
        "being written to the broker connection.",
        buckets=buckets,
        sum_value=histogram.total,
        unit="seconds",
    )


def _opcua_up(bridge: Bridge) -> bool:
    return bridge.stats.opcua_state == "connected"


def _opcua_text(bridge: Bridge) -> str:
    """The OPC UA side in a few words: with one source its state or why it is away; with
    several, the sources that are away, each with why."""
    if len(bridge.sources) == 1:
        return bridge.sources[0].outage.cause or bridge.stats.opcua_state
    away = [
        f"{s.name}: {s.outage.cause or s.state}" for s in bridge.sources if s.state != "connected"
    ]
    return "; ".join(away) or bridge.stats.opcua_state


def _mqtt_state(bridge: Bridge) -> str:
    """The MQTT side in a few words; a connection failing for good says why."""
    mqtt = bridge.mqtt
    if mqtt.delivery.refusals:
        return "refusing publishes"
    if mqtt.stats.connected:
        return "connected"
    return str(mqtt.fatal.error) if mqtt.fatal.error is not None else "disconnected"


def readiness(bridge: Bridge) -> tuple[bool, dict[str, Any]]:
    """Whether the bridge does its job now, and a small report saying what is down."""
    opcua = _opcua_up(bridge)
    connected = bridge.mqtt.stats.connected
    refusals = bridge.mqtt.delivery.refusals
    mqtt = connected and not refusals
    subscribed = bridge.ready.is_set()
    fields = bridge.field_report()
    down = [
        side
        for side, up in (
            ("opcua", opcua),
            ("mqtt", mqtt),
            ("subscriptions", subscribed),
            ("fields", fields.delivering),
            ("events", not bridge.events.dropping),
            ("intake", not bridge.intake.overloaded),
        )
        if not up
    ]
    report = {
        "ready": not down,
        "down": down,
        "opcua": _opcua_text(bridge),
        "sources": {s.name: s.outage.cause or s.state for s in bridge.sources},
        "mqtt": _mqtt_state(bridge),
        "subscriptions": subscribed,
        "fields": fields.as_json(),
    }
    if bridge.events.writers:
        report["events_dropping"] = bridge.events.dropping
    if bridge.intake.overloaded:
        report["intake"] = {"shedding_values_per_s": round(bridge.intake.overload.rate, 1)}
    if refusals:  # what the broker refuses, a few topics of it
        report["mqtt_refused"] = {r.topic: reason_name(r.reason) for r in refusals[:10]}
    return not down, report


def bridge_registry(bridge: Bridge) -> CollectorRegistry:
    """The bridge's metrics plus the standard process ones (CPU, memory, file descriptors)."""
    registry = CollectorRegistry()
    registry.register(BridgeCollector(bridge))
    ProcessCollector(registry=registry)
    return registry


def http_routes(bridge: Bridge) -> dict[str, Route]:
    """``/metrics`` (Prometheus text, or OpenMetrics when asked for), ``/healthz``, ``/readyz``."""
    return {
        "/metrics": functools.partial(_metrics, bridge_registry(bridge)),
        "/healthz": _healthz,
        "/readyz": functools.partial(_readyz, bridge),
    }


def _metrics(registry: CollectorRegistry, request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(200, encoder(registry), content_type)


def _healthz(_request: Request) -> Response:
    return Response(200, b"ok\n")


def _readyz(bridge: Bridge, _request: Request) -> Response:
    ready, report = readiness(bridge)
    body = (json.dumps(report) + "\n").encode()
    return Response(200 if ready else 503, body, "application/json")


@contextlib.asynccontextmanager
async def serve_metrics(bridge: Bridge, host: str, port: int) -> AsyncIterator[asyncio.Server]:
    """Serve the metrics and health endpoints of ``bridge`` while the context is open.
    Raises OSError when the address cannot be bound (e.g. the port is taken)."""
    server = await start_http_server(host, port, http_routes(bridge))
    bound = server.sockets[0].getsockname()
    _log.info("metrics on http://%s:%d/metrics, health on /healthz and /readyz", host, bound[1])
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()

"""Overload degrades, never collapses (issue 14), with a real churn server, a real Mosquitto over
TLS and the bridge in this process. The bridge is driven into overload deterministically: its
intake's consumer is paused (Intake.pause) while the server's values keep arriving, as if the
bridge could not keep up; no timing is asserted, only bounded waits for what must happen."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asyncua import Client, ua
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.mosquitto import MosquittoBroker
from harness.mqtt import adapter_options
from harness.opcua_servers import OpcUaTestServer
from opcua_mqtt.bridge.intake import Value
from opcua_mqtt.bridge.metrics import bridge_registry, readiness
from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, WriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.core.config.model import FieldConfig
from opcua_mqtt.core.field_key import FieldKey
from opcua_mqtt.subscriber import Subscriber
from tests.conftest import _small_server

FIELDS = 40
INTERVAL_MS = 50
LOGGER = "opcua_mqtt.bridge.intake"
PUBLISHER = "intake-overload"


@pytest.fixture
def churn_server(tmp_path: Path, opcua_server_cert_dir: Path) -> Iterator[OpcUaTestServer]:
    """The small asyncua test server plus FIELDS Double variables that change every 50 ms."""
    yield from _small_server(
        tmp_path / "opcua-server", opcua_server_cert_dir, (FIELDS, INTERVAL_MS)
    )


def _plan(server: OpcUaTestServer) -> BridgePlan:
    """One writer of every churn variable, sampled as often as published, queue size 1: one
    value per field and Publish response, so every value the bridge does not take is shed."""
    fields = tuple(
        FieldConfig(
            f"V{i}",
            node_id,
            uuid.uuid4(),
            "Double",
            "i=11",
            sampling_interval_ms=INTERVAL_MS,
            queue_size=1,
        )
        for i, node_id in enumerate(server.manifest["churn"]["nodeids"])
    )
    writer = WriterPlan("Churn", 1, fields)
    return BridgePlan(PUBLISHER, (GroupPlan("G", (writer,), INTERVAL_MS),))


async def _until(what: str, done: Callable[[], bool], timeout: float = 30) -> None:
    """Wait, bounded, until ``done()``; else fail naming ``what``."""
    for _ in range(int(timeout * 20)):
        if done():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened within {timeout} s: {what}")


def _shed_metric(bridge: Bridge) -> float:
    text = generate_latest(bridge_registry(bridge)).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "opcua_mqtt_values_shed_total"
    )


def _status(sub: Subscriber) -> ua.PubSubState | None:
    status = sub.statuses.get(PUBLISHER)
    return status.status if status is not None else None


def _intake_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_an_overloaded_bridge_keeps_the_newest_value_per_field_and_says_so(
    churn_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    bridge = Bridge(
        _plan(churn_server),
        adapter_options(mosquitto_tls, f"bridge-{uuid.uuid4().hex[:6]}"),
        lambda: Client(churn_server.endpoint, timeout=10),
        signer=None,
    )
    arrived: dict[FieldKey, ua.DataValue] = {}  # the newest value of each field to arrive
    put = bridge.intake.put

    def recording(source: str, batch: list[Value]) -> None:
        arrived.update(batch)
        put(source, batch)

    bridge.intake.put = recording  # type: ignore[method-assign]
    stop = asyncio.Event()
    async with Subscriber(adapter_options(mosquitto_tls, "sub-intake")) as sub:
        task = asyncio.create_task(bridge.run(stop))
        try:
            await asyncio.wait_for(bridge.ready.wait(), 30)
            await _until("a ready bridge", lambda: readiness(bridge)[0])
            await _until("Operational", lambda: _status(sub) == ua.PubSubState.Operational)
            assert bridge.intake.shed == {} and not bridge.intake.overloaded  # normal load

            bridge.intake.pause()
            await _until("an overload episode", lambda: bridge.intake.overloaded)
            await _until("ua-status Error", lambda: _status(sub) == ua.PubSubState.Error)
            ready, report = readiness(bridge)
            assert not ready and report["down"] == ["intake"], report
            assert report["intake"]["shedding_values_per_s"] >= 0
            shed = sum(bridge.intake.shed.values())
            assert shed > 0 and _shed_metric(bridge) >= shed
            # nothing but the newest value per field is kept: every arrival was taken, is
            # pending (one per field) or was shed
            pending = len(bridge.intake.pending)
            assert 0 < pending <= FIELDS
            assert shed == bridge.stats.value_changes - bridge.intake.taken - pending
            newest = {key.field: dv.Value.Value for key, dv in arrived.items()}

            bridge.intake.resume()
            await _published(sub, newest)
            await _until("the episode's end", lambda: not bridge.intake.overloaded)
            await _until("ready again", lambda: readiness(bridge)[0])
            await _until("Operational", lambda: _status(sub) == ua.PubSubState.Operational)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    lines = _intake_lines(caplog)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO], lines
    assert "more value changes than the bridge can carry" in lines[0][1]
    assert "no longer shedding" in lines[1][1]


async def _published(sub: Subscriber, newest: dict[str, float]) -> None:
    """Wait for a data message carrying, for every field, the value that was newest when the
    consumer was resumed, or a later one (the churn variables count up)."""

    async def arrives() -> None:
        async for ds in sub:
            values = {name: v.value for name, v in ds.fields.items() if v.value is not None}
            if all(values.get(name, -1.0) >= value for name, value in newest.items()):
                return

    await asyncio.wait_for(arrives(), 30)

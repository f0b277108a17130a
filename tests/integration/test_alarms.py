"""Alarms and Conditions against node-opcua (interop/plant-server.mjs, Objects/Alarms): an alarm
raised on the server arrives as a ua-event whose fields equal what the server holds (read
independently), and ConditionRefresh (Part 9 §5.5.7) replays every retained condition between
RefreshStart and RefreshEnd markers (§5.11.2-3) after a bridge restart and a server restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import NodeOpcuaTestServer, start_node_opcua_server
from opcua_mqtt import devpki
from opcua_mqtt.alarms import AlarmList
from opcua_mqtt.bridge.from_config import event_message_settings
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.core.config.events import EventField, EventWriterConfig
from opcua_mqtt.core.config.model import PublishingDefaults
from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.core.signing import Signer, TrustStore
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber
from tests.conftest import _serve
from tests.integration.test_bridge import Rig, make_rig

PUBLISHER = "bridge-alarms"
NS = "urn:opcua-mqtt:interop:plant"
TANK_ALARM = "Alarms.TankLevelAlarm"
SELECT = (
    "EventId",
    "EventType",
    "SourceName",
    "Time",
    "Message",
    "Severity",
    "ConditionName",
    "ConditionId",
    "ActiveState/Id",
    "AckedState/Id",
    "ConfirmedState/Id",
    "Retain",
)
REFRESH_START = ua.NodeId(ua.ObjectIds.RefreshStartEventType)
REFRESH_END = ua.NodeId(ua.ObjectIds.RefreshEndEventType)


@pytest.fixture(scope="module")
def signing() -> tuple[Signer, TrustStore]:
    now = datetime.now(UTC)
    ca = devpki.make_ca("alarm test CA", now)
    leaf = devpki.issue(ca, "alarm test signer", now, uris=(publisher_uri(PUBLISHER),))
    return Signer(leaf.key, [leaf.cert, ca.cert]), TrustStore.from_pem(ca.cert_pem())


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[NodeOpcuaTestServer]:
    """A node-opcua plant of its own whose tank alarm is active from the start (level 90)."""
    yield from _serve(start_node_opcua_server, tmp_path / "plant", tank_level=90)


@pytest.fixture
def rig(
    plant: NodeOpcuaTestServer, mosquitto_tls: MosquittoBroker, signing: tuple[Signer, TrustStore]
) -> Rig:
    return make_rig(plant, mosquitto_tls, signing)  # type: ignore[arg-type]


def alarm_plan(**options: Any) -> BridgePlan:
    config = EventWriterConfig(
        name="Alarms",
        dataset_writer_id=95,
        fields=tuple(EventField(s) for s in SELECT),
        event_type="i=2915",  # AlarmConditionType
        **options,
    )
    settings = event_message_settings(config, PublishingDefaults())
    return BridgePlan(PUBLISHER, (), event_writers=(EventWriterPlan(config, settings),))


def values(ds: ReceivedDataSet) -> dict[str, Any]:
    return {name: f.value for name, f in ds.fields.items()}


def is_tank(ds: ReceivedDataSet) -> bool:
    condition = ds.fields["ConditionId"].value
    return isinstance(condition, ua.NodeId) and condition.Identifier == TANK_ALARM


async def next_event(sub: Subscriber, wanted: Any = lambda ds: True) -> ReceivedDataSet:
    async def first() -> ReceivedDataSet:
        async for ds in sub:
            if ds.message_type == "ua-event" and wanted(ds):
                return ds
        raise AssertionError("the subscriber stopped")

    return await asyncio.wait_for(first(), 20)


async def refresh_cycle(sub: Subscriber) -> list[ReceivedDataSet]:
    """The events from a RefreshStart marker to its RefreshEnd, both included."""
    events = [await next_event(sub, lambda ds: ds.fields["EventType"].value == REFRESH_START)]
    while events[-1].fields["EventType"].value != REFRESH_END:
        events.append(await next_event(sub))
    return events


async def server_state(endpoint: str, condition: str) -> dict[str, Any]:
    """The condition's fields as the server holds them, read in a session of the test's own;
    None for an optional field the condition does not have (node-opcua's ConfirmedState)."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NS)
        node = client.get_node(ua.NodeId(condition, ns))
        out: dict[str, Any] = {}
        for path in SELECT:
            if path in ("ConditionId", "EventType"):
                continue
            try:
                child = await node.get_child([f"0:{p}" for p in path.split("/")])
            except ua.UaStatusCodeError:
                out[path] = None
                continue
            out[path] = await child.read_value()
        return out


async def test_an_alarm_raised_on_the_server_arrives_with_the_fields_the_server_holds(
    rig: Rig,
) -> None:
    sub_id = f"sub-{uuid.uuid4().hex[:6]}"
    async with Subscriber(rig.mqtt(sub_id), trust=rig.trust) as sub, rig.bridge(alarm_plan()):
        await refresh_cycle(sub)
        async with Client(rig.server.endpoint, timeout=10) as client:
            ns = await client.get_namespace_index(NS)
            await client.get_node(ua.NodeId("Alarms.TankLevel", ns)).write_value(97.0)
        ds = await next_event(
            sub, lambda ds: is_tank(ds) and "HighHigh" in ds.fields["Message"].value.Text
        )
        held = await server_state(rig.server.endpoint, TANK_ALARM)
    assert ds.verification.ok, ds.verification
    got = values(ds)
    for path, value in held.items():
        assert got[path] == value, path
    assert got["ActiveState/Id"] is True and got["AckedState/Id"] is False


async def test_condition_refresh_after_a_bridge_restart_delivers_the_active_condition(
    rig: Rig,
) -> None:
    for run in range(2):
        sub_id = f"sub-{run}-{uuid.uuid4().hex[:6]}"
        async with (
            Subscriber(rig.mqtt(sub_id), trust=rig.trust) as sub,
            rig.bridge(alarm_plan()) as bridge,
        ):
            cycle = await refresh_cycle(sub)
            assert bridge.events.refreshes == 1
        inside = [ds for ds in cycle[1:-1] if is_tank(ds)]
        assert len(inside) == 1, [values(ds) for ds in cycle]
        state = values(inside[0])
        assert state["ActiveState/Id"] is True and state["Retain"] is True
        sequence = [ds.sequence_number for ds in cycle]
        assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
        rebuilt = AlarmList()  # a subscriber that joined now has the whole picture
        for ds in cycle:
            rebuilt.update(ds)
        (tank,) = [a for a in rebuilt.alarms if a.condition_id.Identifier == TANK_ALARM]
        assert (tank.active, tank.acked, tank.event_id) == (True, False, state["EventId"])


async def test_condition_refresh_after_a_server_restart_delivers_the_active_condition(
    rig: Rig,
) -> None:
    plant = rig.server
    bridge = Bridge(
        alarm_plan(),
        rig.mqtt(f"bridge-{uuid.uuid4().hex[:6]}"),
        lambda: Client(plant.endpoint, timeout=5),  # the bridge opens a new session itself
        signer=rig.signer,
    )
    stop = asyncio.Event()
    async with Subscriber(rig.mqtt(f"sub-{uuid.uuid4().hex[:6]}"), trust=rig.trust) as sub:
        task = asyncio.create_task(bridge.run(stop))
        try:
            await refresh_cycle(sub)
            plant.stop()
            again = start_node_opcua_server(plant.pki_dir.parent, port=plant.port, tank_level=90)
            try:
                cycle = await refresh_cycle(sub)
            finally:
                again.stop()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert any(is_tank(ds) and ds.fields["ActiveState/Id"].value is True for ds in cycle)
    assert bridge.events.refreshes >= 2


async def test_condition_refresh2_refreshes_only_the_writers_that_ask(rig: Rig) -> None:
    (alarms,) = alarm_plan().event_writers
    quiet = EventWriterConfig(
        name="Quiet",
        dataset_writer_id=96,
        fields=tuple(EventField(s) for s in ("EventId", "EventType")),
        condition_refresh=False,
    )
    settings = event_message_settings(quiet, PublishingDefaults())
    plan = BridgePlan(PUBLISHER, (), event_writers=(alarms, EventWriterPlan(quiet, settings)))
    sub_id = f"sub-{uuid.uuid4().hex[:6]}"
    async with Subscriber(rig.mqtt(sub_id), trust=rig.trust) as sub, rig.bridge(plan) as bridge:
        cycle = await refresh_cycle(sub)  # ConditionRefresh2 for the Alarms writer's item
        assert bridge.events.refreshes == 1
        async with Client(rig.server.endpoint, timeout=10) as client:
            ns = await client.get_namespace_index(NS)
            await client.get_node(ua.NodeId("Alarms.TankLevel", ns)).write_value(50.0)
        cleared = await next_event(sub, lambda ds: ds.dataset_writer_id == 96)
    assert {ds.dataset_writer_id for ds in cycle} == {95}
    assert cleared.fields["EventType"].value not in (REFRESH_START, REFRESH_END)

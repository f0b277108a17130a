"""The demo plant's jam alarm (opcua_mqtt/demo/alarm.py) through a bridge: it arrives as an
active, unacknowledged condition of OffNormalAlarmType, and an Acknowledge over MQTT with its
EventId acknowledges it (a stale EventId: BadEventIdUnknown). The plant runs in this process on
a loopback port, its conveyor jamming every few seconds instead of every 45."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import pytest
from asyncua import ua

from harness.mosquitto import MosquittoBroker
from harness.mqtt import adapter_options
from harness.write_back import PUBLISHER
from opcua_mqtt.bridge.from_config import event_message_settings
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan
from opcua_mqtt.core.config.events import build_event_writers
from opcua_mqtt.core.config.model import PublishingDefaults
from opcua_mqtt.core.mapping_events import event_writer_entry
from opcua_mqtt.demo.plant import NAMESPACE, Motor, Plant
from opcua_mqtt.processes import LOOPBACK, free_port
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber
from tests.integration.test_alarms import next_event
from tests.integration.test_commands import bridge, requester

CONDITION = f"nsu={NAMESPACE};s=Plant.Line3.Conveyor.Jam"


@pytest.fixture
async def plant() -> AsyncIterator[Plant]:
    p = Plant(LOOPBACK, free_port())
    _motor, heater = p.lines["Line3"]
    p.lines["Line3"] = (Motor("Conveyor", "Packs", 120.0, 0.5, jam_every_s=4, jam_s=2), heater)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def jam(ds: ReceivedDataSet) -> bool:
    condition = ds.fields["ConditionId"].value
    return isinstance(condition, ua.NodeId) and condition.Identifier == "Plant.Line3.Conveyor.Jam"


async def test_the_jam_alarm_arrives_and_is_acknowledged_over_mqtt(
    plant: Plant, mosquitto_tls: MosquittoBroker
) -> None:
    entry = event_writer_entry("demo", "i=2253", "Alarms", (), "Events")
    (config,) = build_event_writers({"event_writers": [entry]}, {"encoding": "compact", "qos": 1})
    settings = event_message_settings(config, PublishingDefaults())
    plan = BridgePlan(PUBLISHER, (), event_writers=(EventWriterPlan(config, settings),))
    options = adapter_options(mosquitto_tls, f"sub-{uuid.uuid4().hex[:6]}")
    allow = ("Plant/*/*/ConveyorJam",)
    async with (
        Subscriber(options) as sub,
        requester(mosquitto_tls) as r,
        bridge(plan, mosquitto_tls, plant.endpoint, allow),
    ):
        raised = await next_event(
            sub, lambda ds: jam(ds) and ds.fields["ActiveState/Id"].value is True
        )
        assert raised.fields["AckedState/Id"].value is False
        assert raised.fields["EventType"].value == ua.NodeId(ua.ObjectIds.OffNormalAlarmType)

        def ack(event_id: bytes) -> dict[str, object]:
            return {
                "Targets": [
                    {
                        "Method": "Acknowledge",
                        "ConditionId": CONDITION,
                        "EventId": base64.b64encode(event_id).decode(),
                        "Comment": "cleared",
                    }
                ]
            }

        stale = await r.ask(ack(b"stale"))
        assert stale["Targets"][0]["Status"]["Symbol"] == "BadEventIdUnknown"
        event_id = raised.fields["EventId"].value
        answer = await r.ask(ack(event_id))
        if answer["Targets"][0]["Status"]["Symbol"] == "BadEventIdUnknown":
            # the jam ended between the event and the ack: acknowledge the newer state
            newer = await next_event(
                sub, lambda ds: jam(ds) and ds.fields["EventId"].value != event_id
            )
            answer = await r.ask(ack(newer.fields["EventId"].value))
        assert answer["Result"]["Code"] == 0, answer
        acked = await next_event(sub, lambda ds: jam(ds) and ds.fields["AckedState/Id"].value)
    assert acked.fields["AckedState/Id"].value is True

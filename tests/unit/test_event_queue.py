"""An event writer's bounded queue (bridge/events.py): a burst beyond max_pending drops the newest
events, counts them (metric) and logs one line when dropping starts and one when the queue has
drained; what was queued goes out as ua-event messages with consecutive SequenceNumbers. A real
(not running) Bridge: no server or broker is involved before the queue."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import pytest
from asyncua import Client, ua
from prometheus_client import generate_latest

from opcua_mqtt.adapters.mqtt import MqttOptions
from opcua_mqtt.bridge.events import event_field_id
from opcua_mqtt.bridge.from_config import event_message_settings
from opcua_mqtt.bridge.metrics import bridge_registry, readiness
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.core.config.events import EventField, EventWriterConfig
from opcua_mqtt.core.config.model import PublishingDefaults
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.writer_state import ConfigurationVersion, FieldSpec


def _no_opcua() -> AbstractAsyncContextManager[Client]:
    raise AssertionError("these tests never connect")


async def test_a_burst_past_max_pending_is_dropped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EventWriterConfig("Alarms", 9, (EventField("Severity"),), max_pending=2)
    plan = BridgePlan(
        "p1",
        (),
        event_writers=(
            EventWriterPlan(config, event_message_settings(config, PublishingDefaults())),
        ),
    )
    bridge = Bridge(plan, MqttOptions(host="127.0.0.1", port=1), _no_opcua, signer=None)
    (writer,) = bridge.events.writers
    writer.version = ConfigurationVersion.initial(datetime.now(UTC))
    writer.fields = [
        DataSetField(
            FieldSpec("Severity", 5, ua.NodeId(5)), "i=2041/Severity", event_field_id("A", "S")
        )
    ]
    caplog.set_level(logging.WARNING, "opcua_mqtt.bridge.events")
    for severity in range(1, 6):
        bridge.events._on_event(0, [ua.Variant(severity, ua.VariantType.UInt16)])
    assert (writer.dropped, len(writer.pending)) == (3, 2)
    ready, report = readiness(bridge)
    assert not ready and "events" in report["down"] and report["events_dropping"] == ["Alarms"]

    def lines() -> list[str]:
        return [r.message for r in caplog.records if r.name == "opcua_mqtt.bridge.events"]

    assert lines() == [
        "event writer Alarms: 2 events waiting (max_pending): dropping new events until the "
        "queue drains"
    ]
    bridge.events._flush()
    assert len(lines()) == 2 and "queue drained; 3 events were dropped" in lines()[-1]
    assert "events" not in readiness(bridge)[1]["down"]
    sent = []
    while (entry := bridge.mqtt.spool.head()) is not None:
        sent.append(json.loads(bridge.mqtt.spool.pop().msg.payload))
        bridge.mqtt.spool.done(entry)
    messages = [m["Messages"][0] for m in sent]
    assert [m["MessageType"] for m in messages] == ["ua-event", "ua-event"]
    assert [m["Payload"]["Severity"]["Value"] for m in messages] == [1, 2]
    assert messages[1]["SequenceNumber"] == messages[0]["SequenceNumber"] + 1
    scraped = generate_latest(bridge_registry(bridge)).decode()
    assert 'opcua_mqtt_events_total{result="dropped",writer="Alarms"} 3.0' in scraped
    assert 'opcua_mqtt_events_total{result="published",writer="Alarms"} 2.0' in scraped


def test_the_connection_message_names_the_event_writers_and_their_topics() -> None:
    from opcua_mqtt.bridge.plan import event_writer_groups
    from opcua_mqtt.core.messages.metadata import ConnectionMessage, encode_connection_message
    from opcua_mqtt.core.schema_validation import validator

    config = EventWriterConfig("Alarms", 9, (EventField("Severity"),), writer_group="Ev")
    settings = event_message_settings(config, PublishingDefaults())
    plan = BridgePlan("p1", (), event_writers=(EventWriterPlan(config, settings),))
    (group,) = event_writer_groups(plan)
    (writer,) = group.DataSetWriters
    assert (group.Name, writer.Name, writer.DataSetWriterId) == ("Ev", "Alarms", 9)
    assert writer.TransportSettings.QueueName == "opcua/json/data/p1/Ev/Alarms"
    assert writer.TransportSettings.MetaDataQueueName == "opcua/json/metadata/p1/Ev/Alarms"
    connection = ua.PubSubConnectionDataType(
        Name="p1",
        Enabled=True,
        PublisherId=ua.Variant("p1", ua.VariantType.String),
        WriterGroups=[group],
    )
    message = encode_connection_message(ConnectionMessage("p1", connection, datetime.now(UTC)))
    assert not list(validator("ua-connection").iter_errors(message))

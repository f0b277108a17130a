"""A broker that comes back without our session (no persistence, or a crash before its last
save) answers CONNACK with Session Present 0, and MQTT discards the unacknowledged publishes of
the old session. gmqtt 0.8.0 then forgot the packets but kept their packet ids in use: with a
full in-flight window (19 against Mosquitto's Receive Maximum of 20) no id was left, and every
later publish failed with "All ids has already used" for as long as the process lived."""

from __future__ import annotations

import asyncio

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing


async def test_publishing_goes_on_after_the_broker_returns_without_our_session(
    mosquitto_tls: MosquittoBroker,
) -> None:
    broker = mosquitto_tls  # no persistence: a restart keeps no session
    pub = MqttSession(adapter_options(broker, "test-lost-session"))
    await pub.start(wait=True)
    try:
        broker.freeze()  # takes what we send and acknowledges nothing: the window fills
        for i in range(100):
            pub.publish(Outgoing("t/lost", str(i).encode(), qos=1))
        await asyncio.sleep(0.5)
        assert pub.spool_depth > 0, "the in-flight window never filled"
        broker.kill()
        await broker.astart()
        await pub.wait_connected(30)
        async with MqttProbe() as probe:
            await probe.connect(broker.host, broker.port, broker.ssl_context())
            await probe.subscribe("t/lost")
            pub.publish(Outgoing("t/lost", b"after", qos=1))
            for _ in range(200):  # what was spooled comes first
                if (await probe.next_message(10)).payload == b"after":
                    break
    finally:
        await pub.stop(drain_s=0)

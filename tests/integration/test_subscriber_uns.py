"""The Subscriber on custom topics (a Unified Namespace, docs/uns.md) through a real Mosquitto:
several filters, metadata matched to data across custom topics by PublisherId, DataSetWriterId
and version, topics a ua-connection announces (Part 14 §6.4.2.5.1 QueueName, §6.4.2.5.5
MetaDataQueueName) checked against it, and subscribed to by discovery."""

from __future__ import annotations

import asyncio

from asyncua import ua

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.metadata import ConnectionMessage, encode_connection_message
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.subscriber import Refusal, Subscriber, TrustState
from tests.integration.test_subscriber_identity import (
    GROUP,
    WRITER,
    WRITER_ID,
    data,
    metadata,
    take,
)

TOPICS = TopicTree()
DATA_TOPIC = "acme/site1/G/W"
META_TOPIC = "acme/site1/G/W/metadata"


def connection(publisher: str) -> bytes:
    """plant1's ua-connection, announcing its writer's custom topics."""
    group = ua.WriterGroupDataType(
        Name=GROUP,
        TransportSettings=ua.BrokerWriterGroupTransportDataType(
            QueueName=TOPICS.data(publisher, GROUP)
        ),
        DataSetWriters=[
            ua.DataSetWriterDataType(
                Name=WRITER,
                DataSetWriterId=WRITER_ID,
                TransportSettings=ua.BrokerDataSetWriterTransportDataType(
                    QueueName=DATA_TOPIC, MetaDataQueueName=META_TOPIC
                ),
            )
        ],
    )
    conn = ua.PubSubConnectionDataType(
        Name=publisher,
        PublisherId=ua.Variant(publisher, ua.VariantType.String),
        WriterGroups=[group],
    )
    return dumps(encode_connection_message(ConnectionMessage(publisher, conn)))


async def _until(check: object, what: str) -> None:
    for _ in range(100):
        if callable(check) and check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen: {what}")


async def test_data_matches_metadata_across_custom_topics_and_forgeries_are_refused(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe
) -> None:
    forger.publish(TOPICS.connection("plant1"), connection("plant1"), retain=True)
    forger.publish(META_TOPIC, metadata("plant1", None), retain=True)
    options = adapter_options(mosquitto_tls, "sub-uns")
    filters = ["acme/site1/#", "elsewhere/#"]
    async with Subscriber(options, topic_filter=filters, metadata_wait_s=0) as sub:
        await _until(lambda: DATA_TOPIC in sub.announced, "the announced topics")
        await _until(lambda: ("plant1", WRITER_ID) in sub.metadata(), "the retained metadata")
        forger.publish(DATA_TOPIC, data("plant1", 1, 20.0))
        [ds] = await take(sub, 1)
        # another publisher's name on plant1's announced topic: refused like on the tree
        forger.publish(DATA_TOPIC, data("evil", 2, 666.0))
        # a topic nobody announced, under the second filter: taken at its word
        forger.publish("elsewhere/line9", data("other", 3, 5.0))
        [other] = await take(sub, 1)
    assert (ds.topic, ds.publisher_id, ds.dataset_writer_name) == (DATA_TOPIC, "plant1", WRITER)
    assert ds.verification.state is TrustState.UNSIGNED  # the metadata of the custom topic
    assert ds.fields["Temperature"].value == 20.0
    assert (other.publisher_id, other.verification.state) == ("other", TrustState.MISSING)
    assert sub.refused == {Refusal.TOPIC: 1}


async def test_discovery_subscribes_to_the_topics_a_connection_announces(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe
) -> None:
    forger.publish(TOPICS.connection("plant1"), connection("plant1"), retain=True)
    forger.publish(META_TOPIC, metadata("plant1", None), retain=True)
    options = adapter_options(mosquitto_tls, "sub-discover")
    async with Subscriber(options, discover=True, metadata_wait_s=5) as sub:
        await _until(lambda: ("plant1", WRITER_ID) in sub.metadata(), "metadata by discovery")
        forger.publish(DATA_TOPIC, data("plant1", 1, 20.0))
        [ds] = await take(sub, 1)
    assert (ds.topic, ds.verification.state) == (DATA_TOPIC, TrustState.UNSIGNED)

    # without discovery the standard tree's filter never sees the custom topics
    async with Subscriber(options, metadata_wait_s=0) as sub:
        await _until(lambda: "plant1" in sub.connections, "the connection")
        forger.publish(DATA_TOPIC, data("plant1", 2, 21.0))
        forger.publish(TOPICS.data("plant1", GROUP, WRITER), data("plant1", 3, 22.0))
        [ds] = await take(sub, 1)
    assert ds.sequence_number == 3 and ("plant1", WRITER_ID) not in sub.metadata()

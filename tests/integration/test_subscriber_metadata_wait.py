"""The subscriber holds data whose metadata has not arrived yet: QoS 0 data can overtake the QoS 1
metadata published before it, so data published ahead of its metadata (by a plain MQTT client,
through a real Mosquitto) must still come out verified, in order, or ``missing`` once the wait
ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from opcua_mqtt import devpki
from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber, TrustState

TOPICS = TopicTree()
PUBLISHER, GROUP, WRITER, WRITER_ID = "plant-1", "Fast", "Boiler", 3
DATA_TOPIC = TOPICS.data(PUBLISHER, GROUP, WRITER)
META_TOPIC = TOPICS.metadata(PUBLISHER, GROUP, WRITER)
NEXT_TIMEOUT = 10.0  # bounds each wait; the grace periods below are far shorter


def data(sequence: int, version: int = 1) -> bytes:
    dsm = {
        "DataSetWriterId": WRITER_ID,
        "SequenceNumber": sequence,
        "MetaDataVersion": {"MajorVersion": version, "MinorVersion": version},
        "MessageType": "ua-keyframe",
        "Payload": {"Temperature": {"UaType": 10, "Value": 20.5 + sequence}},
    }
    return dumps(
        {
            "MessageId": str(uuid.uuid4()),
            "MessageType": "ua-data",
            "PublisherId": PUBLISHER,
            "WriterGroupName": GROUP,
            "Messages": [dsm],
        }
    )


def metadata(version: int = 1) -> dict[str, Any]:
    return {
        "MessageId": str(uuid.uuid4()),
        "MessageType": "ua-metadata",
        "PublisherId": PUBLISHER,
        "DataSetWriterId": WRITER_ID,
        "DataSetWriterName": WRITER,
        "MetaData": {
            "Name": WRITER,
            "Fields": [
                {
                    "Name": "Temperature",
                    "FieldFlags": 0,
                    "BuiltInType": 10,
                    "DataType": "i=10",
                    "ValueRank": -1,
                    "ArrayDimensions": [],
                    "MaxStringLength": 0,
                    "DataSetFieldId": "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b",
                    "Properties": [],
                }
            ],
            "ConfigurationVersion": {"MajorVersion": version, "MinorVersion": version},
        },
    }


@pytest.fixture(scope="module")
def signing() -> tuple[Signer, TrustStore]:
    now = datetime.now(UTC)
    ca = devpki.make_ca("metadata wait test CA", now)
    leaf = devpki.issue(ca, "metadata wait test signer", now, uris=(publisher_uri(PUBLISHER),))
    return Signer(leaf.key, [leaf.cert, ca.cert]), TrustStore.from_pem(ca.cert_pem())


@pytest.fixture
async def publisher(mosquitto_tls: MosquittoBroker) -> AsyncIterator[MqttProbe]:
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        yield probe


async def take(sub: Subscriber, count: int) -> list[ReceivedDataSet]:
    iterator = sub.__aiter__()
    return [await asyncio.wait_for(iterator.__anext__(), NEXT_TIMEOUT) for _ in range(count)]


async def test_data_ahead_of_signed_metadata_is_held_then_verified_in_order(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe, signing: tuple[Signer, TrustStore]
) -> None:
    """Data of a version whose metadata is still on its way waits for it (a long grace period,
    so only the metadata can release it); later data of the writer queues behind it."""
    signer, trust = signing
    options = adapter_options(mosquitto_tls, "sub-wait")
    async with Subscriber(options, trust=trust, metadata_wait_s=60.0) as sub:
        publisher.publish(DATA_TOPIC, data(1), qos=0)
        publisher.publish(DATA_TOPIC, data(2), qos=0)
        signed = sign_message(metadata(), signer, issued_at=datetime.now(UTC))
        publisher.publish(META_TOPIC, dumps(signed), qos=1)
        publisher.publish(DATA_TOPIC, data(3), qos=0)
        received = await take(sub, 3)
    assert [ds.sequence_number for ds in received] == [1, 2, 3]
    assert all(ds.verification.state is TrustState.VERIFIED for ds in received)
    assert received[0].dataset_writer_name == WRITER
    assert received[0].fields["Temperature"].value == 21.5


async def test_data_that_names_its_writer_only_waits_for_that_writer_s_metadata(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe, signing: tuple[Signer, TrustStore]
) -> None:
    """A content mask without DataSetWriterId (issue 15): the DataSet is held by the writer its
    DataSetWriterName (or, with no name either, its topic) gives, and the metadata of that writer,
    which has the id, releases it verified."""
    signer, trust = signing
    named = {"DataSetWriterName": WRITER, "MessageType": "ua-keyframe"}
    bare = {"MessageType": "ua-keyframe"}
    async with Subscriber(adapter_options(mosquitto_tls, "sub-named"), trust=trust) as sub:
        for sequence, header in ((1, named), (2, bare)):
            payload = {"Temperature": {"UaType": 10, "Value": 20.5 + sequence}}
            body = {"MessageType": "ua-data", "MessageId": str(uuid.uuid4())}
            body["Messages"] = [{**header, "Payload": payload}]
            publisher.publish(DATA_TOPIC, dumps(body), qos=0)
        signed = sign_message(metadata(), signer, issued_at=datetime.now(UTC))
        publisher.publish(META_TOPIC, dumps(signed), qos=1)
        received = await take(sub, 2)
    assert [ds.fields["Temperature"].value for ds in received] == [21.5, 22.5]
    assert {(ds.dataset_writer_id, ds.verification.state) for ds in received} == {
        (WRITER_ID, TrustState.VERIFIED)
    }


async def test_data_ahead_of_new_version_waits_for_it_and_older_data_does_not_overtake(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe
) -> None:
    """After a configuration change the first data of the new version can beat its metadata;
    it waits, and data of the old version published after it stays behind it."""
    options = adapter_options(mosquitto_tls, "sub-version")
    async with Subscriber(options, metadata_wait_s=60.0) as sub:
        publisher.publish(META_TOPIC, dumps(metadata(1)), qos=1)
        publisher.publish(DATA_TOPIC, data(1, version=1), qos=1)
        [first] = await take(sub, 1)
        publisher.publish(DATA_TOPIC, data(2, version=2), qos=0)
        publisher.publish(DATA_TOPIC, data(3, version=1), qos=0)
        publisher.publish(META_TOPIC, dumps(metadata(2)), qos=1)
        received = await take(sub, 2)
    assert first.verification.state is TrustState.UNSIGNED
    assert [(ds.sequence_number, ds.metadata_version) for ds in received] == [
        (2, (2, 2)),
        (3, (1, 1)),
    ]
    assert received[0].verification.state is TrustState.UNSIGNED
    assert received[1].verification.state is TrustState.MISSING


async def test_data_whose_metadata_never_comes_is_released_missing(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe
) -> None:
    options = adapter_options(mosquitto_tls, "sub-missing")
    async with Subscriber(options, metadata_wait_s=0.2) as sub:
        publisher.publish(DATA_TOPIC, data(1), qos=0)
        publisher.publish(DATA_TOPIC, data(2), qos=0)
        received = await take(sub, 2)
    assert [ds.sequence_number for ds in received] == [1, 2]
    assert all(ds.verification.state is TrustState.MISSING for ds in received)


async def test_a_full_hold_releases_the_oldest_missing(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe
) -> None:
    """The hold per writer is bounded: the oldest held DataSet gives way, never data."""
    options = adapter_options(mosquitto_tls, "sub-full")
    async with Subscriber(options, metadata_wait_s=60.0, metadata_hold=2) as sub:
        for sequence in (1, 2, 3):
            publisher.publish(DATA_TOPIC, data(sequence), qos=1)
        [oldest] = await take(sub, 1)
        publisher.publish(META_TOPIC, dumps(metadata()), qos=1)
        received = await take(sub, 2)
    assert oldest.sequence_number == 1
    assert oldest.verification.state is TrustState.MISSING
    assert [ds.sequence_number for ds in received] == [2, 3]
    assert all(ds.verification.state is TrustState.UNSIGNED for ds in received)


async def test_no_wait_yields_missing_at_once(
    mosquitto_tls: MosquittoBroker, publisher: MqttProbe
) -> None:
    """``metadata_wait_s=0``: data before its metadata is yielded as ``missing``, as before."""
    options = adapter_options(mosquitto_tls, "sub-nowait")
    async with Subscriber(options, metadata_wait_s=0) as sub:
        publisher.publish(DATA_TOPIC, data(1), qos=1)
        [before] = await take(sub, 1)
        publisher.publish(META_TOPIC, dumps(metadata()), qos=1)
        publisher.publish(DATA_TOPIC, data(2), qos=1)
        [after] = await take(sub, 1)
    assert before.verification.state is TrustState.MISSING
    assert after.verification.state is TrustState.UNSIGNED

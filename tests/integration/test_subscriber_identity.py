"""One publisher cannot pass as another to the Subscriber (issue 17): a plain MQTT client forges
messages through a real Mosquitto, with signers that all chain to the one CA the Subscriber
trusts (harness/pki.py). Each forgery is refused and counted, never yielded, and the
genuine publisher's data stays verified with its own identity."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.pki import Pki, issue_signer
from opcua_mqtt.core.identity import SignerMap
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.subscriber import ReceivedDataSet, Refusal, Subscriber, TrustState

TOPICS = TopicTree()
GROUP, WRITER, WRITER_ID = "G", "W", 1001
NEXT_TIMEOUT = 10.0


def data(publisher: str, sequence: int, value: float) -> bytes:
    return dumps(
        {
            "MessageId": str(uuid.uuid4()),
            "MessageType": "ua-data",
            "PublisherId": publisher,
            "WriterGroupName": GROUP,
            "Messages": [
                {
                    "DataSetWriterId": WRITER_ID,
                    "SequenceNumber": sequence,
                    "MetaDataVersion": {"MajorVersion": 1, "MinorVersion": 1},
                    "MessageType": "ua-keyframe",
                    "Payload": {"Temperature": {"UaType": 11, "Value": value}},
                }
            ],
        }
    )


def metadata(publisher: str, signer: Signer | None) -> bytes:
    message: dict[str, Any] = {
        "MessageId": str(uuid.uuid4()),
        "MessageType": "ua-metadata",
        "PublisherId": publisher,
        "DataSetWriterId": WRITER_ID,
        "WriterGroupName": GROUP,
        "DataSetWriterName": WRITER,
        "MetaData": {
            "Name": WRITER,
            "Fields": [
                {
                    "Name": "Temperature",
                    "FieldFlags": 0,
                    "BuiltInType": 11,
                    "DataType": "i=11",
                    "ValueRank": -1,
                    "DataSetFieldId": str(uuid.uuid4()),
                }
            ],
            "ConfigurationVersion": {"MajorVersion": 1, "MinorVersion": 1},
        },
    }
    if signer is not None:
        message = sign_message(message, signer, issued_at=datetime.now(UTC))
    return dumps(message)


def _signer(directory: Path) -> Signer:
    return Signer.from_pem(
        (directory / "metadata-signer.key").read_bytes(),
        (directory / "metadata-signer.pem").read_bytes(),
    )


@pytest.fixture(scope="module")
def signers(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signer]:
    """Signers from the test CA: bound to plant1, bound to evil, and bound to nothing."""
    base = tmp_path_factory.mktemp("signers")
    return {
        name: _signer(issue_signer(pki, base / name, None if name == "unbound" else name))
        for name in ("plant1", "evil", "unbound")
    }


def trust(pki: Pki) -> TrustStore:
    return TrustStore.from_pem(pki.ca_cert.read_bytes())


async def take(sub: Subscriber, count: int) -> list[ReceivedDataSet]:
    iterator = sub.__aiter__()
    return [await asyncio.wait_for(iterator.__anext__(), NEXT_TIMEOUT) for _ in range(count)]


def publish_metadata(probe: MqttProbe, publisher: str, signer: Signer | None) -> None:
    """plant1's metadata on plant1's own topic (where only plant1 may publish under an ACL)."""
    probe.publish(TOPICS.metadata(publisher, GROUP, WRITER), metadata(publisher, signer), qos=1)


def publish_data(probe: MqttProbe, publisher: str, sequence: int, value: float) -> None:
    probe.publish(TOPICS.data(publisher, GROUP, WRITER), data(publisher, sequence, value), qos=1)


async def test_each_forgery_is_refused_and_the_genuine_stream_stays_verified(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe, pki: Pki, signers: dict[str, Signer]
) -> None:
    options = adapter_options(mosquitto_tls, "sub-identity")
    async with Subscriber(options, trust=trust(pki), metadata_wait_s=0) as sub:
        assert sub.require_signed  # on by default with a trust store
        publish_metadata(forger, "plant1", signers["plant1"])
        publish_data(forger, "plant1", 1, 20.0)
        [genuine] = await take(sub, 1)
        assert genuine.verification.state is TrustState.VERIFIED, genuine.verification.detail
        assert genuine.verification.identity == "plant1"
        signer_subject = genuine.verification.signer

        # 1. data naming plant1 on evil's own topic, 2. metadata naming plant1 on evil's topic
        forger.publish(TOPICS.data("evil", GROUP, WRITER), data("plant1", 2, 666.0), qos=1)
        forger.publish(TOPICS.metadata("evil", GROUP, WRITER), metadata("plant1", None), qos=1)
        # 3. metadata for plant1 signed by evil's signer (same CA, bound to evil)
        publish_metadata(forger, "plant1", signers["evil"])
        # 4. unsigned metadata for plant1 after its signed metadata
        publish_metadata(forger, "plant1", None)
        # 5. signed by a trusted signer bound to nothing, after verified: a downgrade too
        publish_metadata(forger, "plant1", signers["unbound"])
        publish_data(forger, "plant1", 3, 21.0)
        received = await take(sub, 1)

    assert [ds.sequence_number for ds in received] == [3]  # the forged data never came out
    [after] = received
    assert after.verification.state is TrustState.VERIFIED
    assert (after.verification.identity, after.verification.signer) == ("plant1", signer_subject)
    assert after.fields["Temperature"].value == 21.0
    assert sub.refused == {Refusal.TOPIC: 2, Refusal.SIGNER: 1, Refusal.DOWNGRADE: 2}


async def test_another_publishers_signer_is_refused_even_before_any_genuine_metadata(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe, pki: Pki, signers: dict[str, Signer]
) -> None:
    """No metadata for plant1 is known yet: the forged one is still never taken for it, and
    plant1's data shows as ``missing``, not as signed by evil."""
    options = adapter_options(mosquitto_tls, "sub-first")
    async with Subscriber(options, trust=trust(pki), metadata_wait_s=0) as sub:
        publish_metadata(forger, "plant1", signers["evil"])
        publish_data(forger, "plant1", 1, 20.0)
        [ds] = await take(sub, 1)
        publish_metadata(forger, "evil", signers["evil"])
        publish_data(forger, "evil", 1, 5.0)
        [evil] = await take(sub, 1)
    assert ds.verification.state is TrustState.MISSING
    assert sub.refused == {Refusal.SIGNER: 1}
    # evil's own metadata, on its own topic, verifies as evil's
    assert (evil.verification.state, evil.verification.identity) == (TrustState.VERIFIED, "evil")


async def test_a_signer_without_the_binding_is_unverified_unless_the_signer_map_allows_it(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe, pki: Pki, signers: dict[str, Signer]
) -> None:
    """Certificates from before the binding: shown as unverified with how to fix it, not
    refused; an explicit map PublisherId -> signers makes them verify for that publisher."""
    unbound: x509.Certificate = signers["unbound"].certificate
    options = adapter_options(mosquitto_tls, "sub-unbound")
    async with Subscriber(options, trust=trust(pki), metadata_wait_s=0) as sub:
        publish_metadata(forger, "plant1", signers["unbound"])
        publish_data(forger, "plant1", 1, 20.0)
        [ds] = await take(sub, 1)
    assert ds.verification.state is TrustState.UNVERIFIED
    assert ds.verification.detail.startswith("unbound-signer: ")
    assert "opcua-mqtt certs --publisher-id plant1" in ds.verification.detail
    assert not sub.refused

    mapped = SignerMap({"plant1": [unbound]})
    options = adapter_options(mosquitto_tls, "sub-mapped")
    async with Subscriber(options, trust=trust(pki), signers=mapped, metadata_wait_s=0) as sub:
        publish_metadata(forger, "plant1", signers["unbound"])
        publish_data(forger, "plant1", 1, 20.0)
        [ds] = await take(sub, 1)
        # the map names plant1's signers: plant1's SAN-bound signer is not among them
        publish_metadata(forger, "plant1", signers["plant1"])
        publish_data(forger, "plant1", 2, 21.0)
        [after] = await take(sub, 1)
    assert (ds.verification.state, ds.verification.identity) == (TrustState.VERIFIED, "plant1")
    assert after.verification.signer == ds.verification.signer
    assert sub.refused == {Refusal.SIGNER: 1}


async def test_without_require_signed_unsigned_metadata_replaces_signed_metadata(
    mosquitto_tls: MosquittoBroker, forger: MqttProbe, pki: Pki, signers: dict[str, Signer]
) -> None:
    """The policy can be switched off (a publisher that stops signing on purpose): the
    downgrade is then shown, as ``unsigned``, never as verified."""
    options = adapter_options(mosquitto_tls, "sub-lenient")
    async with Subscriber(
        options, trust=trust(pki), require_signed=False, metadata_wait_s=0
    ) as sub:
        publish_metadata(forger, "plant1", signers["plant1"])
        publish_metadata(forger, "plant1", None)
        publish_data(forger, "plant1", 1, 20.0)
        [ds] = await take(sub, 1)
    assert ds.verification.state is TrustState.UNSIGNED
    assert not sub.refused

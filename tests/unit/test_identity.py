"""Who a message may speak for: opcua_mqtt.core.identity (topic binding, signer binding) with
real certificates from the development PKI and real signatures (docs/signing.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua

from opcua_mqtt import devpki
from opcua_mqtt.core.identity import (
    PUBLISHER_URI_PREFIX,
    SignerBinding,
    SignerMap,
    bound_publishers,
    check_signer,
    publisher_uri,
    topic_disagreement,
)
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage
from opcua_mqtt.core.messages.metadata import ConnectionMessage, MetaDataMessage, StatusMessage
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message, verify_message
from opcua_mqtt.core.topics import TopicTree

NOW = datetime.now(UTC)
TOPICS = TopicTree()


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca("identity test CA", NOW)


def _signer_cert(ca: devpki.Issued, *publishers: str, uris: tuple[str, ...] = ()) -> Any:
    return devpki.issue(ca, "signer", NOW, uris=(*map(publisher_uri, publishers), *uris))


# --- SAN binding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("publisher", ["plant1", "opcua-mqtt bridge", "a/b+#%", "Käserei", ""])
def test_publisher_uri_round_trips_through_a_certificate(ca: devpki.Issued, publisher: str) -> None:
    uri = publisher_uri(publisher)
    assert uri.startswith(PUBLISHER_URI_PREFIX)
    assert uri.isascii() and " " not in uri and "/" not in uri.removeprefix(PUBLISHER_URI_PREFIX)
    issued = _signer_cert(ca, publisher, uris=("urn:other:thing", "https://example.com/x"))
    assert bound_publishers(issued.cert) == {publisher}


def test_the_urn_prefix_is_compared_case_insensitively(ca: devpki.Issued) -> None:
    issued = _signer_cert(ca, uris=("URN:OPCUA-MQTT:PUBLISHER:plant1",))
    assert bound_publishers(issued.cert) == {"plant1"}


def test_a_signer_bound_to_the_publisher_is_accepted(ca: devpki.Issued) -> None:
    issued = _signer_cert(ca, "plant1", "plant2")
    assert check_signer(issued.cert, "plant1").binding is SignerBinding.BOUND
    assert check_signer(issued.cert, "plant2").binding is SignerBinding.BOUND


def test_a_signer_bound_to_another_publisher_is_refused(ca: devpki.Issued) -> None:
    issued = _signer_cert(ca, "evil")
    check = check_signer(issued.cert, "plant1")
    assert check.binding is SignerBinding.OTHER
    assert "bound to PublisherId 'evil', not 'plant1'" in check.detail


def test_a_signer_without_the_san_uri_is_unbound_and_the_detail_says_how_to_fix_it(
    ca: devpki.Issued,
) -> None:
    """Certificates issued before the binding existed: not refused, but never verified."""
    issued = devpki.issue(ca, "old signer", NOW)
    check = check_signer(issued.cert, "plant1")
    assert check.binding is SignerBinding.UNBOUND
    assert "opcua-mqtt certs --publisher-id plant1" in check.detail
    assert "urn:opcua-mqtt:publisher:plant1" in check.detail


def test_the_explicit_signer_map_decides_for_the_publishers_it_names(ca: devpki.Issued) -> None:
    old = devpki.issue(ca, "old signer", NOW)  # no SAN URI
    bound = _signer_cert(ca, "plant1")
    signers = SignerMap({"plant1": [old.cert]})
    assert check_signer(old.cert, "plant1", signers).binding is SignerBinding.BOUND
    # a SAN naming plant1 does not get past a map that names plant1's signers
    refused = check_signer(bound.cert, "plant1", signers)
    assert refused.binding is SignerBinding.OTHER
    assert "not among the signers allowed for PublisherId 'plant1'" in refused.detail
    # publishers the map does not name fall back to the SAN binding
    other = _signer_cert(ca, "plant2")
    assert check_signer(other.cert, "plant2", signers).binding is SignerBinding.BOUND
    assert check_signer(old.cert, "plant2", signers).binding is SignerBinding.UNBOUND


def test_devpki_binds_the_metadata_signer_to_the_publisher_id(tmp_path: Any) -> None:
    """What `opcua-mqtt certs --publisher-id` writes verifies, and binds that PublisherId."""
    devpki.write_pki(tmp_path, bridge_name="hall 2/filler")
    signer = Signer.from_pem(
        (tmp_path / "metadata-signer.key").read_bytes(),
        (tmp_path / "metadata-signer.pem").read_bytes(),
    )
    signed = sign_message({"MessageType": "ua-metadata"}, signer, issued_at=NOW)
    trust = TrustStore.from_pem((tmp_path / "ca.pem").read_bytes())
    result = verify_message(signed, trust, at=NOW)
    assert result.ok, result.detail
    assert result.signer_certificate is not None
    assert bound_publishers(result.signer_certificate) == {"hall 2/filler"}


# --- topic binding -------------------------------------------------------------------------------


def _data(publisher: str | None, group: str | None, *dsms: DataSetMessage) -> NetworkMessage:
    return NetworkMessage(
        messages=list(dsms) or [DataSetMessage(1)], publisher_id=publisher, writer_group_name=group
    )


DATA_TOPIC = TOPICS.parse(TOPICS.data("plant1", "G", "W"))
META_TOPIC = TOPICS.parse(TOPICS.metadata("plant1", "G", "W"))
STATUS_TOPIC = TOPICS.parse(TOPICS.status("plant1"))


def _metadata(publisher: str, group: str | None = "G", writer: str | None = "W") -> MetaDataMessage:
    return MetaDataMessage(publisher, 1, ua.DataSetMetaDataType(), group, writer)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (_data("plant1", "G", DataSetMessage(1, "W")), None),
        (_data(None, None, DataSetMessage(1)), None),  # a body that names nothing
        (_data("evil", "G"), "names PublisherId 'evil'"),
        (_data("plant1", "H"), "names WriterGroup 'H'"),
        (_data(None, None, DataSetMessage(1, publisher_id="evil")), "names PublisherId 'evil'"),
        (
            _data("plant1", "G", DataSetMessage(1, "W"), DataSetMessage(2, "X")),
            "names DataSetWriter 'X'",
        ),
        (_metadata("plant1"), "is a metadata message, the topic is for data"),
    ],
)
def test_data_messages_must_agree_with_their_topic(message: Any, problem: str | None) -> None:
    assert topic_disagreement(DATA_TOPIC, message) == problem


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (_metadata("plant1"), None),
        (_metadata("plant1", None, None), None),
        (_metadata("evil"), "names PublisherId 'evil'"),
        (_metadata("plant1", "H"), "names WriterGroup 'H'"),
        (_metadata("plant1", "G", "X"), "names DataSetWriter 'X'"),
    ],
)
def test_metadata_must_agree_with_its_topic(message: Any, problem: str | None) -> None:
    assert topic_disagreement(META_TOPIC, message) == problem


def test_status_and_connection_messages_must_agree_with_their_topic() -> None:
    status = StatusMessage("plant1", ua.PubSubState.Operational)
    assert topic_disagreement(STATUS_TOPIC, status) is None
    forged = StatusMessage("someone-else", ua.PubSubState.Operational)
    assert topic_disagreement(STATUS_TOPIC, forged) == "names PublisherId 'someone-else'"
    connection = ConnectionMessage("plant1", ua.PubSubConnectionDataType())
    assert topic_disagreement(STATUS_TOPIC, connection) == (
        "is a connection message, the topic is for status"
    )

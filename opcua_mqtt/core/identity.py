"""Who a message may speak for: its topic, and for signed metadata, its signer's certificate.

Two bindings close the gap between "a trusted certificate signed this" and "this is plant1's":

- **Topic binding** (:func:`topic_disagreement`): the broker's ACL grants topics, so the
  PublisherId, WriterGroup and DataSetWriter a message names must be those of the topic it came
  on. ``opcua-mqtt status`` and the :class:`~opcua_mqtt.subscriber.Subscriber` both use it.
- **Signer binding** (:func:`check_signer`): a signer certificate names the PublisherIds it may
  sign for in its subjectAltName, as URIs ``urn:opcua-mqtt:publisher:<PublisherId>``
  (:func:`publisher_uri`; ``opcua-mqtt certs --publisher-id`` writes it), or the subscriber
  names the allowed signers per PublisherId (:class:`SignerMap`), which then decides alone.

Without either, any certificate from a trusted CA could sign metadata for any publisher.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote

from cryptography import x509

from opcua_mqtt.core.signing import thumbprint_s256
from opcua_mqtt.core.topics import MessageType, TopicInfo
from opcua_mqtt.core.x509_trust import CERT_ERRORS, subject_name

if TYPE_CHECKING:
    from opcua_mqtt.core.messages.decode import AnyMessage

__all__ = [
    "PUBLISHER_URI_PREFIX",
    "SignerBinding",
    "SignerCheck",
    "SignerMap",
    "bound_publishers",
    "check_signer",
    "publisher_uri",
    "topic_disagreement",
]

#: subjectAltName URI prefix that binds a signer certificate to a PublisherId.
PUBLISHER_URI_PREFIX: Final = "urn:opcua-mqtt:publisher:"


def publisher_uri(publisher_id: str) -> str:
    """The SAN URI binding a certificate to ``publisher_id``; everything but RFC 3986
    unreserved characters is percent-encoded, so any PublisherId makes a valid URI."""
    return PUBLISHER_URI_PREFIX + quote(publisher_id, safe="")


def bound_publishers(certificate: x509.Certificate) -> frozenset[str]:
    """The PublisherIds ``certificate`` names in :func:`publisher_uri` form (the URN prefix
    compared case-insensitively, as URN schemes and namespace ids are)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, *CERT_ERRORS):
        return frozenset()
    prefix = len(PUBLISHER_URI_PREFIX)
    return frozenset(
        unquote(uri[prefix:])
        for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uri[:prefix].lower() == PUBLISHER_URI_PREFIX
    )


class SignerMap:
    """An explicit subscriber-side map PublisherId -> the signer certificates allowed for it.

    For a PublisherId it names, only those certificates (compared by SHA-256 thumbprint) may
    sign, whatever their SAN says; other PublisherIds fall back to the SAN binding. Use it for
    signer certificates without the SAN URI, or to pin exactly one signer per publisher.
    """

    def __init__(self, signers: Mapping[str, Iterable[x509.Certificate]]) -> None:
        self._allowed = {p: frozenset(map(thumbprint_s256, certs)) for p, certs in signers.items()}

    def names(self, publisher_id: str) -> bool:
        return publisher_id in self._allowed

    def allows(self, publisher_id: str, certificate: x509.Certificate) -> bool:
        return thumbprint_s256(certificate) in self._allowed.get(publisher_id, ())


class SignerBinding(enum.Enum):
    BOUND = "bound"  # the signer may sign for this PublisherId
    OTHER = "other"  # the signer is bound to other PublisherIds only: a forgery
    UNBOUND = "unbound"  # the signer names no PublisherId (an older certificate)


@dataclass(frozen=True)
class SignerCheck:
    binding: SignerBinding
    detail: str


def check_signer(
    certificate: x509.Certificate, publisher_id: str, signer_map: SignerMap | None = None
) -> SignerCheck:
    """Whether the (already verified and trusted) signer ``certificate`` may sign for
    ``publisher_id``: by ``signer_map`` if it names the PublisherId, else by its SAN URIs."""
    who = subject_name(certificate)
    if signer_map is not None and signer_map.names(publisher_id):
        if signer_map.allows(publisher_id, certificate):
            return SignerCheck(SignerBinding.BOUND, f"{who} is allowed for {publisher_id!r}")
        return SignerCheck(
            SignerBinding.OTHER,
            f"signer {who} is not among the signers allowed for PublisherId {publisher_id!r}",
        )
    bound = bound_publishers(certificate)
    if publisher_id in bound:
        return SignerCheck(SignerBinding.BOUND, f"{who} is bound to {publisher_id!r}")
    if bound:
        names = ", ".join(repr(p) for p in sorted(bound))
        return SignerCheck(
            SignerBinding.OTHER,
            f"signer {who} is bound to PublisherId {names}, not {publisher_id!r}",
        )
    return SignerCheck(
        SignerBinding.UNBOUND,
        f"signer {who} binds no PublisherId (no SAN URI {publisher_uri(publisher_id)}): "
        f"re-issue it with `opcua-mqtt certs --publisher-id {publisher_id}` (or with that "
        "SAN URI from your PKI), or allow it for this PublisherId in the subscriber's signer map",
    )


def topic_disagreement(info: TopicInfo, message: AnyMessage) -> str | None:
    """What ``message`` says against the topic ``info`` it came on (see
    :meth:`TopicInfo.disagreement`), checking every DataSetMessage of a ua-data message."""
    # Imported here: the message classes bring the OPC UA type model (asyncua, about a third
    # of a second), which `opcua-mqtt certs` needs nothing of (it imports publisher_uri).
    from opcua_mqtt.core.messages.data import NetworkMessage
    from opcua_mqtt.core.messages.metadata import (
        ConnectionMessage,
        MetaDataMessage,
        StatusMessage,
    )

    if isinstance(message, NetworkMessage):
        problem = info.disagreement(
            MessageType.DATA, message.publisher_id, message.writer_group_name
        )
        for m in message.messages:
            problem = problem or info.disagreement(
                MessageType.DATA, m.publisher_id, m.writer_group_name, m.dataset_writer_name
            )
        return problem
    if isinstance(message, MetaDataMessage):
        return info.disagreement(
            MessageType.METADATA,
            message.publisher_id,
            message.writer_group_name,
            message.dataset_writer_name,
        )
    kind = MessageType.STATUS if isinstance(message, StatusMessage) else MessageType.CONNECTION
    assert isinstance(message, StatusMessage | ConnectionMessage)
    return info.disagreement(kind, message.publisher_id)

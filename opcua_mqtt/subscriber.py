"""The subscriber API: decoded, metadata-matched, signature-checked DataSets from an MQTT broker.

    async with Subscriber(MqttOptions(host="broker", port=8883, tls=TlsOptions(ca="ca.pem")),
                          trust=TrustStore.from_pem(open("ca.pem", "rb").read())) as sub:
        async for ds in sub:
            print(ds.dataset_writer_name, ds.verification.state, ds.fields["Temperature"].value)

Data is matched to metadata by PublisherId, DataSetWriterId and MetaDataVersion (Part 14
§7.2.5.5.2); where a content mask leaves members out, by what is there: PublisherId and
WriterGroup from the topic, the DataSetWriterId from the DataSetWriterName (or the topic's
writer level) of metadata already seen. Metadata is never trusted silently: each DataSet
carries the verification result of the metadata that describes it, ``missing`` when none with
that version was seen.

Who a message speaks for is what its topic and, for signed metadata, its signer confirm
(:mod:`opcua_mqtt.core.identity`, docs/signing.md). Refused, counted in :attr:`Subscriber.refused`
and never stored or yielded: a message whose PublisherId, WriterGroup or DataSetWriter differs
from its topic's (or that is on no topic of the tree); signed metadata whose signer is bound to
another PublisherId; and, with ``require_signed``, metadata that does not verify for a publisher
whose metadata did.

QoS 0 data can overtake the QoS 1 metadata published before it, so a DataSet whose metadata has
not been seen is held back for ``metadata_wait_s`` (in order behind any other held DataSet of its
writer) and released as soon as that metadata arrives, or as ``missing`` when the wait ends.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.identity import SignerBinding, SignerMap, check_signer, topic_disagreement
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage
from opcua_mqtt.core.messages.decode import AnyMessage, decode_message
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.metadata import (
    ConnectionMessage,
    MetaDataMessage,
    StatusMessage,
    metadata_field_types,
    status_overdue,
)
from opcua_mqtt.core.signing import SIGNATURE_MEMBER, TrustStore, verify_message
from opcua_mqtt.core.topics import TopicInfo, TopicTree, topic_matches
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import OPC_UA_NAMESPACE, NamespaceTable
from opcua_mqtt.subscriber_topics import TopicMap

_log = logging.getLogger(__name__)

#: Refusals are logged once per reason and topic, for this many (reason, topic) pairs at most.
_MAX_LOGGED_REFUSALS = 1_000


class TrustState(enum.StrEnum):
    VERIFIED = "verified"  # signed by a trusted signer bound to the PublisherId
    UNVERIFIED = "unverified"  # signed, but the check failed (reason in ``detail``)
    UNSIGNED = "unsigned"  # the metadata carries no signature
    NO_TRUST = "no-trust"  # signed, but the subscriber was given nothing to check it against
    MISSING = "missing"  # no metadata with this version has been seen


class Refusal(enum.StrEnum):
    """Why a message was refused (:attr:`Subscriber.refused` counts them)."""

    TOPIC = "topic"  # its names disagree with its topic, or it is on no topic of the tree
    SIGNER = "signer"  # signed metadata whose signer is bound to another PublisherId
    DOWNGRADE = "downgrade"  # metadata that does not verify, for a publisher whose metadata did


@dataclass(frozen=True)
class Verification:
    """``identity`` is the PublisherId the signer is bound to (only when ``verified``)."""

    state: TrustState
    detail: str = ""
    signer: str | None = None
    identity: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is TrustState.VERIFIED


@dataclass(frozen=True)
class FieldValue:
    """One field: ``value`` is the Python value (a list for arrays, nested for matrices)."""

    name: str
    value: Any
    variant_type: ua.VariantType
    status: ua.StatusCode
    source_timestamp: datetime | None
    server_timestamp: datetime | None
    variant: ua.Variant = field(default_factory=ua.Variant, repr=False)


@dataclass(frozen=True)
class ReceivedDataSet:
    """One DataSetMessage as a subscriber wants it: named, typed fields and who vouches for them."""

    topic: str
    publisher_id: str | None
    writer_group: str | None
    dataset_writer_id: int | None
    dataset_writer_name: str | None
    sequence_number: int | None
    message_type: str
    timestamp: datetime | None
    metadata_version: tuple[int, int] | None
    fields: dict[str, FieldValue]
    metadata: ua.DataSetMetaDataType | None
    verification: Verification
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _KnownMetaData:
    message: MetaDataMessage
    verification: Verification
    field_types: dict[str, ua.VariantType]

    @property
    def version(self) -> tuple[int, int]:
        v = self.message.metadata.ConfigurationVersion
        return (int(v.MajorVersion), int(v.MinorVersion)) if v is not None else (0, 0)


@dataclass(frozen=True)
class _Held:
    """A DataSet waiting for its metadata; the parsed message is kept to decode it again with
    the field types and namespaces that metadata brings."""

    topic: str
    raw: Any
    index: int
    message: DataSetMessage
    deadline: float


class Subscriber:
    """Subscribe to the Part 14 topic tree and yield :class:`ReceivedDataSet` objects.

    ``topic_filter`` (one filter or several) defaults to everything under the tree's prefix;
    the tree's metadata and connection topics are always subscribed to as well. Custom topics
    (Part 14 QueueName / MetaDataQueueName, docs/uns.md) that a publisher's ua-connection
    announces are checked against it like standard topics are against their levels; with
    ``discover`` they are subscribed to as they are announced. Data on a custom topic nobody
    announced is taken at its word (the broker's ACL on that topic vouches for it), and matched
    to metadata by PublisherId, DataSetWriterId and version alike. Status and connection
    messages are kept in :attr:`statuses` / :attr:`connections`, keyed by PublisherId;
    :meth:`publisher_state` tells a current status from a stale one.
    ``metadata_wait_s`` is how long a DataSet waits for its metadata (0: not at all), at most
    ``metadata_hold`` per writer; when more arrive, the oldest held is released as ``missing``.

    ``signers`` maps PublisherIds to the signer certificates allowed for them, instead of the
    certificates' SAN binding (:class:`~opcua_mqtt.core.identity.SignerMap`). ``require_signed``
    (default: on when ``trust`` is given) refuses metadata that does not verify for a publisher
    whose metadata verified before, so that it cannot be downgraded to ``unsigned``.
    """

    def __init__(
        self,
        mqtt: MqttOptions,
        *,
        trust: TrustStore | None = None,
        topics: TopicTree | None = None,
        topic_filter: str | Sequence[str] | None = None,
        discover: bool = False,
        queue_size: int = 10_000,
        metadata_wait_s: float = 2.0,
        metadata_hold: int = 1_000,
        signers: SignerMap | None = None,
        require_signed: bool | None = None,
    ) -> None:
        if metadata_wait_s < 0 or metadata_hold < 1:
            raise ValueError("metadata_wait_s must be >= 0 and metadata_hold >= 1")
        if require_signed and trust is None:
            raise ValueError("require_signed needs a trust store to verify signatures with")
        self.topics = topics or TopicTree()
        tree = f"{self.topics.prefix}/{self.topics.encoding}"
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter or ())
        self.topic_filters: tuple[str, ...] = tuple(filters) or (f"{tree}/#",)
        self.discover = discover
        self._topic_map = TopicMap(self.topics)
        self.announced = self._topic_map.announced  # custom topic -> what ua-connection says
        self.trust = trust
        self.signers = signers
        self.require_signed = trust is not None if require_signed is None else require_signed
        self.statuses: dict[str, StatusMessage] = {}
        self.connections: dict[str, ConnectionMessage] = {}
        self.dropped = 0
        self.decode_errors = 0
        self.refused: Counter[Refusal] = Counter()
        self._refusals_logged: set[tuple[Refusal, str]] = set()
        self._verified_publishers: set[str] = set()
        self._metadata: dict[tuple[str | None, int], _KnownMetaData] = {}
        # (PublisherId, WriterGroup, DataSetWriter name) -> DataSetWriterId, from the metadata:
        # how data whose content mask leaves the DataSetWriterId out finds its metadata.
        self._writer_ids: dict[tuple[str, str | None, str], int] = {}
        self._queue: asyncio.Queue[ReceivedDataSet] = asyncio.Queue(maxsize=queue_size)
        self._metadata_wait_s = metadata_wait_s
        self._metadata_hold = metadata_hold
        self._held: dict[_HoldKey, deque[_Held]] = {}
        self._timers: dict[_HoldKey, asyncio.TimerHandle] = {}
        self._codec = JsonCodec()
        self._codecs: dict[str, JsonCodec] = {}
        self._session = MqttSession(mqtt)
        self._subscribed: list[str] = []
        for topic_filter in self.topic_filters:
            self._subscribe(topic_filter)
        # Metadata and connection messages arrive retained on their own topics; subscribe to
        # them even under narrow filters (but not twice: overlapping subscriptions deliver a
        # message once per subscription).
        for extra, probe in (
            (f"{tree}/metadata/#", self.topics.metadata("p", "g", "w")),
            (f"{tree}/connection/+", self.topics.connection("p")),
        ):
            if not self._covered(probe):
                self._subscribe(extra)

    def _subscribe(self, topic_filter: str) -> None:
        self._session.subscribe(topic_filter, self._on_message)
        self._subscribed.append(topic_filter)

    def _covered(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self._subscribed)

    async def __aenter__(self) -> Subscriber:
        await self._session.start(wait=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.stop(drain_s=0)
        for key in list(self._held):
            self._release(key, expire_all=True)

    def __aiter__(self) -> AsyncIterator[ReceivedDataSet]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReceivedDataSet]:
        while True:
            yield await self._queue.get()

    def metadata(self) -> Mapping[tuple[str | None, int], _KnownMetaData]:
        return self._metadata

    def publisher_state(
        self, publisher_id: str, now: datetime | None = None
    ) -> ua.PubSubState | None:
        """The publisher's last reported PubSubState, or None when it is unknown: never
        reported, expired at the broker, or a cyclic status that missed its NextReportTime
        (Part 14 §7.2.4.6.7) - the publisher may have died without its last will."""
        s = self.statuses.get(publisher_id)
        if s is None or status_overdue(s, now or datetime.now(UTC)):
            return None
        return s.status

    # ------------------------------------------------------------------ message handling

    def handle(self, topic: str, payload: bytes) -> list[ReceivedDataSet]:
        """Decode one MQTT message; return the DataSets it carries (none for metadata/status).

        Public so that programs with their own MQTT client can use the matching and checking;
        it returns at once, so data ahead of its metadata comes back ``missing`` (only the
        iterator holds it back for ``metadata_wait_s``). A refused message returns none and
        counts in :attr:`refused`.
        """
        decoded = self._decode(topic, payload)
        if decoded is None:
            return []
        return [self._dataset(topic, m) for m in decoded[1].messages]

    def _decode(self, topic: str, payload: bytes) -> tuple[Any, NetworkMessage] | None:
        """Decode and file away metadata, status and connection messages; return a data
        message with its parsed JSON, None for anything else (or anything refused)."""
        try:
            info = self._topic_map.info(topic)
        except DecodeError as e:
            self._refuse(Refusal.TOPIC, topic, f"not a topic of the tree: {e}")
            return None
        try:
            raw = loads(payload)
            message = self._decode_raw(info, raw)
        except DecodeError as e:
            self.decode_errors += 1
            _log.warning("undecodable message on %s: %s", topic, e)
            return None
        if info is not None and (problem := topic_disagreement(info, message)):
            self._refuse(Refusal.TOPIC, topic, f"message {problem}")
            return None
        if isinstance(message, MetaDataMessage):
            # the names the data of its writer may be matched by (the topic's, if left out)
            if info is not None:
                message.writer_group_name = message.writer_group_name or info.writer_group
                message.dataset_writer_name = message.dataset_writer_name or info.dataset_writer
            self._remember_metadata(topic, message, raw)
            return None
        if isinstance(message, StatusMessage):
            self.statuses[message.publisher_id] = message
            return None
        if isinstance(message, ConnectionMessage):
            self.connections[message.publisher_id] = message
            self._learn_topics(message)
            return None
        assert isinstance(message, NetworkMessage)
        self._identify(info, message)
        return raw, message

    def _learn_topics(self, message: ConnectionMessage) -> None:
        """With ``discover``, subscribe to the custom topics a ua-connection announces that no
        filter covers."""
        for topic in self._topic_map.learn(message):
            if self.discover and not self._covered(topic):
                _log.info("subscribing to %s, announced by %s", topic, message.publisher_id)
                self._subscribe(topic)

    def _decode_raw(self, info: TopicInfo | None, raw: Any) -> AnyMessage:
        """Decode with the namespaces and field types of the publisher the topic names (a
        body may leave its PublisherId out, and one that names another is refused anyway);
        on a custom topic nobody announced, of the publisher the body names."""
        if info is not None:
            publisher = info.publisher_id
            by_topic = self._writer_id(publisher, info.writer_group, info.dataset_writer)
            return decode_message(
                raw,
                codec=self._codecs.get(publisher, self._codec),
                field_types=lambda _named, writer_id: self._field_types(
                    publisher, by_topic if writer_id is None else writer_id
                ),
            )
        named = raw.get("PublisherId") if isinstance(raw, dict) else None
        return decode_message(
            raw,
            codec=self._codecs.get(named, self._codec) if isinstance(named, str) else self._codec,
            field_types=self._field_types,
        )

    def _writer_id(self, publisher: str | None, group: str | None, name: str | None) -> int | None:
        if publisher is None or name is None:
            return None
        return self._writer_ids.get((publisher, group, name))

    def _identify(self, info: TopicInfo | None, message: NetworkMessage) -> None:
        """Fill in what the content mask left out of a data message: PublisherId and
        WriterGroup from its topic (when the topic says), and a missing DataSetWriterId from
        the metadata of the writer its DataSetWriterName (or topic) names. (The topic was
        found consistent with the message by :func:`topic_disagreement`.)"""
        for m in message.messages:
            if info is not None:
                m.publisher_id = m.publisher_id or info.publisher_id
                m.writer_group_name = m.writer_group_name or info.writer_group
                m.dataset_writer_name = m.dataset_writer_name or info.dataset_writer
            if m.dataset_writer_id is None:
                m.dataset_writer_id = self._writer_id(
                    m.publisher_id, m.writer_group_name, m.dataset_writer_name
                )

    def _refuse(self, reason: Refusal, topic: str, detail: str) -> None:
        """Count a refused message; log the first of each reason per topic (bounded, so a
        flood of forgeries on ever new topics cannot grow memory or the log)."""
        self.refused[reason] += 1
        key = (reason, topic)
        if key not in self._refusals_logged and len(self._refusals_logged) < _MAX_LOGGED_REFUSALS:
            self._refusals_logged.add(key)
            _log.warning("refused message on %s (%s): %s", topic, reason.value, detail)

    def _on_message(self, topic: str, payload: bytes, _props: dict[str, Any]) -> None:
        decoded = self._decode(topic, payload)
        if decoded is None:
            return
        raw, message = decoded
        now = asyncio.get_running_loop().time()
        for index, m in enumerate(message.messages):
            key = _hold_key(m)
            if key is None or self._metadata_wait_s == 0:
                self._put(self._dataset(topic, m))
                continue
            held = self._held.get(key)
            if held is None and self._settled(m):
                self._put(self._dataset(topic, m))
                continue
            if held is None:
                held = self._held[key] = deque()
            held.append(_Held(topic, raw, index, m, now + self._metadata_wait_s))
            self._release(key, expire_oldest=len(held) > self._metadata_hold)

    def _put(self, ds: ReceivedDataSet) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(ds)

    def _settled(self, m: DataSetMessage) -> bool:
        """Whether waiting cannot change ``m``'s verification: the metadata of its version was
        seen, or a newer version was (versions are times, so the older one will not come)."""
        writer_id = m.dataset_writer_id
        if writer_id is None:  # named only: its metadata, once seen, gives the id
            writer_id = self._writer_id(m.publisher_id, m.writer_group_name, m.dataset_writer_name)
        known = self._metadata.get((m.publisher_id, writer_id)) if writer_id is not None else None
        if known is None or m.metadata_version is None:
            return known is not None
        v = m.metadata_version
        return (int(v.MajorVersion), int(v.MinorVersion)) <= known.version

    def _release(
        self,
        key: _HoldKey,
        *,
        expire_oldest: bool = False,
        expire_all: bool = False,
    ) -> None:
        """Release held DataSets of one writer from the front, in arrival order: those whose
        metadata has arrived or been superseded and those whose wait is over; then wait for the
        new front."""
        held = self._held[key]
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        while held and (
            expire_all
            or expire_oldest
            or held[0].deadline <= loop.time()
            or self._settled(held[0].message)
        ):
            self._put(self._redecode(held.popleft()))
            expire_oldest = False
        if held:
            expire = functools.partial(self._release, key, expire_oldest=True)
            self._timers[key] = loop.call_at(held[0].deadline, expire)
        else:
            del self._held[key]

    def _redecode(self, h: _Held) -> ReceivedDataSet:
        """The held DataSet decoded with the metadata known now; as first decoded when that
        fails (the metadata that arrived does not describe this data)."""
        info = self._topic_map.info(h.topic)  # parsed before it was held
        try:
            nm = self._decode_raw(info, h.raw)
        except DecodeError as e:
            _log.warning("held message on %s does not decode with its metadata: %s", h.topic, e)
            return self._dataset(h.topic, h.message)
        assert isinstance(nm, NetworkMessage)
        self._identify(info, nm)
        return self._dataset(h.topic, nm.messages[h.index])

    def codec(self, publisher_id: str | None) -> JsonCodec:
        """A codec with the namespace table of ``publisher_id``'s metadata, to write values
        back to JSON with the same namespace URIs the publisher used (values name namespaces
        by URI; the metadata gives their indexes)."""
        return self._codecs.get(publisher_id or "", self._codec)

    def _verify(self, message: MetaDataMessage, raw: Mapping[str, Any]) -> Verification | str:
        """The verification of a metadata message, or why it is refused as a forgery (its
        signer is bound to another PublisherId)."""
        if SIGNATURE_MEMBER not in raw:
            return Verification(TrustState.UNSIGNED, "the metadata carries no signature")
        if self.trust is None:
            return Verification(TrustState.NO_TRUST, "no trusted CA given (--trust)")
        result = verify_message(raw, self.trust, at=datetime.now(UTC))
        if not result.ok or result.signer_certificate is None:
            reason = f"{result.reason.value}: " if result.reason else ""
            return Verification(
                TrustState.UNVERIFIED, reason + result.detail, result.signer_subject
            )
        bound = check_signer(result.signer_certificate, message.publisher_id, self.signers)
        if bound.binding is SignerBinding.OTHER:
            return bound.detail
        if bound.binding is SignerBinding.UNBOUND:
            return Verification(
                TrustState.UNVERIFIED, f"unbound-signer: {bound.detail}", result.signer_subject
            )
        return Verification(
            TrustState.VERIFIED, result.detail, result.signer_subject, message.publisher_id
        )

    def _remember_metadata(
        self, topic: str, message: MetaDataMessage, raw: Mapping[str, Any]
    ) -> None:
        verification = self._verify(message, raw)
        if isinstance(verification, str):
            self._refuse(Refusal.SIGNER, topic, verification)
            return
        if verification.ok:
            self._verified_publishers.add(message.publisher_id)
        elif self.require_signed and message.publisher_id in self._verified_publishers:
            self._refuse(
                Refusal.DOWNGRADE,
                topic,
                f"{verification.state.value} metadata for a publisher whose metadata verified "
                f"before ({verification.detail})",
            )
            return
        key = (message.publisher_id, message.dataset_writer_id)
        waiting: list[_HoldKey] = [key]
        if message.dataset_writer_name is not None:
            name = (message.publisher_id, message.writer_group_name, message.dataset_writer_name)
            self._writer_ids[name] = message.dataset_writer_id
            waiting.append((name[0], name[1:]))
        namespaces = [OPC_UA_NAMESPACE, *(message.metadata.Namespaces or [])]
        self._codecs[message.publisher_id] = JsonCodec(namespaces=NamespaceTable(namespaces))
        self._metadata[key] = _KnownMetaData(
            message, verification, metadata_field_types(message.metadata)
        )
        for held in waiting:
            if held in self._held:
                self._release(held)
        log = _log.info if verification.ok else _log.warning
        log(
            "metadata %s/%s v%d.%d: %s %s",
            message.publisher_id,
            message.dataset_writer_name or message.dataset_writer_id,
            *self._metadata[key].version,
            verification.state.value,
            verification.detail,
        )

    def _field_types(
        self, publisher: str | None, writer_id: int | None
    ) -> Mapping[str, ua.VariantType] | None:
        if writer_id is None:
            return None
        known = self._metadata.get((publisher, writer_id))
        return known.field_types if known else None

    def _dataset(self, topic: str, m: DataSetMessage) -> ReceivedDataSet:
        version = None
        if m.metadata_version is not None:
            version = (int(m.metadata_version.MajorVersion), int(m.metadata_version.MinorVersion))
        known = None
        if m.dataset_writer_id is not None:
            known = self._metadata.get((m.publisher_id, m.dataset_writer_id))
        if known is None:
            verification = Verification(TrustState.MISSING, "no metadata seen for this writer")
        elif version is not None and version != known.version:
            verification = Verification(
                TrustState.MISSING,
                f"data has MetaDataVersion {version[0]}.{version[1]}, "
                f"latest metadata is {known.version[0]}.{known.version[1]}",
            )
        else:
            verification = known.verification
        fields = {
            name: FieldValue(
                name=name,
                value=dv.Value.Value if dv.Value is not None else None,
                variant_type=dv.Value.VariantType if dv.Value is not None else ua.VariantType.Null,
                status=dv.StatusCode or ua.StatusCode(0),
                source_timestamp=dv.SourceTimestamp,
                server_timestamp=dv.ServerTimestamp,
                variant=dv.Value if dv.Value is not None else ua.Variant(),
            )
            for name, dv in (m.payload or {}).items()
        }
        return ReceivedDataSet(
            topic=topic,
            publisher_id=m.publisher_id,
            writer_group=m.writer_group_name,
            dataset_writer_id=m.dataset_writer_id,
            dataset_writer_name=m.dataset_writer_name
            or (known.message.dataset_writer_name if known else None),
            sequence_number=m.sequence_number,
            message_type=m.message_type.value,
            timestamp=m.timestamp,
            metadata_version=version,
            fields=fields,
            metadata=known.message.metadata if known else None,
            verification=verification,
        )


#: Who a held DataSet waits for: (PublisherId, DataSetWriterId), or (PublisherId, (WriterGroup,
#: DataSetWriterName)) for a DataSet that names its writer only (its content mask left the id out).
_HoldKey = tuple[str | None, int | tuple[str | None, str]]


def _hold_key(m: DataSetMessage) -> _HoldKey | None:
    if m.dataset_writer_id is not None:
        return (m.publisher_id, m.dataset_writer_id)
    if m.dataset_writer_name is not None:
        return (m.publisher_id, (m.writer_group_name, m.dataset_writer_name))
    return None

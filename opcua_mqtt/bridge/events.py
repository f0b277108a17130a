"""Event writers: each OPC UA event becomes one ua-event DataSetMessage (Part 14 §7.2.5.4).

Unlike values, events are never coalesced: each one is sent, with the writer's next
SequenceNumber, its fields as Variants in select order (Part 14 §7.2.4.5.7 says so for UADP; the
JSON mapping carries them as the writer's field encoding writes Variants). The ua-metadata of an
event writer describes those fields, signed like a data writer's, before its first event and
again when the server's model gives the fields other types (a new MajorVersion).

The asyncua publish loop only appends each event to the writer's bounded queue; a task encodes
and hands them to the MQTT session in chunks, so a burst neither stalls the OPC UA side nor the
data writers' ticks. A burst larger than ``max_pending`` drops the newest events, counts them and
logs one line per episode.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.adapters.opcua.events import EventSource, ResolvedWriter
from opcua_mqtt.adapters.opcua.session import OpcUaSession
from opcua_mqtt.bridge.continuity import checkpoint_key, checkpoint_value, fingerprint, resume
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan
from opcua_mqtt.core.config.model import FIELD_ID_NAMESPACE
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage, encode_network_message
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.metadata import MetaDataMessage, encode_metadata_message
from opcua_mqtt.core.messages.settings import DataSetMessageType
from opcua_mqtt.core.metadata import DataSetField, build_metadata
from opcua_mqtt.core.signing import Signer, sign_message
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.node_ids import NamespaceTable
from opcua_mqtt.core.writer_state import UINT32_MAX, ConfigurationVersion, FieldSpec

_log = logging.getLogger(__name__)

_CHUNK = 256  # events encoded before the loop runs others


def event_field_id(writer: str, path: str) -> uuid.UUID:
    """A field's DataSetFieldId: stable for the same writer name and select path."""
    return uuid.uuid5(FIELD_ID_NAMESPACE, f"event\n{writer}\n{path}")


@dataclass
class EventWriterState:
    """One event writer while the bridge runs."""

    plan: EventWriterPlan
    fields: list[DataSetField] = field(default_factory=list)
    version: ConfigurationVersion | None = None
    next_sequence: int = 0
    fingerprint: str = ""
    pending: collections.deque[tuple[list[ua.Variant], float]] = field(
        default_factory=collections.deque
    )
    published: int = 0
    dropped: int = 0
    dropping_since: int | None = None  # ``dropped`` when the current episode began

    @property
    def name(self) -> str:
        return self.plan.config.name


class EventWriters:
    """The event writers of one bridge: started on each OPC UA session, stopped with it."""

    def __init__(
        self,
        plan: BridgePlan,
        mqtt: MqttSession,
        signer: Signer | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._plan = plan
        self._mqtt = mqtt
        self._signer = signer
        self._clock = clock
        self.writers = [EventWriterState(p) for p in plan.event_writers]
        self._source: EventSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._namespaces: list[str] = []
        self._codecs: dict[FieldEncoding, JsonCodec] = {}
        self._refreshed = 0  # by the sources of earlier sessions

    @property
    def dropping(self) -> list[str]:
        """The writers dropping events now (their queue is full): data is being lost."""
        return [w.name for w in self.writers if w.dropping_since is not None]

    @property
    def refreshes(self) -> int:
        """ConditionRefresh calls the server accepted, over every session so far."""
        return self._refreshed + (self._source.refreshes if self._source is not None else 0)

    async def start(self, session: OpcUaSession) -> None:
        """Resolve every writer's filter in the server's model (EventFilterError names what is
        missing), publish its metadata, subscribe, and refresh the conditions."""
        if not self.writers:
            return
        source = await session.event_source(self._on_event)
        resolved = [await source.resolve(w.plan.config) for w in self.writers]
        types = await session.builtin_types({f.data_type for r in resolved for f in r.fields})
        self._namespaces = session.namespaces
        self._codecs.clear()  # a restarted server may have another namespace table
        for w, r in zip(self.writers, resolved, strict=True):
            self._describe(w, r, types)
            self._publish_metadata(w)
        self._task = asyncio.create_task(self._drain(), name="event-writers")
        self._source = source
        try:
            await source.monitor(
                [
                    (r, w.plan.config.queue_size)
                    for w, r in zip(self.writers, resolved, strict=True)
                ],
                refresh=[i for i, w in enumerate(self.writers) if w.plan.config.condition_refresh],
            )
        except BaseException:
            await self.stop()
            raise
        _log.info(
            "event writers running: %s",
            ", ".join(f"{w.name} ({len(w.fields)} fields)" for w in self.writers),
        )

    async def stop(self) -> None:
        """Publish what is queued, then delete the subscription."""
        source, self._source = self._source, None
        if source is not None:
            self._refreshed += source.refreshes
            await source.close()
        task, self._task = self._task, None
        if task is not None:
            self._flush()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _describe(
        self, w: EventWriterState, r: ResolvedWriter, types: dict[ua.NodeId, int]
    ) -> None:
        """The writer's fields as the server types them; a new version when they changed."""
        now = self._clock()
        w.fields = [
            DataSetField(
                FieldSpec(f.name, types.get(f.data_type, 0), f.data_type, f.value_rank),
                f"{w.plan.config.event_type}/{f.name}",
                event_field_id(w.name, f.name),
            )
            for f in r.fields
        ]
        digest = fingerprint(w.fields, self._namespaces)
        if w.version is None:  # first start: continue from the spool's checkpoint, if any
            key = checkpoint_key(self._plan.publisher_id, w.plan.config.dataset_writer_id)
            start = resume(self._mqtt.spool.checkpoint.get(key), digest, now)
            w.version = start.version or ConfigurationVersion.initial(now)
            w.next_sequence = start.first_sequence_number
        elif digest != w.fingerprint:
            w.version = w.version.next_major(now)
        w.fingerprint = digest

    def _on_event(self, index: int, fields: list[ua.Variant]) -> None:
        """Called by the OPC UA source for each event, synchronously: queue it."""
        w = self.writers[index]
        if len(w.pending) >= w.plan.config.max_pending:
            if w.dropping_since is None:
                w.dropping_since = w.dropped
                _log.warning(
                    "event writer %s: %d events waiting (max_pending): dropping new events "
                    "until the queue drains",
                    w.name,
                    len(w.pending),
                )
            w.dropped += 1
            return
        w.pending.append((fields, time.monotonic()))
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._publish_some():
                await asyncio.sleep(0)  # let the data writers and the MQTT session run

    def _flush(self) -> None:
        while self._publish_some():
            pass

    def _publish_some(self) -> bool:
        """Publish up to a chunk of each writer's queue; whether events are left."""
        left = False
        for w in self.writers:
            for _ in range(min(_CHUNK, len(w.pending))):
                fields, received = w.pending.popleft()
                self._publish_event(w, fields, received)
            if w.pending:
                left = True
            elif w.dropping_since is not None:
                _log.warning(
                    "event writer %s: queue drained; %d events were dropped",
                    w.name,
                    w.dropped - w.dropping_since,
                )
                w.dropping_since = None
        return left

    def _publish_event(
        self, w: EventWriterState, fields: list[ua.Variant], received: float
    ) -> None:
        config = w.plan.config
        assert w.version is not None
        seq = w.next_sequence
        w.next_sequence = (seq + 1) % (UINT32_MAX + 1)
        payload = {
            f.spec.name: ua.DataValue(value) for f, value in zip(w.fields, fields, strict=False)
        }
        message = DataSetMessage(
            dataset_writer_id=config.dataset_writer_id,
            dataset_writer_name=config.name,
            publisher_id=self._plan.publisher_id,
            writer_group_name=config.writer_group,
            sequence_number=seq,
            metadata_version=ua.ConfigurationVersionDataType(w.version.major, w.version.minor),
            timestamp=self._clock(),
            message_type=DataSetMessageType.EVENT,
            payload=payload,
        )
        nm = NetworkMessage(
            messages=[message],
            publisher_id=self._plan.publisher_id,
            writer_group_name=config.writer_group,
        )
        body = dumps(encode_network_message(nm, w.plan.settings, self._codec(w)))
        checkpoint: tuple[tuple[str, str], ...] = ()
        if self._mqtt.spool.store is not None:
            checkpoint = (
                (
                    checkpoint_key(self._plan.publisher_id, config.dataset_writer_id),
                    checkpoint_value(w.next_sequence, w.version, w.fingerprint),
                ),
            )
        topic = self._plan.topics.data(self._plan.publisher_id, config.writer_group, config.name)
        self._mqtt.publish(
            Outgoing(topic, body, qos=config.qos, origin=received, checkpoint=checkpoint)
        )
        w.published += 1

    def _codec(self, w: EventWriterState) -> JsonCodec:
        encoding = w.plan.settings.field_encoding
        codec = self._codecs.get(encoding)
        if codec is None:
            codec = self._codecs[encoding] = JsonCodec(encoding, NamespaceTable(self._namespaces))
        return codec

    def _publish_metadata(self, w: EventWriterState) -> None:
        config = w.plan.config
        assert w.version is not None
        metadata = build_metadata(config.name, w.fields, w.version, self._namespaces)
        msg = encode_metadata_message(
            MetaDataMessage(
                publisher_id=self._plan.publisher_id,
                dataset_writer_id=config.dataset_writer_id,
                metadata=metadata,
                writer_group_name=config.writer_group,
                dataset_writer_name=config.name,
                timestamp=self._clock(),
            ),
            JsonCodec(namespaces=NamespaceTable(self._namespaces)),
        )
        if self._signer is not None:
            msg = sign_message(msg, self._signer, issued_at=self._clock())
        topic = self._plan.topics.metadata(
            self._plan.publisher_id, config.writer_group, config.name
        )
        self._mqtt.publish(Outgoing(topic, dumps(msg), qos=1, retain=True))

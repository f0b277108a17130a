"""The ticks of one writer group: on its publishing interval, shortly after its values arrive
(bridge/tick_phase.py), each writer's state (core/writer_state.py) gives its frame, which
becomes a DataSetMessage in a NetworkMessage (one per writer, or one for all when the group
bundles its writers) handed to the MQTT session's spool, which never blocks.

A tick of many writers is much work for one event-loop callback (about 1 µs per field): under a
CPU limit every ms of it is several ms of lag for everything else ready in that turn
(docs/benchmarks.md, "Issue 14: event-loop lag, round 3"). So a tick pauses for the loop after
every :data:`TICK_PART` fields, between two writers: a writer's frame, sequence number and
message stay whole, and values that arrive during the pause go into the frames of the writers
not yet ticked, the others' at the next tick. Bundled writers share one message: no pause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.bridge.continuity import writers_checkpoint
from opcua_mqtt.bridge.plan import BridgePlan, Writer, data_topic
from opcua_mqtt.bridge.tick_phase import TickPhase
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage, encode_network_message
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.settings import DataSetMessageType, JsonMessageSettings
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable
from opcua_mqtt.core.writer_state import Frame, FrameKind

#: Fields in the frames of one tick before it pauses for the event loop (module docstring).
TICK_PART = 500

# A DataSetMessage of a tick, its writer and when its oldest value arrived (time.monotonic()).
_Ticked = tuple[Writer, DataSetMessage, float | None]


class GroupTicks:
    """Ticks writer group ``gi`` of ``plan`` until cancelled. ``publish_metadata`` is called
    for a writer whose frame carries a version not yet published; ``count`` with the group's
    name and the size of each message sent."""

    def __init__(
        self,
        plan: BridgePlan,
        gi: int,
        writers: Sequence[Writer],
        namespaces: Sequence[str],
        *,
        mqtt: MqttSession,
        clock: Callable[[], datetime],
        publish_metadata: Callable[[Writer], None],
        count: Callable[[str, int], None],
    ) -> None:
        self._plan = plan
        self._group = plan.groups[gi]
        self._writers = writers
        table = NamespaceTable(namespaces)
        self._codecs = {
            enc: JsonCodec(enc, table)
            for enc in {self._group.writer_settings(w).field_encoding for w in self._group.writers}
        }
        self._mqtt = mqtt
        self._clock = clock
        self._publish_metadata = publish_metadata
        self._count = count

    async def run(self) -> None:
        group = self._group
        loop = asyncio.get_running_loop()
        interval = group.publishing_interval_ms / 1000
        phase = TickPhase(interval)  # ticks move to just after the values arrive
        due = loop.time()
        while True:
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > interval:
                due = loop.time()  # fell behind (e.g. a long GC): do not burst to catch up
            waits = [time.monotonic() - w.pending_since for w in self._writers if w.pending_since]
            due -= phase.shift(max(waits, default=None))
            await self._tick(self._clock())

    async def _tick(self, now: datetime) -> None:
        group = self._group
        ticked: list[_Ticked] = []
        fields = 0  # in the frames since the last pause
        for writer in self._writers:
            if fields >= TICK_PART and not group.bundle_writers:
                self._send_ticked(ticked)
                ticked, fields = [], 0
                await asyncio.sleep(0)  # the pause (module docstring)
            frame = writer.state.tick(now)
            if frame is None:
                continue
            if writer.version_published != (
                frame.metadata_version.major,
                frame.metadata_version.minor,
            ):
                self._publish_metadata(writer)
            if (
                frame.kind is FrameKind.KEEPALIVE
                and not group.writer_settings(writer.plan).sends_keep_alives
            ):
                continue  # its layout cannot carry a keep-alive (docs/interop.md)
            origin, writer.pending_since = writer.pending_since, None
            ticked.append((writer, self._dataset_message(writer, frame), origin))
            fields += len(frame.fields)
        self._send_ticked(ticked)

    def _send_ticked(self, ticked: list[_Ticked]) -> None:
        """One NetworkMessage per DataSetMessage, or one for all when the group bundles its
        writers (its origin: the oldest value's arrival)."""
        if not ticked:
            return
        group = self._group
        if group.bundle_writers:
            topic = data_topic(self._plan, group)
            origin = min((o for _, _, o in ticked if o is not None), default=None)
            self._send(group.settings, [(w, m) for w, m, _ in ticked], topic, origin)
            return
        for writer, m, origin in ticked:
            topic = data_topic(self._plan, group, writer.plan)
            self._send(group.writer_settings(writer.plan), [(writer, m)], topic, origin)

    def _dataset_message(self, writer: Writer, frame: Frame) -> DataSetMessage:
        v = frame.metadata_version
        return DataSetMessage(
            dataset_writer_id=writer.plan.dataset_writer_id,
            dataset_writer_name=writer.plan.name,
            publisher_id=self._plan.publisher_id,
            writer_group_name=writer.group.name,
            sequence_number=frame.sequence_number,
            metadata_version=ua.ConfigurationVersionDataType(v.major, v.minor),
            timestamp=frame.timestamp,
            message_type=DataSetMessageType(frame.kind.value),
            payload=dict(frame.fields) if frame.kind is not FrameKind.KEEPALIVE else None,
        )

    def _send(
        self,
        settings: JsonMessageSettings,
        messages: list[tuple[Writer, DataSetMessage]],
        topic: str,
        origin: float | None,
    ) -> None:
        group = self._group
        nm = NetworkMessage(
            messages=[m for _, m in messages],
            publisher_id=self._plan.publisher_id,
            writer_group_name=group.name,
        )
        codec = self._codecs[settings.field_encoding]
        payload = dumps(encode_network_message(nm, settings, codec))
        # with a disk spool, the writers' state goes with the message (bridge/continuity.py)
        durable = self._mqtt.spool.store is not None
        checkpoint = writers_checkpoint(
            self._plan.publisher_id, [w for w, _ in messages] if durable else []
        )
        self._mqtt.publish(
            Outgoing(topic, payload, qos=group.qos, origin=origin, checkpoint=checkpoint)
        )
        self._count(group.name, len(payload))

"""The bridge: OPC UA subscriptions in, signed standard PubSub JSON out.

Wiring only; the format lives in the core, the protocols in the adapters. One event loop:
notifications wait in the intake, the newest per field (bridge/intake.py: overload sheds older
values instead of blocking the loop), a task hands them to the writer states in slices, one
task per writer group ticks on its publishing interval, shortly after its values arrive
(bridge/group_ticks.py, bridge/tick_phase.py), and hands encoded messages to the MQTT session's
spool, which never blocks.

Order on the wire per writer: its signed ua-metadata (retained) before its first data message,
and again before the first data message of every new ConfigurationVersion. ua-status (retained)
follows the fields (bridge/field_health.py): Error while the server refuses any field,
PreOperational while a field has had no value yet, Operational only when every field has
delivered, and Error while an OPC UA server (a source, bridge/sources.py) is away (its values
are not current; Part 14 §6.2.1: Error until the cause is gone, then PreOperational until the
fields deliver again).
The MQTT last will turns it into Error if the process dies, a clean stop publishes Disabled.
ua-status and ua-connection are republished every ``status_interval_s`` and on every MQTT
reconnect, each with an MQTT 5 Message Expiry of two periods, an Operational ua-status as a
cyclic one (Part 14 §7.2.4.6.7: IsCyclic only while Operational, with Timestamp and
NextReportTime), so the retained state of a bridge that died unseen (the broker away, no last
will) expires instead of claiming Operational forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession, Outgoing
from opcua_mqtt.adapters.opcua.session import Connector, OpcUaSession
from opcua_mqtt.adapters.opcua.source import MonitoredField, SubscriptionSource
from opcua_mqtt.bridge.continuity import Resumption, fingerprint
from opcua_mqtt.bridge.events import EventWriters
from opcua_mqtt.bridge.field_health import FieldHealth, FieldReport, FieldState
from opcua_mqtt.bridge.group_ticks import GroupTicks
from opcua_mqtt.bridge.intake import QUIET_S, Intake, Value
from opcua_mqtt.bridge.model_watch import ModelWatch
from opcua_mqtt.bridge.plan import (
    BridgePlan,
    Writer,
    connection_data,
    field_spec,
    metadata_topic,
    mqtt_backlog_limit,
)
from opcua_mqtt.bridge.sources import Source, make_sources, server_types
from opcua_mqtt.bridge.write_back import WriteBack, WriteBackSettings
from opcua_mqtt.bridge.write_back_support import canonical_or_none
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.metadata import (
    ConnectionMessage,
    MetaDataMessage,
    StatusMessage,
    encode_connection_message,
    encode_metadata_message,
    encode_status_message,
    status_expiry_s,
)
from opcua_mqtt.core.metadata import DataSetField, build_metadata
from opcua_mqtt.core.signing import Signer, sign_message
from opcua_mqtt.core.topics import command_topic
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable
from opcua_mqtt.core.writer_state import WriterState

_log = logging.getLogger(__name__)

_HEALTH_CHECK_S = 1.0  # how often the fields' state is turned into the ua-status


@dataclass
class BridgeStats:
    messages: dict[str, int] = field(default_factory=dict)  # per writer group
    bytes: dict[str, int] = field(default_factory=dict)
    value_changes: int = 0
    metadata_published: int = 0
    opcua_state: str = "disconnected"  # connected, reconnecting (after a loss), disconnected
    opcua_reconnects: int = 0  # sessions lost (each one starts a reconnect)


class Bridge:
    """Runs one bridge until ``stop`` is set; see the module docstring for the message order."""

    def __init__(
        self,
        plan: BridgePlan,
        mqtt: MqttOptions,
        connect_opcua: Connector | Mapping[str, Connector],
        *,
        signer: Signer | None,
        write_back: WriteBackSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``connect_opcua``: one connector (every group reads from that server), or one per
        source name (bridge/sources.py)."""
        self.plan = plan
        self.stats = BridgeStats()
        self.sources = make_sources(plan, connect_opcua)
        self._source_of = {plan.groups[gi].name: s for s in self.sources for gi in s.groups}
        self._signer = signer
        self._clock = clock
        self._writers: dict[tuple[int, int], Writer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # publishing goes on across sessions
        self.fields = FieldHealth.of_plan(plan)
        quiet_s = max([QUIET_S] + [2 * g.publishing_interval_ms / 1000 for g in plan.groups])
        self._mqtt_backlog_limit = mqtt_backlog_limit(plan)
        self.intake = Intake(self._on_values, can_take=self._mqtt_keeps_up, quiet_s=quiet_s)
        self.model_watch = ModelWatch(
            self._writers,
            self.fields,
            clock,
            self._publish_metadata,
            lambda gi: self._source_of[plan.groups[gi].name].usable_session(),
        )
        self._state: ua.PubSubState | None = None  # the ua-status last published
        topics = plan.topics
        self._status_topic = topics.status(plan.publisher_id)
        self._expiry = {"message_expiry_interval": status_expiry_s(plan.status_interval_s)}
        self._mqtt_connects = 0
        self.mqtt = MqttSession(
            mqtt,
            will=self._status(ua.PubSubState.Error),
            on_connection_change=self._on_mqtt_connection,
            on_refusal_change=self._on_mqtt_refusal,
        )
        self._state = ua.PubSubState.PreOperational  # the last state the bridge decided on
        self.ready = asyncio.Event()  # every source's subscriptions exist, metadata is queued
        self.events = EventWriters(plan, self.mqtt, signer, clock)  # on the first source
        self.write_back: WriteBack | None = None
        if write_back is not None:
            self._node_sources = {  # a published node's source; first one wins
                canonical_or_none(f.node_id): self._source_of[g.name]
                for g in reversed(plan.groups)
                for w in g.writers
                for f in w.fields
            }
            self._field_sources = {  # as write-back's fields: (writer, field), last one wins
                (w.name, f.name): self._source_of[g.name]
                for g in plan.groups
                for w in g.writers
                for f in w.fields
            }
            self.write_back = WriteBack(
                write_back,
                mqtt=self.mqtt,
                topic=command_topic(topics, plan.publisher_id),
                fields={
                    (w.name, f.name): f.node_id
                    for g in plan.groups
                    for w in g.writers
                    for f in w.fields
                },
                session=self._session_for,
            )
        if signer is None:
            _log.warning("no metadata signing key configured: ua-metadata will be unsigned")

    # ------------------------------------------------------------------------ lifecycle

    def _session_for(
        self, node_id: str | None, field: tuple[str, str] | None
    ) -> OpcUaSession | None:
        """For write-back, the usable session of the source of ``field`` (writer, field) when
        the target names one, else of the source that publishes ``node_id`` (canonical NodeId;
        a node no field publishes: the first source's)."""
        source = self._field_sources.get(field) if field is not None else None
        source = source or self._node_sources.get(node_id, self.sources[0])
        return source.usable_session()

    async def run(self, stop: asyncio.Event) -> None:
        if self.write_back is not None:
            self.write_back.attach()
        await self.mqtt.start()
        self._publish_state(ua.PubSubState.PreOperational)
        self._publish_connection()
        self._tasks["status"] = asyncio.create_task(self._refresh_status(), name="status-refresh")
        self._tasks["intake"] = asyncio.create_task(self.intake.run(), name="intake")
        loops = [
            asyncio.create_task(s.run(self, stop), name=f"source-{s.name}") for s in self.sources
        ]
        try:
            await asyncio.gather(*loops)  # each ends when stop is set
        finally:
            for task in (*loops, *self._tasks.values()):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.model_watch.cancel()
            self._state = ua.PubSubState.Disabled  # a refusal ending while draining: no status
            if self.write_back is not None:
                self.write_back.close()
            await self.mqtt.stop([self._status(ua.PubSubState.Disabled)])
            _log.info("bridge stopped")

    async def source_connected(self, source: Source, session: OpcUaSession) -> SubscriptionSource:
        """A new session of ``source``: its writers (first session only: a reconnect keeps
        states, sequence numbers and versions), its groups' monitored items, their metadata."""
        subscriptions = await session.subscriptions(
            lambda batch: self._received(source.name, batch), self.intake.drained
        )
        if not source.built:
            codec = await session.codec()
            groups = [self.plan.groups[gi] for gi in source.groups]
            fields = [f for g in groups for w in g.writers for f in w.fields]
            types = await server_types(session, codec, fields)
            self._build_writers(codec, types, source)
        self.fields.monitoring(source.groups)
        refused_count = 0
        for gi in source.groups:
            group = self.plan.groups[gi]
            labelled = [
                (n, f) for w in group.writers for n in (f"{group.name}/{w.name}",) for f in w.fields
            ]
            monitored = [  # keys and writer labels shared, not one per field (100,000 fields)
                MonitoredField(
                    key=key,
                    node_id=f.node_id,
                    label=label,
                    sampling_interval_ms=f.sampling_interval_ms,
                    queue_size=f.monitored_queue_size(group.publishing_interval_ms),
                    deadband_type=f.deadband.type,
                    deadband_value=f.deadband.value,
                )
                for key, (label, f) in zip(self.fields.keys(gi), labelled, strict=True)
            ]
            refused = await subscriptions.monitor(group.publishing_interval_ms, monitored)
            refused_count += len(refused)
            now = self._clock()
            for key, status in refused.items():
                self.fields.refused(key, status)
                self._writers[(key.group, key.writer)].state.update(
                    key.field, ua.DataValue(StatusCode=status, ServerTimestamp=now)
                )
        self.fields.items_created(source.groups)
        writers = [w for (gi, _), w in self._writers.items() if gi in source.groups]
        for writer in writers:
            self._publish_metadata(writer)
        if source is self.sources[0]:  # event writers watch the first source's server
            try:
                await self.events.start(session)
            except BaseException:
                await subscriptions.close()
                raise
        total = sum(len(w.fields) for w in writers)
        _log.info(
            "%s: %d writer groups, %d writers, %d fields (%d monitored, %d refused by the server)",
            "bridge running" if len(self.sources) == 1 else f"source {source.name!r} running",
            len(source.groups),
            len(writers),
            total,
            total - refused_count,
            refused_count,
        )
        source.built = True
        return subscriptions

    def source_up(self, source: Source, session: OpcUaSession) -> Awaitable[None] | None:
        """``source``'s session is in use: its groups tick (from its first session on), the
        status follows; the node check runs beside the session."""
        self._opcua_state()
        self._publish_field_state()
        for gi in source.groups:
            if f"group-{gi}" not in self._tasks:
                name = f"group-{self.plan.groups[gi].name}"
                self._tasks[f"group-{gi}"] = asyncio.create_task(self._tick_group(gi), name=name)
        if "fields" not in self._tasks:
            self._tasks["fields"] = asyncio.create_task(self._watch_fields(), name="fields")
        if all(s.built for s in self.sources):
            self.ready.set()
        if self.plan.node_check_interval_s <= 0:
            return None
        interval = self.plan.node_check_interval_s
        return self.model_watch.check_nodes(session, interval, frozenset(source.groups))

    def _opcua_state(self) -> None:
        """The OPC UA side as a whole: connected only while every source is."""
        states = {s.state for s in self.sources}
        self.stats.opcua_state = (
            "connected"
            if states == {"connected"}
            else "reconnecting"
            if "reconnecting" in states
            else "disconnected"
        )

    def away_groups(self) -> frozenset[int]:
        """The writer groups whose source is away."""
        return frozenset(gi for s in self.sources if s.state != "connected" for gi in s.groups)

    # ------------------------------------------------------------------------ writers

    def _build_writers(
        self, codec: JsonCodec, server_types: Mapping[str, tuple[int, ua.NodeId]], source: Source
    ) -> None:
        """The states of ``source``'s writers; with a disk spool, continuing where the last run
        stopped."""
        now = self._clock()
        resumption = Resumption(
            self.mqtt.spool.checkpoint, self.plan.publisher_id, source.namespaces, now
        )
        for gi in source.groups:
            group = self.plan.groups[gi]
            for wi, wp in enumerate(group.writers):
                fields = [
                    DataSetField(
                        field_spec(codec, f, server_types.get(f.node_id)),
                        f.node_id,
                        f.dataset_field_id,
                    )
                    for f in wp.fields
                ]
                start, digest = resumption.start(wp.dataset_writer_id, fields)
                state = WriterState(
                    [f.spec for f in fields],
                    key_frame_count=wp.key_frame_count,
                    keep_alive_time=timedelta(milliseconds=wp.keep_alive_ms),
                    now=now,
                    version=start.version,
                    first_sequence_number=start.first_sequence_number,
                )
                self._writers[(gi, wi)] = Writer(wp, group, state, fields, fingerprint=digest)
        resumption.report()

    def _mqtt_keeps_up(self) -> bool:
        """Whether the broker takes our messages as fast as we make them (while it is away the
        spool keeps them all)."""
        return not self.mqtt.stats.connected or self.mqtt.spool_depth <= self._mqtt_backlog_limit

    def _received(self, source: str, batch: list[Value]) -> None:
        """The sink of ``source``'s subscriptions: once per Publish response (per part of a large
        one), synchronously.
        The values wait in the intake (bridge/intake.py) for :meth:`_on_values`."""
        self.stats.value_changes += len(batch)
        self.intake.put(source, batch)

    def _on_values(self, batch: list[Value]) -> None:
        """A slice of values from the intake, the newest per field."""
        received = time.monotonic()
        health = self.fields
        arrived = False  # a field's first value
        for key, dv in batch:
            arrived |= health.value(key, dv)
            gi, wi, name = key
            writer = self._writers.get((gi, wi))
            if writer is None:
                continue
            if self.model_watch.holds(key, writer, name, dv):
                continue
            writer.state.update(name, dv)
            if writer.pending_since is None:
                writer.pending_since = received
        if arrived and self.ready.is_set():
            self._publish_field_state()  # e.g. Operational once the last field has a value

    # ------------------------------------------------------------------------ publishing

    async def _tick_group(self, gi: int) -> None:
        group = self.plan.groups[gi]
        ticks = GroupTicks(
            self.plan,
            gi,
            [self._writers[(gi, wi)] for wi in range(len(group.writers))],
            self._source_of[group.name].namespaces,
            mqtt=self.mqtt,
            clock=self._clock,
            publish_metadata=self._publish_metadata,
            count=self._count_message,
        )
        await ticks.run()

    def _count_message(self, group: str, size: int) -> None:
        self.stats.messages[group] = self.stats.messages.get(group, 0) + 1
        self.stats.bytes[group] = self.stats.bytes.get(group, 0) + size

    def _publish_metadata(self, writer: Writer) -> None:
        version = writer.state.version
        namespaces = self._source_of[writer.group.name].namespaces
        writer.fingerprint = fingerprint(writer.fields, namespaces)
        metadata = build_metadata(writer.plan.name, writer.fields, version, namespaces)
        msg = encode_metadata_message(
            MetaDataMessage(
                publisher_id=self.plan.publisher_id,
                dataset_writer_id=writer.plan.dataset_writer_id,
                metadata=metadata,
                writer_group_name=writer.group.name,
                dataset_writer_name=writer.plan.name,
                timestamp=self._clock(),
            ),
            JsonCodec(namespaces=NamespaceTable(namespaces)),
        )
        if self._signer is not None:
            msg = sign_message(msg, self._signer, issued_at=self._clock())
        topic = metadata_topic(self.plan, writer.group, writer.plan)
        self.mqtt.publish(Outgoing(topic, dumps(msg), qos=1, retain=True))
        writer.version_published = (version.major, version.minor)
        self.stats.metadata_published += 1

    def _status(self, state: ua.PubSubState) -> Outgoing:
        """The retained ua-status for ``state``, expiring unless refreshed. Cyclic only while
        Operational (Part 14 §7.2.4.6.7), then with Timestamp and NextReportTime (required
        when cyclic, §7.2.5.5.5); the last will is never Operational, so never cyclic."""
        msg = StatusMessage(self.plan.publisher_id, state)
        if state == ua.PubSubState.Operational:
            msg.is_cyclic = True
            msg.timestamp = self._clock()
            msg.next_report_time = msg.timestamp + timedelta(seconds=self.plan.status_interval_s)
        payload = dumps(encode_status_message(msg))
        return Outgoing(self._status_topic, payload, 1, True, dict(self._expiry))

    def _publish_state(self, state: ua.PubSubState) -> None:
        self._state = state
        self._send_state()
        _log.info("publisher state %s", state.name)

    def _send_state(self) -> None:
        """(Re)publish the decided state, freshly stamped."""
        state = self._state or ua.PubSubState.PreOperational
        if self.mqtt.delivery.refusing and state == ua.PubSubState.Operational:
            state = ua.PubSubState.Error  # not operational while the broker refuses data
        self.mqtt.publish(self._status(state))

    async def _refresh_status(self) -> None:
        """Republish ua-status and ua-connection every period, so they never expire while
        the bridge lives and a cyclic status keeps its NextReportTime."""
        while True:
            await asyncio.sleep(self.plan.status_interval_s)
            self._send_state()
            self._publish_connection()

    def _on_mqtt_connection(self, up: bool) -> None:
        """After a reconnect, stamp the status afresh: the one spooled or retained from
        before the outage has an old NextReportTime and a shortened life."""
        if up:
            self._mqtt_connects += 1
            if self._mqtt_connects > 1:
                self._send_state()
                self._publish_connection()

    def _on_mqtt_refusal(self, _refusing: bool) -> None:
        """The broker started or stopped refusing publishes: an Operational bridge shows Error
        meanwhile (subscribers see it if the broker allows the status topic itself)."""
        if self._state == ua.PubSubState.Operational:
            self._publish_state(self._state)

    def _publish_field_state(self) -> None:
        """Publish the ua-status the fields call for, when it differs from the last one:
        Error while an OPC UA server (any source) is away (Part 14 §6.2.1: some of the
        publisher's DataSets cannot be current; docs/operations.md), Error while one refuses a
        field (it cannot deliver until the configuration or the server changes),
        PreOperational while a field waits for its first value (or for its first value since
        the session came back), else Operational."""
        connected = self.stats.opcua_state == "connected"
        report = self.field_report()
        if not connected:
            state = ua.PubSubState.Error  # the server is away: no value is current
        elif report.counts[FieldState.REFUSED] or self.events.dropping or self.intake.overloaded:
            state = ua.PubSubState.Error  # it cannot deliver, or it drops events or values
        elif report.counts[FieldState.WAITING]:
            state = ua.PubSubState.PreOperational
        else:
            state = ua.PubSubState.Operational
        if state != self._state:
            self._publish_state(state)

    def field_report(self) -> FieldReport:
        """The fields' report; the fields of a source that is away are not overdue."""
        return self.fields.report(away=self.away_groups())

    async def _watch_fields(self) -> None:
        while True:
            await asyncio.sleep(_HEALTH_CHECK_S)
            self.intake.check(self.stats.value_changes, starting=not self.ready.is_set())
            self._publish_field_state()

    def _publish_connection(self) -> None:
        plan, o = self.plan, self.mqtt.options
        url = f"{'mqtts' if o.tls.enabled else 'mqtt'}://{o.host}:{o.port}"
        msg = encode_connection_message(
            ConnectionMessage(plan.publisher_id, connection_data(plan, url), self._clock())
        )
        topic = plan.topics.connection(plan.publisher_id)
        self.mqtt.publish(Outgoing(topic, dumps(msg), 1, True, dict(self._expiry)))

    async def source_closing(self, source: Source) -> None:
        """``source``'s session is about to close: the event writers on it stop first."""
        if source is self.sources[0]:
            await self.events.stop()

    def source_down(self, source: Source) -> None:
        """An OPC UA server is away (session lost, or an attempt failed): Error (Part 14
        §6.2.1). A lost session's values are no longer current: every field of its groups
        turns BadServerNotConnected instead of repeating a stale value, and waits for a fresh
        one from the monitored items of the next session; the other sources' groups publish
        on."""
        if source.state != "connected":
            self._opcua_state()
            if self._state != ua.PubSubState.Error:
                self._publish_state(ua.PubSubState.Error)
            return
        source.reconnects += 1
        self.stats.opcua_reconnects += 1
        source.state = "reconnecting"
        self._opcua_state()
        self.fields.subscribed(source.groups)
        self.intake.discard(source.groups)
        lost = ua.DataValue(
            StatusCode=ua.StatusCode(ua.StatusCodes.BadServerNotConnected),
            ServerTimestamp=self._clock(),
        )
        for (gi, _wi), writer in self._writers.items():
            if gi in source.groups:
                for f in writer.fields:
                    writer.state.update(f.spec.name, lost)
        self._publish_field_state()

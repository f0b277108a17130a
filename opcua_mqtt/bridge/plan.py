"""What the bridge runs: the plans built from the configuration (bridge/from_config.py), the
running writers, and the WriterGroupDataType each group is described by in the ua-connection
message. Fields are the configuration's own FieldConfig; writers and groups carry what the
configuration leaves to be resolved (the JSON message settings of their encoding and content)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from asyncua import ua

from opcua_mqtt.core.config.events import EventWriterConfig
from opcua_mqtt.core.config.model import FieldConfig
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.messages.settings import JsonMessageSettings
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.writer_state import FieldSpec, WriterState

_BASE_DATA_TYPE = ua.NodeId(ua.ObjectIds.BaseDataType)
#: One NodeId object per distinct DataType, shared by the fields of that type (100,000 fields,
#: a handful of DataTypes; nothing changes a NodeId once made).
_SHARED_DATA_TYPES: dict[ua.NodeId, ua.NodeId] = {}


@dataclass(frozen=True)
class WriterPlan:
    name: str
    dataset_writer_id: int
    fields: tuple[FieldConfig, ...]
    key_frame_count: int = 10
    keep_alive_ms: int = 10_000
    settings: JsonMessageSettings | None = None  # None: the writer group's
    # Custom topics (config queue_name / metadata_queue_name, expanded); None: standard tree.
    queue_name: str | None = None
    metadata_queue_name: str | None = None


@dataclass(frozen=True)
class GroupPlan:
    name: str
    writers: tuple[WriterPlan, ...]
    publishing_interval_ms: float = 1000
    qos: int = 1
    settings: JsonMessageSettings = field(default_factory=JsonMessageSettings)
    bundle_writers: bool = False  # all writers' DataSetMessages in one NetworkMessage
    queue_name: str | None = None  # the group's own custom topic; None: the standard tree
    source: str = "default"  # the OPC UA server (bridge/sources.py) its fields come from

    def __post_init__(self) -> None:
        if self.bundle_writers and any(
            w.settings not in (None, self.settings) for w in self.writers
        ):
            raise ValueError(
                f"writer group {self.name!r}: writers bundled in one NetworkMessage must share "
                "the group's message settings"
            )

    def writer_settings(self, writer: WriterPlan) -> JsonMessageSettings:
        return writer.settings or self.settings


@dataclass(frozen=True)
class EventWriterPlan:
    """An event writer (bridge/events.py) with the JSON message settings of its encoding."""

    config: EventWriterConfig
    settings: JsonMessageSettings


@dataclass(frozen=True)
class BridgePlan:
    publisher_id: str
    groups: tuple[GroupPlan, ...]
    topics: TopicTree = field(default_factory=TopicTree)
    # How often to ask the server whether the monitored nodes still exist (0: never). Servers
    # need not notify a monitored item when its node is deleted (asyncua's does not); without
    # this check such a field would fall silent instead of turning Bad.
    node_check_interval_s: float = 60.0
    # How often the retained ua-status and ua-connection are republished (config `status`).
    status_interval_s: float = 60.0
    # Longest wait between attempts to reach the OPC UA server (config opcua.reconnect_max_s).
    opcua_reconnect_max_s: float = 4.0
    event_writers: tuple[EventWriterPlan, ...] = ()
    # Per source name, when sources differ (config sources[].reconnect_max_s).
    source_reconnect_max_s: dict[str, float] = field(default_factory=dict)


@dataclass
class Writer:
    """A writer while the bridge runs: its plan, state, fields, and what it published."""

    plan: WriterPlan
    group: GroupPlan
    state: WriterState
    fields: list[DataSetField]
    version_published: tuple[int, int] | None = None
    # time.monotonic() when the oldest value not yet in a message arrived: the message's origin
    # for the publish latency histogram
    pending_since: float | None = None
    # name -> built-in type, for the per-value type check (a linear search cost 10 % of CPU);
    # the state's own table, not a copy (100,000 fields)
    builtin_types: Mapping[str, int] = field(default_factory=dict)
    # of the DataSet's description as last published (bridge/continuity.py)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self.index_types()

    def index_types(self) -> None:
        """The state's table of built-in types (shared, kept current by its reconfigure)."""
        self.builtin_types = self.state.builtin_types


def field_spec(codec: JsonCodec, f: FieldConfig, read: tuple[int, ua.NodeId] | None) -> FieldSpec:
    """The writer's view of field ``f``: its types as configured, else as ``read`` from the
    server (built-in type, DataType), else untyped (Variant)."""
    builtin, data_type = read or (f.builtin_id, _BASE_DATA_TYPE)
    # A configured built-in type without a DataType: the built-in type's own DataType.
    configured = f.data_type or (f"i={f.builtin_id}" if f.builtin_id else None)
    if configured is not None:
        try:
            data_type = codec.decode_node_id(configured)
        except DecodeError:
            data_type = ua.NodeId(builtin)
    return FieldSpec(
        f.name,
        builtin,
        _SHARED_DATA_TYPES.setdefault(data_type, data_type),
        f.value_rank,
        f.array_dimensions if f.value_rank > 0 else (),
    )


def data_topic(plan: BridgePlan, g: GroupPlan, w: WriterPlan | None = None) -> str:
    """Where the data of group ``g`` (bundled), or of its writer ``w``, is published: the
    configured queue name, else the standard tree. A bundled group's writers share its topic."""
    if w is None or g.bundle_writers:
        return g.queue_name or plan.topics.data(plan.publisher_id, g.name)
    return w.queue_name or plan.topics.data(plan.publisher_id, g.name, w.name)


def metadata_topic(plan: BridgePlan, g: GroupPlan, w: WriterPlan) -> str:
    """Where the retained ua-metadata of writer ``w`` is published."""
    return w.metadata_queue_name or plan.topics.metadata(plan.publisher_id, g.name, w.name)


def writer_group(plan: BridgePlan, g: GroupPlan) -> ua.WriterGroupDataType:
    """The WriterGroupDataType of the ua-connection message; its TransportSettings and its
    writers' (Part 14 §6.4.2.3, §6.4.2.5) name the topics in use, so that a subscriber can
    discover custom topics from it."""
    s = g.settings
    return ua.WriterGroupDataType(
        Name=g.name,
        Enabled=True,
        # the OPC UA server its fields come from (bridge/sources.py; docs/operations.md)
        GroupProperties=[
            ua.KeyValuePair(ua.QualifiedName("Source"), ua.Variant(g.source, ua.VariantType.String))
        ],
        PublishingInterval=g.publishing_interval_ms,
        MessageSettings=ua.JsonWriterGroupMessageDataType(
            NetworkMessageContentMask=int(s.network_mask)
        ),
        TransportSettings=ua.BrokerWriterGroupTransportDataType(
            QueueName=data_topic(plan, g),
            RequestedDeliveryGuarantee=(
                ua.BrokerTransportQualityOfService.AtLeastOnce
                if g.qos == 1
                else ua.BrokerTransportQualityOfService.ExactlyOnce
                if g.qos == 2
                else ua.BrokerTransportQualityOfService.AtMostOnce
            ),
        ),
        DataSetWriters=[
            ua.DataSetWriterDataType(
                Name=w.name,
                Enabled=True,
                DataSetWriterId=w.dataset_writer_id,
                DataSetFieldContentMask=int(g.writer_settings(w).field_mask),
                KeyFrameCount=w.key_frame_count,
                DataSetName=w.name,
                MessageSettings=ua.JsonDataSetWriterMessageDataType(
                    DataSetMessageContentMask=int(g.writer_settings(w).dataset_mask)
                ),
                TransportSettings=ua.BrokerDataSetWriterTransportDataType(
                    QueueName=data_topic(plan, g, w),
                    MetaDataQueueName=metadata_topic(plan, g, w),
                ),
            )
            for w in g.writers
        ],
    )


def event_writer_groups(plan: BridgePlan) -> list[ua.WriterGroupDataType]:
    """The event writers' WriterGroupDataTypes for the ua-connection message (Part 14
    §6.2.6): one per ``writer_group``, its writers on the standard topics."""
    groups: dict[str, list[EventWriterPlan]] = {}
    for w in plan.event_writers:
        groups.setdefault(w.config.writer_group, []).append(w)
    out = []
    for name, writers in groups.items():
        out.append(
            ua.WriterGroupDataType(
                Name=name,
                Enabled=True,
                MessageSettings=ua.JsonWriterGroupMessageDataType(
                    NetworkMessageContentMask=int(writers[0].settings.network_mask)
                ),
                TransportSettings=ua.BrokerWriterGroupTransportDataType(
                    QueueName=plan.topics.data(plan.publisher_id, name)
                ),
                DataSetWriters=[
                    ua.DataSetWriterDataType(
                        Name=w.config.name,
                        Enabled=True,
                        DataSetWriterId=w.config.dataset_writer_id,
                        DataSetFieldContentMask=int(w.settings.field_mask),
                        DataSetName=w.config.name,
                        MessageSettings=ua.JsonDataSetWriterMessageDataType(
                            DataSetMessageContentMask=int(w.settings.dataset_mask)
                        ),
                        TransportSettings=ua.BrokerDataSetWriterTransportDataType(
                            QueueName=plan.topics.data(plan.publisher_id, name, w.config.name),
                            MetaDataQueueName=plan.topics.metadata(
                                plan.publisher_id, name, w.config.name
                            ),
                        ),
                    )
                    for w in writers
                ],
            )
        )
    return out


TRANSPORT_PROFILE = "http://opcfoundation.org/UA-Profile/Transport/pubsub-mqtt-json"


def connection_data(plan: BridgePlan, url: str) -> ua.PubSubConnectionDataType:
    """What the ua-connection message describes (Part 14 §6.2.7): the publisher, the broker's
    ``url`` and every writer group, data and events."""
    return ua.PubSubConnectionDataType(
        Name=plan.publisher_id,
        Enabled=True,
        PublisherId=ua.Variant(plan.publisher_id, ua.VariantType.String),
        TransportProfileUri=TRANSPORT_PROFILE,
        Address=ua.NetworkAddressUrlDataType(Url=url),
        WriterGroups=[writer_group(plan, g) for g in plan.groups] + event_writer_groups(plan),
    )


def mqtt_backlog_limit(plan: BridgePlan) -> int:
    """Messages that may wait for a connected broker before the intake holds (bridge/intake.py):
    two rounds of every group's ticks, beyond a Receive Maximum's window in flight."""
    per_round = sum(1 if g.bundle_writers else len(g.writers) for g in plan.groups)
    return 2 * per_round + 20

"""OPC UA PubSub JSON messages (OPC 10000-14 1.05 §7.2.5): ua-data, ua-metadata, ua-status,
ua-connection; encoders for the bridge and decoders for subscribers, built on one JSON codec.

The content masks decide which members appear; the decoders read any layout the masks can produce
(and the 1.04 value forms), ignore unknown members, and raise :class:`DecodeError` naming the
member when a required one is missing or malformed.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import orjson
from asyncua import ua

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.uajson.codec import DataValueMembers, JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.node_ids import OPC_UA_NAMESPACE
from opcua_mqtt.core.uajson.scalars import decode_datetime, encode_datetime, json_type

__all__ = [
    "ConnectionMessage",
    "DataSetFieldContentMask",
    "DataSetMessage",
    "DataSetMessageContentMask",
    "DataSetMessageType",
    "JsonMessageSettings",
    "MetaDataMessage",
    "NetworkMessage",
    "NetworkMessageContentMask",
    "StatusMessage",
    "decode_message",
    "dumps",
    "loads",
]

VT = ua.VariantType


class NetworkMessageContentMask(enum.IntFlag):
    """JsonNetworkMessageContentMask (Part 14 §6.3.2.1.1)."""

    NETWORK_MESSAGE_HEADER = 1
    DATASET_MESSAGE_HEADER = 2
    SINGLE_DATASET_MESSAGE = 4
    PUBLISHER_ID = 8
    DATASET_CLASS_ID = 16
    REPLY_TO = 32
    WRITER_GROUP_NAME = 64


class DataSetMessageContentMask(enum.IntFlag):
    """JsonDataSetMessageContentMask (Part 14 §6.3.2.2.1)."""

    DATASET_WRITER_ID = 1
    METADATA_VERSION = 2
    SEQUENCE_NUMBER = 4
    TIMESTAMP = 8
    STATUS = 16
    MESSAGE_TYPE = 32
    DATASET_WRITER_NAME = 64
    FIELD_ENCODING_1 = 128  # "ReversibleFieldEncoding" in 1.04
    PUBLISHER_ID = 256
    WRITER_GROUP_NAME = 512
    MINOR_VERSION = 1024
    FIELD_ENCODING_2 = 2048


class DataSetFieldContentMask(enum.IntFlag):
    """DataSetFieldContentMask (Part 14 §6.2.4.2); no bit set means fields travel as Variants."""

    STATUS_CODE = 1
    SOURCE_TIMESTAMP = 2
    SERVER_TIMESTAMP = 4
    SOURCE_PICOSECONDS = 8
    SERVER_PICOSECONDS = 16
    RAW_DATA = 32


class DataSetMessageType(enum.Enum):
    KEY_FRAME = "ua-keyframe"
    DELTA_FRAME = "ua-deltaframe"
    EVENT = "ua-event"
    KEEP_ALIVE = "ua-keepalive"


NM = NetworkMessageContentMask
DM = DataSetMessageContentMask
FM = DataSetFieldContentMask

_FIELD_ENCODINGS: Final = {
    (False, True): FieldEncoding.VERBOSE,
    (True, True): FieldEncoding.COMPACT,
    (False, False): FieldEncoding.NON_REVERSIBLE,
    (True, False): FieldEncoding.REVERSIBLE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class JsonMessageSettings:
    """The three masks of one WriterGroup/DataSetWriter; the defaults are a readable standard
    layout: full headers, Compact values, each field a DataValue with status and source time."""

    network_mask: NetworkMessageContentMask = (
        NM.NETWORK_MESSAGE_HEADER
        | NM.DATASET_MESSAGE_HEADER
        | NM.PUBLISHER_ID
        | NM.WRITER_GROUP_NAME
    )
    dataset_mask: DataSetMessageContentMask = (
        DM.DATASET_WRITER_ID
        | DM.METADATA_VERSION
        | DM.SEQUENCE_NUMBER
        | DM.TIMESTAMP
        | DM.STATUS
        | DM.MESSAGE_TYPE
        | DM.DATASET_WRITER_NAME
        | DM.FIELD_ENCODING_1
        | DM.FIELD_ENCODING_2
    )
    field_mask: DataSetFieldContentMask = FM.STATUS_CODE | FM.SOURCE_TIMESTAMP

    def __post_init__(self) -> None:
        # Part 14 §6.3.2.1.1: without the NetworkMessage header, PublisherId and DataSetClassId
        # have nowhere to go.
        if not self.network_mask & NM.NETWORK_MESSAGE_HEADER and self.network_mask & (
            NM.PUBLISHER_ID | NM.DATASET_CLASS_ID | NM.WRITER_GROUP_NAME
        ):
            raise ValueError(
                "PublisherId, DataSetClassId and WriterGroupName need the NetworkMessageHeader bit"
            )

    @property
    def field_encoding(self) -> FieldEncoding:
        return _FIELD_ENCODINGS[
            (
                bool(self.dataset_mask & DM.FIELD_ENCODING_1),
                bool(self.dataset_mask & DM.FIELD_ENCODING_2),
            )
        ]

    @property
    def data_value_members(self) -> DataValueMembers | None:
        """The DataValue members to write, or None when fields are Variants or RawData."""
        m = self.field_mask
        if m & FM.RAW_DATA or not m:
            return None
        return DataValueMembers(
            status=bool(m & FM.STATUS_CODE),
            source_timestamp=bool(m & FM.SOURCE_TIMESTAMP),
            server_timestamp=bool(m & FM.SERVER_TIMESTAMP),
            # §6.2.4.2: a PicoSeconds bit is ignored unless its Timestamp bit is set.
            source_picoseconds=bool(m & FM.SOURCE_PICOSECONDS and m & FM.SOURCE_TIMESTAMP),
            server_picoseconds=bool(m & FM.SERVER_PICOSECONDS and m & FM.SERVER_TIMESTAMP),
        )


@dataclasses.dataclass(slots=True)
class DataSetMessage:
    """One DataSetMessage; ``payload`` maps field names to values in field order."""

    dataset_writer_id: int | None = None
    dataset_writer_name: str | None = None
    publisher_id: str | None = None
    writer_group_name: str | None = None
    sequence_number: int | None = None
    metadata_version: ua.ConfigurationVersionDataType | None = None
    minor_version: int | None = None
    timestamp: datetime | None = None
    status: ua.StatusCode | None = None
    message_type: DataSetMessageType = DataSetMessageType.KEY_FRAME
    payload: dict[str, ua.DataValue] | None = None


@dataclasses.dataclass(slots=True)
class NetworkMessage:
    """A ua-data NetworkMessage (Part 14 §7.2.5.3)."""

    messages: list[DataSetMessage]
    message_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    publisher_id: str | None = None
    writer_group_name: str | None = None
    dataset_class_id: uuid.UUID | None = None


@dataclasses.dataclass(slots=True)
class MetaDataMessage:
    """A ua-metadata message (Part 14 §7.2.5.5.2) carrying a DataSetMetaDataType."""

    publisher_id: str
    dataset_writer_id: int
    metadata: ua.DataSetMetaDataType
    writer_group_name: str | None = None
    dataset_writer_name: str | None = None
    timestamp: datetime | None = None
    message_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


@dataclasses.dataclass(slots=True)
class StatusMessage:
    """A ua-status message (Part 14 §7.2.5.5.5)."""

    publisher_id: str
    status: ua.PubSubState
    is_cyclic: bool = False
    timestamp: datetime | None = None
    next_report_time: datetime | None = None
    message_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


@dataclasses.dataclass(slots=True)
class ConnectionMessage:
    """A ua-connection message (Part 14 §7.2.5.5.6) describing the publisher's configuration."""

    publisher_id: str
    connection: ua.PubSubConnectionDataType
    timestamp: datetime | None = None
    message_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))


AnyMessage = NetworkMessage | MetaDataMessage | StatusMessage | ConnectionMessage

# What a subscriber passes to decode RawData payloads: (PublisherId, DataSetWriterId) -> the
# built-in type of each field, usually taken from the writer's metadata.
FieldTypes = Callable[[str | None, int | None], Mapping[str, ua.VariantType] | None]


# ------------------------------------------------------------------------------ encoding


def encode_network_message(
    msg: NetworkMessage, settings: JsonMessageSettings, codec: JsonCodec | None = None
) -> Any:
    """The JSON value of a ua-data message, laid out as the masks say (Part 14 §7.2.5.3)."""
    codec = codec or JsonCodec(settings.field_encoding)
    if codec.encoding is not settings.field_encoding:
        raise EncodeError("the codec's encoding does not match the FieldEncoding bits")
    nm = settings.network_mask
    header = bool(nm & NM.NETWORK_MESSAGE_HEADER)
    single = bool(nm & NM.SINGLE_DATASET_MESSAGE)
    if single and len(msg.messages) != 1:
        raise EncodeError("SingleDataSetMessage is set but the message holds several")
    in_header = {
        "PublisherId": header and bool(nm & NM.PUBLISHER_ID),
        "WriterGroupName": header and bool(nm & NM.WRITER_GROUP_NAME),
    }
    dsms = [_encode_dataset_message(m, settings, codec, in_header) for m in msg.messages]
    body: Any = dsms[0] if single else dsms
    if not header:
        return body
    out: dict[str, Any] = {"MessageId": msg.message_id, "MessageType": "ua-data"}
    if nm & NM.PUBLISHER_ID:
        out["PublisherId"] = _required(msg.publisher_id, "PublisherId")
    if nm & NM.WRITER_GROUP_NAME and msg.writer_group_name is not None:
        out["WriterGroupName"] = msg.writer_group_name
    if nm & NM.DATASET_CLASS_ID and msg.dataset_class_id is not None:
        out["DataSetClassId"] = str(msg.dataset_class_id)
    out["Messages"] = body
    return out


def _encode_dataset_message(
    m: DataSetMessage, s: JsonMessageSettings, codec: JsonCodec, in_header: Mapping[str, bool]
) -> Any:
    payload = None if m.payload is None else _encode_payload(m, s, codec)
    if not s.network_mask & NM.DATASET_MESSAGE_HEADER:
        if payload is None:
            raise EncodeError("a keep-alive needs the DataSetMessageHeader bit")
        return payload
    dm = s.dataset_mask
    out: dict[str, Any] = {}
    if dm & DM.DATASET_WRITER_ID:
        out["DataSetWriterId"] = _uint(m.dataset_writer_id, "DataSetWriterId", 16)
    if dm & DM.DATASET_WRITER_NAME and m.dataset_writer_name is not None:
        out["DataSetWriterName"] = m.dataset_writer_name
    # Members the NetworkMessage header already carries are not repeated (§7.2.5.4.1).
    if dm & DM.PUBLISHER_ID and not in_header["PublisherId"] and m.publisher_id is not None:
        out["PublisherId"] = m.publisher_id
    if (
        dm & DM.WRITER_GROUP_NAME
        and not in_header["WriterGroupName"]
        and m.writer_group_name is not None
    ):
        out["WriterGroupName"] = m.writer_group_name
    if dm & DM.SEQUENCE_NUMBER and m.sequence_number is not None:
        out["SequenceNumber"] = _uint(m.sequence_number, "SequenceNumber", 32)
    if dm & DM.METADATA_VERSION and m.metadata_version is not None:
        out["MetaDataVersion"] = {
            "MajorVersion": _uint(m.metadata_version.MajorVersion, "MajorVersion", 32),
            "MinorVersion": _uint(m.metadata_version.MinorVersion, "MinorVersion", 32),
        }
    if dm & DM.MINOR_VERSION and m.minor_version is not None:
        out["MinorVersion"] = _uint(m.minor_version, "MinorVersion", 32)
    if dm & DM.TIMESTAMP and m.timestamp is not None:
        out["Timestamp"] = encode_datetime(m.timestamp)
    if dm & DM.STATUS and m.status is not None and m.status.value != 0:
        out["Status"] = codec.encode_status_code(m.status)
    if dm & DM.MESSAGE_TYPE:
        out["MessageType"] = m.message_type.value
    if payload is not None:
        out["Payload"] = payload
    return out


def _encode_payload(m: DataSetMessage, s: JsonMessageSettings, codec: JsonCodec) -> dict[str, Any]:
    assert m.payload is not None
    members = s.data_value_members
    raw = bool(s.field_mask & FM.RAW_DATA)
    out: dict[str, Any] = {}
    for name, dv in m.payload.items():
        if members is not None:
            out[name] = codec.encode_data_value(dv, members=members)
            continue
        variant = dv.Value if dv.Value is not None else ua.Variant()
        status = dv.StatusCode
        if status is not None and status.is_bad():
            # Variant/RawData fields carry a Bad status instead of the value (§6.2.4.2).
            variant = ua.Variant(status, VT.StatusCode)
        out[name] = codec.encode_variant(variant, raw=raw)
    return out


def encode_metadata_message(msg: MetaDataMessage, codec: JsonCodec | None = None) -> dict[str, Any]:
    """The JSON value of a ua-metadata message (Part 14 §7.2.5.5.2), member order as the spec
    lists them."""
    codec = codec or JsonCodec(FieldEncoding.COMPACT, _metadata_namespaces(msg.metadata.Namespaces))
    out: dict[str, Any] = {
        "MessageId": msg.message_id,
        "MessageType": "ua-metadata",
        "PublisherId": msg.publisher_id,
        "DataSetWriterId": _uint(msg.dataset_writer_id, "DataSetWriterId", 16),
    }
    if msg.writer_group_name is not None:
        out["WriterGroupName"] = msg.writer_group_name
    if msg.dataset_writer_name is not None:
        out["DataSetWriterName"] = msg.dataset_writer_name
    if msg.timestamp is not None:
        out["Timestamp"] = encode_datetime(msg.timestamp)
    out["MetaData"] = codec.encode_structure(msg.metadata)
    return out


def encode_status_message(msg: StatusMessage) -> dict[str, Any]:
    """ua-status (Part 14 §7.2.5.5.5): Timestamp and NextReportTime only when cyclic."""
    out: dict[str, Any] = {
        "MessageId": msg.message_id,
        "MessageType": "ua-status",
        "PublisherId": msg.publisher_id,
    }
    if msg.is_cyclic:
        out["Timestamp"] = encode_datetime(_required(msg.timestamp, "Timestamp"))
    out["IsCyclic"] = msg.is_cyclic
    out["Status"] = int(msg.status)
    if msg.is_cyclic:
        out["NextReportTime"] = encode_datetime(_required(msg.next_report_time, "NextReportTime"))
    return out


def encode_connection_message(
    msg: ConnectionMessage, codec: JsonCodec | None = None
) -> dict[str, Any]:
    """ua-connection (Part 14 §7.2.5.5.6): the PubSubConnectionDataType as a structure."""
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    out: dict[str, Any] = {
        "MessageId": msg.message_id,
        "MessageType": "ua-connection",
        "PublisherId": msg.publisher_id,
    }
    if msg.timestamp is not None:
        out["Timestamp"] = encode_datetime(msg.timestamp)
    out["Connection"] = codec.encode_structure(msg.connection)
    return out


def dumps(value: Any) -> bytes:
    """Serialise a message's JSON value; orjson keeps member order and is fast on the hot path."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parse JSON text, raising DecodeError (not orjson's error) on malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DecodeError("", f"not JSON: {e}") from None


# ------------------------------------------------------------------------------ decoding


def decode_message(
    data: bytes | str | Any,
    *,
    codec: JsonCodec | None = None,
    field_types: FieldTypes | None = None,
) -> AnyMessage:
    """Decode any PubSub JSON message; bytes and str are parsed first.

    A data message published without the NetworkMessage header (a bare DataSetMessage, an array
    of them, or a bare payload) is returned wrapped in a NetworkMessage with no header members.
    """
    obj = loads(data) if isinstance(data, bytes | str) else data
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    if isinstance(obj, dict) and "MessageType" in obj and "Payload" not in obj:
        kind = obj["MessageType"]
        if kind == "ua-data":
            return _decode_network_message(obj, codec, field_types)
        if kind == "ua-metadata":
            return decode_metadata_message(obj, codec)
        if kind == "ua-status":
            return decode_status_message(obj)
        if kind == "ua-connection":
            return decode_connection_message(obj, codec)
        if not isinstance(kind, str) or not kind.startswith("ua-"):
            raise DecodeError("MessageType", f"unknown message type {kind!r}")
        if kind not in {t.value for t in DataSetMessageType}:
            raise DecodeError("MessageType", f"unsupported message type {kind!r}")
    return NetworkMessage(
        messages=_decode_messages_member(obj, codec, field_types, None, ""), message_id=""
    )


def _decode_network_message(
    obj: dict[str, Any], codec: JsonCodec, field_types: FieldTypes | None
) -> NetworkMessage:
    message_id = _str_member(obj, "MessageId", required=True)
    publisher = _publisher_id(obj)
    group = _str_member(obj, "WriterGroupName")
    class_id = None
    if obj.get("DataSetClassId") is not None:
        class_id = _guid_member(obj, "DataSetClassId")
    if "Messages" not in obj:
        raise DecodeError("Messages", "missing member")
    messages = _decode_messages_member(obj["Messages"], codec, field_types, publisher, "Messages")
    for m in messages:
        m.publisher_id = m.publisher_id or publisher
        m.writer_group_name = m.writer_group_name or group
    return NetworkMessage(
        messages=messages,
        message_id=message_id or "",
        publisher_id=publisher,
        writer_group_name=group,
        dataset_class_id=class_id,
    )


def _decode_messages_member(
    value: Any,
    codec: JsonCodec,
    field_types: FieldTypes | None,
    publisher: str | None,
    path: str,
) -> list[DataSetMessage]:
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            out.append(_decode_dataset_message(item, codec, field_types, publisher, f"{path}/{i}"))
        return out
    return [_decode_dataset_message(value, codec, field_types, publisher, path)]


_DSM_HEADER_KEYS: Final = frozenset(
    {"DataSetWriterId", "SequenceNumber", "MetaDataVersion", "MessageType", "Payload"}
)


def _decode_dataset_message(
    obj: Any, codec: JsonCodec, field_types: FieldTypes | None, publisher: str | None, path: str
) -> DataSetMessage:
    try:
        if not isinstance(obj, dict):
            raise DecodeError("", f"expected a DataSetMessage object, got {json_type(obj)}")
        if "Payload" not in obj and not (_DSM_HEADER_KEYS & obj.keys()):
            # No DataSetMessage header: the object is the payload itself (§7.2.5.4.1).
            types = field_types(publisher, None) if field_types else None
            return DataSetMessage(payload=_decode_payload(obj, codec, types, "", publisher))
        m = DataSetMessage()
        if obj.get("DataSetWriterId") is not None:
            m.dataset_writer_id = _uint_member(obj, "DataSetWriterId", 16)
        m.dataset_writer_name = _str_member(obj, "DataSetWriterName")
        m.publisher_id = _publisher_id(obj) or publisher
        m.writer_group_name = _str_member(obj, "WriterGroupName")
        if obj.get("SequenceNumber") is not None:
            m.sequence_number = _uint_member(obj, "SequenceNumber", 32)
        if obj.get("MetaDataVersion") is not None:
            m.metadata_version = _decode_version(obj["MetaDataVersion"])
        if obj.get("MinorVersion") is not None:
            m.minor_version = _uint_member(obj, "MinorVersion", 32)
        if obj.get("Timestamp") is not None:
            m.timestamp = _member(obj, "Timestamp", decode_datetime)
        if obj.get("Status") is not None:
            m.status = _member(obj, "Status", codec.decode_status_code)
        payload = obj.get("Payload")
        kind = obj.get("MessageType")
        if kind is None:
            m.message_type = (
                DataSetMessageType.KEY_FRAME
                if payload is not None
                else DataSetMessageType.KEEP_ALIVE
            )
        else:
            try:
                m.message_type = DataSetMessageType(kind)
            except ValueError:
                raise DecodeError("MessageType", f"unknown DataSetMessage type {kind!r}") from None
        if payload is not None:
            if not isinstance(payload, dict):
                raise DecodeError("Payload", f"expected an object, got {json_type(payload)}")
            types = field_types(m.publisher_id, m.dataset_writer_id) if field_types else None
            m.payload = _decode_payload(payload, codec, types, "Payload", m.publisher_id)
        elif m.message_type is not DataSetMessageType.KEEP_ALIVE:
            raise DecodeError("Payload", f"missing member (a {m.message_type.value} needs one)")
        return m
    except DecodeError as e:
        raise e.within(path) if path else e from None


# DataValue members other than the Variant ones (Part 6 §5.4.2.18); an object made of these only
# is a DataValue whose value is null (Bad fields, or Good fields with no value).
_DV_ONLY_MEMBERS: Final = frozenset(
    {"Status", "SourceTimestamp", "SourcePicoseconds", "ServerTimestamp", "ServerPicoseconds"}
)
# Built-in types whose own JSON value is an object that may look like a DataValue or StatusCode,
# and those whose value may be the empty object.
_OBJECT_TYPES: Final = frozenset(
    {VT.ExtensionObject, VT.Variant, VT.DataValue, VT.DiagnosticInfo, VT.StatusCode}
)
_OBJECT_VALUED: Final = _OBJECT_TYPES | {
    VT.LocalizedText,
    VT.QualifiedName,
    VT.NodeId,
    VT.ExpandedNodeId,
}


def _decode_payload(
    payload: dict[str, Any],
    codec: JsonCodec,
    types: Mapping[str, ua.VariantType] | None,
    path: str,
    publisher: str | None,
) -> dict[str, ua.DataValue]:
    out: dict[str, ua.DataValue] = {}
    for name, value in payload.items():
        where = f"{path}/{name}" if path else name
        vtype = types.get(name) if types else None
        out[name] = _decode_field(value, codec, vtype, where)
    return out


def _decode_field(
    value: Any, codec: JsonCodec, vtype: ua.VariantType | None, where: str
) -> ua.DataValue:
    """One payload field as a Variant, a DataValue or RawData (Part 14 §6.2.4.2), any JSON form."""
    if isinstance(value, dict) and ("UaType" in value or "Type" in value):
        if "Type" in value and "UaType" not in value:
            dv = ua.DataValue(codec.decode_variant(value, path=where))
        else:
            dv = codec.decode_data_value(value, path=where)
        return _bad_status_instead_of_value(dv, vtype)
    if isinstance(value, dict) and "Value" in value:
        inner = value["Value"]
        typed_inner = isinstance(inner, dict) and ("Type" in inner or "UaType" in inner)
        if typed_inner and vtype not in _OBJECT_TYPES:
            vtype = None  # 1.04 DataValue: the value is a nested Variant naming its own type
        if vtype is not None or isinstance(inner, dict):
            return codec.decode_data_value(value, vtype=vtype, path=where)
    elif isinstance(value, dict) and vtype not in _OBJECT_TYPES:
        keys = value.keys()
        if keys & _DV_ONLY_MEMBERS or (not keys and vtype not in _OBJECT_VALUED):
            # A DataValue without a value: a Bad field, or a null value (defaults are omitted).
            return codec.decode_data_value(value, vtype=vtype, path=where)
        if vtype is not None and "Code" in keys:
            # RawData carries a Bad field's StatusCode instead of its value, as the Variant form
            # does (Part 14 §6.2.4.2 Table 26, JSON; OPC Foundation Mantis 10154).
            try:
                status = codec.decode_status_code(value)
            except DecodeError as e:
                raise e.within(where) from None
            if status.is_bad():
                return ua.DataValue(ua.Variant(), StatusCode=status)
    elif value is None and vtype is None:
        return ua.DataValue(ua.Variant())  # a null Variant (Part 6 §5.4.2.17)
    if vtype is not None:
        return ua.DataValue(codec.decode_variant(value, vtype=vtype, path=where))
    raise DecodeError(
        where,
        "the value carries no type (RawData or Verbose without UaType); "
        "decode it with the writer's metadata",
    )


def _bad_status_instead_of_value(dv: ua.DataValue, vtype: ua.VariantType | None) -> ua.DataValue:
    """A Variant field whose status is Bad carries the StatusCode instead of the value (Part 14
    §6.2.4.2, Table 26); when the field's type says it is no StatusCode, return it as the status."""
    v = dv.Value
    if (
        vtype is None
        or vtype in (VT.StatusCode, VT.Variant)
        or v is None
        or v.VariantType is not VT.StatusCode
        or v.is_array
        or not isinstance(v.Value, ua.StatusCode)
        or not v.Value.is_bad()
        or (dv.StatusCode is not None and dv.StatusCode.value != 0)
    ):
        return dv
    return ua.DataValue(
        ua.Variant(),
        StatusCode=v.Value,
        SourceTimestamp=dv.SourceTimestamp,
        ServerTimestamp=dv.ServerTimestamp,
        SourcePicoseconds=dv.SourcePicoseconds,
        ServerPicoseconds=dv.ServerPicoseconds,
    )


def decode_metadata_message(obj: Any, codec: JsonCodec | None = None) -> MetaDataMessage:
    """ua-metadata; the MetaData's own Namespaces resolve the NodeIds inside it."""
    obj = _expect_type(obj, "ua-metadata")
    meta_json = obj.get("MetaData")
    if not isinstance(meta_json, dict):
        raise DecodeError(
            "MetaData", "missing member" if meta_json is None else "expected an object"
        )
    namespaces = meta_json.get("Namespaces")
    if isinstance(namespaces, list) and all(isinstance(n, str) for n in namespaces) and namespaces:
        codec = JsonCodec(FieldEncoding.COMPACT, _metadata_namespaces(namespaces))
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    metadata = _member(obj, "MetaData", lambda v: codec.decode_structure(ua.DataSetMetaDataType, v))
    return MetaDataMessage(
        message_id=_str_member(obj, "MessageId", required=True) or "",
        publisher_id=_publisher_id(obj, required=True) or "",
        dataset_writer_id=_uint_member(obj, "DataSetWriterId", 16, required=True),
        writer_group_name=_str_member(obj, "WriterGroupName"),
        dataset_writer_name=_str_member(obj, "DataSetWriterName"),
        timestamp=_member(obj, "Timestamp", decode_datetime) if obj.get("Timestamp") else None,
        metadata=metadata,
    )


def decode_status_message(obj: Any) -> StatusMessage:
    """ua-status; Timestamp and NextReportTime are required when IsCyclic is true."""
    obj = _expect_type(obj, "ua-status")
    cyclic = obj.get("IsCyclic", False)
    if not isinstance(cyclic, bool):
        raise DecodeError("IsCyclic", f"expected a boolean, got {json_type(cyclic)}")
    raw_state = obj.get("Status")
    if raw_state is None:
        raise DecodeError("Status", "missing member")
    state = _decode_state(raw_state)
    timestamp = next_report = None
    if cyclic or obj.get("Timestamp") is not None:
        timestamp = _member(obj, "Timestamp", decode_datetime, required=cyclic)
    if cyclic or obj.get("NextReportTime") is not None:
        next_report = _member(obj, "NextReportTime", decode_datetime, required=cyclic)
    return StatusMessage(
        message_id=_str_member(obj, "MessageId", required=True) or "",
        publisher_id=_publisher_id(obj, required=True) or "",
        status=state,
        is_cyclic=cyclic,
        timestamp=timestamp,
        next_report_time=next_report,
    )


def decode_connection_message(obj: Any, codec: JsonCodec | None = None) -> ConnectionMessage:
    """ua-connection; the Connection member decodes to asyncua's PubSubConnectionDataType."""
    obj = _expect_type(obj, "ua-connection")
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    if not isinstance(obj.get("Connection"), dict):
        raise DecodeError("Connection", "missing member or not an object")
    connection = _member(
        obj, "Connection", lambda v: codec.decode_structure(ua.PubSubConnectionDataType, v)
    )
    return ConnectionMessage(
        message_id=_str_member(obj, "MessageId", required=True) or "",
        publisher_id=_publisher_id(obj, required=True) or "",
        timestamp=_member(obj, "Timestamp", decode_datetime) if obj.get("Timestamp") else None,
        connection=connection,
    )


# ------------------------------------------------------------------------------ helpers


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise EncodeError(f"{name} is required by the content mask but not set")
    return value


def _uint(value: Any, name: str, bits: int) -> int:
    v = _required(value, name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**bits:
        raise EncodeError(f"{name} must be a UInt{bits}, got {v!r}")
    return v


def _metadata_namespaces(namespaces: list[str] | None) -> list[str]:
    """The namespace table of a DataSetMetaData: its Namespaces array holds the URIs of indexes
    1, 2, ...; index 0 is the OPC UA namespace and is not in the array (DataTypeSchemaHeader,
    OPC 10000-5 §12.31)."""
    return [OPC_UA_NAMESPACE, *(namespaces or ())]


def _expect_type(obj: Any, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError("", f"expected a {kind} object, got {json_type(obj)}")
    if obj.get("MessageType") != kind:
        raise DecodeError("MessageType", f"expected {kind!r}, got {obj.get('MessageType')!r}")
    return obj


def _member(obj: dict[str, Any], key: str, fn: Callable[[Any], Any], required: bool = True) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise DecodeError(key, "missing member")
        return None
    try:
        return fn(obj[key])
    except DecodeError as e:
        raise e.within(key) from None


def _str_member(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise DecodeError(key, "missing member")
        return None
    if not isinstance(v, str):
        raise DecodeError(key, f"expected a string, got {json_type(v)}")
    return v


def _publisher_id(obj: dict[str, Any], *, required: bool = False) -> str | None:
    """PublisherId is a String in 1.05; older publishers write numbers, which we accept."""
    v = obj.get("PublisherId")
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return _str_member(obj, "PublisherId", required=required)


def _uint_member(obj: dict[str, Any], key: str, bits: int, *, required: bool = False) -> int:
    v = obj.get(key)
    if v is None and required:
        raise DecodeError(key, "missing member")
    if isinstance(v, str) and v.isascii() and v.isdigit():
        v = int(v)  # 1.04 wrote DataSetWriterId as a String (ASCII digits: int() rejects "²")
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**bits:
        raise DecodeError(key, f"expected a UInt{bits}, got {v!r}")
    return v


def _guid_member(obj: dict[str, Any], key: str) -> uuid.UUID:
    v = obj.get(key)
    if not isinstance(v, str):
        raise DecodeError(key, f"expected a Guid string, got {json_type(v)}")
    try:
        return uuid.UUID(v)
    except ValueError:
        raise DecodeError(key, f"{v!r} is not a Guid") from None


def _decode_version(v: Any) -> ua.ConfigurationVersionDataType:
    if not isinstance(v, dict):
        raise DecodeError("MetaDataVersion", f"expected an object, got {json_type(v)}")
    try:
        return ua.ConfigurationVersionDataType(
            MajorVersion=_uint_member(v, "MajorVersion", 32) if "MajorVersion" in v else 0,
            MinorVersion=_uint_member(v, "MinorVersion", 32) if "MinorVersion" in v else 0,
        )
    except DecodeError as e:
        raise e.within("MetaDataVersion") from None


def _decode_state(v: Any) -> ua.PubSubState:
    """PubSubState as a number (Compact) or ``"Name_N"`` / ``"Name"`` (Verbose / 1.04)."""
    if isinstance(v, str):
        name = v.split("_")[0]
        if name in ua.PubSubState.__members__:
            return ua.PubSubState[name]
        digits = v.rsplit("_", 1)[-1]
        if digits.isascii() and digits.isdigit():  # int() rejects other digits such as "²"
            v = int(digits)
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return ua.PubSubState(v)
        except ValueError:
            pass
    raise DecodeError("Status", f"{v!r} is not a PubSubState (0..4)")


def metadata_field_types(metadata: ua.DataSetMetaDataType) -> dict[str, ua.VariantType]:
    """Field name -> built-in type, as a subscriber needs it to read RawData payloads."""
    out: dict[str, ua.VariantType] = {}
    for f in metadata.Fields or ():
        try:
            out[f.Name] = VT(f.BuiltInType)
        except ValueError:
            out[f.Name] = VT.Variant
    return out


def metadata_version(metadata: ua.DataSetMetaDataType) -> tuple[int, int]:
    v = metadata.ConfigurationVersion
    return (int(v.MajorVersion), int(v.MinorVersion)) if v is not None else (0, 0)

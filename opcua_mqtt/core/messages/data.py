"""ua-data messages (Part 14 §7.2.5.3-4): NetworkMessages and their DataSetMessages, encoded
as the masks say and decoded from any layout the masks can produce."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.messages.members import (
    decode_version,
    guid_member,
    publisher_id_member,
    read_member,
    required_value,
    str_member,
    uint,
    uint_member,
)
from opcua_mqtt.core.messages.settings import (
    DM,
    FM,
    NM,
    DataSetMessageType,
    JsonMessageSettings,
)
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.scalars import VT, decode_datetime, encode_datetime, json_type


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


# What a subscriber passes to decode RawData payloads: (PublisherId, DataSetWriterId) -> the
# built-in type of each field, usually taken from the writer's metadata.
FieldTypes = Callable[[str | None, int | None], Mapping[str, ua.VariantType] | None]


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
        out["PublisherId"] = required_value(msg.publisher_id, "PublisherId")
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
        out["DataSetWriterId"] = uint(m.dataset_writer_id, "DataSetWriterId", 16)
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
        out["SequenceNumber"] = uint(m.sequence_number, "SequenceNumber", 32)
    if dm & DM.METADATA_VERSION and m.metadata_version is not None:
        out["MetaDataVersion"] = {
            "MajorVersion": uint(m.metadata_version.MajorVersion, "MajorVersion", 32),
            "MinorVersion": uint(m.metadata_version.MinorVersion, "MinorVersion", 32),
        }
    if dm & DM.MINOR_VERSION and m.minor_version is not None:
        out["MinorVersion"] = uint(m.minor_version, "MinorVersion", 32)
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


def decode_network_message(
    obj: dict[str, Any], codec: JsonCodec, field_types: FieldTypes | None
) -> NetworkMessage:
    message_id = str_member(obj, "MessageId", required=True)
    publisher = publisher_id_member(obj)
    group = str_member(obj, "WriterGroupName")
    class_id = None
    if obj.get("DataSetClassId") is not None:
        class_id = guid_member(obj, "DataSetClassId")
    if "Messages" not in obj:
        raise DecodeError("Messages", "missing member")
    messages = decode_messages_member(obj["Messages"], codec, field_types, publisher, "Messages")
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


def decode_messages_member(
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
            m.dataset_writer_id = uint_member(obj, "DataSetWriterId", 16)
        m.dataset_writer_name = str_member(obj, "DataSetWriterName")
        m.publisher_id = publisher_id_member(obj) or publisher
        m.writer_group_name = str_member(obj, "WriterGroupName")
        if obj.get("SequenceNumber") is not None:
            m.sequence_number = uint_member(obj, "SequenceNumber", 32)
        if obj.get("MetaDataVersion") is not None:
            m.metadata_version = decode_version(obj["MetaDataVersion"])
        if obj.get("MinorVersion") is not None:
            m.minor_version = uint_member(obj, "MinorVersion", 32)
        if obj.get("Timestamp") is not None:
            m.timestamp = read_member(obj, "Timestamp", decode_datetime)
        if obj.get("Status") is not None:
            m.status = read_member(obj, "Status", codec.decode_status_code)
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

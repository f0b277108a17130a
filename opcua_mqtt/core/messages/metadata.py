"""ua-metadata, ua-status and ua-connection messages (Part 14 §7.2.5.5): what a publisher says
about itself rather than its data."""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import datetime
from typing import Any

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.messages.members import (
    expect_type,
    publisher_id_member,
    read_member,
    required_value,
    str_member,
    uint,
    uint_member,
)
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.node_ids import OPC_UA_NAMESPACE
from opcua_mqtt.core.uajson.scalars import VT, decode_datetime, encode_datetime, json_type


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


def encode_metadata_message(msg: MetaDataMessage, codec: JsonCodec | None = None) -> dict[str, Any]:
    """The JSON value of a ua-metadata message (Part 14 §7.2.5.5.2), member order as the spec
    lists them."""
    codec = codec or JsonCodec(FieldEncoding.COMPACT, _metadata_namespaces(msg.metadata.Namespaces))
    out: dict[str, Any] = {
        "MessageId": msg.message_id,
        "MessageType": "ua-metadata",
        "PublisherId": msg.publisher_id,
        "DataSetWriterId": uint(msg.dataset_writer_id, "DataSetWriterId", 16),
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
        out["Timestamp"] = encode_datetime(required_value(msg.timestamp, "Timestamp"))
    out["IsCyclic"] = msg.is_cyclic
    out["Status"] = int(msg.status)
    if msg.is_cyclic:
        out["NextReportTime"] = encode_datetime(
            required_value(msg.next_report_time, "NextReportTime")
        )
    return out


def status_overdue(msg: StatusMessage, now: datetime) -> bool:
    """Whether a cyclic ua-status missed its NextReportTime (Part 14 §7.2.4.6.7: a cyclic
    publisher promises its next report by then) by more than half a period: the publisher may
    be gone without a last will, so its state is unknown. A non-cyclic status never is."""
    if not msg.is_cyclic or msg.next_report_time is None:
        return False
    period = msg.next_report_time - (msg.timestamp or msg.next_report_time)
    return now > msg.next_report_time + period / 2


def status_expiry_s(interval_s: float) -> int:
    """MQTT 5 Message Expiry of the retained ua-status and ua-connection: two periods, so a
    refresh that is merely late keeps them, and a bridge that died unseen lets them go."""
    return math.ceil(2 * interval_s)


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


def decode_metadata_message(obj: Any, codec: JsonCodec | None = None) -> MetaDataMessage:
    """ua-metadata; the MetaData's own Namespaces resolve the NodeIds inside it."""
    obj = expect_type(obj, "ua-metadata")
    meta_json = obj.get("MetaData")
    if not isinstance(meta_json, dict):
        raise DecodeError(
            "MetaData", "missing member" if meta_json is None else "expected an object"
        )
    namespaces = meta_json.get("Namespaces")
    if isinstance(namespaces, list) and all(isinstance(n, str) for n in namespaces) and namespaces:
        codec = JsonCodec(FieldEncoding.COMPACT, _metadata_namespaces(namespaces))
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    metadata = read_member(
        obj, "MetaData", lambda v: codec.decode_structure(ua.DataSetMetaDataType, v)
    )
    return MetaDataMessage(
        message_id=str_member(obj, "MessageId", required=True) or "",
        publisher_id=publisher_id_member(obj, required=True) or "",
        dataset_writer_id=uint_member(obj, "DataSetWriterId", 16, required=True),
        writer_group_name=str_member(obj, "WriterGroupName"),
        dataset_writer_name=str_member(obj, "DataSetWriterName"),
        timestamp=read_member(obj, "Timestamp", decode_datetime) if obj.get("Timestamp") else None,
        metadata=metadata,
    )


def decode_status_message(obj: Any) -> StatusMessage:
    """ua-status; Timestamp and NextReportTime are required when IsCyclic is true."""
    obj = expect_type(obj, "ua-status")
    cyclic = obj.get("IsCyclic", False)
    if not isinstance(cyclic, bool):
        raise DecodeError("IsCyclic", f"expected a boolean, got {json_type(cyclic)}")
    raw_state = obj.get("Status")
    if raw_state is None:
        raise DecodeError("Status", "missing member")
    state = _decode_state(raw_state)
    timestamp = next_report = None
    if cyclic or obj.get("Timestamp") is not None:
        timestamp = read_member(obj, "Timestamp", decode_datetime, required=cyclic)
    if cyclic or obj.get("NextReportTime") is not None:
        next_report = read_member(obj, "NextReportTime", decode_datetime, required=cyclic)
    return StatusMessage(
        message_id=str_member(obj, "MessageId", required=True) or "",
        publisher_id=publisher_id_member(obj, required=True) or "",
        status=state,
        is_cyclic=cyclic,
        timestamp=timestamp,
        next_report_time=next_report,
    )


def decode_connection_message(obj: Any, codec: JsonCodec | None = None) -> ConnectionMessage:
    """ua-connection; the Connection member decodes to asyncua's PubSubConnectionDataType."""
    obj = expect_type(obj, "ua-connection")
    codec = codec or JsonCodec(FieldEncoding.COMPACT)
    if not isinstance(obj.get("Connection"), dict):
        raise DecodeError("Connection", "missing member or not an object")
    connection = read_member(
        obj, "Connection", lambda v: codec.decode_structure(ua.PubSubConnectionDataType, v)
    )
    return ConnectionMessage(
        message_id=str_member(obj, "MessageId", required=True) or "",
        publisher_id=publisher_id_member(obj, required=True) or "",
        timestamp=read_member(obj, "Timestamp", decode_datetime) if obj.get("Timestamp") else None,
        connection=connection,
    )


def _metadata_namespaces(namespaces: list[str] | None) -> list[str]:
    """The namespace table of a DataSetMetaData: its Namespaces array holds the URIs of indexes
    1, 2, ...; index 0 is the OPC UA namespace and is not in the array (DataTypeSchemaHeader,
    OPC 10000-5 §12.31)."""
    return [OPC_UA_NAMESPACE, *(namespaces or ())]


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

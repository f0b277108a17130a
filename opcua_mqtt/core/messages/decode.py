"""Any PubSub JSON message, told apart by its MessageType."""

from __future__ import annotations

from typing import Any

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.messages.data import (
    FieldTypes,
    NetworkMessage,
    decode_messages_member,
    decode_network_message,
)
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.metadata import (
    ConnectionMessage,
    MetaDataMessage,
    StatusMessage,
    decode_connection_message,
    decode_metadata_message,
    decode_status_message,
)
from opcua_mqtt.core.messages.settings import DataSetMessageType
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding

AnyMessage = NetworkMessage | MetaDataMessage | StatusMessage | ConnectionMessage


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
            return decode_network_message(obj, codec, field_types)
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
        messages=decode_messages_member(obj, codec, field_types, None, ""), message_id=""
    )

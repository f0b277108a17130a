"""Reading and writing the header members every PubSub JSON message shares, and the JSON text."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
from asyncua import ua

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.uajson.scalars import json_type


def dumps(value: Any) -> bytes:
    """Serialise a message's JSON value; orjson keeps member order and is fast on the hot path."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parse JSON text, raising DecodeError (not orjson's error) on malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DecodeError("", f"not JSON: {e}") from None


def required_value(value: Any, name: str) -> Any:
    if value is None:
        raise EncodeError(f"{name} is required by the content mask but not set")
    return value


def uint(value: Any, name: str, bits: int) -> int:
    v = required_value(value, name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**bits:
        raise EncodeError(f"{name} must be a UInt{bits}, got {v!r}")
    return v


def expect_type(obj: Any, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError("", f"expected a {kind} object, got {json_type(obj)}")
    if obj.get("MessageType") != kind:
        raise DecodeError("MessageType", f"expected {kind!r}, got {obj.get('MessageType')!r}")
    return obj


def read_member(
    obj: dict[str, Any], key: str, fn: Callable[[Any], Any], required: bool = True
) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise DecodeError(key, "missing member")
        return None
    try:
        return fn(obj[key])
    except DecodeError as e:
        raise e.within(key) from None


def str_member(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise DecodeError(key, "missing member")
        return None
    if not isinstance(v, str):
        raise DecodeError(key, f"expected a string, got {json_type(v)}")
    return v


def publisher_id_member(obj: dict[str, Any], *, required: bool = False) -> str | None:
    """PublisherId is a String in 1.05; older publishers write numbers, which we accept."""
    v = obj.get("PublisherId")
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return str_member(obj, "PublisherId", required=required)


def uint_member(obj: dict[str, Any], key: str, bits: int, *, required: bool = False) -> int:
    v = obj.get(key)
    if v is None and required:
        raise DecodeError(key, "missing member")
    if isinstance(v, str) and v.isascii() and v.isdigit():
        v = int(v)  # 1.04 wrote DataSetWriterId as a String (ASCII digits: int() rejects "²")
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**bits:
        raise DecodeError(key, f"expected a UInt{bits}, got {v!r}")
    return v


def guid_member(obj: dict[str, Any], key: str) -> uuid.UUID:
    v = obj.get(key)
    if not isinstance(v, str):
        raise DecodeError(key, f"expected a Guid string, got {json_type(v)}")
    try:
        return uuid.UUID(v)
    except ValueError:
        raise DecodeError(key, f"{v!r} is not a Guid") from None


def decode_version(v: Any) -> ua.ConfigurationVersionDataType:
    if not isinstance(v, dict):
        raise DecodeError("MetaDataVersion", f"expected an object, got {json_type(v)}")
    try:
        return ua.ConfigurationVersionDataType(
            MajorVersion=uint_member(v, "MajorVersion", 32) if "MajorVersion" in v else 0,
            MinorVersion=uint_member(v, "MinorVersion", 32) if "MinorVersion" in v else 0,
        )
    except DecodeError as e:
        raise e.within("MetaDataVersion") from None

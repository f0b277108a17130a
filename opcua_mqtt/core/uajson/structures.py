"""Structures and ExtensionObjects: asyncua dataclasses to and from JSON members."""

from __future__ import annotations

import dataclasses
import enum
import struct
import typing
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.uajson.context import MISSING, DecodeContext, Nesting, at_path
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.node_ids import NodeIdCodec
from opcua_mqtt.core.uajson.scalars import (
    DEFAULTS,
    INT_RANGES,
    VT,
    decode_bytes,
    decode_int,
    enc_bytes,
    expect_str,
    json_type,
)


@dataclasses.dataclass(frozen=True, slots=True)
class UnknownStructure:
    """A JSON-encoded Structure whose DataType this process does not know.

    Kept as its raw members so that a subscriber can still look at it and re-encode it unchanged.
    """

    type_id: ua.NodeId
    fields: Mapping[str, Any]


class StructureCodec(NodeIdCodec):
    """Structures and ExtensionObjects (Part 6 §5.4.2.16, §5.4.6): their members are values of
    any built-in type, which :class:`~opcua_mqtt.core.uajson.codec.JsonCodec` supplies."""

    def encode_value(self, value: Any, vtype: ua.VariantType) -> Any:
        raise NotImplementedError

    def encode_variant(self, variant: ua.Variant, *, raw: bool = False) -> Any:
        raise NotImplementedError

    def _decode_scalar(self, x: Any, vt: ua.VariantType, ctx: DecodeContext) -> Any:
        raise NotImplementedError

    def encode_extension_object(self, obj: Any) -> Any:
        """ExtensionObject (§5.4.2.16): JSON structures inline with ``UaTypeId``, others as body.

        asyncua hands us either a decoded structure (a dataclass registered with asyncua) or a
        raw ``ua.ExtensionObject`` whose body is UA Binary.
        """
        if isinstance(obj, UnknownStructure):
            return self._structure_envelope(obj.type_id, dict(obj.fields))
        if isinstance(obj, ua.ExtensionObject):
            if obj.Body is None:
                return {} if self._verbose else None
            known = ua.extension_objects_by_typeid.get(obj.TypeId)
            if known is not None:
                from asyncua.common.utils import Buffer
                from asyncua.ua.ua_binary import struct_from_binary

                try:
                    decoded = struct_from_binary(known, Buffer(obj.Body))
                except (ValueError, struct.error, ua.UaError) as e:
                    raise EncodeError(f"cannot decode the binary body of {obj.TypeId}: {e}") from e
                return self.encode_extension_object(decoded)
            if self.encoding is FieldEncoding.NON_REVERSIBLE:
                return enc_bytes(obj.Body)
            if self._is105:
                return {
                    "UaTypeId": self.encode_node_id(obj.TypeId),
                    "UaEncoding": 1,
                    "UaBody": enc_bytes(obj.Body),
                }
            return {
                "TypeId": self.encode_node_id(obj.TypeId),
                "Encoding": 1,
                "Body": enc_bytes(obj.Body),
            }
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            data_type = getattr(type(obj), "data_type", None)
            if not isinstance(data_type, ua.NodeId):
                raise EncodeError(f"{type(obj).__name__} is not a registered OPC UA structure")
            return self._structure_envelope(data_type, self.encode_structure(obj))
        raise EncodeError(f"cannot encode {type(obj).__name__} as an ExtensionObject")

    def encode_structure(self, obj: Any) -> dict[str, Any]:
        """Encode the members of a structure (Part 6 §5.4.6) without any type envelope."""
        out: dict[str, Any] = {}
        cls: type = type(obj)
        # Verbose and NonReversible write null members as null and defaults as they are (§5.4.6
        # Table 44; the 1.05.02 table names the columns Reversible / Non-Reversible).
        keep = self._verbose or self.encoding is FieldEncoding.NON_REVERSIBLE
        for f, hint in _struct_fields(cls):
            value = getattr(obj, f.name)
            if not keep and _is_default_value(value):
                continue
            enc = self._encode_member(value, hint)
            if enc is None or (not keep and _is_default_json(enc)):
                if keep:
                    out[f.name] = enc
                continue
            out[f.name] = enc
        return out

    def _decode_extension_object(self, x: Any, ctx: DecodeContext) -> Any:
        if x is None:
            return ua.ExtensionObject()
        if not isinstance(x, dict):
            raise DecodeError("", f"expected an ExtensionObject, got {json_type(x)}")
        if not x:
            return ua.ExtensionObject()  # the Verbose default (Part 6 §5.4.2.16)
        if "UaTypeId" in x:
            try:
                type_id = self.decode_node_id(x["UaTypeId"])
            except DecodeError as e:
                raise e.within("UaTypeId") from None
            encoding = x.get("UaEncoding", 0)
            if encoding in (1, 2):
                body = x.get("UaBody")
                raw = decode_bytes(body) if encoding == 1 else expect_str(body, "UaBody").encode()
                return ua.ExtensionObject(TypeId=type_id, Body=raw)
            if encoding not in (0, None):
                raise DecodeError("UaEncoding", f"unknown encoding {encoding!r}")
            fields = {k: v for k, v in x.items() if k not in ("UaTypeId", "UaEncoding")}
            return self._decode_structure(type_id, fields, ctx)
        if "TypeId" in x:  # 1.04 Reversible
            try:
                type_id = self.decode_node_id(x["TypeId"])
            except DecodeError as e:
                raise e.within("TypeId") from None
            encoding = x.get("Encoding", 0)
            body = x.get("Body")
            if encoding == 1:
                return ua.ExtensionObject(TypeId=type_id, Body=decode_bytes(body))
            if encoding == 2:
                return ua.ExtensionObject(TypeId=type_id, Body=expect_str(body, "Body").encode())
            if not isinstance(body, dict):
                raise DecodeError("Body", f"expected a structure object, got {json_type(body)}")
            return self._decode_structure(type_id, body, ctx)
        raise DecodeError("UaTypeId", "missing member (an ExtensionObject needs UaTypeId)")

    def decode_structure(self, cls: type, obj: Any, *, path: str = "") -> Any:
        """Decode the members of a structure of known class (no type envelope), e.g. MetaData."""
        if not isinstance(obj, dict):
            raise DecodeError(path, f"expected a structure object, got {json_type(obj)}")
        return at_path(path, self._decode_structure, cls.data_type, obj, DecodeContext(), cls)  # type: ignore[attr-defined]

    def _decode_structure(
        self,
        type_id: ua.NodeId,
        fields: dict[str, Any],
        ctx: DecodeContext,
        cls: type | None = None,
    ) -> Any:
        cls = cls or structure_class(type_id)
        if cls is None:
            return UnknownStructure(type_id, fields)
        try:
            members = _struct_fields(cls)
        except _UnusableStructure:
            return UnknownStructure(type_id, fields)  # keep the members as they came
        kwargs: dict[str, Any] = {}
        for f, hint in members:
            if f.name in fields and fields[f.name] is not None:
                try:
                    kwargs[f.name] = self._decode_member(fields[f.name], hint, ctx)
                except DecodeError as e:
                    raise e.within(f.name) from None
            else:
                # Compact omits a member equal to its built-in type's default (Part 6 §5.4.6),
                # which is not always asyncua's field default (BrowseDescription.IncludeSubtypes
                # defaults to True there): restore the built-in default.
                default = _member_default(hint)
                if default is not MISSING:
                    kwargs[f.name] = default
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise DecodeError("", f"cannot build {cls.__name__}: {e}") from None

    def _encode_member(self, value: Any, hint: Any) -> Any:
        kind, inner = _classify(hint)
        if value is None:
            return None
        if kind == "list":
            return [self._encode_member(v, inner) for v in value]
        if kind == "builtin":
            if inner is VT.Variant:
                return self.encode_variant(value)
            return self.encode_value(value, inner)
        if kind == "enum":
            return int(value)
        if kind == "struct":
            if dataclasses.is_dataclass(value) and type(value) is not inner:
                return self.encode_extension_object(value)  # a subtype travels with its type id
            return self.encode_structure(value)
        return self.encode_extension_object(value)

    def _decode_member(self, x: Any, hint: Any, ctx: DecodeContext) -> Any:
        kind, inner = _classify(hint)
        if kind == "list":
            if not isinstance(x, list):
                raise DecodeError("", f"expected an array, got {json_type(x)}")
            out = []
            for i, v in enumerate(x):
                try:
                    out.append(None if v is None else self._decode_member(v, inner, ctx))
                except DecodeError as e:
                    raise e.within(i) from None
            return out
        if kind == "builtin":
            return self._decode_scalar(x, inner, ctx)
        if kind == "enum":
            number = decode_int(x, VT.Int32)
            try:
                return inner(number)
            except ValueError:
                raise DecodeError("", f"{number} is not a value of {inner.__name__}") from None
        with Nesting(ctx):
            if kind == "struct":
                if isinstance(x, dict) and "UaTypeId" in x:
                    return self._decode_extension_object(x, ctx)
                if not isinstance(x, dict):
                    raise DecodeError("", f"expected a structure object, got {json_type(x)}")
                # the member's class is known: no need for (registered) type-id lookups
                return self._decode_structure(inner.data_type, x, ctx, inner)
            return self._decode_extension_object(x, ctx)

    def _structure_envelope(self, type_id: ua.NodeId, fields: dict[str, Any]) -> Any:
        if self.encoding is FieldEncoding.NON_REVERSIBLE:
            return fields
        if self._is105:
            out: dict[str, Any] = {"UaTypeId": self.encode_node_id(type_id)}
            out.update(fields)
            return out
        return {"TypeId": self.encode_node_id(type_id), "Body": fields}


def structure_class(type_id: ua.NodeId) -> type | None:
    """The asyncua class of a structure DataType (or of one of its encodings), if registered.

    asyncua registers its built-in structures by encoding id only, custom ones by DataType too.
    """
    cls: type | None = ua.extension_objects_by_datatype.get(type_id)
    if cls is None:
        cls = _by_data_type().get(type_id)
    if cls is None:
        cls = ua.extension_objects_by_typeid.get(type_id)
    return cls


_BY_DATA_TYPE: dict[ua.NodeId, type] = {}


def _by_data_type() -> dict[ua.NodeId, type]:
    if len(_BY_DATA_TYPE) != len(ua.extension_objects_by_typeid):
        _BY_DATA_TYPE.clear()
        for cls in ua.extension_objects_by_typeid.values():
            dt = getattr(cls, "data_type", None)
            if isinstance(dt, ua.NodeId):
                _BY_DATA_TYPE.setdefault(dt, cls)
    return _BY_DATA_TYPE


class _UnusableStructure(EncodeError):
    """A registered asyncua structure class whose member types cannot be resolved."""


@lru_cache(maxsize=512)
def _struct_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """The encodable fields of an asyncua structure with their resolved type hints."""
    try:
        # ua's names as locals, so that the class's own module still resolves the rest (a
        # structure defined outside asyncua that names a sibling class, as in §5.4.6)
        hints = typing.get_type_hints(cls, localns={"ua": ua, **vars(ua)})
    except (NameError, AttributeError, TypeError) as e:
        # asyncua 2.1 registers classes whose hints name missing types (i=24338 refers to
        # ua.PortableNodeId): such a structure can be neither encoded nor decoded member-wise.
        raise _UnusableStructure(f"cannot resolve the members of {cls.__name__}: {e}") from None
    return tuple(
        (f, hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name != "Encoding" and f.name in hints
    )


def _classify(hint: Any) -> tuple[str, Any]:
    """Reduce a field's type hint to (kind, detail) for the structure encoder."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _classify(args[0]) if len(args) == 1 else ("extension", None)
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        return "list", arg
    if isinstance(hint, type):
        if issubclass(hint, enum.IntEnum | enum.IntFlag):
            return "enum", hint
        name = hint.__name__
        if name in VT.__members__ and name not in ("Null", "ExtensionObject"):
            return "builtin", VT[name]
        if hint is bool:
            return "builtin", VT.Boolean
        if hint is str:
            return "builtin", VT.String
        if hint is int:
            return "builtin", VT.Int64
        if hint is float:
            return "builtin", VT.Double
        if hint is bytes:
            return "builtin", VT.ByteString
        if hint is datetime:
            return "builtin", VT.DateTime
        if hint is uuid.UUID:
            return "builtin", VT.Guid
        if dataclasses.is_dataclass(hint) and isinstance(
            getattr(hint, "data_type", None), ua.NodeId
        ):
            return "struct", hint
    return "extension", None


def _is_default_value(value: Any) -> bool:
    """Null Guid and null NodeId are their types' defaults, which Compact omits (§5.4.2.1)."""
    if isinstance(value, uuid.UUID):
        return value.int == 0
    if type(value) is ua.NodeId:
        return bool(value.NamespaceIndex == 0 and value.Identifier in (0, None, "", b""))
    return False


# Part 6 Table 1: the built-in types besides the integers that are not nullable.
_NON_NULLABLE_OTHERS: Final = frozenset({VT.Boolean, VT.Float, VT.Double, VT.StatusCode})


def _member_default(hint: Any) -> Any:
    """The built-in default of a non-nullable member type, or ``MISSING`` to keep asyncua's."""
    kind, inner = _classify(hint)
    if kind == "builtin" and (inner in INT_RANGES or inner in _NON_NULLABLE_OTHERS):
        return DEFAULTS[inner]()
    if kind == "enum":
        try:
            return inner(0)
        except ValueError:
            return MISSING
    return MISSING


def _is_default_json(enc: Any) -> bool:
    """Whether Compact may omit a structure member (Part 6 §5.4.2.1): the type's default."""
    if enc is False or enc == [] or enc == {}:
        return True
    return type(enc) in (int, float) and enc == 0

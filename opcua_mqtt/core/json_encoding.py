"""OPC UA JSON encoding (OPC 10000-6 1.05 §5.4, and the deprecated 1.04 forms of Annex H).

Values are asyncua's ``ua`` types so that the bridge hands subscription results straight to the
encoder. Four forms exist because Part 14 selects them with the FieldEncoding bits:

* ``COMPACT`` and ``VERBOSE`` (1.05): Variant ``{"UaType":n,"Value":…}``, NodeId as a string,
  StatusCode as ``{"Code":…,"Symbol":…}`` (Symbol only in Verbose);
* ``REVERSIBLE`` (1.04): Variant ``{"Type":n,"Body":…}``, NodeId as an object, StatusCode a number;
* ``NON_REVERSIBLE`` (1.04): values without type information; encode only.

The decoder reads the three reversible forms and tells them apart by JSON type, as Annex H says.
Every decoding failure raises :class:`DecodeError` naming the member; unknown members are ignored.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import math
import re
import struct
import typing
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from asyncua import ua
from asyncua.ua import status_codes

from opcua_mqtt.core.errors import DecodeError, EncodeError

__all__ = [
    "OPC_UA_NAMESPACE",
    "FieldEncoding",
    "JsonCodec",
    "NamespaceTable",
    "UnknownStructure",
]

OPC_UA_NAMESPACE: Final = "http://opcfoundation.org/UA/"
MAX_NESTING: Final = 100  # Part 6 §5.1.5: decoders shall support at least 100 levels

VT = ua.VariantType

# DateTime range (Part 6 §5.1.4/§5.4.2.6): a UA DateTime cannot precede 1601 (binary tick 0) nor
# pass 9999-12-31T23:59:59; JSON writes the ends as these two literal strings.
DATETIME_MIN: Final = datetime(1601, 1, 1, tzinfo=UTC)
DATETIME_MAX: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
JSON_DATETIME_MIN: Final = "0001-01-01T00:00:00Z"
JSON_DATETIME_MAX: Final = "9999-12-31T23:59:59Z"

#: Value range of each integer built-in type (OPC 10000-6 §5.1.2).
INT_RANGES: Final[dict[ua.VariantType, tuple[int, int]]] = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX: Final = 3.4028234663852886e38
# Types whose scalar value may be null (Part 6 §5.1.x: String, ByteString, XmlElement, …).
_NULLABLE: Final = frozenset(
    {VT.Null, VT.String, VT.ByteString, VT.XmlElement, VT.DateTime, VT.ExtensionObject}
)


class FieldEncoding(enum.Enum):
    """The JSON form, as Part 14's FieldEncoding1/FieldEncoding2 bits select it."""

    COMPACT = "compact"
    VERBOSE = "verbose"
    REVERSIBLE = "reversible"
    NON_REVERSIBLE = "non-reversible"

    @property
    def is_105(self) -> bool:
        return self in (FieldEncoding.COMPACT, FieldEncoding.VERBOSE)


@dataclasses.dataclass(frozen=True, slots=True)
class UnknownStructure:
    """A JSON-encoded Structure whose DataType this process does not know.

    Kept as its raw members so that a subscriber can still look at it and re-encode it unchanged.
    """

    type_id: ua.NodeId
    fields: Mapping[str, Any]


class NamespaceTable:
    """Index ↔ URI mapping for namespaces (or server URIs); index 0 is the OPC UA namespace."""

    __slots__ = ("_index", "_uris")

    def __init__(self, uris: Sequence[str] = (OPC_UA_NAMESPACE,)) -> None:
        self._uris: list[str] = list(uris)
        self._index: dict[str, int] = {}
        for i, uri in enumerate(self._uris):
            self._index.setdefault(uri, i)

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(self._uris)

    def uri(self, index: int) -> str | None:
        return self._uris[index] if 0 <= index < len(self._uris) else None

    def index(self, uri: str) -> int | None:
        return self._index.get(uri)


class _Ctx:
    """Per-call state: the nesting depth, so hostile input cannot exhaust the stack."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0


class JsonCodec:
    """Encoder and decoder for one JSON form and one pair of namespace / server tables.

    One instance serves a whole DataSetWriter; it holds no per-message state.
    """

    def __init__(
        self,
        encoding: FieldEncoding = FieldEncoding.COMPACT,
        namespaces: NamespaceTable | Sequence[str] | None = None,
        server_uris: NamespaceTable | Sequence[str] | None = None,
    ) -> None:
        self.encoding = encoding
        self.namespaces = _table(namespaces, (OPC_UA_NAMESPACE,))
        self.server_uris = _table(server_uris, ())
        self._verbose = encoding is FieldEncoding.VERBOSE
        self._is105 = encoding.is_105
        self._scalar_encoders: dict[ua.VariantType, Callable[[Any], Any]] = {
            VT.Boolean: _enc_bool,
            VT.SByte: self._int_encoder(VT.SByte),
            VT.Byte: self._int_encoder(VT.Byte),
            VT.Int16: self._int_encoder(VT.Int16),
            VT.UInt16: self._int_encoder(VT.UInt16),
            VT.Int32: self._int_encoder(VT.Int32),
            VT.UInt32: self._int_encoder(VT.UInt32),
            VT.Int64: self._int_encoder(VT.Int64),
            VT.UInt64: self._int_encoder(VT.UInt64),
            VT.Float: _enc_float32,
            VT.Double: _enc_double,
            VT.String: _enc_string,
            VT.DateTime: encode_datetime,
            VT.Guid: _enc_guid,
            VT.ByteString: _enc_bytes,
            VT.XmlElement: _enc_xml,
            VT.NodeId: self.encode_node_id,
            VT.ExpandedNodeId: self.encode_expanded_node_id,
            VT.StatusCode: self.encode_status_code,
            VT.QualifiedName: self.encode_qualified_name,
            VT.LocalizedText: self.encode_localized_text,
            VT.ExtensionObject: self.encode_extension_object,
            VT.DataValue: self.encode_data_value,
            VT.Variant: self.encode_variant,
            VT.DiagnosticInfo: self.encode_diagnostic_info,
        }

    # ------------------------------------------------------------------ encoding

    def encode_value(self, value: Any, vtype: ua.VariantType) -> Any:
        """Encode one scalar of built-in type ``vtype`` to a JSON-ready Python value."""
        if value is None:
            return None
        try:
            return self._scalar_encoders[vtype](value)
        except KeyError:
            raise EncodeError(f"built-in type {vtype!r} cannot hold a value") from None

    def encode_array(self, values: Sequence[Any] | None, vtype: ua.VariantType) -> list[Any] | None:
        """Encode a one-dimensional array (null elements become JSON null, Part 6 §5.4.5)."""
        if values is None:
            return None
        enc = self._scalar_encoders[vtype]
        out: list[Any] = []
        for v in values:
            if v is None:
                out.append(None)
            elif vtype is VT.StatusCode and not self._is105:
                out.append(_status_value(v))  # 1.04: Good is written inside arrays
            else:
                out.append(enc(v))
        return out

    def encode_variant(self, variant: ua.Variant, *, raw: bool = False) -> Any:
        """Encode a Variant; ``raw`` drops the type members (Part 14 RawData / known DataType)."""
        vtype = _vtype(variant.VariantType)
        value = variant.Value
        dims = _dimensions(variant)
        if self.encoding is FieldEncoding.NON_REVERSIBLE:
            if vtype is VT.Null or value is None:
                return None
            if variant.is_array:
                flat = _flatten(value) if dims else value
                enc = self.encode_array(flat, vtype)
                return nest_matrix(enc, dims) if dims and enc is not None else enc
            return self.encode_value(value, vtype)
        if vtype is VT.Null:
            return None
        type_key, value_key = ("UaType", "Value") if self._is105 else ("Type", "Body")
        if variant.is_array:
            body: Any = self.encode_array(_flatten(value) if dims else value, vtype)
        else:
            body = self.encode_value(value, vtype)
        if raw:
            return body
        out: dict[str, Any] = {type_key: int(vtype)}
        if body is not None or (variant.is_array and vtype not in _NULLABLE):
            # Table 41 omits Value only for a null scalar of a nullable type; a null array of a
            # non-nullable type is written as null so that it does not read back as the default.
            out[value_key] = body
        if dims:
            out["Dimensions"] = list(dims)
        return out

    def encode_data_value(
        self, dv: ua.DataValue, *, raw: bool = False, members: DataValueMembers | None = None
    ) -> dict[str, Any]:
        """Encode a DataValue (Part 6 §5.4.2.18); defaults are omitted in every form.

        ``members`` restricts the optional members written (Part 14 DataSetFieldContentMask).
        """
        m = members or _ALL_MEMBERS
        out: dict[str, Any]
        variant = dv.Value if dv.Value is not None else ua.Variant()
        if self._is105:
            enc = self.encode_variant(variant)
            out = {} if enc is None else dict(enc)
            if raw:
                out.pop("UaType", None)
        elif self.encoding is FieldEncoding.REVERSIBLE:
            enc = self.encode_variant(variant)
            out = {} if enc is None else {"Value": enc}
        else:
            body = self.encode_variant(variant)
            out = {} if body is None else {"Value": body}
        status = dv.StatusCode
        if m.status and status is not None and _status_value(status) != 0:
            out["Status"] = self.encode_status_code(status)
        if m.source_timestamp and dv.SourceTimestamp is not None:
            ts = encode_datetime(dv.SourceTimestamp)
            if ts != JSON_DATETIME_MIN:
                out["SourceTimestamp"] = ts
        if m.source_picoseconds and dv.SourcePicoseconds:
            out["SourcePicoseconds"] = int(dv.SourcePicoseconds)
        if m.server_timestamp and dv.ServerTimestamp is not None:
            ts = encode_datetime(dv.ServerTimestamp)
            if ts != JSON_DATETIME_MIN:
                out["ServerTimestamp"] = ts
        if m.server_picoseconds and dv.ServerPicoseconds:
            out["ServerPicoseconds"] = int(dv.ServerPicoseconds)
        return out

    def encode_node_id(self, node_id: ua.NodeId) -> Any:
        """NodeId: 1.05 string (Part 6 §5.4.2.10 / §5.1.12), 1.04 object (Annex H.2)."""
        if self._is105:
            return self._node_id_string(node_id, node_id.NamespaceIndex, None)
        kind, ident = _identifier(node_id)
        out: dict[str, Any] = {}
        if kind:
            out["IdType"] = kind
        out["Id"] = ident
        ns = node_id.NamespaceIndex
        if ns:
            uri = self.namespaces.uri(ns) if self.encoding is FieldEncoding.NON_REVERSIBLE else None
            out["Namespace"] = uri if uri is not None else ns
        return out

    def encode_expanded_node_id(self, node_id: ua.ExpandedNodeId) -> Any:
        """ExpandedNodeId: 1.05 string with ``svu=``/``svr=`` (§5.4.2.11), 1.04 object (H.3)."""
        ns_uri = getattr(node_id, "NamespaceUri", None) or None
        server = int(getattr(node_id, "ServerIndex", 0) or 0)
        if self._is105:
            prefix = ""
            if server:
                suri = self.server_uris.uri(server)
                prefix = f"svu={_escape_uri(suri)};" if suri is not None else f"svr={server};"
            return prefix + self._node_id_string(node_id, node_id.NamespaceIndex, ns_uri)
        kind, ident = _identifier(node_id)
        out: dict[str, Any] = {}
        if kind:
            out["IdType"] = kind
        out["Id"] = ident
        if ns_uri is not None:
            out["Namespace"] = ns_uri
        elif node_id.NamespaceIndex:
            uri = None
            if self.encoding is FieldEncoding.NON_REVERSIBLE and node_id.NamespaceIndex != 1:
                uri = self.namespaces.uri(node_id.NamespaceIndex)
            out["Namespace"] = uri if uri is not None else node_id.NamespaceIndex
        if server:
            suri = None
            if self.encoding is FieldEncoding.NON_REVERSIBLE:
                suri = self.server_uris.uri(server)
            out["ServerUri"] = suri if suri is not None else server
        return out

    def encode_status_code(self, status: ua.StatusCode | int) -> Any:
        """StatusCode: ``{"Code","Symbol"}`` in 1.05 (§5.4.2.12), a number in 1.04 Reversible."""
        code = _status_value(status)
        if self.encoding is FieldEncoding.REVERSIBLE:
            return code
        out: dict[str, Any] = {}
        if code:
            out["Code"] = code
            if self._verbose or self.encoding is FieldEncoding.NON_REVERSIBLE:
                symbol = status_symbol(code)
                if symbol is not None:
                    out["Symbol"] = symbol
        return out

    def encode_qualified_name(self, qn: ua.QualifiedName) -> Any:
        """QualifiedName: 1.05 string ``nsu=<uri>;<name>`` (§5.4.2.14), 1.04 object (H.5)."""
        ns = qn.NamespaceIndex
        name = qn.Name if qn.Name is not None else ""
        if self._is105:
            if ns == 0:
                return name
            uri = self.namespaces.uri(ns)
            if uri is None:  # first abnormal state: the index has no URI
                return f"ns={ns};{name}"
            return f"nsu={_escape_uri(uri)};{name}"
        out: dict[str, Any] = {"Name": qn.Name}
        if ns:
            uri = self.namespaces.uri(ns) if self.encoding is FieldEncoding.NON_REVERSIBLE else None
            out["Uri"] = uri if uri is not None else ns
        return out

    def encode_localized_text(self, lt: ua.LocalizedText) -> Any:
        """LocalizedText: ``{"Locale","Text"}`` (§5.4.2.15); NonReversible keeps only the text."""
        if self.encoding is FieldEncoding.NON_REVERSIBLE:
            return lt.Text
        out: dict[str, Any] = {}
        if lt.Locale is not None or self._verbose:
            out["Locale"] = lt.Locale
        if lt.Text is not None or self._verbose:
            out["Text"] = lt.Text
        return out

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
                return _enc_bytes(obj.Body)
            if self._is105:
                return {
                    "UaTypeId": self.encode_node_id(obj.TypeId),
                    "UaEncoding": 1,
                    "UaBody": _enc_bytes(obj.Body),
                }
            return {
                "TypeId": self.encode_node_id(obj.TypeId),
                "Encoding": 1,
                "Body": _enc_bytes(obj.Body),
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

    def encode_diagnostic_info(self, info: ua.DiagnosticInfo) -> dict[str, Any]:
        """DiagnosticInfo (§5.4.2.13): the string-table indexes as numbers, nulls omitted."""
        out: dict[str, Any] = {}
        for attr, key in _DIAG_MEMBERS:
            v = getattr(info, attr)
            if v is None:
                continue
            if attr == "InnerStatusCode":
                out[key] = self.encode_status_code(v)
            elif attr == "InnerDiagnosticInfo":
                out[key] = self.encode_diagnostic_info(v)
            else:
                out[key] = v
        return out

    # ------------------------------------------------------------------ decoding

    def decode_variant(
        self, obj: Any, *, vtype: ua.VariantType | None = None, path: str = ""
    ) -> ua.Variant:
        """Decode a Variant in any reversible form.

        ``vtype`` is the field's type when the message left the type out (RawData / Verbose with
        a concrete DataType); then ``obj`` is the bare value.
        """
        return _at(path, self._decode_variant, obj, vtype, _Ctx())

    def decode_data_value(
        self, obj: Any, *, vtype: ua.VariantType | None = None, path: str = ""
    ) -> ua.DataValue:
        """Decode a DataValue in any reversible form (1.05 inline members or 1.04 nested Value)."""
        return _at(path, self._decode_data_value, obj, vtype, _Ctx())

    def decode_value(self, obj: Any, vtype: ua.VariantType, *, path: str = "") -> Any:
        """Decode one scalar of built-in type ``vtype``."""
        return _at(path, self._decode_scalar, obj, vtype, _Ctx())

    def _decode_variant(self, obj: Any, vtype: ua.VariantType | None, ctx: _Ctx) -> ua.Variant:
        if vtype is not None:
            return self._variant_from_body(obj, vtype, None, ctx)
        if obj is None:
            return ua.Variant()
        if not isinstance(obj, dict):
            raise DecodeError("", f"expected a Variant object, got {json_type(obj)}")
        if "UaType" in obj:
            type_key, value_key = "UaType", "Value"
        elif "Type" in obj:
            type_key, value_key = "Type", "Body"
        else:
            raise DecodeError("UaType", "missing member (a Variant needs UaType)")
        vt = _decode_vtype(obj[type_key], type_key)
        if vt is VT.Null:
            return ua.Variant()
        dims = obj.get("Dimensions")
        if dims is not None:
            dims = _decode_dimensions(dims)
        return self._variant_from_body(obj.get(value_key, _MISSING), vt, dims, ctx, value_key)

    def _variant_from_body(
        self,
        body: Any,
        vt: ua.VariantType,
        dims: list[int] | None,
        ctx: _Ctx,
        value_key: str = "Value",
    ) -> ua.Variant:
        if body is _MISSING:
            # A missing value is the type's default (Compact omits defaults, Part 6 §5.4.2.1).
            if dims:
                raise DecodeError(value_key, "missing member (Dimensions given without a value)")
            return ua.Variant(_default_scalar(vt), vt)
        if isinstance(body, list):
            flat = [
                self._decode_element(x, vt, ctx, f"{value_key}/{i}") for i, x in enumerate(body)
            ]
            if dims:
                if math.prod(dims) != len(flat):
                    raise DecodeError(
                        "Dimensions",
                        f"dimensions {dims} need {math.prod(dims)} elements, value has {len(flat)}",
                    )
                if not flat and empty_matrix_too_large(dims):
                    raise DecodeError("Dimensions", f"dimensions {dims} are too large")
                return ua.Variant(nest_matrix(flat, dims), vt, list(dims), is_array=True)
            return ua.Variant(flat, vt, is_array=True)
        if dims:
            raise DecodeError(value_key, "Dimensions given for a scalar value")
        if body is None:
            if vt in _NULLABLE:
                return ua.Variant(_default_scalar(vt), vt)
            return ua.Variant(None, vt, is_array=True)  # null array of a non-nullable type
        try:
            value = self._decode_scalar(body, vt, ctx)
        except DecodeError as e:
            raise e.within(value_key) from None
        if isinstance(value, ua.Variant):
            # A scalar Variant in a Variant: asyncua's constructor would unwrap it, and raise
            # when the inner one is a null array; unwrap it here the same way.
            return value
        return ua.Variant(value, vt)

    def _decode_element(self, x: Any, vt: ua.VariantType, ctx: _Ctx, path: str) -> Any:
        if x is None:
            if vt is VT.Variant:
                return ua.Variant()  # the null Variant, as asyncua's binary decoder returns it
            return _default_scalar(vt) if vt is VT.StatusCode else None
        try:
            return self._decode_scalar(x, vt, ctx)
        except DecodeError as e:
            raise e.within(path) from None

    def _decode_scalar(self, x: Any, vt: ua.VariantType, ctx: _Ctx) -> Any:
        if vt is VT.Boolean:
            if not isinstance(x, bool):
                raise DecodeError("", f"expected a Boolean, got {json_type(x)}")
            return x
        if vt in INT_RANGES:
            return _decode_int(x, vt)
        if vt is VT.Float or vt is VT.Double:
            return _decode_float(x, vt)
        if vt is VT.String:
            return _expect_str(x, "String")
        if vt is VT.DateTime:
            return decode_datetime(x)
        if vt is VT.Guid:
            return _decode_guid(_expect_str(x, "Guid"))
        if vt is VT.ByteString:
            return _decode_bytes(x)
        if vt is VT.XmlElement:
            return ua.XmlElement(_expect_str(x, "XmlElement"))
        if vt is VT.NodeId:
            return self.decode_node_id(x)
        if vt is VT.ExpandedNodeId:
            return self.decode_expanded_node_id(x)
        if vt is VT.StatusCode:
            return self.decode_status_code(x)
        if vt is VT.QualifiedName:
            return self.decode_qualified_name(x)
        if vt is VT.LocalizedText:
            return self.decode_localized_text(x)
        with _nested(ctx):
            if vt is VT.ExtensionObject:
                return self._decode_extension_object(x, ctx)
            if vt is VT.DataValue:
                return self._decode_data_value(x, None, ctx)
            if vt is VT.Variant:
                return self._decode_variant(x, None, ctx)
            if vt is VT.DiagnosticInfo:
                return self._decode_diagnostic_info(x, ctx)
        raise DecodeError("", f"built-in type {int(vt)} cannot hold a value")

    def _decode_data_value(self, obj: Any, vtype: ua.VariantType | None, ctx: _Ctx) -> ua.DataValue:
        if not isinstance(obj, dict):
            raise DecodeError("", f"expected a DataValue object, got {json_type(obj)}")
        if "UaType" in obj or (vtype is not None and "Value" in obj and "Type" not in obj):
            # 1.05: the Variant members sit inline (Part 6 §5.4.2.18)
            if vtype is not None and "UaType" not in obj:
                variant = self._variant_from_body(obj["Value"], vtype, _opt_dims(obj), ctx)
            else:
                variant = self._decode_variant(
                    {k: obj[k] for k in ("UaType", "Value", "Dimensions") if k in obj}, None, ctx
                )
        elif "Value" in obj:
            inner = obj["Value"]
            if isinstance(inner, dict) and ("Type" in inner or "UaType" in inner):
                variant = self._decode_variant(inner, None, ctx)
            elif vtype is not None:
                variant = self._variant_from_body(inner, vtype, None, ctx)
            else:
                raise DecodeError("Value", "a DataValue value needs its type (UaType or Type)")
        else:
            variant = ua.Variant()
        status: ua.StatusCode = ua.StatusCode(0)
        if "Status" in obj and obj["Status"] is not None:
            try:
                status = self.decode_status_code(obj["Status"])
            except DecodeError as e:
                raise e.within("Status") from None
        return ua.DataValue(
            Value=variant,
            StatusCode=status,
            SourceTimestamp=_opt_member(obj, "SourceTimestamp", decode_datetime),
            ServerTimestamp=_opt_member(obj, "ServerTimestamp", decode_datetime),
            SourcePicoseconds=_opt_member(obj, "SourcePicoseconds", _picoseconds),
            ServerPicoseconds=_opt_member(obj, "ServerPicoseconds", _picoseconds),
        )

    def decode_node_id(self, x: Any) -> ua.NodeId:
        """NodeId from a 1.05 string or a 1.04 object."""
        if isinstance(x, str):
            return self._parse_node_id(x, expanded=False)
        if isinstance(x, dict):
            return self._node_id_from_object(x, expanded=False)
        raise DecodeError("", f"expected a NodeId string, got {json_type(x)}")

    def decode_expanded_node_id(self, x: Any) -> ua.ExpandedNodeId:
        """ExpandedNodeId from a 1.05 string or a 1.04 object."""
        if isinstance(x, str):
            node = self._parse_node_id(x, expanded=True)
        elif isinstance(x, dict):
            node = self._node_id_from_object(x, expanded=True)
        else:
            raise DecodeError("", f"expected an ExpandedNodeId string, got {json_type(x)}")
        assert isinstance(node, ua.ExpandedNodeId)
        return node

    def decode_status_code(self, x: Any) -> ua.StatusCode:
        """StatusCode from ``{"Code":…}`` (1.05) or a bare number (1.04)."""
        if isinstance(x, dict):
            code = x.get("Code", 0)
            if code is None:
                code = 0
            return ua.StatusCode(_decode_int(code, VT.UInt32, "Code"))
        return ua.StatusCode(_decode_int(x, VT.UInt32))

    def decode_qualified_name(self, x: Any) -> ua.QualifiedName:
        """QualifiedName from a 1.05 string or a 1.04 ``{"Name","Uri"}`` object."""
        if isinstance(x, str):
            m = _QN_PREFIX.match(x)
            if m is None:
                return ua.QualifiedName(x, 0)
            if m.group("ns") is not None:
                return ua.QualifiedName(x[m.end() :], _ns_index(m.group("ns")))
            uri = _unescape_uri(m.group("uri"))
            idx = self.namespaces.index(uri)
            if idx is None:  # second abnormal state (Part 6 §5.4.2.14)
                return ua.QualifiedName(x, 0)
            return ua.QualifiedName(x[m.end() :], idx)
        if isinstance(x, dict):
            name = x.get("Name")
            if name is not None and not isinstance(name, str):
                raise DecodeError("Name", f"expected a string, got {json_type(name)}")
            uri = x.get("Uri", 0)
            if isinstance(uri, str):
                idx = self.namespaces.index(uri)
                if idx is None:
                    raise DecodeError("Uri", f"namespace {uri!r} is not in the namespace table")
                return ua.QualifiedName(name, idx)
            return ua.QualifiedName(name, _decode_int(uri or 0, VT.UInt16, "Uri"))
        raise DecodeError("", f"expected a QualifiedName, got {json_type(x)}")

    def decode_localized_text(self, x: Any) -> ua.LocalizedText:
        """LocalizedText from ``{"Locale","Text"}``."""
        if not isinstance(x, dict):
            raise DecodeError("", f"expected a LocalizedText object, got {json_type(x)}")
        locale = x.get("Locale")
        text = x.get("Text")
        if locale is not None and not isinstance(locale, str):
            raise DecodeError("Locale", f"expected a string, got {json_type(locale)}")
        if text is not None and not isinstance(text, str):
            raise DecodeError("Text", f"expected a string, got {json_type(text)}")
        return ua.LocalizedText(text, locale)

    def _decode_extension_object(self, x: Any, ctx: _Ctx) -> Any:
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
                raw = _decode_bytes(body) if encoding == 1 else _expect_str(body, "UaBody").encode()
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
                return ua.ExtensionObject(TypeId=type_id, Body=_decode_bytes(body))
            if encoding == 2:
                return ua.ExtensionObject(TypeId=type_id, Body=_expect_str(body, "Body").encode())
            if not isinstance(body, dict):
                raise DecodeError("Body", f"expected a structure object, got {json_type(body)}")
            return self._decode_structure(type_id, body, ctx)
        raise DecodeError("UaTypeId", "missing member (an ExtensionObject needs UaTypeId)")

    def decode_structure(self, cls: type, obj: Any, *, path: str = "") -> Any:
        """Decode the members of a structure of known class (no type envelope), e.g. MetaData."""
        if not isinstance(obj, dict):
            raise DecodeError(path, f"expected a structure object, got {json_type(obj)}")
        return _at(path, self._decode_structure, cls.data_type, obj, _Ctx(), cls)  # type: ignore[attr-defined]

    def _decode_structure(
        self, type_id: ua.NodeId, fields: dict[str, Any], ctx: _Ctx, cls: type | None = None
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
                if default is not _MISSING:
                    kwargs[f.name] = default
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise DecodeError("", f"cannot build {cls.__name__}: {e}") from None

    def _decode_diagnostic_info(self, x: Any, ctx: _Ctx) -> ua.DiagnosticInfo:
        if not isinstance(x, dict):
            raise DecodeError("", f"expected a DiagnosticInfo object, got {json_type(x)}")
        info = ua.DiagnosticInfo()
        for attr, key in _DIAG_MEMBERS:
            v = x.get(key)
            if v is None:
                continue
            try:
                if attr == "InnerStatusCode":
                    info.InnerStatusCode = self.decode_status_code(v)
                elif attr == "InnerDiagnosticInfo":
                    with _nested(ctx):
                        info.InnerDiagnosticInfo = self._decode_diagnostic_info(v, ctx)
                elif attr == "AdditionalInfo":
                    info.AdditionalInfo = _expect_str(v, key)
                else:
                    setattr(info, attr, _decode_int(v, VT.Int32))
            except DecodeError as e:
                raise e.within(key) from None
        return info

    # ------------------------------------------------------------------ structures

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

    def _decode_member(self, x: Any, hint: Any, ctx: _Ctx) -> Any:
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
            number = _decode_int(x, VT.Int32)
            try:
                return inner(number)
            except ValueError:
                raise DecodeError("", f"{number} is not a value of {inner.__name__}") from None
        with _nested(ctx):
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

    # ------------------------------------------------------------------ node ids

    def _node_id_string(self, node_id: ua.NodeId, ns: int, ns_uri: str | None) -> str:
        ident = _identifier_string(node_id)
        if ns_uri is not None and ns_uri != OPC_UA_NAMESPACE:
            return f"nsu={_escape_uri(ns_uri)};{ident}"
        if ns == 0 or ns_uri == OPC_UA_NAMESPACE:
            return ident
        uri = self.namespaces.uri(ns)
        if uri is None:  # first abnormal state (Part 6 §5.4.2.10): index without a URI
            return f"ns={ns};{ident}"
        return f"nsu={_escape_uri(uri)};{ident}"

    def _parse_node_id(self, text: str, *, expanded: bool) -> ua.NodeId:
        rest = text
        server = 0
        ns_uri: str | None = None
        ns = 0
        if expanded:
            m = _SVR.match(rest)
            if m is not None:
                if m.group("svr") is not None:
                    server = _ns_index(m.group("svr"), "svr", 2**32 - 1)
                else:
                    suri = _unescape_uri(m.group("svu"))
                    sidx = self.server_uris.index(suri)
                    if sidx is None:  # second abnormal state (Part 6 §5.4.2.11)
                        return ua.ExpandedNodeId(text, 0, ua.NodeIdType.String)
                    server = sidx
                rest = rest[m.end() :]
        m = _NS.match(rest)
        if m is not None:
            if m.group("ns") is not None:
                ns = _ns_index(m.group("ns"))
            else:
                uri = _unescape_uri(m.group("uri"))
                idx = self.namespaces.index(uri)
                if idx is not None:
                    ns = idx
                elif expanded:
                    ns_uri = uri
                else:  # second abnormal state (Part 6 §5.4.2.10)
                    return ua.NodeId(text, 0, ua.NodeIdType.String)
            rest = rest[m.end() :]
        identifier, kind = _parse_identifier(rest)
        if expanded:
            return ua.ExpandedNodeId(identifier, ns, kind, NamespaceUri=ns_uri, ServerIndex=server)
        return ua.NodeId(identifier, ns, kind)

    def _node_id_from_object(self, x: dict[str, Any], *, expanded: bool) -> ua.NodeId:
        id_type = x.get("IdType", 0)
        if id_type not in (0, 1, 2, 3):
            raise DecodeError("IdType", f"expected 0..3, got {id_type!r}")
        ident = x.get("Id")
        value: Any
        try:
            if id_type == 0:
                value, kind = _decode_int(ident, VT.UInt32), ua.NodeIdType.Numeric
            elif id_type == 1:
                value, kind = _expect_str(ident, "Id"), ua.NodeIdType.String
            elif id_type == 2:
                value, kind = _decode_guid(_expect_str(ident, "Id")), ua.NodeIdType.Guid
            else:
                value, kind = _decode_bytes(ident) or b"", ua.NodeIdType.ByteString
        except DecodeError as e:
            raise e.within("Id") from None
        ns_member = x.get("Namespace", 0) or 0
        ns_uri: str | None = None
        ns = 0
        if isinstance(ns_member, str):
            idx = self.namespaces.index(ns_member)
            if idx is not None:
                ns = idx
            elif expanded:
                ns_uri = ns_member
            else:
                raise DecodeError("Namespace", f"namespace {ns_member!r} is not in the table")
        else:
            ns = _decode_int(ns_member, VT.UInt16, "Namespace")
        if not expanded:
            return ua.NodeId(value, ns, kind)
        srv = x.get("ServerUri", 0) or 0
        if isinstance(srv, str):
            sidx = self.server_uris.index(srv)
            if sidx is None:
                raise DecodeError("ServerUri", f"server {srv!r} is not in the server table")
            srv = sidx
        server = _decode_int(srv, VT.UInt32, "ServerUri")
        return ua.ExpandedNodeId(value, ns, kind, NamespaceUri=ns_uri, ServerIndex=server)

    # ------------------------------------------------------------------ helpers

    def _int_encoder(self, vt: ua.VariantType) -> Callable[[Any], Any]:
        lo, hi = INT_RANGES[vt]
        as_string = vt in (VT.Int64, VT.UInt64)

        def enc(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int):
                raise EncodeError(f"{vt.name} needs an integer, got {type(v).__name__}")
            if not lo <= v <= hi:
                raise EncodeError(f"{v} is out of range for {vt.name} [{lo}, {hi}]")
            return str(int(v)) if as_string else int(v)

        return enc


# ---------------------------------------------------------------------- module helpers


@dataclasses.dataclass(frozen=True, slots=True)
class DataValueMembers:
    """Which optional DataValue members to write (Part 14 DataSetFieldContentMask bits 0–5)."""

    status: bool = True
    source_timestamp: bool = True
    server_timestamp: bool = True
    source_picoseconds: bool = True
    server_picoseconds: bool = True


_ALL_MEMBERS: Final = DataValueMembers()
_MISSING: Final = object()
_DIAG_MEMBERS: Final = (
    ("SymbolicId", "SymbolicId"),
    ("NamespaceURI", "NamespaceUri"),
    ("Locale", "Locale"),
    ("LocalizedText", "LocalizedText"),
    ("AdditionalInfo", "AdditionalInfo"),
    ("InnerStatusCode", "InnerStatusCode"),
    ("InnerDiagnosticInfo", "InnerDiagnosticInfo"),
)
_NS: Final = re.compile(r"(?:ns=(?P<ns>\d+)|nsu=(?P<uri>[^;]*));")
_SVR: Final = re.compile(r"(?:svr=(?P<svr>\d+)|svu=(?P<svu>[^;]*));")
_QN_PREFIX: Final = _NS


def _at(path: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` and prefix ``path`` to the member path of any DecodeError it raises."""
    try:
        return fn(*args)
    except DecodeError as e:
        if not path:
            raise
        raise e.within(path) from None


def _table(value: NamespaceTable | Sequence[str] | None, default: Sequence[str]) -> NamespaceTable:
    if isinstance(value, NamespaceTable):
        return value
    return NamespaceTable(default if value is None else value)


class _nested:
    """Context manager counting nesting depth against :data:`MAX_NESTING`."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        self.ctx.depth += 1
        if self.ctx.depth > MAX_NESTING:
            raise DecodeError("", f"nested deeper than {MAX_NESTING} levels")

    def __exit__(self, *exc: object) -> None:
        self.ctx.depth -= 1


def status_symbol(code: int) -> str | None:
    """The symbolic name of a StatusCode, ignoring InfoBits (Part 6 §5.4.2.12)."""
    # Not get_name_and_doc: for an unknown code it answers the bare severity ("Bad"), which is
    # the literal of another code; §5.4.2.12 omits the Symbol of an unknown code instead.
    entry = status_codes.code_to_name_doc.get(code & 0xFFFF0000)
    if entry is None or not entry[0]:
        return None
    name: str = entry[0]
    return name


def _status_value(status: ua.StatusCode | int) -> int:
    return int(status.value if isinstance(status, ua.StatusCode) else status)


def _vtype(vt: Any) -> ua.VariantType:
    if isinstance(vt, VT):
        return vt
    raise EncodeError(f"unsupported variant type {vt!r}")


def _dimensions(variant: ua.Variant) -> list[int] | None:
    dims = variant.Dimensions
    if dims and len(dims) > 1:
        return [int(d) for d in dims]
    return None


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        return [value]
    out: list[Any] = []
    stack: list[Iterator[Any]] = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list | tuple):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def nest_matrix(flat: list[Any], dims: Sequence[int]) -> list[Any]:
    """Rebuild a matrix from its flat row-major form (Part 6 §5.2.2.16 ordering)."""
    if len(dims) <= 1:
        return list(flat)
    size = math.prod(dims[1:])
    return [nest_matrix(flat[i * size : (i + 1) * size], dims[1:]) for i in range(dims[0])]


def _decode_dimensions(dims: Any) -> list[int]:
    if not isinstance(dims, list) or not dims:
        raise DecodeError("Dimensions", f"expected a non-empty array, got {json_type(dims)}")
    if len(dims) > MAX_NESTING:  # each dimension is one level of nested lists
        raise DecodeError("Dimensions", f"more than {MAX_NESTING} dimensions")
    out = []
    for i, d in enumerate(dims):
        try:
            out.append(_decode_int(d, VT.Int32))
        except DecodeError as e:
            raise e.within(f"Dimensions/{i}") from None
        if out[-1] < 0:
            raise DecodeError(f"Dimensions/{i}", "a dimension cannot be negative")
    return out


#: Most nested lists an empty matrix may need ([65536, 0] is fine, [2**31-1, 0] is not).
_MAX_EMPTY_SUB_ARRAYS: Final = 2**16


def empty_matrix_too_large(dims: Sequence[int]) -> bool:
    """Whether :func:`nest_matrix` would build too many lists for ``dims``: [2**31-1, 0] has no
    elements but needs 2**31-1 empty lists."""
    total, width = 0, 1
    for d in dims[:-1]:
        width *= d
        total += width
        if width == 0:
            break
    return total > _MAX_EMPTY_SUB_ARRAYS


def _opt_dims(obj: dict[str, Any]) -> list[int] | None:
    d = obj.get("Dimensions")
    return None if d is None else _decode_dimensions(d)


def _decode_vtype(x: Any, key: str) -> ua.VariantType:
    if isinstance(x, bool) or not isinstance(x, int):
        raise DecodeError(key, f"expected a built-in type id, got {json_type(x)}")
    try:
        return VT(x)
    except ValueError:
        raise DecodeError(key, f"{x} is not a built-in type id (0..25)") from None


def _default_scalar(vt: ua.VariantType) -> Any:
    if vt is VT.XmlElement:
        return ua.XmlElement(None)  # asyncua's null XmlElement; a Variant cannot hold None here
    if vt in _NULLABLE:
        return None
    return _DEFAULTS[vt]()


_DEFAULTS: Final[dict[ua.VariantType, Callable[[], Any]]] = {
    VT.Boolean: lambda: False,
    **{vt: int for vt in INT_RANGES},
    VT.Float: float,
    VT.Double: float,
    VT.Guid: lambda: uuid.UUID(int=0),
    VT.NodeId: lambda: ua.NodeId(0, 0, ua.NodeIdType.Numeric),
    VT.ExpandedNodeId: lambda: ua.ExpandedNodeId(0, 0, ua.NodeIdType.Numeric),
    VT.StatusCode: lambda: ua.StatusCode(0),
    VT.QualifiedName: lambda: ua.QualifiedName("", 0),
    VT.LocalizedText: ua.LocalizedText,
    VT.DataValue: ua.DataValue,
    VT.Variant: ua.Variant,
    VT.DiagnosticInfo: ua.DiagnosticInfo,
}


def json_type(x: Any) -> str:
    """How an error message names the JSON type of ``x`` ("a string", "an array", "null")."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int | float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "an array"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


def _expect_str(x: Any, what: str) -> str:
    if not isinstance(x, str):
        raise DecodeError("", f"expected {what} as a string, got {json_type(x)}")
    return x


def _decode_int(x: Any, vt: ua.VariantType, path: str = "") -> int:
    lo, hi = INT_RANGES[vt]
    if isinstance(x, bool):
        raise DecodeError(path, f"expected {vt.name}, got a boolean")
    if isinstance(x, int):
        v = x
    elif isinstance(x, float) and x.is_integer():
        v = int(x)
    elif isinstance(x, str) and _INT_TEXT.fullmatch(x):
        v = int(x)  # Int64/UInt64 travel as strings; others are tolerated the same way
    else:
        raise DecodeError(path, f"expected {vt.name}, got {json_type(x)}")
    if not lo <= v <= hi:
        raise DecodeError(path, f"{v} is out of range for {vt.name}")
    return v


_INT_TEXT: Final = re.compile(r"-?\d{1,20}")


def _enc_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise EncodeError(f"Boolean needs a bool, got {type(v).__name__}")
    return v


def _enc_double(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def _enc_float32(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f) and abs(f) > _FLOAT32_MAX:
        raise EncodeError(f"{f} is out of range for Float")
    return _enc_double(_to_float32(f) if math.isfinite(f) else f)


def _to_float32(f: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", f))[0])


def _decode_float(x: Any, vt: ua.VariantType) -> float:
    if isinstance(x, bool):
        raise DecodeError("", f"expected {vt.name}, got a boolean")
    if isinstance(x, int | float):
        f = float(x)
    elif x == "NaN":
        f = math.nan
    elif x == "Infinity":
        f = math.inf
    elif x == "-Infinity":
        f = -math.inf
    else:
        raise DecodeError("", f"expected {vt.name}, got {json_type(x)}")
    if vt is VT.Float and math.isfinite(f):
        if abs(f) > _FLOAT32_MAX:
            raise DecodeError("", f"{f} is out of range for Float")
        f = _to_float32(f)
    return f


def _enc_string(v: Any) -> str:
    if not isinstance(v, str):
        raise EncodeError(f"String needs a str, got {type(v).__name__}")
    return v


def _enc_guid(v: Any) -> str:
    if not isinstance(v, uuid.UUID):
        raise EncodeError(f"Guid needs a uuid.UUID, got {type(v).__name__}")
    return str(v).upper()


def _decode_guid(x: str) -> uuid.UUID:
    if not _GUID_TEXT.fullmatch(x):
        raise DecodeError("", f"{x!r} is not a Guid (8-4-4-4-12 hex digits)")
    return uuid.UUID(x)


_GUID_TEXT: Final = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def _enc_bytes(v: Any) -> str:
    if not isinstance(v, bytes | bytearray):
        raise EncodeError(f"ByteString needs bytes, got {type(v).__name__}")
    return base64.b64encode(bytes(v)).decode("ascii")


def _decode_bytes(x: Any) -> bytes | None:
    if x is None:
        return None
    if not isinstance(x, str):
        raise DecodeError("", f"expected base64 text, got {json_type(x)}")
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        if not _B64_LENIENT.fullmatch(x):
            raise DecodeError("", "invalid base64") from None
        try:  # some stacks write base64url or drop the padding; be lenient on input
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            raise DecodeError("", "invalid base64") from None


_B64_LENIENT: Final = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _enc_xml(v: Any) -> str | None:
    if isinstance(v, ua.XmlElement):
        v = v.Value
        if v is None:
            return None  # the null XmlElement (Part 6 Table 1: nullable)
    if isinstance(v, str):
        return v
    raise EncodeError(f"XmlElement needs text, got {type(v).__name__}")


def encode_datetime(v: datetime) -> str:
    """ISO 8601 UTC with only the fraction digits needed; clamped as Part 6 §5.4.2.6 says."""
    if not isinstance(v, datetime):
        raise EncodeError(f"DateTime needs a datetime, got {type(v).__name__}")
    # asyncua's naive datetimes are UTC
    try:
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    except OverflowError:  # an offset pushed it past year 1 or 9999: out of range either way
        return JSON_DATETIME_MIN if v.year < 5000 else JSON_DATETIME_MAX
    if v <= DATETIME_MIN:
        return JSON_DATETIME_MIN
    if v >= DATETIME_MAX:
        return JSON_DATETIME_MAX
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        return f"{base}.{v.microsecond:06d}".rstrip("0") + "Z"
    return base + "Z"


_DT_TEXT: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?"
)


def decode_datetime(x: Any) -> datetime:
    """Parse ISO 8601; the JSON min/max literals map to the UA DateTime range's ends."""
    if not isinstance(x, str):
        raise DecodeError("", f"expected a DateTime string, got {json_type(x)}")
    m = _DT_TEXT.fullmatch(x)
    if m is None:
        raise DecodeError("", f"{x!r} is not an ISO 8601 date and time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    micro = int((frac + "000000")[:6])  # decoders may truncate digits past their precision
    zone = m.group(8)
    try:
        if second == 60:  # a leap second: keep the instant just before the next minute
            second, micro = 59, 999999
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as e:
        raise DecodeError("", f"{x!r} is not a valid date: {e}") from None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        try:
            dt = dt - sign * offset
        except OverflowError:
            return DATETIME_MIN if sign < 0 else DATETIME_MAX
    if dt <= DATETIME_MIN:
        return DATETIME_MIN
    if dt >= DATETIME_MAX:
        return DATETIME_MAX
    return dt


def _picoseconds(x: Any) -> int:
    return _decode_int(x, VT.UInt16)


def _opt_member(obj: dict[str, Any], key: str, fn: Callable[[Any], Any]) -> Any:
    v = obj.get(key)
    if v is None:
        return None
    try:
        return fn(v)
    except DecodeError as e:
        raise e.within(key) from None


# NodeId identifiers -------------------------------------------------------------------


def _identifier(node_id: ua.NodeId) -> tuple[int, Any]:
    """(IdType as 1.04 writes it, identifier as JSON)."""
    kind = node_id.NodeIdType
    ident = node_id.Identifier
    if kind in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        return 0, int(ident)
    if kind is ua.NodeIdType.String:
        return 1, ident
    if kind is ua.NodeIdType.Guid:
        return 2, _enc_guid(ident)
    return 3, _enc_bytes(ident if isinstance(ident, bytes) else str(ident).encode())


def _identifier_string(node_id: ua.NodeId) -> str:
    kind, ident = _identifier(node_id)
    return ("i=", "s=", "g=", "b=")[kind] + str(ident)


def _parse_identifier(text: str) -> tuple[Any, ua.NodeIdType]:
    if len(text) < 2 or text[1] != "=":
        raise DecodeError("", f"{text!r} has no identifier (i=, s=, g= or b=)")
    kind, body = text[0], text[2:]
    if kind == "i":
        if not body.isdigit() or not body.isascii():
            raise DecodeError("", f"numeric identifier {body!r} is not a number")
        if len(body) > 20:
            raise DecodeError("", f"numeric identifier {body[:20]}… exceeds UInt32")
        value = int(body)
        if value > 2**32 - 1:
            raise DecodeError("", f"numeric identifier {value} exceeds UInt32")
        return value, ua.NodeIdType.Numeric
    if kind == "s":
        return body, ua.NodeIdType.String
    if kind == "g":
        return _decode_guid(body), ua.NodeIdType.Guid
    if kind == "b":
        return _decode_bytes(body) or b"", ua.NodeIdType.ByteString
    raise DecodeError("", f"unknown identifier type {kind!r}")


def _ns_index(text: str, what: str = "ns", hi: int = 2**16 - 1) -> int:
    if len(text) > 20:  # also keeps int() below Python's digit limit
        raise DecodeError("", f"{what}={text[:20]}… is out of range")
    value = int(text)
    if value > hi:
        raise DecodeError("", f"{what}={value} is out of range")
    return value


def _escape_uri(uri: str) -> str:
    """Percent-encode the characters that would break the NodeId grammar (Part 6 §5.1.12)."""
    return uri.replace("%", "%25").replace(";", "%3B")


def _unescape_uri(text: str) -> str:
    return urllib.parse.unquote(text)  # RFC 3986 percent-encoding of UTF-8 octets (§5.1.12)


# Structures ----------------------------------------------------------------------------


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
    """The built-in default of a non-nullable member type, or ``_MISSING`` to keep asyncua's."""
    kind, inner = _classify(hint)
    if kind == "builtin" and (inner in INT_RANGES or inner in _NON_NULLABLE_OTHERS):
        return _DEFAULTS[inner]()
    if kind == "enum":
        try:
            return inner(0)
        except ValueError:
            return _MISSING
    return _MISSING


def _is_default_json(enc: Any) -> bool:
    """Whether Compact may omit a structure member (Part 6 §5.4.2.1): the type's default."""
    if enc is False or enc == [] or enc == {}:
        return True
    return type(enc) in (int, float) and enc == 0

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

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.uajson.arrays import (
    decode_dimensions,
    empty_matrix_too_large,
    flatten,
    nest_matrix,
    opt_dims,
    variant_dimensions,
)
from opcua_mqtt.core.uajson.context import MISSING, DecodeContext, Nesting, at_path
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import (
    INT_RANGES,
    JSON_DATETIME_MIN,
    NULLABLE,
    VT,
    decode_bytes,
    decode_datetime,
    decode_float,
    decode_guid,
    decode_int,
    decode_vtype,
    default_scalar,
    enc_bool,
    enc_bytes,
    enc_double,
    enc_float32,
    enc_guid,
    enc_string,
    enc_xml,
    encode_datetime,
    expect_str,
    json_type,
    opt_member,
    picoseconds,
    status_symbol,
    status_value,
    variant_type_of,
)
from opcua_mqtt.core.uajson.structures import StructureCodec


class JsonCodec(StructureCodec):
    """Encoder and decoder for one JSON form and one pair of namespace / server tables.

    One instance serves a whole DataSetWriter; it holds no per-message state.
    """

    @functools.cached_property
    def _scalar_encoders(self) -> dict[ua.VariantType, Callable[[Any], Any]]:
        """The encoder of each built-in type, bound to this codec's form and tables."""
        return {
            VT.Boolean: enc_bool,
            VT.SByte: self._int_encoder(VT.SByte),
            VT.Byte: self._int_encoder(VT.Byte),
            VT.Int16: self._int_encoder(VT.Int16),
            VT.UInt16: self._int_encoder(VT.UInt16),
            VT.Int32: self._int_encoder(VT.Int32),
            VT.UInt32: self._int_encoder(VT.UInt32),
            VT.Int64: self._int_encoder(VT.Int64),
            VT.UInt64: self._int_encoder(VT.UInt64),
            VT.Float: enc_float32,
            VT.Double: enc_double,
            VT.String: enc_string,
            VT.DateTime: encode_datetime,
            VT.Guid: enc_guid,
            VT.ByteString: enc_bytes,
            VT.XmlElement: enc_xml,
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
                out.append(status_value(v))  # 1.04: Good is written inside arrays
            else:
                out.append(enc(v))
        return out

    def encode_variant(self, variant: ua.Variant, *, raw: bool = False) -> Any:
        """Encode a Variant; ``raw`` drops the type members (Part 14 RawData / known DataType)."""
        vtype = variant_type_of(variant.VariantType)
        value = variant.Value
        dims = variant_dimensions(variant)
        if self.encoding is FieldEncoding.NON_REVERSIBLE:
            if vtype is VT.Null or value is None:
                return None
            if variant.is_array:
                flat = flatten(value) if dims else value
                enc = self.encode_array(flat, vtype)
                return nest_matrix(enc, dims) if dims and enc is not None else enc
            return self.encode_value(value, vtype)
        if vtype is VT.Null:
            return None
        type_key, value_key = ("UaType", "Value") if self._is105 else ("Type", "Body")
        if variant.is_array:
            body: Any = self.encode_array(flatten(value) if dims else value, vtype)
        else:
            body = self.encode_value(value, vtype)
        if raw:
            return body
        out: dict[str, Any] = {type_key: int(vtype)}
        if body is not None or (variant.is_array and vtype not in NULLABLE):
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
        variant = dv.Value if dv.Value is not None else _NULL_VARIANT
        plain = self._plain_scalar(variant)
        if plain is not None:  # the usual field value; the same members as below, built directly
            type_id, body = plain
            if self._is105:
                out = {"Value": body} if raw else {"UaType": type_id, "Value": body}
            elif self.encoding is FieldEncoding.REVERSIBLE:
                out = {"Value": {"Type": type_id, "Body": body}}
            else:
                out = {"Value": body}
        elif self._is105:
            enc = self.encode_variant(variant)
            out = {} if enc is None else enc  # a new dict of its own
            if raw:
                out.pop("UaType", None)
        elif self.encoding is FieldEncoding.REVERSIBLE:
            enc = self.encode_variant(variant)
            out = {} if enc is None else {"Value": enc}
        else:
            body = self.encode_variant(variant)
            out = {} if body is None else {"Value": body}
        status = dv.StatusCode
        if m.status and status is not None and status_value(status) != 0:
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

    @functools.cached_property
    def _plain_encoders(self) -> dict[ua.VariantType, tuple[int, Callable[[Any], Any]]]:
        """The built-in types whose encoder turns every non-null scalar into a non-null JSON
        value (numbers, Boolean, DateTime): :meth:`encode_data_value`'s shortcut."""
        return {vt: (int(vt), self._scalar_encoders[vt]) for vt in _PLAIN_TYPES}

    def _plain_scalar(self, variant: ua.Variant) -> tuple[int, Any] | None:
        """(type id, encoded value) of a non-null scalar of a plain type without Dimensions,
        as :meth:`encode_variant` would encode it; None for anything else."""
        if variant.is_array or variant.Dimensions is not None or variant.Value is None:
            return None
        plain = self._plain_encoders.get(variant.VariantType)
        if plain is None:
            return None
        type_id, enc = plain
        return type_id, enc(variant.Value)

    def encode_status_code(self, status: ua.StatusCode | int) -> Any:
        """StatusCode: ``{"Code","Symbol"}`` in 1.05 (§5.4.2.12), a number in 1.04 Reversible."""
        code = status_value(status)
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
        return at_path(path, self._decode_variant, obj, vtype, DecodeContext())

    def decode_data_value(
        self, obj: Any, *, vtype: ua.VariantType | None = None, path: str = ""
    ) -> ua.DataValue:
        """Decode a DataValue in any reversible form (1.05 inline members or 1.04 nested Value)."""
        return at_path(path, self._decode_data_value, obj, vtype, DecodeContext())

    def decode_value(self, obj: Any, vtype: ua.VariantType, *, path: str = "") -> Any:
        """Decode one scalar of built-in type ``vtype``."""
        return at_path(path, self._decode_scalar, obj, vtype, DecodeContext())

    def _decode_variant(
        self, obj: Any, vtype: ua.VariantType | None, ctx: DecodeContext
    ) -> ua.Variant:
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
        vt = decode_vtype(obj[type_key], type_key)
        if vt is VT.Null:
            return ua.Variant()
        dims = obj.get("Dimensions")
        if dims is not None:
            dims = decode_dimensions(dims)
        return self._variant_from_body(obj.get(value_key, MISSING), vt, dims, ctx, value_key)

    def _variant_from_body(
        self,
        body: Any,
        vt: ua.VariantType,
        dims: list[int] | None,
        ctx: DecodeContext,
        value_key: str = "Value",
    ) -> ua.Variant:
        if body is MISSING:
            # A missing value is the type's default (Compact omits defaults, Part 6 §5.4.2.1).
            if dims:
                raise DecodeError(value_key, "missing member (Dimensions given without a value)")
            return ua.Variant(default_scalar(vt), vt)
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
            if vt in NULLABLE:
                return ua.Variant(default_scalar(vt), vt)
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

    def _decode_element(self, x: Any, vt: ua.VariantType, ctx: DecodeContext, path: str) -> Any:
        if x is None:
            if vt is VT.Variant:
                return ua.Variant()  # the null Variant, as asyncua's binary decoder returns it
            return default_scalar(vt) if vt is VT.StatusCode else None
        try:
            return self._decode_scalar(x, vt, ctx)
        except DecodeError as e:
            raise e.within(path) from None

    def _decode_scalar(self, x: Any, vt: ua.VariantType, ctx: DecodeContext) -> Any:
        if vt is VT.Boolean:
            if not isinstance(x, bool):
                raise DecodeError("", f"expected a Boolean, got {json_type(x)}")
            return x
        if vt in INT_RANGES:
            return decode_int(x, vt)
        if vt is VT.Float or vt is VT.Double:
            return decode_float(x, vt)
        if vt is VT.String:
            return expect_str(x, "String")
        if vt is VT.DateTime:
            return decode_datetime(x)
        if vt is VT.Guid:
            return decode_guid(expect_str(x, "Guid"))
        if vt is VT.ByteString:
            return decode_bytes(x)
        if vt is VT.XmlElement:
            return ua.XmlElement(expect_str(x, "XmlElement"))
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
        with Nesting(ctx):
            if vt is VT.ExtensionObject:
                return self._decode_extension_object(x, ctx)
            if vt is VT.DataValue:
                return self._decode_data_value(x, None, ctx)
            if vt is VT.Variant:
                return self._decode_variant(x, None, ctx)
            if vt is VT.DiagnosticInfo:
                return self._decode_diagnostic_info(x, ctx)
        raise DecodeError("", f"built-in type {int(vt)} cannot hold a value")

    def _decode_data_value(
        self, obj: Any, vtype: ua.VariantType | None, ctx: DecodeContext
    ) -> ua.DataValue:
        if not isinstance(obj, dict):
            raise DecodeError("", f"expected a DataValue object, got {json_type(obj)}")
        if "UaType" in obj or (vtype is not None and "Value" in obj and "Type" not in obj):
            # 1.05: the Variant members sit inline (Part 6 §5.4.2.18)
            if vtype is not None and "UaType" not in obj:
                variant = self._variant_from_body(obj["Value"], vtype, opt_dims(obj), ctx)
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
            SourceTimestamp=opt_member(obj, "SourceTimestamp", decode_datetime),
            ServerTimestamp=opt_member(obj, "ServerTimestamp", decode_datetime),
            SourcePicoseconds=opt_member(obj, "SourcePicoseconds", picoseconds),
            ServerPicoseconds=opt_member(obj, "ServerPicoseconds", picoseconds),
        )

    def decode_status_code(self, x: Any) -> ua.StatusCode:
        """StatusCode from ``{"Code":…}`` (1.05) or a bare number (1.04)."""
        if isinstance(x, dict):
            code = x.get("Code", 0)
            if code is None:
                code = 0
            return ua.StatusCode(decode_int(code, VT.UInt32, "Code"))
        return ua.StatusCode(decode_int(x, VT.UInt32))

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

    def _decode_diagnostic_info(self, x: Any, ctx: DecodeContext) -> ua.DiagnosticInfo:
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
                    with Nesting(ctx):
                        info.InnerDiagnosticInfo = self._decode_diagnostic_info(v, ctx)
                elif attr == "AdditionalInfo":
                    info.AdditionalInfo = expect_str(v, key)
                else:
                    setattr(info, attr, decode_int(v, VT.Int32))
            except DecodeError as e:
                raise e.within(key) from None
        return info

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


@dataclasses.dataclass(frozen=True, slots=True)
class DataValueMembers:
    """Which optional DataValue members to write (Part 14 DataSetFieldContentMask bits 0–5)."""

    status: bool = True
    source_timestamp: bool = True
    server_timestamp: bool = True
    source_picoseconds: bool = True
    server_picoseconds: bool = True


_ALL_MEMBERS: Final = DataValueMembers()
_NULL_VARIANT: Final = ua.Variant()  # only read, never changed
_PLAIN_TYPES: Final = (
    VT.Boolean,
    VT.SByte,
    VT.Byte,
    VT.Int16,
    VT.UInt16,
    VT.Int32,
    VT.UInt32,
    VT.Int64,
    VT.UInt64,
    VT.Float,
    VT.Double,
    VT.DateTime,
)
_DIAG_MEMBERS: Final = (
    ("SymbolicId", "SymbolicId"),
    ("NamespaceURI", "NamespaceUri"),
    ("Locale", "Locale"),
    ("LocalizedText", "LocalizedText"),
    ("AdditionalInfo", "AdditionalInfo"),
    ("InnerStatusCode", "InnerStatusCode"),
    ("InnerDiagnosticInfo", "InnerDiagnosticInfo"),
)

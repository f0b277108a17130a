"""Our OPC UA JSON (OPC 10000-6 1.05 §5.4, Compact and Verbose) read back by node-opcua.

Every case of the corpus below is encoded with *our* encoder (``JsonCodec``) in both 1.05 forms,
the whole lot is fed to ``interop/decode.mjs`` (node-opcua-json, pinned in
interop/package-lock.json) in **one** Node.js process, and what node-opcua decoded (built-in type
id, array type, dimensions, normalised value, DataValue members) is compared with what the
specification says a decoder must get from that JSON. The expectation is computed from the Python
input value, never from our JSON, so an encoder mistake shows up here too.

Comparison rules: Float after rounding to float32, DateTime at millisecond precision (a JS Date
has no more; node-opcua truncates), Guid ignoring case, NodeIds by (namespace index, identifier
type, identifier, namespace URI, server index).

We follow the specification, not node-opcua. Where node-opcua 2.186.4 reads the specification
differently (interop/FINDINGS.md), the case is listed in ``KNOWN_DEPARTURES`` with the clause it
breaks, and the test asserts node-opcua's actual (wrong) result for exactly those cases, plus a
check that our JSON still has the spec form that node-opcua misreads. So the test fails when
node-opcua changes (fixed or broken further), when our output changes, and when any other case
stops matching the specification.

Summary of the departures (details and clauses in ``DEPARTURES``):

| key | Part 6 clause | node-opcua 2.186.4 |
| --- | --- | --- |
| datavalue-status | §5.4.2.18 | reads ``StatusCode``, ignores ``Status``: all Good |
| datavalue-falsy-value | §5.4.2.18, §5.4.2.17 | ``"Value"`` 0 / false / "" → Null variant |
| matrix-dimensions | §5.4.2.17, §5.4.5 | reads ``UaDimensions``, ignores ``Dimensions``: flat |
| scalar-special-float | §5.4.2.4 | scalar "NaN" / "Infinity" / "-Infinity" stay strings |
| empty-bytestring | §5.4.2.8 | ``""`` (empty ByteString) → null |
| empty-localizedtext | §5.4.2.15 | ``"Locale":""`` / ``"Text":""`` → null |
| nsu-percent-escape | §5.1.12, §5.4.2.10, §5.4.2.14 | undoes only ``%3B``: URI not found |
| expanded-uri-dropped | §5.4.2.11 | unknown ``nsu=`` URI dropped (ns 0, no URI) |
| server-prefix-rejected | §5.4.2.11, §5.1.12 | ``svr=<n>;`` prefix throws |
| qualifiedname-index-form | §5.4.2.14 | ``ns=<n>;Name`` → ns 0, whole string as Name |
| inline-structure | §5.4.2.16, §5.4.6 | fields inline next to ``UaTypeId`` ignored |
| binary-body-ignored | §5.4.2.16 | ``UaEncoding`` 1 body of a known type ignored |
| binary-body-needs-constructor | §5.4.2.16 | opaque body of a non-ns-0 type throws |
| verbose-null-extensionobject | §5.4.2.16 | Verbose null ExtensionObject ``{}`` throws |

Not triggered by our encoder, hence not in the corpus: a Variant whose ``Value`` is left out for a
non-nullable type (node-opcua throws; we always write non-null values), ``nsu=`` with a URI that
is not in the table (we write ``ns=<n>;`` when an index has no URI), and the 1.04 forms.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua

from harness.node_opcua_json import decode_with_node_opcua
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding

pytestmark = pytest.mark.interop

VT = ua.VariantType

# index 2 needs "%3B" in nsu= (Part 6 §5.1.12 ENCODEDURI), index 3 needs "%25"
NAMESPACES = (
    "http://opcfoundation.org/UA/",
    "urn:test",
    "urn:with;semicolon",
    "urn:percent%20encoded",
)
FORMS = (FieldEncoding.COMPACT, FieldEncoding.VERBOSE)

GUID = uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")
T_MS = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
T_US = datetime(2024, 5, 1, 1, 2, 3, 456789, tzinfo=UTC)
NON_ASCII = 'Grüße, 世界 🌍 "quoted" \\ back\nslash\ttab'
GOOD = ua.StatusCode(0)
BAD_NODE_ID_UNKNOWN = ua.StatusCode(0x80340000)
UNCERTAIN_INITIAL_VALUE = ua.StatusCode(0x40920000)
UNCERTAIN = ua.StatusCode(0x40000000)
RANGE_BINARY_BODY = struct.pack("<dd", 1.5, 9.5)  # UA Binary of Range{Low=1.5, High=9.5}
EU_CELSIUS = ua.EUInformation(
    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
    UnitId=4408652,
    DisplayName=ua.LocalizedText("°C", "en"),
    Description=ua.LocalizedText("degree Celsius", "en"),
)


# ---------------------------------------------------------------------------------- corpus


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    value: ua.Variant | ua.DataValue

    @property
    def kind(self) -> str:
        return "datavalue" if isinstance(self.value, ua.DataValue) else "variant"


def _v(case_id: str, value: Any, vt: ua.VariantType, dims: list[int] | None = None) -> Case:
    return Case(case_id, ua.Variant(value, vt, dims, is_array=isinstance(value, list)))


def _dv(case_id: str, **kw: Any) -> Case:
    return Case(case_id, ua.DataValue(**kw))


CORPUS: tuple[Case, ...] = (
    # 1 Boolean
    _v("boolean-true", True, VT.Boolean),
    _v("boolean-false", False, VT.Boolean),
    _v("boolean-array", [True, False, True], VT.Boolean),
    # 2..7 small integers, at their extremes
    _v("sbyte-min", -128, VT.SByte),
    _v("sbyte-array", [-128, 0, 127], VT.SByte),
    _v("byte-max", 255, VT.Byte),
    _v("byte-array", [0, 1, 255], VT.Byte),
    _v("int16-min", -32768, VT.Int16),
    _v("int16-array", [-32768, 0, 32767], VT.Int16),
    _v("int16-cube", [[[1, 2], [3, 4]], [[5, 6], [7, 8]]], VT.Int16, [2, 2, 2]),
    _v("uint16-max", 65535, VT.UInt16),
    _v("uint16-array", [0, 65535], VT.UInt16),
    _v("int32-min", -(2**31), VT.Int32),
    _v("int32-max", 2**31 - 1, VT.Int32),
    _v("int32-zero", 0, VT.Int32),
    _v("int32-array", [-(2**31), -1, 0, 2**31 - 1], VT.Int32),
    _v("int32-matrix", [[1, 2, 3], [4, 5, 6]], VT.Int32, [2, 3]),
    _v("uint32-max", 2**32 - 1, VT.UInt32),
    _v("uint32-array", [0, 2**32 - 1], VT.UInt32),
    # 8, 9 64-bit integers travel as decimal strings
    _v("int64-min", -(2**63), VT.Int64),
    _v("int64-max", 2**63 - 1, VT.Int64),
    _v("int64-minus-one", -1, VT.Int64),
    _v("int64-array", [-(2**63), 0, 2**53 + 1, 2**63 - 1], VT.Int64),
    _v("uint64-max", 2**64 - 1, VT.UInt64),
    _v("uint64-zero", 0, VT.UInt64),
    _v("uint64-array", [0, 2**53 + 1, 2**64 - 1], VT.UInt64),
    # 10, 11 floating point, specials as strings (§5.4.2.4)
    _v("float-tenth", 0.1, VT.Float),
    _v("float-max", 3.4028234663852886e38, VT.Float),
    _v("float-nan", math.nan, VT.Float),
    _v("float-infinity", math.inf, VT.Float),
    _v("float-minus-infinity", -math.inf, VT.Float),
    _v("float-array", [0.1, -2.5, math.nan, math.inf, -math.inf], VT.Float),
    _v("float-matrix", [[0.5, 1.5], [2.5, -0.25]], VT.Float, [2, 2]),
    _v("double-pi", math.pi, VT.Double),
    _v("double-max", 1.7976931348623157e308, VT.Double),
    _v("double-min-subnormal", 5e-324, VT.Double),
    _v("double-nan", math.nan, VT.Double),
    _v("double-infinity", math.inf, VT.Double),
    _v("double-minus-infinity", -math.inf, VT.Double),
    _v("double-array", [1.25, -0.0, math.nan, math.inf, -math.inf, 1e-300], VT.Double),
    # 12 String
    _v("string-non-ascii", NON_ASCII, VT.String),
    _v("string-empty", "", VT.String),
    _v("string-null", None, VT.String),
    _v("string-array", ["a", "", None, "é€😀"], VT.String),
    # 13 DateTime
    _v("datetime-ms", T_MS, VT.DateTime),
    _v("datetime-us", T_US, VT.DateTime),
    _v("datetime-min", datetime(1601, 1, 1, tzinfo=UTC), VT.DateTime),
    _v("datetime-max", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), VT.DateTime),
    _v("datetime-array", [T_MS, T_US, datetime(1970, 1, 1, tzinfo=UTC)], VT.DateTime),
    # 14 Guid
    _v("guid", GUID, VT.Guid),
    _v("guid-zero", uuid.UUID(int=0), VT.Guid),
    _v("guid-array", [GUID, uuid.UUID(int=0)], VT.Guid),
    # 15 ByteString
    _v("bytestring", b"\x00\x01\xfe\xffOPC", VT.ByteString),
    _v("bytestring-all-bytes", bytes(range(256)), VT.ByteString),
    _v("bytestring-empty", b"", VT.ByteString),
    _v("bytestring-null", None, VT.ByteString),
    _v("bytestring-array", [b"\x01", b"", None], VT.ByteString),
    # 16 XmlElement
    _v("xmlelement", ua.XmlElement('<a b="c">é</a>'), VT.XmlElement),
    _v("xmlelement-array", [ua.XmlElement("<a/>"), ua.XmlElement("<b/>")], VT.XmlElement),
    # 17 NodeId: the four identifier types in namespace 0 and in namespaces with a URI
    _v("nodeid-numeric-ns0", ua.NodeId(2255, 0), VT.NodeId),
    _v("nodeid-string-ns0", ua.NodeId("Hello;World", 0, ua.NodeIdType.String), VT.NodeId),
    _v("nodeid-guid-ns0", ua.NodeId(GUID, 0, ua.NodeIdType.Guid), VT.NodeId),
    _v("nodeid-opaque-ns0", ua.NodeId(b"\x00\xffabc", 0, ua.NodeIdType.ByteString), VT.NodeId),
    _v("nodeid-numeric-uri", ua.NodeId(5, 1), VT.NodeId),
    _v("nodeid-string-uri", ua.NodeId("Temperatur/ä", 1, ua.NodeIdType.String), VT.NodeId),
    _v("nodeid-guid-uri-semicolon", ua.NodeId(GUID, 2, ua.NodeIdType.Guid), VT.NodeId),
    _v("nodeid-opaque-uri", ua.NodeId(b"\x01\x02", 1, ua.NodeIdType.ByteString), VT.NodeId),
    _v("nodeid-uri-percent", ua.NodeId("T", 3, ua.NodeIdType.String), VT.NodeId),
    _v("nodeid-index-without-uri", ua.NodeId(5, 5), VT.NodeId),  # first abnormal state
    _v("nodeid-array", [ua.NodeId(1, 0), ua.NodeId("a", 1, ua.NodeIdType.String)], VT.NodeId),
    # 18 ExpandedNodeId
    _v("expandednodeid-ns0", ua.ExpandedNodeId(85, 0), VT.ExpandedNodeId),
    _v("expandednodeid-index", ua.ExpandedNodeId(7, 1), VT.ExpandedNodeId),
    _v(
        "expandednodeid-known-uri",
        ua.ExpandedNodeId("X", 0, ua.NodeIdType.String, NamespaceUri="urn:test"),
        VT.ExpandedNodeId,
    ),
    _v(
        "expandednodeid-unknown-uri",
        ua.ExpandedNodeId("Pump", 0, ua.NodeIdType.String, NamespaceUri="urn:other"),
        VT.ExpandedNodeId,
    ),
    _v("expandednodeid-server-index", ua.ExpandedNodeId(7, 1, ServerIndex=2), VT.ExpandedNodeId),
    _v(
        "expandednodeid-array",
        [ua.ExpandedNodeId(1, 0), ua.ExpandedNodeId(GUID, 2, ua.NodeIdType.Guid)],
        VT.ExpandedNodeId,
    ),
    # 19 StatusCode
    _v("statuscode-good", GOOD, VT.StatusCode),
    _v("statuscode-bad", BAD_NODE_ID_UNKNOWN, VT.StatusCode),
    _v("statuscode-uncertain", UNCERTAIN_INITIAL_VALUE, VT.StatusCode),
    _v("statuscode-info-bits", ua.StatusCode(0x40920000 | 0x480), VT.StatusCode),
    _v("statuscode-array", [GOOD, BAD_NODE_ID_UNKNOWN, UNCERTAIN_INITIAL_VALUE], VT.StatusCode),
    # 20 QualifiedName
    _v("qualifiedname-ns0", ua.QualifiedName("Server", 0), VT.QualifiedName),
    _v("qualifiedname-uri", ua.QualifiedName("a:b;c", 1), VT.QualifiedName),
    _v("qualifiedname-uri-semicolon", ua.QualifiedName("Name", 2), VT.QualifiedName),
    _v("qualifiedname-uri-percent", ua.QualifiedName("Q", 3), VT.QualifiedName),
    _v("qualifiedname-index-without-uri", ua.QualifiedName("Name", 7), VT.QualifiedName),
    _v(
        "qualifiedname-array",
        [ua.QualifiedName("a", 0), ua.QualifiedName("b", 1)],
        VT.QualifiedName,
    ),
    # 21 LocalizedText
    _v("localizedtext", ua.LocalizedText("Grüße 🌍", "de-DE"), VT.LocalizedText),
    _v("localizedtext-no-locale", ua.LocalizedText("text only"), VT.LocalizedText),
    _v("localizedtext-empty", ua.LocalizedText("", ""), VT.LocalizedText),
    _v(
        "localizedtext-array",
        [ua.LocalizedText("a", "en"), ua.LocalizedText("b")],
        VT.LocalizedText,
    ),
    # 22 ExtensionObject
    _v("extensionobject-range", ua.Range(1.5, 9.5), VT.ExtensionObject),
    _v("extensionobject-euinformation", EU_CELSIUS, VT.ExtensionObject),
    _v(
        "extensionobject-binary-body",
        ua.ExtensionObject(TypeId=ua.NodeId(884, 0), Body=RANGE_BINARY_BODY),
        VT.ExtensionObject,
    ),
    _v(
        "extensionobject-vendor-binary-body",
        ua.ExtensionObject(TypeId=ua.NodeId(5001, 1), Body=b"\x01\x02\x03"),
        VT.ExtensionObject,
    ),
    _v("extensionobject-null", ua.ExtensionObject(), VT.ExtensionObject),
    _v("extensionobject-array", [ua.Range(0.0, 1.0), ua.Range(2.0, 3.0)], VT.ExtensionObject),
    # 23 DataValue inside a Variant
    _v(
        "datavalue-nested-good",
        ua.DataValue(
            ua.Variant(2.5, VT.Double),
            GOOD,
            SourceTimestamp=T_MS,
            ServerTimestamp=T_MS,
            SourcePicoseconds=10,
            ServerPicoseconds=20,
        ),
        VT.DataValue,
    ),
    _v(
        "datavalue-nested-uncertain",
        ua.DataValue(ua.Variant(5, VT.Int32), UNCERTAIN, SourceTimestamp=T_MS),
        VT.DataValue,
    ),
    _v(
        "datavalue-nested-zero",
        ua.DataValue(ua.Variant(0, VT.Int32), GOOD, SourceTimestamp=T_MS),
        VT.DataValue,
    ),
    _v(
        "datavalue-array",
        [ua.DataValue(ua.Variant(1.5, VT.Double)), ua.DataValue(ua.Variant("x", VT.String))],
        VT.DataValue,
    ),
    # 24 Variant: only arrays of Variants exist (a Variant cannot hold a scalar Variant)
    _v(
        "variant-array",
        [
            ua.Variant(1, VT.Int32),
            ua.Variant("x", VT.String),
            ua.Variant([1.5, 2.5], VT.Double, is_array=True),
            ua.Variant(2**63 - 1, VT.Int64),
            ua.Variant(),
        ],
        VT.Variant,
    ),
    # 25 DiagnosticInfo
    _v(
        "diagnosticinfo",
        ua.DiagnosticInfo(
            SymbolicId=1,
            NamespaceURI=2,
            Locale=3,
            LocalizedText=4,
            AdditionalInfo="more ü",
            InnerStatusCode=BAD_NODE_ID_UNKNOWN,
            InnerDiagnosticInfo=ua.DiagnosticInfo(SymbolicId=5),
        ),
        VT.DiagnosticInfo,
    ),
    _v("diagnosticinfo-empty", ua.DiagnosticInfo(), VT.DiagnosticInfo),
    _v(
        "diagnosticinfo-array",
        [ua.DiagnosticInfo(SymbolicId=1), ua.DiagnosticInfo(AdditionalInfo="x")],
        VT.DiagnosticInfo,
    ),
    # Top-level DataValues (Part 6 §5.4.2.18: Variant members inline + status and timestamps)
    _dv(
        "dv-good-double",
        Value=ua.Variant(1.25, VT.Double),
        StatusCode=GOOD,
        SourceTimestamp=T_MS,
        ServerTimestamp=T_MS,
        SourcePicoseconds=10,
        ServerPicoseconds=20,
    ),
    _dv(
        "dv-good-us-timestamps",
        Value=ua.Variant(7, VT.UInt16),
        SourceTimestamp=T_US,
        ServerTimestamp=T_US,
    ),
    _dv("dv-good-int64-max", Value=ua.Variant(2**63 - 1, VT.Int64), ServerTimestamp=T_MS),
    _dv("dv-good-float-array", Value=ua.Variant([0.1, 0.2], VT.Float, is_array=True)),
    _dv("dv-good-string", Value=ua.Variant(NON_ASCII, VT.String), SourceTimestamp=T_MS),
    _dv("dv-good-datetime", Value=ua.Variant(T_MS, VT.DateTime), SourceTimestamp=T_MS),
    _dv("dv-empty"),
    _dv("dv-bad-no-value", StatusCode=BAD_NODE_ID_UNKNOWN, SourceTimestamp=T_MS),
    _dv(
        "dv-uncertain-string",
        Value=ua.Variant("x", VT.String),
        StatusCode=UNCERTAIN_INITIAL_VALUE,
        ServerTimestamp=T_MS,
    ),
    _dv("dv-good-zero", Value=ua.Variant(0.0, VT.Double), SourceTimestamp=T_MS),
    _dv("dv-good-false", Value=ua.Variant(False, VT.Boolean), SourceTimestamp=T_MS),
    _dv("dv-good-empty-string", Value=ua.Variant("", VT.String), SourceTimestamp=T_MS),
    _dv(
        "dv-bad-zero",
        Value=ua.Variant(0, VT.Int32),
        StatusCode=BAD_NODE_ID_UNKNOWN,
        SourceTimestamp=T_MS,
        SourcePicoseconds=5,
    ),
    _dv(
        "dv-good-matrix",
        Value=ua.Variant([[1.0, 2.0], [3.0, 4.0]], VT.Double, [2, 2]),
        SourceTimestamp=T_MS,
    ),
    _dv("dv-good-nan", Value=ua.Variant(math.nan, VT.Double), SourceTimestamp=T_MS),
)
CASES_BY_ID = {c.id: c for c in CORPUS}
assert len(CASES_BY_ID) == len(CORPUS), "duplicate case ids"


# ------------------------------------------------------------ what the specification says


def _iso_ms(dt: datetime | None) -> str | None:
    """A DateTime as node-opcua's JS Date prints it: UTC, milliseconds (truncated), clamped."""
    if dt is None:
        return None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if dt <= datetime(1601, 1, 1, tzinfo=UTC):  # DateTime.MinValue ⇔ "0001-01-01T00:00:00Z"
        return "0001-01-01T00:00:00.000Z"
    if dt >= datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC):
        return "9999-12-31T23:59:59.000Z"
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


def _special(f: float) -> float | str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return f


def _f32(f: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", f))[0])


_ID_TYPE = {
    ua.NodeIdType.TwoByte: "Numeric",
    ua.NodeIdType.FourByte: "Numeric",
    ua.NodeIdType.Numeric: "Numeric",
    ua.NodeIdType.String: "String",
    ua.NodeIdType.Guid: "Guid",
    ua.NodeIdType.ByteString: "ByteString",
}


def _spec_node_id(n: ua.NodeId, expanded: bool) -> dict[str, Any]:
    ident: Any = n.Identifier
    if isinstance(ident, uuid.UUID):
        ident = str(ident)
    elif isinstance(ident, bytes):
        ident = base64.b64encode(ident).decode()
    ns, ns_uri = n.NamespaceIndex, None
    if expanded and getattr(n, "NamespaceUri", None):
        # §5.4.2.11: map the URI to an index when the table has it, else keep the URI
        if n.NamespaceUri in NAMESPACES:
            ns = NAMESPACES.index(n.NamespaceUri)
        else:
            ns, ns_uri = 0, n.NamespaceUri
    return {
        "namespace": ns,
        "identifierType": _ID_TYPE[n.NodeIdType],
        "value": ident,
        "namespaceUri": ns_uri,
        "serverIndex": int(getattr(n, "ServerIndex", 0) or 0) if expanded else None,
    }


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _spec_field(x: Any) -> Any:
    if isinstance(x, ua.LocalizedText):
        return {"locale": x.Locale, "text": x.Text}
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise TypeError(f"no expectation rule for structure field {x!r}")


def _spec_structure(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    return {
        "typeName": cls.__name__,
        "dataTypeNodeId": f"ns={cls.data_type.NamespaceIndex};i={cls.data_type.Identifier}",
        "fields": {
            _lower_camel(f.name): _spec_field(getattr(obj, f.name))
            for f in dataclasses.fields(cls)
            if f.name != "Encoding"
        },
    }


def _spec_extension_object(x: Any) -> Any:
    if isinstance(x, ua.ExtensionObject):
        if x.Body is None:
            return None
        if x.TypeId == ua.NodeId(884, 0):  # a UA Binary Range body: a decoder knowing Range
            low, high = struct.unpack("<dd", x.Body)
            return _spec_structure(ua.Range(low, high))
        # unknown type: the ExtensionObject is kept, its body opaque
        return {
            "opaque": {"typeId": x.TypeId.to_string(), "body": base64.b64encode(x.Body).decode()}
        }
    return _spec_structure(x)


def _spec_diagnostic(d: ua.DiagnosticInfo | None) -> dict[str, Any] | None:
    if d is None:
        return None

    def idx(v: int | None) -> int:
        return -1 if v is None else v  # -1: "no string" (Part 4 §7.12)

    return {
        "symbolicId": idx(d.SymbolicId),
        "namespaceUri": idx(d.NamespaceURI),
        "locale": idx(d.Locale),
        "localizedText": idx(d.LocalizedText),
        "additionalInfo": d.AdditionalInfo,
        "innerStatusCode": 0 if d.InnerStatusCode is None else d.InnerStatusCode.value,
        "innerDiagnosticInfo": _spec_diagnostic(d.InnerDiagnosticInfo),
    }


def _spec_data_value_members(dv: ua.DataValue) -> dict[str, Any]:
    return {
        "statusCode": 0 if dv.StatusCode is None else dv.StatusCode.value,
        "sourceTimestamp": _iso_ms(dv.SourceTimestamp),
        "serverTimestamp": _iso_ms(dv.ServerTimestamp),
        "sourcePicoseconds": dv.SourcePicoseconds or 0,
        "serverPicoseconds": dv.ServerPicoseconds or 0,
    }


def _spec_scalar(vt: ua.VariantType, x: Any) -> Any:
    if x is None:
        return None
    if vt in (VT.Int64, VT.UInt64):
        return str(x)
    if vt is VT.Float:
        return _special(_f32(x) if math.isfinite(x) else x)
    if vt is VT.Double:
        return _special(x)
    if vt is VT.DateTime:
        return _iso_ms(x)
    if vt is VT.Guid:
        return str(x)
    if vt is VT.ByteString:
        return base64.b64encode(x).decode()
    if vt is VT.XmlElement:
        return x.Value if isinstance(x, ua.XmlElement) else x
    if vt in (VT.NodeId, VT.ExpandedNodeId):
        return _spec_node_id(x, expanded=vt is VT.ExpandedNodeId)
    if vt is VT.StatusCode:
        return x.value
    if vt is VT.QualifiedName:
        return {"namespaceIndex": x.NamespaceIndex, "name": x.Name}
    if vt is VT.LocalizedText:
        return {"locale": x.Locale, "text": x.Text}
    if vt is VT.ExtensionObject:
        return _spec_extension_object(x)
    if vt is VT.DataValue:
        return {"value": _spec_variant(x.Value or ua.Variant()), **_spec_data_value_members(x)}
    if vt is VT.Variant:
        return _spec_variant(x)
    if vt is VT.DiagnosticInfo:
        return _spec_diagnostic(x)
    return x  # Boolean, SByte .. UInt32, String


def _flatten(x: Any) -> Iterator[Any]:
    if isinstance(x, list):
        for e in x:
            yield from _flatten(e)
    else:
        yield x


def _spec_variant(v: ua.Variant) -> dict[str, Any]:
    vt = v.VariantType
    if vt is VT.Null:
        return {"dataType": 0, "arrayType": "Scalar", "dimensions": None, "value": None}
    dims = list(v.Dimensions) if v.Dimensions and len(v.Dimensions) > 1 else None
    if dims:
        array_type, value = "Matrix", [_spec_scalar(vt, e) for e in _flatten(v.Value)]
    elif v.is_array:
        array_type, value = "Array", [_spec_scalar(vt, e) for e in v.Value]
    else:
        array_type, value = "Scalar", _spec_scalar(vt, v.Value)
    return {"dataType": int(vt), "arrayType": array_type, "dimensions": dims, "value": value}


_NO_DATA_VALUE = dict.fromkeys(
    ("statusCode", "sourceTimestamp", "serverTimestamp", "sourcePicoseconds", "serverPicoseconds")
)


def spec_reply(case: Case) -> dict[str, Any]:
    """What a decoder following Part 6 gets, in the shape decode.mjs reports it."""
    if isinstance(case.value, ua.DataValue):
        variant = case.value.Value or ua.Variant()
        members = _spec_data_value_members(case.value)
    else:
        variant, members = case.value, dict(_NO_DATA_VALUE)
    out: dict[str, Any] = {"ok": True, **_spec_variant(variant), **members}
    if variant.VariantType in (VT.Float, VT.Double) and not variant.is_array:
        out["jsType"] = "number"  # a real number (NaN included), not a string
    return out


# ------------------------------------------------------------------- normalisation


def _canon_variant(d: Any) -> Any:
    """Apply the comparison rules to a {dataType, value, ...} mapping, recursively."""
    if not isinstance(d, dict) or "dataType" not in d:
        return d
    d = dict(d)
    dt, value = d["dataType"], d.get("value")

    def one(x: Any) -> Any:
        if x is None:
            return None
        if dt == VT.Float and isinstance(x, int | float) and not isinstance(x, bool):
            return _f32(x) if math.isfinite(x) else x
        if dt == VT.Guid and isinstance(x, str):
            return x.lower()
        if dt in (VT.NodeId, VT.ExpandedNodeId) and isinstance(x, dict):
            x = {k: v for k, v in x.items() if k != "string"}  # node-opcua's own toString()
            if x.get("identifierType") == "Guid" and isinstance(x.get("value"), str):
                x["value"] = x["value"].lower()
            return x
        if dt == VT.Variant:
            return _canon_variant(x)
        if dt == VT.DataValue and isinstance(x, dict):
            return {**x, "value": _canon_variant(x.get("value"))}
        return x

    d["value"] = [one(e) for e in value] if isinstance(value, list) else one(value)
    return d


def observed(reply: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The members of a decode.mjs reply that the expectation speaks about, normalised."""
    if not reply.get("ok"):
        return {"ok": False, "error": reply.get("error")}
    canon: dict[str, Any] = _canon_variant({k: reply.get(k) for k in expected})
    return canon


# ------------------------------------------------------------------------ departures


def _walk(j: Any) -> Iterator[Any]:
    yield j
    if isinstance(j, dict):
        for v in j.values():
            yield from _walk(v)
    elif isinstance(j, list):
        for v in j:
            yield from _walk(v)


def _has_member(j: Any, key: str) -> bool:
    return any(isinstance(x, dict) and key in x for x in _walk(j))


def _value(j: Any) -> Any:
    return j.get("Value") if isinstance(j, dict) else None


def _has_falsy_value(j: Any) -> bool:
    return any(
        isinstance(x, dict)
        and "UaType" in x
        and "Value" in x
        and not isinstance(x["Value"], list | dict)
        and x["Value"] in (0, False, "")
        for x in _walk(j)
    )


def _unknown_nsu(j: Any) -> bool:
    v = _value(j)
    m = re.match(r"nsu=([^;]*);", v) if isinstance(v, str) else None
    return m is not None and m.group(1).replace("%3B", ";") not in NAMESPACES


@dataclasses.dataclass(frozen=True)
class Departure:
    clause: str  # the Part 6 (1.05) clause node-opcua's reading breaks
    spec: str  # what the specification says
    node_opcua: str  # what node-opcua 2.186.4 does instead
    our_json: Callable[[Any], bool]  # our output still has the spec form that triggers it


DEPARTURES: dict[str, Departure] = {
    "datavalue-status": Departure(
        "OPC 10000-6 §5.4.2.18 (DataValue, Table 'Status')",
        "the status of a DataValue is the member 'Status' (a StatusCode object, omitted when Good)",
        "reads only 'StatusCode' and ignores 'Status': every status decodes as Good (0), also in "
        "DataValues nested in a Variant",
        lambda j: _has_member(j, "Status") and not _has_member(j, "StatusCode"),
    ),
    "datavalue-falsy-value": Departure(
        "OPC 10000-6 §5.4.2.18 (DataValue 'Value' = the Variant's 'Value', §5.4.2.17)",
        "'Value' 0, false or \"\" next to 'UaType' is that value of that type",
        "a DataValue whose Value is JSON-falsy decodes as a Null variant (dataType 0); the other "
        "members survive",
        _has_falsy_value,
    ),
    "matrix-dimensions": Departure(
        "OPC 10000-6 §5.4.2.17 (Variant 'Dimensions') and §5.4.5 (multi-dimensional arrays)",
        "a matrix is the flat element array plus 'Dimensions'",
        "reads 'UaDimensions' and ignores 'Dimensions': the matrix becomes a one-dimensional Array",
        lambda j: _has_member(j, "Dimensions") and not _has_member(j, "UaDimensions"),
    ),
    "scalar-special-float": Departure(
        "OPC 10000-6 §5.4.2.4 (floating point)",
        '"NaN", "Infinity", "-Infinity" are the special Float/Double values',
        "a scalar keeps the JSON string (jsType 'string'); only arrays turn them into numbers",
        lambda j: _value(j) in ("NaN", "Infinity", "-Infinity"),
    ),
    "empty-bytestring": Departure(
        "OPC 10000-6 §5.4.2.8 (ByteString)",
        '"" is the base64 of zero bytes: an empty ByteString, distinct from null (JSON null)',
        'decodes "" as a null ByteString',
        lambda j: _value(j) == "" or (isinstance(_value(j), list) and "" in _value(j)),
    ),
    "empty-localizedtext": Departure(
        "OPC 10000-6 §5.4.2.15 (LocalizedText)",
        "'Locale' and 'Text' are Strings: \"\" is an empty string, not null",
        'turns "" into null for both members',
        lambda j: _value(j) == {"Locale": "", "Text": ""},
    ),
    "nsu-percent-escape": Departure(
        "OPC 10000-6 §5.1.12 (Table 4, ENCODEDURI) as used by §5.4.2.10 and §5.4.2.14",
        "the URI after 'nsu=' is percent-encoded ('%' as %25, ';' as %3B); a decoder undoes it "
        "before looking the URI up; an unmappable URI gives namespace 0 and the whole JSON "
        "string as the identifier / Name",
        "undoes only %3B, so 'urn:percent%2520encoded' is not found; the NodeId silently falls "
        "to namespace 0 keeping only its identifier, the QualifiedName gets namespace index -1",
        lambda j: isinstance(_value(j), str) and "%25" in _value(j),
    ),
    "expanded-uri-dropped": Departure(
        "OPC 10000-6 §5.4.2.11 (ExpandedNodeId)",
        "a NamespaceUri that cannot be mapped to an index is kept in the ExpandedNodeId's "
        "NamespaceUri",
        "maps it to namespace 0 and drops the URI",
        _unknown_nsu,
    ),
    "server-prefix-rejected": Departure(
        "OPC 10000-6 §5.4.2.11 (ExpandedNodeId) with the §5.1.12 grammar",
        "'svr=<index>;' (ServerIndex without a known ServerUri) is passed on to the application",
        "throws 'String cannot be coerced to a nodeId'",
        lambda j: isinstance(_value(j), str) and _value(j).startswith(("svr=", "svu=")),
    ),
    "qualifiedname-index-form": Departure(
        "OPC 10000-6 §5.4.2.14 (QualifiedName, first abnormal state)",
        "'ns=<index>;<name>' is written when the index has no URI; the decoder passes the "
        "NamespaceIndex on",
        "reads namespace 0 and the whole string as the Name",
        lambda j: isinstance(_value(j), str) and re.match(r"ns=\d+;", _value(j)) is not None,
    ),
    "inline-structure": Departure(
        "OPC 10000-6 §5.4.2.16 (ExtensionObject) and §5.4.6 (Structures)",
        "a JSON-encoded Structure is its fields with 'UaTypeId' inserted in the same object",
        "looks for the fields under 'UaBody' (its own form), finds none and returns the "
        "structure's default values, without an error",
        lambda j: any(
            isinstance(x, dict) and "UaTypeId" in x and "UaBody" not in x and len(x) > 1
            for x in _walk(j)
        ),
    ),
    "binary-body-ignored": Departure(
        "OPC 10000-6 §5.4.2.16 (ExtensionObject 'UaEncoding' 1, 'UaBody')",
        "'UaEncoding':1 means 'UaBody' holds the UA Binary encoding of the structure",
        "ignores the binary body of a type it knows and returns default values, without an error",
        lambda j: any(isinstance(x, dict) and x.get("UaEncoding") == 1 for x in _walk(j)),
    ),
    "binary-body-needs-constructor": Departure(
        "OPC 10000-6 §5.4.2.16 (ExtensionObject 'UaEncoding' 1, 'UaBody')",
        "a UA Binary body is an opaque ByteString a decoder can keep without knowing the type",
        "asks the application for a constructor (ExtensionObjectBuilder) for every structure "
        "outside namespace 0 and fails without one, even for an opaque binary body",
        lambda j: any(isinstance(x, dict) and x.get("UaEncoding") == 1 for x in _walk(j)),
    ),
    "verbose-null-extensionobject": Departure(
        "OPC 10000-6 §5.4.2.16 (ExtensionObject default value)",
        "the default (null) ExtensionObject is {} in the VerboseEncoding",
        "throws 'opcuaJsonDecodeNodeId: pojoOrString cannot be null or undefined'",
        lambda j: _value(j) == {},
    ),
}


@dataclasses.dataclass(frozen=True)
class Known:
    departures: tuple[str, ...]
    node_opcua: dict[str, Any]  # node-opcua's actual reply members that differ from the spec
    forms: frozenset[FieldEncoding] = frozenset(FORMS)


def _failed(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


_NULL_VARIANT = {"dataType": 0, "arrayType": "Scalar", "dimensions": None, "value": None}
_FLAT = {"arrayType": "Array", "dimensions": None}
_AS_STRING = {"jsType": "string"}
_RANGE_DEFAULT = {
    "typeName": "Range",
    "dataTypeNodeId": "ns=0;i=884",
    "fields": {"low": 0, "high": 0},
}
_NESTED_DV_DEFAULTS = {
    "serverTimestamp": None,
    "sourcePicoseconds": 0,
    "serverPicoseconds": 0,
    "sourceTimestamp": "2024-05-01T12:34:56.789Z",
}

KNOWN_DEPARTURES: dict[str, Known] = {
    "int16-cube": Known(("matrix-dimensions",), _FLAT),
    "int32-matrix": Known(("matrix-dimensions",), _FLAT),
    "float-matrix": Known(("matrix-dimensions",), _FLAT),
    "dv-good-matrix": Known(("matrix-dimensions",), _FLAT),
    "float-nan": Known(("scalar-special-float",), _AS_STRING),
    "float-infinity": Known(("scalar-special-float",), _AS_STRING),
    "float-minus-infinity": Known(("scalar-special-float",), _AS_STRING),
    "double-nan": Known(("scalar-special-float",), _AS_STRING),
    "double-infinity": Known(("scalar-special-float",), _AS_STRING),
    "double-minus-infinity": Known(("scalar-special-float",), _AS_STRING),
    "dv-good-nan": Known(("scalar-special-float",), _AS_STRING),
    "bytestring-empty": Known(("empty-bytestring",), {"value": None}),
    "bytestring-array": Known(("empty-bytestring",), {"value": ["AQ==", None, None]}),
    "localizedtext-empty": Known(
        ("empty-localizedtext",), {"value": {"locale": None, "text": None}}
    ),
    "expandednodeid-unknown-uri": Known(
        ("expanded-uri-dropped",),
        {
            "value": {
                "namespace": 0,
                "identifierType": "String",
                "value": "Pump",
                "namespaceUri": None,
                "serverIndex": 0,
            }
        },
    ),
    "expandednodeid-server-index": Known(
        ("server-prefix-rejected",),
        _failed("String cannot be coerced to a nodeId : svr=2;nsu=urn:test;i=7"),
    ),
    "nodeid-uri-percent": Known(
        ("nsu-percent-escape",),
        {
            "value": {
                "namespace": 0,
                "identifierType": "String",
                "value": "T",
                "namespaceUri": None,
                "serverIndex": None,
            }
        },
    ),
    "qualifiedname-uri-percent": Known(
        ("nsu-percent-escape",), {"value": {"namespaceIndex": -1, "name": "Q"}}
    ),
    "qualifiedname-index-without-uri": Known(
        ("qualifiedname-index-form",), {"value": {"namespaceIndex": 0, "name": "ns=7;Name"}}
    ),
    "extensionobject-range": Known(("inline-structure",), {"value": _RANGE_DEFAULT}),
    "extensionobject-euinformation": Known(
        ("inline-structure",),
        {
            "value": {
                "typeName": "EUInformation",
                "dataTypeNodeId": "ns=0;i=887",
                "fields": {
                    "namespaceUri": "",
                    "unitId": 0,
                    "displayName": {"locale": None, "text": None},
                    "description": {"locale": None, "text": None},
                },
            }
        },
    ),
    "extensionobject-array": Known(
        ("inline-structure",), {"value": [_RANGE_DEFAULT, _RANGE_DEFAULT]}
    ),
    "extensionobject-binary-body": Known(("binary-body-ignored",), {"value": _RANGE_DEFAULT}),
    "extensionobject-vendor-binary-body": Known(
        ("binary-body-needs-constructor",),
        _failed("no ExtensionObjectBuilder in this harness (structure ns=1;i=5001)"),
    ),
    "extensionobject-null": Known(
        ("verbose-null-extensionobject",),
        _failed("opcuaJsonDecodeNodeId: pojoOrString cannot be null or undefined"),
        forms=frozenset({FieldEncoding.VERBOSE}),
    ),
    "datavalue-nested-uncertain": Known(
        ("datavalue-status",),
        {
            "value": {
                "value": {"dataType": 6, "arrayType": "Scalar", "dimensions": None, "value": 5},
                "statusCode": 0,
                **_NESTED_DV_DEFAULTS,
            }
        },
    ),
    "datavalue-nested-zero": Known(
        ("datavalue-falsy-value",),
        {"value": {"value": _NULL_VARIANT, "statusCode": 0, **_NESTED_DV_DEFAULTS}},
    ),
    "dv-bad-no-value": Known(("datavalue-status",), {"statusCode": 0}),
    "dv-uncertain-string": Known(("datavalue-status",), {"statusCode": 0}),
    "dv-good-zero": Known(("datavalue-falsy-value",), {**_NULL_VARIANT, "jsType": "null"}),
    "dv-good-false": Known(("datavalue-falsy-value",), _NULL_VARIANT),
    "dv-good-empty-string": Known(("datavalue-falsy-value",), _NULL_VARIANT),
    "dv-bad-zero": Known(
        ("datavalue-status", "datavalue-falsy-value"), {**_NULL_VARIANT, "statusCode": 0}
    ),
}


def node_opcua_expectation(case: Case, form: FieldEncoding) -> tuple[dict[str, Any], Known | None]:
    spec = spec_reply(case)
    known = KNOWN_DEPARTURES.get(case.id)
    if known is None or form not in known.forms:
        return spec, None
    if known.node_opcua.get("ok") is False:
        return dict(known.node_opcua), known
    return {**spec, **known.node_opcua}, known


# ------------------------------------------------------------------------ fixtures


def _request_id(case: Case, form: FieldEncoding) -> str:
    return f"{case.id}/{form.value}"


def _encode(case: Case, form: FieldEncoding) -> Any:
    codec = JsonCodec(form, namespaces=list(NAMESPACES))
    if isinstance(case.value, ua.DataValue):
        return codec.encode_data_value(case.value)
    return codec.encode_variant(case.value)


@pytest.fixture(scope="module")
def our_json() -> dict[str, Any]:
    """Our encoding of every case in both forms (an exception object where encoding failed)."""
    out: dict[str, Any] = {}
    for form in FORMS:
        for case in CORPUS:
            try:
                out[_request_id(case, form)] = _encode(case, form)
            except Exception as e:  # noqa: BLE001 - reported by the case's own test
                out[_request_id(case, form)] = e
    return out


@pytest.fixture(scope="module")
def node_replies(our_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """node-opcua's reading of the whole corpus: one Node.js process for everything."""
    return decode_with_node_opcua(
        [
            {
                "id": rid,
                "kind": CASES_BY_ID[rid.rsplit("/", 1)[0]].kind,
                "json": j,
                "namespaces": list(NAMESPACES),
            }
            for rid, j in our_json.items()
            if not isinstance(j, Exception)
        ]
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_node_opcua_reads_our_json(
    case: Case,
    form: FieldEncoding,
    our_json: dict[str, Any],
    node_replies: dict[str, dict[str, Any]],
) -> None:
    rid = _request_id(case, form)
    encoded = our_json[rid]
    if isinstance(encoded, Exception):
        pytest.fail(f"our encoder failed on {case.value!r}: {encoded!r}")
    spec = _canon_variant(spec_reply(case))
    expected, known = node_opcua_expectation(case, form)
    expected = _canon_variant(expected)
    got = observed(node_replies[rid], expected)
    context = (
        f"\ncase {rid}\nour JSON:    {json.dumps(encoded, ensure_ascii=False)}"
        f"\nspec:        {spec}\nexpected:    {expected}\nnode-opcua:  {node_replies[rid]}"
    )
    if known is None:
        assert got == spec, "node-opcua does not read this as the specification says" + context
        return
    for key in known.departures:
        assert DEPARTURES[key].our_json(encoded), (
            f"our JSON no longer has the spec form behind departure {key!r}" + context
        )
    assert expected != spec, "a known departure must differ from the specification" + context
    if expected.get("ok") is False:
        assert got["ok"] is False, (
            f"node-opcua no longer fails ({', '.join(known.departures)}): update the table"
            + context
        )
        assert expected["error"] in (got["error"] or ""), "node-opcua fails differently" + context
        return
    assert got == expected, (
        f"node-opcua's reading changed for known departure(s) {', '.join(known.departures)}: "
        f"if it now matches the spec, remove the entry" + context
    )


def test_corpus_covers_every_builtin_type_as_scalar_array_and_datavalue() -> None:
    seen: dict[str, set[int]] = {"Scalar": set(), "Array": set(), "Matrix": set()}
    for case in CORPUS:
        if isinstance(case.value, ua.Variant):
            shape = spec_reply(case)["arrayType"]
            seen[shape].add(int(case.value.VariantType))
    every = set(range(1, 26))
    assert every - {24} <= seen["Scalar"], f"scalars missing: {sorted(every - seen['Scalar'])}"
    assert every <= seen["Array"], f"arrays missing: {sorted(every - seen['Array'])}"
    assert seen["Matrix"], "no matrix in the corpus"
    data_values = [c for c in CORPUS if c.kind == "datavalue"]
    statuses = {c.value.StatusCode.value >> 30 for c in data_values}
    assert statuses == {0, 1, 2}, "DataValues need Good, Uncertain and Bad statuses"
    assert any(c.value.SourcePicoseconds and c.value.ServerPicoseconds for c in data_values)


def test_departure_table_is_consistent() -> None:
    used = {d for known in KNOWN_DEPARTURES.values() for d in known.departures}
    assert set(KNOWN_DEPARTURES) <= set(CASES_BY_ID), "departure entries for unknown cases"
    assert used <= set(DEPARTURES), f"undocumented departures: {sorted(used - set(DEPARTURES))}"
    assert set(DEPARTURES) <= used, f"departures with no case: {sorted(set(DEPARTURES) - used)}"
    for key, dep in DEPARTURES.items():
        assert dep.clause.startswith("OPC 10000-6 §"), key

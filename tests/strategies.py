"""Hypothesis strategies for asyncua ``ua`` values, and a comparison that sees what ``==`` misses.

Shared by the Part 6 JSON encoding tests and the Part 14 message tests: import as
``tests.strategies``. Every strategy takes the namespace and server tables into account, so that
what it draws can round-trip through :class:`opcua_mqtt.core.uajson.codec.JsonCodec` built with
:data:`NAMESPACES` and :data:`SERVER_URIS`; the values that cannot round-trip by design (Part 6
§5.4) are left out, each one named where it is excluded. ``ua_canon`` / ``assert_ua_equal`` compare
values field by field, including what asyncua's ``__eq__`` ignores.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from asyncua import ua
from hypothesis import strategies as st

VT = ua.VariantType

# --- tables ---------------------------------------------------------------------------------

OPC_UA_NAMESPACE = "http://opcfoundation.org/UA/"
#: Namespace table: 0 is OPC UA, 1 and 2 have URIs (2 with the characters §5.1.12 escapes),
#: index 3 has none, so NodeIds in namespace 3 take the ``ns=3;`` form (first abnormal state).
NAMESPACES: tuple[str, ...] = (OPC_UA_NAMESPACE, "urn:opcua-mqtt:test:one", "urn:test;two%é")
NS_WITHOUT_URI = 3
#: Server table: 0 is the local server, 1 has a URI (``svu=``), 2 and 3 have none (``svr=``).
SERVER_URIS: tuple[str, ...] = ("urn:opcua-mqtt:test:local", "urn:opcua-mqtt:test:remote;1")

# Part 6 Table 1 / the codec: types whose *scalar* null is written as an absent or null Value.
NULLABLE_SCALARS = frozenset(
    {VT.String, VT.ByteString, VT.XmlElement, VT.DateTime, VT.ExtensionObject}
)

#: Value range of each integer built-in type (OPC 10000-6 §5.1.2). Written out here, not taken
#: from opcua_mqtt.core.uajson.scalars.INT_RANGES: the tests check the product's ranges against
#: this table, which a shared table would make them agree with whatever it says.
INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}

# --- DateTime -------------------------------------------------------------------------------

DATETIME_MIN = datetime(1601, 1, 1, tzinfo=UTC)  # UA DateTime.MinValue (binary tick 0)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # "9999-12-31T23:59:59Z"


def clamp_datetime(value: datetime) -> datetime:
    """What a Part 6 §5.4.2.6 round trip gives back: aware UTC, clamped to the UA range.

    Naive datetimes are UTC (as asyncua hands them out).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset() or timedelta(0)
    try:
        utc = value.replace(tzinfo=None) - offset
    except OverflowError:
        return DATETIME_MIN if offset > timedelta(0) else DATETIME_MAX
    aware = utc.replace(tzinfo=UTC)
    return min(max(aware, DATETIME_MIN), DATETIME_MAX)


_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


def datetimes_in_range() -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes inside the UA range, microsecond precision: exact round trips."""
    return st.datetimes(
        min_value=datetime(1601, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 58),
        timezones=st.just(UTC),
    )


def datetimes() -> st.SearchStrategy[datetime]:
    """Any datetime: aware UTC, naive (= UTC), other offsets, before 1601 and near 9999."""
    return st.one_of(
        datetimes_in_range(),
        st.datetimes(),  # naive, whole Python range
        st.datetimes(timezones=_OFFSETS),
        st.datetimes(max_value=datetime(1601, 1, 1, 0, 0, 1), timezones=st.just(UTC)),
        st.datetimes(min_value=datetime(9999, 12, 31, 23, 59, 57), timezones=st.just(UTC)),
    )


# --- scalar built-in types -----------------------------------------------------------------


def integers(vt: ua.VariantType) -> st.SearchStrategy[int]:
    lo, hi = INT_RANGES[vt]
    return st.integers(lo, hi)


def floats32() -> st.SearchStrategy[float]:
    """IEEE single values (NaN and the infinities included): exactly what a Float holds."""
    return st.floats(width=32)


def xml_elements() -> st.SearchStrategy[ua.XmlElement]:
    """XmlElement; ``XmlElement(None)`` is asyncua's null one (a Variant cannot hold None)."""
    return st.one_of(st.builds(ua.XmlElement, st.text()), st.just(ua.XmlElement(None)))


def _namespace_indexes(include_unmapped: bool = True) -> st.SearchStrategy[int]:
    hi = NS_WITHOUT_URI if include_unmapped else len(NAMESPACES) - 1
    return st.integers(0, hi)


def node_identifiers() -> st.SearchStrategy[tuple[Any, ua.NodeIdType | None]]:
    """(identifier, NodeIdType) for all four kinds; None lets asyncua pick TwoByte/FourByte."""
    return st.one_of(
        st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([None, ua.NodeIdType.Numeric])),
        st.tuples(st.text(), st.just(ua.NodeIdType.String)),
        st.tuples(st.uuids(), st.just(ua.NodeIdType.Guid)),
        st.tuples(st.binary(max_size=32), st.just(ua.NodeIdType.ByteString)),
    )


@st.composite
def node_ids(draw: st.DrawFn, namespaces: st.SearchStrategy[int] | None = None) -> ua.NodeId:
    """NodeIds of every identifier kind in namespaces 0..3 (3 has no URI in :data:`NAMESPACES`).

    Left out by design: namespaces whose URI the decoder would not know (Part 6 §5.4.2.10 second
    abnormal state: such a NodeId comes back as a namespace-0 String NodeId holding the text).
    """
    ident, kind = draw(node_identifiers())
    ns = draw(namespaces if namespaces is not None else _namespace_indexes())
    return ua.NodeId(ident, ns, kind)


def _foreign_uris() -> st.SearchStrategy[str]:
    """Namespace URIs that are not in :data:`NAMESPACES` (and not empty: "" means no URI)."""
    return st.one_of(
        st.sampled_from(["urn:elsewhere", "http://example.com/UA/;x", "urn:%41%3B", "urn:ü"]),
        st.text(min_size=1),
    ).filter(lambda u: u not in NAMESPACES)


@st.composite
def expanded_node_ids(draw: st.DrawFn) -> ua.ExpandedNodeId:
    """ExpandedNodeIds: plain, with a NamespaceUri the table lacks, with a ServerIndex whose URI
    is known (``svu=``) or not (``svr=``).

    Left out by design: a NamespaceUri that *is* in the table (decoders replace it with its index,
    §5.4.2.11) and a ``svu=`` URI the decoder does not know (second abnormal state).
    """
    ident, kind = draw(node_identifiers())
    server = draw(st.sampled_from([0, 0, 1, 2, 3]))
    if draw(st.booleans()):
        uri = draw(_foreign_uris())
        return ua.ExpandedNodeId(ident, 0, kind, NamespaceUri=uri, ServerIndex=server)
    ns = draw(_namespace_indexes())
    return ua.ExpandedNodeId(ident, ns, kind, ServerIndex=server)


STATUS_CODES = (
    0x00000000,  # Good
    0x00000400,  # Good with InfoType bits (info bits are the low 16 bits)
    0x002F0000,  # GoodOverload
    0x40000000,  # Uncertain
    0x408F0000,  # UncertainNoCommunicationLastUsableValue
    0x40920012,  # UncertainInitialValue with info bits
    0x80000000,  # Bad
    0x80AB0000,  # BadInvalidArgument (the Part 6 §5.4.2.12 example)
    0x803E0000,  # BadNotFound
    0x80AB0480,  # BadInvalidArgument with info bits
    0xFFFF0000,  # no such code: no Symbol
)


def status_codes() -> st.SearchStrategy[ua.StatusCode]:
    return st.one_of(st.sampled_from(STATUS_CODES), st.integers(0, 2**32 - 1)).map(ua.StatusCode)


# The decoder reads these prefixes as a namespace (Part 6 §5.1.12 / §5.4.2.14).
_QN_PREFIX = re.compile(r"(?:ns=\d+|nsu=[^;]*);")


@st.composite
def qualified_names(draw: st.DrawFn) -> ua.QualifiedName:
    """QualifiedNames in namespaces 0..3.

    Left out by design: a Name of None (the string form has no null: it reads back as ""), and in
    namespace 0 a Name that starts with ``nsu=…;`` or ``ns=<digits>;`` (indistinguishable from a
    namespace prefix in the 1.05 string form, §5.4.2.14).
    """
    ns = draw(_namespace_indexes())
    name = draw(st.text())
    if ns == 0:
        name = draw(st.text().filter(lambda n: _QN_PREFIX.match(n) is None))
    return ua.QualifiedName(name, ns)


def localized_texts() -> st.SearchStrategy[ua.LocalizedText]:
    return st.builds(
        ua.LocalizedText,
        st.one_of(st.none(), st.text()),
        st.one_of(st.none(), st.sampled_from(["en", "de-DE", ""]), st.text(max_size=8)),
    )


def unregistered_type_ids() -> st.SearchStrategy[ua.NodeId]:
    """TypeIds asyncua has no class for (its own are all in namespace 0)."""
    return node_ids(namespaces=st.integers(1, NS_WITHOUT_URI))


def raw_extension_objects() -> st.SearchStrategy[ua.ExtensionObject]:
    """An ExtensionObject with a UA Binary body of an unknown type: UaEncoding 1 + UaBody."""
    return st.builds(ua.ExtensionObject, TypeId=unregistered_type_ids(), Body=st.binary())


def non_null_node_ids() -> st.SearchStrategy[ua.NodeId]:
    """NodeIds other than the null ones of Part 3 Table 23 that Compact omits as a structure
    member's default (``s=``, ``b=`` and ``i=0`` in namespace 0 all read back as ``i=0``)."""
    return node_ids().filter(lambda n: not (n.NamespaceIndex == 0 and n.Identifier in (0, "", b"")))


def registered_structures() -> st.SearchStrategy[Any]:
    """asyncua structures encoded inline with UaTypeId (Part 6 §5.4.2.16).

    ua.Argument is avoided: asyncua has a hand-written subclass, and decoding yields the
    registered generated class. NodeId members are never null (see :func:`non_null_node_ids`).
    """
    opt_text = st.one_of(st.none(), st.text())
    return st.one_of(
        st.builds(
            ua.EUInformation,
            NamespaceUri=opt_text,
            UnitId=integers(VT.Int32),
            DisplayName=localized_texts(),
            Description=localized_texts(),
        ),
        st.builds(ua.Range, Low=st.floats(), High=st.floats()),
        st.builds(
            ua.ReadValueId,
            NodeId=non_null_node_ids(),
            AttributeId=integers(VT.UInt32),
            IndexRange=opt_text,
            DataEncoding=qualified_names(),
        ),
        st.builds(
            ua.BrowseDescription,
            NodeId=non_null_node_ids(),
            BrowseDirection=st.sampled_from(ua.BrowseDirection),
            ReferenceTypeId=non_null_node_ids(),
            IncludeSubtypes=st.booleans(),
            NodeClassMask=integers(VT.UInt32),
            ResultMask=integers(VT.UInt32),
        ),
    )


def extension_objects() -> st.SearchStrategy[Any]:
    """Non-null ExtensionObjects: raw binary bodies of unknown types and registered structures."""
    return st.one_of(raw_extension_objects(), registered_structures())


def diagnostic_infos() -> st.SearchStrategy[ua.DiagnosticInfo]:
    """DiagnosticInfo with any subset of members, nested a few levels."""
    opt_int = st.one_of(st.none(), integers(VT.Int32))

    def build(inner: st.SearchStrategy[ua.DiagnosticInfo | None]) -> Any:
        return st.builds(
            ua.DiagnosticInfo,
            SymbolicId=opt_int,
            NamespaceURI=opt_int,
            Locale=opt_int,
            LocalizedText=opt_int,
            AdditionalInfo=st.one_of(st.none(), st.text()),
            InnerStatusCode=st.one_of(st.none(), status_codes()),
            InnerDiagnosticInfo=inner,
        )

    return st.recursive(
        build(st.none()), lambda inner: build(st.one_of(st.none(), inner)), max_leaves=4
    )


# --- Variant, DataValue ---------------------------------------------------------------------

ALL_TYPES: tuple[ua.VariantType, ...] = tuple(vt for vt in VT if vt is not VT.Null)  # 1..25


def scalar_values(vt: ua.VariantType, depth: int = 1) -> st.SearchStrategy[Any]:
    """Values a scalar Variant of type ``vt`` can hold, the null one included where it exists."""
    if vt in INT_RANGES:
        return integers(vt)
    simple: dict[ua.VariantType, st.SearchStrategy[Any]] = {
        VT.Boolean: st.booleans(),
        VT.Float: floats32(),
        VT.Double: st.floats(),
        VT.String: st.one_of(st.none(), st.text()),
        VT.DateTime: st.one_of(st.none(), datetimes()),
        VT.Guid: st.uuids(),
        VT.ByteString: st.one_of(st.none(), st.binary()),
        VT.XmlElement: xml_elements(),
        VT.StatusCode: status_codes(),
        VT.LocalizedText: localized_texts(),
        VT.DiagnosticInfo: diagnostic_infos(),
    }
    if vt in simple:
        return simple[vt]
    if vt is VT.NodeId:
        return node_ids()
    if vt is VT.ExpandedNodeId:
        return expanded_node_ids()
    if vt is VT.QualifiedName:
        return qualified_names()
    if vt is VT.ExtensionObject:
        return extension_objects()
    if vt is VT.DataValue:
        return data_values(depth=depth - 1)
    if vt is VT.Variant:
        return variants(depth=depth - 1)
    raise ValueError(f"no scalar strategy for {vt!r}")


def element_values(vt: ua.VariantType, depth: int = 1) -> st.SearchStrategy[Any]:
    """Array elements of type ``vt``: JSON null elements are None (XmlElement included) except
    in Variant arrays, where a null element is the Null Variant."""
    if vt is VT.XmlElement:
        return st.one_of(st.none(), st.builds(ua.XmlElement, st.text()))
    if vt is VT.ExtensionObject:
        return st.one_of(st.none(), extension_objects())
    return scalar_values(vt, depth)


def nest(flat: Sequence[Any], dims: Sequence[int]) -> list[Any]:
    """Row-major flat list -> nested lists (asyncua's matrix form, Part 6 §5.2.2.16)."""
    if len(dims) <= 1:
        return list(flat)
    size = math.prod(dims[1:])
    return [nest(flat[i * size : (i + 1) * size], dims[1:]) for i in range(dims[0])]


SHAPES = ("scalar", "array", "matrix", "null_array")


@st.composite
def variants_of(
    draw: st.DrawFn,
    vt: ua.VariantType,
    depth: int = 1,
    shapes: Sequence[str] = SHAPES,
) -> ua.Variant:
    """A Variant of type ``vt``: scalar, 1-D array (empty too), 2-D/3-D matrix, null array.

    Left out by design: a scalar Variant of type Variant (asyncua's constructor unwraps it) and a
    null array of a type whose scalar is nullable (Table 41: it reads back as the null scalar).
    """
    allowed = [
        s
        for s in shapes
        if not (s == "scalar" and vt is VT.Variant)
        and not (s == "null_array" and vt in NULLABLE_SCALARS)
    ]
    shape = draw(st.sampled_from(allowed))
    if shape == "scalar":
        return ua.Variant(draw(scalar_values(vt, depth)), vt)
    if shape == "null_array":
        return ua.Variant(None, vt, is_array=True)
    elements = element_values(vt, depth)
    if shape == "array":
        return ua.Variant(draw(st.lists(elements, max_size=4)), vt, is_array=True)
    dims = draw(st.lists(st.integers(0, 3), min_size=2, max_size=3))
    flat = draw(st.lists(elements, min_size=math.prod(dims), max_size=math.prod(dims)))
    return ua.Variant(nest(flat, dims), vt, list(dims), is_array=True)


def variants(depth: int = 1, types: Sequence[ua.VariantType] = ALL_TYPES) -> Any:
    """Any Variant (the Null Variant included); ``depth`` bounds Variant/DataValue nesting."""
    if depth <= 0:
        types = [t for t in types if t not in (VT.Variant, VT.DataValue)]
    return st.one_of(
        st.just(ua.Variant()),
        st.sampled_from(list(types)).flatmap(lambda vt: variants_of(vt, depth=depth)),
    )


@st.composite
def data_values(draw: st.DrawFn, depth: int = 1) -> ua.DataValue:
    """DataValues with every combination of value, status, timestamps and picoseconds."""
    opt = st.booleans()
    return ua.DataValue(
        Value=draw(variants(depth=depth)),
        StatusCode=draw(st.one_of(st.none(), status_codes())) if draw(opt) else ua.StatusCode(0),
        SourceTimestamp=draw(datetimes()) if draw(opt) else None,
        ServerTimestamp=draw(datetimes()) if draw(opt) else None,
        SourcePicoseconds=draw(st.integers(0, 2**16 - 1)) if draw(opt) else None,
        ServerPicoseconds=draw(st.integers(0, 2**16 - 1)) if draw(opt) else None,
    )


# --- comparison -----------------------------------------------------------------------------

_NUMERIC_KINDS = (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric)


def _kind(node_id: ua.NodeId) -> str:
    return "numeric" if node_id.NodeIdType in _NUMERIC_KINDS else node_id.NodeIdType.name


def _timestamp(value: datetime | None) -> Any:
    if value is None:
        return None
    clamped = clamp_datetime(value)
    return None if clamped == DATETIME_MIN else ("dt", clamped)  # MinValue is the null DateTime


def ua_canon(x: Any) -> Any:
    """A hashable, ``==``-comparable picture of an asyncua value.

    Unlike asyncua's ``__eq__`` it sees NodeIdType (TwoByte/FourByte/Numeric count as one: JSON
    writes ``i=`` for all three), ExpandedNodeId.NamespaceUri/ServerIndex, Variant.Dimensions and
    is_array, and the types of numbers (True is not 1). NaN equals NaN; datetimes are compared
    as UTC instants after the §5.4.2.6 clamp; DataValue defaults (no status = Good, a timestamp at
    DateTime.MinValue = none, 0 picoseconds = none) are normalised as Table 42 omits them.
    """
    if x is None:
        return None
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, enum.Enum):
        return ("enum", type(x).__name__, int(x.value))
    if isinstance(x, int):
        return ("int", int(x))
    if isinstance(x, float):
        return ("float", "NaN" if math.isnan(x) else x)
    if isinstance(x, str):
        return ("str", x)
    if isinstance(x, bytes | bytearray):
        return ("bytes", bytes(x))
    if isinstance(x, uuid.UUID):
        return ("guid", x)
    if isinstance(x, datetime):
        return ("dt", clamp_datetime(x))
    if isinstance(x, list | tuple):
        return ("list", tuple(ua_canon(v) for v in x))
    if isinstance(x, Mapping):
        return ("map", tuple(sorted((str(k), ua_canon(v)) for k, v in x.items())))
    if isinstance(x, ua.Variant):
        dims = tuple(x.Dimensions) if x.Dimensions and len(x.Dimensions) > 1 else None
        return ("Variant", int(x.VariantType), bool(x.is_array), ua_canon(x.Value), dims)
    if isinstance(x, ua.ExpandedNodeId):
        return (
            "ExpandedNodeId",
            _kind(x),
            int(x.NamespaceIndex),
            ua_canon(x.Identifier),
            x.NamespaceUri or None,
            int(x.ServerIndex or 0),
        )
    if isinstance(x, ua.NodeId):
        return ("NodeId", _kind(x), int(x.NamespaceIndex), ua_canon(x.Identifier))
    if isinstance(x, ua.StatusCode):
        return ("StatusCode", int(x.value))
    if isinstance(x, ua.QualifiedName):
        return ("QualifiedName", int(x.NamespaceIndex), x.Name)
    if isinstance(x, ua.LocalizedText):
        return ("LocalizedText", x.Locale, x.Text)
    if isinstance(x, ua.XmlElement):
        return ("XmlElement", x.Value)
    if isinstance(x, ua.ExtensionObject):
        return ("ExtensionObject", ua_canon(x.TypeId), ua_canon(x.Body))
    if isinstance(x, ua.DataValue):
        status = 0 if x.StatusCode is None else int(x.StatusCode.value)
        return (
            "DataValue",
            ua_canon(x.Value if x.Value is not None else ua.Variant()),
            status,
            _timestamp(x.SourceTimestamp),
            _timestamp(x.ServerTimestamp),
            x.SourcePicoseconds or None,
            x.ServerPicoseconds or None,
        )
    if isinstance(x, ua.DiagnosticInfo):
        return (
            "DiagnosticInfo",
            x.SymbolicId,
            x.NamespaceURI,
            x.Locale,
            x.LocalizedText,
            x.AdditionalInfo,
            ua_canon(x.InnerStatusCode),
            ua_canon(x.InnerDiagnosticInfo),
        )
    if type(x).__name__ == "UnknownStructure":
        return ("UnknownStructure", ua_canon(x.type_id), ua_canon(dict(x.fields)))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (
            type(x).__name__,
            tuple(
                (f.name, ua_canon(getattr(x, f.name)))
                for f in dataclasses.fields(x)
                if f.name != "Encoding"
            ),
        )
    raise TypeError(f"ua_canon does not know {type(x).__name__}: {x!r}")


def assert_ua_equal(actual: Any, expected: Any) -> None:
    """Assert that two asyncua values are equal field by field (see :func:`ua_canon`)."""
    got, want = ua_canon(actual), ua_canon(expected)
    assert got == want, f"\n  got:      {actual!r}\n  expected: {expected!r}"

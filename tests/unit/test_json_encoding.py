"""OPC UA JSON encoding (OPC 10000-6 1.05 §5.4; the 1.04 forms of Annex H): round trips, exact
outputs, malformed input.

Round trips go through real serialisation (orjson, and the standard library once) in the three
reversible forms COMPACT, VERBOSE and REVERSIBLE, for every built-in type 1..25 as scalars, 1-D
arrays (empty ones too), null arrays and 2-D/3-D matrices. Values are compared with
``tests.strategies.assert_ua_equal``, which, unlike asyncua's ``__eq__``, also compares NodeIdType,
ExpandedNodeId.NamespaceUri/ServerIndex, Variant.Dimensions and number types, and treats NaN as
equal to NaN.

Values that cannot round-trip by the design of the spec, and which the generators therefore leave
out (each is pinned by a test of its own below):

* A QualifiedName in namespace 0 whose Name starts with ``nsu=…;`` or ``ns=<digits>;``: the 1.05
  string form (§5.4.2.14, §5.1.12) cannot tell it from a namespace prefix. A Name of None reads
  back as "" (the string form has no null).
* A NodeId, ExpandedNodeId (``svu=``) or QualifiedName whose namespace/server URI the decoder
  does not know becomes a namespace-0 String NodeId / a namespace-0 name holding the raw text
  (§5.4.2.10, §5.4.2.11, §5.4.2.14 "second abnormal state"). An ExpandedNodeId.NamespaceUri that
  *is* in the table comes back as its NamespaceIndex (§5.4.2.11: decoders shall replace it).
* TwoByte/FourByte NodeIds come back as Numeric: JSON writes ``i=<n>`` for all three.
* A null array of a type whose scalar is nullable (String, ByteString, XmlElement, DateTime,
  ExtensionObject) reads back as the null scalar (Table 41 writes no Value, or null, for both).
  A null array of a non-nullable type is written as ``"Value": null`` and does round-trip.
* DateTime: naive values are UTC; values outside 1601-01-01 .. 9999-12-31T23:59:59 clamp to the
  ends (§5.4.2.6, §5.1.4); decoded values are aware UTC. Microseconds survive.
* DataValue (Table 42): no StatusCode means Good, a timestamp at or before DateTime.MinValue means
  none, 0 picoseconds means none, since those defaults are not encoded.
* Float: the encoder rounds to IEEE single precision (generators draw float32 values). A Double
  -0.0 *member of a structure* equals the default 0 and Compact omits it (a -0.0 Variant keeps
  its sign).
* In a structure, Compact omits the null NodeIds of Part 3 Table 23 (``s=``, ``b=`` in namespace
  0) as defaults; they read back as ``i=0``.
* A scalar Variant of type Variant does not exist in asyncua (its constructor unwraps it); in a
  Variant array a JSON null element is the Null Variant ``ua.Variant()``.
* The null XmlElement is ``ua.XmlElement(None)`` as a scalar (asyncua refuses a None scalar) and
  None as an array element; the null ExtensionObject ``ua.ExtensionObject()`` reads back as None
  (Compact and Reversible omit the Value) or ``ua.ExtensionObject()`` (Verbose writes ``{}``).
* An ExtensionObject with a *registered* TypeId decodes to its asyncua class; raw UA Binary bodies
  round-trip for unregistered TypeIds only. ua.Argument's hand-written subclass decodes as the
  generated class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import _DATETIME_TEXTS_MAX, encode_datetime
from opcua_mqtt.core.uajson.structures import UnknownStructure
from tests.strategies import (
    ALL_TYPES,
    DATETIME_MAX,
    DATETIME_MIN,
    NAMESPACES,
    NULLABLE_SCALARS,
    SERVER_URIS,
    assert_ua_equal,
    clamp_datetime,
    data_values,
    datetimes,
    datetimes_in_range,
    diagnostic_infos,
    expanded_node_ids,
    extension_objects,
    floats32,
    node_ids,
    qualified_names,
    registered_structures,
    status_codes,
    variants,
    variants_of,
)

VT = ua.VariantType
C = FieldEncoding.COMPACT
V = FieldEncoding.VERBOSE
R = FieldEncoding.REVERSIBLE
NR = FieldEncoding.NON_REVERSIBLE
REVERSIBLE_FORMS = (C, V, R)
CODECS = {form: JsonCodec(form, NAMESPACES, SERVER_URIS) for form in FieldEncoding}

NS1, NS2 = NAMESPACES[1], NAMESPACES[2]
NS2_ESCAPED = "urn:test%3Btwo%25é"  # ';' and '%' percent-encoded (§5.1.12 ENCODEDURI)
SRV1_ESCAPED = "urn:opcua-mqtt:test:remote%3B1"

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MORE = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def orjson_trip(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def stdlib_trip(obj: Any) -> Any:
    # allow_nan=False: NaN and the infinities must already be strings (§5.4.2.4)
    return json.loads(json.dumps(obj, allow_nan=False))


def variant_trip(form: FieldEncoding, variant: ua.Variant, trip: Any = orjson_trip) -> ua.Variant:
    codec = CODECS[form]
    return codec.decode_variant(trip(codec.encode_variant(variant)))


def value_trip(form: FieldEncoding, value: Any, vt: ua.VariantType) -> Any:
    codec = CODECS[form]
    return codec.decode_value(orjson_trip(codec.encode_value(value, vt)), vt)


# --- 1. round trips for every built-in type -------------------------------------------------


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("vt", ALL_TYPES, ids=lambda vt: vt.name)
@FAST
@given(data=st.data())
def test_variant_of_every_builtin_type_round_trips_in_each_reversible_form(
    vt: ua.VariantType, form: FieldEncoding, data: st.DataObject
) -> None:
    """decode(loads(dumps(encode(v)))) == v for scalars, arrays, null arrays and matrices."""
    variant = data.draw(variants_of(vt, depth=2), label="variant")
    assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@MORE
@given(variant=variants(depth=2))
def test_any_variant_round_trips_through_the_standard_library_json(
    form: FieldEncoding, variant: ua.Variant
) -> None:
    """The encoder's output is plain JSON: no NaN/Infinity tokens, no Python-only types."""
    assert_ua_equal(variant_trip(form, variant, stdlib_trip), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("vt", sorted(NULLABLE_SCALARS, key=int), ids=lambda vt: vt.name)
def test_null_array_of_a_nullable_type_reads_back_as_the_null_scalar(
    form: FieldEncoding, vt: ua.VariantType
) -> None:
    """Part 6 Table 41: the Value of a null scalar of a nullable type is not encoded."""
    back = variant_trip(form, ua.Variant(None, vt, is_array=True))
    assert back.VariantType is vt and back.is_array is False
    assert back.Value == (ua.XmlElement(None) if vt is VT.XmlElement else None)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("vt", [VT.Int32, VT.Guid, VT.NodeId, VT.Variant], ids=lambda v: v.name)
def test_null_array_of_a_non_nullable_type_is_written_as_null_and_round_trips(
    form: FieldEncoding, vt: ua.VariantType
) -> None:
    variant = ua.Variant(None, vt, is_array=True)
    encoded = CODECS[form].encode_variant(variant)
    assert encoded == (
        {"UaType": int(vt), "Value": None} if form.is_105 else {"Type": int(vt), "Body": None}
    )
    assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
def test_empty_array_and_empty_matrix_keep_their_shape(form: FieldEncoding) -> None:
    for variant in (
        ua.Variant([], VT.Int32, is_array=True),
        ua.Variant([[], []], VT.Double, [2, 0], is_array=True),
        ua.Variant([], VT.String, [0, 3], is_array=True),
        ua.Variant([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], VT.Byte, [2, 2, 2]),
    ):
        assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize(
    ("vt", "value", "json_value"),
    [
        (VT.Int64, -(2**63), "-9223372036854775808"),
        (VT.Int64, 2**63 - 1, "9223372036854775807"),
        (VT.UInt64, 0, "0"),
        (VT.UInt64, 2**64 - 1, "18446744073709551615"),
    ],
)
@pytest.mark.parametrize("form", [C, V], ids=lambda f: f.value)
def test_int64_and_uint64_extremes_are_json_strings(
    form: FieldEncoding, vt: ua.VariantType, value: int, json_value: str
) -> None:
    """Part 6 §5.4.2.3: Int64 and UInt64 are decimal numbers in JSON strings."""
    encoded = orjson.dumps(CODECS[form].encode_variant(ua.Variant(value, vt)))
    assert encoded == b'{"UaType":%d,"Value":"%s"}' % (int(vt), json_value.encode())
    assert variant_trip(form, ua.Variant(value, vt)).Value == value


@pytest.mark.parametrize("vt", [VT.SByte, VT.Byte, VT.Int16, VT.UInt16, VT.Int32, VT.UInt32])
def test_integer_extremes_round_trip_as_json_numbers(vt: ua.VariantType) -> None:
    lo, hi = {
        VT.SByte: (-128, 127),
        VT.Byte: (0, 255),
        VT.Int16: (-32768, 32767),
        VT.UInt16: (0, 65535),
        VT.Int32: (-(2**31), 2**31 - 1),
        VT.UInt32: (0, 2**32 - 1),
    }[vt]
    for value in (lo, hi):
        assert CODECS[C].encode_value(value, vt) == value
        assert value_trip(C, value, vt) == value
    with pytest.raises(EncodeError):
        CODECS[C].encode_value(hi + 1, vt)


@FAST
@given(value=floats32())
def test_float_round_trips_exactly_for_float32_values(value: float) -> None:
    back = value_trip(C, value, VT.Float)
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_float_not_representable_in_32_bits_is_rounded_on_encode() -> None:
    assert CODECS[C].encode_value(0.1, VT.Float) == 0.10000000149011612
    assert CODECS[C].encode_value(0.1, VT.Double) == 0.1
    with pytest.raises(EncodeError):
        CODECS[C].encode_value(1e39, VT.Float)


@pytest.mark.parametrize(
    ("value", "text"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]
)
@pytest.mark.parametrize("vt", [VT.Float, VT.Double])
def test_special_floats_are_strings(vt: ua.VariantType, value: float, text: str) -> None:
    """Part 6 §5.4.2.4: NaN, Infinity and -Infinity are JSON strings."""
    assert CODECS[C].encode_value(value, vt) == text
    back = value_trip(C, value, vt)
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_negative_zero_keeps_its_sign_in_a_variant() -> None:
    back = variant_trip(C, ua.Variant(-0.0, VT.Double))
    assert back.Value == 0.0 and math.copysign(1.0, back.Value) == -1.0


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("text", ["", "Grüße, 世界 🌍", "a\u0000b", 'line\nbreak\t"q"', None])
def test_string_round_trips_non_ascii_empty_and_null(form: FieldEncoding, text: str | None) -> None:
    variant = ua.Variant(text, VT.String)
    assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize("data", [b"", b"\x00\xff" * 17, None])
def test_bytestring_round_trips_empty_and_null(form: FieldEncoding, data: bytes | None) -> None:
    variant = ua.Variant(data, VT.ByteString)
    assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
def test_null_xml_element_is_asyncuas_xmlelement_none(form: FieldEncoding) -> None:
    variant = ua.Variant(ua.XmlElement(None), VT.XmlElement)
    assert CODECS[form].encode_variant(variant) == {("UaType" if form.is_105 else "Type"): 16}
    assert_ua_equal(variant_trip(form, variant), variant)
    xml = ua.Variant(ua.XmlElement("<a b='1'>ü</a>"), VT.XmlElement)
    assert_ua_equal(variant_trip(form, xml), xml)


# --- DateTime (§5.4.2.6) --------------------------------------------------------------------


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@MORE
@given(value=datetimes_in_range())
def test_datetime_in_range_round_trips_to_the_microsecond(
    form: FieldEncoding, value: datetime
) -> None:
    assert value_trip(form, value, VT.DateTime) == value


@MORE
@given(value=datetimes())
def test_any_datetime_decodes_to_the_clamped_utc_value(value: datetime) -> None:
    """Naive = UTC; other offsets convert; outside the UA range clamp to the ends (§5.4.2.6)."""
    back = value_trip(C, value, VT.DateTime)
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
    assert back == clamp_datetime(value)


@pytest.mark.parametrize(
    ("value", "text", "decoded"),
    [
        (datetime(1600, 12, 31, 23, 59, 59), "0001-01-01T00:00:00Z", DATETIME_MIN),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z", DATETIME_MIN),
        (
            datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=5))),
            "0001-01-01T00:00:00Z",
            DATETIME_MIN,
        ),
        (datetime(1601, 1, 1), "0001-01-01T00:00:00Z", DATETIME_MIN),
        (datetime(9999, 12, 31, 23, 59, 59, 500000), "9999-12-31T23:59:59Z", DATETIME_MAX),
        (
            datetime(9999, 12, 31, 22, tzinfo=timezone(timedelta(hours=-5))),
            "9999-12-31T23:59:59Z",
            DATETIME_MAX,
        ),
        (
            datetime(2024, 2, 29, 12, 0, 0, 120000, tzinfo=timezone(timedelta(hours=2))),
            "2024-02-29T10:00:00.12Z",
            datetime(2024, 2, 29, 10, 0, 0, 120000, tzinfo=UTC),
        ),
        (
            datetime(2024, 1, 1, 0, 0, 0, 1),
            "2024-01-01T00:00:00.000001Z",
            datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        ),
    ],
)
def test_datetime_clamps_and_converts(value: datetime, text: str, decoded: datetime) -> None:
    assert CODECS[C].encode_value(value, VT.DateTime) == text
    assert CODECS[C].decode_value(text, VT.DateTime) == decoded


def test_datetime_texts_from_the_memo_are_the_formatted_ones() -> None:
    """encode_datetime remembers recent texts (a Publish response repeats its timestamps): the
    text is the same the second time, past the memo's bound, and for the same instant written
    in another zone or naive (= UTC)."""
    base = datetime(2026, 12, 7, 12, tzinfo=UTC)
    values = [base + timedelta(microseconds=10 * i) for i in range(_DATETIME_TEXTS_MAX + 10)]
    first = [encode_datetime(v) for v in values]
    assert first[:2] == ["2026-12-07T12:00:00Z", "2026-12-07T12:00:00.00001Z"]
    assert [encode_datetime(v) for v in values] == first
    assert encode_datetime(values[1].astimezone(timezone(timedelta(hours=3)))) == first[1]
    assert encode_datetime(values[1].replace(tzinfo=None)) == first[1]


# --- NodeId, ExpandedNodeId, QualifiedName (§5.4.2.10, §5.4.2.11, §5.4.2.14) ---------------

GUID = uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")


def _string_forms(vt: ua.VariantType, cases: list[tuple[Any, str]]) -> list[Any]:
    return [pytest.param(vt, value, text, id=f"{vt.name}:{text}") for value, text in cases]


STRING_FORMS = [
    *_string_forms(
        VT.NodeId,
        [
            (ua.NodeId(13, 0), "i=13"),
            (ua.NodeId(4294967295, 0, ua.NodeIdType.Numeric), "i=4294967295"),
            (ua.NodeId("Hello:World", 1), f"nsu={NS1};s=Hello:World"),
            (ua.NodeId(GUID, 2), f"nsu={NS2_ESCAPED};g=09087E75-8E5E-499B-954F-F2A9603DB28A"),
            (ua.NodeId(b"\x00\x01", 3), "ns=3;b=AAE="),
            (ua.NodeId("", 0), "s="),
        ],
    ),
    *_string_forms(
        VT.ExpandedNodeId,
        [
            (ua.ExpandedNodeId(5, 0), "i=5"),
            (ua.ExpandedNodeId(5, 1, ServerIndex=1), f"svu={SRV1_ESCAPED};nsu={NS1};i=5"),
            (ua.ExpandedNodeId("x", 3, ServerIndex=2), "svr=2;ns=3;s=x"),
            (
                ua.ExpandedNodeId("x", 0, NamespaceUri="urn:else;where"),
                "nsu=urn:else%3Bwhere;s=x",
            ),
            (ua.ExpandedNodeId(7, 0, NamespaceUri="urn:e", ServerIndex=3), "svr=3;nsu=urn:e;i=7"),
        ],
    ),
    *_string_forms(
        VT.QualifiedName,
        [
            (ua.QualifiedName("Temp", 0), "Temp"),
            (ua.QualifiedName("Temp", 1), f"nsu={NS1};Temp"),
            (ua.QualifiedName("a;b", 2), f"nsu={NS2_ESCAPED};a;b"),
            (ua.QualifiedName("Temp", 3), "ns=3;Temp"),
            (ua.QualifiedName("", 0), ""),
        ],
    ),
]


@pytest.mark.parametrize(("vt", "value", "text"), STRING_FORMS)
def test_node_id_expanded_node_id_and_qualified_name_string_forms_use_namespace_uris(
    vt: ua.VariantType, value: Any, text: str
) -> None:
    """ns 0: <identifier>; a URI in the table: nsu=<escaped URI>; no URI: ns=<index> (first
    abnormal state); a server likewise svu=<escaped URI> or svr=<index>. Compact and Verbose
    write and read the same string."""
    for form in (C, V):
        assert CODECS[form].encode_value(value, vt) == text
        assert_ua_equal(CODECS[form].decode_value(text, vt), value)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize(
    ("vt", "values"),
    [
        pytest.param(VT.NodeId, node_ids(), id="NodeId"),
        pytest.param(VT.ExpandedNodeId, expanded_node_ids(), id="ExpandedNodeId"),
        pytest.param(VT.QualifiedName, qualified_names(), id="QualifiedName"),
    ],
)
@MORE
@given(data=st.data())
def test_node_id_expanded_node_id_and_qualified_name_of_every_kind_and_namespace_round_trip(
    form: FieldEncoding, vt: ua.VariantType, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values, label=vt.name)
    assert_ua_equal(value_trip(form, value, vt), value)


@pytest.mark.parametrize("text", ["nsu=urn:unknown;i=5", "nsu=urn:unknown;s=a;b"])
def test_node_id_with_unknown_namespace_uri_becomes_a_string_node_id(text: str) -> None:
    """Part 6 §5.4.2.10 second abnormal state: ns 0, IdType String, the JSON string as id."""
    assert_ua_equal(
        CODECS[C].decode_value(text, VT.NodeId), ua.NodeId(text, 0, ua.NodeIdType.String)
    )


def test_node_id_percent_decoding_is_utf8() -> None:
    """ENCODEDURI is RFC 3986 percent-encoding: %C3%A9 is 'é' (NS2 is 'urn:test;two%é')."""
    text = "nsu=urn:test%3Btwo%25%C3%A9;i=7"
    assert_ua_equal(CODECS[C].decode_value(text, VT.NodeId), ua.NodeId(7, 2))


def test_expanded_node_id_abnormal_states() -> None:
    codec = CODECS[C]
    # an unknown server URI: the whole text as a ns-0 String identifier (§5.4.2.11)
    assert_ua_equal(
        codec.decode_value("svu=urn:nowhere;i=1", VT.ExpandedNodeId),
        ua.ExpandedNodeId("svu=urn:nowhere;i=1", 0, ua.NodeIdType.String),
    )
    # a NamespaceUri that is in the table is replaced by its index when ServerIndex is 0
    assert_ua_equal(
        codec.decode_value(f"nsu={NS1};i=1", VT.ExpandedNodeId),
        ua.ExpandedNodeId(1, 1, ua.NodeIdType.Numeric),
    )


def test_qualified_name_cases_that_cannot_round_trip_by_design() -> None:
    codec = CODECS[C]
    # a namespace-0 name that looks like a prefix is read as one (§5.4.2.14)
    assert codec.encode_value(ua.QualifiedName("ns=3;x", 0), VT.QualifiedName) == "ns=3;x"
    assert_ua_equal(codec.decode_value("ns=3;x", VT.QualifiedName), ua.QualifiedName("x", 3))
    # an unknown namespace URI: ns 0 and the raw text as the name (second abnormal state)
    assert_ua_equal(
        codec.decode_value("nsu=urn:unknown;x", VT.QualifiedName),
        ua.QualifiedName("nsu=urn:unknown;x", 0),
    )
    # no null name in the string form
    assert codec.encode_value(ua.QualifiedName(None, 0), VT.QualifiedName) == ""


# --- StatusCode (§5.4.2.12) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "compact", "verbose"),
    [
        (0x00000000, {}, {}),
        (0x00000400, {"Code": 1024}, {"Code": 1024, "Symbol": "Good"}),
        (0x40000000, {"Code": 1073741824}, {"Code": 1073741824, "Symbol": "Uncertain"}),
        (
            0x408F0000,
            {"Code": 1083113472},
            {"Code": 1083113472, "Symbol": "UncertainNoCommunicationLastUsableValue"},
        ),
        (0x80AB0000, {"Code": 2158690304}, {"Code": 2158690304, "Symbol": "BadInvalidArgument"}),
        (0x80AB0480, {"Code": 2158691456}, {"Code": 2158691456, "Symbol": "BadInvalidArgument"}),
        (0xFFFF0000, {"Code": 4294901760}, {"Code": 4294901760}),
    ],
)
def test_status_code_object(code: int, compact: dict[str, Any], verbose: dict[str, Any]) -> None:
    """Symbol only in Verbose, looked up without the info bits, omitted when unknown; Good is {}.
    1.04 Reversible writes the bare number."""
    status = ua.StatusCode(code)
    assert CODECS[C].encode_value(status, VT.StatusCode) == compact
    assert CODECS[V].encode_value(status, VT.StatusCode) == verbose
    assert CODECS[R].encode_value(status, VT.StatusCode) == code
    for form in REVERSIBLE_FORMS:
        assert_ua_equal(value_trip(form, status, VT.StatusCode), status)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@FAST
@given(status=status_codes())
def test_status_code_round_trips(form: FieldEncoding, status: ua.StatusCode) -> None:
    assert_ua_equal(value_trip(form, status, VT.StatusCode), status)


def test_good_status_code_is_written_inside_arrays() -> None:
    codes = [ua.StatusCode(0), ua.StatusCode(0x80AB0000)]
    assert CODECS[C].encode_array(codes, VT.StatusCode) == [{}, {"Code": 2158690304}]
    assert CODECS[R].encode_array(codes, VT.StatusCode) == [0, 2158690304]


# --- ExtensionObject (§5.4.2.16) ------------------------------------------------------------


def test_raw_extension_object_keeps_its_binary_body() -> None:
    obj = ua.ExtensionObject(TypeId=ua.NodeId("T", 1), Body=b"\x01\x02\x03")
    variant = ua.Variant(obj, VT.ExtensionObject)
    assert CODECS[C].encode_variant(variant) == {
        "UaType": 22,
        "Value": {"UaTypeId": f"nsu={NS1};s=T", "UaEncoding": 1, "UaBody": "AQID"},
    }
    assert CODECS[R].encode_variant(variant) == {
        "Type": 22,
        "Body": {"TypeId": {"IdType": 1, "Id": "T", "Namespace": 1}, "Encoding": 1, "Body": "AQID"},
    }
    for form in REVERSIBLE_FORMS:
        assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@MORE
@given(obj=extension_objects())
def test_extension_object_round_trips(form: FieldEncoding, obj: Any) -> None:
    variant = ua.Variant(obj, VT.ExtensionObject)
    assert_ua_equal(variant_trip(form, variant), variant)


def test_registered_structure_is_encoded_inline_with_its_data_type_id() -> None:
    rng = ua.Range(Low=-1.5, High=0.0)
    assert CODECS[C].encode_value(rng, VT.ExtensionObject) == {"UaTypeId": "i=884", "Low": -1.5}
    assert CODECS[V].encode_value(rng, VT.ExtensionObject) == {
        "UaTypeId": "i=884",
        "Low": -1.5,
        "High": 0.0,
    }
    assert CODECS[R].encode_value(rng, VT.ExtensionObject) == {
        "TypeId": {"Id": 884},
        "Body": {"Low": -1.5},
    }


def test_omitted_structure_members_take_the_builtin_default_not_asyncuas() -> None:
    """BrowseDescription.IncludeSubtypes defaults to True in asyncua; Compact omits False, the
    Boolean default (§5.4.6), so the decoder must restore False."""
    desc = ua.BrowseDescription(NodeId=ua.NodeId(85, 0), IncludeSubtypes=False)
    encoded = CODECS[C].encode_value(desc, VT.ExtensionObject)
    assert "IncludeSubtypes" not in encoded
    assert_ua_equal(CODECS[C].decode_value(encoded, VT.ExtensionObject), desc)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
def test_null_extension_object(form: FieldEncoding) -> None:
    codec = CODECS[form]
    variant = ua.Variant(ua.ExtensionObject(), VT.ExtensionObject)
    encoded = codec.encode_variant(variant)
    if form is V:
        assert encoded == {"UaType": 22, "Value": {}}
        assert_ua_equal(codec.decode_variant(encoded), variant)
    else:
        assert encoded == {("UaType" if form.is_105 else "Type"): 22}
        assert_ua_equal(codec.decode_variant(encoded), ua.Variant(None, VT.ExtensionObject))


def test_unknown_structure_is_kept_and_re_encoded_unchanged() -> None:
    body = {"UaTypeId": f"nsu={NS1};i=5001", "A": 1, "B": {"C": [1, "x"]}, "D": None}
    decoded = CODECS[C].decode_value(body, VT.ExtensionObject)
    assert isinstance(decoded, UnknownStructure)
    assert_ua_equal(decoded.type_id, ua.NodeId(5001, 1))
    assert CODECS[C].encode_value(decoded, VT.ExtensionObject) == body


# --- DataValue (§5.4.2.18), Variant of Variants, DiagnosticInfo ------------------------------


def _presence_combinations() -> list[tuple[bool, ...]]:
    return list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@pytest.mark.parametrize(
    "present", _presence_combinations(), ids=lambda p: "".join("1" if x else "0" for x in p)
)
def test_data_value_with_every_combination_of_members_round_trips(
    form: FieldEncoding, present: tuple[bool, ...]
) -> None:
    status, source_ts, server_ts, source_ps, server_ps = present
    dv = ua.DataValue(
        Value=ua.Variant(42, VT.Int32),
        StatusCode=ua.StatusCode(0x40920012) if status else ua.StatusCode(0),
        SourceTimestamp=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC) if source_ts else None,
        ServerTimestamp=datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC) if server_ts else None,
        SourcePicoseconds=9999 if source_ps else None,
        ServerPicoseconds=1 if server_ps else None,
    )
    codec = CODECS[form]
    encoded = codec.encode_data_value(dv)
    for key, on in zip(
        ("Status", "SourceTimestamp", "ServerTimestamp", "SourcePicoseconds", "ServerPicoseconds"),
        present,
        strict=True,
    ):
        assert (key in encoded) is on
    assert_ua_equal(codec.decode_data_value(orjson_trip(encoded)), dv)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@MORE
@given(dv=data_values(depth=2))
def test_data_value_round_trips(form: FieldEncoding, dv: ua.DataValue) -> None:
    codec = CODECS[form]
    assert_ua_equal(codec.decode_data_value(orjson_trip(codec.encode_data_value(dv))), dv)


def test_data_value_members_are_inline_in_105_and_nested_in_104() -> None:
    dv = ua.DataValue(
        ua.Variant(1.5, VT.Double),
        StatusCode=ua.StatusCode(0x803E0000),
        SourceTimestamp=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert CODECS[C].encode_data_value(dv) == {
        "UaType": 11,
        "Value": 1.5,
        "Status": {"Code": 2151546880},
        "SourceTimestamp": "2024-01-02T03:04:05Z",
    }
    assert CODECS[V].encode_data_value(dv)["Status"] == {
        "Code": 2151546880,
        "Symbol": "BadNotFound",
    }
    assert CODECS[R].encode_data_value(dv) == {
        "Value": {"Type": 11, "Body": 1.5},
        "Status": 2151546880,
        "SourceTimestamp": "2024-01-02T03:04:05Z",
    }


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
def test_array_of_variants_with_nested_arrays_and_null_elements(form: FieldEncoding) -> None:
    variant = ua.Variant(
        [
            ua.Variant(1, VT.Int32),
            ua.Variant(),
            ua.Variant(["a", None], VT.String),
            ua.Variant([[1.0, 2.0], [3.0, 4.0]], VT.Float),
            ua.Variant([ua.Variant(True, VT.Boolean)], VT.Variant),
        ],
        VT.Variant,
    )
    assert_ua_equal(variant_trip(form, variant), variant)


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@FAST
@given(info=diagnostic_infos())
def test_diagnostic_info_round_trips_nested(form: FieldEncoding, info: ua.DiagnosticInfo) -> None:
    assert_ua_equal(value_trip(form, info, VT.DiagnosticInfo), info)


def test_diagnostic_info_members() -> None:
    inner = ua.DiagnosticInfo(SymbolicId=3, InnerStatusCode=ua.StatusCode(0x80AB0000))
    info = ua.DiagnosticInfo(
        SymbolicId=1, NamespaceURI=2, Locale=-1, AdditionalInfo="x", InnerDiagnosticInfo=inner
    )
    assert CODECS[C].encode_value(info, VT.DiagnosticInfo) == {
        "SymbolicId": 1,
        "NamespaceUri": 2,
        "Locale": -1,
        "AdditionalInfo": "x",
        "InnerDiagnosticInfo": {"SymbolicId": 3, "InnerStatusCode": {"Code": 2158690304}},
    }


# --- 2. NON_REVERSIBLE (1.04, encode only): exact outputs -----------------------------------


def test_non_reversible_matrix_is_nested_arrays() -> None:
    """Annex H.9: multi-dimensional arrays as nested JSON arrays, outer = first dimension."""
    variant = ua.Variant([[0, 2, 3], [1, 3, 4]], VT.Int32)
    assert CODECS[NR].encode_variant(variant) == [[0, 2, 3], [1, 3, 4]]
    assert orjson.dumps(CODECS[NR].encode_variant(ua.Variant([[[1], [2]]], VT.Byte))) == (
        b"[[[1],[2]]]"
    )


def test_non_reversible_values() -> None:
    codec = CODECS[NR]
    assert codec.encode_variant(ua.Variant(42, VT.Int32)) == 42  # no type
    assert codec.encode_variant(ua.Variant(2**63 - 1, VT.Int64)) == "9223372036854775807"
    assert codec.encode_value(ua.StatusCode(0x80AB0000), VT.StatusCode) == {
        "Code": 2158690304,
        "Symbol": "BadInvalidArgument",
    }
    assert codec.encode_value(ua.NodeId("Temp", 1), VT.NodeId) == {
        "IdType": 1,
        "Id": "Temp",
        "Namespace": NS1,
    }
    assert codec.encode_value(ua.NodeId(5, 3), VT.NodeId) == {"Id": 5, "Namespace": 3}
    assert codec.encode_value(ua.QualifiedName("Temp", 1), VT.QualifiedName) == {
        "Name": "Temp",
        "Uri": NS1,
    }
    assert codec.encode_value(ua.LocalizedText("Hi", "en"), VT.LocalizedText) == "Hi"
    assert codec.encode_value(ua.Range(Low=0.0, High=5.0), VT.ExtensionObject) == {
        "Low": 0.0,
        "High": 5.0,
    }  # body only; defaults written (Table 44, Non-Reversible)
    assert codec.encode_value(ua.EUInformation(UnitId=7), VT.ExtensionObject) == {
        "NamespaceUri": None,
        "UnitId": 7,
        "DisplayName": None,
        "Description": None,
    }
    assert (
        codec.encode_value(ua.ExtensionObject(ua.NodeId("T", 2), b"ab"), VT.ExtensionObject)
        == "YWI="
    )
    assert codec.encode_data_value(
        ua.DataValue(ua.Variant(5, VT.Int32), StatusCode=ua.StatusCode(0x80AB0000))
    ) == {"Value": 5, "Status": {"Code": 2158690304, "Symbol": "BadInvalidArgument"}}


# --- 3. malformed input ---------------------------------------------------------------------

_KEYS = (
    "UaType",
    "Value",
    "Dimensions",
    "Type",
    "Body",
    "UaTypeId",
    "UaEncoding",
    "UaBody",
    "TypeId",
    "Encoding",
    "Status",
    "SourceTimestamp",
    "ServerTimestamp",
    "SourcePicoseconds",
    "ServerPicoseconds",
    "Code",
    "Locale",
    "Text",
    "Name",
    "Uri",
    "IdType",
    "Id",
    "Namespace",
    "ServerUri",
    "SymbolicId",
    "InnerDiagnosticInfo",
    "Low",
    "High",
    "UnitId",
    "DisplayName",
    "BrowseDirection",
    "NodeId",
)
_TEXTS = (
    "i=884",
    "i=887",
    "i=514",
    "i=24338",
    "ns=1;s=x",
    "nsu=urn:x;i=1",
    "svr=1;i=1",
    "g=09087e75-8e5e-499b-954f-f2a9603db28a",
    "b=AAA=",
    "NaN",
    "-Infinity",
    "18446744073709551616",
    "2024-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-3, 30),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(_TEXTS),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=4)), inner, max_size=5),
        st.fixed_dictionaries(
            {"UaType": st.integers(-1, 26)},
            optional={
                "Value": inner,
                "Dimensions": st.one_of(inner, st.lists(st.integers(-1, 4), max_size=4)),
            },
        ),
        st.fixed_dictionaries(
            {"Type": st.integers(0, 26)}, optional={"Body": inner, "Dimensions": inner}
        ),
        st.fixed_dictionaries(
            {"UaTypeId": _scalars},
            optional={
                k: inner for k in ("UaEncoding", "UaBody", "Low", "UnitId", "BrowseDirection")
            },
        ),
    ),
    max_leaves=20,
)


@pytest.mark.timeout(120)
@settings(
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(obj=json_values, vt=st.one_of(st.none(), st.sampled_from(list(VT))))
def test_arbitrary_json_raises_only_decode_error(obj: Any, vt: ua.VariantType | None) -> None:
    """Hostile input: decoding either succeeds or raises DecodeError, never anything else."""
    codec = CODECS[C]
    for decode in (codec.decode_variant, codec.decode_data_value):
        with contextlib.suppress(DecodeError):
            decode(obj, vtype=vt)


def test_scalar_variant_inside_a_variant_is_unwrapped_as_asyncua_does() -> None:
    codec = CODECS[C]
    assert_ua_equal(
        codec.decode_variant({"UaType": 24, "Value": {"UaType": 6, "Value": 5}}),
        ua.Variant(5, VT.Int32),
    )
    assert_ua_equal(
        codec.decode_variant({"UaType": 24, "Value": {"UaType": 1, "Value": None}}),
        ua.Variant(None, VT.Boolean, is_array=True),
    )


def _decode_error(obj: Any, decode: str = "decode_variant", **kw: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        getattr(CODECS[C], decode)(obj, **kw)
    return info.value


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        ({"UaType": 26, "Value": 1}, "UaType", "26 is not a built-in type id (0..25)"),
        ({"UaType": "6", "Value": 1}, "UaType", "expected a built-in type id, got a string"),
        ({"Value": 1}, "UaType", "missing member (a Variant needs UaType)"),
        (
            {"UaType": 6, "Value": [1, 2, 3], "Dimensions": [2, 2]},
            "Dimensions",
            "dimensions [2, 2] need 4 elements, value has 3",
        ),
        (
            {"UaType": 6, "Value": [1, 2], "Dimensions": [2, -1]},
            "Dimensions/1",
            "a dimension cannot be negative",
        ),
        (
            {"UaType": 6, "Value": 1, "Dimensions": [1, 1]},
            "Value",
            "Dimensions given for a scalar value",
        ),
        (
            {"UaType": 6, "Value": [], "Dimensions": [2**31 - 1, 0]},
            "Dimensions",
            "dimensions [2147483647, 0] are too large",
        ),
        (
            {"UaType": 6, "Value": [1], "Dimensions": [1] * 101},
            "Dimensions",
            "more than 100 dimensions",
        ),
        ({"UaType": 6, "Value": 2147483648}, "Value", "2147483648 is out of range for Int32"),
        ({"UaType": 6, "Value": [1, "2", 2.5]}, "Value/2", "expected Int32, got a number"),
        ({"UaType": 3, "Value": 300}, "Value", "300 is out of range for Byte"),
        ({"UaType": 1, "Value": 1}, "Value", "expected a Boolean, got a number"),
        (
            {"UaType": 8, "Value": "9223372036854775808"},
            "Value",
            "9223372036854775808 is out of range for Int64",
        ),
        (
            {"UaType": 14, "Value": "not-a-guid"},
            "Value",
            "'not-a-guid' is not a Guid (8-4-4-4-12 hex digits)",
        ),
        ({"UaType": 15, "Value": "@@@"}, "Value", "invalid base64"),
        ({"UaType": 15, "Value": "YQ=a"}, "Value", "invalid base64"),
        (
            {"UaType": 13, "Value": "yesterday"},
            "Value",
            "'yesterday' is not an ISO 8601 date and time",
        ),
        (
            {"UaType": 13, "Value": "2024-02-30T00:00:00Z"},
            "Value",
            "'2024-02-30T00:00:00Z' is not a valid date: day is out of range for month",
        ),
        ({"UaType": 17, "Value": "x=1"}, "Value", "unknown identifier type 'x'"),
        (
            {"UaType": 17, "Value": "i=4294967296"},
            "Value",
            "numeric identifier 4294967296 exceeds UInt32",
        ),
        ({"UaType": 17, "Value": "ns=70000;i=1"}, "Value", "ns=70000 is out of range"),
        (
            {"UaType": 17, "Value": "i=" + "9" * 5000},
            "Value",
            "numeric identifier 99999999999999999999… exceeds UInt32",
        ),
        ({"UaType": 17, "Value": 5}, "Value", "expected a NodeId string, got a number"),
        (
            {"UaType": 22, "Value": {"UaTypeId": "i=884", "Low": "x"}},
            "Value/Low",
            "expected Double, got a string",
        ),
        (
            {"UaType": 22, "Value": {"UaTypeId": "i=514", "BrowseDirection": 99}},
            "Value/BrowseDirection",
            "99 is not a value of BrowseDirection",
        ),
        (
            {"UaType": 22, "Value": {"Low": 1}},
            "Value/UaTypeId",
            "missing member (an ExtensionObject needs UaTypeId)",
        ),
    ],
)
def test_malformed_variant_names_the_member(obj: Any, path: str, reason: str) -> None:
    error = _decode_error(obj)
    assert (error.path, error.reason) == (path, reason)


def _nested_variant_arrays(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"UaType": 6, "Value": 1}
    for _ in range(levels):
        value = {"UaType": 24, "Value": [value]}
    return value


def test_nesting_up_to_100_levels_decodes_and_deeper_is_refused() -> None:
    """Part 6 §5.1.5 (1.04 numbering): Variants and ExtensionObjects nest without limit; decoders
    support at least 100 levels and report deeper ones."""
    decoded = CODECS[C].decode_variant(_nested_variant_arrays(100))
    for _ in range(100):
        decoded = decoded.Value[0]
    assert_ua_equal(decoded, ua.Variant(1, VT.Int32))
    error = _decode_error(_nested_variant_arrays(101))
    assert error.reason == "nested deeper than 100 levels"
    assert error.path == "/".join(["Value/0"] * 101)


def test_deep_diagnostic_info_is_refused() -> None:
    info: dict[str, Any] = {"SymbolicId": 1}
    for _ in range(150):
        info = {"InnerDiagnosticInfo": info}
    error = _decode_error({"UaType": 25, "Value": info})
    assert error.reason == "nested deeper than 100 levels"


def test_decode_error_path_includes_the_callers_prefix() -> None:
    error = _decode_error(
        {"UaType": 3, "Value": 300}, "decode_data_value", path="Messages/0/Payload/Temp"
    )
    assert (error.path, error.reason) == (
        "Messages/0/Payload/Temp/Value",
        "300 is out of range for Byte",
    )
    error = _decode_error({"UaType": 6, "Value": 1, "Status": {"Code": -1}}, "decode_data_value")
    assert (error.path, error.reason) == ("Status/Code", "-1 is out of range for UInt32")
    error = _decode_error({"SourceTimestamp": "noon"}, "decode_data_value")
    assert (error.path, error.reason) == (
        "SourceTimestamp",
        "'noon' is not an ISO 8601 date and time",
    )


# --- 4. unknown members are ignored ---------------------------------------------------------


def test_unknown_members_are_ignored() -> None:
    codec = CODECS[C]
    assert_ua_equal(
        codec.decode_variant({"UaType": 6, "Value": 1, "Extra": [1], "Body": "x"}),
        ua.Variant(1, VT.Int32),
    )
    assert_ua_equal(
        codec.decode_data_value(
            {
                "UaType": 6,
                "Value": 1,
                "Foo": {},
                "Status": {"Code": 2151546880, "Symbol": "BadNotFound", "X": 1},
            }
        ),
        ua.DataValue(ua.Variant(1, VT.Int32), StatusCode=ua.StatusCode(0x803E0000)),
    )
    assert_ua_equal(
        codec.decode_value({"Locale": "en", "Text": "t", "Rtl": True}, VT.LocalizedText),
        ua.LocalizedText("t", "en"),
    )
    assert_ua_equal(
        codec.decode_value(
            {"UaTypeId": "i=884", "Low": 1, "High": 2, "Mid": 1.5}, VT.ExtensionObject
        ),
        ua.Range(Low=1.0, High=2.0),
    )
    assert_ua_equal(
        codec.decode_value({"SymbolicId": 4, "Severity": "high"}, VT.DiagnosticInfo),
        ua.DiagnosticInfo(SymbolicId=4),
    )


def _with_extra_members(obj: Any, extra: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        return {**{k: _with_extra_members(v, extra) for k, v in obj.items()}, **extra}
    if isinstance(obj, list):
        return [_with_extra_members(v, extra) for v in obj]
    return obj


@pytest.mark.parametrize("form", REVERSIBLE_FORMS, ids=lambda f: f.value)
@MORE
@given(
    variant=variants(depth=2),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=6).map(lambda k: "x-" + k),
        st.one_of(st.none(), st.integers(), st.text(max_size=4)),
        min_size=1,
        max_size=2,
    ),
)
def test_extra_members_anywhere_do_not_change_the_decoded_value(
    form: FieldEncoding, variant: ua.Variant, extra: dict[str, Any]
) -> None:
    codec = CODECS[form]
    polluted = _with_extra_members(orjson_trip(codec.encode_variant(variant)), extra)
    assert_ua_equal(codec.decode_variant(polluted), variant)


@MORE
@given(structure=registered_structures())
def test_registered_structure_round_trips_in_verbose_with_nulls_written(structure: Any) -> None:
    """§5.4.6 Table 44: Verbose writes every member, nulls as null and defaults as they are."""
    encoded = CODECS[V].encode_value(structure, VT.ExtensionObject)
    members = [f.name for f in dataclasses.fields(structure) if f.name != "Encoding"]
    assert list(encoded) == ["UaTypeId", *members]
    assert_ua_equal(CODECS[V].decode_value(orjson_trip(encoded), VT.ExtensionObject), structure)

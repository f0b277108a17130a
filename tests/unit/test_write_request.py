"""Write-back core (opcua_mqtt.core.write_request): request parsing, exact conversion to every
writable built-in type, allow-list, idempotency, rate limit, responses against their schema.

The property tests pin the two promises of the module: a conversion either returns exactly the
value given (no rounding, truncation or wrap-around; a Float fraction is the nearest Float) or
raises ConversionError, and parse_request on anything at all either returns a request or raises
RequestError.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import struct
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.bridge.write_back_support import publishable
from opcua_mqtt.core.rate_limit import RateLimiter
from opcua_mqtt.core.request_auth import IdempotencyCache
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import DATETIME_MAX, DATETIME_MIN
from opcua_mqtt.core.write_request.convert import convert_value, parse_index_range
from opcua_mqtt.core.write_request.request import (
    MAX_RANK,
    REQUEST_SCHEMA,
    ConversionError,
    RequestError,
    Target,
    WriteRequest,
    fast_valid,
    parse_request,
    valid_request_id,
)
from opcua_mqtt.core.write_request.response import (
    TargetResult,
    build_response,
    error_response,
    status_json,
)
from tests.strategies import INT_RANGES

VT = ua.VariantType
S = ua.StatusCodes
DOCS = Path(__file__).resolve().parents[2] / "docs" / "write-back.md"

PLANT = "urn:plant"
CODEC = JsonCodec(namespaces=["http://opcfoundation.org/UA/", PLANT, "urn:a;b"])

INT_TYPES = list(INT_RANGES)
FLOAT32_MAX = 3.4028234663852886e38


def conv(value: Any, vt: ua.VariantType | int, **kw: Any) -> ua.Variant:
    kw.setdefault("codec", CODEC)
    return convert_value(value, builtin_type=int(vt), **kw)


def refused(value: Any, vt: ua.VariantType | int, **kw: Any) -> ConversionError:
    with pytest.raises(ConversionError) as info:
        conv(value, vt, **kw)
    return info.value


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def request(*targets: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({**top, "Targets": list(targets)}).encode()


# =========================================================================== conversions


class TestBoolean:
    @pytest.mark.parametrize("x", [True, False])
    def test_json_booleans(self, x: bool) -> None:
        v = conv(x, VT.Boolean)
        assert v.Value is x and v.VariantType is VT.Boolean

    @pytest.mark.parametrize("x", [0, 1, "true", "false", None, 1.0, [True]])
    def test_anything_else_is_a_type_mismatch(self, x: Any) -> None:
        assert refused(x, VT.Boolean).status == S.BadTypeMismatch


class TestIntegers:
    @pytest.mark.parametrize("vt", INT_TYPES, ids=lambda t: t.name)
    def test_both_ends_are_written(self, vt: ua.VariantType) -> None:
        lo, hi = INT_RANGES[vt]
        for n in (lo, hi):
            v = conv(n, vt)
            assert v.Value == n and type(v.Value) is int and v.VariantType is vt

    @pytest.mark.parametrize("vt", INT_TYPES, ids=lambda t: t.name)
    def test_one_past_either_end_is_out_of_range(self, vt: ua.VariantType) -> None:
        lo, hi = INT_RANGES[vt]
        for n in (lo - 1, hi + 1):
            e = refused(n, vt)
            assert e.status == S.BadOutOfRange
            assert str(n) in e.message and vt.name in e.message

    def test_300_to_a_byte_is_out_of_range_not_wrapped(self) -> None:
        assert refused(300, VT.Byte).symbol == "BadOutOfRange"
        assert refused(-1, VT.Byte).symbol == "BadOutOfRange"

    @pytest.mark.parametrize("vt", [VT.Int64, VT.UInt64], ids=lambda t: t.name)
    def test_64_bit_decimal_strings_exactly_at_both_ends(self, vt: ua.VariantType) -> None:
        lo, hi = INT_RANGES[vt]
        assert conv(str(lo), vt).Value == lo
        assert conv(str(hi), vt).Value == hi
        assert refused(str(lo - 1), vt).status == S.BadOutOfRange
        assert refused(str(hi + 1), vt).status == S.BadOutOfRange

    @pytest.mark.parametrize("vt", [VT.Int64, VT.UInt64], ids=lambda t: t.name)
    def test_64_bit_json_integers_are_exact_past_2_53(self, vt: ua.VariantType) -> None:
        n = 2**53 + 1
        assert conv(n, vt).Value == n
        assert conv(2**63 - 1, VT.Int64).Value == 2**63 - 1

    @pytest.mark.parametrize("text", ["+5", " 5", "5 ", "5.0", "1e3", "0x10", "", "٣", "1" * 21])
    def test_only_plain_decimal_strings(self, text: str) -> None:
        assert refused(text, VT.Int64).status in (S.BadTypeMismatch, S.BadOutOfRange)

    def test_minus_zero_string_and_leading_zeros_are_exact(self) -> None:
        assert conv("-0", VT.Int64).Value == 0
        assert conv("007", VT.UInt64).Value == 7

    @pytest.mark.parametrize("vt", [VT.SByte, VT.Byte, VT.Int16, VT.UInt16, VT.Int32, VT.UInt32])
    def test_strings_are_not_numbers_for_the_smaller_types(self, vt: ua.VariantType) -> None:
        assert refused("5", vt).status == S.BadTypeMismatch

    def test_integral_floats_are_accepted_below_2_53(self) -> None:
        v = conv(5.0, VT.Int32)
        assert v.Value == 5 and type(v.Value) is int
        assert conv(-0.0, VT.Int16).Value == 0
        assert conv(float(2**53 - 1), VT.Int64).Value == 2**53 - 1

    def test_fractions_are_refused_not_truncated(self) -> None:
        e = refused(1.5, VT.Int32)
        assert e.status == S.BadTypeMismatch and "1.5" in e.message
        assert refused(-0.5, VT.Int64).status == S.BadTypeMismatch
        assert refused(2.000001, VT.UInt32).status == S.BadTypeMismatch

    def test_json_floats_at_or_past_2_53_are_refused(self) -> None:
        # 2**53 + 1 written as a JSON float arrives as 2**53: it cannot be told apart.
        assert float(2**53 + 1) == float(2**53)
        for x in (float(2**53), float(2**53 + 1), 1e18, -(2.0**60)):
            e = refused(x, VT.Int64)
            assert e.status == S.BadTypeMismatch and "2**53" in e.message
        assert refused(1e19, VT.UInt64).status == S.BadTypeMismatch

    def test_floats_out_of_range_are_out_of_range(self) -> None:
        assert refused(256.0, VT.Byte).status == S.BadOutOfRange
        assert refused(1e300, VT.Int64).status == S.BadOutOfRange
        assert refused("Infinity", VT.Int32).status == S.BadTypeMismatch
        assert refused(math.inf, VT.Int32).status == S.BadOutOfRange
        assert refused(math.nan, VT.Int32).status == S.BadTypeMismatch

    @pytest.mark.parametrize("x", [True, False, None, [1], {"a": 1}, "abc"])
    def test_non_numbers(self, x: Any) -> None:
        assert refused(x, VT.Int32).status == S.BadTypeMismatch

    def test_huge_integers_are_reported_briefly(self) -> None:
        e = refused(10**400, VT.Int64)
        assert e.status == S.BadOutOfRange and len(e.message) < 200


class TestFloatAndDouble:
    @pytest.mark.parametrize("vt", [VT.Float, VT.Double], ids=lambda t: t.name)
    @pytest.mark.parametrize(
        ("text", "check"),
        [
            ("NaN", math.isnan),
            ("Infinity", lambda f: f == math.inf),
            ("-Infinity", lambda f: f == -math.inf),
        ],
    )
    def test_special_values_as_strings(self, vt: ua.VariantType, text: str, check: Any) -> None:
        v = conv(text, vt)
        assert v.VariantType is vt and check(v.Value)

    @pytest.mark.parametrize("vt", [VT.Float, VT.Double], ids=lambda t: t.name)
    @pytest.mark.parametrize("text", ["nan", "inf", "infinity", "1.5", "abc", ""])
    def test_other_strings_are_type_mismatches(self, vt: ua.VariantType, text: str) -> None:
        assert refused(text, vt).status == S.BadTypeMismatch

    @pytest.mark.parametrize("vt", [VT.Float, VT.Double], ids=lambda t: t.name)
    @pytest.mark.parametrize("x", [True, None, [1.0], {"v": 1}])
    def test_non_numbers(self, vt: ua.VariantType, x: Any) -> None:
        assert refused(x, vt).status == S.BadTypeMismatch

    def test_double_keeps_every_double(self) -> None:
        for x in (42.5, -1e300, 5e-324, 1.7976931348623157e308, 0.1, -0.0):
            v = conv(x, VT.Double)
            assert v.Value == x and math.copysign(1, v.Value) == math.copysign(1, x)

    def test_double_takes_integers_only_when_exact(self) -> None:
        assert conv(2**53, VT.Double).Value == 2**53
        assert conv(-(2**60), VT.Double).Value == -(2**60)  # a power of two is exact
        e = refused(2**53 + 1, VT.Double)
        assert e.status == S.BadOutOfRange and "exactly" in e.message
        assert refused(10**400, VT.Double).status == S.BadOutOfRange

    def test_float_rounds_fractions_to_the_nearest_float(self) -> None:
        v = conv(0.1, VT.Float)
        assert v.Value == f32(0.1) and v.VariantType is VT.Float
        assert conv(1.5, VT.Float).Value == 1.5
        assert conv(1e-40, VT.Float).Value == f32(1e-40) != 0  # a subnormal Float

    def test_float_holds_integers_exactly_or_refuses(self) -> None:
        assert conv(2**24, VT.Float).Value == 2**24
        assert conv(16777216.0, VT.Float).Value == 16777216.0
        for x in (2**24 + 1, 16777217.0, 1e30):
            e = refused(x, VT.Float)
            assert e.status == S.BadOutOfRange and "exactly" in e.message

    def test_float_range_ends(self) -> None:
        assert conv(FLOAT32_MAX, VT.Float).Value == FLOAT32_MAX
        assert conv(-FLOAT32_MAX, VT.Float).Value == -FLOAT32_MAX
        for x in (3.5e38, -3.5e38, 1e300, 2**128):
            assert refused(x, VT.Float).status == S.BadOutOfRange

    def test_float_refuses_a_value_that_would_become_zero(self) -> None:
        e = refused(1e-50, VT.Float)
        assert e.status == S.BadOutOfRange and "0" in e.message
        assert conv(0.0, VT.Float).Value == 0.0


class TestStrings:
    def test_text(self) -> None:
        v = conv("written ✓", VT.String)
        assert v.Value == "written ✓" and v.VariantType is VT.String

    def test_null_is_the_null_string(self) -> None:
        v = conv(None, VT.String)
        assert v.Value is None and v.VariantType is VT.String

    def test_max_string_length_counts_utf8_bytes(self) -> None:
        assert conv("ab", VT.String, max_string_length=2).Value == "ab"
        e = refused("abc", VT.String, max_string_length=2)
        assert e.status == S.BadOutOfRange and "MaxStringLength" in e.message
        assert refused("é", VT.String, max_string_length=1).status == S.BadOutOfRange
        assert conv("é", VT.String, max_string_length=2).Value == "é"

    def test_the_message_says_whose_limit_it_is(self) -> None:
        e = refused("abc", VT.String, max_string_length=2, max_string_length_of="the server's")
        assert "the server's MaxStringLength is 2" in e.message
        assert (
            "the node's MaxStringLength is 2"
            in refused("abc", VT.String, max_string_length=2).message
        )

    def test_zero_or_none_max_string_length_means_no_limit(self) -> None:
        assert conv("x" * 1000, VT.String, max_string_length=0).Value == "x" * 1000
        assert conv("x" * 1000, VT.String, max_string_length=None).Value == "x" * 1000

    def test_lone_surrogates_are_refused(self) -> None:
        assert refused("a\ud800", VT.String).status == S.BadTypeMismatch

    @pytest.mark.parametrize("x", [42, 1.5, True, ["a"], {"Text": "a"}])
    def test_non_strings(self, x: Any) -> None:
        assert refused(x, VT.String).status == S.BadTypeMismatch

    def test_xml_element(self) -> None:
        v = conv("<a>1</a>", VT.XmlElement)
        assert v.Value == ua.XmlElement("<a>1</a>")
        assert conv(None, VT.XmlElement).Value == ua.XmlElement(None)
        assert refused(5, VT.XmlElement).status == S.BadTypeMismatch


class TestDateTime:
    def test_utc(self) -> None:
        v = conv("2030-01-02T03:04:05.123Z", VT.DateTime)
        assert v.Value == datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
        assert v.VariantType is VT.DateTime

    def test_offsets_are_converted_to_utc(self) -> None:
        v = conv("2030-01-02T03:04:05+02:00", VT.DateTime)
        assert v.Value == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)

    def test_a_time_zone_is_required(self) -> None:
        e = refused("2030-01-02T03:04:05", VT.DateTime)
        assert e.status == S.BadTypeMismatch and "time zone" in e.message

    def test_sub_microsecond_digits_only_when_zero(self) -> None:
        assert conv("2030-01-02T03:04:05.1230000Z", VT.DateTime).Value.microsecond == 123000
        e = refused("2030-01-02T03:04:05.1234567Z", VT.DateTime)
        assert e.status == S.BadOutOfRange and "microsecond" in e.message

    def test_range_ends(self) -> None:
        assert conv("1601-01-01T00:00:00Z", VT.DateTime).Value == DATETIME_MIN
        assert conv("0001-01-01T00:00:00Z", VT.DateTime).Value == DATETIME_MIN  # Part 6 literal
        assert conv("9999-12-31T23:59:59Z", VT.DateTime).Value == DATETIME_MAX
        for text in ("1600-12-31T23:59:59Z", "9999-12-31T23:59:59.5Z", "1601-01-01T00:00:00+00:01"):
            assert refused(text, VT.DateTime).status == S.BadOutOfRange

    def test_invalid_dates_and_leap_seconds(self) -> None:
        assert refused("2030-02-30T00:00:00Z", VT.DateTime).status == S.BadTypeMismatch
        assert refused("2030-01-01T24:00:00Z", VT.DateTime).status == S.BadTypeMismatch
        assert refused("2016-12-31T23:59:60Z", VT.DateTime).status == S.BadOutOfRange

    @pytest.mark.parametrize("x", [1700000000, "yesterday", "2030-01-02", None, True])
    def test_not_a_date(self, x: Any) -> None:
        assert refused(x, VT.DateTime).status == S.BadTypeMismatch


class TestOtherBuiltins:
    def test_guid(self) -> None:
        g = "72962B91-FA75-4AE6-8D28-B404DC7DAF63"
        assert conv(g, VT.Guid).Value == uuid.UUID(g)
        assert conv(g.lower(), VT.Guid).Value == uuid.UUID(g)
        for bad in ("72962B91FA754AE68D28B404DC7DAF63", "{" + g + "}", "xyz", 5):
            assert refused(bad, VT.Guid).status == S.BadTypeMismatch

    def test_byte_string_base64(self) -> None:
        assert conv("AAEC", VT.ByteString).Value == b"\x00\x01\x02"
        assert conv("/w==", VT.ByteString).Value == b"\xff"
        assert conv(None, VT.ByteString).Value is None
        assert refused("!!!", VT.ByteString).status == S.BadTypeMismatch
        assert refused(5, VT.ByteString).status == S.BadTypeMismatch
        assert refused([0, 1], VT.ByteString).status == S.BadTypeMismatch  # an array of strings

    def test_max_byte_string_length(self) -> None:
        data = base64.b64encode(b"abcd").decode()
        assert conv(data, VT.ByteString, max_byte_string_length=4).Value == b"abcd"
        e = refused(data, VT.ByteString, max_byte_string_length=3)
        assert e.status == S.BadOutOfRange and "MaxByteStringLength" in e.message

    def test_node_id_compact_strings(self) -> None:
        assert conv("i=85", VT.NodeId).Value == ua.NodeId(85, 0)
        v = conv(f"nsu={PLANT};s=Line1.Speed", VT.NodeId)
        assert v.Value == ua.NodeId("Line1.Speed", 1, ua.NodeIdType.String)
        assert conv("nsu=urn:a%3Bb;i=7", VT.NodeId).Value == ua.NodeId(7, 2)

    def test_node_id_with_an_unknown_namespace_is_refused(self) -> None:
        e = refused("nsu=urn:nowhere;s=x", VT.NodeId)
        assert e.status == S.BadTypeMismatch and "namespace" in e.message
        assert refused("not a node id", VT.NodeId).status == S.BadTypeMismatch
        assert refused(85, VT.NodeId).status == S.BadTypeMismatch

    def test_expanded_node_id(self) -> None:
        v = conv(f"nsu={PLANT};i=5", VT.ExpandedNodeId)
        assert v.Value.NamespaceIndex == 1 and v.Value.Identifier == 5
        foreign = conv("nsu=urn:elsewhere;i=5", VT.ExpandedNodeId).Value  # legal for Expanded
        assert foreign.NamespaceUri == "urn:elsewhere"
        assert refused("svu=urn:no-server;i=5", VT.ExpandedNodeId).status == S.BadTypeMismatch

    def test_qualified_name_compact_strings(self) -> None:
        assert conv("Speed", VT.QualifiedName).Value == ua.QualifiedName("Speed", 0)
        assert conv(f"nsu={PLANT};Speed", VT.QualifiedName).Value == ua.QualifiedName("Speed", 1)
        assert refused("nsu=urn:nowhere;Speed", VT.QualifiedName).status == S.BadTypeMismatch

    def test_localized_text_objects(self) -> None:
        v = conv({"Locale": "en", "Text": "hi"}, VT.LocalizedText)
        assert v.Value == ua.LocalizedText("hi", "en")
        assert conv({"Locale": None, "Text": "x"}, VT.LocalizedText).Value.Text == "x"  # Verbose
        assert refused("hi", VT.LocalizedText).status == S.BadTypeMismatch
        e = refused({"Text": "héllo"}, VT.LocalizedText, max_string_length=5)
        assert e.status == S.BadOutOfRange  # 6 UTF-8 bytes

    def test_status_code(self) -> None:
        assert conv({"Code": S.BadOutOfRange}, VT.StatusCode).Value == ua.StatusCode(
            S.BadOutOfRange
        )
        assert refused({"Code": 2**32}, VT.StatusCode).status == S.BadTypeMismatch

    def test_unknown_structures_are_refused(self) -> None:
        obj = {"UaTypeId": f"nsu={PLANT};i=99999", "A": 1}
        e = refused(obj, VT.ExtensionObject)
        assert e.status == S.BadTypeMismatch and "structure" in e.message

    def test_builtin_type_that_cannot_be_written(self) -> None:
        assert refused(1, 26).status == S.BadTypeMismatch
        assert refused(1, -1).status == S.BadTypeMismatch


class TestTypedVariants:
    def test_compact_variant_of_the_nodes_type(self) -> None:
        v = conv({"UaType": 10, "Value": 1.5}, VT.Float)
        assert v == ua.Variant(1.5, VT.Float)
        assert conv({"UaType": 8, "Value": "-9223372036854775808"}, VT.Int64).Value == -(2**63)

    def test_a_mismatched_ua_type_is_a_type_mismatch(self) -> None:
        e = refused({"UaType": 6, "Value": 5}, VT.Double)
        assert e.status == S.BadTypeMismatch and "Int32" in e.message and "Double" in e.message
        assert refused({"UaType": 11, "Value": 5.0}, VT.Float).status == S.BadTypeMismatch

    def test_typed_values_follow_the_same_exact_rules(self) -> None:
        assert refused({"UaType": 3, "Value": 300}, VT.Byte).status == S.BadOutOfRange
        assert refused({"UaType": 6, "Value": 1.5}, VT.Int32).status == S.BadTypeMismatch
        assert refused({"UaType": 6, "Value": "5"}, VT.Int32).status == S.BadTypeMismatch

    @pytest.mark.parametrize("node", [0, 24])
    def test_an_abstract_node_takes_any_typed_value(self, node: int) -> None:
        assert conv({"UaType": 12, "Value": "x"}, node) == ua.Variant("x", VT.String)
        assert conv({"UaType": 6, "Value": 7}, node) == ua.Variant(7, VT.Int32)
        assert conv({"UaType": 0}, node) == ua.Variant()

    @pytest.mark.parametrize("node", [0, 24])
    def test_an_abstract_node_refuses_plain_json(self, node: int) -> None:
        e = refused(42, node)
        assert e.status == S.BadTypeMismatch and "UaType" in e.message

    def test_a_null_variant_is_only_for_abstract_nodes(self) -> None:
        assert refused({"UaType": 0}, VT.Double).status == S.BadTypeMismatch

    @pytest.mark.parametrize(
        "obj",
        [
            {"UaType": 6, "Valeu": 5},
            {"UaType": 6, "Value": 5, "Extra": 1},
            {"UaType": 6},
            {"UaType": 99, "Value": 5},
            {"UaType": -1, "Value": 5},
            {"UaType": True, "Value": 5},
            {"UaType": "6", "Value": 5},
            {"UaType": 0, "Value": 5},
            {"UaType": 6, "Value": [1, 2], "Dimensions": "2"},
            {"UaType": 6, "Value": [1, 2], "Dimensions": []},
            {"UaType": 6, "Value": [1, 2], "Dimensions": [-1, -2]},
            {"UaType": 6, "Value": [1, 2, 3], "Dimensions": [2, 2]},
            {"UaType": 6, "Value": 1, "Dimensions": [1]},
            {"UaType": 6, "Value": [[1, 2], [3, 4]]},
        ],
    )
    def test_malformed_typed_values_are_decoding_errors(self, obj: dict[str, Any]) -> None:
        assert refused(obj, 24, value_rank=-2).status == S.BadDecodingError

    def test_a_plain_object_without_ua_type_is_not_a_variant(self) -> None:
        # 1.04 Reversible {"Type","Body"} is not accepted as a typed value.
        assert refused({"Type": 11, "Body": 1.5}, VT.Double).status == S.BadTypeMismatch


RANGE = "i=884"  # the Range structure: Low, High
EU_INFORMATION = "i=887"  # NamespaceUri, UnitId, DisplayName and Description (LocalizedText)


class TestExactObjects:
    """An object holds its own members only: the decoder ignores others, so that a typo would
    write a default ({"Txet": "x"}: an empty LocalizedText) instead of being refused."""

    def test_the_teammates_findings(self) -> None:
        e = refused({"Txet": "x"}, VT.LocalizedText)
        assert e.status == S.BadTypeMismatch and "'Txet'" in e.message and "Text" in e.message
        e = refused({"Body": None}, VT.QualifiedName)
        assert e.status == S.BadTypeMismatch and "'Body'" in e.message

    def test_exact_objects_still_convert(self) -> None:
        assert conv({}, VT.LocalizedText).Value == ua.LocalizedText()
        assert conv({"Name": "Speed", "Uri": 1}, VT.QualifiedName).Value == ua.QualifiedName(
            "Speed", 1
        )
        node = {"IdType": 1, "Id": "Line1.Speed", "Namespace": PLANT}
        assert conv(node, VT.NodeId).Value == ua.NodeId("Line1.Speed", 1, ua.NodeIdType.String)
        assert conv({**node, "ServerUri": 0}, VT.ExpandedNodeId).Value.Identifier == "Line1.Speed"
        status = {"Code": S.BadOutOfRange, "Symbol": "BadOutOfRange"}
        assert conv(status, VT.StatusCode).Value == ua.StatusCode(S.BadOutOfRange)
        assert conv({"Code": 0, "Symbol": "Good"}, VT.StatusCode).Value == ua.StatusCode(0)
        rng = conv({"UaTypeId": RANGE, "Low": 1.0, "High": 2.0}, VT.ExtensionObject).Value
        assert (rng.Low, rng.High) == (1.0, 2.0)

    @pytest.mark.parametrize(
        ("value", "vt", "member"),
        [
            ({"IdType": 1, "Id": "x", "Nmaespace": 1}, VT.NodeId, "Nmaespace"),
            ({"IdType": 0, "Id": 5, "ServerUri": 0}, VT.NodeId, "ServerUri"),  # Expanded only
            ({"IdType": 0, "Id": 5, "Server": 0}, VT.ExpandedNodeId, "Server"),
            ({"Name": "x", "Namespace": 1}, VT.QualifiedName, "Namespace"),
            ({"Locale": "en", "Text": "x", "Body": None}, VT.LocalizedText, "Body"),
            ({"Code": 0, "Sym": "Good"}, VT.StatusCode, "Sym"),
            ({"UaTypeId": RANGE, "Low": 1.0, "Hihg": 2.0}, VT.ExtensionObject, "Hihg"),
            (
                {"UaTypeId": "i=1", "UaEncoding": 1, "UaBody": "AA==", "B": 1},
                VT.ExtensionObject,
                "B",
            ),
            ({"SymbolicId": 1, "Symbolic": 2}, VT.DiagnosticInfo, "Symbolic"),
        ],
    )
    def test_an_unknown_member_is_a_type_mismatch_that_names_it(
        self, value: Any, vt: ua.VariantType, member: str
    ) -> None:
        e = refused(value, vt)
        assert e.status == S.BadTypeMismatch and repr(member) in e.message, e.message

    def test_nested_objects_are_checked_too_and_the_message_says_where(self) -> None:
        eu = {
            "UaTypeId": EU_INFORMATION,
            "NamespaceUri": "http://www.opcfoundation.org/UA/units/un/cefact",
            "UnitId": 5066068,
            "DisplayName": {"Text": "m"},
            "Description": {"Txet": "metre"},
        }
        e = refused(eu, VT.ExtensionObject)
        assert e.status == S.BadTypeMismatch and e.message.startswith("Description: ")
        e = refused({"UaTypeId": {"IdType": 0, "Id": 884, "X": 1}, "Low": 1}, VT.ExtensionObject)
        assert e.message.startswith("UaTypeId: ") and "'X'" in e.message
        e = refused([{"Text": "a"}, {"Txet": "b"}], VT.LocalizedText, value_rank=1)
        assert e.message.startswith("element [1]: ")
        info = {"InnerStatusCode": {"Code": 0}, "InnerDiagnosticInfo": {"Locale": 2, "Q": 1}}
        assert refused(info, VT.DiagnosticInfo).message.startswith("InnerDiagnosticInfo: ")

    def test_a_status_codes_symbol_must_be_its_codes(self) -> None:
        for status in ({"Code": S.BadOutOfRange, "Symbol": "Good"}, {"Symbol": "BadOutOfRange"}):
            e = refused(status, VT.StatusCode)
            assert e.status == S.BadTypeMismatch and "Symbol" in e.message
        assert refused({"Code": 0x80FF0000, "Symbol": "Bad"}, VT.StatusCode).status == (
            S.BadTypeMismatch  # an unknown code has no Symbol
        )

    def test_variants_inside_a_value_are_typed_values(self) -> None:
        def variants(*items: Any) -> ua.Variant:
            return conv({"UaType": 24, "Value": list(items)}, 24, value_rank=1)

        assert variants({"UaType": 21, "Value": {"Text": "a"}}).Value == [
            ua.Variant(ua.LocalizedText("a"), VT.LocalizedText)
        ]
        e = refused(
            {"UaType": 24, "Value": [{"UaType": 21, "Value": {"Text": "a", "x": 1}}]},
            24,
            value_rank=1,
        )
        assert e.status == S.BadTypeMismatch and "'x'" in e.message
        for malformed, what in (
            ({"UaType": 6, "Valeu": 1}, "'Valeu'"),  # unknown member
            ({"UaType": 6}, "Value"),  # a write says what it writes
            ({"Type": 6, "Body": 1}, "UaType"),  # the 1.04 form
        ):
            e = refused({"UaType": 24, "Value": [malformed]}, 24, value_rank=1)
            assert e.status == S.BadDecodingError and what in e.message, e.message
        # a matrix inside: the JSON is flat, the decoded value nested
        matrix = {"UaType": 21, "Value": [{}, {}, {}, {"Txt": "d"}], "Dimensions": [2, 2]}
        e = refused({"UaType": 24, "Value": [matrix]}, 24, value_rank=1)
        assert "Value/3" in e.message and "'Txt'" in e.message
        # a Variant in a Variant, which the decoder unwraps
        inner = {"UaType": 24, "Value": {"UaType": 21, "Value": {"Text": "a", "x": 1}}}
        assert "'x'" in refused({"UaType": 24, "Value": inner}, 24).message

    def test_data_values(self) -> None:
        dv = {
            "UaType": 21,
            "Value": {"Text": "a"},
            "Status": {"Code": S.BadOutOfRange},
            "SourceTimestamp": "2030-01-01T00:00:00Z",
        }
        written = conv({"UaType": 23, "Value": dv}, VT.DataValue).Value
        assert written.Value == ua.Variant(ua.LocalizedText("a"), VT.LocalizedText)
        assert written.StatusCode == ua.StatusCode(S.BadOutOfRange)
        for broken, status in (
            ({**dv, "Statsu": {}}, S.BadTypeMismatch),
            ({**dv, "Status": {"Code": 0, "Q": 1}}, S.BadTypeMismatch),
            ({**dv, "Value": {"Txet": "a"}}, S.BadTypeMismatch),
            ({"Value": {"Type": 21, "Body": {"Text": "a"}}}, S.BadDecodingError),  # 1.04
            ({"Value": {"UaType": 21, "Value": {"Text": "a"}}}, S.BadDecodingError),  # not inline
        ):
            assert refused({"UaType": 23, "Value": broken}, VT.DataValue).status == status

    def test_structures_in_the_1_04_envelope_are_refused(self) -> None:
        e = refused({"TypeId": RANGE, "Body": {"Low": 1, "High": 2}}, VT.ExtensionObject)
        assert e.status == S.BadTypeMismatch and "'Body', 'TypeId'" in e.message

    def test_an_unknown_structure_is_refused_at_any_depth(self) -> None:
        unknown = {"UaType": 22, "Value": {"UaTypeId": f"nsu={PLANT};i=99999", "A": 1}}
        e = refused({"UaType": 24, "Value": [unknown]}, 24, value_rank=1)
        assert e.status == S.BadTypeMismatch and f"nsu={PLANT};i=99999" not in e.message
        assert "ns=1;i=99999 is not known" in e.message


#: Objects that convert exactly as they are, at least one of each structured form, nested where
#: a form holds others: the property below puts a member they do not have somewhere inside.
EXACT_OBJECTS: list[tuple[int, Any]] = [
    (VT.LocalizedText, {"Locale": "en", "Text": "hi"}),
    (VT.LocalizedText, [{"Text": "a"}, {}]),
    (VT.QualifiedName, {"Name": "Speed", "Uri": 1}),
    (VT.NodeId, {"IdType": 1, "Id": "Line1.Speed", "Namespace": 1}),
    (VT.ExpandedNodeId, {"IdType": 0, "Id": 5, "Namespace": "urn:elsewhere", "ServerUri": 0}),
    (VT.StatusCode, {"Code": S.BadOutOfRange, "Symbol": "BadOutOfRange"}),
    (
        VT.DiagnosticInfo,
        {"SymbolicId": 1, "InnerStatusCode": {"Code": 0}, "InnerDiagnosticInfo": {"Locale": 2}},
    ),
    (VT.ExtensionObject, {"UaTypeId": {"IdType": 0, "Id": 884}, "Low": 1.0, "High": 2.0}),
    (
        VT.ExtensionObject,
        {
            "UaTypeId": EU_INFORMATION,
            "NamespaceUri": "u",
            "UnitId": 1,
            "DisplayName": {"Text": "m"},
            "Description": {"Locale": "en", "Text": "metre"},
        },
    ),
    (VT.ExtensionObject, {"UaTypeId": "i=1", "UaEncoding": 1, "UaBody": "AAE="}),
    (
        VT.DataValue,
        {
            "UaType": 23,
            "Value": {
                "UaType": 21,
                "Value": {"Text": "a"},
                "Status": {"Code": 0},
                "SourceTimestamp": "2030-01-01T00:00:00Z",
            },
        },
    ),
    (
        VT.Variant,
        {
            "UaType": 24,
            "Value": [
                {"UaType": 20, "Value": {"Name": "n"}},
                {"UaType": 21, "Value": [{"Text": "a"}, {}, {}, {}], "Dimensions": [2, 2]},
                {"UaType": 24, "Value": {"UaType": 19, "Value": {"Code": 0}}},
            ],
        },
    ),
]
KNOWN_MEMBERS = frozenset(
    {"Locale", "Text", "Name", "Uri", "IdType", "Id", "Namespace", "ServerUri", "Code", "Symbol"}
    | {"SymbolicId", "NamespaceUri", "LocalizedText", "AdditionalInfo", "InnerStatusCode"}
    | {"InnerDiagnosticInfo", "UaTypeId", "UaEncoding", "UaBody", "Low", "High", "UnitId"}
    | {"DisplayName", "Description", "UaType", "Value", "Dimensions", "Status", "SourceTimestamp"}
    | {"SourcePicoseconds", "ServerTimestamp", "ServerPicoseconds"}
)


def _objects_in(x: Any) -> list[dict[str, Any]]:
    if isinstance(x, list):
        return [d for item in x for d in _objects_in(item)]
    if isinstance(x, dict):
        return [x, *(d for v in x.values() for d in _objects_in(v))]
    return []


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(EXACT_OBJECTS),
    where=st.integers(min_value=0),
    member=st.one_of(
        st.sampled_from(["Txet", "Body", "Type", "Valeu", "x", ""]),
        st.text(max_size=8).filter(lambda k: k not in KNOWN_MEMBERS),
    ),
    value=st.none() | st.booleans() | st.integers() | st.text(max_size=5),
)
def test_an_object_with_a_member_it_does_not_have_is_refused(
    case: tuple[int, Any], where: int, member: str, value: Any
) -> None:
    vt, exact = case
    conv(exact, vt, value_rank=-2)
    changed = copy.deepcopy(exact)
    holders = _objects_in(changed)
    holders[where % len(holders)][member] = value
    e = refused(changed, vt, value_rank=-2)
    assert e.status in (S.BadTypeMismatch, S.BadDecodingError)
    assert repr(member)[:20] in e.message, e.message


class TestArrays:
    def test_rank_1(self) -> None:
        v = conv([1, 2, 3], VT.Int32, value_rank=1)
        assert v == ua.Variant([1, 2, 3], VT.Int32, is_array=True) and v.is_array

    def test_empty_array(self) -> None:
        assert conv([], VT.Double, value_rank=1).Value == []

    def test_rank_2_nested_in_plain_form(self) -> None:
        v = conv([[1, 2, 3], [4, 5, 6]], VT.Int16, value_rank=2)
        assert v.Value == [[1, 2, 3], [4, 5, 6]] and v.Dimensions == [2, 3]

    def test_rank_2_flat_with_dimensions_in_typed_form(self) -> None:
        v = conv({"UaType": 6, "Value": [1, 2, 3, 4, 5, 6], "Dimensions": [3, 2]}, 6, value_rank=2)
        assert v.Value == [[1, 2], [3, 4], [5, 6]] and v.Dimensions == [3, 2]

    def test_ragged_arrays_are_refused(self) -> None:
        for value in ([[1, 2], [3]], [[1], 2], [1, [2]], [[1], [[2]]], [[], [1]]):
            assert refused(value, VT.Int32, value_rank=-2).status == S.BadTypeMismatch

    @pytest.mark.parametrize(
        ("value_rank", "ok", "bad"),
        [
            (-1, [5], [[5], [[5]]]),
            (-2, [5, [5], [[5]]], []),
            (-3, [5, [5]], [[[5]]]),
            (0, [[5], [[5]]], [5]),
            (1, [[5]], [5, [[5]]]),
            (2, [[[5]]], [5, [5]]),
        ],
    )
    def test_rank_must_fit_the_value_rank(
        self, value_rank: int, ok: list[Any], bad: list[Any]
    ) -> None:
        for value in ok:
            conv(value, VT.Int32, value_rank=value_rank)
        for value in bad:
            e = refused(value, VT.Int32, value_rank=value_rank)
            assert e.status == S.BadTypeMismatch and "ValueRank" in e.message

    def test_array_dimensions_are_maxima(self) -> None:
        assert conv([1, 2, 3], VT.Int32, value_rank=1, array_dimensions=(3,)).Value == [1, 2, 3]
        assert conv([1], VT.Int32, value_rank=1, array_dimensions=(3,)).Value == [1]
        e = refused([1, 2, 3, 4], VT.Int32, value_rank=1, array_dimensions=(3,))
        assert e.status == S.BadOutOfRange and "ArrayDimensions" in e.message
        matrix = [[1, 2, 3], [4, 5, 6]]
        assert conv(matrix, VT.Int32, value_rank=2, array_dimensions=(0, 3)).Dimensions == [2, 3]
        assert refused(matrix, VT.Int32, value_rank=2, array_dimensions=(2, 2)).status == (
            S.BadOutOfRange
        )

    def test_element_errors_name_the_element(self) -> None:
        e = refused([[1, 2], [3, 300]], VT.Byte, value_rank=2)
        assert e.status == S.BadOutOfRange and "[1][1]" in e.message
        e = refused([1, None], VT.Int32, value_rank=1)
        assert e.status == S.BadTypeMismatch and "[1]" in e.message

    def test_null_elements_only_for_nullable_types(self) -> None:
        assert conv(["a", None], VT.String, value_rank=1).Value == ["a", None]

    def test_max_string_length_applies_to_each_element(self) -> None:
        e = refused(["ab", "abc"], VT.String, value_rank=1, max_string_length=2)
        assert e.status == S.BadOutOfRange and "[1]" in e.message

    def test_too_many_dimensions(self) -> None:
        deep: Any = 1
        for _ in range(MAX_RANK + 1):
            deep = [deep]
        assert refused(deep, VT.Int32, value_rank=-2).status == S.BadOutOfRange
        dims = {"UaType": 6, "Value": [1], "Dimensions": [1] * (MAX_RANK + 1)}
        assert refused(dims, VT.Int32, value_rank=-2).status == S.BadDecodingError

    def test_huge_empty_dimensions_are_refused(self) -> None:
        obj = {"UaType": 6, "Value": [], "Dimensions": [2**31 - 1, 0]}
        assert refused(obj, VT.Int32, value_rank=2).status == S.BadOutOfRange

    def test_typed_variant_array_of_every_element_type_is_checked(self) -> None:
        obj = {"UaType": 3, "Value": [1, 2, 256]}
        assert refused(obj, VT.Byte, value_rank=1).status == S.BadOutOfRange


class TestIndexRange:
    def test_parse(self) -> None:
        assert parse_index_range("2") == ((2, 2),)
        assert parse_index_range("1:3,0:1") == ((1, 3), (0, 1))
        for bad in ("", "3:1", "2:2", "1-3", " 1", "1,", "a", "99999999999", "٣"):
            with pytest.raises(ValueError):
                parse_index_range(bad)

    def test_a_scalar_fills_a_single_element_range(self) -> None:
        v = conv({"UaType": 10, "Value": 1.5}, VT.Float, value_rank=1, index_range="2")
        assert v == ua.Variant([1.5], VT.Float, is_array=True)
        v = conv(7, VT.Int32, value_rank=2, index_range="1,2")
        assert v.Value == [[7]] and v.Dimensions == [1, 1]

    def test_the_value_has_the_ranges_shape(self) -> None:
        assert conv([1, 2, 3], VT.Int32, value_rank=1, index_range="1:3").Value == [1, 2, 3]
        e = refused([1, 2], VT.Int32, value_rank=1, index_range="1:3")
        assert e.status == S.BadTypeMismatch and "3" in e.message
        v = conv([[1, 2], [3, 4]], VT.Int32, value_rank=2, index_range="0:1,2:3")
        assert v.Dimensions == [2, 2]
        assert refused(5, VT.Int32, value_rank=1, index_range="1:2").status == S.BadTypeMismatch

    def test_invalid_ranges(self) -> None:
        for text in ("3:1", "x", "1:1"):
            e = refused([1], VT.Int32, value_rank=1, index_range=text)
            assert e.status == S.BadIndexRangeInvalid
        e = refused([[1]], VT.Int32, value_rank=1, index_range="0,0")
        assert e.status == S.BadIndexRangeInvalid  # two dimensions on a one-dimensional node
        assert refused(1.0, VT.Double, value_rank=-1, index_range="0").status == (
            S.BadIndexRangeInvalid
        )

    def test_past_the_array_dimensions(self) -> None:
        e = refused(1, VT.Int32, value_rank=1, array_dimensions=(5,), index_range="5")
        assert e.status == S.BadIndexRangeNoData
        assert conv(1, VT.Int32, value_rank=1, array_dimensions=(5,), index_range="4").Value == [1]

    def test_substring_of_a_scalar_string(self) -> None:
        assert conv("xy", VT.String, value_rank=-1, index_range="2:3") == ua.Variant(
            "xy", VT.String
        )
        assert conv("AAE=", VT.ByteString, index_range="0:1").Value == b"\x00\x01"
        assert refused(["xy"], VT.String, index_range="2:3").status == S.BadTypeMismatch


# -------------------------------------------------------------- conversion properties

CONVERTIBLE = [VT.Boolean, *INT_TYPES, VT.Float, VT.Double, VT.String]
ANY_JSON_SCALAR = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 2**24 + 1]),
    st.floats(),
    st.floats(width=32),
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,22}", fullmatch=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1.5", "0x10", ""]),
    st.booleans(),
    st.none(),
)


def assert_exact(x: Any, vt: ua.VariantType, got: Any) -> None:
    """What a successful conversion may return for ``x``: the same value, never a neighbour."""
    if vt is VT.Boolean:
        assert isinstance(x, bool) and got is x
    elif vt in INT_RANGES:
        assert type(got) is int
        lo, hi = INT_RANGES[vt]
        assert lo <= got <= hi
        if isinstance(x, bool):
            pytest.fail("a boolean became an integer")
        elif isinstance(x, int):
            assert got == x
        elif isinstance(x, float):
            assert x.is_integer() and abs(x) < 2**53 and got == x
        else:
            assert isinstance(x, str) and vt in (VT.Int64, VT.UInt64) and got == int(x)
    elif vt in (VT.Float, VT.Double):
        assert type(got) is float
        if isinstance(x, str):
            want = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[x]
            assert got == want or (math.isnan(got) and math.isnan(want))
        elif isinstance(x, float) and math.isnan(x):
            assert math.isnan(got)
        elif isinstance(x, int) and not isinstance(x, bool):
            assert got == x  # int == float compares exactly
        elif vt is VT.Double or x.is_integer() or not math.isfinite(x):
            assert got == x
        else:  # a Float fraction: the nearest Float, never 0
            assert got == f32(x) and got != 0
        if vt is VT.Float and math.isfinite(got):
            assert f32(got) == got
    else:  # String: the text itself, or null for null
        assert got == x and (x is None or isinstance(x, str))


@settings(max_examples=400, deadline=None)
@given(vt=st.sampled_from(CONVERTIBLE), x=ANY_JSON_SCALAR)
def test_a_conversion_is_exact_or_a_conversion_error(vt: ua.VariantType, x: Any) -> None:
    try:
        v = conv(x, vt)
    except ConversionError as e:
        assert e.status in (S.BadTypeMismatch, S.BadOutOfRange)
        assert e.message and e.symbol in ("BadTypeMismatch", "BadOutOfRange")
        return
    assert v.VariantType is vt and not v.is_array
    assert_exact(x, vt, v.Value)


@settings(max_examples=150, deadline=None)
@given(vt=st.sampled_from(CONVERTIBLE), xs=st.lists(ANY_JSON_SCALAR, max_size=6))
def test_arrays_are_exact_element_by_element_or_refused(vt: ua.VariantType, xs: list[Any]) -> None:
    try:
        v = conv(xs, vt, value_rank=1)
    except ConversionError:
        return
    assert v.is_array and len(v.Value) == len(xs)
    for x, got in zip(xs, v.Value, strict=True):
        assert_exact(x, vt, got)


@settings(max_examples=150, deadline=None)
@given(
    vt=st.sampled_from(CONVERTIBLE),
    x=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
)
def test_values_survive_the_json_request_path_exactly(vt: ua.VariantType, x: Any) -> None:
    payload = request({"Writer": "W", "Field": "F", "Value": x})
    (target,) = parse_request(payload).targets
    try:
        v = conv(target.value, vt)
    except ConversionError:
        return
    assert_exact(x, vt, v.Value)


# =========================================================================== requests


class TestParseRequest:
    def test_the_documented_example(self) -> None:
        payload = request(
            {"Writer": "Filler", "Field": "Setpoint", "Value": 42.5},
            {
                "NodeId": "nsu=urn:plant;s=Line1.Speed",
                "Value": {"UaType": 10, "Value": 1.5},
                "IndexRange": "2",
            },
            RequestId="9c1f-41",
            Deadline="2026-11-25T12:00:05Z",
            ReplyTo="app/replies/7",
        )
        r = parse_request(payload)
        assert r == WriteRequest(
            targets=(
                Target("Filler", "Setpoint", None, 42.5),
                Target(
                    None, None, "nsu=urn:plant;s=Line1.Speed", {"UaType": 10, "Value": 1.5}, "2"
                ),
            ),
            request_id="9c1f-41",
            deadline=datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC),
            reply_to="app/replies/7",
        )
        assert r.targets[0].label == "Filler/Setpoint"
        assert r.targets[1].label == "nsu=urn:plant;s=Line1.Speed"

    def test_minimal(self) -> None:
        r = parse_request(request({"NodeId": "i=2255", "Value": None}))
        assert r.request_id is None and r.deadline is None and r.reply_to is None
        assert r.targets == (Target(None, None, "i=2255", None),)

    def test_deadline_offsets_and_expiry(self) -> None:
        r = parse_request(
            request({"NodeId": "i=1", "Value": 1}, Deadline="2026-01-01T02:00:00+02:00")
        )
        assert r.deadline == datetime(2026, 1, 1, tzinfo=UTC)
        assert r.expired(datetime(2026, 1, 1, tzinfo=UTC))
        assert not r.expired(datetime(2026, 1, 1, tzinfo=UTC) - timedelta(microseconds=1))
        assert not WriteRequest(targets=()).expired(datetime.now(UTC))

    def test_too_large(self) -> None:
        payload = request({"NodeId": "i=1", "Value": "x" * 1000})
        e = _refused_request(payload, max_bytes=500)
        assert e.status == S.BadRequestTooLarge == 0x80B80000
        assert str(len(payload)) in e.message and "500" in e.message
        parse_request(payload, max_bytes=len(payload))

    def test_too_many_targets(self) -> None:
        targets = [{"NodeId": f"i={i}", "Value": i} for i in range(101)]
        e = _refused_request(request(*targets))
        assert e.status == S.BadTooManyOperations and "101" in e.message and "100" in e.message
        assert len(parse_request(request(*targets), max_targets=101).targets) == 101

    def test_a_huge_target_list_is_refused_by_count_before_validation(self) -> None:
        payload = request(*[{}] * 30_000)
        e = _refused_request(payload, max_bytes=10**6, max_targets=100)
        assert e.status == S.BadTooManyOperations

    def test_a_huge_value_array_is_fine_within_the_size_limit(self) -> None:
        payload = request({"NodeId": "i=1", "Value": list(range(10_000))})
        (t,) = parse_request(payload, max_bytes=10**6).targets
        assert conv(t.value, VT.Int32, value_rank=1).Value == list(range(10_000))

    @pytest.mark.parametrize(
        ("payload", "where"),
        [
            (b"", "not JSON"),
            (b"\xff\xfe{}", "UTF-8"),
            (b"[]", "object"),
            (b"{}", "Targets"),
            (b'{"Targets": []}', "Targets"),
            (b'{"Targets": {}}', "Targets"),
            (b'{"Targets": [5]}', "Targets/0"),
            (b'{"Targets": [{"Writer": "W", "Field": "F"}]}', "Targets/0"),
            (b'{"Targets": [{"Writer": "W", "Value": 1}]}', "Targets/0"),
            (b'{"Targets": [{"Field": "F", "Value": 1}]}', "Targets/0"),
            (
                b'{"Targets": [{"Writer": "W", "Field": "F", "NodeId": "i=1", "Value": 1}]}',
                "Targets/0",
            ),
            (b'{"Targets": [{"Value": 1}]}', "Targets/0"),
            (b'{"Targets": [{"Writer": "W", "Field": "F", "Valeu": 1}]}', "Targets/0"),
            (b'{"Targets": [{"NodeId": "ns=2;s=x", "Value": 1}]}', "Targets/0/NodeId"),
            (b'{"Targets": [{"NodeId": "x", "Value": 1}]}', "Targets/0/NodeId"),
            (b'{"Targets": [{"Writer": "a/b", "Field": "F", "Value": 1}]}', "Targets/0/Writer"),
            (b'{"Targets": [{"Writer": "", "Field": "F", "Value": 1}]}', "Targets/0/Writer"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1, "IndexRange": "1-2"}]}', "IndexRange"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1, "IndexRange": "2\\n"}]}', "IndexRange"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1, "IndexRange": 2}]}', "IndexRange"),
            (b'{"RequestId": "", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "RequestId"),
            (b'{"RequestId": 7, "Targets": [{"NodeId": "i=1", "Value": 1}]}', "RequestId"),
            (b'{"RequestId": "a\\nb", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "RequestId"),
            (b'{"RequestId": "a\\n", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "RequestId"),
            (b'{"Deadline": "tomorrow", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "Deadline"),
            (
                b'{"Deadline": "2026-01-01T00:00:00", "Targets": [{"NodeId": "i=1", "Value": 1}]}',
                "Deadline",
            ),
            (
                b'{"Deadline": "2026-02-30T00:00:00Z", "Targets": [{"NodeId": "i=1", "Value": 1}]}',
                "Deadline",
            ),
            (b'{"ReplyTo": "a/+/b", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "a/#", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "$SYS/x", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "a/\\n", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "a/\\u0085", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "a/\\uffff", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"ReplyTo": "a/\\ud800", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "ReplyTo"),
            (b'{"RequestId": "\\u009b", "Targets": [{"NodeId": "i=1", "Value": 1}]}', "RequestId"),
            (b'{"Target": [{"NodeId": "i=1", "Value": 1}]}', "Target"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": NaN}]}', "NaN"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": Infinity}]}', "Infinity"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1e999}]}', "1e999"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1, "Value": 2}]}', "duplicate"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": "\\ud800"}]}', "Targets/0/Value"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": {"\\udc00": 1}}]}', "Targets/0/Value"),
            (b'{"Targets": [{"NodeId": "i=1", "Value": 1}]} x', "not JSON"),
        ],
    )
    def test_refusals_name_the_member(self, payload: bytes, where: str) -> None:
        e = _refused_request(payload)
        assert e.status == S.BadDecodingError
        assert where in e.message, e.message
        orjson.dumps(error_response(None, e.status, e.message))  # the message can be sent

    def test_deep_nesting_is_a_decoding_error_not_a_crash(self) -> None:
        for depth in (900, 5000, 30_000):
            payload = (
                b'{"Targets": [{"NodeId": "i=1", "Value": ' + b"[" * depth + b"]" * depth + b"}]}"
            )
            try:
                parse_request(payload, max_bytes=10**6)
            except RequestError as e:
                assert e.status == S.BadDecodingError
            payload = b'{"RequestId": ' + b"[" * depth + b"]" * depth + b', "Targets": []}'
            assert _refused_request(payload, max_bytes=10**6).status == S.BadDecodingError

    def test_a_str_payload_is_accepted_too(self) -> None:
        assert parse_request('{"Targets": [{"NodeId": "i=1", "Value": "é"}]}').targets  # type: ignore[arg-type]


def _refused_request(payload: bytes, **kw: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(payload, **kw)
    return info.value


# -------------------------------------------------------- the schema agrees with the bridge

#: Topics of any characters, those a broker refuses and their neighbours drawn more often.
REPLY_TOPICS = st.text(
    st.characters()
    | st.sampled_from(
        "$+#/% \x00\x1f\x7f\x85\x9f\xa0\ufdcf\ufdd0\ufdef\ufdf0\ufffd\ufffe\uffff"
        "\U0001fffd\U0001fffe\U0010ffff\ud800\udfff"
    ),
    max_size=12,
)


def _with(**top: Any) -> dict[str, Any]:
    return {**top, "Targets": [{"NodeId": "i=1", "Value": 1}]}


@settings(max_examples=500, deadline=None)
@given(topic=REPLY_TOPICS)
def test_the_schema_takes_exactly_the_reply_topics_the_bridge_answers_to(topic: str) -> None:
    assert validator("write-request").is_valid(_with(ReplyTo=topic)) is publishable(topic)


@settings(max_examples=300, deadline=None)
@given(topic=REPLY_TOPICS)
def test_a_request_is_read_exactly_when_the_bridge_can_answer_to_its_reply_to(topic: str) -> None:
    payload = json.dumps(_with(ReplyTo=topic)).encode()  # a lone surrogate as its \u escape
    try:
        accepted = parse_request(payload).reply_to == topic
    except RequestError as e:
        assert e.status == S.BadDecodingError and e.message.startswith("ReplyTo: "), e.message
        accepted = False
    assert accepted is publishable(topic)


@pytest.mark.parametrize(
    ("topic", "taken"),
    [
        ("a" * 65535, True),
        ("a" * 65536, False),  # past maxLength
        ("é" * 32767 + "a", True),  # 65,535 bytes
        ("é" * 32768, False),  # 65,536 bytes in 32,768 characters: only the bytes tell
    ],
)
def test_a_reply_topic_is_at_most_65535_bytes(topic: str, taken: bool) -> None:
    assert publishable(topic) is taken
    payload = json.dumps(_with(ReplyTo=topic), ensure_ascii=False).encode()
    if taken:
        assert parse_request(payload, max_bytes=10**6).reply_to == topic
    else:
        e = _refused_request(payload, max_bytes=10**6)
        assert e.message.startswith("ReplyTo: ") and "65535" in e.message, e.message


@settings(max_examples=300, deadline=None)
@given(
    request_id=st.text(st.characters() | st.sampled_from("\n\x00\x7f\x85\x9f\xa0"), max_size=130)
)
def test_a_request_id_is_1_to_128_characters_without_control_characters(request_id: str) -> None:
    valid = 1 <= len(request_id) <= 128 and not any(
        unicodedata.category(c) == "Cc" for c in request_id
    )
    assert validator("write-request").is_valid(_with(RequestId=request_id)) is valid


# -------------------------------------------------------------- hostile payloads

MEMBER_NAMES = (
    *("RequestId", "Deadline", "ReplyTo", "Targets", "Writer", "Field", "NodeId"),
    *("Value", "IndexRange", "UaType", "Dimensions"),
)


def _json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        floats,
        st.text(max_size=20),
        st.sampled_from(["i=1", "nsu=urn:plant;s=x", "ns=1;s=x", "W", "F", "2", "1:3", "Z"]),
    )
    return st.recursive(leaves, _containers, max_leaves=25)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(
                st.sampled_from(MEMBER_NAMES),
                st.text(max_size=8),
            ),
            inner,
            max_size=5,
        ),
    )


#: Any JSON value, and NaN/Infinity, which json.dumps writes although they are not JSON.
JSON_VALUES = _json_values(st.floats())
VALID_JSON_VALUES = _json_values(st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def valid_targets(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        t: dict[str, Any] = {
            "Writer": draw(
                st.text(
                    st.characters(blacklist_characters="/", blacklist_categories=["Cc", "Cs"]),
                    min_size=1,
                    max_size=10,
                )
            ),
            "Field": draw(st.sampled_from(["Setpoint", "Speed", "Mode ✓"])),
        }
    else:
        t = {"NodeId": draw(st.sampled_from(["i=2255", "nsu=urn:plant;s=Line1.Speed", "s=x"]))}
    t["Value"] = draw(VALID_JSON_VALUES)
    if draw(st.booleans()):
        t["IndexRange"] = draw(st.sampled_from(["2", "1:3", "0:1,2:3"]))
    return t


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["RequestId"] = draw(
            st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=128)
        )
    if draw(st.booleans()):
        out["Deadline"] = (
            draw(st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1)))
            .isoformat()
            .replace("+00:00", "Z")
        )
    if draw(st.booleans()):
        out["ReplyTo"] = draw(st.sampled_from(["app/replies/7", "r", "a/b/c"]))
    out["Targets"] = draw(st.lists(valid_targets(), min_size=1, max_size=4))
    return out


def _mutate(draw: st.DrawFn, obj: Any) -> Any:
    """Apply one random change somewhere inside ``obj`` (a JSON value)."""
    if isinstance(obj, dict) and obj and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(obj)))
        action = draw(st.sampled_from(["drop", "replace", "recurse", "add"]))
        out = dict(obj)
        if action == "drop":
            del out[key]
        elif action == "replace":
            out[key] = draw(JSON_VALUES)
        elif action == "add":
            out[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        else:
            out[key] = _mutate(draw, obj[key])
        return out
    if isinstance(obj, list) and obj and draw(st.booleans()):
        i = draw(st.integers(0, len(obj) - 1))
        out_list = list(obj)
        action = draw(st.sampled_from(["drop", "dup", "recurse"]))
        if action == "drop":
            del out_list[i]
        elif action == "dup":
            out_list.extend([obj[i]] * draw(st.integers(1, 200)))
        else:
            out_list[i] = _mutate(draw, obj[i])
        return out_list
    return draw(JSON_VALUES)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    obj = draw(valid_requests())
    for _ in range(draw(st.integers(1, 3))):
        obj = _mutate(draw, obj)
    return json.dumps(obj).encode()  # NaN / Infinity included: json.dumps writes them


#: Strings at the edges of the request schema's string rules (and some well inside them).
_EDGE_STRINGS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "/",
            "a/b",
            "\x00",
            "a\x7f",
            "\u0085",
            "a\n",
            "x" * 128,
            "x" * 129,
            "x" * 257,
            "$SYS/x",
            "a+b",
            "#",
            "nsu=u;s=1",
            "ns=2;s=1",
            "i=1",
            "1:3",
            "0:1,2:3",
            "3:",
            "2026-01-01T00:00:00Z",
            "2026-01-01t00:00:00.5+23:59",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2024-12-31T23:59:60Z",
            "2026-01-01T00:00:00",
            "ab..cd",
            "x..y.z",
            "\ud800",
        ]
    ),
)


@st.composite
def near_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid requests with one to three string members, at the top or in a target, set to an
    edge string (an unknown member among them)."""
    obj = draw(valid_requests())
    members = ["RequestId", "Deadline", "ReplyTo", "JwsSignature", "Writer", "Field"]
    members += ["NodeId", "IndexRange", "Other"]
    for _ in range(draw(st.integers(1, 3))):
        where = obj if draw(st.booleans()) else draw(st.sampled_from(obj["Targets"]))
        where[draw(st.sampled_from(members))] = draw(_EDGE_STRINGS)
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.one_of(near_requests(), mutated_requests().map(json.loads)))
def test_the_fast_schema_check_accepts_nothing_the_schema_refuses(obj: Any) -> None:
    if isinstance(obj, dict) and fast_valid(obj):
        assert validator(REQUEST_SCHEMA).is_valid(obj), obj


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=valid_requests())
def test_the_fast_schema_check_takes_the_valid_requests(obj: dict[str, Any]) -> None:
    assert fast_valid(obj)


def _only_request_errors(payload: bytes, **kw: Any) -> None:
    try:
        r = parse_request(payload, **kw)
    except RequestError as e:
        assert e.status in (S.BadDecodingError, S.BadRequestTooLarge, S.BadTooManyOperations)
        assert e.message
        orjson.dumps(error_response(None, e.status, e.message))
        return
    assert isinstance(r, WriteRequest) and r.targets
    for t in r.targets:
        assert (t.node_id is None) == (t.writer is not None and t.field is not None)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300))
def test_random_bytes_raise_only_request_errors(payload: bytes) -> None:
    _only_request_errors(payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES)
def test_random_json_raises_only_request_errors(value: Any) -> None:
    _only_request_errors(json.dumps(value).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_requests(), max_targets=st.integers(1, 100))
def test_mutated_requests_raise_only_request_errors(payload: bytes, max_targets: int) -> None:
    _only_request_errors(payload, max_bytes=4096, max_targets=max_targets)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=valid_requests())
def test_valid_requests_parse_to_what_they_say(obj: dict[str, Any]) -> None:
    assert not list(validator("write-request").iter_errors(obj))
    r = parse_request(json.dumps(obj).encode(), max_bytes=10**6)
    assert r.request_id == obj.get("RequestId")
    assert r.reply_to == obj.get("ReplyTo")
    if "Deadline" in obj:
        assert r.deadline == datetime.fromisoformat(obj["Deadline"].replace("Z", "+00:00"))
    assert len(r.targets) == len(obj["Targets"])
    for t, raw in zip(r.targets, obj["Targets"], strict=True):
        assert (t.writer, t.field, t.node_id, t.index_range) == (
            raw.get("Writer"),
            raw.get("Field"),
            raw.get("NodeId"),
            raw.get("IndexRange"),
        )
        assert json.dumps(t.value) == json.dumps(raw["Value"])


# =========================================================================== idempotency


class TestIdempotencyCache:
    def test_answers_within_the_window_only(self) -> None:
        cache = IdempotencyCache(window_s=10)
        assert cache.get("a", 0.0) is None
        cache.put("a", b"first", 1.0)
        assert cache.get("a", 1.0) == b"first"
        assert cache.get("a", 10.999) == b"first"
        assert cache.get("a", 11.0) is None
        assert len(cache) == 0

    def test_the_first_answer_wins(self) -> None:
        cache = IdempotencyCache()
        cache.put("a", b"first", 0.0)
        cache.put("a", b"second", 1.0)
        assert cache.get("a", 2.0) == b"first"

    def test_an_expired_id_can_be_answered_anew(self) -> None:
        cache = IdempotencyCache(window_s=5)
        cache.put("a", b"first", 0.0)
        cache.put("a", b"second", 6.0)
        assert cache.get("a", 7.0) == b"second"

    def test_oldest_are_evicted_past_max_entries(self) -> None:
        cache = IdempotencyCache(window_s=1000, max_entries=3)
        for i in range(5):
            cache.put(f"r{i}", b"x", float(i))
        assert len(cache) == 3
        assert [cache.get(f"r{i}", 5.0) for i in range(5)] == [None, None, b"x", b"x", b"x"]

    def test_oldest_are_evicted_past_max_bytes(self) -> None:
        cache = IdempotencyCache(window_s=1000, max_bytes=1000)
        for i in range(10):
            cache.put(f"r{i}", b"y" * 300, float(i))
        kept = [i for i in range(10) if cache.get(f"r{i}", 10.0) is not None]
        assert kept == [8, 9]

    def test_invalid_settings(self) -> None:
        for kw in ({"window_s": 0}, {"max_entries": 0}, {"max_bytes": 0}, {"window_s": math.nan}):
            with pytest.raises(ValueError):
                IdempotencyCache(**kw)

    @settings(max_examples=100, deadline=None)
    @given(
        ops=st.lists(
            st.tuples(
                st.sampled_from(["put", "get"]),
                st.sampled_from(["a", "b", "c", "d", "e"]),
                st.floats(0, 4),
            ),
            max_size=40,
        )
    )
    def test_matches_a_simple_model(self, ops: list[tuple[str, str, float]]) -> None:
        window, cap = 5.0, 3
        cache = IdempotencyCache(window_s=window, max_entries=cap)
        model: dict[str, tuple[float, bytes]] = {}  # insertion-ordered
        now = 0.0
        for op, key, step in ops:
            now += step
            model = {k: v for k, v in model.items() if now - v[0] < window}
            if op == "put":
                if key not in model:
                    model[key] = (now, f"{key}@{now}".encode())
                    while len(model) > cap:
                        del model[next(iter(model))]
                cache.put(key, f"{key}@{now}".encode(), now)
            else:
                want = model.get(key)
                assert cache.get(key, now) == (want[1] if want else None)


# =========================================================================== rate limit


class TestRateLimiter:
    def test_burst_then_rate(self) -> None:
        limiter = RateLimiter(rate_per_s=2.0, burst=3)
        assert [limiter.allow(0.0) for _ in range(4)] == [True, True, True, False]
        assert limiter.retry_after(0.0) == pytest.approx(0.5)
        assert not limiter.allow(0.4)
        assert limiter.allow(0.5)
        assert not limiter.allow(0.5)

    def test_idle_time_refills_up_to_the_burst_only(self) -> None:
        limiter = RateLimiter(rate_per_s=100.0, burst=2)
        limiter.allow(0.0)
        limiter.allow(0.0)
        assert sum(limiter.allow(1000.0) for _ in range(10)) == 2

    def test_a_clock_stepping_back_gives_nothing(self) -> None:
        limiter = RateLimiter(rate_per_s=1.0, burst=1)
        assert limiter.allow(100.0)
        assert not limiter.allow(50.0)
        assert not limiter.allow(100.5)
        assert limiter.allow(101.0)

    def test_invalid_settings(self) -> None:
        for kw in ({"rate_per_s": 0}, {"rate_per_s": -1}, {"rate_per_s": math.nan}, {"burst": 0}):
            with pytest.raises(ValueError):
                RateLimiter(**kw)

    @settings(max_examples=100, deadline=None)
    @given(
        rate=st.floats(0.1, 100),
        burst=st.integers(1, 20),
        steps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
    )
    def test_never_more_than_burst_plus_rate_times_time(
        self, rate: float, burst: int, steps: list[float]
    ) -> None:
        limiter = RateLimiter(rate, burst)
        now, allowed = 0.0, 0
        for step in steps:
            now += step
            allowed += limiter.allow(now)
            assert allowed <= burst + rate * now + 1e-9


# =========================================================================== responses


def _valid_response(obj: dict[str, Any]) -> None:
    errors = list(validator("write-response").iter_errors(obj))
    assert not errors, [e.message for e in errors]
    orjson.dumps(obj)


class TestResponses:
    def test_all_good(self) -> None:
        out = build_response(
            "r1",
            [
                TargetResult(0, ua.Variant(42.5, VT.Double), writer="Filler", field="Setpoint"),
                TargetResult(0, ua.Variant(5, VT.Int64), node_id="nsu=urn:plant;s=x"),
            ],
            CODEC,
        )
        _valid_response(out)
        assert out == {
            "RequestId": "r1",
            "Result": {"Code": 0, "Symbol": "Good"},
            "Targets": [
                {
                    "Status": {"Code": 0, "Symbol": "Good"},
                    "Written": {"UaType": 11, "Value": 42.5},
                    "Writer": "Filler",
                    "Field": "Setpoint",
                },
                {
                    "Status": {"Code": 0, "Symbol": "Good"},
                    "Written": {"UaType": 8, "Value": "5"},
                    "NodeId": "nsu=urn:plant;s=x",
                },
            ],
        }

    def test_result_is_the_first_bad(self) -> None:
        out = build_response(
            None,
            [
                TargetResult(0, ua.Variant(True, VT.Boolean), node_id="i=1"),
                TargetResult(S.BadOutOfRange, node_id="i=2", message="300 is out of range"),
                TargetResult(S.BadTypeMismatch, node_id="i=3", message="x"),
            ],
            CODEC,
        )
        _valid_response(out)
        assert "RequestId" not in out
        assert out["Result"] == {"Code": S.BadOutOfRange, "Symbol": "BadOutOfRange"}
        assert out["Targets"][1] == {
            "Status": {"Code": S.BadOutOfRange, "Symbol": "BadOutOfRange"},
            "NodeId": "i=2",
            "Message": "300 is out of range",
        }

    def test_uncertain_counts_as_not_good(self) -> None:
        uncertain = 0x40000000
        out = build_response(None, [TargetResult(0), TargetResult(uncertain)], CODEC)
        assert out["Result"]["Code"] == uncertain
        good_with_info_bits = 0x00000400
        out = build_response(None, [TargetResult(good_with_info_bits)], CODEC)
        assert out["Result"]["Code"] == 0

    def test_written_is_compact_even_with_a_verbose_codec(self) -> None:
        verbose = JsonCodec(FieldEncoding.VERBOSE, CODEC.namespaces)
        v = ua.Variant([[1, 2], [3, 4]], VT.Int32, [2, 2], is_array=True)
        out = build_response("r", [TargetResult(0, v)], verbose)
        _valid_response(out)
        assert out["Targets"][0]["Written"] == {
            "UaType": 6,
            "Value": [1, 2, 3, 4],
            "Dimensions": [2, 2],
        }
        out = build_response("r", [TargetResult(0, ua.Variant())], CODEC)
        assert out["Targets"][0]["Written"] == {"UaType": 0}

    def test_unknown_codes_have_no_symbol(self) -> None:
        assert status_json(0x80FF0000) == {"Code": 0x80FF0000}
        assert status_json(0) == {"Code": 0, "Symbol": "Good"}
        out = build_response("r", [TargetResult(0x80FF0000)], CODEC)
        _valid_response(out)

    def test_error_response(self) -> None:
        out = error_response("r9", S.BadTimeout, "the deadline has passed")
        _valid_response(out)
        assert out == {
            "RequestId": "r9",
            "Result": {"Code": S.BadTimeout, "Symbol": "BadTimeout"},
            "Message": "the deadline has passed",
        }
        _valid_response(error_response(None, S.BadRequestTooLarge, "too large"))

    def test_the_schema_refuses_malformed_responses(self) -> None:
        v = validator("write-response")
        assert not v.is_valid({"Targets": []})
        assert not v.is_valid({"Result": {"Code": 0}})  # neither Targets nor Message
        assert not v.is_valid({"Result": {"Code": 0}, "Message": "x"})  # an error needs a Bad code
        assert not v.is_valid({"Result": {"Code": -1}, "Targets": [{"Status": {"Code": 0}}]})
        assert not v.is_valid(
            {"Result": {"Code": 0}, "Targets": [{"Status": {"Code": 0}}], "Message": "x"}
        )

    @settings(max_examples=100, deadline=None)
    @given(
        statuses=st.lists(
            st.sampled_from([0, S.BadOutOfRange, S.BadTypeMismatch, S.BadNotWritable, 0x80FF0000]),
            min_size=1,
            max_size=5,
        ),
        rid=st.one_of(st.none(), st.text(min_size=1, max_size=128)),
        value=st.one_of(
            st.integers(-(2**63), 2**63 - 1).map(lambda n: ua.Variant(n, VT.Int64)),
            st.floats().map(lambda f: ua.Variant(f, VT.Double)),
            st.text().map(lambda s: ua.Variant(s, VT.String)),
            st.lists(st.booleans()).map(lambda xs: ua.Variant(xs, VT.Boolean, is_array=True)),
        ),
    )
    def test_any_response_validates(
        self, statuses: list[int], rid: str | None, value: ua.Variant
    ) -> None:
        results = [
            TargetResult(
                s, value if s == 0 else None, node_id="i=1", message=None if s == 0 else "no"
            )
            for s in statuses
        ]
        out = build_response(rid, results, CODEC)
        errors = list(validator("write-response").iter_errors(out))
        assert not errors
        first_bad = next((s for s in statuses if s), 0)
        assert out["Result"]["Code"] == first_bad


def test_a_request_converted_and_answered_end_to_end() -> None:
    payload = request(
        {"Writer": "Filler", "Field": "Setpoint", "Value": 42.5},
        {"NodeId": "nsu=urn:plant;s=Mode", "Value": 300},
        {
            "NodeId": "nsu=urn:plant;s=Speeds",
            "Value": {"UaType": 10, "Value": 1.5},
            "IndexRange": "2",
        },
        RequestId="abc",
    )
    req = parse_request(payload)
    types = [(VT.Double, -1), (VT.Byte, -1), (VT.Float, 1)]
    results = []
    for target, (vt, rank) in zip(req.targets, types, strict=True):
        try:
            v = conv(target.value, vt, value_rank=rank, index_range=target.index_range)
        except ConversionError as e:
            results.append(TargetResult(e.status, node_id=target.node_id, message=e.message))
        else:
            results.append(TargetResult(0, v, target.node_id, target.writer, target.field))
    out = build_response(req.request_id, results, CODEC)
    _valid_response(out)
    assert [t["Status"]["Symbol"] for t in out["Targets"]] == ["Good", "BadOutOfRange", "Good"]
    assert out["Targets"][2]["Written"] == {"UaType": 10, "Value": [1.5]}
    assert out["Result"]["Symbol"] == "BadOutOfRange"


# =========================================================================== documentation


def _doc_json_blocks() -> list[Any]:
    text = DOCS.read_text(encoding="utf-8")
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_the_documented_messages_follow_the_schemas() -> None:
    requests = responses = 0
    for block in _doc_json_blocks():
        if isinstance(block, dict) and "Result" in block:
            _valid_response(block)
            for status in [block["Result"], *(t["Status"] for t in block.get("Targets", []))]:
                assert status == status_json(status["Code"])  # the Symbol is the Code's
            responses += 1
        elif isinstance(block, dict) and "Targets" in block:
            parse_request(json.dumps(block).encode())
            requests += 1
    assert requests >= 2 and responses >= 2


@given(st.text(max_size=140))
def test_valid_request_id_is_exactly_the_schemas_request_id_rule(text: str) -> None:
    """The bridge reads the RequestId of a request it refuses unparsed by this rule."""
    schema_says = not any(
        e.path and e.path[0] == "RequestId"
        for e in validator(REQUEST_SCHEMA).iter_errors({"RequestId": text})
    )
    assert valid_request_id(text) is schema_says


def test_valid_request_id_refuses_c1_controls_and_overlong_ids() -> None:
    assert valid_request_id("7f3c-ok")
    assert not valid_request_id("a\x85b")
    assert not valid_request_id("x" * 129)
    assert not valid_request_id(7)

"""The fix to asyncua's binary Variant decoding (adapters/opcua/decoding.py) on exact bytes,
and the Part 6 JSON form of an empty matrix."""

from __future__ import annotations

import struct

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary, variant_from_binary

from opcua_mqtt.adapters.opcua.decoding import checked, reshape, undecodable_reason
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding

ARRAY, MATRIX = 0x80, 0xC0  # Variant encoding mask bits (OPC 10000-6 §5.2.2.16)


def _int32s(*values: int) -> bytes:
    return struct.pack(f"<i{len(values)}i", len(values), *values)


#: node-opcua's encoding of ns=0;i=24187 (Byte, ValueRank 2, ArrayDimensions [0,8]), as read
#: from its server: ArrayLength 0, then an ArrayDimensions array of length 0.
NODE_OPCUA_EMPTY_MATRIX = bytes([MATRIX | 3]) + _int32s() + _int32s()


def test_node_opcuas_empty_matrix_decodes_as_an_empty_array() -> None:
    variant = variant_from_binary(Buffer(NODE_OPCUA_EMPTY_MATRIX))
    assert variant.Value == [] and variant.VariantType is ua.VariantType.Byte
    assert variant.is_array
    assert JsonCodec().encode_variant(variant) == {"UaType": 3, "Value": []}


@pytest.mark.parametrize(
    ("dims", "nested"),
    [([0, 8], []), ([2, 0], [[], []]), ([0], [])],
)
def test_empty_matrices_with_dimensions_keep_their_shape(dims: list[int], nested: list) -> None:
    data = bytes([MATRIX | 11]) + _int32s() + _int32s(*dims)
    variant = variant_from_binary(Buffer(data))
    assert variant.Value == nested and variant.Dimensions == dims


def test_matrices_still_decode_row_major() -> None:
    data = bytes([MATRIX | 6]) + _int32s(1, 2, 3, 4, 5, 6) + _int32s(2, 3)
    assert variant_from_binary(Buffer(data)).Value == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("flat", "dims", "reason"),
    [
        ([1, 2, 3, 4, 5], [2, 2], "ArrayDimensions [2, 2] hold 4 elements, the array has 5"),
        ([1, 2], [], "2 elements without dimensions"),
        ([], [-1, 2], "negative ArrayDimensions [-1, 2]"),
        ([], [2**31 - 1, 0], "ArrayDimensions [2147483647, 0] too large"),
    ],
)
def test_inconsistent_dimensions_give_an_undecodable_value(
    flat: list[int], dims: list[int], reason: str
) -> None:
    """Part 6 §5.2.2.16: dimensions inconsistent with the ArrayLength are a decoding error."""
    assert getattr(reshape(flat, dims), "reason", None) == reason


def test_an_undecodable_value_is_bad_alone_and_the_rest_of_the_response_decodes() -> None:
    good = ua.DataValue(ua.Variant(2.5, ua.VariantType.Double))
    # A ReadResponse holding [good, a value with dimensions [2, 2] for 5 elements, good].
    bad = bytes([0x01, MATRIX | 6]) + _int32s(1, 2, 3, 4, 5) + _int32s(2, 2)
    body = struct_to_binary(ua.ReadResponse(Results=[good])).removesuffix(b"\xff\xff\xff\xff")
    results_at = body.rindex(struct.pack("<i", 1))
    one = struct_to_binary(good)
    data = body[:results_at] + struct.pack("<i", 3) + one + bad + one + b"\xff\xff\xff\xff"
    response = struct_from_binary(ua.ReadResponse, Buffer(data))
    first, middle, last = response.Results
    assert first == last == good
    assert undecodable_reason(middle) == "ArrayDimensions [2, 2] hold 4 elements, the array has 5"
    marked = checked(middle)
    assert marked.StatusCode.value == ua.StatusCodes.BadDecodingError
    assert marked.Value is not None and marked.Value.Value is None
    assert checked(first) is first


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        (FieldEncoding.VERBOSE, {"UaType": 11, "Value": [], "Dimensions": [0, 8]}),
        (FieldEncoding.COMPACT, {"UaType": 11, "Value": [], "Dimensions": [0, 8]}),
        (FieldEncoding.REVERSIBLE, {"Type": 11, "Body": [], "Dimensions": [0, 8]}),
        (FieldEncoding.NON_REVERSIBLE, []),
    ],
)
def test_the_json_encoder_writes_an_empty_matrix_per_part_6(
    encoding: FieldEncoding, expected: object
) -> None:
    """Part 6 §5.4.2.17: a matrix is the flat array in Value plus its Dimensions, also when
    it has no elements."""
    variant = ua.Variant([], ua.VariantType.Double, Dimensions=[0, 8], is_array=True)
    assert JsonCodec(encoding).encode_variant(variant) == expected


def test_an_empty_matrix_reads_back_from_json_with_its_dimensions() -> None:
    codec = JsonCodec(FieldEncoding.COMPACT)
    variant = ua.Variant([], ua.VariantType.Double, Dimensions=[0, 8], is_array=True)
    back = codec.decode_variant(codec.encode_variant(variant))
    assert back.Value == [] and back.Dimensions == [0, 8]
    assert back.VariantType is ua.VariantType.Double

"""The shortcut of ``JsonCodec.encode_data_value`` for plain scalars (numbers, Boolean,
DateTime: the usual field value) encodes exactly as the general Variant encoder does."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.errors import EncodeError
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from tests.strategies import NAMESPACES, SERVER_URIS, data_values, variants_of

VT = ua.VariantType
CODECS = {form: JsonCodec(form, NAMESPACES, SERVER_URIS) for form in FieldEncoding}
PLAIN = [*range(1, 12), 13]  # Boolean .. Double, DateTime
DV_MEMBERS = (
    "Status",
    "SourceTimestamp",
    "ServerTimestamp",
    "SourcePicoseconds",
    "ServerPicoseconds",
)


def _general(codec: JsonCodec, variant: ua.Variant, raw: bool) -> dict[str, Any]:
    """The value part of a DataValue as the general path writes it (Part 6 §5.4.2.18)."""
    enc = codec.encode_variant(variant)
    if codec.encoding in (FieldEncoding.COMPACT, FieldEncoding.VERBOSE):
        out = {} if enc is None else dict(enc)
        if raw:
            out.pop("UaType", None)
        return out
    return {} if enc is None else {"Value": enc}


@st.composite
def plain_data_values(draw: st.DrawFn) -> ua.DataValue:
    dv = draw(data_values())
    vt = VT(draw(st.sampled_from(PLAIN)))
    dv.Value = draw(variants_of(vt, shapes=["scalar", "array", "matrix", "null_array"]))
    return dv


@pytest.mark.parametrize("form", list(FieldEncoding), ids=lambda f: f.value)
@pytest.mark.parametrize("raw", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dv=plain_data_values())
def test_a_plain_value_encodes_as_the_general_path_does(
    form: FieldEncoding, raw: bool, dv: ua.DataValue
) -> None:
    codec = CODECS[form]
    encoded = codec.encode_data_value(dv, raw=raw)
    value_part = {k: v for k, v in encoded.items() if k not in DV_MEMBERS}
    assert value_part == _general(codec, dv.Value, raw)
    assert list(value_part) == list(_general(codec, dv.Value, raw))  # member order too


def test_a_wrong_python_type_is_still_refused() -> None:
    dv = ua.DataValue(ua.Variant(1.5, VT.Double))
    dv.Value.VariantType = VT.Int32  # a float under Int32: the shortcut must not let it through
    with pytest.raises(EncodeError, match="Int32 needs an integer"):
        CODECS[FieldEncoding.COMPACT].encode_data_value(dv)

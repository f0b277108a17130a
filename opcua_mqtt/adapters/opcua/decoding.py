"""One targeted fix to asyncua 2.1's binary Variant decoding: matrices whose shape it cannot
build no longer sink the whole response.

asyncua's ``variant_from_binary`` reads the flat array and the ArrayDimensions of a matrix
Variant (OPC 10000-6 §5.2.2.16), then nests it with ``ua_binary._reshape``. That function
raises IndexError for an empty ArrayDimensions array, which is how node-opcua writes an empty
matrix (ValueRank 2, ArrayDimensions [0,8], e.g. ns=0;i=24187: ArrayLength 0, then
ArrayDimensions of length 0). The exception escapes the Read or Publish response being
decoded, so every other value in it is lost: one Publish response dropped 14 unrelated fields.
For dimensions that do not match the ArrayLength it silently builds a wrong shape.

By the time ``_reshape`` runs, both arrays have been read, so the decoder is at the right byte
whatever we decide. :func:`install` replaces ``_reshape`` (looked up by name at each call, so
asyncua's cached deserializers pick it up) with :func:`reshape`:

* an empty array is a valid value: with no dimensions it stays ``[]``; with dimensions whose
  product is 0 it is nested to that shape (``[0, 8]`` -> ``[]``, ``[2, 0]`` -> ``[[], []]``);
* dimensions that are negative, too large, or inconsistent with the ArrayLength (Part 6 says
  the decoder shall then report BadDecodingError) give an :class:`Undecodable` value instead of
  an exception. :func:`checked` turns a DataValue holding one into a DataValue with status
  BadDecodingError, so that only that value is Bad and the rest of the response is delivered.

This module is the one place that touches asyncua's decoder; it is installed when the OPC UA
adapters are imported. Remove it when asyncua decodes these Variants itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.ua import ua_binary

from opcua_mqtt.core.uajson.arrays import empty_matrix_too_large, nest_matrix

_BAD_DECODING = ua.StatusCode(ua.StatusCodes.BadDecodingError)


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a Variant value that could not be decoded; ``reason`` says why."""

    reason: str


def reshape(flat: list[Any], dims: Sequence[int]) -> Any:
    """Nest the flat row-major array ``flat`` to ``dims``, or say why it cannot be done."""
    if not dims:
        return flat if not flat else Undecodable(f"{len(flat)} elements without dimensions")
    if any(d < 0 for d in dims):
        return Undecodable(f"negative ArrayDimensions {list(dims)}")
    declared = math.prod(dims)
    if declared > ua_binary.MAX_RESHAPE_ELEMENTS or (
        declared == 0 and empty_matrix_too_large(dims)
    ):
        return Undecodable(f"ArrayDimensions {list(dims)} too large")
    if declared != len(flat):
        return Undecodable(
            f"ArrayDimensions {list(dims)} hold {declared} elements, the array has {len(flat)}"
        )
    return nest_matrix(flat, dims)


def undecodable_reason(dv: ua.DataValue) -> str | None:
    """Why the value of ``dv`` could not be decoded, or None when it was."""
    variant = dv.Value
    value = getattr(variant, "Value", None)
    return value.reason if isinstance(value, Undecodable) else None


def checked(dv: ua.DataValue) -> ua.DataValue:
    """``dv``, or, when its value could not be decoded, the same DataValue without a value and
    with status BadDecodingError (its timestamps kept)."""
    if undecodable_reason(dv) is None:
        return dv
    return ua.DataValue(
        StatusCode=_BAD_DECODING,
        SourceTimestamp=dv.SourceTimestamp,
        ServerTimestamp=dv.ServerTimestamp,
    )


def install() -> None:
    """Make asyncua's Variant decoder use :func:`reshape`; idempotent."""
    ua_binary._reshape = reshape


install()

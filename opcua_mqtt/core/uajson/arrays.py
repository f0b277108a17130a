"""Arrays and matrices: flattening, nesting and the Dimensions member (Part 6 §5.4.5)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.uajson.context import MAX_NESTING
from opcua_mqtt.core.uajson.scalars import VT, decode_int, json_type


def variant_dimensions(variant: ua.Variant) -> list[int] | None:
    dims = variant.Dimensions
    if dims and len(dims) > 1:
        return [int(d) for d in dims]
    return None


def flatten(value: Any) -> list[Any]:
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


def decode_dimensions(dims: Any) -> list[int]:
    if not isinstance(dims, list) or not dims:
        raise DecodeError("Dimensions", f"expected a non-empty array, got {json_type(dims)}")
    if len(dims) > MAX_NESTING:  # each dimension is one level of nested lists
        raise DecodeError("Dimensions", f"more than {MAX_NESTING} dimensions")
    out = []
    for i, d in enumerate(dims):
        try:
            out.append(decode_int(d, VT.Int32))
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


def opt_dims(obj: dict[str, Any]) -> list[int] | None:
    d = obj.get("Dimensions")
    return None if d is None else decode_dimensions(d)

"""Per-call decoding state: the member path of an error and the nesting depth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from opcua_mqtt.core.errors import DecodeError

MAX_NESTING: Final = 100  # Part 6 §5.1.5: decoders shall support at least 100 levels


class DecodeContext:
    """Per-call state: the nesting depth, so hostile input cannot exhaust the stack."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0


def at_path(path: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` and prefix ``path`` to the member path of any DecodeError it raises."""
    try:
        return fn(*args)
    except DecodeError as e:
        if not path:
            raise
        raise e.within(path) from None


class Nesting:
    """Context manager counting nesting depth against :data:`MAX_NESTING`."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: DecodeContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        self.ctx.depth += 1
        if self.ctx.depth > MAX_NESTING:
            raise DecodeError("", f"nested deeper than {MAX_NESTING} levels")

    def __exit__(self, *exc: object) -> None:
        self.ctx.depth -= 1


MISSING: Final = object()  # a member absent from the JSON, not null

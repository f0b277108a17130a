"""The four JSON forms of OPC UA values, as Part 14 selects them."""

from __future__ import annotations

import enum


class FieldEncoding(enum.Enum):
    """The JSON form, as Part 14's FieldEncoding1/FieldEncoding2 bits select it."""

    COMPACT = "compact"
    VERBOSE = "verbose"
    REVERSIBLE = "reversible"
    NON_REVERSIBLE = "non-reversible"

    @property
    def is_105(self) -> bool:
        return self in (FieldEncoding.COMPACT, FieldEncoding.VERBOSE)

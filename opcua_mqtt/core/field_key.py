"""How a monitored value finds its field: the key the OPC UA source hands back with each value
and the bridge routes by (adapters and bridge both import it from here)."""

from __future__ import annotations

from typing import NamedTuple


class FieldKey(NamedTuple):
    """One configured field: its writer group's and its writer's positions in the plan, and its
    name. A tuple, so that the one lookup per value costs what a plain tuple's does."""

    group: int
    writer: int
    field: str

"""JSON Schema validators for the messages and files we read and write (the schemas/ contract).

The canonical schema files live in the repository's top-level ``schemas/`` directory, one
``<name>.schema.json`` each (draft 2020-12, ``$id`` ``https://opcua-mqtt.dev/schemas/<file>``: a
stable identifier, never fetched). They are looked up in this order:

1. ``opcua_mqtt/schemas/`` inside the installed package (``importlib.resources``), for a future
   wheel that ships them as package data;
2. ``schemas/`` next to the ``opcua_mqtt`` package, which is where they are in a source tree and
   in an editable install.

A non-editable wheel built today does not contain them (the files sit outside the package);
editable and source-tree installs are the supported ones for now.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

# jsonschema ships no type information (types-jsonschema is not a dependency).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.protocols import Validator  # type: ignore[import-untyped]

__all__ = ["SCHEMA_NAMES", "load_schema", "schema_path", "validator"]

#: The message schemas; others (configuration, write-back) may sit next to them.
SCHEMA_NAMES = ("ua-data", "ua-metadata", "ua-status", "ua-connection")

_SUFFIX = ".schema.json"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def _file_name(name: str) -> str:
    base = name.removesuffix(_SUFFIX)
    if not _NAME.fullmatch(base):
        raise ValueError(f"not a schema name: {name!r}")
    return base + _SUFFIX


def _candidates(file_name: str) -> list[Traversable]:
    return [
        resources.files("opcua_mqtt") / "schemas" / file_name,
        Path(__file__).resolve().parents[2] / "schemas" / file_name,
    ]


def schema_path(name: str) -> Traversable:
    """Where the schema ``name`` (``"ua-data"`` or ``"ua-data.schema.json"``) is found."""
    file_name = _file_name(name)
    for candidate in _candidates(file_name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"schema {file_name} not found in opcua_mqtt/schemas/ nor in the source tree's schemas/"
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema document (cached; do not modify it)."""
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise ValueError(f"{name}: a schema must be a JSON object")
    return schema


@cache
def validator(name: str) -> Validator:
    """A cached draft 2020-12 validator, with format checking, for the schema ``name``."""
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    v: Validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return v

"""JSON Schema validators for the messages and files we read and write (the schemas/ contract).

The canonical schema files live in the repository's top-level ``schemas/`` directory, one
``<name>.schema.json`` each (draft 2020-12, ``$id`` ``https://opcua-mqtt.dev/schemas/<file>``: a
stable identifier, never fetched). ``opcua_mqtt/schemas`` is a symbolic link to it, so the same
files are package data: a wheel carries copies and an editable install reads them in place.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # jsonschema ships no type information (types-jsonschema is not a dependency).
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


def schema_path(name: str) -> Traversable:
    """Where the schema ``name`` (``"ua-data"`` or ``"ua-data.schema.json"``) is found."""
    file_name = _file_name(name)
    path = resources.files("opcua_mqtt") / "schemas" / file_name
    if not path.is_file():
        raise FileNotFoundError(f"schema {file_name} not found in opcua_mqtt/schemas/")
    return path


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema document (cached; do not modify it)."""
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise ValueError(f"{name}: a schema must be a JSON object")
    return schema


@cache
def validator(name: str) -> Validator:
    """A cached draft 2020-12 validator, with format checking, for the schema ``name``.

    jsonschema (~6 MiB) is imported on the first call: the bridge needs it only for a doubtful
    write request, and checks its configuration in a child process."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    v: Validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return v

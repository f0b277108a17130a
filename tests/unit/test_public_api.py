"""The package's public face: one exception root, the names at its top, a CLI that loads lazily."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import click
import pytest

import opcua_mqtt
from opcua_mqtt import OpcUaMqttError
from opcua_mqtt.cli import COMMANDS, main


def _modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(opcua_mqtt.__path__, "opcua_mqtt.")]
    return [importlib.import_module(name) for name in names]


def test_every_public_exception_derives_from_the_root() -> None:
    public = {
        f"{module.__name__}.{name}": cls
        for module in _modules()
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == module.__name__
        and not name.startswith("_")
    }
    assert "opcua_mqtt.core.errors.DecodeError" in public  # the walk sees the package
    outside = sorted(name for name, cls in public.items() if not issubclass(cls, OpcUaMqttError))
    assert outside == []


def test_the_root_keeps_the_builtin_bases_callers_catch() -> None:
    from opcua_mqtt.core.errors import DecodeError
    from opcua_mqtt.devpki import SymlinkError

    assert issubclass(DecodeError, ValueError)
    assert issubclass(SymlinkError, OSError)


@pytest.mark.parametrize("name", opcua_mqtt.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(opcua_mqtt, name) is not None
    assert name in dir(opcua_mqtt)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Publisher'"):
        getattr(opcua_mqtt, "Publisher")  # noqa: B009


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(*sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(out.split())


def test_importing_the_package_loads_no_protocol_library() -> None:
    loaded = _loaded_after("import opcua_mqtt")
    assert "opcua_mqtt" in loaded
    assert not {"asyncua", "gmqtt", "opcua_mqtt.subscriber"} & loaded


def test_the_bridge_loads_no_jsonschema_until_a_check_needs_it() -> None:
    """``run`` checks its configuration in a child, and write-back validates with jsonschema
    only a request its fast check doubts: the bridge process carries no jsonschema (~6 MiB)."""
    loaded = _loaded_after("import opcua_mqtt.cli.run")
    assert {"opcua_mqtt.cli.run", "opcua_mqtt.bridge.write_back"} <= loaded
    assert "jsonschema" not in loaded
    checked = _loaded_after(
        "from opcua_mqtt.core.write_request.request import valid_request_id\n"
        "assert not valid_request_id('')"
    )
    assert "jsonschema" in checked


def test_every_command_module_is_in_the_lazy_table() -> None:
    defined = {
        cmd.name: f"{module.__name__}.{attribute}"
        for module in _modules()
        if module.__name__.startswith("opcua_mqtt.cli.")
        for attribute, cmd in vars(module).items()
        if isinstance(cmd, click.Command)
        and cmd.callback is not None
        and cmd.callback.__module__ == module.__name__
    }
    table = {name: f"{lazy.module}.{lazy.attribute}" for name, lazy in COMMANDS.items()}
    assert defined == table


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_lazy_short_help_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == COMMANDS[name].short_help

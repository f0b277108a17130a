"""The layering rules of docs/architecture.md, read from every module's imports.

Only ``opcua_mqtt/adapters/`` talks to the protocols: asyncua's client and server side
(``asyncua.Client``/``Server``, ``asyncua.client``, ``asyncua.common``, ``asyncua.server``,
``asyncua.crypto``, ``asyncua.observer``) and gmqtt. ``asyncua.ua``, the type model, is allowed
everywhere (the core encodes it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "opcua_mqtt"
ADAPTERS = PACKAGE / "adapters"

_PROTOCOL_MODULES = (
    "asyncua.client",
    "asyncua.common",
    "asyncua.server",
    "asyncua.crypto",
    "asyncua.observer",
    "gmqtt",
)
_PROTOCOL_NAMES = frozenset({"Client", "Server", "client", "common", "server", "crypto"})

#: Known exceptions, each one (module or folder, what it imports) and with its reason.
_ALLOWED = {
    # The demo's simulated plant is an OPC UA server of its own, not the bridge's client.
    ("demo/plant.py", "asyncua.Server"),
    ("demo/alarm.py", "asyncua.Server"),  # the plant's alarm, served by that server
    ("demo/plant.py", "asyncua.common.callback"),
    # The binary reader asyncua.ua.ua_binary itself decodes with (a bytes cursor): the core
    # decodes structures' binary bodies with it.
    ("core/", "asyncua.common.utils"),
}


def _allowed(name: str, module: str) -> bool:
    return any(name.startswith(where) and module == what for where, what in _ALLOWED)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(source: str, name: str) -> list[str]:
    """``name:line imports X`` for each import in ``source`` that reaches for a protocol."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=name)):
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "asyncua":
                imported = [
                    f"asyncua.{alias.name}" for alias in node.names if alias.name in _PROTOCOL_NAMES
                ]
            else:
                imported = [node.module]
        for module in imported:
            protocol = module in {f"asyncua.{n}" for n in _PROTOCOL_NAMES} or any(
                _within(module, p) for p in _PROTOCOL_MODULES
            )
            if protocol and not _allowed(name, module):
                found.append(f"opcua_mqtt/{name}:{node.lineno} imports {module}")
    return found


def test_only_the_adapters_import_asyncua_client_or_server_side_or_gmqtt() -> None:
    modules = sorted(p for p in PACKAGE.rglob("*.py") if ADAPTERS not in p.parents)
    assert any(p.parent.name == "bridge" for p in modules)  # the walk sees the package
    found = [
        v
        for path in modules
        for v in violations(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    ]
    assert not found, "outside opcua_mqtt/adapters/ (see docs/architecture.md):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from asyncua import Client, ua\n", ["opcua_mqtt/bridge/x.py:1 imports asyncua.Client"]),
        (
            "import asyncua.client.client\n",
            ["opcua_mqtt/bridge/x.py:1 imports asyncua.client.client"],
        ),
        (
            "def f():\n    from asyncua.common.node import Node\n",
            ["opcua_mqtt/bridge/x.py:2 imports asyncua.common.node"],
        ),
        ("from gmqtt import Client as G\n", ["opcua_mqtt/bridge/x.py:1 imports gmqtt"]),
        ("from asyncua import ua\nfrom asyncua.ua import status_codes\n", []),
        ("from opcua_mqtt.adapters.opcua.session import OpcUaSession\n", []),
    ],
)
def test_the_rule_names_the_module_and_line(source: str, expected: list[str]) -> None:
    assert violations(source, "bridge/x.py") == expected

"""A click group that imports a command's module only when that command runs.

Importing every command up front costs most of a second (asyncua alone is a fifth of it), paid
by even ``opcua-mqtt --version``. The group keeps a table of where each command lives and its
short help, so ``--help`` lists them all without importing any.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command is defined and what ``--help`` says about it before it is imported."""

    module: str
    attribute: str
    short_help: str  # the first sentence of the command's help (a test checks they agree)


class LazyGroup(click.Group):
    """A ``click.Group`` whose commands are imported from ``lazy`` on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        where = self.lazy[cmd_name]
        command = getattr(importlib.import_module(where.module), where.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{where.module}.{where.attribute} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands from the table, as ``click.Group`` would, without importing them."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.lazy and name not in self.commands:
                # A stand-in with the same help shortens it exactly as the real command would.
                stand_in = click.Command(name, help=self.lazy[name].short_help)
                text = stand_in.get_short_help_str(limit)
            else:
                command = super().get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

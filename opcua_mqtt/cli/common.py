"""What several commands share besides the connection options (:mod:`.opcua_options`,
:mod:`.mqtt_options`): the browse scope, the node-class and data-type filters, the output format
and file, and how a failure is told. Each command keeps its own help text; only the wording that
is the same everywhere lives here."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from opcua_mqtt.core.address_space import NodeClass
from opcua_mqtt.event_loop import LOOPS

F = TypeVar("F", bound=Callable[..., Any])


def with_options(
    func: F,
    options: Sequence[Callable[[Any], Any]],
    *,
    into: str | None = None,
    names: Sequence[str] = (),
) -> F:
    """``func`` with ``options`` added, shown in ``--help`` in the order given; with ``into``, the
    command receives the values of ``names`` as one dict under that keyword (a block of options
    passed on as one piece, e.g. a connection's)."""
    for option in reversed(options):
        func = option(func)
    if into is None:
        return func

    @functools.wraps(func)
    def gathered(*args: Any, **kwargs: Any) -> Any:
        kwargs[into] = {k: kwargs.pop(k) for k in names}
        return func(*args, **kwargs)

    return gathered  # type: ignore[return-value]


def browse_scope_options(start_help: str, depth_help: str) -> Callable[[F], F]:
    """``--start`` (default i=85, the Objects folder) and ``--depth``: where a browse goes."""

    def add(func: F) -> F:
        func = click.option("--depth", type=click.IntRange(min=1), help=depth_help)(func)
        return click.option(
            "--start", default="i=85", show_default=True, metavar="NODEID", help=start_help
        )(func)

    return add


def data_type_option(verb: str) -> Callable[[F], F]:
    """``--data-type`` (repeatable, as ``data_types``): ``verb`` only variables of a type."""
    return click.option(
        "--data-type",
        "data_types",
        multiple=True,
        metavar="NAME",
        help=f"{verb} only variables of this DataType or built-in type, e.g. Double (repeatable).",
    )


def node_class_option(flag: str, name: str, help_text: str) -> Callable[[F], F]:
    """A repeatable option naming node classes in any letter case; the command receives
    :class:`NodeClass` members (as ``name``)."""
    return click.option(
        flag,
        name,
        multiple=True,
        type=click.Choice([c.value for c in NodeClass], case_sensitive=False),
        callback=_node_classes,
        help=help_text,
    )


def _node_classes(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[NodeClass, ...]:
    return tuple(next(c for c in NodeClass if c.value.lower() == v.lower()) for v in values)


def format_option(choices: Sequence[str], help_text: str) -> Callable[[F], F]:
    """``--format`` (as ``fmt``); without it the command picks by where the output goes."""
    return click.option("--format", "fmt", type=click.Choice(choices), help=help_text)


def output_option(what: str, **path: Any) -> Callable[[F], F]:
    """``-o``/``--output``: a file for ``what`` instead of standard output (``path``: more
    :class:`click.Path` settings)."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, **path),
        help=f"Write the {what} to this file instead of standard output.",
    )


def fail(message: str, code: int, hint: str | None = None) -> NoReturn:
    """Tell the failure (and what to do about it) on standard error and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    raise SystemExit(code)


def read_text(path: Path, code: int) -> str:
    """The UTF-8 text of ``path``; one line (``error: PATH: cannot read: why``) and exit ``code``
    when it is missing, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        fail(f"{path}: cannot read: {reason}", code)


def loop_option(func: F) -> F:
    """``--loop`` (also $OPCUA_MQTT_LOOP): the event loop of a long-running command
    (:mod:`opcua_mqtt.event_loop`)."""
    return click.option(
        "--loop",
        type=click.Choice(LOOPS),
        default=LOOPS[0],
        show_default=True,
        envvar="OPCUA_MQTT_LOOP",
        show_envvar=True,
        help="Event loop: uvloop when it is installed (the fast extra), else asyncio's; "
        "'asyncio' keeps the standard one, 'uvloop' exits with code 2 without it.",
    )(func)

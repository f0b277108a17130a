"""``opcua-mqtt browse``: what a server offers, as a tree for people or a file for ``map``."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
import orjson
import yaml
from asyncua import ua

from opcua_mqtt.adapters.opcua import (
    BrowseError,
    BrowseStats,
    OpcUaConnectionError,
    browse_endpoint,
)
from opcua_mqtt.cli import common
from opcua_mqtt.cli.opcua_options import connection_options_from, opcua_connection_options
from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.globs import glob_regex

EXIT_USAGE = 2
EXIT_CONNECTION = 3
FORMATS = ("tree", "json", "yaml", "csv")
CSV_COLUMNS = (
    "browse_path",
    "node_id",
    "display_name",
    "data_type_name",
    "builtin_type",
    "data_type",
    "value_rank",
    "array_dimensions",
    "readable",
    "writable",
    "description",
    "value",
    "error",
)
_SUFFIX_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".txt": "tree"}


@click.command()
@click.argument("endpoint")
@opcua_connection_options
@common.browse_scope_options(
    "Node to start from (i=85 is the Objects folder), e.g. 'nsu=urn:plant;s=Line1'.",
    "Levels below --start to go (default: all).",
)
@common.node_class_option(
    "--node-class", "node_classes", "Report only nodes of this class (repeatable)."
)
@click.option(
    "--path",
    "path_glob",
    metavar="GLOB",
    help="Report only nodes whose browse path matches, e.g. 'Line1/*/Temp*' "
    "(* and ? stay within one level, ** crosses levels).",
)
@common.data_type_option("Report")
@click.option("--values", is_flag=True, help="Read the current value of each variable too.")
@common.format_option(
    FORMATS, "Output format. Default: tree on a terminal, else from the -o suffix, else json."
)
@common.output_option("result", writable=True)
def browse(
    endpoint: str,
    opcua_params: dict[str, Any],
    start: str,
    depth: int | None,
    node_classes: tuple[NodeClass, ...],
    path_glob: str | None,
    data_types: tuple[str, ...],
    values: bool,
    fmt: str | None,
    output: str | None,
) -> None:
    """Walk the address space of the OPC UA server at ENDPOINT and list what is there.

    Follows hierarchical references from --start, each node once; for variables it reads the
    DataType (with its built-in type), ValueRank, ArrayDimensions and whether this user may read
    and write it. JSON and YAML output is the browse file `opcua-mqtt map` reads
    (format opcua-mqtt-browse/1); CSV has one row per variable. A progress line and a summary
    go to standard error.

    \b
    Examples:
      opcua-mqtt browse opc.tcp://plc1:4840 --trust-server-cert
      opcua-mqtt browse opc.tcp://plc1:4840 --username bridge --password-prompt \\
          --path 'Line1/**' --data-type Double -o line1.json
      opcua-mqtt browse opc.tcp://127.0.0.1:4840 --security-policy None --depth 2
      opcua-mqtt browse opc.tcp://plc1:4840 --start 'nsu=urn:plant;s=Line1' --values --format csv

    \b
    Exit codes: 0 done, 1 the output file cannot be written, 2 usage error (bad option,
    unknown start node), 3 connection, security or authentication failure (the message says
    which).
    """
    _quiet_asyncua()
    options = connection_options_from(endpoint, opcua_params)
    if path_glob:
        try:
            glob_regex(path_glob)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--path") from None
    mode = fmt or _default_format(output)
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    stats = BrowseStats()
    try:
        result = asyncio.run(
            browse_endpoint(
                options,
                start=start,
                max_depth=depth,
                node_classes=list(node_classes) or None,
                path_glob=path_glob,
                data_types=list(data_types) or None,
                read_values=values,
                progress=progress,
                stats=stats,
            )
        )
    except OpcUaConnectionError as e:
        _fail(e.message, e.hint, EXIT_CONNECTION, progress)
    except BrowseError as e:
        hint = "give --start as i=…, ns=…;s=… or nsu=<uri>;s=…" if "start node" in str(e) else None
        _fail(str(e), hint, EXIT_USAGE, progress)
    except KeyboardInterrupt:
        _fail("interrupted", None, 130, progress)
    if progress is not None:
        progress.clear()
    text = render(result, mode)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as e:
            _fail(f"cannot write {output}: {e.strerror or e}", None, 1, None)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    click.echo(summary(result, stats), err=True)


def _default_format(output: str | None) -> str:
    if output:
        return _SUFFIX_FORMATS.get(Path(output).suffix.lower(), "json")
    return "tree" if sys.stdout.isatty() else "json"


def _fail(message: str, hint: str | None, code: int, progress: _Progress | None) -> NoReturn:
    if progress is not None:
        progress.clear()
    common.fail(message, code, hint)


def _quiet_asyncua() -> None:
    """asyncua warns about the failures we explain in one line (ServiceFaults, closed channels,
    revised timeouts): below --log-level debug, only its critical messages are shown."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)


class _Progress:
    """``browsing: 1,234 of 5,678 nodes`` redrawn in place, at most ten times a second."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        self.out.write(f"\r\x1b[Kbrowsing: {done:,} of {total:,} nodes")
        self.out.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.shown = False


def summary(result: BrowseResult, stats: BrowseStats) -> str:
    refused = sum(1 for n in result.nodes if n.error)
    variables = sum(1 for n in result.nodes if n.node_class is NodeClass.VARIABLE and not n.error)
    return (
        f"{len(result.nodes):,} nodes, {variables:,} variables, {refused:,} refused, "
        f"{stats.seconds:.2f} s ({stats.browse_requests + stats.browse_next_requests} Browse, "
        f"{stats.read_requests} Read requests)"
    )


# ------------------------------------------------------------------------------------ output


def render(result: BrowseResult, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(result.to_json(), sort_keys=False, allow_unicode=True, width=100)
    if fmt == "csv":
        return render_csv(result)
    return render_tree(result)


def render_csv(result: BrowseResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for node in result.nodes:
        if node.node_class is not NodeClass.VARIABLE:
            continue
        writer.writerow(
            [
                node.path_string(),
                node.node_id,
                node.display_name,
                node.data_type_name or "",
                _builtin_name(node.builtin_type),
                node.data_type or "",
                "" if node.value_rank is None else node.value_rank,
                " ".join(str(d) for d in node.array_dimensions or ()),
                _bool(node.readable),
                _bool(node.writable),
                node.description or "",
                _value_text(node.value, limit=None),
                node.error or "",
            ]
        )
    return buf.getvalue()


def render_tree(result: BrowseResult) -> str:
    """Indented browse paths; ancestors left out by a filter appear as bare names."""
    lines = [f"{result.endpoint}  (from {result.start_node})"]
    shown: tuple[str, ...] = ()
    for node in result.nodes:
        path = node.browse_path
        for level in range(1, len(path)):
            if shown[:level] != path[:level]:
                lines.append("  " * level + path[level - 1] + "/")
                shown = path[:level]
        lines.append("  " * len(path) + _tree_label(node))
        shown = path
    return "\n".join(lines) + "\n"


def _tree_label(node: BrowsedNode) -> str:
    parts = [node.browse_name or "?"]
    if node.node_class is NodeClass.VARIABLE and not node.error:
        parts.append(f"{node.data_type_name or '?'}{_rank_text(node)}")
        parts.append(_access_text(node))
        if node.value is not None:
            parts.append("= " + _value_text(node.value, limit=40))
    else:
        parts.append(f"[{node.node_class.value}]")
    if node.event_notifier:
        parts.append("events")  # a notifier: `map --events` proposes an event writer for it
    if node.error:
        parts.append(f"! {node.error}")
    return "  ".join(parts)


def _rank_text(node: BrowsedNode) -> str:
    rank = node.value_rank
    if rank is None or rank == -1:
        return ""
    if node.array_dimensions:
        return "[" + ",".join(str(d) if d else "" for d in node.array_dimensions) + "]"
    if rank > 0:
        return "[" + "," * (rank - 1) + "]"
    return {0: "[+]", -2: "(any)", -3: "(scalar or [])"}.get(rank, f"(rank {rank})")


def _access_text(node: BrowsedNode) -> str:
    return ("r" if node.readable else "-") + ("w" if node.writable else "-")


def _bool(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _builtin_name(builtin: int | None) -> str:
    if builtin is None:
        return ""
    try:
        return str(ua.VariantType(builtin).name)
    except ValueError:
        return str(builtin)


def _value_text(value: Any, *, limit: int | None) -> str:
    if value is None:
        return ""
    inner = value.get("Value") if isinstance(value, dict) and "UaType" in value else value
    text = orjson.dumps(inner).decode()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text

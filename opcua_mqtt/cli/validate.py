"""``opcua-mqtt validate``: check a configuration file before a bridge runs with it."""

from __future__ import annotations

from pathlib import Path

import click

from opcua_mqtt.cli.common import read_text
from opcua_mqtt.core.config.check import CheckResult, check_config
from opcua_mqtt.core.config.report import folded

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only, no warnings or summary.")
def validate(config: Path, strict: bool, quiet: bool) -> None:
    """Check the bridge configuration file CONFIG (YAML or JSON).

    Checks it against schemas/config.schema.json (types, ranges, unknown options) and the rules
    a schema cannot express: unique writer group, writer and field names, unique
    dataset_writer_ids and dataset_field_ids, NodeId syntax, write_back.allow entries that
    match nothing, option combinations. Files it names (certificates, keys) are not opened:
    they may live only on the machine that runs the bridge.

    Each finding is printed as FILE:LINE: PATH: message (LINE only when known), warnings
    marked as such; then a summary line.

    \b
    Examples:
      opcua-mqtt validate bridge.yaml
      opcua-mqtt validate --strict examples/config.example.yaml

    \b
    Exit codes: 0 valid (warnings allowed, unless --strict), 1 invalid,
    2 the file cannot be read.
    """
    text = read_text(config, EXIT_UNREADABLE)
    result = check_config(text, str(config))
    shown = [i for i in result.issues if not (quiet and i.severity == "warning")]
    for line in folded(shown):
        click.echo(line)
    failed = not result.ok or (strict and bool(result.warnings))
    if not quiet:
        click.echo(summary(str(config), result, failed))
    raise SystemExit(EXIT_INVALID if failed else 0)


def summary(source: str, result: CheckResult, failed: bool) -> str:
    errors, warnings = len(result.errors), len(result.warnings)
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    if failed:
        return f"{source}: invalid ({counts})"
    config = result.config
    assert config is not None
    writers = sum(1 for _ in config.writers())
    fields = sum(1 for _ in config.fields())
    return (
        f"{source}: valid ({counts}): {_plural(len(config.writer_groups), 'writer group')}, "
        f"{_plural(writers, 'writer')}, {_plural(fields, 'field')}"
    )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"

"""``opcua-mqtt shard``: one configuration split into N, for N bridges on one broker."""

from __future__ import annotations

import os
from pathlib import Path

import click

from opcua_mqtt.core.config.check import check_config
from opcua_mqtt.core.config.shard import ShardError, move_paths, split
from opcua_mqtt.core.config.text import dump_yaml

EXIT_INVALID = 1
EXIT_UNSPLITTABLE = 2


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("count", type=click.IntRange(min=1))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the shard files (default: beside CONFIG).",
)
def shard(config: Path, count: int, out: Path | None) -> None:
    """Split the bridge configuration CONFIG into COUNT complete configurations.

    For more items than one bridge carries: run one bridge per shard against one (clustered)
    broker. Each shard takes whole writer groups, balanced by item count, and is a publisher of
    its own (PublisherId and MQTT client id <id>-shard<k>of<COUNT>, a disk spool in a
    sub-directory of its own); the same COUNT gives the same ids again. Write-back: each shard
    answers for its own fields (docs/scale-out.md).

    Writes <stem>-shard<k>of<COUNT>.yaml for k = 1..COUNT and prints a line per shard.
    Relative paths in CONFIG (certificates, keys, spool) are rewritten relative to the shard
    files, so they name the same files wherever --out puts them.

    \b
    Examples:
      opcua-mqtt shard plant.yaml 4
      opcua-mqtt shard plant.yaml 2 --out deploy/

    \b
    Exit codes: 0 written, 1 CONFIG is invalid (see `opcua-mqtt validate`),
    2 it cannot be split into COUNT shards (fewer writer groups than shards).
    """
    result = check_config(config.read_text(encoding="utf-8"), str(config))
    if result.config is None:
        for issue in result.errors:
            click.echo(str(issue), err=True)
        raise SystemExit(EXIT_INVALID)
    try:
        shards = split(result.config, count)
    except ShardError as e:
        click.echo(f"error: {config}: {e}", err=True)
        raise SystemExit(EXIT_UNSPLITTABLE) from None
    directory = out or config.parent
    directory.mkdir(parents=True, exist_ok=True)
    base, target = config.parent.resolve(), directory.resolve()

    def move(path: str) -> str:
        """A path relative to CONFIG, made relative to the shard file (absolute ones stay)."""
        if Path(path).is_absolute() or base == target:
            return path
        return os.path.relpath(base / path, target)

    for s in shards:
        path = directory / f"{config.stem}-shard{s.number}of{count}.yaml"
        header = f"Shard {s.number} of {count} of {config.name} (opcua-mqtt shard)."
        path.write_text(dump_yaml(move_paths(s.config, move), header), encoding="utf-8")
        groups = ", ".join(g.name for g in s.config.writer_groups)
        click.echo(f"{path}: {s.config.publisher_id}, {s.items} items ({groups})")

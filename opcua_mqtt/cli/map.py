"""``opcua-mqtt map``: a browse result (or a live server) in, a checked configuration file out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import yaml

from opcua_mqtt.cli import common
from opcua_mqtt.cli.map_fill import (
    EXIT_INVALID,
    EXIT_USAGE,
    PKI_NOTES,
    PKI_OPTIONS,
    carry_connection,
    existing_config,
    fill_mqtt,
    fill_pki,
    given_on_command_line,
    given_places,
    pki_folder,
    pki_publisher_id,
    value_at,
)
from opcua_mqtt.cli.opcua_options import opcua_connection_options
from opcua_mqtt.core.address_space import BrowseResult, NodeClass
from opcua_mqtt.core.config.check import check_config_data
from opcua_mqtt.core.config.model import Config, PublishingDefaults
from opcua_mqtt.core.config.report import folded
from opcua_mqtt.core.config.text import dump_json, dump_yaml
from opcua_mqtt.core.map_sources import merge_plans
from opcua_mqtt.core.mapping import GroupBy, MappingPlan, MappingRules, MapSettings, plan_mapping
from opcua_mqtt.core.mapping_events import event_writers
from opcua_mqtt.core.messages.profiles import PROFILES
from opcua_mqtt.core.remap import keep_hand_edits
from opcua_mqtt.core.uns import VARIABLE_NAME, TemplateError, template_variables

EXIT_CONNECTION = 3
_DAY_MS = 86_400_000
_DEFAULTS = PublishingDefaults()
_MS = click.FloatRange(min=0, min_open=True, max=_DAY_MS)
_ENCODINGS = ("compact", "verbose", "reversible", "non-reversible")


def _defaults_option(
    flag: str, member: str, kind: click.ParamType[Any, Any] = _MS, note: str = ""
) -> Callable[[common.F], common.F]:
    """An option for ``defaults.<member>`` of the configuration, its default shown; members in
    milliseconds show the metavar MS."""
    return click.option(
        flag,
        type=kind,
        default=getattr(_DEFAULTS, member),
        show_default=True,
        metavar="MS" if member.endswith("_ms") else None,
        help=f"defaults.{member}{note}.",
    )


@click.command("map")
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True)
@opcua_connection_options
@common.browse_scope_options(
    "With an endpoint: node to browse from (i=85 is the Objects folder).",
    "With an endpoint: levels below --start to browse.",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Map only variables whose browse path matches (repeatable). * and ? stay within one "
    "level, ** crosses levels; a pattern naming an object takes everything below it.",
)
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Leave out matching browse paths (repeatable)."
)
@click.option(
    "--node-id",
    "node_ids",
    multiple=True,
    metavar="PATTERN",
    help="Map only variables whose NodeId matches this glob, in nsu= or ns= form, or the "
    "regular expression re:REGEX (repeatable).",
)
@common.node_class_option(
    "--parent-class",
    "parent_classes",
    "Map only variables whose parent node is of this class (repeatable). Default: Object and "
    "Variable, which leaves out the arguments of Methods.",
)
@common.data_type_option("Map")
@click.option("--writable-only", is_flag=True, help="Map only variables this user may write.")
@click.option(
    "--standard-nodes",
    is_flag=True,
    help="Also map namespace 0 variables and the Server object's subtree in every namespace "
    "(status, diagnostics, sessions: left out by default, also when a server puts them in its "
    "own namespace; an --include naming them takes them too).",
)
@click.option(
    "--group-by",
    type=click.Choice([g.value for g in GroupBy]),
    default=GroupBy.TOP.value,
    show_default=True,
    help="Writer groups: one per top-level object under the start node, one per writer "
    "(parent), or one for everything (none). Writers are always one per object.",
)
@click.option(
    "--publisher-id",
    help="PublisherId. Default: the one the --certs PKI is issued for, else "
    "opcua-mqtt-<endpoint host>.",
)
@_defaults_option("--publishing-interval", "publishing_interval_ms")
@_defaults_option("--sampling-interval", "sampling_interval_ms")
@_defaults_option(
    "--queue-size",
    "queue_size",
    click.IntRange(1, 65535),
    " (not written unless given; not set, the bridge asks for 1 where a field is sampled no "
    "faster than published, else 10)",
)
@_defaults_option(
    "--key-frame-count",
    "key_frame_count",
    click.IntRange(min=1, max=2**32 - 1),
    " (1: key frames only)",
)
@_defaults_option("--keep-alive", "keep_alive_ms")
@_defaults_option("--encoding", "encoding", click.Choice(_ENCODINGS))
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="standard",
    show_default=True,
    help="Content masks for a known subscriber (docs/interop.md): open62541 writes "
    "defaults.network_message_content and dataset_message_content that open62541 1.5 "
    "decodes, and key_frame_count 1 unless --key-frame-count is given; standard writes "
    "neither mask (the standard layout).",
)
@common.output_option("configuration", path_type=Path)
@common.format_option(
    ["yaml", "json"], "Output format. Default: from the --output suffix (.json), else yaml."
)
@click.option(
    "--broker",
    metavar="HOST[:PORT]",
    help="The MQTT broker the bridge publishes to (mqtt.host and mqtt.port; port 8883 when "
    "left out). Default: localhost:8883.",
)
@click.option(
    "--mqtt-protocol",
    type=click.Choice(["5", "3.1.1"]),
    help="mqtt.protocol. Default: 5.",
)
@click.option(
    "--certs",
    "certs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder made by `opcua-mqtt certs`: mqtt.tls (CA, the bridge's client certificate "
    "and key), metadata_signing and the OPC UA certificate, key and trust folder point at "
    "it. Default: ./certs when it holds those files.",
)
@click.option(
    "--topic-template",
    metavar="TEMPLATE",
    help="Publish on custom topics (a Unified Namespace, docs/uns.md) instead of the standard "
    "tree: the writers' queue_name, e.g. '{enterprise}/{site}/{path}'. {path} is the browse "
    "path of the writer's object (filled in here); {publisher_id}, {group}, {writer} and the "
    "--uns variables are filled in when the bridge loads the file.",
)
@click.option(
    "--metadata-topic-template",
    metavar="TEMPLATE",
    help="The writers' metadata_queue_name, with the same variables. Default: the "
    "--topic-template plus '/metadata'.",
)
@click.option(
    "--uns",
    "uns_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="A variable of the uns section for the templates (repeatable): --uns enterprise=acme.",
)
@click.option(
    "--events",
    is_flag=True,
    help="Also propose an event writer (docs/events.md) for each event notifier found (objects "
    "browse marks 'events'), selecting the event and alarm fields.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing --output file, keeping its hand edits: the connection, MQTT "
    "and TLS, metadata signing, defaults, write-back (enabled, allow-list, limits), metrics "
    "and the options set on groups, writers and fields; what the command line gives wins. "
    "Delete the file to start afresh.",
)
def map_command(
    sources: tuple[str, ...],
    opcua_params: dict[str, Any],
    start: str,
    depth: int | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    node_ids: tuple[str, ...],
    parent_classes: tuple[NodeClass, ...],
    data_types: tuple[str, ...],
    writable_only: bool,
    standard_nodes: bool,
    group_by: str,
    publisher_id: str | None,
    publishing_interval: float,
    sampling_interval: float,
    queue_size: int | None,
    key_frame_count: int,
    keep_alive: float,
    encoding: str,
    profile: str,
    output: Path | None,
    fmt: str | None,
    broker: str | None,
    mqtt_protocol: str | None,
    certs_dir: Path | None,
    topic_template: str | None,
    metadata_topic_template: str | None,
    uns_values: tuple[str, ...],
    events: bool,
    force: bool,
) -> None:
    """Turn an OPC UA address space into a publishing configuration.

    SOURCE is a file saved by `opcua-mqtt browse -o FILE` (JSON or YAML) or an opc.tcp://
    endpoint, browsed on the spot with the connection options. Several SOURCEs (one per
    server) give one configuration with one entry in `sources` per server (named after its
    host) and its writer groups prefixed with that name; each server's ids stay those of
    mapping it alone (but for DataSetWriterIds colliding across servers). Each object with variables
    becomes a DataSetWriter (a variable's properties travel with it), grouped into writer
    groups by --group-by. Field and writer names come from BrowseNames; DataSetFieldIds and
    DataSetWriterIds are derived from the server's ApplicationUri and the NodeIds, so mapping
    the same server again gives the same ids and a new variable changes no existing one.
    NodeIds are written in nsu= form. Writable variables are listed under
    write_back.writable_nodes, but write-back stays disabled with an empty allow-list.

    Whatever else map knows it fills in: --broker, and with a folder made by `opcua-mqtt
    certs` (--certs, or ./certs) the TLS files, metadata signing and the OPC UA certificate.
    Security policy and mode are the ones the browse used. Paths are written relative to the
    output file's folder, as the bridge reads them.

    Mapping again into the same file (--force) takes the nodes from the server afresh (new
    ones are added, gone ones dropped, ids stay put) and keeps the file's hand edits (see
    --force); YAML comments are not kept.

    The result is checked like `opcua-mqtt validate` does before it is written; an invalid
    one is never written. Output is sorted: mapping twice gives identical files.

    \b
    Examples:
      opcua-mqtt browse opc.tcp://plc1:4840 -o plc1.json
      opcua-mqtt map plc1.json -o bridge.yaml
      opcua-mqtt map plc1.json --include 'Plant/Line1/**' --exclude '**/Diagnostics' \\
          --publishing-interval 500 --group-by parent -o line1.yaml
      opcua-mqtt map plc1.json --data-type Double --data-type Float --node-id 're:;s=Line1\\.'
      opcua-mqtt map opc.tcp://127.0.0.1:4840 --security-policy None --writable-only
      opcua-mqtt certs && opcua-mqtt map plc1.json --broker broker.local:8883 -o bridge.yaml
      opcua-mqtt map plc1.json -o bridge.yaml --force   # re-map, hand edits kept
      opcua-mqtt map plc1.json --uns enterprise=acme --uns site=site1 \\
          --topic-template '{enterprise}/{site}/{path}' -o bridge.yaml
      opcua-mqtt map plc1.json --profile open62541 -o bridge.yaml   # for open62541 1.5
      opcua-mqtt map plc1.json --events -o bridge.yaml   # and the server's events and alarms
      opcua-mqtt map plc1.json plc2.json plc3.json -o plant.yaml      # three servers

    \b
    Exit codes: 0 written, 1 nothing matched or the result (or, with --force, the file
    replaced) would not validate, 2 usage error, unreadable SOURCE or --certs folder without
    the files, 3 connection, security or authentication failure.
    """
    try:
        rules = MappingRules(
            include=include,
            exclude=exclude,
            node_ids=node_ids,
            parent_classes=parent_classes or MappingRules.parent_classes,
            data_types=data_types,
            writable_only=writable_only,
            standard_nodes=standard_nodes,
            group_by=GroupBy(group_by),
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    given = given_on_command_line()
    masks = PROFILES[profile]
    defaults = replace(
        _DEFAULTS,
        publishing_interval_ms=publishing_interval,
        sampling_interval_ms=sampling_interval,
        queue_size=queue_size,
        key_frame_count=key_frame_count
        if masks.key_frame_count is None or "key_frame_count" in given
        else masks.key_frame_count,
        keep_alive_ms=keep_alive,
        encoding=encoding,
        network_message_content=masks.network_message_content,
        dataset_message_content=masks.dataset_message_content,
    )
    if output is not None and output.exists() and not force:
        common.fail(f"{output} already exists; use --force to replace it", EXIT_USAGE)
    base = output.parent if output is not None else Path(".")
    pki = pki_folder(certs_dir)
    located = given & set(PKI_OPTIONS)  # paths from the working directory, not defaults
    if pki is not None:  # the browse uses the PKI's OPC UA certificate too
        for option, name in PKI_OPTIONS.items():
            if option not in given:
                opcua_params[option] = str(pki / name)
        located |= set(PKI_OPTIONS)
    results = [
        _browse(source, opcua_params, start, depth)
        if _is_endpoint(source)
        else read_browse_file(Path(source))
        for source in sources
    ]
    source = ", ".join(sources)
    if publisher_id is None and pki is not None:
        publisher_id = pki_publisher_id(pki)  # the one its certificates are issued for
    settings = MapSettings(
        publisher_id=publisher_id,
        defaults=defaults,
        topic_template=topic_template,
        metadata_topic_template=metadata_topic_template,
        uns=_uns_variables(uns_values, topic_template, metadata_topic_template),
    )
    plans = []
    for name, result in zip(sources, results, strict=True):
        try:
            plans.append((result, plan_mapping(result, rules, settings)))
        except (TypeError, AttributeError) as e:  # a hand-edited browse file with wrong types
            common.fail(f"{name}: malformed browse result: {e}", EXIT_USAGE)
        carry_connection(plans[-1][1], opcua_params, {o: base for o in located})
    plan = merge_plans(plans)
    fill_mqtt(plan.document, broker, mqtt_protocol)
    from_pki = fill_pki(plan.document, pki, base) if pki is not None else {}
    if events:
        groups = plan.document["writer_groups"]
        plan.document["event_writers"] = event_writers(
            result,
            {w["dataset_writer_id"] for g in groups for w in g["writers"]},
            {g["name"] for g in groups},
        )
    for node_id, reason in plan.skipped[:10]:
        click.echo(f"warning: skipped {node_id}: {reason}", err=True)
    if len(plan.skipped) > 10:
        click.echo(f"warning: skipped {len(plan.skipped) - 10} more variables", err=True)
    if plan.mapped == 0 and not plan.document.get("event_writers"):
        common.fail(
            f"no variable matched ({plan.variables:,} in {source}); nothing written",
            EXIT_INVALID,
            "loosen --include/--exclude/--node-id/--data-type, or add --standard-nodes",
        )
    if output is not None and output.exists():
        plan.document = keep_hand_edits(plan.document, existing_config(output), given_places(given))
    notes = {
        line: f"# the development PKI of `opcua-mqtt certs` in {pki}/: use your plant's in "
        "production"
        for place, line in PKI_NOTES.items()
        if place in from_pki and value_at(plan.document, place) == from_pki[place]
    }
    config = _checked(plan)
    mode = fmt or ("json" if output is not None and output.suffix.lower() == ".json" else "yaml")
    text = render(config, mode, results, output, notes)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _write_atomically(output, text)
    click.echo(_summary(plan, config, output), err=True)


def _is_endpoint(source: str) -> bool:
    """An endpoint, mistyped ones included (``opc.tcp//host``: a usage error, not a file)."""
    return source.lower().startswith("opc.tcp")


def read_browse_file(path: Path) -> BrowseResult:
    """A browse result saved by ``browse`` (JSON, or YAML by extension); exits 2 when unusable."""
    text = common.read_text(path, EXIT_USAGE)
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            data = yaml.load(text, Loader=loader)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        kind = "JSON" if isinstance(e, ValueError) else "YAML"
        common.fail(f"{path}: not valid {kind}: {e}", EXIT_USAGE)
    try:
        if not isinstance(data, dict):
            raise ValueError("expected a mapping at the top level")
        return BrowseResult.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        common.fail(
            f"{path}: not an opcua-mqtt browse result (format opcua-mqtt-browse/1): {detail}",
            EXIT_USAGE,
            "make one with: opcua-mqtt browse ENDPOINT -o FILE.json",
        )


def _browse(endpoint: str, params: dict[str, Any], start: str, depth: int | None) -> BrowseResult:
    """Browse a live server (the adapter is imported only here: file sources need no asyncua)."""
    from opcua_mqtt.adapters.opcua import BrowseError, OpcUaConnectionError, browse_endpoint
    from opcua_mqtt.cli.opcua_options import connection_options_from

    options = connection_options_from(endpoint, params)
    try:
        return asyncio.run(browse_endpoint(options, start=start, max_depth=depth))
    except OpcUaConnectionError as e:
        common.fail(e.message, EXIT_CONNECTION, e.hint)
    except BrowseError as e:
        common.fail(str(e), EXIT_USAGE, "give --start as i=…, ns=…;s=… or nsu=<uri>;s=…")
    except KeyboardInterrupt:
        common.fail("interrupted", 130)


def _checked(plan: MappingPlan) -> Config:
    """Validate before writing; an invalid configuration is reported and never written."""
    result = check_config_data(plan.document, "<map>")
    for line in folded(result.issues):
        click.echo(line, err=True)
    if result.config is None:
        common.fail("refusing to write an invalid configuration (see above)", EXIT_INVALID)
    return result.config


def render(
    config: Config,
    mode: str,
    results: Sequence[BrowseResult],
    output: Path | None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """The file's text; YAML gets a header and ``notes`` (a line -> the comment put before it)."""
    if mode == "json":
        return dump_json(config)
    target = output.name if output is not None else "FILE"
    header = (
        "opcua-mqtt bridge configuration, made by `opcua-mqtt map` from "
        + ", ".join(r.endpoint for r in results)
        + f"\n(start node {', '.join(sorted({r.start_node for r in results}))}). "
        "Edit freely, then check with:\n"
        f"  opcua-mqtt validate {target}\n"
        "Mapping again with --force keeps your edits (see `opcua-mqtt map --help`).\n"
        "Reference: schemas/config.schema.json. Write-back stays off until you enable it\n"
        "and list what may be written in write_back.allow."
    )
    text = dump_yaml(config, header=header)
    for line, comment in (notes or {}).items():
        text = _comment_before(text, line, line[: len(line) - len(line.lstrip())] + comment)
    return text


def _comment_before(text: str, line: str, comment: str) -> str:
    """``comment`` on its own line before the first line that is exactly ``line``."""
    lines = text.split("\n")
    if line in lines:
        lines.insert(lines.index(line), comment)
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file and rename it: a reader never sees half a file."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        common.fail(f"{path}: cannot write: {e.strerror or e}", EXIT_USAGE)


def _summary(plan: MappingPlan, config: Config, output: Path | None) -> str:
    writers = sum(1 for _ in config.writers())
    writable = len(config.write_back.writable_nodes)
    where = f" -> {output}" if output is not None else ""
    if config.event_writers:
        where = f", {len(config.event_writers):,} event writers{where}"
    return (
        f"mapped {plan.mapped:,} of {plan.variables:,} variables into "
        f"{len(config.writer_groups):,} writer group{'s' if len(config.writer_groups) != 1 else ''}"
        f", {writers:,} writer{'s' if writers != 1 else ''} ({writable:,} writable; write-back "
        f"{'enabled' if config.write_back.enabled else 'disabled'}){where}"
    )


def _uns_variables(
    values: tuple[str, ...], template: str | None, metadata_template: str | None
) -> dict[str, str]:
    """The --uns NAME=VALUE pairs, with the templates' syntax checked: a usage error names the
    option, the rest (unknown variables, topic rules) the loader reports with the file's path."""
    for option, given in (
        ("--topic-template", template),
        ("--metadata-topic-template", metadata_template),
    ):
        if given is None:
            continue
        try:
            template_variables(given)
        except TemplateError as e:
            raise click.BadParameter(f"{given!r}: {e}", param_hint=option) from None
    if metadata_template is not None and template is None:
        raise click.UsageError("--metadata-topic-template needs --topic-template")
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not VARIABLE_NAME.fullmatch(name) or not value:
            raise click.BadParameter(
                f"expected NAME=VALUE with a lower-case NAME and a VALUE, got {item!r}",
                param_hint="--uns",
            )
        out[name] = value
    return out

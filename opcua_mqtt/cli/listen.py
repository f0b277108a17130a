"""``opcua-mqtt listen``: watch what bridges publish, with the metadata's signature checked."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import orjson

from opcua_mqtt.adapters.mqtt import MqttError
from opcua_mqtt.alarms import AlarmList
from opcua_mqtt.cli.common import format_option
from opcua_mqtt.cli.mqtt_options import EXIT_BROKER, mqtt_client_options, mqtt_options_from
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.core.topics import TopicTree, topic_problem
from opcua_mqtt.live_view import AlarmTable, LiveTable, dataset_json
from opcua_mqtt.subscriber import Refusal, Subscriber


@click.command()
@click.argument("broker")
@click.argument("topic_filter", required=False)
@mqtt_client_options
@click.option(
    "--trust",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificate(s) or pinned signer certificates (PEM) that metadata "
    "signatures must chain to. Without it, signatures are reported as unchecked. With it, a "
    "publisher whose metadata verified cannot be downgraded to unsigned metadata.",
)
@click.option("--prefix", default="opcua", show_default=True, help="Topic tree prefix.")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="FILTER",
    help="Subscribe to this topic filter (repeatable; TOPIC_FILTER counts as one), e.g. the "
    "custom topics of a Unified Namespace: --topic 'acme/#'. Default: everything under the "
    "prefix.",
)
@click.option(
    "--discover/--no-discover",
    default=None,
    help="Also subscribe to the custom topics (queue names) that publishers announce in their "
    "ua-connection messages.  [default: on without TOPIC_FILTER and --topic, else off]",
)
@format_option(
    ["table", "json"], "Live table (default on a terminal) or JSON lines (default otherwise)."
)
@click.option(
    "--alarms",
    is_flag=True,
    help="Show the current alarm list rebuilt from the ua-event messages (conditions by "
    "severity: active, acknowledged, message) instead of every DataSet; JSON lines then carry "
    "each changed condition and the counts.",
)
@click.option("--count", type=int, help="Exit after this many DataSetMessages.")
@click.option(
    "--timeout", type=float, help="Exit with code 4 if nothing arrives for this long (s)."
)
def listen(
    broker: str,
    topic_filter: str | None,
    mqtt_params: dict[str, Any],
    trust: str | None,
    prefix: str,
    topics: tuple[str, ...],
    discover: bool | None,
    fmt: str | None,
    alarms: bool,
    count: int | None,
    timeout: float | None,
) -> None:
    """Subscribe to the OPC UA PubSub topic tree on BROKER and show the decoded values.

    BROKER is host[:port] (port 8883 with TLS, 1883 with --no-tls). TOPIC_FILTER defaults to
    everything under the prefix. Data is matched to its metadata by PublisherId,
    DataSetWriterId and MetaDataVersion; metadata that is unsigned, unverifiable or missing is
    shown as such, never silently trusted. Verified metadata was signed by a certificate bound
    to its PublisherId. Messages whose names disagree with their topic, metadata signed for
    another PublisherId and downgrades are refused: never shown, counted per reason (the
    "refused" member of each JSON line, the table's last line) and logged.

    Custom topics (a Unified Namespace, docs/uns.md) are found from the publishers'
    ua-connection messages (--discover, the default without filters) or named with --topic;
    data is matched to metadata the same way whatever the topics look like.

    \b
    Examples:
      opcua-mqtt listen localhost:8883 --ca certs/ca.pem --cert certs/mqtt-client.pem \\
          --key certs/mqtt-client.key --trust certs/ca.pem
      opcua-mqtt listen broker:8883 'opcua/json/data/plant1/#' --ca ca.pem --format json
      opcua-mqtt listen broker:8883 --topic 'acme/site1/#' --topic 'opcua/json/#' --ca ca.pem
      opcua-mqtt listen broker:8883 --alarms --ca ca.pem --trust ca.pem
    \b
    Exit codes: 0 done (--count reached, Ctrl-C or SIGTERM), 2 bad usage (e.g. a malformed
    TOPIC_FILTER), 3 broker unreachable, or it refused the connection (untrusted
    certificate, client certificate or credentials refused), 4 nothing received within
    --timeout.
    """
    if topic_filter is not None and (problem := topic_problem(topic_filter, wildcards=True)):
        raise click.BadParameter(f"not a topic filter: {problem}", param_hint="TOPIC_FILTER")
    for each in topics:
        if problem := topic_problem(each, wildcards=True):
            raise click.BadParameter(
                f"{each!r} is not a topic filter: {problem}", param_hint="--topic"
            )
    filters = [*([topic_filter] if topic_filter is not None else []), *topics]
    options = mqtt_options_from(broker, mqtt_params, "opcua-mqtt-listen")
    trust_store = TrustStore.from_pem(Path(trust).read_bytes()) if trust else None
    mode = fmt or ("table" if sys.stdout.isatty() else "json")
    try:
        code = asyncio.run(
            _listen(
                options,
                trust_store,
                prefix,
                filters,
                not filters if discover is None else discover,
                mode,
                count,
                timeout,
                AlarmList() if alarms else None,
            )
        )
    except MqttError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_BROKER) from None
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGINT or SIGTERM
        code = 0
    raise SystemExit(code)


async def _listen(
    options: Any,
    trust: TrustStore | None,
    prefix: str,
    filters: list[str],
    discover: bool,
    mode: str,
    count: int | None,
    timeout: float | None,
    alarms: AlarmList | None = None,
) -> int:
    # SIGINT and SIGTERM stop listen cleanly, also where it started with SIGINT ignored (as
    # every command of a background job does, `listen ... &` in a script): Python then leaves
    # Ctrl-C ignored, and only `kill -9` would have stopped it.
    task = asyncio.current_task()
    if task is not None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    seen = 0
    table: LiveTable | None = None
    if mode == "table":
        table = LiveTable(sys.stdout) if alarms is None else AlarmTable(sys.stdout, alarms)
    async with Subscriber(
        options,
        trust=trust,
        topics=TopicTree(prefix=prefix),
        topic_filter=filters,
        discover=discover,
    ) as sub:
        iterator = sub.__aiter__()
        while count is None or seen < count:
            try:
                # not wait_for: on Python 3.11 it swallows the cancellation Ctrl-C brings when
                # a message arrives in the same loop turn, and listen ran on until --timeout
                async with asyncio.timeout(timeout):
                    ds = await iterator.__anext__()
            except TimeoutError:
                click.echo(f"nothing received for {timeout:g} s", err=True)
                return 4
            seen += 1
            changed = alarms.update(ds) if alarms is not None else None
            if alarms is not None and table is None:
                if changed is not None:
                    codec = sub.codec(ds.publisher_id)
                    line = {
                        "alarm": changed.to_json(codec.encode_node_id(changed.condition_id)),
                        "retained": changed.retain is not False,
                        "counts": alarms.counts(),
                    }
                    sys.stdout.write(orjson.dumps(line).decode() + "\n")
                    sys.stdout.flush()
            elif table is not None:
                table.footer = refused_footer(sub.refused)
                table.update(ds)
            else:
                line = dataset_json(ds, sub.codec(ds.publisher_id))
                line["refused"] = refused_json(sub.refused)
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
                sys.stdout.flush()
    return 0


def refused_json(refused: Mapping[Refusal, int]) -> dict[str, int]:
    """Messages refused so far: the total and the count per :class:`Refusal` reason."""
    return {"total": sum(refused.values()), **{r.value: refused.get(r, 0) for r in Refusal}}


def refused_footer(refused: Mapping[Refusal, int]) -> str:
    if not (total := sum(refused.values())):
        return ""
    reasons = ", ".join(f"{r.value} {n}" for r, n in refused.items() if n)
    return f"refused {total} forged or misdirected messages ({reasons}): see the log"

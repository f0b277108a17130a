"""``opcua-mqtt listen``: watch what bridges publish, with the metadata's signature checked."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from opcua_mqtt.adapters.mqtt import MqttError
from opcua_mqtt.cli import main
from opcua_mqtt.cli.common import format_option
from opcua_mqtt.cli.mqtt_options import EXIT_BROKER, mqtt_client_options, mqtt_options_from
from opcua_mqtt.core.json_encoding import JsonCodec
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.core.topics import TopicTree, topic_problem
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber

WIDTH = 100


@main.command()
@click.argument("broker")
@click.argument("topic_filter", required=False)
@mqtt_client_options
@click.option(
    "--trust",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificate(s) or pinned signer certificates (PEM) that metadata "
    "signatures must chain to. Without it, signatures are reported as unchecked.",
)
@click.option("--prefix", default="opcua", show_default=True, help="Topic tree prefix.")
@format_option(
    ["table", "json"], "Live table (default on a terminal) or JSON lines (default otherwise)."
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
    fmt: str | None,
    count: int | None,
    timeout: float | None,
) -> None:
    """Subscribe to the OPC UA PubSub topic tree on BROKER and show the decoded values.

    BROKER is host[:port] (port 8883 with TLS, 1883 with --no-tls). TOPIC_FILTER defaults to
    everything under the prefix. Data is matched to its metadata by PublisherId,
    DataSetWriterId and MetaDataVersion; metadata that is unsigned, unverifiable or missing is
    shown as such, never silently trusted.

    \b
    Examples:
      opcua-mqtt listen localhost:8883 --ca certs/ca.pem --trust certs/ca.pem
      opcua-mqtt listen broker:8883 'opcua/json/data/plant1/#' --ca ca.pem --format json
    \b
    Exit codes: 0 done (--count reached or Ctrl-C), 2 bad usage (e.g. a malformed
    TOPIC_FILTER), 3 broker unreachable, or it refused the connection (untrusted
    certificate, client certificate or credentials refused), 4 nothing received within
    --timeout.
    """
    if topic_filter is not None and (problem := topic_problem(topic_filter, wildcards=True)):
        raise click.BadParameter(f"not a topic filter: {problem}", param_hint="TOPIC_FILTER")
    options = mqtt_options_from(broker, mqtt_params, "opcua-mqtt-listen")
    trust_store = TrustStore.from_pem(Path(trust).read_bytes()) if trust else None
    mode = fmt or ("table" if sys.stdout.isatty() else "json")
    try:
        code = asyncio.run(
            _listen(options, trust_store, prefix, topic_filter, mode, count, timeout)
        )
    except MqttError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_BROKER) from None
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


async def _listen(
    options: Any,
    trust: TrustStore | None,
    prefix: str,
    topic_filter: str | None,
    mode: str,
    count: int | None,
    timeout: float | None,
) -> int:
    seen = 0
    table = LiveTable(sys.stdout) if mode == "table" else None
    async with Subscriber(
        options, trust=trust, topics=TopicTree(prefix=prefix), topic_filter=topic_filter
    ) as sub:
        iterator = sub.__aiter__()
        while count is None or seen < count:
            try:
                ds = await asyncio.wait_for(iterator.__anext__(), timeout)
            except TimeoutError:
                click.echo(f"nothing received for {timeout:g} s", err=True)
                return 4
            seen += 1
            if table is not None:
                table.update(ds)
            else:
                sys.stdout.write(json_line(ds, sub.codec(ds.publisher_id)) + "\n")
                sys.stdout.flush()
    return 0


def dataset_json(ds: ReceivedDataSet, codec: JsonCodec) -> dict[str, Any]:
    """One DataSet as a JSON-ready dict (the JSON-lines output of ``listen``); values in the
    1.05 Compact form without the type member (the type is given beside it)."""
    fields = {}
    for name, f in ds.fields.items():
        value: Any = codec.encode_variant(f.variant, raw=True)
        fields[name] = {
            "value": value,
            **({"dimensions": list(f.variant.Dimensions)} if f.variant.Dimensions else {}),
            "type": f.variant_type.name,
            "status": f.status.value,
            "status_name": f.status.name,
            "source_timestamp": f.source_timestamp.isoformat() if f.source_timestamp else None,
        }
    return {
        "topic": ds.topic,
        "publisher_id": ds.publisher_id,
        "writer_group": ds.writer_group,
        "dataset_writer_id": ds.dataset_writer_id,
        "dataset_writer_name": ds.dataset_writer_name,
        "sequence_number": ds.sequence_number,
        "message_type": ds.message_type,
        "metadata_version": list(ds.metadata_version) if ds.metadata_version else None,
        "metadata": {
            "state": ds.verification.state.value,
            "detail": ds.verification.detail,
            "signer": ds.verification.signer,
        },
        "fields": fields,
    }


def json_line(ds: ReceivedDataSet, codec: JsonCodec) -> str:
    return orjson.dumps(dataset_json(ds, codec)).decode()


class LiveTable:
    """The latest value of every field, redrawn in place at most 4 times a second.

    Each redraw moves the cursor back up over the previous drawing and clears below it, so what
    was printed before the table (the demo's instructions) stays on the screen. Lines are cut to
    the terminal's width (100 columns at most) and the table to its height: a line that wraps or
    a table that scrolls would make that cursor movement land in the wrong place.
    """

    def __init__(self, out: TextIO, footer: str = "") -> None:
        self.out = out
        self.footer = footer
        self.rows: dict[tuple[str, str], tuple[ReceivedDataSet, str]] = {}
        self._last_draw = 0.0
        self._drawn = 0  # lines of the previous drawing, to move back over

    def update(self, ds: ReceivedDataSet) -> None:
        writer = ds.dataset_writer_name or str(ds.dataset_writer_id)
        for name in ds.fields:
            self.rows[(f"{ds.publisher_id}/{writer}", name)] = (ds, name)
        now = asyncio.get_running_loop().time()
        if now - self._last_draw >= 0.25:
            self._last_draw = now
            self.draw()

    def _lines(self) -> list[str]:
        """The header and one line per field, :data:`WIDTH` columns at most."""
        now = datetime.now(UTC)
        lines = [
            f"{'WRITER / FIELD':<37}{'VALUE':<19}{'STATUS':<13}{'SOURCE TIME':<13}"
            f"{'AGE':>6}  METADATA"
        ]
        for (writer, name), (ds, field_name) in sorted(self.rows.items()):
            f = ds.fields[field_name]
            label = _fit(f"{writer}/{name}", 36)
            value = _fit(repr(f.value) if isinstance(f.value, str) else str(f.value), 18)
            status = _fit(f.status.name, 12)
            stamp = f.source_timestamp.strftime("%H:%M:%S.%f")[:12] if f.source_timestamp else "-"
            age = f"{(now - ds.received_at).total_seconds():.0f}s"
            lines.append(
                f"{label:<37}{value:<19}{status:<13}{stamp:<13}{age:>6}  "
                f"{ds.verification.state.value}"
            )
        return lines

    def draw(self) -> None:
        columns, rows = shutil.get_terminal_size((WIDTH, 25))
        lines = self._lines() + ([self.footer] if self.footer else [])
        room = max(rows - 1, 2)  # the cursor's line below the table must not scroll it
        if len(lines) > room:
            hidden = len(lines) - room + 1
            lines = [*lines[: room - 1], f"… {hidden} more lines: make the terminal taller"]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        width = min(WIDTH, columns)
        self.out.write(up + "\x1b[J" + "".join(_fit(line, width) + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

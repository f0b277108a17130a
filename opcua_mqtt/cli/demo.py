"""``opcua-mqtt demo``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from opcua_mqtt.cli.common import format_option, loop_option


@click.command()
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="Embedded broker: Mosquitto (MQTT 5) when installed, else amqtt (pure Python, MQTT "
    "3.1.1 only).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Broker TLS port on 127.0.0.1; 0 picks a free one.  [default: 8883, or a free port "
    "when 8883 is taken]",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop by itself this long after start-up (for scripts and tests).",
)
@format_option(
    ["table", "json"],
    "Live table (default on a terminal) or JSON lines on stdout, as `listen` prints them "
    "(default otherwise; the instructions then go to stderr).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the certificates, bridge.yaml and logs here instead of in a temporary "
    "directory that is removed at exit.",
)
@click.option(
    "--uns",
    is_flag=True,
    help="Publish on the topics of a Unified Namespace (acme/demo-site/<line>/<machine>, "
    "docs/uns.md) instead of the standard tree; the table reads the same.",
)
@loop_option
def demo(
    broker: str,
    port: int | None,
    duration: float | None,
    fmt: str | None,
    workdir: Path | None,
    uns: bool,
    loop: str,
) -> None:
    """Run the whole path on this machine: a simulated OPC UA plant, a broker, the bridge.

    Everything listens on 127.0.0.1 only and runs in this process tree: an OPC UA server with
    three production lines (motors, temperatures, setpoints, counters; the values move), an
    embedded MQTT broker over TLS, a development PKI made on the spot, and the bridge,
    configured by browsing and mapping the server, with write-back allowed for the setpoints.
    The live table shows each value as a subscriber receives it, with its metadata's signature
    checked. The demo prints the `listen` and `write` commands to try from a second terminal.

    With amqtt (MQTT 3.1.1), the demo says which MQTT 5 features fall back and how.
    Ctrl-C stops everything: the bridge publishes its Disabled status, the broker is stopped,
    the temporary directory removed.

    \b
    Examples:
      opcua-mqtt demo
      opcua-mqtt demo --broker amqtt --port 18883
      opcua-mqtt demo --duration 30 --format json > datasets.jsonl
      opcua-mqtt demo --workdir demo/    # keep bridge.yaml and the certificates
      opcua-mqtt demo --uns              # ISA-95 topics: acme/demo-site/...
    \b
    Exit codes: 0 stopped (Ctrl-C, SIGTERM, --duration), 1 something failed to start, or no
    DataSet with verified metadata arrived within --duration, 2 the asked-for broker (or
    --loop uvloop) is not installed or --port is taken.
    """
    from opcua_mqtt.demo.app import DemoOptions, run

    table = fmt == "table" if fmt else sys.stdout.isatty()
    options = DemoOptions(
        broker=broker,
        port=port,
        duration_s=duration,
        table=table,
        workdir=workdir,
        uns=uns,
        loop=loop,
    )
    try:
        code = run(options)
    except KeyboardInterrupt:  # Ctrl-C before the demo took over the signal: nothing started
        code = 130
    raise SystemExit(code)

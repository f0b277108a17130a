"""``opcua-mqtt demo``."""

from __future__ import annotations

import click

from opcua_mqtt.cli import main


@main.command()
def demo() -> None:
    """Show the wire format: publish signed metadata and data, then read them as a subscriber.

    Today this runs in one process without a broker or an OPC UA server; it says so when it
    starts. Exit code 0 when every value arrived and the signature verified.
    """
    from opcua_mqtt.demo import run

    if not run(click.echo):
        raise SystemExit(1)

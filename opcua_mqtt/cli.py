"""The ``opcua-mqtt`` command line."""

from __future__ import annotations

import click

from opcua_mqtt import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="opcua-mqtt")
def main() -> None:
    """Bridge OPC UA servers to MQTT with standard OPC UA PubSub JSON (OPC 10000-14).

    Metadata messages are signed so subscribers can prove who described the data.
    """


@main.command()
def demo() -> None:
    """Show the wire format: publish signed metadata and data, then read them as a subscriber.

    Today this runs in one process without a broker or an OPC UA server; it says so when it
    starts. Exit code 0 when every value arrived and the signature verified.
    """
    from opcua_mqtt.demo import run

    if not run(click.echo):
        raise SystemExit(1)

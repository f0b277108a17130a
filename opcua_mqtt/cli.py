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

"""The ``opcua-mqtt`` command line: one module per command, registered on the group below."""

from __future__ import annotations

import click

from opcua_mqtt import __version__
from opcua_mqtt.logs import configure as configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="opcua-mqtt")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Least important log level shown.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Logs on stderr as text lines or JSON lines.",
)
def main(log_level: str, log_format: str) -> None:
    """Bridge OPC UA servers to MQTT with standard OPC UA PubSub JSON (OPC 10000-14).

    Metadata messages are signed so subscribers can prove who described the data.
    """
    configure_logging(log_level, log_format)


def _register() -> None:
    """Import the command modules; each adds its command to ``main``. One line per command."""
    from opcua_mqtt.cli import browse, certs, demo, listen  # noqa: F401
    from opcua_mqtt.cli import map  # noqa: F401  # isort: skip
    from opcua_mqtt.cli import validate  # noqa: F401  # isort: skip
    from opcua_mqtt.cli import run  # noqa: F401  # isort: skip
    from opcua_mqtt.cli import write  # noqa: F401  # isort: skip
    from opcua_mqtt.cli import status  # noqa: F401  # isort: skip
    # (new command modules: add one import line here)


_register()

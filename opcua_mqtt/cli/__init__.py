"""The ``opcua-mqtt`` command line: one module per command, imported only when it runs."""

from __future__ import annotations

import click

from opcua_mqtt import __version__
from opcua_mqtt.cli.lazy import LazyCommand, LazyGroup
from opcua_mqtt.logs import configure as configure_logging


def _command(module: str, short_help: str, attribute: str | None = None) -> LazyCommand:
    return LazyCommand(f"opcua_mqtt.cli.{module}", attribute or module, short_help)


#: Every command: its module in this package and the first sentence of its help (one line each).
COMMANDS = {
    "ack": _command(
        "ack",
        "Acknowledge the alarm CONDITION_ID in the state EVENT_ID through a bridge; print the "
        "answer.",
    ),
    "browse": _command(
        "browse", "Walk the address space of the OPC UA server at ENDPOINT and list what is there."
    ),
    "call": _command(
        "call",
        "Call METHOD_ID on OBJECT_ID with ARGUMENTS through a bridge; print the answer (JSON).",
    ),
    "certs": _command(
        "certs", "Create a development PKI and a Mosquitto broker that requires its certificates."
    ),
    "demo": _command(
        "demo",
        "Run the whole path on this machine: a simulated OPC UA plant, a broker, the bridge.",
    ),
    "listen": _command(
        "listen", "Subscribe to the OPC UA PubSub topic tree on BROKER and show the decoded values."
    ),
    "map": _command(
        "map", "Turn an OPC UA address space into a publishing configuration.", "map_command"
    ),
    "run": _command("run", "Run the bridge described by CONFIG until stopped (Ctrl-C, SIGTERM)."),
    "shard": _command(
        "shard", "Split the bridge configuration CONFIG into COUNT complete configurations."
    ),
    "status": _command(
        "status", "List the bridges BROKER knows, with their PubSub state and connection."
    ),
    "validate": _command("validate", "Check the bridge configuration file CONFIG (YAML or JSON)."),
    "write": _command(
        "write", "Ask a bridge to write VALUE to TARGET and print its answer (JSON)."
    ),
    # (a new command: its module defines a ``click.command``; add one entry here)
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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

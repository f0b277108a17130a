"""Click options shared by the commands that talk to an MQTT broker as a client (listen, write,
status): the broker address, TLS material and credentials. Secure by default: TLS on, the
broker's certificate verified; turning TLS off takes an explicit ``--no-tls``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import click

from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
from opcua_mqtt.cli.common import with_options

F = TypeVar("F", bound=Callable[..., Any])

#: Connection attempts before a one-shot command gives up (about 1.5 s of back-off between
#: them); certificate, key and credential problems stop it at the first.
ONE_SHOT_ATTEMPTS = 3

#: Exit code of every command for a broker that cannot be reached or refuses the client.
EXIT_BROKER = 3


#: The options :func:`mqtt_client_options` passes on as ``mqtt_params``.
_PARAMS = ("ca", "cert", "key", "no_tls", "username", "password_env", "protocol", "client_id")


def mqtt_client_options(func: F) -> F:
    """Add the broker connection options; the command receives ``mqtt_params`` (a dict)."""
    options = [
        click.option(
            "--ca",
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificate(s) that issued the broker's certificate (PEM). "
            "Default: the system's trust store.",
        ),
        click.option(
            "--cert",
            type=click.Path(exists=True, dir_okay=False),
            help="Client certificate for mutual TLS (PEM).",
        ),
        click.option(
            "--key",
            type=click.Path(exists=True, dir_okay=False),
            help="Private key of --cert (PEM).",
        ),
        click.option(
            "--no-tls",
            is_flag=True,
            help="Plain TCP. Only for brokers on a trusted loopback; never in a plant.",
        ),
        click.option("--username", help="MQTT user name."),
        click.option(
            "--password-env",
            default="MQTT_PASSWORD",
            show_default=True,
            help="Environment variable holding the MQTT password.",
        ),
        click.option(
            "--protocol",
            type=click.Choice(["5", "3.1.1"]),
            default="5",
            show_default=True,
            help="MQTT protocol version.",
        ),
        click.option(
            "--client-id",
            help="MQTT client id (default: a random one, with no session kept on the broker).",
        ),
    ]
    return with_options(func, options, into="mqtt_params", names=_PARAMS)


def parse_broker(broker: str, *, tls: bool) -> tuple[str, int]:
    """``host``, ``host:port`` or ``mqtts://host:port`` -> (host, port); 8883 with TLS."""
    text = broker
    for scheme in ("mqtts://", "mqtt://", "ssl://", "tcp://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not port:
        return host, 8883 if tls else 1883
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{broker!r}: the port must be a number 1..65535")
    return host, int(port)


def mqtt_options_from(broker: str, params: dict[str, Any], prefix: str) -> MqttOptions:
    tls_on = not params["no_tls"]
    host, port = parse_broker(broker, tls=tls_on)
    password = os.environ.get(params["password_env"]) if params["password_env"] else None
    return MqttOptions(
        host=host,
        port=port,
        client_id=params["client_id"] or f"{prefix}-{uuid.uuid4().hex[:8]}",
        protocol=params["protocol"],
        tls=TlsOptions(
            enabled=tls_on, ca=params["ca"], certificate=params["cert"], private_key=params["key"]
        ),
        username=params["username"],
        password=password if params["username"] else None,
        connect_timeout_s=10,
        # A command run by hand or by a health check: a refused port is retried briefly, a
        # certificate or credential problem not at all (see ONE_SHOT_ATTEMPTS).
        connect_attempts=ONE_SHOT_ATTEMPTS,
        # A generated client id is never seen again: a session kept for it would only make the
        # broker queue messages for nobody. A chosen id keeps the default persistent session.
        session_expiry_s=MqttOptions.session_expiry_s if params["client_id"] else 0,
    )

"""Click options shared by every command that talks OPC UA (browse, map, run, write…): security
policy and mode, our application instance certificate, the trust folder for server certificates,
the user and where the password comes from, the timeout.

Secure by default: Basic256Sha256 with SignAndEncrypt, and the server's certificate must be in
the trust folder. The password is never an option value (it would show in the process list and
the shell history): it comes from an environment variable or a hidden prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from opcua_mqtt.adapters.opcua import (
    SECURITY_MODES,
    SECURITY_POLICIES,
    ConnectionOptions,
    normalise_endpoint,
)
from opcua_mqtt.cli.common import with_options

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_POLICY = "Basic256Sha256"
DEFAULT_CERTIFICATE = "certs/opcua-client.pem"
DEFAULT_PRIVATE_KEY = "certs/opcua-client.key"
DEFAULT_TRUST_DIR = "certs/trusted-servers"
DEFAULT_PASSWORD_ENV = "OPCUA_PASSWORD"

_PARAMS = (
    "security_policy",
    "security_mode",
    "certificate",
    "private_key",
    "trust_dir",
    "trust_server_cert",
    "username",
    "password_env",
    "password_prompt",
    "timeout",
)


def _pki_option(
    flag: str, default: str, help_text: str, *, folder: bool = False
) -> Callable[[F], F]:
    """An option naming a file (or, with ``folder``, a folder) of our PKI, its default shown."""
    return click.option(
        flag,
        type=click.Path(file_okay=not folder, dir_okay=folder),
        default=default,
        show_default=True,
        help=help_text,
    )


def opcua_connection_options(func: F) -> F:
    """Add the OPC UA connection options; the command receives ``opcua_params`` (a dict)."""
    options = [
        click.option(
            "--security-policy",
            type=click.Choice(list(SECURITY_POLICIES)),
            default=DEFAULT_POLICY,
            show_default=True,
            help="OPC UA security policy. None sends everything readable and unauthenticated.",
        ),
        click.option(
            "--security-mode",
            type=click.Choice(list(SECURITY_MODES)),
            help="Message security mode. Default: SignAndEncrypt, or None with policy None.",
        ),
        _pki_option(
            "--certificate",
            DEFAULT_CERTIFICATE,
            "Our application instance certificate (PEM or DER). Made, self-signed, on first use "
            "when it and the key are both missing; the server must trust it.",
        ),
        _pki_option(
            "--private-key",
            DEFAULT_PRIVATE_KEY,
            "Private key of --certificate (RSA, PEM or DER; written mode 0600 when made).",
        ),
        _pki_option(
            "--trust-dir",
            DEFAULT_TRUST_DIR,
            "Folder of trusted server certificates (or of the CAs that issued them).",
            folder=True,
        ),
        click.option(
            "--trust-server-cert",
            is_flag=True,
            help="Trust on first contact: when the server's certificate is not in --trust-dir, "
            "save it there and go on, with a loud warning naming its thumbprint. Check the "
            "thumbprint with the server's administrator.",
        ),
        click.option("--username", help="OPC UA user name (anonymous without it)."),
        click.option(
            "--password-env",
            metavar="VAR",
            default=DEFAULT_PASSWORD_ENV,
            show_default=True,
            help="Environment variable holding the password of --username.",
        ),
        click.option(
            "--password-prompt",
            is_flag=True,
            help="Ask for the password of --username (hidden input) instead of --password-env.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=10.0,
            show_default=True,
            help="Seconds to wait for the server to answer a request.",
        ),
    ]
    return with_options(func, options, into="opcua_params", names=_PARAMS)


def connection_options_from(endpoint: str, params: dict[str, Any]) -> ConnectionOptions:
    """Turn the option values into ConnectionOptions; a malformed ENDPOINT and bad
    combinations are usage errors."""
    try:
        normalise_endpoint(endpoint)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    policy = params["security_policy"]
    mode = params["security_mode"] or ("None" if policy == "None" else "SignAndEncrypt")
    username = params["username"] or None
    password: str | None = None
    if username:
        if params["password_prompt"]:
            password = click.prompt(
                f"OPC UA password for {username}",
                hide_input=True,
                err=True,
                default="",
                show_default=False,
            )
        elif params["password_env"]:
            password = os.environ.get(params["password_env"])
        if password is None:
            raise click.UsageError(
                f"--username {username} needs a password: set the environment variable "
                f"{params['password_env'] or DEFAULT_PASSWORD_ENV} (see --password-env) or use "
                "--password-prompt"
            )
    elif params["password_prompt"]:
        raise click.UsageError("--password-prompt needs --username")
    try:
        return ConnectionOptions(
            endpoint=endpoint,
            security_policy=policy,
            security_mode=mode,
            certificate=Path(params["certificate"]),
            private_key=Path(params["private_key"]),
            trust_dir=Path(params["trust_dir"]) if params["trust_dir"] else None,
            trust_server_cert=bool(params["trust_server_cert"]),
            username=username,
            password=password,
            timeout=float(params["timeout"]),
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None

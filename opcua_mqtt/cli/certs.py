"""``opcua-mqtt certs``: a development PKI in a folder, ready for a broker and a bridge."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from opcua_mqtt import devpki
from opcua_mqtt.cli import main

#: file stem -> what it is, in the order they are written (the CA first).
FILES = {
    "ca": "development certificate authority",
    "broker": "MQTT broker TLS server certificate",
    "bridge-mqtt": "bridge MQTT client certificate (mutual TLS)",
    "mqtt-client": "MQTT client certificate for people's tools: listen, write (mutual TLS)",
    "metadata-signer": "DataSetMetaData signing certificate (digitalSignature)",
    "opcua-client": "OPC UA application instance certificate of the bridge",
}


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Where to write the files.",
)
@click.option("--force", is_flag=True, help="Overwrite existing keys and certificates.")
@click.option(
    "--broker-host",
    "broker_hosts",
    multiple=True,
    help="Extra DNS name or IP address for the broker certificate (repeatable); "
    "localhost and 127.0.0.1 are always included.",
)
@click.option(
    "--application-uri",
    default=None,
    help="OPC UA application URI of the bridge. [default: urn:opcua-mqtt:bridge:<hostname>]",
)
def certs(
    directory: Path, force: bool, broker_hosts: tuple[str, ...], application_uri: str | None
) -> None:
    """Create a development PKI: a CA and the certificates a broker and a bridge need.

    Writes NAME.pem (certificate; signer certificates are followed by the CA) and NAME.key
    (private key, mode 0600) for: ca, broker, bridge-mqtt, metadata-signer, opcua-client.
    Refuses to overwrite existing keys unless --force is given. For production, use
    certificates from your plant's PKI instead.

    \b
    Examples:
      opcua-mqtt certs
      opcua-mqtt certs --dir /etc/opcua-mqtt/certs --broker-host broker.plant.local
    """
    existing = [directory / f"{stem}.key" for stem in FILES if (directory / f"{stem}.key").exists()]
    if existing and not force:
        click.echo(
            f"error: {existing[0]} already exists; use --force to replace the whole PKI",
            err=True,
        )
        raise SystemExit(1)
    app_uri = write_pki(directory, broker_hosts=broker_hosts, application_uri=application_uri)
    for stem, what in FILES.items():
        click.echo(f"wrote {directory / stem}.pem/.key  ({what})")
    click.echo(f"OPC UA application URI: {app_uri}")


def write_pki(
    directory: Path, *, broker_hosts: Sequence[str] = (), application_uri: str | None = None
) -> str:
    """Write the CA and every pair of :data:`FILES` into ``directory`` (created if needed),
    overwriting what is there; return the bridge's OPC UA application URI. ``demo`` uses it too,
    so its throw-away PKI is the one users get from ``certs``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    hostname = socket.gethostname()
    app_uri = application_uri or f"urn:opcua-mqtt:bridge:{hostname}"
    dns = ("localhost", *(h for h in broker_hosts if not _is_ip(h)))
    ips = ("127.0.0.1", *(h for h in broker_hosts if _is_ip(h)))

    ca = devpki.make_ca("opcua-mqtt development CA", now)
    issued = {
        "ca": ca,
        "broker": devpki.issue(ca, "opcua-mqtt broker", now, server=True, dns=dns, ips=ips),
        "bridge-mqtt": devpki.issue(ca, "opcua-mqtt bridge", now, client=True),
        "mqtt-client": devpki.issue(ca, "opcua-mqtt client", now, client=True),
        "metadata-signer": devpki.issue(ca, "opcua-mqtt metadata signer", now),
        "opcua-client": devpki.issue(
            ca,
            "opcua-mqtt bridge",
            now,
            server=True,
            client=True,
            dns=(hostname, "localhost"),
            uris=(app_uri,),
            rsa_bits=2048,
        ),
    }
    for stem, item in issued.items():
        chain = item.cert_pem() + (ca.cert_pem() if stem != "ca" else b"")
        _write(directory / f"{stem}.pem", chain, 0o644)
        _write(directory / f"{stem}.key", item.key_pem(), 0o600)
    return app_uri


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create the file with its final mode from the start: a key is never world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

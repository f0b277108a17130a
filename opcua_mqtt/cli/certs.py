"""``opcua-mqtt certs``: a development PKI in a folder, ready for a broker and a bridge."""

from __future__ import annotations

from pathlib import Path

import click

from opcua_mqtt import devpki
from opcua_mqtt.cli import main


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
    "--publisher-id",
    default=devpki.BRIDGE_NAME,
    show_default=True,
    help="Common name of the bridge's MQTT client certificate: use the configuration's "
    "publisher_id when the broker takes the certificate's name as user name for its ACL "
    "(Mosquitto's use_identity_as_username, see examples/mosquitto/).",
)
@click.option(
    "--application-uri",
    default=None,
    help="OPC UA application URI of the bridge. [default: urn:opcua-mqtt:bridge:<hostname>]",
)
def certs(
    directory: Path,
    force: bool,
    broker_hosts: tuple[str, ...],
    publisher_id: str,
    application_uri: str | None,
) -> None:
    """Create a development PKI: a CA and the certificates a broker and a bridge need.

    Writes NAME.pem (certificate; signer certificates are followed by the CA) and NAME.key
    (private key, mode 0600) for: ca, broker, bridge-mqtt, mqtt-client, metadata-signer,
    opcua-client.
    Refuses to overwrite existing keys unless --force is given. For production, use
    certificates from your plant's PKI instead.

    \b
    Examples:
      opcua-mqtt certs
      opcua-mqtt certs --dir /etc/opcua-mqtt/certs --broker-host broker.plant.local
      opcua-mqtt certs --publisher-id hall2-filler-plc   # CN for a broker ACL by identity
    """
    keys = [directory / f"{stem}.key" for stem in devpki.FILES]
    existing = [key for key in keys if key.exists()]
    if existing and not force:
        click.echo(
            f"error: {existing[0]} already exists; use --force to replace the whole PKI",
            err=True,
        )
        raise SystemExit(1)
    app_uri = devpki.write_pki(
        directory,
        broker_hosts=broker_hosts,
        bridge_name=publisher_id,
        application_uri=application_uri,
    )
    for stem, what in devpki.FILES.items():
        click.echo(f"wrote {directory / stem}.pem/.key  ({what})")
    click.echo(f"OPC UA application URI: {app_uri}")

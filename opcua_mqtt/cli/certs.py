"""``opcua-mqtt certs``: a development PKI in a folder, and a Mosquitto broker configuration
beside it that requires those certificates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NoReturn

import click

from opcua_mqtt import devbroker, devpki
from opcua_mqtt.core.topics import TopicTree

#: An added client's name is its common name, MQTT user name and file stem: keep it plain.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ANY_ADDRESS = ("0.0.0.0", "::")
_RESERVED = {*devpki.FILES, "mosquitto"}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def _check_identity(value: str, what: str) -> None:
    """A name that becomes an ACL `user` line: Mosquitto reads the rest of the line, trimmed."""
    if not value or value != value.strip() or not value.isprintable():
        raise click.BadParameter(f"{what} must be printable, without leading or trailing spaces")


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Where to write the files.",
)
@click.option(
    "--force", is_flag=True, help="Replace an existing PKI (CA included) and broker files."
)
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
    help="The bridge's publisher_id: the common name of its MQTT client certificate and the "
    "PublisherId its ACL block grants (give map and the configuration the same one).",
)
@click.option(
    "--application-uri",
    default=None,
    help="OPC UA application URI of the bridge. [default: urn:opcua-mqtt:bridge:<hostname>]",
)
@click.option(
    "--broker-port",
    type=click.IntRange(1, 65535),
    default=8883,
    show_default=True,
    help="Port of the broker's TLS listener in mosquitto.conf.",
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address the broker listens on (0.0.0.0: every interface; name the host clients use "
    "with --broker-host). An IP address other than those is added to the broker certificate.",
)
@click.option(
    "--topic-prefix",
    default="opcua",
    show_default=True,
    help="Topic tree prefix the ACL grants (the configuration's mqtt.topic_prefix).",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="NAME",
    help="Also issue NAME.pem/.key, a client certificate with common name NAME, and give NAME "
    "an ACL block (repeatable). On an existing PKI only these are added: the CA stays.",
)
@click.option(
    "--commander",
    is_flag=True,
    help="The --client certificates may also send write-back commands and read the answers "
    "(default: read the data, metadata and status only).",
)
def certs(
    directory: Path,
    force: bool,
    broker_hosts: tuple[str, ...],
    publisher_id: str,
    application_uri: str | None,
    broker_port: int,
    bind: str,
    topic_prefix: str,
    clients: tuple[str, ...],
    commander: bool,
) -> None:
    """Create a development PKI and a Mosquitto broker that requires its certificates.

    Writes NAME.pem (certificate; signer certificates are followed by the CA) and NAME.key
    (private key, mode 0600) for: ca, broker, bridge-mqtt, mqtt-client, metadata-signer,
    opcua-client; and mosquitto.conf with mosquitto.acl: one TLS listener on
    --bind:--broker-port, client certificates required, each certificate's common name as its
    MQTT user name. The ACL lets the bridge (common name = --publisher-id) publish under its
    PublisherId and answer commands, mqtt-client (listen, status, write) read everything and
    send commands, and each --client read (or, with --commander, also command). Run as root,
    `certs` gives broker.key to the group mosquitto (mode 0640): Mosquitto started as root
    drops to that user. For production, use certificates from your plant's PKI instead.

    \b
    Examples:
      opcua-mqtt certs --publisher-id line1
      mosquitto -c certs/mosquitto.conf
      opcua-mqtt certs --client historian                 # one more reader, same CA
      opcua-mqtt certs --client hmi-hall2 --commander     # one more commander
      opcua-mqtt certs --dir /etc/mosquitto/opcua-mqtt --bind 0.0.0.0 \\
          --broker-host broker.plant.local --publisher-id hall2-filler-plc

    \b
    Exit codes: 0 written, 1 would replace existing keys (without --force) or the existing
    PKI cannot be read, 2 usage error.
    """
    _check_identity(publisher_id, "--publisher-id")
    if publisher_id == devpki.TOOL_NAME:
        raise click.BadParameter(
            f"{publisher_id!r} is mqtt-client's name", param_hint="--publisher-id"
        )
    for name in clients:
        if not _CLIENT_NAME.fullmatch(name) or name in _RESERVED:
            raise click.BadParameter(
                f"{name!r}: use letters, digits, '.', '_' and '-' (at most 64), and none of "
                f"{', '.join(sorted(_RESERVED))}",
                param_hint="--client",
            )
        if name == publisher_id:
            raise click.BadParameter(f"{name!r} is the bridge's name", param_hint="--client")
    try:
        topics = TopicTree(prefix=topic_prefix)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--topic-prefix") from None
    added = [devbroker.Client(name, commander) for name in clients]
    targets = [
        directory / f"{stem}{suffix}"
        for stem in (*devpki.FILES, *clients)
        for suffix in (".pem", ".key")
    ] + [directory / devbroker.CONF, directory / devbroker.ACL]
    if links := devpki.symlinks_among(targets):
        _fail(
            f"{links[0]} is a symbolic link; certs never writes through one (remove it, or "
            "choose another --dir)"
        )
    try:
        _write(
            directory,
            added,
            topics,
            force,
            publisher_id,
            application_uri,
            broker_hosts,
            broker_port,
            bind,
        )
    except devpki.SymlinkError as e:  # made between the check above and the write
        _fail(str(e.strerror))


def _write(
    directory: Path,
    added: list[devbroker.Client],
    topics: TopicTree,
    force: bool,
    publisher_id: str,
    application_uri: str | None,
    broker_hosts: tuple[str, ...],
    broker_port: int,
    bind: str,
) -> None:
    clients = [c.name for c in added]
    existing = [directory / f"{s}.key" for s in devpki.FILES if (directory / f"{s}.key").exists()]
    if existing and not force:
        if not clients:
            _fail(
                f"{existing[0]} already exists; use --force to replace the whole PKI, or "
                "--client NAME to add a client certificate to it"
            )
        given = _given_options()
        if ignored := given & {"broker_hosts", "application_uri", "broker_port", "bind"}:
            flags = ", ".join(f"--{o.replace('_', '-').rstrip('s')}" for o in sorted(ignored))
            _fail(f"{flags}: only for a new PKI; on the one in {directory}, --client adds clients")
        _add_clients(directory, added, topics, publisher_id, "publisher_id" in given)
        return
    extra_hosts = (bind,) if bind not in (*_ANY_ADDRESS, "127.0.0.1", "localhost") else ()
    app_uri = devpki.write_pki(
        directory,
        broker_hosts=(*broker_hosts, *extra_hosts),
        bridge_name=publisher_id,
        application_uri=application_uri,
    )
    for stem, what in devpki.FILES.items():
        click.echo(f"wrote {directory / stem}.pem/.key  ({what})")
    ca = devpki.load_ca(directory)
    for client in added:
        devpki.add_client(directory, ca, client.name)
        click.echo(f"wrote {directory / client.name}.pem/.key  ({_role(client)})")
    acl = devbroker.render_acl(
        topics,
        bridge_cn=publisher_id,
        tool_cn=devpki.TOOL_NAME,
        publisher_id=publisher_id,
        clients=added,
    )
    conf = devbroker.render_conf(directory, port=broker_port, bind=bind)
    devbroker.write_broker_files(directory, conf, acl)
    click.echo(
        f"wrote {directory / devbroker.CONF}, {devbroker.ACL}  "
        f"(Mosquitto: TLS on {bind}:{broker_port}, client certificates required)"
    )
    click.echo(f"OPC UA application URI: {app_uri}")
    warning = devbroker.share_key_with_broker(directory / "broker.key")
    if warning:
        click.echo(warning, err=True)
    click.echo(f"start the broker: mosquitto -c {directory.absolute() / devbroker.CONF}")


def _given_options() -> set[str]:
    """The parameters given on the command line (not defaults)."""
    ctx = click.get_current_context()
    return {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }


def _role(client: devbroker.Client) -> str:
    return "MQTT client: reads, sends commands" if client.commander else "MQTT client: reads"


def _add_clients(
    directory: Path,
    clients: list[devbroker.Client],
    topics: TopicTree,
    publisher_id: str,
    publisher_id_given: bool,
) -> None:
    """Issue ``clients`` from the CA in ``directory`` and append their ACL blocks."""
    try:
        ca = devpki.load_ca(directory)
        bridge_id = devpki.common_name(directory / "bridge-mqtt.pem")
    except (OSError, ValueError) as e:
        _fail(f"cannot read the PKI in {directory}: {e}")
    if publisher_id_given and publisher_id != bridge_id:
        _fail(f"the PKI in {directory} is for --publisher-id {bridge_id!r}, not {publisher_id!r}")
    for client in clients:
        if client.name == bridge_id:
            _fail(f"--client {client.name}: that is the bridge's name in {directory}")
        if (directory / f"{client.name}.key").exists():
            _fail(f"{directory / client.name}.key already exists: choose another --client name")
    for client in clients:
        devpki.add_client(directory, ca, client.name)
        devbroker.append_acl(directory, devbroker.client_block(topics, client, bridge_id))
        click.echo(f"wrote {directory / client.name}.pem/.key  ({_role(client)})")
    click.echo(
        f"added to {directory / devbroker.ACL}: restart mosquitto (or send it SIGHUP) to apply"
    )

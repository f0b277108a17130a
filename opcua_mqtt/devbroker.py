"""A Mosquitto 2.0 configuration and ACL for the development PKI of :mod:`opcua_mqtt.devpki`.

``opcua-mqtt certs`` writes them next to the certificates, so a broker that requires client
certificates runs with one command: ``mosquitto -c certs/mosquitto.conf``. With
``use_identity_as_username`` the broker takes each certificate's common name (CN) as the MQTT
user name, and the ACL grants topics to those names:

- the bridge (CN = its PublisherId) publishes every message type under its own PublisherId,
  reads its command topic and answers below its reply topics;
- ``mqtt-client`` (people's tools) reads the whole tree and sends commands to the bridge;
- clients added later read the Part 14 tree, and commanders also send commands and read answers.

Rendering is pure; :func:`write_broker_files` and :func:`share_key_with_broker` touch the disk.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opcua_mqtt.core.topics import (
    MessageType,
    TopicTree,
    command_topic,
    escape_level,
    reply_prefix,
)
from opcua_mqtt.devpki import write_file

CONF = "mosquitto.conf"
ACL = "mosquitto.acl"
#: The account Debian's and most packages' Mosquitto drops to when started as root.
BROKER_USER = "mosquitto"


@dataclass(frozen=True)
class Client:
    """A client certificate's common name and whether it may send write-back commands."""

    name: str
    commander: bool = False


def _tree(topics: TopicTree) -> str:
    return f"{topics.prefix}/{topics.encoding}"


def _replies(topics: TopicTree, publisher_id: str) -> str:
    """Where the bridge's answers go: ``…/reply/<id>/<client id>`` (core.topics.reply_topic)."""
    return f"{reply_prefix(topics)}/{escape_level(publisher_id)}/#"


def _reads_tree(topics: TopicTree) -> list[str]:
    return [f"topic read {_tree(topics)}/{kind.value}/#" for kind in MessageType]


def bridge_block(topics: TopicTree, bridge_cn: str, publisher_id: str) -> str:
    own = escape_level(publisher_id)
    lines = [
        "# The bridge: publishes every message type under its own PublisherId only, reads its",
        "# command topic and answers below its reply topics.",
        f"user {bridge_cn}",
        *(f"topic write {_tree(topics)}/{kind.value}/{own}/#" for kind in MessageType),
        f"topic read {command_topic(topics, publisher_id)}",
        f"topic write {_replies(topics, publisher_id)}",
    ]
    return "\n".join(lines) + "\n"


def tool_block(topics: TopicTree, client_cn: str, publisher_id: str) -> str:
    lines = [
        "# People's tools (mqtt-client.pem: listen, status, write): read everything, including",
        "# commands and answers, and send commands to the bridge.",
        f"user {client_cn}",
        f"topic read {_tree(topics)}/#",
        f"topic write {command_topic(topics, publisher_id)}",
    ]
    return "\n".join(lines) + "\n"


def client_block(topics: TopicTree, client: Client, publisher_id: str) -> str:
    role = "commander: reads the tree, sends commands" if client.commander else "reads the tree"
    lines = [f"# {client.name}.pem ({role})", f"user {client.name}", *_reads_tree(topics)]
    if client.commander:
        lines += [
            f"topic write {command_topic(topics, publisher_id)}",
            f"topic read {_replies(topics, publisher_id)}",
        ]
    return "\n".join(lines) + "\n"


def render_acl(
    topics: TopicTree,
    *,
    bridge_cn: str,
    tool_cn: str,
    publisher_id: str,
    clients: Sequence[Client] = (),
) -> str:
    """The whole ACL: header, bridge, people's tools, then each added client."""
    header = (
        "# Mosquitto ACL written by `opcua-mqtt certs`. With use_identity_as_username every user\n"
        "# name is the common name of a client certificate of ca.pem; whatever no line allows\n"
        "# is denied, so a certificate whose name is not here may connect but read and publish\n"
        "# nothing. `opcua-mqtt certs --client NAME [--commander]` appends a block; Mosquitto\n"
        "# reads this file when it starts (or on SIGHUP).\n"
    )
    blocks = [
        header,
        bridge_block(topics, bridge_cn, publisher_id),
        tool_block(topics, tool_cn, publisher_id),
        *(client_block(topics, c, publisher_id) for c in clients),
    ]
    return "\n".join(blocks)


def render_conf(directory: Path, *, port: int, bind: str) -> str:
    """mosquitto.conf naming the files of ``directory`` (absolute paths: Mosquitto resolves
    relative ones against its working directory, not against the file)."""
    d = directory.absolute()
    return f"""\
# Mosquitto 2.0 for an opcua-mqtt bridge, written by `opcua-mqtt certs` next to its PKI.
# Start it with:  mosquitto -c {d / CONF}
# Started as root, Mosquitto drops to its `{BROKER_USER}` user: `certs` made broker.key
# readable by that group (mode 0640). TLS only; every client needs a certificate of ca.pem,
# whose common name becomes its MQTT user name; {ACL} says what each name may do.
# Mosquitto has no trailing comments: keep comments on their own lines.

per_listener_settings false
allow_anonymous false

# Retained metadata and status are kept in memory only; set persistence true and a
# persistence_location the broker's user may write to keep them over a restart. Mosquitto
# saves that file only when it stops cleanly and every autosave_interval seconds (default
# 1800): add autosave_interval 1 so that a crash costs at most the last second of sessions,
# queued messages and retained state.
persistence false

log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true

# The only listener: MQTT over TLS 1.2 or later, no plain-text port.
listener {port} {bind}
protocol mqtt
tls_version tlsv1.2
cafile {d / "ca.pem"}
certfile {d / "broker.pem"}
keyfile {d / "broker.key"}
require_certificate true
use_identity_as_username true

acl_file {d / ACL}
"""


def write_broker_files(directory: Path, conf: str, acl: str) -> None:
    """Write both files (mode 0644: they hold no secret, and the broker's user reads them)."""
    for name, text in ((CONF, conf), (ACL, acl)):
        write_file(directory / name, text.encode(), 0o644)


def append_acl(directory: Path, block: str) -> None:
    write_file(directory / ACL, ("\n" + block).encode(), 0o644, append=True)


def share_key_with_broker(key: Path) -> str | None:
    """Let a Mosquitto started as root read ``key`` after it drops to its own user: group
    ``mosquitto``, mode 0640. Return a warning when that cannot work, else None.

    Started by anyone but root, Mosquitto keeps that user, who owns the 0600 key already."""
    if os.geteuid() != 0:
        return None
    try:
        gid = grp.getgrnam(BROKER_USER).gr_gid
    except KeyError:
        return (
            f"warning: no group '{BROKER_USER}' here, so {key} stays readable by root only; "
            f"Mosquitto started as root drops to its '{BROKER_USER}' user (or nobody) and could "
            "not read it: install Mosquitto (which creates that user and group), then run "
            "`opcua-mqtt certs --force` again, or start mosquitto as a non-root user who owns "
            "the folder"
        )
    os.chown(key, -1, gid)
    os.chmod(key, 0o640)
    blocked = _first_closed_folder(key.absolute().parent, gid)
    if blocked is not None:
        return (
            f"warning: the '{BROKER_USER}' user cannot enter {blocked} "
            f"(mode {stat.S_IMODE(blocked.stat().st_mode):04o}), so a mosquitto started as "
            f"root cannot read {key.name}: use a folder it can reach, e.g. "
            "--dir /etc/mosquitto/opcua-mqtt"
        )
    return None


def _first_closed_folder(folder: Path, gid: int) -> Path | None:
    """The first folder from / down to ``folder`` that the broker's user may not traverse."""
    try:
        uid = pwd.getpwnam(BROKER_USER).pw_uid
    except KeyError:
        uid = -1
    for path in reversed([folder, *folder.parents]):
        st = path.stat()
        if st.st_mode & stat.S_IXOTH:
            continue
        if st.st_gid == gid and st.st_mode & stat.S_IXGRP:
            continue
        if st.st_uid == uid and st.st_mode & stat.S_IXUSR:
            continue
        return path
    return None

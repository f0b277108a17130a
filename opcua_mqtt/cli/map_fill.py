"""What ``map`` fills in besides the nodes: the connection the browse used, the broker, the
PKI of ``opcua-mqtt certs``, and the hand edits of the file it replaces (:mod:`..core.remap`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource

from opcua_mqtt import devpki
from opcua_mqtt.cli import common
from opcua_mqtt.cli.mqtt_options import parse_broker
from opcua_mqtt.core.config.check import check_config
from opcua_mqtt.core.mapping import MappingPlan
from opcua_mqtt.core.remap import Place

EXIT_INVALID = 1
EXIT_USAGE = 2

_DEFAULT_PKI = Path("certs")  # where `opcua-mqtt certs` writes by default
#: the files of `opcua-mqtt certs` that map points the configuration at
_PKI_FILES = (
    "ca.pem",
    "bridge-mqtt.pem",
    "bridge-mqtt.key",
    "metadata-signer.pem",
    "metadata-signer.key",
)
#: connection options that name files, and what they are in a `certs` folder
PKI_OPTIONS = {
    "certificate": "opcua-client.pem",
    "private_key": "opcua-client.key",
    "trust_dir": "trusted-servers",
}
_DEFAULTS_OPTIONS = {
    "publishing_interval": "publishing_interval_ms",
    "sampling_interval": "sampling_interval_ms",
    "queue_size": "queue_size",
    "key_frame_count": "key_frame_count",
    "keep_alive": "keep_alive_ms",
    "encoding": "encoding",
}
#: a place filled from the PKI -> the line its comment goes before
PKI_NOTES: dict[Place, str] = {
    ("mqtt", "tls", "ca"): "  tls:",
    ("metadata_signing", "private_key"): "metadata_signing:",
}
#: connection option -> opcua member of the configuration it carries over to
_CARRIED = {
    "security_policy": "security_policy",
    "certificate": "certificate",
    "private_key": "private_key",
    "trust_dir": "trust_dir",
    "username": "username",
    "password_env": "password_env",
    "timeout": "timeout_s",
}


def given_on_command_line() -> set[str]:
    """The parameters the user gave (not their defaults): these win over the existing file."""
    ctx = click.get_current_context()
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        p.name for p in ctx.command.params if p.name and ctx.get_parameter_source(p.name) in sources
    }


def given_places(given: set[str]) -> set[Place]:
    """The places of the configuration that the given parameters set."""
    places: set[Place] = {("opcua", _CARRIED[p]) for p in given if p in _CARRIED}
    if "security_policy" in given or "security_mode" in given:
        places |= {("opcua", "security_policy"), ("opcua", "security_mode")}
    places |= {("defaults", _DEFAULTS_OPTIONS[p]) for p in given if p in _DEFAULTS_OPTIONS}
    if "profile" in given:
        places |= {
            ("defaults", k)
            for k in ("network_message_content", "dataset_message_content", "key_frame_count")
        }
    if "publisher_id" in given:
        places.add(("publisher_id",))
    if "broker" in given:
        places |= {("mqtt", "host"), ("mqtt", "port")}
    if "mqtt_protocol" in given:
        places.add(("mqtt", "protocol"))
    if "uns_values" in given:
        places.add(("uns",))
    if "topic_template" in given:  # the queue names of every group and writer
        places |= {("writer_groups", "queue_name"), ("writer_groups", "metadata_queue_name")}
    if "certs_dir" in given:
        places |= {("mqtt", "tls", k) for k in ("ca", "certificate", "private_key")}
        places |= {("metadata_signing", k) for k in ("private_key", "certificate_chain")}
        places |= {("opcua", _CARRIED[p]) for p in PKI_OPTIONS}
    return places


def value_at(doc: Any, place: Place) -> Any:
    """What ``doc`` holds at ``place`` (None when nothing)."""
    for key in place:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def pki_folder(certs_dir: Path | None) -> Path | None:
    """The folder of `opcua-mqtt certs` to point at: --certs (which must hold the files), else
    ./certs when it holds them."""
    folder = certs_dir or _DEFAULT_PKI
    missing = [name for name in _PKI_FILES if not (folder / name).is_file()]
    if not missing:
        return folder
    if certs_dir is not None:
        common.fail(
            f"{certs_dir}: no {missing[0]} (expected the files of `opcua-mqtt certs`)",
            EXIT_USAGE,
            f"make them with: opcua-mqtt certs --dir {certs_dir}",
        )
    return None


def pki_publisher_id(pki: Path) -> str | None:
    """The PublisherId the PKI's bridge certificates are issued for (`certs --publisher-id`:
    the MQTT certificate's common name, the signer's binding); None when unreadable."""
    try:
        return devpki.common_name(pki / "bridge-mqtt.pem")
    except (OSError, ValueError, IndexError):
        return None


def relative_to(path: str, base: Path) -> str:
    """A path given relative to the working directory, made relative to the configuration's
    folder (as the bridge reads it); absolute paths stay as they are."""
    if os.path.isabs(path):
        return path
    return os.path.relpath(os.path.abspath(path), os.path.abspath(base))


def carry_connection(plan: MappingPlan, params: dict[str, Any], rebase: Mapping[str, Path]) -> None:
    """The connection that worked for browsing is the one the bridge should use. The paths in
    ``rebase`` are relative to the working directory: made relative to the given folder."""
    opcua = plan.document["opcua"]
    for option, member in _CARRIED.items():
        value = params.get(option)
        if value is not None and value != "":
            if option in rebase:
                value = relative_to(str(value), rebase[option])
            opcua[member] = float(value) if member == "timeout_s" else str(value)
    policy = opcua.get("security_policy")
    if policy is not None:
        mode = params.get("security_mode") or ("None" if policy == "None" else "SignAndEncrypt")
        opcua["security_mode"] = mode


def fill_mqtt(doc: dict[str, Any], broker: str | None, protocol: str | None) -> None:
    mqtt: dict[str, Any] = {}
    if broker is not None:
        try:
            mqtt["host"], mqtt["port"] = parse_broker(broker, tls=True)
        except click.BadParameter as e:
            raise click.BadParameter(e.message, param_hint="--broker") from None
        if not mqtt["host"]:
            raise click.BadParameter(f"{broker!r}: no host", param_hint="--broker")
    if protocol is not None:
        mqtt["protocol"] = protocol
    if mqtt:
        doc["mqtt"] = mqtt


def fill_pki(doc: dict[str, Any], pki: Path, base: Path) -> dict[Place, str]:
    """Point TLS and metadata signing at the folder of `opcua-mqtt certs`; returns the places
    that get a comment, with what they were set to."""

    def path(name: str) -> str:
        return relative_to(str(pki / name), base)

    doc.setdefault("mqtt", {})["tls"] = {
        "ca": path("ca.pem"),
        "certificate": path("bridge-mqtt.pem"),
        "private_key": path("bridge-mqtt.key"),
    }
    doc["metadata_signing"] = {
        "private_key": path("metadata-signer.key"),
        "certificate_chain": path("metadata-signer.pem"),
    }
    return {place: str(value_at(doc, place)) for place in PKI_NOTES}


def existing_config(path: Path) -> dict[str, Any]:
    """The configuration --force replaces, as written, to keep its hand edits; exits 1 when it
    does not validate (its edits could not be told from its mistakes)."""
    text = common.read_text(path, EXIT_USAGE)
    checked = check_config(text, str(path))
    if checked.config is None:
        for issue in checked.errors:
            click.echo(str(issue), err=True)
        common.fail(
            f"{path} does not validate (see above): its hand edits cannot be kept",
            EXIT_INVALID,
            "fix it, or delete it to map afresh",
        )
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert isinstance(data, dict)  # it validated
    return data

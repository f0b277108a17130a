"""From a checked configuration to what the runtime needs: the plan, MQTT and OPC UA options,
the metadata signer. Files (keys, certificates) are read here, once, at start-up."""

from __future__ import annotations

import functools
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
from opcua_mqtt.adapters.opcua import ConnectionOptions, connect
from opcua_mqtt.adapters.spool_store import SpoolError
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan, GroupPlan, WriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.bridge.write_back import WriteBackSettings
from opcua_mqtt.core.config.events import EventWriterConfig
from opcua_mqtt.core.config.model import (
    Config,
    OpcUaConfig,
    PublishingDefaults,
    WriterConfig,
    WriterGroupConfig,
)
from opcua_mqtt.core.config.rules import write_back_allowed
from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.identity import bound_publishers
from opcua_mqtt.core.messages.settings import (
    DataSetFieldContentMask,
    DataSetMessageContentMask,
    JsonMessageSettings,
    dataset_header_mask,
    network_mask,
)
from opcua_mqtt.core.request_auth import Permission, RequestAuth
from opcua_mqtt.core.signing import Signer, TrustStore
from opcua_mqtt.core.topics import TopicTree, reply_prefix

_log = logging.getLogger(__name__)

DM = DataSetMessageContentMask
FM = DataSetFieldContentMask

#: Room above write_back.max_request_bytes for a command's MQTT header and properties (topic,
#: Response Topic, Correlation Data, user properties).
_PACKET_OVERHEAD = 4096

#: Part 14 FieldEncoding1/FieldEncoding2 bits of each configured encoding.
_ENCODING_BITS = {
    "compact": DM.FIELD_ENCODING_1 | DM.FIELD_ENCODING_2,
    "verbose": DM.FIELD_ENCODING_2,
    "reversible": DM.FIELD_ENCODING_1,
    "non-reversible": DM(0),
}
_FIELD_BITS = {
    "status": FM.STATUS_CODE,
    "source_timestamp": FM.SOURCE_TIMESTAMP,
    "server_timestamp": FM.SERVER_TIMESTAMP,
    "source_picoseconds": FM.SOURCE_PICOSECONDS,
    "server_picoseconds": FM.SERVER_PICOSECONDS,
    "raw": FM.RAW_DATA,
}


class SetupError(OpcUaMqttError):
    """A configured file that cannot be used (missing, unreadable, not a key or certificate)."""


@dataclass(frozen=True)
class BridgeSetup:
    plan: BridgePlan
    mqtt: MqttOptions
    sources: dict[str, ConnectionOptions]  # per source name, in the configuration's order
    signer: Signer | None
    write_back: WriteBackSettings | None


def message_settings(writer: WriterConfig, group: WriterGroupConfig) -> JsonMessageSettings:
    """The masks of one writer: the group's NetworkMessage content, the writer's DataSetMessage
    content, field content and encoding."""
    field_mask = FM(0)
    for item in writer.field_content:
        field_mask |= _FIELD_BITS[item]
    return JsonMessageSettings(
        network_mask=network_mask(group.network_message_content),
        dataset_mask=dataset_header_mask(writer.dataset_message_content)
        | _ENCODING_BITS[writer.encoding],
        field_mask=field_mask,
    )


def _group_plan(g: WriterGroupConfig) -> GroupPlan:
    settings = [message_settings(w, g) for w in g.writers]
    if g.bundle_writers and len(set(settings)) > 1:
        raise SetupError(
            f"writer group {g.name!r}: bundle_writers needs the same encoding, field_content "
            "and dataset_message_content for every writer"
        )
    return GroupPlan(
        name=g.name,
        publishing_interval_ms=g.publishing_interval_ms,
        qos=g.qos,
        bundle_writers=g.bundle_writers,
        queue_name=g.queue_name,
        source=g.source,
        settings=settings[0]
        if g.bundle_writers and settings
        else JsonMessageSettings(network_mask=network_mask(g.network_message_content)),
        writers=tuple(
            WriterPlan(
                name=w.name,
                dataset_writer_id=w.dataset_writer_id,
                fields=w.fields,
                key_frame_count=w.key_frame_count,
                keep_alive_ms=int(w.keep_alive_ms),
                settings=None if g.bundle_writers else s,
                queue_name=w.queue_name,
                metadata_queue_name=w.metadata_queue_name,
            )
            for w, s in zip(g.writers, settings, strict=True)
        ),
    )


def event_message_settings(
    writer: EventWriterConfig, defaults: PublishingDefaults
) -> JsonMessageSettings:
    """The masks of an event writer: the default NetworkMessage and DataSetMessage content,
    its encoding, and every field a Variant (Part 14 §7.2.4.5.7: event fields are Variants)."""
    return JsonMessageSettings(
        network_mask=network_mask(defaults.network_message_content),
        dataset_mask=dataset_header_mask(defaults.dataset_message_content)
        | _ENCODING_BITS[writer.encoding],
        field_mask=FM(0),
    )


def plan_from_config(config: Config) -> BridgePlan:
    return BridgePlan(
        publisher_id=config.publisher_id,
        topics=TopicTree(prefix=config.mqtt.topic_prefix),
        groups=tuple(_group_plan(g) for g in config.writer_groups),
        status_interval_s=config.status.interval_s,
        opcua_reconnect_max_s=config.opcua.reconnect_max_s,
        event_writers=tuple(
            EventWriterPlan(e, event_message_settings(e, config.defaults))
            for e in config.event_writers
        ),
        source_reconnect_max_s={s.name: s.reconnect_max_s for s in config.sources},
    )


def _secret(env_name: str | None) -> str | None:
    return os.environ.get(env_name) if env_name else None


def _file(base: Path, name: str | None) -> str | None:
    """Relative paths in the configuration are relative to the configuration file."""
    if name is None:
        return None
    path = Path(name)
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise SetupError(f"{path}: file not found")
    return str(path)


def _warn_if_exposed(key: str | Path | None) -> None:
    """A private key other users can read is a key others may already hold: say so at start
    (a warning, not a refusal: the file system is the operator's to judge)."""
    if key is None:
        return
    try:
        mode = Path(key).stat().st_mode
    except OSError:
        return  # not made yet (the OPC UA client key is created on first use) or reported later
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        _log.warning(
            "private key %s is readable by every user of this machine (mode %04o): "
            "run chmod 600 %s (or 640 for a group that needs it)",
            key,
            stat.S_IMODE(mode),
            key,
        )


def _connection(o: OpcUaConfig, base: Path) -> ConnectionOptions:
    """The session options of one source."""
    return ConnectionOptions(
        endpoint=o.endpoint,
        security_policy=o.security_policy,
        security_mode=o.security_mode,
        certificate=base / (o.certificate or "certs/opcua-client.pem"),
        private_key=base / (o.private_key or "certs/opcua-client.key"),
        trust_dir=(base / o.trust_dir) if o.trust_dir else None,
        username=o.username,
        password=_secret(o.password_env) if o.username else None,
        timeout=o.timeout_s,
        keep_alive_s=o.keep_alive_s,
    )


def bridge_setup(config: Config, config_path: Path) -> BridgeSetup:
    base = config_path.parent
    m = config.mqtt
    tls = TlsOptions(
        enabled=m.tls.enabled,
        ca=_file(base, m.tls.ca),
        certificate=_file(base, m.tls.certificate),
        private_key=_file(base, m.tls.private_key),
        verify=m.tls.verify,
    )
    mqtt = MqttOptions(
        host=m.host,
        port=m.port,
        client_id=m.client_id or config.publisher_id,
        protocol=m.protocol,
        tls=tls,
        username=m.username,
        password=_secret(m.password_env),
        keepalive_s=m.keep_alive_s,
        reconnect_max_s=m.reconnect_max_s,
        spool_messages=m.spool.max_messages,
        spool_bytes=m.spool.max_bytes,
        spool_directory=base / m.spool.directory if m.spool.directory else None,
        # A command larger than write_back.max_request_bytes is dropped by the broker, not
        # read into memory; the largest other message the bridge receives is far smaller.
        maximum_packet_size=config.write_back.max_request_bytes + _PACKET_OVERHEAD
        if config.write_back.enabled
        else None,
    )
    sources = {o.name: _connection(o, base) for o in config.sources}
    opcua_keys = {o.private_key for o in sources.values()}
    for key in (tls.private_key, *opcua_keys, _file(base, config.metadata_signing.private_key)):
        _warn_if_exposed(key)
    signer = None
    s = config.metadata_signing
    if s.private_key and s.certificate_chain:
        key_path = _file(base, s.private_key)
        chain_path = _file(base, s.certificate_chain)
        assert key_path is not None and chain_path is not None
        try:
            signer = Signer.from_pem(Path(key_path).read_bytes(), Path(chain_path).read_bytes())
        except (ValueError, TypeError) as e:
            raise SetupError(f"metadata signing key or certificate unusable: {e}") from None
        bound = bound_publishers(signer.chain[0])
        if config.publisher_id not in bound:
            _log.warning(
                "the metadata signer %s is bound to %s, not to publisher_id %r: subscribers "
                "will refuse its signatures (re-issue it with `opcua-mqtt certs "
                "--publisher-id %s`, or give them a signer map)",
                chain_path,
                ", ".join(repr(b) for b in sorted(bound)) or "no PublisherId",
                config.publisher_id,
                config.publisher_id,
            )
    write_back = _write_back(config, base, signer) if config.write_back.enabled else None
    return BridgeSetup(plan_from_config(config), mqtt, sources, signer, write_back)


def _write_back(config: Config, base: Path, signer: Signer | None) -> WriteBackSettings:
    """The write-back settings; the requester CA bundle is read here. Answers are signed with
    the metadata signer, so that a requester can check who answered."""
    wb = config.write_back
    topics = TopicTree(prefix=config.mqtt.topic_prefix)
    trust = None
    if wb.trust is not None:
        path = _file(base, wb.trust)
        assert path is not None
        try:
            trust = TrustStore.from_pem(Path(path).read_bytes())
        except (OSError, ValueError) as e:
            raise SetupError(f"write_back.trust {path}: unusable: {e}") from None
    permissions = None
    if wb.permissions is not None:
        permissions = tuple(
            Permission(p.identities, write_back_allowed(config, p.allow), frozenset(p.actions))
            for p in wb.permissions
        )
    return WriteBackSettings(
        allowed=write_back_allowed(config),
        max_bytes=wb.max_request_bytes,
        max_targets=wb.max_targets,
        rate_per_s=wb.rate_per_s,
        burst=wb.burst,
        idempotency_window_s=wb.idempotency_window_s,
        total_rate_per_s=wb.total_rate_per_s,
        total_burst=wb.total_burst,
        reply_prefixes=wb.reply_prefixes or (reply_prefix(topics),),
        tree=(topics.prefix, topics.encoding),
        auth=RequestAuth(
            trust=trust,
            require_signature=wb.signature_required,
            max_deadline_s=wb.max_deadline_s,
            permissions=permissions,
        ),
        signer=signer,
        commands_allow=config.commands.allow,
    )


def build_bridge(setup: BridgeSetup) -> Bridge:
    """The Bridge of ``setup``; it opens a new OPC UA session whenever one is lost, so it
    rides out server restarts. SetupError when the disk spool cannot be opened (in use, not
    writable)."""
    try:
        return Bridge(
            setup.plan,
            setup.mqtt,
            {name: functools.partial(connect, o) for name, o in setup.sources.items()},
            signer=setup.signer,
            write_back=setup.write_back,
        )
    except SpoolError as e:
        raise SetupError(str(e)) from None

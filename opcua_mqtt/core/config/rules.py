"""The rules a schema cannot express: unique names and ids, NodeId syntax, option combinations."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opcua_mqtt.core.config.events import event_writer_rules
from opcua_mqtt.core.config.masks import default_mask_rules, mask_rules
from opcua_mqtt.core.config.model import (
    NUMERIC,
    Config,
    Deadband,
    Path,
    PublishingDefaults,
    derive_field_id,
    num,
)
from opcua_mqtt.core.config.queues import queue_names
from opcua_mqtt.core.config.report import Report, show
from opcua_mqtt.core.globs import glob_match
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

_NS_INDEX: Final = re.compile(r"ns=(\d+);")


_LEVELS: Final = ("field", "writer", "group")


class Resolver:
    """Finds a publishing option's value and where it was set (field, writer, group, defaults)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.defaults: Mapping[str, Any] = data.get("defaults") or {}
        self.python = PublishingDefaults()

    def get(self, name: str, levels: Sequence[tuple[Mapping[str, Any], Path]]) -> tuple[Any, Path]:
        for raw, path in levels:
            value = raw.get(name)
            if value is not None:
                return value, (*path, name)
        if name in self.defaults:
            return self.defaults[name], ("defaults", name)
        value = getattr(self.python, name)
        if isinstance(value, Deadband):
            value = value.to_json()
        return value, ("defaults", name)


def _node_id_rule(value: str, path: Path, report: Report, what: str = "NodeId") -> str | None:
    try:
        canonical = canonical_node_id(value)
    except ValueError as e:
        report.add(
            path,
            f"expected a {what} such as 'nsu=urn:plant;s=Line1.Temperature' or 'i=2258', "
            f"got {show(value)}: {e}",
        )
        return None
    m = _NS_INDEX.match(value)
    if m and m.group(1) != "0":
        report.add(
            path,
            f"namespace index {m.group(1)} can change when the server restarts or is updated: "
            "write nsu=<namespace URI>;... (browse shows it)",
            "warning",
        )
    return canonical


_NODE_ID_LIKE: Final = re.compile(r"(?:[isgb]=|ns=\d+;|nsu=)")


def write_back_allowed(config: Config, entries: Iterable[str] | None = None) -> frozenset[str]:
    """The canonical NodeIds that write-back may write: the allow entries (``entries``, by
    default ``write_back.allow``) that are NodeIds, plus the nodes of the fields whose
    ``<group>/<writer>/<field>`` name an entry's glob matches. The same reading of ``allow`` as
    the "matches nothing" rule of :func:`check_config`."""
    names = {f"{g.name}/{w.name}/{f.name}": f.node_id for g, w, f in config.fields()}
    allowed: set[str] = set()
    for entry in config.write_back.allow if entries is None else entries:
        if _NODE_ID_LIKE.match(entry):
            allowed.add(canonical_node_id(entry))
        else:
            allowed |= {
                canonical_node_id(node) for name, node in names.items() if glob_match(entry, name)
            }
    return frozenset(allowed)


def raw_sources(data: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Path]]:
    """The OPC UA servers of a checked file, each with its path: the ``sources`` entries, or
    the ``opcua`` section as the one source named ``default``."""
    if "sources" in data:
        return [(s, ("sources", i)) for i, s in enumerate(data["sources"])]
    return [({"name": "default", **data["opcua"]}, ("opcua",))]


def source_identities(data: Mapping[str, Any]) -> list[str]:
    """Per writer group, the identity of its source (ApplicationUri, else endpoint): what its
    fields' DataSetFieldIds are derived from. Call after :func:`_source_rules` passed."""
    identity = {s["name"]: s.get("server_uri") or s["endpoint"] for s, _ in raw_sources(data)}
    only = next(iter(identity.values()))
    return [identity.get(g.get("source", ""), only) for g in data["writer_groups"]]


def _source_rules(data: Mapping[str, Any], report: Report) -> bool:
    """``opcua`` or ``sources`` (exactly one), unique source names, and a known ``source`` in
    every writer group (required when there are several); whether the file's groups can be
    tied to their sources."""
    if ("opcua" in data) == ("sources" in data):
        report.add(
            ("sources",) if "sources" in data else (),
            "give the OPC UA server as opcua (one server) or as sources (several), "
            + ("not both" if "sources" in data else "one of them is required"),
        )
        return False
    sources = raw_sources(data)
    names: dict[str, Path] = {}
    for raw, path in sources:
        _unique(raw["name"], (*path, "name"), names, report, "source name")
    several = len(sources) > 1
    ok = True
    for gi, group in enumerate(data["writer_groups"]):
        name = group.get("source")
        if name is None and several:
            report.add(
                ("writer_groups", gi),
                f"writer group {group['name']!r} needs a source: one of {', '.join(names)}",
            )
            ok = False
        elif name is not None and name not in names:
            report.add(
                ("writer_groups", gi, "source"),
                f"unknown source {name!r}: expected one of {', '.join(names)}",
            )
            ok = False
    used = {g.get("source") for g in data["writer_groups"]}
    for raw, path in sources if several and ok else ():
        if raw["name"] not in used:
            report.add(
                (*path, "name"),
                f"no writer group reads from source {raw['name']!r}: its session would be "
                "opened for nothing",
                "warning",
            )
    return ok


def semantic_issues(data: Mapping[str, Any], report: Report) -> None:
    if not _source_rules(data, report):
        return
    for raw, path in raw_sources(data):
        _connection_rules(raw, path, report)
    _mqtt_rules(data, report)
    resolver = Resolver(data)
    default_mask_rules(resolver, report)
    group_names: dict[str, Path] = {}
    writer_ids: dict[int, Path] = {}
    field_ids: dict[uuid.UUID, Path] = {}
    published: list[tuple[str, str | None]] = []  # (group/writer/field, canonical node id)
    identities = source_identities(data)
    timing_reported: set[tuple[Path, int, str]] = set()
    groups = data["writer_groups"]
    if not groups and not data.get("event_writers"):
        report.add(("writer_groups",), "no writer groups: nothing is published", "warning")
    for gi, group in enumerate(groups):
        gpath: Path = ("writer_groups", gi)
        _unique(group["name"], (*gpath, "name"), group_names, report, "writer group name")
        pub, _ = resolver.get("publishing_interval_ms", [(group, gpath)])
        mask_rules(group, gpath, resolver, report)
        writer_names: dict[str, Path] = {}
        for wi, writer in enumerate(group["writers"]):
            wpath: Path = (*gpath, "writers", wi)
            _unique(writer["name"], (*wpath, "name"), writer_names, report, "writer name")
            wid = writer["dataset_writer_id"]
            if wid in writer_ids:
                report.add(
                    (*wpath, "dataset_writer_id"),
                    f"dataset_writer_id {wid} is already used by {_where(writer_ids[wid], report)}",
                )
            else:
                writer_ids[wid] = (*wpath, "dataset_writer_id")
            levels_w = [(writer, wpath), (group, gpath)]
            content, content_path = resolver.get("field_content", levels_w)
            if "raw" in content and len(content) > 1:
                report.add(content_path, "raw stands alone: write [raw] or leave raw out")
            keep, keep_path = resolver.get("keep_alive_ms", levels_w)
            if keep < pub and (keep_path, gi, "keep") not in timing_reported:
                timing_reported.add((keep_path, gi, "keep"))
                report.add(
                    keep_path,
                    f"keep_alive_ms {num(keep)} is shorter than the publishing_interval_ms "
                    f"{num(pub)} of writer group {group['name']!r}: keep-alives cannot come "
                    "more often than the group publishes",
                    "warning",
                )
            _field_rules(
                group,
                gi,
                writer,
                wpath,
                levels_w,
                pub,
                resolver,
                identities[gi],
                field_ids,
                published,
                timing_reported,
                report,
            )
    event_writer_rules(data, report)
    if (data.get("commands") or {}).get("allow") and not (data.get("write_back") or {}).get(
        "enabled"
    ):
        report.add(
            ("commands", "allow"),
            "commands come through write-back, which is off: set write_back.enabled",
            "warning",
        )
    _write_back_rules(data, published, report)
    queue_names(data, report)  # the custom topics: templates, topic names, collisions


def _field_rules(
    group: Mapping[str, Any],
    gi: int,
    writer: Mapping[str, Any],
    wpath: Path,
    levels_w: list[tuple[Mapping[str, Any], Path]],
    pub: float,
    resolver: Resolver,
    identity: str,
    field_ids: dict[uuid.UUID, Path],
    published: list[tuple[str, str | None]],
    timing_reported: set[tuple[Path, int, str]],
    report: Report,
) -> None:
    names: dict[str, Path] = {}
    nodes: dict[str, Path] = {}
    own_ids: dict[uuid.UUID, Path] = {}
    for fi, f in enumerate(writer["fields"]):
        fpath: Path = (*wpath, "fields", fi)
        _unique(f["name"], (*fpath, "name"), names, report, "field name")
        node = _node_id_rule(f["node_id"], (*fpath, "node_id"), report)
        published.append((f"{group['name']}/{writer['name']}/{f['name']}", node))
        if f.get("data_type") is not None:
            _node_id_rule(f["data_type"], (*fpath, "data_type"), report, "DataType NodeId")
        duplicate_node = False
        if node is not None:
            if node in nodes:
                duplicate_node = True
                report.add(
                    (*fpath, "node_id"),
                    f"node {f['node_id']} is already published by {_where(nodes[node], report)} "
                    "of this writer",
                )
            else:
                nodes[node] = (*fpath, "node_id")
        explicit = f.get("dataset_field_id")
        fid: uuid.UUID | None = uuid.UUID(explicit) if explicit else None
        if fid is None and node is not None:
            fid = derive_field_id(identity, node)
        id_path: Path = (*fpath, "dataset_field_id") if explicit else fpath
        if fid is not None and not duplicate_node:
            if fid in own_ids:
                report.add(
                    id_path,
                    f"dataset_field_id {fid} is already used by {_where(own_ids[fid], report)} "
                    "of this writer",
                )
            elif fid in field_ids:
                report.add(
                    id_path,
                    f"dataset_field_id {fid} is also used by {_where(field_ids[fid], report)}: "
                    "subscribers that track fields by id across writers will mix them up",
                    "warning",
                )
            own_ids.setdefault(fid, id_path)
            field_ids.setdefault(fid, id_path)
        rank = f.get("value_rank", -1)
        dims = f.get("array_dimensions") or []
        if dims:
            wanted = {-1: 0, -3: 1}.get(rank, rank if rank > 0 else None)
            if wanted is not None and len(dims) != wanted and not (rank == -3 and len(dims) < 1):
                report.add(
                    (*fpath, "array_dimensions"),
                    f"expected {wanted} dimension{'s' if wanted != 1 else ''} for value_rank "
                    f"{rank}, got {len(dims)}",
                )
        builtin = f.get("builtin_type")
        deadband = f.get("deadband")
        if (
            deadband
            and deadband.get("type", "none") != "none"
            and builtin is not None
            and builtin not in NUMERIC
        ):
            report.add(
                (*fpath, "deadband"),
                f"a deadband filters numeric values only, and this field is a {builtin}",
            )
        levels_f = [(f, fpath), *levels_w]
        sampling, sampling_path = resolver.get("sampling_interval_ms", levels_f)
        if sampling > pub and (sampling_path, gi, "sampling") not in timing_reported:
            timing_reported.add((sampling_path, gi, "sampling"))
            report.add(
                sampling_path,
                f"sampling_interval_ms {num(sampling)} is longer than the "
                f"publishing_interval_ms {num(pub)} of writer group {group['name']!r}: "
                "most of its messages carry no new value from the fields sampled this slowly",
                "warning",
            )


def _unique(name: str, path: Path, seen: dict[str, Path], report: Report, what: str) -> None:
    if name in seen:
        report.add(path, f"{what} {name!r} is already used by {_where(seen[name], report)}")
    else:
        seen[name] = path


def _where(path: Path, report: Report) -> str:
    text = "/".join(str(p) for p in path)
    line = report.lines.line(path)
    return f"{text} (line {line})" if line else text


def _connection_rules(opcua: Mapping[str, Any], path: Path, report: Report) -> None:
    policy = opcua.get("security_policy", "Basic256Sha256")
    mode = opcua.get("security_mode", "SignAndEncrypt")
    if (policy == "None") != (mode == "None"):
        report.add(
            (*path, "security_mode"),
            f"security_mode {mode} does not go with security_policy {policy}: policy None "
            "needs mode None, any other policy Sign or SignAndEncrypt",
        )
    elif policy == "None":
        report.add(
            (*path, "security_policy"),
            "security policy None: the OPC UA session is neither signed nor encrypted",
            "warning",
        )
    if opcua.get("username") and not opcua.get("password_env", "OPCUA_PASSWORD"):
        report.add(
            (*path, "password_env"),
            "username needs password_env: the environment variable that holds its password",
        )


def _mqtt_rules(data: Mapping[str, Any], report: Report) -> None:
    mqtt = data.get("mqtt") or {}
    tls = mqtt.get("tls") or {}
    if not tls.get("enabled", True):
        report.add(
            ("mqtt", "tls", "enabled"),
            "TLS is off: data, metadata and any MQTT password travel in clear text",
            "warning",
        )
    elif not tls.get("verify", True):
        report.add(
            ("mqtt", "tls", "verify"),
            "the broker's certificate is not checked: anyone on the path can pose as the broker",
            "warning",
        )
    if (tls.get("certificate") is None) != (tls.get("private_key") is None):
        which = "certificate" if tls.get("certificate") is None else "private_key"
        report.add(("mqtt", "tls", which), "mutual TLS needs both certificate and private_key")
    prefix = mqtt.get("topic_prefix", "opcua")
    try:
        TopicTree(prefix=prefix)
    except ValueError as e:
        report.add(("mqtt", "topic_prefix"), f"expected a topic prefix, got {show(prefix)}: {e}")
    signing = data.get("metadata_signing") or {}
    if (signing.get("private_key") is None) != (signing.get("certificate_chain") is None):
        which = "private_key" if signing.get("private_key") is None else "certificate_chain"
        report.add(
            ("metadata_signing", which),
            "signing needs both private_key and certificate_chain (or neither)",
        )
    elif signing.get("private_key") is None:
        report.add(
            ("metadata_signing",),
            "metadata is not signed: subscribers cannot tell it from forged metadata "
            "(docs/signing.md; `opcua-mqtt certs` makes a signing key to try it with)",
            "warning",
        )
    metrics_host = (data.get("metrics") or {}).get("host", "127.0.0.1")
    if not _is_loopback(metrics_host):
        report.add(
            ("metrics", "host"),
            f"the metrics endpoint on {metrics_host} has no authentication: anyone who can "
            "reach that address reads the bridge's state",
            "warning",
        )
    content = (data.get("defaults") or {}).get("field_content", [])
    if "raw" in content and len(content) > 1:
        report.add(("defaults", "field_content"), "raw stands alone: write [raw] or leave raw out")
    for gi, group in enumerate(data["writer_groups"]):
        content = group.get("field_content") or []
        if "raw" in content and len(content) > 1:
            report.add(
                ("writer_groups", gi, "field_content"),
                "raw stands alone: write [raw] or leave raw out",
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: where it points is decided elsewhere


def _write_back_rules(
    data: Mapping[str, Any], published: list[tuple[str, str | None]], report: Report
) -> None:
    wb = data.get("write_back") or {}
    enabled = bool(wb.get("enabled", False))
    writable: list[str] = []
    field_names = {name for name, _ in published}
    for i, node in enumerate(wb.get("writable_nodes", [])):
        path: Path = ("write_back", "writable_nodes", i)
        canonical = _node_id_rule(node["node_id"], (*path, "node_id"), report)
        if canonical is not None:
            writable.append(canonical)
        if node.get("field") is not None and node["field"] not in field_names:
            report.add((*path, "field"), f"no field {node['field']!r} is configured", "warning")
    _signature_rules(wb, report)
    allow = wb.get("allow", [])
    if enabled and not allow:
        report.add(
            ("write_back", "allow"),
            "write-back is enabled but allow is empty: every command will be refused",
            "warning",
        )
    entries: list[tuple[Path, str]] = [(("write_back", "allow", i), e) for i, e in enumerate(allow)]
    for pi, permission in enumerate(wb.get("permissions") or []):
        entries += [
            (("write_back", "permissions", pi, "allow", i), e)
            for i, e in enumerate(permission["allow"])
        ]
    for path, entry in entries:
        if _NODE_ID_LIKE.match(entry):
            # Any node may be allowed, published or not (docs/write-back.md): only the syntax
            # can be checked here; the server says at write time whether the node exists.
            _node_id_rule(entry, path, report)
            continue
        try:
            if any(glob_match(entry, name) for name in field_names):
                continue
        except ValueError as e:
            report.add(path, str(e))
            continue
        report.add(
            path,
            f"{entry!r} matches no configured field "
            "(expected a NodeId or a <group>/<writer>/<field> glob)",
            "error" if enabled else "warning",
        )


def _signature_rules(wb: Mapping[str, Any], report: Report) -> None:
    """Requester signatures and permissions: what needs what (docs/write-back.md)."""
    required = wb.get("require_signature")
    trust = wb.get("trust")
    if required and trust is None:
        report.add(
            ("write_back", "require_signature"),
            "signed commands are required but write_back.trust names no CA to verify them",
        )
    if wb.get("permissions") is not None and (trust is None or required is False):
        report.add(
            ("write_back", "permissions"),
            "permissions name certificate identities: they need write_back.trust, and "
            "require_signature not false",
        )
    window = float(wb.get("idempotency_window_s", 300.0))
    if float(wb.get("max_deadline_s", 60.0)) > window:
        report.add(
            ("write_back", "max_deadline_s"),
            f"longer than idempotency_window_s ({window:g} s): a signed command could be "
            "replayed after its RequestId is forgotten and before its Deadline",
        )

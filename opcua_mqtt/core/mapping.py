"""``map``: from what browse found to a publishing configuration, with ids that stay put.

The shape (documented in docs/configuration-design.md):

* **writers**: one DataSetWriter per object - a variable goes to its nearest ancestor that is not
  a variable, so the properties of a variable (``Temperature/EURange``) travel with it;
* **writer groups**: one per top-level object under the start node (``group_by="top"``), one per
  writer (``"parent"``), or one for everything (``"none"``);
* **names** come from BrowseNames made safe for JSON members and topic levels (anything but
  letters, digits, ``_``, ``.`` and ``-`` becomes ``_``); a property is named with its variable
  (``Temperature.EURange``). Names that collide in one scope are all lengthened with their
  browse path (``Filler.Motor`` and ``Capper.Motor``), so the result does not depend on the
  order the server reported them in;
* **ids** are derived, never counted: a DataSetFieldId is a UUID version 5 of the server's
  identity (ApplicationUri, else endpoint) and the variable's NodeId in ``nsu=`` form; a
  DataSetWriterId hashes the identity and the object's NodeId into 1..65535. Mapping the same
  server again gives the same ids, and adding a variable never moves another one's ids. Two
  objects whose hashes collide are settled by their sorted keys: the smaller keeps the slot, the
  other probes further (avoiding every uncontested slot). So an id can only move when a new
  object collides with it, a chance of about n/65535 for n writers.

Everything is sorted, so mapping twice gives byte-identical files. Pure: no I/O.
"""

from __future__ import annotations

import enum
import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.config.check import config_from_dict
from opcua_mqtt.core.config.model import BUILTIN_TYPES, Config, PublishingDefaults, derive_field_id
from opcua_mqtt.core.globs import glob_match, glob_regex
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import canonical_node_id

__all__ = [
    "WRITER_ID_SLOTS",
    "GroupBy",
    "MapSettings",
    "MappingPlan",
    "MappingRules",
    "assign_writer_ids",
    "map_browse_result",
    "plan_mapping",
    "sanitize_name",
    "writer_id_slot",
]

WRITER_ID_SLOTS: Final = 65535  # DataSetWriterId is a UInt16; 0 is invalid
_NS_INDEX: Final = re.compile(r"ns=\d+;")
_KNOWN_START_NAMES: Final = {"i=84": "Root", "i=85": "Objects", "i=86": "Types", "i=87": "Views"}
SERVER_OBJECT: Final = "i=2253"  # the Server object: the server's own status and diagnostics


class GroupBy(enum.StrEnum):
    """How writers are gathered into writer groups."""

    TOP = "top"  # one group per top-level object under the start node
    PARENT = "parent"  # one group per writer (its object)
    NONE = "none"  # one group


@dataclass(frozen=True)
class MappingRules:
    """Which variables become fields. Every given rule must hold.

    ``include``/``exclude`` are browse-path globs (:mod:`opcua_mqtt.core.globs`); a pattern that
    matches an object takes everything below it. ``node_ids`` are globs over the NodeId in both
    ``nsu=`` and ``ns=<index>`` form, or regular expressions written ``re:<regex>`` (searched).
    ``parent_classes`` keeps variables whose parent is of one of the classes: by default Object
    and Variable (the properties of a variable, such as EURange, travel with it), which leaves
    out the InputArguments/OutputArguments of Methods - descriptions, not process values.
    ``data_types`` names DataTypes or built-in types (case-insensitive). Namespace 0 variables
    (the Server object's diagnostics) are left out unless ``standard_nodes``; variables this
    user may not read are always left out.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    node_ids: tuple[str, ...] = ()
    parent_classes: tuple[NodeClass, ...] = (NodeClass.OBJECT, NodeClass.VARIABLE)
    data_types: tuple[str, ...] = ()
    writable_only: bool = False
    standard_nodes: bool = False
    group_by: GroupBy = GroupBy.TOP

    def __post_init__(self) -> None:
        for pattern in (*self.include, *self.exclude):
            glob_regex(pattern)  # ValueError names the pattern
        for pattern in self.node_ids:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as e:
                    raise ValueError(f"bad regular expression {pattern[3:]!r}: {e}") from None


@dataclass(frozen=True)
class MapSettings:
    """What ``map`` writes besides the fields: the publisher id, the ``defaults`` section and
    the custom topics of a Unified Namespace (docs/uns.md).

    ``topic_template`` becomes the writers' ``queue_name`` (``metadata_topic_template``, by
    default the same plus ``/metadata``, their ``metadata_queue_name``): ``{path}`` in it is
    replaced here by the browse path of the writer's object, one level per BrowseName made
    safe like names are, and the template is then written on each writer; without ``{path}``
    it is written once per writer group. ``uns`` is the ``uns`` section (its variables).
    """

    publisher_id: str | None = None  # None: derived from the endpoint's host
    defaults: PublishingDefaults = field(default_factory=PublishingDefaults)
    topic_template: str | None = None
    metadata_topic_template: str | None = None
    uns: Mapping[str, str] = field(default_factory=dict)

    def queue_templates(self, path: Sequence[str] | None = None) -> dict[str, str]:
        """The queue_name and metadata_queue_name entries: of a writer whose object has the
        browse ``path``, or (None) of a writer group."""
        if self.topic_template is None:
            return {}
        meta = self.metadata_topic_template or self.topic_template + "/metadata"
        templates = {"queue_name": self.topic_template, "metadata_queue_name": meta}
        if "{path}" not in self.topic_template + meta:
            return templates if path is None else {}
        if path is None:
            return {}
        levels = "/".join(sanitize_name(p) for p in path)
        return {k: v.replace("{path}", levels) for k, v in templates.items()}


@dataclass
class MappingPlan:
    """The configuration document ``map`` built, and what it left out and why."""

    document: dict[str, Any]
    variables: int  # variables in the browse result
    mapped: int
    skipped: list[tuple[str, str]]  # (node id, reason) for variables that could not be mapped
    writer_ids: dict[str, int] = field(default_factory=dict)  # object NodeId -> DataSetWriterId


# ----------------------------------------------------------------------------------------- ids


def writer_id_slot(key: str, attempt: int = 0) -> int:
    """The ``attempt``-th candidate DataSetWriterId (1..65535) of a writer key."""
    text = key if attempt == 0 else f"{key}\n#{attempt}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % WRITER_ID_SLOTS + 1


def assign_writer_ids(keys: Iterable[str]) -> dict[str, int]:
    """DataSetWriterIds for writer keys, unique and independent of the order given.

    Each key takes its hash slot; when several want one slot the smallest key keeps it and the
    others, in sorted order, probe their own sequence of slots, skipping every slot some key
    has as its first choice - so a key without a collision never moves.
    """
    ordered = sorted(set(keys))
    if len(ordered) > WRITER_ID_SLOTS:
        raise ValueError(
            f"{len(ordered)} writers do not fit the {WRITER_ID_SLOTS} DataSetWriterIds"
        )
    owners: dict[int, str] = {}
    losers: list[str] = []
    for key in ordered:
        slot = writer_id_slot(key)
        if slot in owners:
            losers.append(key)
        else:
            owners[slot] = key
    out = {key: slot for slot, key in owners.items()}
    taken = set(owners)
    for key in losers:
        slot = _probe(key, taken)
        taken.add(slot)
        out[key] = slot
    return out


def _probe(key: str, taken: set[int]) -> int:
    for attempt in range(1, 1_000_000):
        slot = writer_id_slot(key, attempt)
        if slot not in taken:
            return slot
    return next(s for s in range(1, WRITER_ID_SLOTS + 1) if s not in taken)  # pragma: no cover


# --------------------------------------------------------------------------------------- names

_UNSAFE: Final = re.compile(r"[^\w.-]+")


def sanitize_name(text: str) -> str:
    """A name safe as a JSON member and a topic level: runs of anything but letters, digits,
    ``_``, ``.`` and ``-`` become one ``_``."""
    out = _UNSAFE.sub("_", text).strip("_")
    return out or "_"


def _short_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def _path_candidates(path: Sequence[str], key: str, shortest: int = 1) -> list[str]:
    """Ever longer names for one item: the last ``shortest`` segments joined by '.', one more,
    ..., the whole path, then the whole path with a hash."""
    parts = [sanitize_name(p) for p in path] or ["_"]
    first = max(1, min(shortest, len(parts)))
    out = [".".join(parts[-n:]) for n in range(first, len(parts) + 1)]
    out.append(f"{out[-1]}_{_short_hash(key)}")
    return out


def _unique_names(candidates: Mapping[str, list[str]]) -> dict[str, str]:
    """One name per key, no two equal; the outcome does not depend on order.

    Each key's candidates are ever longer names, the last one with a hash. In a clash, every
    key that can still take a longer path-based name does; only when none can do the keys fall
    back to their hashed names. So ``Level`` and ``Error/Level`` become ``Level`` and
    ``Error.Level``, not two hashes.
    """
    options = {k: list(v) for k, v in candidates.items()}
    level = dict.fromkeys(options, 0)
    for _ in range(10_000):
        names = {k: options[k][level[k]] for k in options}
        holders: dict[str, list[str]] = {}
        for key, name in names.items():
            holders.setdefault(name, []).append(key)
        clashes = [sorted(ks) for ks in holders.values() if len(ks) > 1]
        if not clashes:
            return names
        for clash in clashes:
            movers = [k for k in clash if level[k] < len(options[k]) - 2]
            if not movers:
                movers = [k for k in clash if level[k] < len(options[k]) - 1]
            if not movers:  # only if two short hashes collide: number them in key order
                for n, key in enumerate(clash, 1):
                    options[key].append(f"{options[key][-1]}_{n}")
                movers = clash
            for key in movers:
                level[key] += 1
    raise AssertionError("name disambiguation did not settle")  # pragma: no cover


# ------------------------------------------------------------------------------------ planning


@dataclass
class _Var:
    node: BrowsedNode
    node_id: str  # canonical nsu= form
    writer_key: str  # canonical NodeId of the writer's object
    object_path: tuple[str, ...]
    relative_path: tuple[str, ...]
    data_type: str | None


class _Space:
    """The browse result indexed by canonical NodeId."""

    def __init__(self, result: BrowseResult) -> None:
        self.result = result
        self.codec = JsonCodec(namespaces=result.namespaces or None)
        self.nodes: dict[str, BrowsedNode] = {}
        for node in result.nodes:
            key = self.canonical(node.node_id)
            if key is not None:
                self.nodes.setdefault(key, node)
        self.start = self.canonical(result.start_node) or result.start_node

    def canonical(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        try:
            if _NS_INDEX.match(node_id):  # index form: the server's namespace table has the URI
                text = self.codec.encode_node_id(self.codec.decode_node_id(node_id))
                node_id = text if isinstance(text, str) else node_id
            return canonical_node_id(node_id)
        except ValueError:
            return None

    def index_form(self, node_id: str) -> str:
        """``ns=<index>;…`` form of a canonical NodeId, for patterns written that way."""
        m = re.match(r"nsu=([^;]*);", node_id)
        if not m:
            return node_id
        index = self.codec.namespaces.index(urllib.parse.unquote(m.group(1)))
        return node_id if index is None else f"ns={index};{node_id[m.end() :]}"

    def parent(self, node: BrowsedNode) -> str:
        return self.canonical(node.parent_node_id) or self.start

    def under_server(self, key: str) -> bool:
        """Whether the node is the Server object or below it (by the browse's parent links)."""
        seen: set[str] = set()
        while key not in seen:
            if key == SERVER_OBJECT:
                return True
            seen.add(key)
            node = self.nodes.get(key)
            if node is None:
                return False
            key = self.parent(node)
        return False

    def writer_object(self, node: BrowsedNode) -> str:
        """The nearest ancestor that is not a variable (the start node at the latest)."""
        key = self.parent(node)
        seen = {key}
        while (up := self.nodes.get(key)) is not None and up.node_class is NodeClass.VARIABLE:
            key = self.parent(up)
            if key in seen:
                break
            seen.add(key)
        return key

    def path_of(self, key: str) -> tuple[str, ...]:
        node = self.nodes.get(key)
        return node.browse_path if node is not None and key != self.start else ()

    def start_name(self) -> str:
        node = self.nodes.get(self.start)
        if node is not None and node.browse_name:
            return sanitize_name(node.browse_name)
        known = _KNOWN_START_NAMES.get(self.start)
        return known or sanitize_name(self.start.rsplit(";", 1)[-1].partition("=")[2])


def _matches_path(patterns: Sequence[str], path: tuple[str, ...]) -> bool:
    """A pattern matching the path or one of its ancestors (a pattern naming an object takes
    what is below it)."""
    texts = ["/".join(path[:n]) for n in range(len(path), 0, -1)]
    return any(glob_match(p, t) for p in patterns for t in texts)


def _matches_node_id(patterns: Sequence[str], forms: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("re:"):
            if any(re.search(pattern[3:], f) for f in forms):
                return True
        elif any(fnmatchcase(f, pattern) for f in forms):
            return True
    return False


def _type_names(node: BrowsedNode, space: _Space) -> set[str]:
    names = {node.data_type_name, node.data_type, space.canonical(node.data_type)}
    names.add(_builtin_name(node))
    return {n.lower() for n in names if n}


def _wanted(
    node: BrowsedNode, node_id: str, space: _Space, rules: MappingRules, wanted_types: set[str]
) -> bool:
    """The rules that need a valid NodeId: namespace, Server object, NodeId patterns, parent
    class, data type, writability."""
    if not rules.standard_nodes:
        if not node_id.startswith(("nsu=", "ns=")):
            return False
        if not rules.include and space.under_server(node_id):
            return False
    if rules.node_ids and not _matches_node_id(
        rules.node_ids, [node_id, space.index_form(node_id)]
    ):
        return False
    if rules.parent_classes:
        parent = space.nodes.get(space.parent(node))
        parent_class = parent.node_class if parent is not None else NodeClass.OBJECT
        if parent_class not in rules.parent_classes:
            return False
    if wanted_types and not wanted_types & _type_names(node, space):
        return False
    return not (rules.writable_only and not node.writable)


def _select(space: _Space, rules: MappingRules, skipped: list[tuple[str, str]]) -> list[_Var]:
    """The variables the rules keep; ``skipped`` gets those kept but not mappable (and only
    those: a node the filters leave out is no news)."""
    wanted_types = {t.lower() for t in rules.data_types}
    out: dict[str, _Var] = {}
    for node in space.result.variables():
        node_id = space.canonical(node.node_id)
        if node_id in out:
            continue
        if node_id is not None and not _wanted(node, node_id, space, rules, wanted_types):
            continue
        if rules.include and not _matches_path(rules.include, node.browse_path):
            continue
        if rules.exclude and _matches_path(rules.exclude, node.browse_path):
            continue
        if node_id is None:
            if not rules.node_ids:
                skipped.append((node.node_id, "not a valid NodeId"))
            continue
        if node.readable is False:
            skipped.append((node_id, "this user may not read it"))
            continue
        writer_key = space.writer_object(node)
        object_path = space.path_of(writer_key)
        n = len(object_path)
        relative = node.browse_path[n:] if node.browse_path[:n] == object_path else node.browse_path
        out[node_id] = _Var(
            node=node,
            node_id=node_id,
            writer_key=writer_key,
            object_path=object_path,
            relative_path=relative or (node.browse_name,),
            data_type=space.canonical(node.data_type),
        )
    return [out[k] for k in sorted(out)]


def _group_key(var: _Var, group_by: GroupBy) -> str:
    if group_by is GroupBy.PARENT:
        return var.writer_key
    if group_by is GroupBy.TOP and var.object_path:
        return "top\n" + var.object_path[0]
    return "start"


def _builtin_name(node: BrowsedNode) -> str | None:
    if node.builtin_type is not None and 0 < node.builtin_type < len(BUILTIN_TYPES):
        return BUILTIN_TYPES[node.builtin_type]
    return None


def _field_entry(var: _Var, name: str, identity: str) -> dict[str, Any]:
    node = var.node
    entry: dict[str, Any] = {
        "name": name,
        "node_id": var.node_id,
        "dataset_field_id": str(derive_field_id(identity, var.node_id)),
    }
    builtin = _builtin_name(node)
    if builtin is not None:
        entry["builtin_type"] = builtin
    if var.data_type is not None:
        entry["data_type"] = var.data_type
    rank = node.value_rank
    if rank is not None and rank != -1 and -3 <= rank <= 2**31 - 1:
        entry["value_rank"] = rank
        dims = node.array_dimensions
        if rank > 0 and dims and len(dims) == rank and all(0 <= d < 2**32 for d in dims):
            entry["array_dimensions"] = list(dims)
    return entry


def plan_mapping(
    result: BrowseResult,
    rules: MappingRules | None = None,
    settings: MapSettings | None = None,
) -> MappingPlan:
    """The configuration document for the variables of ``result`` that ``rules`` select."""
    rules = rules or MappingRules()
    settings = settings or MapSettings()
    space = _Space(result)
    identity = result.server_uri or result.endpoint
    skipped: list[tuple[str, str]] = []
    variables = _select(space, rules, skipped)

    # writer groups -> writers -> variables, keyed by stable keys, named afterwards
    groups: dict[str, dict[str, list[_Var]]] = {}
    for var in variables:
        groups.setdefault(_group_key(var, rules.group_by), {}).setdefault(
            var.writer_key, []
        ).append(var)
    writer_ids = assign_writer_ids(f"{identity}\n{k}" for ws in groups.values() for k in ws)
    start_name = space.start_name()

    def object_candidates(key: str) -> list[str]:
        path = space.path_of(key)
        return (
            _path_candidates(path, key)
            if path
            else [start_name, f"{start_name}_{_short_hash(key)}"]
        )

    def group_candidates(key: str) -> list[str]:
        if rules.group_by is GroupBy.PARENT:
            return object_candidates(key)
        if key == "start":
            return [start_name, f"{start_name}_{_short_hash(key)}"]
        return _path_candidates([key.partition("\n")[2]], key)

    group_names = _unique_names({key: group_candidates(key) for key in groups})
    out_groups: list[dict[str, Any]] = []
    writable: list[dict[str, Any]] = []
    for gkey, writers in groups.items():
        gname = group_names[gkey]
        writer_names = _unique_names({key: object_candidates(key) for key in writers})
        out_writers: list[dict[str, Any]] = []
        for wkey, members in writers.items():
            wname = writer_names[wkey]
            field_names = _unique_names(
                {
                    v.node_id: _path_candidates(
                        v.node.browse_path or v.relative_path, v.node_id, len(v.relative_path)
                    )
                    for v in members
                }
            )
            fields = [_field_entry(v, field_names[v.node_id], identity) for v in members]
            fields.sort(key=lambda f: str(f["name"]))
            for v in members:
                if v.node.writable:
                    entry = {"field": f"{gname}/{wname}/{field_names[v.node_id]}"}
                    entry["node_id"] = v.node_id
                    builtin = _builtin_name(v.node)
                    if builtin is not None:
                        entry["builtin_type"] = builtin
                    writable.append(entry)
            out_writers.append(
                {
                    "name": wname,
                    "dataset_writer_id": writer_ids[f"{identity}\n{wkey}"],
                    **settings.queue_templates(space.path_of(wkey) or (start_name,)),
                    "fields": fields,
                }
            )
        out_writers.sort(key=lambda w: str(w["name"]))
        out_groups.append({"name": gname, **settings.queue_templates(), "writers": out_writers})
    out_groups.sort(key=lambda g: str(g["name"]))
    writable.sort(key=lambda n: str(n["field"]))

    opcua: dict[str, Any] = {"endpoint": result.endpoint}
    if result.server_uri:
        opcua["server_uri"] = result.server_uri
    document: dict[str, Any] = {
        "version": 1,
        "publisher_id": settings.publisher_id or _publisher_id(result.endpoint),
        "opcua": opcua,
        "defaults": settings.defaults.to_json(),
        **({"uns": dict(settings.uns)} if settings.uns else {}),
        "writer_groups": out_groups,
        "write_back": {"enabled": False, "allow": [], "writable_nodes": writable},
    }
    return MappingPlan(
        document=document,
        variables=len(result.variables()),
        mapped=len(variables),
        skipped=skipped,
        writer_ids={k: writer_ids[f"{identity}\n{k}"] for ws in groups.values() for k in ws},
    )


def _publisher_id(endpoint: str) -> str:
    try:
        host = urllib.parse.urlsplit(endpoint).hostname
    except ValueError:
        host = None
    return f"opcua-mqtt-{sanitize_name(host)}" if host else "opcua-mqtt"


def map_browse_result(
    result: BrowseResult,
    rules: MappingRules | None = None,
    settings: MapSettings | None = None,
) -> Config:
    """The checked configuration for ``result`` (ConfigError if it would not validate)."""
    return config_from_dict(plan_mapping(result, rules, settings).document, source="<map>")

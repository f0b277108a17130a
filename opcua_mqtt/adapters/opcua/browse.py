"""Browse: a breadth-first walk of hierarchical references, each node once.

Many nodes per Browse/Read request within the server's OperationLimits, several requests in
flight (the session's batcher). asyncua pitfalls this module is shaped by (asyncua 2.1):

* ``ua.BrowseParameters()`` puts *now* into ``View.Timestamp``; servers may refuse a view at a
  time they do not keep: the timestamp is set to the null DateTime (1601) (batching.py);
* the client's supervisor probes the server every ``watchdog_intervall``: batches are capped at
  1,000 operations so requests stay short (connection.py sets the interval);
* the asyncua *server* implements neither continuation points nor BrowseNext (it returns all
  references at once): the BrowseNext path is tested against a fake server in the unit tests.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from opcua_mqtt.adapters.opcua.batching import (
    DEFAULT_CONCURRENCY,
    Batcher,
    BrowseStats,
    browse_descriptions,
    stated_limit,
)
from opcua_mqtt.adapters.opcua.connection import ConnectionOptions, connect, normalise_endpoint
from opcua_mqtt.adapters.opcua.facts import local_node_id, resolve_builtin_types
from opcua_mqtt.adapters.opcua.failures import (
    CONNECTION_LOST,
    USER_REJECTED,
    OpcUaConnectionError,
    status_name,
)
from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.errors import EncodeError, OpcUaMqttError
from opcua_mqtt.core.globs import glob_regex
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

_log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

_CURRENT_READ: Final = 0x01
_CURRENT_WRITE: Final = 0x02
_NODE_CLASSES: Final = {
    ua.NodeClass.Object: NodeClass.OBJECT,
    ua.NodeClass.Variable: NodeClass.VARIABLE,
    ua.NodeClass.Method: NodeClass.METHOD,
    ua.NodeClass.ObjectType: NodeClass.OBJECT_TYPE,
    ua.NodeClass.VariableType: NodeClass.VARIABLE_TYPE,
    ua.NodeClass.ReferenceType: NodeClass.REFERENCE_TYPE,
    ua.NodeClass.DataType: NodeClass.DATA_TYPE,
    ua.NodeClass.View: NodeClass.VIEW,
}
_A = ua.AttributeIds
_VARIABLE_ATTRIBUTES: Final = (
    _A.Description,
    _A.DataType,
    _A.ValueRank,
    _A.ArrayDimensions,
    _A.AccessLevel,
    _A.UserAccessLevel,
)
# Attributes whose refusal leaves the node usable: ArrayDimensions is optional (OPC 10000-3),
# UserAccessLevel falls back to AccessLevel, a Bad value is a value. Any other refusal (and a
# Description refused other than as absent) records the node with `error`.
_OPTIONAL: Final = frozenset({_A.ArrayDimensions, _A.UserAccessLevel, _A.Value, _A.EventNotifier})
_SUBSCRIBE_TO_EVENTS: Final = 0x01  # EventNotifier bit (OPC 10000-3 §8.59)
_BUILTIN_NAMES: Final = {
    i: str(ua.ObjectIdNames[i]) for i in range(1, 30)
}  # Boolean..DiagnosticInfo, Number, Integer, UInteger, Enumeration


@dataclass(slots=True)
class _Found:
    """A node met during the walk, before its attributes are known."""

    node_id: ua.NodeId
    node_class: ua.NodeClass
    browse_name: str
    display_name: str
    path: tuple[str, ...]
    parent: ua.NodeId | None
    depth: int
    attributes: dict[int, ua.DataValue] = field(default_factory=dict)
    error: str | None = None
    children: list[ua.NodeId] = field(default_factory=list)


class BrowseError(OpcUaMqttError, ValueError):
    """The browse cannot start: the start node is malformed or not on the server."""


def _is_good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or bool(dv.StatusCode.is_good())


def _status_of(dv: ua.DataValue) -> int:
    return 0 if dv.StatusCode is None else int(dv.StatusCode.value)


def _int_value(dv: ua.DataValue, default: int) -> int:
    value = dv.Value.Value if dv.Value is not None else None
    return int(value) if isinstance(value, int) else default


def _text(lt: Any) -> str | None:
    text = getattr(lt, "Text", None)
    return str(text) if text else None


class _Browse:
    """One browse run over a connected client."""

    def __init__(
        self,
        client: Client,
        stats: BrowseStats,
        *,
        read_values: bool,
        progress: Progress | None,
        concurrency: int,
    ) -> None:
        self.walker = Batcher(client, stats, concurrency)
        self.stats = stats
        self.read_values = read_values
        self.progress = progress
        self.found: dict[ua.NodeId, _Found] = {}
        self.done = 0
        self.codec = JsonCodec()
        self.namespaces = NamespaceTable()
        self.server_uri: str | None = None

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, len(self.found))

    async def read_server_facts(self) -> None:
        """NamespaceArray, ServerArray and the operation limits, in one Read."""
        ids = ua.ObjectIds
        wanted = [
            ids.Server_NamespaceArray,
            ids.Server_ServerArray,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            ids.Server_ServerCapabilities_MaxBrowseContinuationPoints,
        ]
        items = [ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=_A.Value) for i in wanted]
        ns, servers, per_browse, per_read, cps = await self.walker.read(items)
        if not _is_good(ns) or not ns.Value or not ns.Value.Value:
            raise BrowseError(f"the server did not give its NamespaceArray ({ns.StatusCode})")
        self.namespaces = NamespaceTable([str(u) for u in ns.Value.Value])
        self.codec = JsonCodec(namespaces=self.namespaces)
        if _is_good(servers) and servers.Value and servers.Value.Value:
            self.server_uri = str(servers.Value.Value[0])

        limits = self.walker.limits
        self.stats.server_max_nodes_per_browse = stated_limit(per_browse)
        self.stats.server_max_nodes_per_read = stated_limit(per_read)
        limits.stated(
            per_browse=stated_limit(per_browse),
            per_read=stated_limit(per_read),
            continuation_points=stated_limit(cps),
        )
        self.stats.browse_batch = limits.browse.size
        self.stats.read_batch = limits.read.size

    def parse_start(self, start: str) -> ua.NodeId:
        try:
            nid = self.codec.decode_node_id(start)
        except ValueError as e:
            raise BrowseError(f"start node {start!r}: {e}") from None
        if start.startswith("nsu=") and nid.NamespaceIndex == 0:
            uri = start[4:].split(";", 1)[0]
            if uri != self.namespaces.uri(0):
                raise BrowseError(f"start node {start!r}: the server has no namespace {uri!r}")
        return nid

    async def check_start(self, nid: ua.NodeId, text: str) -> tuple[str, ua.NodeClass]:
        items = [
            ua.ReadValueId(NodeId=nid, AttributeId=_A.BrowseName),
            ua.ReadValueId(NodeId=nid, AttributeId=_A.NodeClass),
        ]
        name, cls = await self.walker.read(items)
        if not _is_good(name):
            raise BrowseError(
                f"start node {text!r} is not in the server's address space "
                f"({status_name(_status_of(name))})"
            )
        return str(name.Value.Value.Name), ua.NodeClass(cls.Value.Value)

    async def walk(self, start: ua.NodeId, max_depth: int | None) -> list[_Found]:
        root = _Found(start, ua.NodeClass.Unspecified, "", "", (), None, 0)
        level = [root]
        while level:
            to_browse = [n for n in level if max_depth is None or n.depth < max_depth]
            to_read = [n for n in level if n is not root]
            descriptions = browse_descriptions(
                [n.node_id for n in to_browse],
                ua.BrowseDirection.Forward,
                ua.ObjectIds.HierarchicalReferences,
                subtypes=True,
            )
            browsed, _ = await asyncio.gather(
                self.walker.browse(descriptions), self.read_attributes(to_read)
            )
            next_level: list[_Found] = []
            for parent, (refs, status) in zip(to_browse, browsed, strict=True):
                if status and ua.StatusCode(status).is_bad():
                    if parent is root:
                        raise BrowseError(
                            f"the server refused to browse the start node: {status_name(status)}"
                        )
                    parent.error = parent.error or f"{status_name(status)} browsing it"
                    continue
                for ref in refs:
                    nid = local_node_id(ref.NodeId, self.namespaces)
                    if nid is None or nid in self.found or nid == start:
                        continue
                    name = str(ref.BrowseName.Name or "")
                    child = _Found(
                        node_id=nid,
                        node_class=ua.NodeClass(ref.NodeClass),
                        browse_name=name,
                        display_name=_text(ref.DisplayName) or name,
                        path=(*parent.path, name),
                        parent=parent.node_id if parent is not root else start,
                        depth=parent.depth + 1,
                    )
                    self.found[nid] = child
                    parent.children.append(nid)
                    next_level.append(child)
            self._report()
            level = next_level
        # Depth-first order along the first path that found each node: reads like the tree.
        ordered: list[_Found] = []
        stack = list(reversed(root.children))
        while stack:
            node = self.found[stack.pop()]
            ordered.append(node)
            stack.extend(reversed(node.children))
        return ordered

    def _attributes_for(self, node: _Found) -> tuple[int, ...]:
        if node.node_class == ua.NodeClass.Variable:
            return (*_VARIABLE_ATTRIBUTES, _A.Value) if self.read_values else _VARIABLE_ATTRIBUTES
        if node.node_class == ua.NodeClass.Object:
            return (_A.Description, _A.EventNotifier)
        return (_A.Description,)

    async def read_attributes(self, nodes: Sequence[_Found]) -> None:
        items: list[ua.ReadValueId] = []
        owners: list[tuple[_Found, int]] = []
        ends: list[int] = []
        for node in nodes:
            for attr in self._attributes_for(node):
                items.append(ua.ReadValueId(NodeId=node.node_id, AttributeId=attr))
                owners.append((node, attr))
            ends.append(len(items))
        if not items:
            return

        def on_chunk(first: int, count: int) -> None:
            # nodes whose last attribute is in this chunk are complete (up to reordering)
            self.done += bisect.bisect_left(ends, first + count + 1) - bisect.bisect_left(
                ends, first + 1
            )
            self._report()

        values = await self.walker.read(items, on_chunk)
        for (node, attr), dv in zip(owners, values, strict=True):
            node.attributes[attr] = dv

    async def resolve_data_types(
        self, type_ids: Iterable[ua.NodeId]
    ) -> dict[ua.NodeId, tuple[str, int | None]]:
        """DataType -> (name, built-in type); the names are read while the supertypes are
        browsed."""
        originals = list(dict.fromkeys(type_ids))
        builtins, names = await asyncio.gather(
            resolve_builtin_types(self.walker, self.namespaces, originals),
            self._type_names(originals),
        )
        return {nid: (names.get(nid, str(nid.Identifier)), builtins[nid]) for nid in originals}

    async def _type_names(self, type_ids: Sequence[ua.NodeId]) -> dict[ua.NodeId, str]:
        """The BrowseNames of DataTypes, read only for those OPC UA does not name itself."""
        names: dict[ua.NodeId, str] = {}
        need_names = []
        for nid in type_ids:
            if nid.NamespaceIndex == 0 and isinstance(nid.Identifier, int):
                known = ua.ObjectIdNames.get(nid.Identifier)
                if known is not None:
                    names[nid] = str(known)
                    continue
            need_names.append(nid)
        items = [ua.ReadValueId(NodeId=n, AttributeId=_A.BrowseName) for n in need_names]
        for nid, dv in zip(need_names, await self.walker.read(items), strict=True):
            if _is_good(dv) and dv.Value is not None:
                names[nid] = str(dv.Value.Value.Name)
        return names

    def build(
        self, found: Sequence[_Found], types: dict[ua.NodeId, tuple[str, int | None]]
    ) -> list[BrowsedNode]:
        encode = self.codec.encode_node_id
        out: list[BrowsedNode] = []
        for f in found:
            attrs = f.attributes
            refused: dict[str, list[str]] = {}
            for attr, dv in attrs.items():
                code = _status_of(dv)
                if not code or not ua.StatusCode(code).is_bad() or attr in _OPTIONAL:
                    continue
                if attr == _A.Description and code == ua.StatusCodes.BadAttributeIdInvalid:
                    continue
                refused.setdefault(status_name(code), []).append(_A(attr).name)
            errors = [f.error] if f.error else []
            errors += [f"{status} reading {', '.join(names)}" for status, names in refused.items()]
            node_class = _NODE_CLASSES.get(f.node_class)
            if node_class is None:
                node_class = NodeClass.OBJECT
                errors.append(f"unknown node class {f.node_class}")
            description = None
            d = attrs.get(_A.Description)
            if d is not None and _is_good(d) and d.Value is not None:
                description = _text(d.Value.Value)
            kw: dict[str, Any] = {}
            if f.node_class == ua.NodeClass.Variable and not errors:
                kw = self._variable_members(attrs, types)
            notifier = attrs.get(_A.EventNotifier)
            if notifier is not None and _is_good(notifier):
                kw["event_notifier"] = bool(_int_value(notifier, 0) & _SUBSCRIBE_TO_EVENTS)
            out.append(
                BrowsedNode(
                    node_id=encode(f.node_id),
                    node_class=node_class,
                    browse_name=f.browse_name,
                    display_name=f.display_name,
                    browse_path=f.path,
                    parent_node_id=encode(f.parent) if f.parent is not None else None,
                    description=description,
                    error="; ".join(errors) if errors else None,
                    **kw,
                )
            )
        return out

    def _variable_members(
        self, attrs: dict[int, ua.DataValue], types: dict[ua.NodeId, tuple[str, int | None]]
    ) -> dict[str, Any]:
        dt = attrs[_A.DataType].Value.Value
        name, builtin = types.get(dt, (str(dt), None))
        dims_dv = attrs.get(_A.ArrayDimensions)
        dims = None
        if dims_dv is not None and _is_good(dims_dv) and dims_dv.Value is not None:
            raw = dims_dv.Value.Value
            if raw:
                dims = tuple(int(d) for d in raw)
        access = _int_value(attrs[_A.AccessLevel], 0)
        user = attrs.get(_A.UserAccessLevel)
        if (
            user is not None
            and _is_good(user)
            and isinstance(getattr(user.Value, "Value", None), int)
        ):
            access &= int(user.Value.Value)
        members: dict[str, Any] = {
            "data_type": self.codec.encode_node_id(dt),
            "data_type_name": name,
            "builtin_type": builtin,
            "value_rank": _int_value(attrs[_A.ValueRank], -2),
            "array_dimensions": dims,
            "readable": bool(access & _CURRENT_READ),
            "writable": bool(access & _CURRENT_WRITE),
        }
        value = attrs.get(_A.Value)
        if value is not None and _is_good(value) and value.Value is not None:
            try:
                members["value"] = self.codec.encode_variant(value.Value)
            except (EncodeError, ValueError, TypeError, KeyError, AttributeError) as e:
                _log.debug("value of %s not encodable: %s", dt, e)
        return members


def _data_type_matches(node: BrowsedNode, wanted: set[str]) -> bool:
    if node.node_class is not NodeClass.VARIABLE or node.error:
        return False
    candidates = {node.data_type_name, node.data_type}
    if node.builtin_type is not None:
        candidates.add(ua.VariantType(node.builtin_type).name)
    return any(c is not None and c.lower() in wanted for c in candidates)


def filter_nodes(
    nodes: Iterable[BrowsedNode],
    *,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
) -> list[BrowsedNode]:
    """Keep the nodes matching every given filter (node class, browse-path glob, data type)."""
    classes = {NodeClass(c) for c in node_classes} if node_classes else None
    pattern = glob_regex(path_glob) if path_glob else None
    types = {t.lower() for t in data_types} if data_types else None
    out = []
    for node in nodes:
        if classes is not None and node.node_class not in classes:
            continue
        if pattern is not None and not pattern.match(node.path_string()):
            continue
        if types is not None and not _data_type_matches(node, types):
            continue
        out.append(node)
    return out


async def browse_client(
    client: Client,
    endpoint: str,
    start: str = "i=85",
    max_depth: int | None = None,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
    read_values: bool = False,
    progress: Progress | None = None,
    *,
    stats: BrowseStats | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BrowseResult:
    """Browse an already connected client (see :func:`browse_endpoint`)."""
    began = time.monotonic()
    if path_glob:
        try:
            glob_regex(path_glob)  # a bad pattern fails now, not after the walk
        except ValueError as e:
            raise BrowseError(str(e)) from None
    stats = stats if stats is not None else BrowseStats()
    run = _Browse(
        client, stats, read_values=read_values, progress=progress, concurrency=concurrency
    )
    await run.read_server_facts()
    start_id = run.parse_start(start)
    await run.check_start(start_id, start)
    found = await run.walk(start_id, max_depth)
    type_ids = [
        f.attributes[_A.DataType].Value.Value
        for f in found
        if f.node_class == ua.NodeClass.Variable
        and _A.DataType in f.attributes
        and _is_good(f.attributes[_A.DataType])
        and isinstance(f.attributes[_A.DataType].Value.Value, ua.NodeId)
    ]
    types = await run.resolve_data_types(type_ids)
    nodes = run.build(found, types)
    nodes = filter_nodes(
        nodes, node_classes=node_classes, path_glob=path_glob, data_types=data_types
    )
    stats.browse_batch = run.walker.limits.browse.size  # smaller if the server refused a batch
    stats.read_batch = run.walker.limits.read.size
    stats.seconds = time.monotonic() - began
    return BrowseResult(
        endpoint=endpoint,
        server_uri=run.server_uri,
        namespaces=list(run.namespaces.uris),
        start_node=run.codec.encode_node_id(start_id),
        nodes=nodes,
    )


async def browse_endpoint(
    options: ConnectionOptions,
    start: str = "i=85",
    max_depth: int | None = None,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
    read_values: bool = False,
    progress: Progress | None = None,
    *,
    stats: BrowseStats | None = None,
) -> BrowseResult:
    """Connect with ``options`` and browse from ``start`` along hierarchical references.

    Each node is visited once (the address space is a graph); ``max_depth`` 1 reports the start
    node's children only. Variables come with their DataType (name and built-in type),
    ValueRank, ArrayDimensions, readable/writable (CurrentRead/CurrentWrite of AccessLevel,
    narrowed by UserAccessLevel) and, with ``read_values``, the current value as Compact JSON.
    Nodes the server refuses to describe are kept with ``error`` set. Filters apply to what is
    reported, not to what is walked. ``progress(done, total_known)`` is called as nodes finish.
    """
    url = normalise_endpoint(options.endpoint)
    async with connect(options) as client:
        try:
            return await browse_client(
                client,
                url,
                start,
                max_depth,
                node_classes,
                path_glob,
                data_types,
                read_values,
                progress,
                stats=stats,
            )
        except UaStatusCodeError as e:
            if e.code in CONNECTION_LOST:
                raise  # connect() names it
            denied = e.code in USER_REJECTED
            raise OpcUaConnectionError(
                f"{url} refused a browse request: {status_name(e.code)}",
                "this user may not browse the address space: ask for the right, or use another "
                "--username"
                if denied
                else "check the server's log for the reason",
                kind="auth" if denied else "protocol",
            ) from e
        except ua.UaError as e:
            raise OpcUaConnectionError(
                f"{url} answered a browse request wrongly: {e}",
                "check the server's log; report it to the server's vendor",
                kind="protocol",
            ) from e

"""Facts about a server that do not change while it runs, asked once and remembered.

The built-in type behind a DataType (its place in the type hierarchy: a Browse per level of
supertypes), and how long a String or ByteString the server takes. Each session (session.py)
holds its own: the session after a lost one asks anew, since a server restarted with another
model answers differently.

Length limits come from two sources (OPC 10000-3 §5.6.2, OPC 10000-5 §6.3.2): a Variable's
optional Properties ``MaxStringLength`` / ``MaxByteStringLength``, and the server-wide
``ServerCapabilities`` values, where 0 (or no value) means no limit. Write-back asks once per
session (per node on its first write) instead of on every write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from asyncua import Client, ua

from opcua_mqtt.adapters.opcua.batching import (
    DEFAULT_CONCURRENCY,
    Batcher,
    BrowseStats,
    browse_descriptions,
)
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

VT = ua.VariantType
MAX_STRING_LENGTH = "MaxStringLength"
MAX_BYTE_STRING_LENGTH = "MaxByteStringLength"

#: The built-in types a length limit applies to, and the Property that holds it: a
#: LocalizedText's text counts as a String (as core.write_request.convert_value checks it).
_PROPERTY: dict[int, str] = {
    VT.String: MAX_STRING_LENGTH,
    VT.LocalizedText: MAX_STRING_LENGTH,
    VT.ByteString: MAX_BYTE_STRING_LENGTH,
}


@dataclass(frozen=True)
class LengthLimit:
    length: int
    owner: str  # whose limit it is, for a refusal's message: "the node's", "the server's"


@dataclass(frozen=True)
class LengthLimits:
    """MaxStringLength and MaxByteStringLength; None where nothing limits."""

    string: LengthLimit | None = None
    byte_string: LengthLimit | None = None

    def within(self, other: LengthLimits) -> LengthLimits:
        """The stricter of the two, limit by limit."""
        return LengthLimits(
            _smaller(self.string, other.string), _smaller(self.byte_string, other.byte_string)
        )


# Abstract built-in DataTypes and the type their values travel as: Structure -> ExtensionObject,
# Number/Integer/UInteger -> Variant, Enumeration -> Int32.
_ABSTRACT_TO_BUILTIN: Final = {22: 22, 24: 24, 26: 24, 27: 24, 28: 24, 29: 6}


def _is_terminal_type(nid: ua.NodeId) -> bool:
    return nid.NamespaceIndex == 0 and isinstance(nid.Identifier, int) and 1 <= nid.Identifier <= 29


def _terminal_builtin(nid: ua.NodeId) -> int:
    ident = int(nid.Identifier)
    return _ABSTRACT_TO_BUILTIN.get(ident, ident)


def local_node_id(nid: Any, namespaces: NamespaceTable) -> ua.NodeId | None:
    """A reference target as a plain NodeId of this server; None if it lives elsewhere."""
    if getattr(nid, "ServerIndex", 0):
        return None
    ns = nid.NamespaceIndex
    uri = getattr(nid, "NamespaceUri", None)
    if uri:
        index = namespaces.index(uri)
        if index is None:
            return None
        ns = index
    return ua.NodeId(nid.Identifier, ns, nid.NodeIdType)


async def resolve_builtin_types(
    batcher: Batcher, namespaces: NamespaceTable, type_ids: Iterable[ua.NodeId]
) -> dict[ua.NodeId, int | None]:
    """DataType -> the built-in type behind it (None where its supertypes lead to none): the
    HasSubtype references are browsed upwards for all of them at once, one batch a level."""
    originals = list(dict.fromkeys(type_ids))
    supertype: dict[ua.NodeId, ua.NodeId | None] = {}
    frontier = [n for n in originals if not _is_terminal_type(n)]
    while frontier:
        descriptions = browse_descriptions(
            frontier, ua.BrowseDirection.Inverse, ua.ObjectIds.HasSubtype, subtypes=False
        )
        following: list[ua.NodeId] = []
        for nid, (refs, _status) in zip(frontier, await batcher.browse(descriptions), strict=True):
            parent = next(
                (local_node_id(r.NodeId, namespaces) for r in refs if not r.IsForward), None
            )
            supertype[nid] = parent
            if (
                parent is not None
                and not _is_terminal_type(parent)
                and parent not in supertype
                and parent not in following
            ):
                following.append(parent)
        frontier = [n for n in following if n not in supertype]

    out: dict[ua.NodeId, int | None] = {}
    for nid in originals:
        builtin: int | None = None
        cursor: ua.NodeId | None = nid
        seen: set[ua.NodeId] = set()
        while cursor is not None and cursor not in seen:
            if _is_terminal_type(cursor):
                builtin = _terminal_builtin(cursor)
                break
            seen.add(cursor)
            cursor = supertype.get(cursor)
        out[nid] = builtin
    return out


async def builtin_types(
    client: Client, type_ids: Iterable[ua.NodeId], batcher: Batcher | None = None
) -> dict[ua.NodeId, int | None]:
    """DataType -> the built-in type behind it, None where its supertypes lead to none; asked
    of a connected client the way browse asks (batched by ``batcher``, the session's, or
    within the default limits)."""
    batcher = batcher or Batcher(client, BrowseStats(), DEFAULT_CONCURRENCY)
    return await resolve_builtin_types(batcher, NamespaceTable(), type_ids)


class BuiltinTypes:
    """DataType -> built-in type, asked of the server in batches and remembered: a DataType's
    place in the type hierarchy does not change while a server runs, and asking costs a Browse
    per level of supertypes. Forgotten when the client changes, and replaced by the session
    when asyncua re-establishes it (same client): either may be a server restarted with another
    type model."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._known: dict[ua.NodeId, int] = {}

    async def of(
        self, client: Client, data_types: Iterable[ua.NodeId], batcher: Batcher | None = None
    ) -> dict[ua.NodeId, int]:
        """The built-in type behind each DataType: itself for a built-in one, else its
        supertypes'; Variant where they lead to none. Asked through ``batcher`` if given."""
        if client is not self._client:
            self._client, self._known = client, {}
        wanted = set(data_types)
        if missing := wanted - self._known.keys():
            for data_type, builtin in (await builtin_types(client, missing, batcher)).items():
                self._known[data_type] = int(ua.VariantType.Variant) if builtin is None else builtin
        return {d: self._known[d] for d in wanted}

    async def one(self, client: Client, data_type: ua.NodeId) -> int:
        return (await self.of(client, [data_type]))[data_type]


class StringLimits:
    """The length limits of the nodes written, per session: a new session may be a restarted
    server with another configuration, so what is remembered goes with the session's client
    (and the session replaces it when asyncua re-establishes the session)."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._server: LengthLimits | None = None
        # by node and Property: a node whose DataType changes may need the other one
        self._nodes: dict[tuple[ua.NodeId, str], LengthLimits] = {}

    async def of(
        self, client: Client, nodes: Mapping[ua.NodeId, int]
    ) -> dict[ua.NodeId, LengthLimits]:
        """The effective limits of ``nodes`` (NodeId -> built-in type): the smaller of the
        node's own Property and the server's capability. Asks only about what it does not
        know yet: the server's capabilities in one Read, the nodes' Properties in one
        TranslateBrowsePathsToNodeIds and one Read."""
        if client is not self._client:
            self._client, self._server, self._nodes = client, None, {}
        if self._server is None:
            self._server = await _server_limits(client)
        wanted = {n: _PROPERTY[vt] for n, vt in nodes.items() if vt in _PROPERTY}
        if missing := {n: p for n, p in wanted.items() if (n, p) not in self._nodes}:
            found = await _node_limits(client, missing)
            self._nodes.update({(n, p): found[n] for n, p in missing.items()})
        return {
            n: self._nodes.get((n, wanted.get(n, "")), LengthLimits()).within(self._server)
            for n in nodes
        }


async def _server_limits(client: Client) -> LengthLimits:
    ids = ua.ObjectIds
    string, byte_string = await client.uaclient.read(
        ua.ReadParameters(
            NodesToRead=[
                ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=ua.AttributeIds.Value)
                for i in (
                    ids.Server_ServerCapabilities_MaxStringLength,
                    ids.Server_ServerCapabilities_MaxByteStringLength,
                )
            ]
        )
    )
    return LengthLimits(_limit(string, "the server's"), _limit(byte_string, "the server's"))


async def _node_limits(
    client: Client, wanted: Mapping[ua.NodeId, str]
) -> dict[ua.NodeId, LengthLimits]:
    """Each node's limit Property (``wanted``: NodeId -> its name), found by browse name in
    namespace 0 over HasProperty; a node without one has no limit of its own."""
    found = await client.uaclient.translate_browsepaths_to_nodeids(
        [
            ua.BrowsePath(
                StartingNode=node,
                RelativePath=ua.RelativePath(
                    Elements=[
                        ua.RelativePathElement(
                            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasProperty),
                            IsInverse=False,
                            IncludeSubtypes=False,
                            TargetName=ua.QualifiedName(name, 0),
                        )
                    ]
                ),
            )
            for node, name in wanted.items()
        ]
    )
    properties: dict[ua.NodeId, ua.NodeId] = {}
    for node, result in zip(wanted, found, strict=True):
        local = [t.TargetId for t in result.Targets or () if _plain_target(t.TargetId)]
        if result.StatusCode.is_good() and local:
            target = local[0]
            properties[node] = ua.NodeId(
                target.Identifier, target.NamespaceIndex, target.NodeIdType
            )
    out = {node: LengthLimits() for node in wanted}
    if properties:
        values = await client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=p, AttributeId=ua.AttributeIds.Value)
                    for p in properties.values()
                ]
            )
        )
        for node, value in zip(properties, values, strict=True):
            limit = _limit(value, "the node's")
            string = wanted[node] == MAX_STRING_LENGTH
            out[node] = LengthLimits(limit, None) if string else LengthLimits(None, limit)
    return out


def _plain_target(target: ua.NodeId) -> bool:
    """Whether a TranslateBrowsePaths target is a node of this server that the Read can name
    as it is: asyncua decodes a plain NodeId unless a server index or namespace URI is set."""
    return not isinstance(target, ua.ExpandedNodeId) or (
        not target.ServerIndex and target.NamespaceUri is None
    )


def _limit(value: ua.DataValue, owner: str) -> LengthLimit | None:
    """A limit from a read value: 0, no value or a Bad status mean none (OPC 10000-5 §6.3.2)."""
    if not value.StatusCode.is_good() or value.Value is None:
        return None
    length = value.Value.Value
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        return None
    return LengthLimit(length, owner)


def _smaller(a: LengthLimit | None, b: LengthLimit | None) -> LengthLimit | None:
    """The stricter limit; on a tie the first (the node's own, the more specific)."""
    if a is None or (b is not None and b.length < a.length):
        return b
    return a

"""How long a String or ByteString a server takes, asked of the server and remembered.

Two sources (OPC 10000-3 §5.6.2, OPC 10000-5 §6.3.2): a Variable's optional Properties
``MaxStringLength`` / ``MaxByteStringLength``, and the server-wide ``ServerCapabilities`` values,
where 0 (or no value) means no limit. Both are configuration, not process values: write-back
asks once per session (per node on its first write) instead of on every write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from asyncua import Client, ua

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


class StringLimits:
    """The length limits of the nodes written, per session: a new session may be a restarted
    server with another configuration, so what is remembered goes with the session's client."""

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
        local = [t.TargetId for t in result.Targets or () if _local(t.TargetId)]
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


def _local(target: ua.NodeId) -> bool:
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

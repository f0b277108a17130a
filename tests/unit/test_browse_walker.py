"""The batched browse against an in-memory server: what real servers rarely show on demand.

The fake stands in for ``client.uaclient`` (the only thing :func:`browse_client` talks to) and
answers Browse, BrowseNext and Read like a server with small OperationLimits, paging references
through continuation points, running out of continuation points, refusing big requests and
refusing to describe some nodes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

from opcua_mqtt.adapters.opcua import BrowseError, BrowseStats, BuiltinTypes, browse_client
from opcua_mqtt.core.address_space import NodeClass

NS = "urn:fake:plant"
A = ua.AttributeIds
HIERARCHICAL = {33, 34, 35, 44, 45, 46, 47, 48, 49}  # HierarchicalReferences and its subtypes


def nid(name: str | int) -> ua.NodeId:
    if isinstance(name, int):
        return ua.NodeId(name, 0)
    return ua.NodeId(name, 1, ua.NodeIdType.String)


def dv(value: Any, vtype: ua.VariantType | None = None) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype) if vtype else ua.Variant(value))


def bad(code: int) -> ua.DataValue:
    return ua.DataValue(StatusCode=ua.StatusCode(code))


@dataclass
class FakeNode:
    node_class: ua.NodeClass
    name: str
    attrs: dict[int, ua.DataValue] = field(default_factory=dict)
    refs: list[tuple[int, ua.NodeId, bool]] = field(default_factory=list)  # type, target, fwd


class FakeServer:
    """An address space with a few OperationLimits, answering like ``UaClient`` does."""

    def __init__(
        self,
        *,
        max_browse: int = 0,
        max_read: int = 0,
        refs_per_page: int | None = None,
        continuation_points: int = 0,
        too_many_above: int | None = None,
    ) -> None:
        self.nodes: dict[ua.NodeId, FakeNode] = {}
        self.refs_per_page = refs_per_page
        self.continuation_points = continuation_points
        self.too_many_above = too_many_above
        self.open_points: dict[bytes, list[ua.ReferenceDescription]] = {}
        self.counter = itertools.count(1)
        self.calls: list[tuple[str, int]] = []
        self.refused_browse: set[ua.NodeId] = set()
        self.exhausted = 0  # answers of BadNoContinuationPoints
        self.add(nid(84), ua.NodeClass.Object, "Root")
        self.add(nid(85), ua.NodeClass.Object, "Objects", parent=nid(84))
        server = self.add(nid(2253), ua.NodeClass.Object, "Server")  # not under Objects here
        self.add_variable(
            nid(2255), "NamespaceArray", server, 12, ["http://opcfoundation.org/UA/", NS]
        )
        self.add_variable(nid(2254), "ServerArray", server, 12, ["urn:fake:server"])
        limits = self.add(nid(11704), ua.NodeClass.Object, "OperationLimits", parent=server)
        for ident, value in ((11710, max_browse), (11705, max_read)):
            if value:
                self.add_variable(
                    nid(ident), str(ident), limits, 7, value, vtype=ua.VariantType.UInt32
                )
        if continuation_points:
            self.add_variable(
                nid(2735),
                "MaxBrowseContinuationPoints",
                server,
                5,
                continuation_points,
                vtype=ua.VariantType.UInt16,
            )
        # DataTypes: ns0 built-ins are known; a custom enumeration and a custom structure
        # subtype chain, and Duration (i=290) -> Double.
        subtypes: list[tuple[int | None, int]] = []
        for ident, name, parent in (
            (11, "Double", 26),
            (26, "Number", 24),
            (24, "BaseDataType", None),
            (6, "Int32", 27),
            (27, "Integer", 26),
            (29, "Enumeration", 24),
            (22, "Structure", 24),
            (290, "Duration", 11),
        ):
            self.add(nid(ident), ua.NodeClass.DataType, name)
            subtypes.append((parent, ident))
        for parent, ident in subtypes:
            if parent is not None:
                self.link(nid(parent), nid(ident), 45)
        self.add(nid("MyEnum"), ua.NodeClass.DataType, "MyEnum")
        self.link(nid(29), nid("MyEnum"), 45)
        self.add(nid("BaseStruct"), ua.NodeClass.DataType, "BaseStruct")
        self.link(nid(22), nid("BaseStruct"), 45)
        self.add(nid("DerivedStruct"), ua.NodeClass.DataType, "DerivedStruct")
        self.link(nid("BaseStruct"), nid("DerivedStruct"), 45)

    # -- building
    def add(
        self,
        node_id: ua.NodeId,
        cls: ua.NodeClass,
        name: str,
        *,
        parent: ua.NodeId | None = None,
        ref: int = 35,
    ) -> ua.NodeId:
        self.nodes[node_id] = FakeNode(cls, name, {A.Description: dv(ua.LocalizedText(name))})
        if parent is not None:
            self.link(parent, node_id, ref)
        return node_id

    def link(self, source: ua.NodeId, target: ua.NodeId, ref: int) -> None:
        self.nodes[source].refs.append((ref, target, True))
        if target in self.nodes:
            self.nodes[target].refs.append((ref, source, False))

    def add_variable(
        self,
        node_id: ua.NodeId,
        name: str,
        parent: ua.NodeId,
        data_type: int | ua.NodeId,
        value: Any,
        *,
        vtype: ua.VariantType | None = None,
        rank: int = -1,
        access: int = 1,
        user_access: int | None = None,
    ) -> ua.NodeId:
        self.add(node_id, ua.NodeClass.Variable, name, parent=parent, ref=47)
        dt = data_type if isinstance(data_type, ua.NodeId) else nid(data_type)
        attrs = self.nodes[node_id].attrs
        attrs[A.DataType] = dv(dt, ua.VariantType.NodeId)
        attrs[A.ValueRank] = dv(rank, ua.VariantType.Int32)
        attrs[A.AccessLevel] = dv(access, ua.VariantType.Byte)
        attrs[A.UserAccessLevel] = dv(
            access if user_access is None else user_access, ua.VariantType.Byte
        )
        attrs[A.Value] = dv(value, vtype)
        return node_id

    # -- the services
    def _refs(self, desc: ua.BrowseDescription) -> list[ua.ReferenceDescription]:
        node = self.nodes[desc.NodeId]
        out = []
        for ref_type, target, forward in node.refs:
            if desc.BrowseDirection == ua.BrowseDirection.Forward and not forward:
                continue
            if desc.BrowseDirection == ua.BrowseDirection.Inverse and forward:
                continue
            wanted = desc.ReferenceTypeId.Identifier
            if wanted == 33 and desc.IncludeSubtypes:
                if ref_type not in HIERARCHICAL:
                    continue
            elif ref_type != wanted:
                continue
            t = self.nodes.get(target)
            out.append(
                ua.ReferenceDescription(
                    ReferenceTypeId=nid(ref_type),
                    IsForward=forward,
                    NodeId=ua.ExpandedNodeId(
                        target.Identifier, target.NamespaceIndex, target.NodeIdType
                    ),
                    BrowseName=ua.QualifiedName(t.name if t else "Ghost", target.NamespaceIndex),
                    DisplayName=ua.LocalizedText(t.name if t else "Ghost"),
                    NodeClass=t.node_class if t else ua.NodeClass.Variable,
                )
            )
        return out

    def _page(self, refs: list[ua.ReferenceDescription]) -> ua.BrowseResult:
        result = ua.BrowseResult()
        if self.refs_per_page is None or len(refs) <= self.refs_per_page:
            result.References = refs
            return result
        if self.continuation_points and len(self.open_points) >= self.continuation_points:
            self.exhausted += 1
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadNoContinuationPoints)
            return result
        point = next(self.counter).to_bytes(4, "big")
        self.open_points[point] = refs[self.refs_per_page :]
        result.References = refs[: self.refs_per_page]
        result.ContinuationPoint = point
        return result

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        self.calls.append(("Browse", len(params.NodesToBrowse)))
        assert params.View.Timestamp == ua.get_win_epoch(), "the view must be the current one"
        if self.too_many_above and len(params.NodesToBrowse) > self.too_many_above:
            raise UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)
        out = []
        for desc in params.NodesToBrowse:
            if desc.NodeId not in self.nodes:
                out.append(
                    ua.BrowseResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
                )
            elif desc.NodeId in self.refused_browse:
                out.append(
                    ua.BrowseResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadUserAccessDenied))
                )
            else:
                out.append(self._page(self._refs(desc)))
        return out

    async def browse_next(self, params: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
        self.calls.append(("BrowseNext", len(params.ContinuationPoints)))
        out = []
        for point in params.ContinuationPoints:
            rest = self.open_points.pop(point, None)
            if rest is None:
                out.append(
                    ua.BrowseResult(
                        StatusCode=ua.StatusCode(ua.StatusCodes.BadContinuationPointInvalid)
                    )
                )
                continue
            out.append(self._page(rest))
        return out

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        self.calls.append(("Read", len(params.NodesToRead)))
        if self.too_many_above and len(params.NodesToRead) > self.too_many_above:
            raise UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)
        out = []
        for item in params.NodesToRead:
            node = self.nodes.get(item.NodeId)
            if node is None:
                out.append(bad(ua.StatusCodes.BadNodeIdUnknown))
            elif item.AttributeId == A.BrowseName:
                out.append(dv(ua.QualifiedName(node.name, item.NodeId.NamespaceIndex)))
            elif item.AttributeId == A.NodeClass:
                out.append(dv(int(node.node_class), ua.VariantType.Int32))
            else:
                out.append(
                    node.attrs.get(item.AttributeId, bad(ua.StatusCodes.BadAttributeIdInvalid))
                )
        return out


def build_plant(server: FakeServer, *, machines: int = 3, signals: int = 4) -> None:
    """Objects/Plant/Machine<k>/Signal<j> (Double, every other writable); a cycle; a shared
    node; an enumeration, a derived structure, a Duration, an array and a refused node."""
    plant = server.add(nid("Plant"), ua.NodeClass.Object, "Plant", parent=nid(85))
    for k in range(machines):
        m = server.add(nid(f"M{k}"), ua.NodeClass.Object, f"Machine{k}", parent=plant, ref=47)
        for j in range(signals):
            server.add_variable(
                nid(f"M{k}.S{j}"), f"Signal{j}", m, 11, float(j), access=3 if j % 2 else 1
            )
    # a cycle: Machine0 organizes Plant; a shared node under Machine0 and Machine1
    server.link(nid("M0"), plant, 35)
    shared = server.add_variable(nid("Shared"), "Shared", nid("M0"), 6, 7)
    server.link(nid("M1"), shared, 35)
    extra = server.add(nid("Extra"), ua.NodeClass.Object, "Extra", parent=plant)
    server.add_variable(nid("Enum"), "Mode", extra, nid("MyEnum"), 2, vtype=ua.VariantType.Int32)
    server.add_variable(nid("Struct"), "Setup", extra, nid("DerivedStruct"), None)
    server.add_variable(nid("Dur"), "Cycle", extra, 290, 1.5)
    arr = server.add_variable(nid("Arr"), "Temps", extra, 11, [1.0, 2.0], rank=1)
    server.nodes[arr].attrs[A.ArrayDimensions] = dv([2], ua.VariantType.UInt32)
    denied = server.add_variable(nid("Denied"), "Secret", extra, 11, 0.0)
    for attr in (A.DataType, A.ValueRank, A.AccessLevel, A.Description, A.Value):
        server.nodes[denied].attrs[attr] = bad(ua.StatusCodes.BadUserAccessDenied)
    server.link(extra, nid("Gone"), 35)  # a reference to a node that no longer exists
    server.add_variable(nid("ReadOnlyForUs"), "Limited", extra, 11, 0.0, access=3, user_access=1)


async def run(server: FakeServer, **kw: Any) -> tuple[Any, BrowseStats]:
    stats = BrowseStats()
    client = SimpleNamespace(uaclient=server)
    result = await browse_client(client, "opc.tcp://fake:4840", stats=stats, **kw)
    return result, stats


def by_path(result: Any) -> dict[str, Any]:
    return {n.path_string(): n for n in result.nodes}


async def test_every_node_once_with_types_resolved_through_the_subtype_chain() -> None:
    server = FakeServer()
    build_plant(server)
    result, _ = await run(server, start=f"nsu={NS};s=Plant", read_values=True)
    ids = [n.node_id for n in result.nodes]
    assert len(ids) == len(set(ids))  # the cycle back to Plant and the shared node: once each
    nodes = by_path(result)
    assert nodes["Machine0/Shared"].parent_node_id == f"nsu={NS};s=M0"
    assert "Machine1/Shared" not in nodes
    assert f"nsu={NS};s=Plant" not in ids  # the start node is not reported
    sig = nodes["Machine1/Signal1"]
    assert (sig.data_type, sig.data_type_name, sig.builtin_type) == ("i=11", "Double", 11)
    assert (sig.readable, sig.writable, sig.value_rank) == (True, True, -1)
    assert sig.value == {"UaType": 11, "Value": 1.0}
    assert nodes["Machine1/Signal0"].writable is False
    assert (nodes["Extra/Mode"].data_type_name, nodes["Extra/Mode"].builtin_type) == ("MyEnum", 6)
    setup = nodes["Extra/Setup"]
    assert (setup.data_type, setup.data_type_name, setup.builtin_type) == (
        f"nsu={NS};s=DerivedStruct",
        "DerivedStruct",
        22,
    )
    assert (nodes["Extra/Cycle"].data_type_name, nodes["Extra/Cycle"].builtin_type) == (
        "Duration",
        11,
    )
    temps = nodes["Extra/Temps"]
    assert (temps.value_rank, temps.array_dimensions) == (1, (2,))
    limited = nodes["Extra/Limited"]
    assert (limited.readable, limited.writable) == (True, False)  # UserAccessLevel narrows


async def test_refused_nodes_are_reported_with_the_reason_and_the_walk_goes_on() -> None:
    server = FakeServer()
    build_plant(server)
    server.refused_browse.add(nid("M2"))
    result, _ = await run(server, start=f"nsu={NS};s=Plant")
    nodes = by_path(result)
    secret = nodes["Extra/Secret"]
    assert secret.error is not None and "BadUserAccessDenied" in secret.error
    assert secret.data_type is None and secret not in result.variables()
    assert "BadNodeIdUnknown" in (nodes["Extra/Ghost"].error or "")
    assert "BadUserAccessDenied browsing it" in (nodes["Machine2"].error or "")
    assert "Machine2/Signal0" not in nodes
    assert nodes["Extra/Limited"].error is None  # the nodes after the refused ones are there


async def test_requests_are_batched_within_the_server_limits() -> None:
    server = FakeServer(max_browse=7, max_read=25)
    build_plant(server, machines=20, signals=10)
    result, stats = await run(server, start=f"nsu={NS};s=Plant")
    assert len(result.variables()) == 20 * 10 + 6
    assert all(size <= 7 for kind, size in server.calls if kind == "Browse")
    assert all(size <= 25 for kind, size in server.calls if kind == "Read")
    assert stats.browse_requests == sum(1 for kind, _ in server.calls if kind == "Browse")
    assert stats.read_requests == sum(1 for kind, _ in server.calls if kind == "Read")
    assert (stats.browse_batch, stats.read_batch) == (7, 25)
    # full batches: one Read per 25 attributes, not one per node
    assert stats.read_requests <= stats.read_operations // 25 + 6


async def test_continuation_points_are_followed_with_browse_next() -> None:
    server = FakeServer(refs_per_page=3)
    build_plant(server, machines=4, signals=10)
    result, stats = await run(server, start=f"nsu={NS};s=Plant")
    assert stats.browse_next_requests > 0
    assert len([n for n in result.nodes if n.browse_path[:-1] == ("Machine3",)]) == 10
    assert not server.open_points  # every continuation point was used up


async def test_running_out_of_continuation_points_retries_those_nodes() -> None:
    server = FakeServer(refs_per_page=2, continuation_points=2)
    build_plant(server, machines=6, signals=5)
    result, _ = await run(server, start=f"nsu={NS};s=Plant")
    for k in range(6):
        children = [n for n in result.nodes if n.browse_path[:-1] == (f"Machine{k}",)]
        assert len(children) == 5 + (k == 0)  # Machine0 also holds the shared node
    assert not any(n.error for n in result.nodes if n.browse_path[0].startswith("Machine"))
    assert server.exhausted > 0  # the server did run out, and the walk recovered


async def test_a_request_refused_as_too_large_is_split() -> None:
    server = FakeServer(max_read=0, too_many_above=40)  # states no limit, refuses > 40
    build_plant(server, machines=10, signals=10)
    result, stats = await run(server, start=f"nsu={NS};s=Plant")
    assert len(result.variables()) == 106
    assert stats.read_batch <= 40


async def test_depth_limit_and_filters() -> None:
    server = FakeServer()
    build_plant(server)
    result, _ = await run(server, start=f"nsu={NS};s=Plant", max_depth=1)
    assert sorted(n.browse_name for n in result.nodes) == [
        "Extra",
        "Machine0",
        "Machine1",
        "Machine2",
    ]
    result, _ = await run(server, start=f"nsu={NS};s=Plant", path_glob="Machine*/Signal?")
    assert len(result.nodes) == 12
    result, _ = await run(server, start=f"nsu={NS};s=Plant", data_types=["int32"])
    assert sorted(n.browse_name for n in result.nodes) == ["Mode", "Shared"]  # Int32 + enum
    result, _ = await run(server, start=f"nsu={NS};s=Plant", node_classes=[NodeClass.OBJECT])
    assert {n.node_class for n in result.nodes} == {NodeClass.OBJECT}


async def test_an_unknown_start_node_is_a_browse_error() -> None:
    server = FakeServer()
    with pytest.raises(BrowseError, match="not in the server's address space"):
        await run(server, start=f"nsu={NS};s=Nowhere")
    with pytest.raises(BrowseError, match="no namespace"):
        await run(server, start="nsu=urn:other;s=X")
    with pytest.raises(BrowseError):
        await run(server, start="not a node id")


async def test_builtin_types_walk_the_subtype_chain_like_browse_and_are_asked_once() -> None:
    server = FakeServer()
    client: Any = SimpleNamespace(uaclient=server)
    types = BuiltinTypes()
    assert await types.one(client, nid(11)) == 11  # a built-in type: no request
    assert not server.calls
    assert await types.of(client, [nid(290), nid("MyEnum"), nid("DerivedStruct")]) == {
        nid(290): 11,  # Duration -> Double
        nid("MyEnum"): 6,  # an enumeration is an Int32
        nid("DerivedStruct"): 22,  # ExtensionObject
    }
    assert await types.one(client, nid("Nowhere")) == 24  # no supertype: Variant
    assert {kind for kind, _ in server.calls} == {"Browse"}
    asked = len(server.calls)
    assert await types.of(client, [nid(290), nid("MyEnum"), nid("Nowhere")]) == {
        nid(290): 11,
        nid("MyEnum"): 6,
        nid("Nowhere"): 24,
    }
    assert len(server.calls) == asked  # remembered: the type hierarchy does not change
    other: Any = SimpleNamespace(uaclient=server)  # another session: asked again
    assert await types.one(other, nid(290)) == 11
    assert len(server.calls) > asked

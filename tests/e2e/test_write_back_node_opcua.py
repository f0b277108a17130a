"""Write-back end to end against an independent server (node-opcua, interop/plant-server.mjs):
a real `opcua-mqtt run` process, commands over MQTT 5 and 3.1.1, every value written confirmed
by an independent asyncua read, and the server's own account (its WRITE lines) of which Writes
reached it at all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable
from tests.support.bridge import BridgeProcess, BridgeProcesses
from tests.support.mosquitto import MosquittoBroker
from tests.support.opcua_server import NodeOpcuaTestServer, OpcUaTestServer, parse_nodeid
from tests.support.write_back import (
    CANDIDATES,
    REPLIES,
    Requester,
    check_response,
    pick_new_value,
    read_variant,
    serving_requester,
    write_back_config,
)

#: The built-in types beyond CANDIDATES that the node-opcua plant offers writable: with them,
#: every built-in type but Null. "Variant" is a node of DataType BaseDataType (any type).
MORE_CANDIDATES: dict[str, tuple[Any, Any]] = {
    "XmlElement": ("<a>1</a>", "<b/>"),
    "ExpandedNodeId": ("i=85", "i=2253"),
    "StatusCode": ({"Code": 2155085824}, {"Code": 1073741824}),
    "ExtensionObject": (
        {"UaTypeId": "i=884", "Low": -1.5, "High": 2.5},
        {"UaTypeId": "i=884", "Low": 0, "High": 100},
    ),
    "DataValue": (  # typed, since a 1.05 DataValue has its value's UaType inline (Part 6 §5.4)
        {"UaType": 23, "Value": {"UaType": 11, "Value": 1.5}},
        {"UaType": 23, "Value": {"UaType": 12, "Value": "inner", "Status": {"Code": 1073741824}}},
    ),
    "Variant": ({"UaType": 6, "Value": 5}, {"UaType": 12, "Value": "any type"}),
    "DiagnosticInfo": ({"SymbolicId": 1}, {"SymbolicId": 2, "AdditionalInfo": "more"}),
}
SCALARS = {**CANDIDATES, **MORE_CANDIDATES}
#: Array nodes: (built-in type, ValueRank, ArrayDimensions).
ARRAYS = {
    "Doubles": ("Double", 1, [0]),
    "Strings": ("String", 1, [0]),
    "Int32Matrix": ("Int32", 2, [2, 3]),
}
MISSING = "WriteBack.Missing"  # allow-listed by NodeId, but not on the server (any more)


def _path(name: str) -> str:
    return f"WriteBack.{name}"


@pytest.fixture
def bridge(
    tmp_path: Path,
    node_opcua_server: NodeOpcuaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> BridgeProcess:
    """`opcua-mqtt run` publishing every WriteBack variable as a field of G/W and allowing
    writes to all of them but NotAllowed."""
    server = node_opcua_server
    fields: list[Mapping[str, Any]] = [
        {"name": t, "node_id": server.nodeid(_path(t)), "builtin_type": t} for t in SCALARS
    ]
    fields += [
        {
            "name": name,
            "node_id": server.nodeid(_path(name)),
            "builtin_type": t,
            "value_rank": rank,
            "array_dimensions": dims,
        }
        for name, (t, rank, dims) in ARRAYS.items()
    ]
    fields += [
        {"name": name, "node_id": server.nodeid(_path(name)), "builtin_type": "Double"}
        for name in ("ReadOnly", "NotAllowed")
    ]
    allow = [f"G/W/{f['name']}" for f in fields if f["name"] != "NotAllowed"]
    allow.append(server.nodeid(MISSING))
    return bridges.start(write_back_config(tmp_path, server.endpoint, mosquitto_tls, fields, allow))


@pytest.fixture
async def requester(
    bridge: BridgeProcess, mosquitto_tls: MosquittoBroker
) -> AsyncIterator[Requester]:
    async with serving_requester(mosquitto_tls, bridge=bridge) as r:
        yield r


async def _codec(endpoint: str) -> JsonCodec:
    async with Client(endpoint, timeout=10) as client:
        return JsonCodec(namespaces=NamespaceTable(await client.get_namespace_array()))


async def _assert_written(
    server: NodeOpcuaTestServer, answer: Any, expected: dict[str, ua.Variant]
) -> None:
    """Every target Good, and an independent read of each node shows the value asked for, which
    is also the answer's ``Written``. Compared as OPC UA JSON, because asyncua reads an
    ExpandedNodeId back as a NodeId."""
    check_response(answer)
    refused = [t for t in answer["Targets"] if t["Status"]["Code"] != 0]
    assert not refused, refused
    assert answer["Result"]["Code"] == 0, answer
    codec = await _codec(server.endpoint)
    for target, (name, want) in zip(answer["Targets"], expected.items(), strict=True):
        assert target["Status"]["Code"] == 0, target
        got = codec.encode_variant(await read_variant(server.endpoint, server.nodeid(_path(name))))
        assert got == codec.encode_variant(want), name
        assert target["Written"] == got, name


async def test_every_builtin_type_is_written_to_node_opcua_and_read_back_unchanged(
    node_opcua_server: NodeOpcuaTestServer, requester: Requester
) -> None:
    server = node_opcua_server
    codec = await _codec(server.endpoint)
    targets, expected = [], {}
    for type_name, pair in SCALARS.items():
        current = await read_variant(server.endpoint, server.nodeid(_path(type_name)))
        vt = ua.VariantType[type_name]
        choice, expected[type_name] = pick_new_value(codec, pair, vt, current)
        targets.append({"Writer": "W", "Field": type_name, "Value": choice})
    before = {t: len(server.writes(_path(t))) for t in SCALARS}
    rid = str(uuid.uuid4())
    answer = await requester.ask({"RequestId": rid, "Targets": targets}, rid=rid)
    await _assert_written(server, answer, expected)
    assert requester.props[rid]["correlation_data"] in ([rid.encode()], rid.encode())
    assert {t: server.writes(_path(t))[before[t] :] for t in SCALARS} == {
        t: ["Good"] for t in SCALARS
    }


async def test_arrays_and_a_matrix_are_written_whole_and_by_index_range_on_node_opcua(
    node_opcua_server: NodeOpcuaTestServer, requester: Requester
) -> None:
    server = node_opcua_server
    whole = await requester.ask(
        {
            "Targets": [
                {"Writer": "W", "Field": "Doubles", "Value": [1.5, 2.5, 3.5, 4.5]},
                {"Writer": "W", "Field": "Strings", "Value": ["x", "ÿ", ""]},
                {"Writer": "W", "Field": "Int32Matrix", "Value": [[1, 2, 3], [4, 5, -6]]},
            ]
        }
    )
    await _assert_written(
        server,
        whole,
        {
            "Doubles": ua.Variant([1.5, 2.5, 3.5, 4.5], ua.VariantType.Double, is_array=True),
            "Strings": ua.Variant(["x", "ÿ", ""], ua.VariantType.String, is_array=True),
            "Int32Matrix": ua.Variant(
                [[1, 2, 3], [4, 5, -6]], ua.VariantType.Int32, [2, 3], is_array=True
            ),
        },
    )
    parts = await requester.ask(
        {
            "Targets": [
                {"Writer": "W", "Field": "Doubles", "Value": [9.5, 8.5], "IndexRange": "1:2"},
                {
                    "Writer": "W",
                    "Field": "Int32Matrix",
                    "Value": {"UaType": 6, "Value": [6, 5, 4, 3, 2, 1], "Dimensions": [2, 3]},
                },
            ]
        }
    )
    check_response(parts)
    assert parts["Result"]["Code"] == 0, parts
    doubles = await read_variant(server.endpoint, server.nodeid(_path("Doubles")))
    assert doubles.Value == [1.5, 9.5, 8.5, 4.5]
    matrix = await read_variant(server.endpoint, server.nodeid(_path("Int32Matrix")))
    assert (matrix.Value, matrix.Dimensions) == ([[6, 5, 4], [3, 2, 1]], [2, 3])


async def test_mqtt311_requester_gets_its_answer_on_reply_to_from_node_opcua(
    node_opcua_server: NodeOpcuaTestServer, mosquitto_tls: MosquittoBroker, requester: Requester
) -> None:
    del requester  # only to wait until the bridge serves requests
    server = node_opcua_server
    old = await read_variant(server.endpoint, server.nodeid(_path("Double")))
    value = -old.Value - 1.25  # differs from whatever an earlier test left there
    async with serving_requester(mosquitto_tls, "3.1.1") as r:
        answer = await r.ask(
            {"ReplyTo": REPLIES, "Targets": [{"Writer": "W", "Field": "Double", "Value": value}]}
        )
    await _assert_written(server, answer, {"Double": ua.Variant(value, ua.VariantType.Double)})


async def test_refused_targets_are_answered_and_never_reach_node_opcua(
    node_opcua_server: NodeOpcuaTestServer, requester: Requester
) -> None:
    """The bridge's column of the "what servers answer" table, plus the allow-list."""
    server = node_opcua_server
    touched = ("ReadOnly", "NotAllowed", "Double")
    before = {n: await read_variant(server.endpoint, server.nodeid(_path(n))) for n in touched}
    writes_before = {n: len(server.writes(_path(n))) for n in touched}
    cases = [
        ({"Writer": "W", "Field": "ReadOnly", "Value": 99.0}, "BadNotWritable"),
        ({"Writer": "W", "Field": "Double", "Value": {"UaType": 6, "Value": 7}}, "BadTypeMismatch"),
        ({"Writer": "W", "Field": "Double", "Value": [99.0]}, "BadTypeMismatch"),
        ({"NodeId": server.nodeid(MISSING), "Value": 99.0}, "BadNodeIdUnknown"),
        ({"Writer": "W", "Field": "NotAllowed", "Value": 99.0}, "BadUserAccessDenied"),
        ({"NodeId": server.nodeid(_path("NotAllowed")), "Value": 99.0}, "BadUserAccessDenied"),
    ]
    answer = await requester.ask({"Targets": [target for target, _ in cases]})
    check_response(answer)
    assert [t["Status"]["Symbol"] for t in answer["Targets"]] == [symbol for _, symbol in cases]
    assert answer["Result"]["Symbol"] == "BadNotWritable"
    for name in touched:
        assert len(server.writes(_path(name))) == writes_before[name], name  # none was sent
        after = await read_variant(server.endpoint, server.nodeid(_path(name)))
        assert after == before[name], name


async def _direct_write(endpoint: str, writes: list[tuple[str, ua.Variant]]) -> list[str]:
    """StatusCode names of one Write service call made by a plain client (no bridge checks)."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        results = await client.uaclient.write(
            ua.WriteParameters(
                NodesToWrite=[
                    ua.WriteValue(
                        NodeId=parse_nodeid(node, ns),
                        AttributeId=ua.AttributeIds.Value,
                        Value=ua.DataValue(value),
                    )
                    for node, value in writes
                ]
            )
        )
        return [ua.StatusCode(r.value).name for r in results]


#: What a plain Write (no bridge) of each case gets from (node-opcua, asyncua): the "what servers
#: answer" table of docs/write-back.md. The bridge refuses all four itself.
SERVER_ANSWERS = {
    "read-only node": ("BadNotWritable", "BadUserAccessDenied"),
    "Int32 for a Double node": ("BadTypeMismatch", "BadTypeMismatch"),
    "array for a scalar node": ("Good", "Good"),
    "unknown NodeId": ("BadNodeIdUnknown", "BadUserAccessDenied"),
}


async def test_what_node_opcua_and_asyncua_answer_to_writes_the_bridge_never_sends(
    node_opcua_server: NodeOpcuaTestServer, small_opcua_server: OpcUaTestServer
) -> None:
    double = ua.Variant(1.0, ua.VariantType.Double)
    values = [
        double,
        ua.Variant(7, ua.VariantType.Int32),
        ua.Variant([1.0], ua.VariantType.Double, is_array=True),
        double,
    ]

    node = node_opcua_server
    scalar = node.nodeid(_path("NotAllowed"))
    before = await read_variant(node.endpoint, scalar)
    nodes = [node.nodeid(_path("ReadOnly")), scalar, scalar, node.nodeid(MISSING)]
    node_opcua = await _direct_write(node.endpoint, list(zip(nodes, values, strict=True)))
    assert await read_variant(node.endpoint, scalar) == values[2]  # the scalar node holds it
    assert await _direct_write(node.endpoint, [(scalar, before)]) == ["Good"]  # for the others

    asyncua = small_opcua_server
    doubles = [
        v for v in asyncua.variables if v["builtin_type"] == "Double" and v["value_rank"] == -1
    ]
    scalar = next(v["nodeid"] for v in doubles if v["writable"])
    read_only = next(v["nodeid"] for v in doubles if not v["writable"])
    nodes = [read_only, scalar, scalar, asyncua.nodeid("No.Such.Node")]
    answers = await _direct_write(asyncua.endpoint, list(zip(nodes, values, strict=True)))
    assert await read_variant(asyncua.endpoint, scalar) == values[2]

    assert dict(zip(SERVER_ANSWERS, zip(node_opcua, answers, strict=True), strict=True)) == (
        SERVER_ANSWERS
    )

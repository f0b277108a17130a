"""Browse against real OPC UA servers: the asyncua test server (10,000+ variables, in its own
process), node-opcua, and a small asyncua server in this process that refuses some nodes."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua

from harness.opcua_servers import NodeOpcuaTestServer, OpcUaTestServer, start_opcua_server
from harness.pki import make_application_certificate
from harness.plant_model import APPLICATION_URI, SERVER_CERT_NAME, SERVER_KEY_NAME
from harness.processes import free_port
from opcua_mqtt.adapters.opcua import (
    BrowseStats,
    ConnectionOptions,
    OpcUaConnectionError,
    browse_client,
    browse_endpoint,
    connect,
)
from opcua_mqtt.adapters.opcua.certs import thumbprint
from opcua_mqtt.core.address_space import BrowseResult, NodeClass


def _guid_lower(node_id: str) -> str:
    """Guid NodeIds compare case-insensitively (the manifest writes them lower case)."""
    return re.sub(r";g=([0-9A-Fa-f-]+)$", lambda m: ";g=" + m.group(1).lower(), node_id)


def insecure(endpoint: str, **kw: Any) -> ConnectionOptions:
    return ConnectionOptions(endpoint=endpoint, security_policy="None", security_mode="None", **kw)


def secure(server: Any, tmp_path: Path, **kw: Any) -> ConnectionOptions:
    return ConnectionOptions(
        endpoint=server.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=tmp_path / "client" / "cert.pem",
        private_key=tmp_path / "client" / "key.pem",
        trust_dir=tmp_path / "trusted",
        **kw,
    )


@pytest.fixture(scope="module")
def plant_browse(opcua_server: OpcUaTestServer) -> tuple[BrowseResult, BrowseStats]:
    """One browse of the whole 10k server from Objects, shared by the read-only tests."""
    stats = BrowseStats()
    result = asyncio.run(browse_endpoint(insecure(opcua_server.endpoint), stats=stats))
    return result, stats


def test_browse_finds_exactly_the_manifest_variables(
    plant_browse: tuple[BrowseResult, BrowseStats], opcua_server: OpcUaTestServer
) -> None:
    result, stats = plant_browse
    expected = {_guid_lower(v["nodeid"]): v for v in opcua_server.variables}
    found = {
        _guid_lower(n.node_id): n
        for n in result.variables()
        if n.browse_path[0] == "Plant"
        and n.node_id.startswith(f"nsu={opcua_server.namespace_uri};")
    }
    assert len(expected) >= 10_000
    assert set(found) == set(expected)
    assert not [n for n in result.nodes if n.error]
    mismatches = []
    for key, want in expected.items():
        got = found[key]
        # Null values live in BaseDataType variables: their FieldMetaData built-in type is
        # Variant (24), the type of the DataType, not of the value (OPC 10000-14 §6.2.3.2).
        builtin = 24 if want["builtin_type"] == "Null" else want["builtin_type_id"]
        facts = (got.builtin_type, got.value_rank, got.writable, got.path_string())
        wanted = (builtin, want["value_rank"], want["writable"], want["path"])
        if facts != wanted:
            mismatches.append((key, facts, wanted))
        if want["array_dimensions"] is not None:
            assert got.array_dimensions == tuple(want["array_dimensions"]), key
        if want["data_type"] is not None:
            assert got.data_type == want["data_type"], key
        assert got.readable is True
        assert got.description == want["description"], key
    assert mismatches == []
    assert result.server_uri == opcua_server.application_uri
    assert opcua_server.namespace_uri in result.namespaces
    # Batched: a few dozen requests for ~11,000 nodes and ~70,000 attributes.
    requests = stats.browse_requests + stats.browse_next_requests + stats.read_requests
    assert requests < len(result.nodes) / 50, stats


def test_builtin_types_of_structures_and_arrays(
    plant_browse: tuple[BrowseResult, BrowseStats], opcua_server: OpcUaTestServer
) -> None:
    result, _ = plant_browse
    nodes = {n.path_string(): n for n in result.nodes}
    machine = "Plant/Area1/Line1/Machine1"
    ext = nodes[f"{machine}/Status/ExtensionObject"]
    assert (ext.data_type, ext.data_type_name, ext.builtin_type) == ("i=884", "Range", 22)
    matrix = nodes[f"{machine}/Arrays/DoubleMatrix"]
    assert matrix.value_rank == 2 and matrix.array_dimensions is not None
    assert (matrix.data_type_name, matrix.builtin_type) == ("Double", 11)
    variants = nodes[f"{machine}/Arrays/VariantArray"]
    assert (variants.data_type_name, variants.builtin_type, variants.value_rank) == (
        "BaseDataType",
        24,
        1,
    )


def test_cycles_and_shared_children_are_visited_once(
    plant_browse: tuple[BrowseResult, BrowseStats], opcua_server: OpcUaTestServer
) -> None:
    result, _ = plant_browse
    ids = [n.node_id for n in result.nodes]
    assert len(ids) == len(set(ids))
    manifest = opcua_server.manifest
    by_id = {n.node_id: n for n in result.nodes}
    shared = by_id[manifest["shared"]["node"]]
    assert shared.parent_node_id in manifest["shared"]["parents"]
    # Breadth first: the shorter path (via Utilities) wins over Area1/Line1.
    assert shared.path_string() == "Plant/Utilities/SharedTank"
    target = by_id[manifest["cycle"]["target"]]
    assert target.path_string() == "Plant/Area1"
    # Depth-first output order: every node comes after its parent.
    position = {n.node_id: i for i, n in enumerate(result.nodes)}
    for node in result.nodes:
        if node.parent_node_id in position:
            assert position[node.parent_node_id] < position[node.node_id]


async def test_batching_really_happens(opcua_server: OpcUaTestServer) -> None:
    calls: dict[str, list[int]] = {"browse": [], "browse_next": [], "read": []}
    async with connect(insecure(opcua_server.endpoint)) as client:
        uaclient = client.uaclient
        originals = {name: getattr(uaclient, name) for name in calls}

        def counting(name: str) -> Any:
            async def call(params: Any) -> Any:
                items = (
                    getattr(params, "NodesToBrowse", None)
                    or getattr(params, "NodesToRead", None)
                    or getattr(params, "ContinuationPoints", [])
                )
                calls[name].append(len(items))
                return await originals[name](params)

            return call

        for name in calls:
            setattr(uaclient, name, counting(name))
        stats = BrowseStats()
        result = await browse_client(
            client, opcua_server.endpoint, start=opcua_server.nodeid("Plant"), stats=stats
        )
    nodes = len(result.nodes)
    assert nodes > 10_000
    assert len(calls["browse"]) == stats.browse_requests
    assert len(calls["read"]) == stats.read_requests
    assert len(calls["browse_next"]) == stats.browse_next_requests
    total = sum(len(v) for v in calls.values())
    assert total < nodes / 50, calls  # one request per node would be > 10,000
    assert max(calls["browse"]) <= stats.browse_batch
    assert max(calls["read"]) <= stats.read_batch
    assert stats.server_max_nodes_per_read == 10_000  # the server states its OperationLimits
    assert sum(calls["browse"]) >= nodes  # every node browsed (for children) exactly once
    assert sum(calls["browse"]) < nodes + 100


@pytest.mark.slow
async def test_depth_limit_and_filters(opcua_server: OpcUaTestServer) -> None:
    options = insecure(opcua_server.endpoint)
    plant = opcua_server.nodeid("Plant")
    top = await browse_endpoint(options, start=plant, max_depth=1)
    assert {n.browse_name for n in top.nodes} >= {"Area1", "Utilities", "Simulation", "Dynamic"}
    assert all(len(n.browse_path) == 1 for n in top.nodes)
    assert top.start_node == plant

    two = await browse_endpoint(options, start=plant, max_depth=2)
    assert max(len(n.browse_path) for n in two.nodes) == 2

    status = await browse_endpoint(
        options, start=plant, path_glob="Area1/Line1/Machine*/Status/*", data_types=["Double"]
    )
    assert [n.path_string() for n in status.nodes] == [
        f"Area1/Line1/Machine{i}/Status/Double" for i in range(1, 9)
    ]
    objects = await browse_endpoint(
        options, start=plant, path_glob="Area1/**", node_classes=[NodeClass.OBJECT]
    )
    assert objects.nodes and {n.node_class for n in objects.nodes} == {NodeClass.OBJECT}
    expected = {
        p["path"].removeprefix("Plant/")
        for p in opcua_server.variables
        if p["path"].startswith("Plant/Area1/Line2/") and p["writable"]
    }
    writable_line2 = await browse_endpoint(
        options, start=plant, path_glob="Area1/Line2/**", node_classes=["Variable"]
    )
    assert {n.path_string() for n in writable_line2.nodes if n.writable} == expected


async def test_values_are_read_as_compact_json(opcua_server: OpcUaTestServer) -> None:
    result = await browse_endpoint(
        insecure(opcua_server.endpoint),
        start=opcua_server.nodeid("Plant.Identifiers"),
        read_values=True,
    )
    values = {n.browse_name: n.value for n in result.variables()}
    assert values["Numeric"] == {"UaType": 6, "Value": 1001}
    assert values["NumericWritable"] == {"UaType": 11, "Value": 10.02}
    assert values["Guid"] == {"UaType": 12, "Value": "guid id"}


# -- a server that refuses to describe some nodes ------------------------------------------


@pytest.fixture
async def refusing_server() -> AsyncIterator[tuple[str, str]]:
    """asyncua in this process: Objects/Plant with two readable variables, one whose
    attributes are refused (BadUserAccessDenied), one that cannot be browsed, and a reference
    to a deleted node."""
    server = Server()
    await server.init()
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/refusing"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    uri = "urn:opcua-mqtt:test:refusing"
    ns = await server.register_namespace(uri)
    plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", ns), "Plant")
    await plant.add_variable(ua.NodeId("Before", ns), "Before", 1.0)
    secret = await plant.add_variable(ua.NodeId("Secret", ns), "Secret", 2.0)
    closed = await plant.add_folder(ua.NodeId("Closed", ns), "Closed")
    await closed.add_variable(ua.NodeId("Hidden", ns), "Hidden", 3.0)
    ghost = await plant.add_variable(ua.NodeId("Ghost", ns), "Ghost", 4.0)
    await plant.add_variable(ua.NodeId("After", ns), "After", 5)
    params = ua.DeleteNodesParameters(
        NodesToDelete=[ua.DeleteNodesItem(NodeId=ghost.nodeid, DeleteTargetReferences=False)]
    )
    assert server.iserver.node_mgt_service.delete_nodes(params)[0].is_good()

    attributes = server.iserver.attribute_service
    read = attributes.read

    def refusing_read(p: ua.ReadParameters) -> list[ua.DataValue]:
        results: list[ua.DataValue] = read(p)
        for i, item in enumerate(p.NodesToRead):
            if item.NodeId == secret.nodeid and item.AttributeId != ua.AttributeIds.NodeClass:
                results[i] = ua.DataValue(
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
                )
        return results

    views = server.iserver.view_service
    browse = views.browse

    def refusing_browse(p: ua.BrowseParameters) -> list[ua.BrowseResult]:
        results: list[ua.BrowseResult] = browse(p)
        for i, desc in enumerate(p.NodesToBrowse):
            if desc.NodeId == closed.nodeid:
                results[i] = ua.BrowseResult(
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
                )
        return results

    attributes.read = refusing_read
    views.browse = refusing_browse
    async with server:
        yield endpoint, f"nsu={uri};s=Plant"


async def test_refused_node_is_reported_and_skipped(refusing_server: tuple[str, str]) -> None:
    endpoint, plant = refusing_server
    result = await browse_endpoint(insecure(endpoint), start=plant)
    nodes = {n.browse_name: n for n in result.nodes}
    assert set(nodes) == {"Before", "Secret", "Closed", "Ghost", "After"}
    assert nodes["Secret"].error is not None and "BadUserAccessDenied" in nodes["Secret"].error
    assert nodes["Secret"].data_type is None
    assert "BadUserAccessDenied browsing it" in (nodes["Closed"].error or "")
    assert "BadNodeId" in (nodes["Ghost"].error or "")
    assert {n.browse_name for n in result.variables()} == {"Before", "After"}
    assert nodes["After"].builtin_type == 8 and nodes["After"].error is None  # Python int: Int64


# -- security, users and the errors people meet ---------------------------------------------


async def test_basic256sha256_sign_and_encrypt_with_user_and_trust_on_first_contact(
    opcua_server: OpcUaTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = secure(
        opcua_server,
        tmp_path,
        trust_server_cert=True,
        username=opcua_server.username,
        password=opcua_server.password,
    )
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt"):
        result = await browse_endpoint(options, start=opcua_server.nodeid("Plant"), max_depth=1)
    assert {n.browse_name for n in result.nodes} >= {"Area1", "Utilities"}
    server_cert = _load(opcua_server.server_cert_path)
    print_ = thumbprint(server_cert)
    assert any(
        "TRUSTING SERVER CERTIFICATE" in r.getMessage() and print_ in r.getMessage()
        for r in caplog.records
    )
    assert [p.name for p in (tmp_path / "trusted").iterdir()] == [
        next((tmp_path / "trusted").glob(f"*_{print_}.der")).name
    ]
    # Our certificate was made on first use: RSA 2048, key readable by its owner only.
    assert (tmp_path / "client" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert opcua_server.password not in caplog.text

    # Second contact: trusted from the folder, no flag needed, no warning.
    caplog.clear()
    trusted = secure(
        opcua_server, tmp_path, username=opcua_server.username, password=opcua_server.password
    )
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt"):
        again = await browse_endpoint(trusted, start=opcua_server.nodeid("Plant"), max_depth=1)
    assert len(again.nodes) == len(result.nodes)
    assert "TRUSTING" not in caplog.text


def _load(path: Path) -> Any:
    from opcua_mqtt.adapters.opcua.certs import load_certificate

    return load_certificate(path.read_bytes())


async def _fails(options: ConnectionOptions) -> OpcUaConnectionError:
    with pytest.raises(OpcUaConnectionError) as info:
        await browse_endpoint(options, max_depth=1)
    error = info.value
    assert "\n" not in error.message and error.hint and "\n" not in error.hint
    return error


async def test_wrong_password(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    options = secure(
        opcua_server, tmp_path, trust_server_cert=True, username="operator", password="wrong"
    )
    error = await _fails(options)
    assert error.kind == "auth"
    assert error.message.startswith("the server refused user 'operator'")
    assert error.hint == "check the user name and password"
    assert "wrong" not in str(error)


async def test_untrusted_server_certificate(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    error = await _fails(secure(opcua_server, tmp_path))
    assert error.kind == "server-untrusted"
    assert "is not trusted" in error.message
    assert thumbprint(_load(opcua_server.server_cert_path)) in error.message
    assert "--trust-server-cert" in (error.hint or "")
    assert not (tmp_path / "trusted").exists() or not any((tmp_path / "trusted").iterdir())


@pytest.mark.parametrize(
    ("certificate", "problem"),
    [
        ({"application_uri": "urn:another:server"}, "names urn:another:server in its"),
        ({"days": -2, "valid_since_days": 30}, "it expired on"),
        ({"days": 30, "valid_since_days": -5}, "it is not valid before"),
    ],
    ids=["another-application-uri", "expired", "not-yet-valid"],
)
async def test_server_certificate_that_cannot_stand_for_the_server_is_refused_even_when_trusting(
    tmp_path: Path, certificate: dict[str, Any], problem: str
) -> None:
    """OPC 10000-4 §6.1.3 Table 106: validity period and application URI are checked whatever
    the trust list says, and --trust-server-cert never saves such a certificate."""
    cert_dir = tmp_path / "server-pki"
    make_application_certificate(
        cert_dir / SERVER_CERT_NAME,
        cert_dir / SERVER_KEY_NAME,
        certificate.get("application_uri", APPLICATION_URI),
        common_name="odd server",
        days=certificate.get("days", 30),
        valid_since_days=certificate.get("valid_since_days", 1),
    )
    server = start_opcua_server(tmp_path / "server", variables=10, cert_dir=cert_dir)
    try:
        error = await _fails(secure(server, tmp_path, trust_server_cert=True))
    finally:
        server.stop()
    assert error.kind == "server-untrusted"
    assert problem in error.message and "cannot be used" in error.message
    assert not (tmp_path / "trusted").exists() or not any((tmp_path / "trusted").iterdir())


async def test_nothing_listening() -> None:
    error = await _fails(insecure(f"opc.tcp://127.0.0.1:{free_port()}/nothing"))
    assert error.kind == "unreachable"
    assert "connection refused" in error.message
    assert error.hint == "is the server running and the endpoint right?"


async def test_security_policy_not_offered(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    options = ConnectionOptions(
        endpoint=opcua_server.endpoint,
        security_policy="Aes256_Sha256_RsaPss",
        security_mode="SignAndEncrypt",
        trust_dir=tmp_path,
    )
    error = await _fails(options)
    assert error.kind == "policy"
    assert error.message.endswith("it offers None, Basic256Sha256/SignAndEncrypt")


async def test_password_over_policy_none_needs_a_trusted_server(
    opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    # Over policy None the asyncua server asks for the password encrypted with its certificate:
    # so the server certificate must be trusted first, like with a secure channel.
    options = insecure(
        opcua_server.endpoint, username="operator", password="secret-pw", trust_dir=tmp_path
    )
    error = await _fails(options)
    assert error.kind == "server-untrusted"


async def test_our_certificate_rejected_by_the_server_then_trusted(
    tmp_path: Path, opcua_server_cert_dir: Path
) -> None:
    trusted_clients = tmp_path / "server-trusts"
    trusted_clients.mkdir()
    server = start_opcua_server(
        tmp_path / "server",
        variables=50,
        cert_dir=opcua_server_cert_dir,
        trusted_client_certs=trusted_clients,
        timeout=30.0,
    )
    try:
        options = secure(server, tmp_path, trust_server_cert=True)
        error = await _fails(options)
        assert error.kind == "client-rejected"
        assert "rejected our client certificate" in error.message
        assert str(options.certificate) in (error.hint or "")
        (trusted_clients / "bridge.pem").write_bytes(options.certificate.read_bytes())
        result = await browse_endpoint(options, start=server.nodeid("Plant"), max_depth=1)
        assert result.nodes
    finally:
        server.stop()


# -- node-opcua ------------------------------------------------------------------------------


async def test_browse_node_opcua(node_opcua_server: NodeOpcuaTestServer, tmp_path: Path) -> None:
    result = await browse_endpoint(
        insecure(node_opcua_server.endpoint),
        start=node_opcua_server.nodeid("Plant"),
        read_values=True,
    )
    nodes = {n.path_string(): n for n in result.nodes}
    speed = nodes["Line1/Filler/Speed"]
    assert (speed.data_type_name, speed.builtin_type, speed.value_rank) == ("Double", 11, -1)
    assert (speed.readable, speed.writable) == (True, True)
    assert speed.node_id == node_opcua_server.nodeid("Plant.Line1.Filler.Speed")
    valves = nodes["Line1/Filler/ValveStates"]
    assert (valves.builtin_type, valves.value_rank, valves.writable) == (1, 1, False)
    assert nodes["Line1/Capper/CapCount"].builtin_type == 8
    assert nodes["Utilities/Compressor/Hours"].value == {"UaType": 9, "Value": "123456"}
    assert len(result.variables()) == 23

    options = secure(
        node_opcua_server,
        tmp_path,
        trust_server_cert=True,
        username=node_opcua_server.username,
        password=node_opcua_server.password,
    )
    full = await browse_endpoint(options)
    assert {n.node_id for n in result.nodes} <= {n.node_id for n in full.nodes}
    assert len({n.node_id for n in full.nodes}) == len(full.nodes)

    wrong = secure(node_opcua_server, tmp_path, username="operator", password="nope")
    error = await _fails(wrong)
    assert error.kind == "auth"

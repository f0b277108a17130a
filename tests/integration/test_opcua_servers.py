"""Smoke tests proving the OPC UA server fixtures are real servers (no mocks).

An asyncua client connects over TCP to the asyncua test server (its own process, 10,000+
variables) and to node-opcua's plant server, with security None / anonymous and with
Basic256Sha256 SignAndEncrypt + a client certificate + user name and password; a wrong password
is refused. The manifest of the big server is checked against its claims and against a browse.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Server, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from harness.opcua_server import init_server
from harness.opcua_servers import NodeOpcuaTestServer, OpcUaTestServer, start_opcua_server
from harness.pki import make_application_certificate
from harness.plant_manifest import parse_nodeid
from harness.plant_model import APPLICATION_URI, NAMESPACE_URI

CLIENT_URI = "urn:opcua-mqtt:test-client"
ALL_BUILTIN_TYPES = set(range(26))  # Null (0) .. DiagnosticInfo (25)
REFUSED = (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected)


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed client application certificate (DER) and key (PEM)."""
    folder = tmp_path_factory.mktemp("opcua-client-pki")
    cert, key = folder / "client_cert.der", folder / "client_key.pem"
    make_application_certificate(cert, key, CLIENT_URI, common_name="opcua-mqtt test client")
    return cert, key


@asynccontextmanager
async def connect(
    endpoint: str,
    *,
    secure: tuple[Path, Path, Path] | None = None,
    user: tuple[str, str] | None = None,
) -> AsyncIterator[Client]:
    """An asyncua client session; ``secure`` = (client cert, client key, server cert)."""
    client = Client(endpoint, timeout=10)
    client.application_uri = CLIENT_URI
    client.session_timeout = 30_000  # a session left behind by a crashed test dies soon
    if secure is not None:
        cert, key, server_cert = secure
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(cert),
            private_key=str(key),
            server_certificate=str(server_cert),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    if user is not None:
        client.set_user(user[0])
        client.set_password(user[1])
    async with client:
        yield client


async def _children(client: Client, nodeid: str | ua.NodeId, ns_array: list[str]) -> set[str]:
    node = client.get_node(parse_nodeid(nodeid, ns_array) if isinstance(nodeid, str) else nodeid)
    return {
        ref.BrowseName.Name
        for ref in await node.get_references(ua.ObjectIds.HierarchicalReferences)
    }


# -- the asyncua test server ------------------------------------------------------------------


def test_manifest_lists_10000_variables_of_every_builtin_type(
    opcua_server: OpcUaTestServer,
) -> None:
    manifest = opcua_server.manifest
    variables = manifest["variables"]
    assert manifest["variable_count"] == len(variables) >= 10_000
    assert len({v["nodeid"] for v in variables}) == len(variables), "a variable is listed twice"
    assert manifest["namespace_uri"] == opcua_server.namespace_uri == NAMESPACE_URI
    assert manifest["endpoint"] == opcua_server.endpoint
    assert opcua_server.endpoint == f"opc.tcp://127.0.0.1:{opcua_server.port}/opcua-mqtt/test"

    # Every type the server claims is really there, and it claims them all.
    served = {v["builtin_type_id"] for v in variables}
    assert served == set(manifest["builtin_type_ids"]) == ALL_BUILTIN_TYPES
    scalar = {v["builtin_type_id"] for v in variables if v["value_rank"] == -1}
    arrays = {v["builtin_type_id"] for v in variables if v["value_rank"] == 1}
    assert scalar == ALL_BUILTIN_TYPES - {24}  # no scalar Variant inside a Variant
    assert arrays == ALL_BUILTIN_TYPES - {0}
    matrices = [v for v in variables if v["value_rank"] == 2]
    assert matrices and all(len(v["array_dimensions"]) == 2 for v in matrices)

    writable = Counter(v["writable"] for v in variables)
    assert writable[True] > 1000 and writable[False] > 1000
    assert sum(1 for v in variables if v["description"]) > 1000

    ids = {v["nodeid"].split(";", 1)[1][:2] for v in variables}
    assert ids == {"s=", "i=", "g=", "b="}
    assert manifest["cycle"]["target"] == opcua_server.nodeid("Plant.Area1")
    assert len(manifest["shared"]["parents"]) == 2
    # Big folders make asyncua's server quadratic: no object has more than ~300 children.
    per_parent = Counter(v["path"].rsplit("/", 1)[0] for v in variables)
    assert max(per_parent.values()) <= 300
    # The start-up budget (the whole process, from exec to READY, is in startup_seconds).
    assert manifest["build_seconds"] < 15, manifest["build_seconds"]


async def test_anonymous_no_security_reads_and_browses(opcua_server: OpcUaTestServer) -> None:
    async with connect(opcua_server.endpoint) as client:
        ns_array = await client.get_namespace_array()
        assert NAMESPACE_URI in ns_array
        root = {ref.BrowseName.Name for ref in await client.nodes.root.get_references()}
        assert {"Objects", "Types", "Views"} <= root
        assert {"Plant", "Control", "Server"} <= await _children(
            client, client.nodes.objects.nodeid, ns_array
        )

        # One variable of each built-in type and value rank: the server serves what the
        # manifest says (Variant type, ValueRank, ArrayDimensions, DataType).
        picks: dict[tuple[int, int], dict[str, Any]] = {}
        for v in opcua_server.variables:
            picks.setdefault((v["builtin_type_id"], v["value_rank"]), v)
        nodes = [client.get_node(parse_nodeid(v["nodeid"], ns_array)) for v in picks.values()]
        values = await client.read_attributes(nodes, ua.AttributeIds.Value)
        ranks = await client.read_attributes(nodes, ua.AttributeIds.ValueRank)
        data_types = await client.read_attributes(nodes, ua.AttributeIds.DataType)
        for v, value, rank, data_type in zip(
            picks.values(), values, ranks, data_types, strict=True
        ):
            assert value.StatusCode.is_good(), v
            assert value.Value.VariantType.value == v["builtin_type_id"], v
            assert rank.Value.Value == v["value_rank"], v
            assert data_type.Value.Value.to_string() == v["data_type"], v
            if v["value_rank"] == 2:
                assert value.Value.Dimensions == v["array_dimensions"], v

        # Deterministic values (seed 1 = Machine1 of Area1/Line1).
        machine = "Plant.Area1.Line1.Machine1"
        double = client.get_node(
            parse_nodeid(opcua_server.nodeid(f"{machine}.Status.Double"), ns_array)
        )
        assert await double.read_value() == 1 * 1.25 + 0.1


async def test_browse_finds_the_manifest_subtree_the_cycle_and_the_shared_node(
    opcua_server: OpcUaTestServer,
) -> None:
    async with connect(opcua_server.endpoint) as client:
        ns_array = await client.get_namespace_array()
        machine = opcua_server.nodeid("Plant.Area1.Line1.Machine1")
        # Browse from one machine until nothing new turns up. The cycle (Machine1 organizes
        # Area1) leads back up, so this finds all of Area1, plus the shared tank under Line1.
        found: set[str] = set()
        pending = [parse_nodeid(machine, ns_array)]
        seen = set(pending)
        while pending:
            refs_per_node = await asyncio.gather(
                *(
                    client.get_node(n).get_references(
                        ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward
                    )
                    for n in pending
                )
            )
            pending = []
            for refs in refs_per_node:
                for ref in refs:
                    target = ref.NodeId
                    if target in seen:
                        continue
                    seen.add(target)
                    if ref.NodeClass == ua.NodeClass.Variable:
                        found.add(f"nsu={NAMESPACE_URI};s={target.Identifier}")
                    else:
                        pending.append(target)
        expected = {
            v["nodeid"]
            for v in opcua_server.variables
            if v["path"].startswith(("Plant/Area1/", "Plant/Utilities/SharedTank/"))
        }
        assert len(found) > 2000
        assert found == expected
        assert parse_nodeid(opcua_server.nodeid("Plant.Area1"), ns_array) in seen, "cycle missing"

        tank = client.get_node(parse_nodeid(opcua_server.manifest["shared"]["node"], ns_array))
        parents = await tank.get_references(
            ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Inverse
        )
        assert {r.BrowseName.Name for r in parents} == {"Line1", "Utilities"}


async def test_signandencrypt_with_user_and_password(
    opcua_server: OpcUaTestServer, client_cert: tuple[Path, Path]
) -> None:
    cert, key = client_cert
    async with connect(
        opcua_server.endpoint,
        secure=(cert, key, opcua_server.server_cert_path),
        user=(opcua_server.username, opcua_server.password),
    ) as client:
        assert client.security_policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
        endpoints = await client.get_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode) for e in endpoints}
        assert offered == {
            ("None", ua.MessageSecurityMode.None_),
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        }
        tokens = {t.TokenType for t in endpoints[0].UserIdentityTokens}
        assert tokens == {ua.UserTokenType.Anonymous, ua.UserTokenType.UserName}
        assert endpoints[0].Server.ApplicationUri == APPLICATION_URI
        ns_array = await client.get_namespace_array()
        # The session server is shared: read the writable value, do not change it.
        node = client.get_node(
            parse_nodeid(
                opcua_server.nodeid("Plant.Area1.Line1.Machine1.Parameters.Int32"), ns_array
            )
        )
        assert await node.read_value() == -100_001
        access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
        assert access.Value.Value & ua.AccessLevel.CurrentWrite.mask


async def test_wrong_password_is_refused(
    opcua_server: OpcUaTestServer, client_cert: tuple[Path, Path]
) -> None:
    cert, key = client_cert
    with pytest.raises(ua.UaStatusCodeError) as refused:
        async with connect(
            opcua_server.endpoint,
            secure=(cert, key, opcua_server.server_cert_path),
            user=(opcua_server.username, "wrong-" + opcua_server.password),
        ):
            pass
    assert refused.value.code in REFUSED


async def test_control_methods_and_simulation(small_opcua_server: OpcUaTestServer) -> None:
    server = small_opcua_server
    assert 200 <= server.manifest["variable_count"] < 400
    async with connect(server.endpoint) as client:
        ns_array = await client.get_namespace_array()
        control = client.get_node(parse_nodeid(server.manifest["control"]["object"], ns_array))

        def method(name: str) -> ua.NodeId:
            return parse_nodeid(server.manifest["control"][name], ns_array)

        new_id = await control.call_method(method("AddVariable"), "Extra1")
        assert new_id == server.nodeid("Plant.Dynamic.Extra1")
        added = client.get_node(parse_nodeid(new_id, ns_array))
        assert await added.read_value() == 0.0
        assert "Extra1" in await _children(client, server.manifest["dynamic"], ns_array)

        mutable = client.get_node(parse_nodeid(server.nodeid("Plant.Dynamic.Mutable"), ns_array))
        assert await mutable.read_data_type() == ua.NodeId(ua.ObjectIds.Int32)
        changed = await control.call_method(
            method("ChangeDataType"), server.nodeid("Plant.Dynamic.Mutable")
        )
        assert changed == ["Int32", "Double"]
        assert await mutable.read_data_type() == ua.NodeId(ua.ObjectIds.Double)
        value = await mutable.read_data_value()
        assert value.Value.VariantType == ua.VariantType.Double and value.Value.Value == 42.0

        await control.call_method(method("DeleteVariable"), new_id)
        assert (
            await added.read_attribute(ua.AttributeIds.Value, raise_on_bad_status=False)
        ).StatusCode.value == ua.StatusCodes.BadNodeIdUnknown

        # The simulation changes every 100 ms: a subscription sees it.
        counter = client.get_node(parse_nodeid(server.manifest["simulation"]["Counter"], ns_array))
        received: asyncio.Queue[int] = asyncio.Queue()

        class Handler:
            def datachange_notification(self, node: Any, val: int, data: Any) -> None:
                received.put_nowait(val)

        sub = await client.create_subscription(
            ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=100,
                RequestedLifetimeCount=300,  # 30 s: short, in case the client dies
                RequestedMaxKeepAliveCount=10,
                MaxNotificationsPerPublish=0,
                PublishingEnabled=True,
                Priority=0,
            ),
            Handler(),
        )
        try:
            await sub.subscribe_data_change(counter, queuesize=10)
            first = await asyncio.wait_for(received.get(), 5)
            second = await asyncio.wait_for(received.get(), 5)
            third = await asyncio.wait_for(received.get(), 5)
            assert first < second < third
        finally:
            await sub.delete()


async def test_trusted_client_certificate_folder(
    tmp_path: Path, opcua_server_cert_dir: Path, client_cert: tuple[Path, Path]
) -> None:
    trust = tmp_path / "trusted"
    trust.mkdir()
    server = await asyncio.to_thread(
        start_opcua_server,
        tmp_path / "server",
        variables=10,
        cert_dir=opcua_server_cert_dir,
        trusted_client_certs=trust,
        timeout=30.0,
    )
    try:
        cert, key = client_cert
        secure = (cert, key, server.server_cert_path)
        with pytest.raises(ua.UaStatusCodeError) as refused:
            async with connect(server.endpoint, secure=secure):
                pass
        assert refused.value.code == ua.StatusCodes.BadCertificateUntrusted
        shutil.copy(cert, trust / cert.name)
        async with connect(server.endpoint, secure=secure) as client:
            assert NAMESPACE_URI in await client.get_namespace_array()
    finally:
        await asyncio.to_thread(server.stop)


def _standard_nodes(server: Server) -> dict[int, Any]:
    """BrowseName, NodeClass and references of every node ``ua.ObjectIds`` names."""
    aspace = server.iserver.aspace
    nodes = {}
    for ident in {v for k, v in vars(ua.ObjectIds).items() if not k.startswith("_")}:
        data = aspace.get(ua.NodeId(ident, 0))
        if data is not None:
            attributes = data.attributes
            nodes[ident] = (
                attributes[ua.AttributeIds.BrowseName].value.Value.Value,
                attributes[ua.AttributeIds.NodeClass].value.Value.Value,
                [(r.ReferenceTypeId, r.NodeId, r.IsForward) for r in data.references],
            )
    return nodes


async def test_the_start_up_cache_serves_the_standard_address_space_as_built(
    tmp_path: Path,
) -> None:
    """--aspace-cache: the first server builds the standard nodes and writes the shelf, the
    next one loads them from it, and both hold the same nodes."""
    shelf = tmp_path / "aspace"
    writer, reader = Server(), Server()
    await init_server(writer, shelf)
    assert shelf.with_name("aspace.ready").exists()
    await init_server(reader, shelf)
    assert not isinstance(reader.iserver.aspace._nodes, dict)  # asyncua's shelf-backed mapping
    built = _standard_nodes(writer)
    assert len(built) > 5_000
    assert _standard_nodes(reader) == built


# -- node-opcua's plant server ---------------------------------------------------------------


async def test_node_opcua_anonymous_reads_and_browses(
    node_opcua_server: NodeOpcuaTestServer,
) -> None:
    server = node_opcua_server
    assert server.endpoint == f"opc.tcp://127.0.0.1:{server.port}/opcua-mqtt/plant"
    async with connect(server.endpoint) as client:
        ns_array = await client.get_namespace_array()
        assert server.namespace_uri in ns_array
        root = {ref.BrowseName.Name for ref in await client.nodes.root.get_references()}
        assert {"Objects", "Types", "Views"} <= root
        assert {"Line1", "Utilities"} <= await _children(client, server.nodeid("Plant"), ns_array)
        speed = client.get_node(parse_nodeid(server.nodeid("Plant.Line1.Filler.Speed"), ns_array))
        assert await speed.read_value() == 120.5
        serial = client.get_node(parse_nodeid(server.nodeid("Plant.Line1.Capper.Serial"), ns_array))
        assert await serial.read_value() == b"\x00\x01\xfe\xff"
        hours = client.get_node(
            parse_nodeid(server.nodeid("Plant.Utilities.Compressor.Hours"), ns_array)
        )
        hours_value = await hours.read_data_value()
        assert hours_value.Value.VariantType == ua.VariantType.UInt64
        assert hours_value.Value.Value == 123456
        valves = client.get_node(
            parse_nodeid(server.nodeid("Plant.Line1.Filler.ValveStates"), ns_array)
        )
        assert await valves.read_value() == [True, False, True, True]
        assert await valves.read_value_rank() == 1


async def test_node_opcua_signandencrypt_with_user_and_password(
    node_opcua_server: NodeOpcuaTestServer, client_cert: tuple[Path, Path]
) -> None:
    server = node_opcua_server
    cert, key = client_cert
    secure = (cert, key, server.server_cert_path)
    async with connect(
        server.endpoint, secure=secure, user=(server.username, server.password)
    ) as client:
        ns_array = await client.get_namespace_array()
        setpoint = client.get_node(
            parse_nodeid(server.nodeid("Plant.Utilities.Compressor.Setpoint"), ns_array)
        )
        await setpoint.write_value(ua.Variant(7.25, ua.VariantType.Double))
        assert await setpoint.read_value() == 7.25
        await setpoint.write_value(ua.Variant(6.5, ua.VariantType.Double))

    with pytest.raises(ua.UaStatusCodeError) as refused:
        async with connect(server.endpoint, secure=secure, user=(server.username, "wrong")):
            pass
    assert refused.value.code in REFUSED

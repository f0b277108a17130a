"""The OPC UA session forgets what it learnt of a server when asyncua re-establishes the session
(adapters/opcua/session.py): a server restarted on the same port with another model is asked
anew, instead of answering with the first model's built-in types and string limits."""

from __future__ import annotations

import asyncio

from asyncua import Server, ua

from harness.processes import LOOPBACK, free_port
from opcua_mqtt.adapters.opcua import ConnectionOptions, connect
from opcua_mqtt.adapters.opcua.session import OpcUaSession, open_session

NAMESPACE = "urn:opcua-mqtt:test:restarting"
VT = ua.VariantType


async def _start_server(port: int, supertype: int, max_string_length: int) -> Server:
    """A server whose DataType ``Measure`` derives from ``supertype`` and whose
    ServerCapabilities allow strings of ``max_string_length`` characters."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://{LOOPBACK}:{port}/restarting")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    await server.get_node(ua.NodeId(supertype)).add_data_type(ua.NodeId("Measure", ns), "Measure")
    await server.nodes.objects.add_variable(ua.NodeId("Text", ns), "Text", "")
    await server.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxStringLength).write_value(
        ua.Variant(max_string_length, VT.UInt32)
    )
    await server.start()
    return server


async def _facts(session: OpcUaSession) -> tuple[int, int | None]:
    """What the session answers: Measure's built-in type, and the string limit of Text."""
    codec = await session.codec()
    measure = codec.decode_node_id(f"nsu={NAMESPACE};s=Measure")
    text = codec.decode_node_id(f"nsu={NAMESPACE};s=Text")
    builtin = (await session.builtin_types([measure]))[measure]
    limit = (await session.string_limits({text: VT.String}))[text].string
    return builtin, None if limit is None else limit.length


async def _established_again(session: OpcUaSession, states: list[str]) -> None:
    while not (session.established == 2 and session.usable):
        await asyncio.sleep(0.1)
    assert "reconnecting" in states or "disconnected" in states


async def test_a_restarted_server_with_another_model_is_asked_anew() -> None:
    port = free_port()
    options = ConnectionOptions(
        f"opc.tcp://{LOOPBACK}:{port}/restarting", trust_dir=None, auto_reconnect=True
    )
    states: list[str] = []
    server = await _start_server(port, ua.ObjectIds.Double, 10)
    try:
        async with open_session(lambda: connect(options), states.append) as session:
            assert await _facts(session) == (int(VT.Double), 10)
            await server.stop()
            server = await _start_server(port, ua.ObjectIds.String, 20)
            await asyncio.wait_for(_established_again(session, states), 60)
            assert await _facts(session) == (int(VT.String), 20)
    finally:
        await server.stop()

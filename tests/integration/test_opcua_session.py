"""One OPC UA session per connection (adapters/opcua/session.py): a session whose server goes
away says so at once, with the cause, and the next session on a server restarted on the same
port with another model asks it anew, instead of answering with the first model's built-in
types and string limits. Real asyncua servers in this process, over TCP."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asyncua import Client, Server, ua

from harness.processes import LOOPBACK, free_port
from opcua_mqtt.adapters.opcua import ConnectionOptions, OpcUaConnectionError, connect
from opcua_mqtt.adapters.opcua.session import OpcUaSession, open_session
from opcua_mqtt.adapters.opcua.source import MonitoredField
from opcua_mqtt.core.field_key import FieldKey

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


async def test_a_lost_session_says_why_and_the_next_one_asks_the_restarted_server_anew(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncua.client")
    port = free_port()
    options = ConnectionOptions(f"opc.tcp://{LOOPBACK}:{port}/restarting", trust_dir=None)
    server = await _start_server(port, ua.ObjectIds.Double, 10)
    try:
        async with open_session(lambda: connect(options)) as session:
            assert await _facts(session) == (int(VT.Double), 10)
            values: list[object] = []
            source = await session.subscriptions(values.extend)
            text = MonitoredField(FieldKey(0, 0, "Text"), f"nsu={NAMESPACE};s=Text", "Text", 100)
            assert await source.monitor(100, [text]) == {}
            while not values:  # the publish loop runs
                await asyncio.sleep(0.05)
            await server.stop()
            cause = await asyncio.wait_for(session.wait_lost(), 30)
            assert cause == "the server closed the connection"
            assert not session.usable
            await asyncio.sleep(1.5)  # a publish loop left running would log a traceback now
            await source.close()
        with pytest.raises(OpcUaConnectionError) as refused:
            async with open_session(lambda: connect(options)):
                pass
        assert refused.value.kind == "unreachable" and not refused.value.permanent
        server = await _start_server(port, ua.ObjectIds.String, 20)
        async with open_session(lambda: connect(options)) as session:
            assert await _facts(session) == (int(VT.String), 20)
    finally:
        await server.stop()
    # asyncua's client logged nothing about the loss: no traceback, no warning (the bridge
    # says it once)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncua.client")] == []


@pytest.mark.parametrize(
    "failure",
    [
        ua.UaStatusCodeError(ua.StatusCodes.BadSessionClosed),  # the server closed its sessions
        ConnectionError("connection lost"),  # the socket closed: asyncua fails what is pending
    ],
    ids=["session-closed", "socket-closed"],
)
async def test_the_second_publish_failing_after_the_loss_ends_its_loop_without_a_traceback(
    caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    """Two Publish requests are in flight and the connection goes: both fail. The first loses
    the connection; the second, resumed before the cancellation reaches its loop, must end that
    loop quietly, not log asyncua's "Publish iteration crashed" and retry."""
    caplog.set_level(logging.WARNING, logger="asyncua")
    session = OpcUaSession(Client(f"opc.tcp://{LOOPBACK}:{free_port()}/never-connected"))
    calls = 0

    async def session_closed(acks: list[ua.SubscriptionAcknowledgement]) -> object:
        nonlocal calls
        calls += 1
        raise failure

    session._publish = session_closed
    session.state = "disconnected"  # the first failure's loss has been handled
    loops = asyncio.create_task(session._client.uaclient.session._publish_loop())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loops, 5)
    assert calls >= 1  # it asked, failed, and the loops ended (not retrying a second later)
    assert not [r for r in caplog.records if "Publish iteration crashed" in r.getMessage()]

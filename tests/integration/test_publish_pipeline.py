"""Two Publish requests in flight (adapters/opcua/publish_pipeline.py) on a real asyncua server:
the server holds both while nothing changes, values arrive in order, and closing the session
leaves no publish loop behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, Server, ua

from harness.processes import free_port
from opcua_mqtt.adapters.opcua.publish_pipeline import DEFAULT_DEPTH
from opcua_mqtt.adapters.opcua.source import MonitoredField, SubscriptionSource
from opcua_mqtt.core.field_key import FieldKey

NAMESPACE = "urn:opcua-mqtt:test:pipeline"


@pytest.fixture
async def counter_server() -> AsyncIterator[tuple[str, Server, Any]]:
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/pipeline"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    node = await server.nodes.objects.add_variable(ua.NodeId("Counter", ns), "Counter", 0)
    async with server:
        yield endpoint, server, node


def _outstanding_publishes(server: Server) -> int:
    assert server.bserver is not None
    return sum(len(c.processor._publish_requests) for c in server.bserver.clients if c.processor)


async def test_publish_requests_stay_in_flight_and_values_arrive_in_order(
    counter_server: tuple[str, Server, Any],
) -> None:
    endpoint, server, node = counter_server
    received: list[int] = []

    def sink(batch: list[tuple[FieldKey, ua.DataValue]]) -> None:
        received.extend(dv.Value.Value for _key, dv in batch)

    client = Client(endpoint, timeout=10)
    async with client:
        source = SubscriptionSource(client, sink)
        field = MonitoredField(FieldKey(0, 0, "C"), f"nsu={NAMESPACE};s=Counter", "C", 10.0)
        assert await source.monitor(10, [field]) == {}
        async with asyncio.timeout(10):
            while _outstanding_publishes(server) < DEFAULT_DEPTH:
                await asyncio.sleep(0.01)
        for i in range(1, 51):
            await server.write_attribute_value(
                node.nodeid, ua.DataValue(ua.Variant(i, ua.VariantType.Int64))
            )
            await asyncio.sleep(0.002)
        async with asyncio.timeout(10):
            while not received or received[-1] != 50:
                await asyncio.sleep(0.01)
        publish_task = client.uaclient.session._publish_task
        await source.close()
    assert received == sorted(received)
    assert received[0] == 0
    assert publish_task is not None and publish_task.done()
    assert all(
        "_publish_loop" not in repr(t.get_coro()) for t in asyncio.all_tasks() if not t.done()
    )

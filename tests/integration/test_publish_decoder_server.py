"""The specialised Publish response decoder against a real asyncua server over TCP: the values a
SubscriptionSource delivers (decoded by publish_decoder.py) equal those a plain asyncua client
subscribed to the same nodes decodes itself.

The variables cover the built-in types as scalars, arrays (with null elements), a matrix and an
empty matrix, and values with a status code other than Good; each is written three times after
the initial value, so every monitored item reports four DataValues to each client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, Server, ua

from harness.processes import free_port
from opcua_mqtt.adapters.opcua.source import MonitoredField, SubscriptionSource
from opcua_mqtt.core.field_key import FieldKey

NAMESPACE = "urn:opcua-mqtt:test:decoder"
VT = ua.VariantType
WRITES = 3
T0 = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)


def _variants(i: int) -> dict[str, ua.Variant]:
    """The i-th value of every variable (i = 0 is the initial one)."""
    return {
        "Boolean": ua.Variant(i % 2 == 1, VT.Boolean),
        "SByte": ua.Variant(-i, VT.SByte),
        "Byte": ua.Variant(200 + i, VT.Byte),
        "Int16": ua.Variant(-30000 + i, VT.Int16),
        "UInt16": ua.Variant(60000 + i, VT.UInt16),
        "Int32": ua.Variant(-(2**31) + i, VT.Int32),
        "UInt32": ua.Variant(2**32 - 1 - i, VT.UInt32),
        "Int64": ua.Variant(-(2**63) + i, VT.Int64),
        "UInt64": ua.Variant(2**64 - 1 - i, VT.UInt64),
        "Float": ua.Variant(1.5 + i, VT.Float),
        "Double": ua.Variant(1e300 / (i + 1), VT.Double),
        "String": ua.Variant(f"text é {i}", VT.String),
        "DateTime": ua.Variant(T0.replace(second=i), VT.DateTime),
        "Guid": ua.Variant(uuid.UUID(int=i + 1), VT.Guid),
        "ByteString": ua.Variant(bytes(range(i + 3)), VT.ByteString),
        "NodeId": ua.Variant(ua.NodeId(f"n{i}", 1), VT.NodeId),
        "StatusCode": ua.Variant(ua.StatusCode(ua.StatusCodes.BadNotFound + i), VT.StatusCode),
        "QualifiedName": ua.Variant(ua.QualifiedName(f"q{i}", 1), VT.QualifiedName),
        "LocalizedText": ua.Variant(ua.LocalizedText(f"t{i}", "en"), VT.LocalizedText),
        "Range": ua.Variant(ua.Range(Low=i, High=i + 10.5), VT.ExtensionObject),
        "DoubleArray": ua.Variant([0.5 * k for k in range(i + 1)], VT.Double),
        "StringArray": ua.Variant(["a", None, f"c{i}"], VT.String),
        "Int32Matrix": ua.Variant([[i, 2], [3, 4], [5, 6]], VT.Int32, [3, 2]),
        # Empty matrices of two shapes, so that each write is a change.
        "EmptyMatrix": (
            ua.Variant([[], []], VT.Byte, [2, 0], is_array=True)
            if i % 2
            else ua.Variant([], VT.Byte, [0, 8], is_array=True)
        ),
    }


def _data_value(name: str, i: int) -> ua.DataValue:
    status = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue if i == 2 else 0)
    return ua.DataValue(_variants(i)[name], StatusCode=status, SourceTimestamp=T0)


@pytest.fixture
async def typed_server() -> AsyncIterator[tuple[str, Server, dict[str, Any]]]:
    """Endpoint, server and {name: node} of one variable per entry of :func:`_variants`."""
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/decoder"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    folder = await server.nodes.objects.add_folder(ua.NodeId("Typed", ns), "Typed")
    nodes = {}
    for name, variant in _variants(0).items():
        nodes[name] = await folder.add_variable(ua.NodeId(name, ns), name, variant)
    async with server:
        yield endpoint, server, nodes


class _Collector:
    """asyncua's handler interface: keeps every DataValue per node id string."""

    def __init__(self) -> None:
        self.values: dict[str, list[ua.DataValue]] = {}

    def datachange_notification(self, node: Any, _val: Any, data: Any) -> None:
        self.values.setdefault(node.nodeid.to_string(), []).append(data.monitored_item.Value)


async def _wait_for(values: dict[str, list[ua.DataValue]], count: int, total: int) -> None:
    async with asyncio.timeout(20):
        while len(values) < total or any(len(v) < count for v in values.values()):
            await asyncio.sleep(0.02)


async def test_values_decoded_by_the_bridge_equal_asyncuas(
    typed_server: tuple[str, Server, dict[str, Any]],
) -> None:
    endpoint, server, nodes = typed_server
    ids = {name: node.nodeid.to_string() for name, node in nodes.items()}
    ours: dict[str, list[ua.DataValue]] = {}

    def sink(batch: list[tuple[FieldKey, ua.DataValue]]) -> None:
        for key, dv in batch:
            ours.setdefault(key.field, []).append(dv)

    plain = _Collector()
    async with Client(endpoint, timeout=10) as ours_client, Client(endpoint, timeout=10) as other:
        source = SubscriptionSource(ours_client, sink)
        fields = [
            MonitoredField(FieldKey(0, 0, node_id), f"nsu={NAMESPACE};s={name}", name, 20.0)
            for name, node_id in ids.items()
        ]
        subscription = await other.create_subscription(20, plain)
        try:
            assert await source.monitor(20, fields) == {}
            await subscription.subscribe_data_change(list(nodes.values()), queuesize=10)
            await _wait_for(ours, 1, len(ids))
            await _wait_for(plain.values, 1, len(ids))
            for i in range(1, WRITES + 1):
                for name, node in nodes.items():
                    await server.write_attribute_value(node.nodeid, _data_value(name, i))
                await _wait_for(ours, i + 1, len(ids))
                await _wait_for(plain.values, i + 1, len(ids))
        finally:
            await subscription.delete()
            await source.close()
    assert sorted(ours) == sorted(plain.values)
    for node_id, values in ours.items():
        assert repr(values) == repr(plain.values[node_id]), node_id
    # What was written arrived (not merely the same on both sides).
    last = {name: ours[node_id][-1] for name, node_id in ids.items()}
    assert last["Int32Matrix"].Value.Value == [[WRITES, 2], [3, 4], [5, 6]]
    assert last["EmptyMatrix"].Value.Value == [[], []]
    assert ours[ids["EmptyMatrix"]][0].Value.Value == []
    assert ours[ids["Double"]][2].StatusCode.value == ua.StatusCodes.UncertainLastUsableValue

"""Values asyncua 2.1 could not decode by itself, from the real asyncua test server (its
Objects/Oddities, see harness/opcua_server.py), in one subscription with ordinary nodes:
every other value of the same Publish response is delivered (adapters/opcua/decoding.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asyncua import Client, ua

from harness.opcua_servers import OpcUaTestServer
from opcua_mqtt.adapters.opcua.source import MonitoredField, SubscriptionSource
from opcua_mqtt.core.field_key import FieldKey


async def test_an_empty_matrix_and_a_bad_shape_spoil_nothing_else_in_the_response(
    shared_small_opcua_server: OpcUaTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    odd = shared_small_opcua_server.manifest["oddities"]
    counter = shared_small_opcua_server.manifest["simulation"]["Counter"]
    nodes = {"EmptyMatrix": odd["EmptyMatrix"], "BadShape": odd["BadShape"], "Plain": odd["Plain"]}
    nodes["Counter"] = counter
    received: dict[str, list[ua.DataValue]] = {name: [] for name in nodes}
    first_batch: list[str] = []
    counted = asyncio.Event()

    def sink(batch: list[tuple[FieldKey, ua.DataValue]]) -> None:
        if not first_batch:
            first_batch.extend(key.field for key, _ in batch)
        for key, dv in batch:
            received[key.field].append(dv)
        if len(received["Counter"]) >= 3:
            counted.set()

    client = Client(shared_small_opcua_server.endpoint, timeout=10)
    client.session_timeout = 30_000
    caplog.set_level(logging.WARNING, logger="opcua_mqtt.adapters.opcua.source")
    async with client:
        source = SubscriptionSource(client, sink)
        try:
            fields = [
                MonitoredField(
                    key=FieldKey(0, 0, name),
                    node_id=n,
                    label="G/W",
                    sampling_interval_ms=50,
                )
                for name, n in nodes.items()
            ]
            assert await source.monitor(100, fields) == {}
            await asyncio.wait_for(counted.wait(), 20)
        finally:
            await source.close()

    # The initial values of all four came in one Publish response, and each was delivered.
    assert set(first_batch) == set(nodes)
    empty = received["EmptyMatrix"][0]
    assert empty.StatusCode.is_good() and empty.Value is not None
    assert empty.Value.Value == [] and empty.Value.VariantType is ua.VariantType.Byte
    assert received["Plain"][0].Value == ua.Variant(7.25, ua.VariantType.Double)
    bad = received["BadShape"][0]
    assert bad.StatusCode.value == ua.StatusCodes.BadDecodingError
    # One line, naming the field and its node.
    lines = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert lines == [
        f"G/W/BadShape ({odd['BadShape']}): value cannot be decoded (ArrayDimensions [2, 2] "
        "hold 4 elements, the array has 5): BadDecodingError"
    ]

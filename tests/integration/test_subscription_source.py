"""SubscriptionSource against a real asyncua server in this process: several subscriptions (one
per writer group) of variables whose values never change.

Such a value is reported once, as the initial notification after CreateMonitoredItems: if it
were lost, the field would stay empty in every key frame. The asyncua server answers each new
subscription's first Publish at once, which makes asyncua's client warn "Received data for
unknown subscription" for every subscription after the first; these tests pin that no value is
lost and that the harmless warning no longer reaches the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, Server, ua

from harness.processes import free_port
from opcua_mqtt.adapters.opcua.source import (
    MonitoredField,
    SubscriptionSource,
    _EarlyKeepAlives,
)
from opcua_mqtt.core.field_key import FieldKey

NAMESPACE = "urn:opcua-mqtt:test:constants"
INTERVALS_MS = (50.0, 100.0, 250.0, 500.0)  # one subscription each, as writer groups make them
# Falsy values too: a constant 0, False or "" must arrive as much as any other.
CONSTANTS: tuple[Any, ...] = (0, 1.5, False, "", "text", -7, True, 1e9)


@pytest.fixture
async def constant_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Endpoint and {NodeId string: value} of variables nothing ever writes."""
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/constants"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    folder = await server.nodes.objects.add_folder(ua.NodeId("Constants", ns), "Constants")
    values: dict[str, Any] = {}
    for g in range(len(INTERVALS_MS)):
        for i, value in enumerate(CONSTANTS):
            name = f"G{g}.V{i}"
            await folder.add_variable(ua.NodeId(name, ns), name, value)
            values[f"nsu={NAMESPACE};s={name}"] = value
    async with server:
        yield endpoint, values


async def _first_values(endpoint: str, node_ids: list[str]) -> dict[str, Any]:
    """The first value each field delivers, monitored with one subscription per interval."""
    first: dict[str, Any] = {}
    complete = asyncio.Event()

    def sink(batch: list[tuple[FieldKey, ua.DataValue]]) -> None:
        for key, dv in batch:
            first.setdefault(key.field, dv.Value.Value)
        if len(first) == len(node_ids):
            complete.set()

    client = Client(endpoint, timeout=10)
    client.session_timeout = 30_000
    async with client:
        source = SubscriptionSource(client, sink)
        try:
            for g, interval in enumerate(INTERVALS_MS):
                fields = [
                    MonitoredField(
                        key=FieldKey(g, 0, node_id),
                        node_id=node_id,
                        label=node_id,
                        sampling_interval_ms=interval,
                    )
                    for node_id in node_ids[g * len(CONSTANTS) : (g + 1) * len(CONSTANTS)]
                ]
                assert await source.monitor(interval, fields) == {}
            # Bounded: a lost initial value never comes again; the caller's comparison says which.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete.wait(), 10)
        finally:
            await source.close()
    return first


async def test_every_constant_of_every_subscription_delivers_its_initial_value(
    constant_server: tuple[str, dict[str, Any]],
) -> None:
    endpoint, values = constant_server
    first = await _first_values(endpoint, list(values))
    assert first == values


async def test_first_keep_alive_of_a_new_subscription_is_not_a_warning(
    constant_server: tuple[str, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: one "Received data for unknown subscription" WARNING per subscription after the
    first. Each of those early keep-alives is now a DEBUG line of ours, naming it."""
    caplog.set_level(logging.DEBUG, logger="opcua_mqtt.adapters.opcua.source")
    caplog.set_level(logging.WARNING, logger="asyncua")  # whatever an earlier test left there
    endpoint, values = constant_server
    await _first_values(endpoint, list(values))
    unknown = [r for r in caplog.records if "unknown subscription" in r.getMessage()]
    assert unknown == []
    early = [r for r in caplog.records if "came before its registration" in r.getMessage()]
    # Timing decides which subscriptions race; never the first (no Publish is pending then).
    assert len(early) <= len(INTERVALS_MS) - 1
    assert all(r.levelno == logging.DEBUG for r in early)


def test_warning_about_another_subscription_is_passed_on(caplog: pytest.LogCaptureFixture) -> None:
    """Held during a creation, an "unknown subscription" warning that does not name the new
    subscription is logged after all: it may be a lost notification."""
    logger = logging.getLogger("tests.unknown_subscription")
    keep_alives = _EarlyKeepAlives()
    logger.addFilter(keep_alives)
    try:
        keep_alives.creating += 1
        for sid in (78, 79):
            logger.warning("Received data for unknown subscription %s active are %s", sid, [77])
        keep_alives.creating -= 1
        assert caplog.records == []
        keep_alives.release(79)
    finally:
        logger.removeFilter(keep_alives)
    assert [(r.levelno, r.args) for r in caplog.records] == [(logging.WARNING, (78, [77]))]


async def test_recreated_subscription_monitors_every_item_again(
    constant_server: tuple[str, dict[str, Any]],
) -> None:
    """asyncua's stale-subscription watchdog calls ``recreate``: the source keeps no asyncua
    item records (``_monitored_items`` stays empty: memory at 100,000 items), so it creates
    the items again from its routes; a refused field stays refused and is not asked for again.
    Each new monitored item reports its value again as its initial notification."""
    endpoint, values = constant_server
    node_ids = list(values)[: len(CONSTANTS)]
    missing = f"nsu={NAMESPACE};s=NoSuchNode"
    seen: dict[str, list[Any]] = {}
    again = asyncio.Event()

    def sink(batch: list[tuple[FieldKey, ua.DataValue]]) -> None:
        for key, dv in batch:
            seen.setdefault(key.field, []).append(dv.Value.Value)
        if all(len(seen.get(n, ())) >= 2 for n in node_ids):
            again.set()

    client = Client(endpoint, timeout=10)
    client.session_timeout = 30_000
    async with client:
        source = SubscriptionSource(client, sink)
        try:
            fields = [
                MonitoredField(FieldKey(0, 0, n), n, n, 50.0) for n in [*node_ids, missing]
            ]
            refused = await source.monitor(50.0, fields)
            assert set(refused) == {FieldKey(0, 0, missing)}
            (sub,) = client._subscriptions
            assert sub._monitored_items == {}
            old_id = sub.subscription_id
            await asyncio.sleep(0.3)  # the initial values
            await sub.recreate()
            assert sub.subscription_id != old_id
            await asyncio.wait_for(again.wait(), 10)
        finally:
            await source.close()
    assert {n: v[:2] for n, v in seen.items()} == {n: [values[n]] * 2 for n in node_ids}

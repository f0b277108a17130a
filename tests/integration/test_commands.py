"""Commands through the write-back channel (docs/commands.md), the bridge in this process:
Acknowledge against node-opcua (Part 9 §5.7.3: AckedState changes on the server, read
independently; a repeated RequestId calls nothing more; a condition not on commands.allow is
not touched; an old EventId gets the server's BadEventIdUnknown) and Call against the asyncua
test server (typed arguments converted exactly, outputs in OPC UA JSON; hostile inputs refused
before any call)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from harness.mosquitto import MosquittoBroker
from harness.mqtt import adapter_options
from harness.opcua_servers import NodeOpcuaTestServer, OpcUaTestServer, start_node_opcua_server
from harness.plant_manifest import parse_nodeid
from harness.write_back import PUBLISHER, Requester, check_response
from opcua_mqtt.bridge.plan import BridgePlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.bridge.write_back import WriteBackSettings
from opcua_mqtt.subscriber import Subscriber
from tests.conftest import _serve
from tests.integration.test_alarms import NS, TANK_ALARM, alarm_plan, is_tank, refresh_cycle

CONDITION = f"nsu={NS};s={TANK_ALARM}"


@contextlib.asynccontextmanager
async def bridge(
    plan: BridgePlan, broker: MosquittoBroker, endpoint: str, allow: tuple[str, ...]
) -> AsyncIterator[Bridge]:
    """A bridge serving commands (commands.allow ``allow``), once it is ready."""
    b = Bridge(
        plan,
        adapter_options(broker, f"bridge-{uuid.uuid4().hex[:6]}"),
        lambda: Client(endpoint, timeout=10),
        signer=None,
        write_back=WriteBackSettings(commands_allow=allow),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(b.run(stop))
    try:
        await asyncio.wait_for(b.ready.wait(), 30)
        yield b
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def requester(broker: MosquittoBroker) -> AsyncIterator[Requester]:
    r = Requester(broker)
    await r.session.start(wait=True)
    try:
        yield r
    finally:
        await r.session.stop(drain_s=1)


def plan() -> BridgePlan:
    p = alarm_plan()
    return BridgePlan(PUBLISHER, (), event_writers=p.event_writers)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[NodeOpcuaTestServer]:
    yield from _serve(start_node_opcua_server, tmp_path / "plant", tank_level=90)


async def acked(endpoint: str) -> bool:
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NS)
        node = client.get_node(ua.NodeId(TANK_ALARM, ns))
        value: bool = await (await node.get_child(["0:AckedState", "0:Id"])).read_value()
        return value


def acknowledge(event_id: bytes, **extra: Any) -> dict[str, Any]:
    target = {
        "Method": "Acknowledge",
        "ConditionId": CONDITION,
        "EventId": base64.b64encode(event_id).decode(),
        "Comment": {"Locale": "en", "Text": "seen by the test"},
    }
    return {"Targets": [target | extra]}


async def test_an_acknowledge_changes_acked_state_once_and_only_where_allowed(
    plant: NodeOpcuaTestServer, mosquitto_tls: MosquittoBroker
) -> None:
    options = adapter_options(mosquitto_tls, f"sub-{uuid.uuid4().hex[:6]}")
    async with Subscriber(options) as sub, requester(mosquitto_tls) as r:
        async with bridge(plan(), mosquitto_tls, plant.endpoint, allow=()):
            cycle = await refresh_cycle(sub)
            (tank,) = [ds for ds in cycle if is_tank(ds)]
            event_id = tank.fields["EventId"].value
            denied = await r.ask(acknowledge(event_id))
            check_response(denied)
            assert denied["Targets"][0]["Status"]["Symbol"] == "BadUserAccessDenied"
            assert "commands.allow" in denied["Targets"][0]["Message"]
            assert await acked(plant.endpoint) is False  # nothing was called
        async with bridge(plan(), mosquitto_tls, plant.endpoint, allow=("Alarms/*",)) as b:
            stale = await r.ask(acknowledge(b"\x00" * 16))
            assert stale["Targets"][0]["Status"]["Symbol"] == "BadEventIdUnknown"
            assert await acked(plant.endpoint) is False
            request = acknowledge(event_id)
            first = await r.ask(request)
            check_response(first)
            assert first["Result"]["Code"] == 0, first
            assert first["Targets"][0]["Method"] == "Acknowledge"
            assert await acked(plant.endpoint) is True
            del r.answers[request["RequestId"]]  # wait for the answer to the copy
            again = await r.ask(request)  # the same RequestId: the first answer, no call
            assert again == first
            assert b.write_back is not None and b.write_back.counts["duplicate"] == 1


async def test_a_call_with_typed_arguments_returns_its_outputs_and_hostile_ones_call_nothing(
    shared_small_opcua_server: OpcUaTestServer, mosquitto_tls: MosquittoBroker
) -> None:
    server = shared_small_opcua_server
    control = server.manifest["control"]
    allow = ("**/Control/RaiseEvent", "**/Control/AddVariable")

    def call(method: str, *args: Any, obj: str | None = None) -> dict[str, Any]:
        return {
            "Targets": [
                {
                    "Method": "Call",
                    "ObjectId": obj or control["object"],
                    "MethodId": control[method],
                    "InputArguments": list(args),
                }
            ]
        }

    empty = BridgePlan(PUBLISHER, ())
    async with requester(mosquitto_tls) as r, bridge(empty, mosquitto_tls, server.endpoint, allow):
        answer = await r.ask(call("RaiseEvent", 321, "from a command"))
        check_response(answer)
        assert answer["Result"]["Code"] == 0, answer
        event_id, time = answer["Targets"][0]["OutputArguments"]
        assert event_id["UaType"] == 15 and len(base64.b64decode(event_id["Value"])) > 0
        assert time["UaType"] == 13

        hostile = {
            "wrong type": call("RaiseEvent", "loud", "x"),
            "out of range": call("RaiseEvent", 70000, "x"),
            "missing": call("RaiseEvent", 5),
            "too many": call("AddVariable", "Injected", "extra"),
            "unknown method": call("RaiseEvent", 5, "x")
            | {"Targets": [call("RaiseEvent")["Targets"][0] | {"MethodId": "i=999999"}]},
            "wrong object": call("AddVariable", "Injected", obj="i=2253"),
            "not allowed": call("ChangeDataType", "i=2258"),
        }
        expected = {
            "wrong type": "BadTypeMismatch",
            "out of range": "BadOutOfRange",
            "missing": "BadArgumentsMissing",
            "too many": "BadTooManyArguments",
            "unknown method": "BadNodeIdUnknown",
            "wrong object": "BadMethodInvalid",
            "not allowed": "BadUserAccessDenied",
        }
        for name, request in hostile.items():
            refused = await r.ask(request)
            check_response(refused)
            assert refused["Targets"][0]["Status"]["Symbol"] == expected[name], (name, refused)
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        injected = client.get_node(
            parse_nodeid(f"nsu={server.namespace_uri};s=Plant.Dynamic.Injected", ns)
        )
        with pytest.raises(ua.UaStatusCodeError):
            await injected.read_browse_name()  # AddVariable was never called


async def test_add_comment_reaches_the_condition_and_a_missing_confirm_is_refused_uncalled(
    plant: NodeOpcuaTestServer, mosquitto_tls: MosquittoBroker
) -> None:
    options = adapter_options(mosquitto_tls, f"sub-{uuid.uuid4().hex[:6]}")
    async with (
        Subscriber(options) as sub,
        requester(mosquitto_tls) as r,
        bridge(plan(), mosquitto_tls, plant.endpoint, allow=(CONDITION,)),
    ):
        (tank,) = [ds for ds in await refresh_cycle(sub) if is_tank(ds)]
        event_id = tank.fields["EventId"].value
        commented = await r.ask(acknowledge(event_id, Method="AddComment", Comment="noted"))
        assert commented["Result"]["Code"] == 0, commented
        # node-opcua's alarm has no ConfirmedState, hence no Confirm: refused before any call
        confirm = await r.ask(acknowledge(event_id, Method="Confirm"))
        assert confirm["Targets"][0]["Status"]["Symbol"] == "BadMethodInvalid"
        assert "has no Confirm" in confirm["Targets"][0]["Message"]
    async with Client(plant.endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NS)
        comment = await client.get_node(ua.NodeId(f"{TANK_ALARM}", ns)).get_child("0:Comment")
        assert (await comment.read_value()).Text == "noted"
    assert await acked(plant.endpoint) is False

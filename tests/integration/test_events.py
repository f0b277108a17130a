"""Event writers end to end with the asyncua server (plain events): a real server process, a
real Mosquitto over TLS, the bridge in this process and the Subscriber on the other side.

Part 14 §7.2.5.4: one ua-event DataSetMessage per event, SequenceNumbers like data writers;
Part 4 §7.22.3: the select clauses and the where clause; the fields compared with what the
server itself says it sent (RaiseEvent answers with the EventId and Time it gave the event).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, ua

from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from opcua_mqtt import devpki
from opcua_mqtt.adapters.opcua.browse import browse_client
from opcua_mqtt.adapters.opcua.events import EventFilterError
from opcua_mqtt.bridge.from_config import event_message_settings
from opcua_mqtt.bridge.plan import BridgePlan, EventWriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.core.config.events import EventField, EventWriterConfig, build_event_writers
from opcua_mqtt.core.config.model import PublishingDefaults
from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.core.mapping_events import event_writers
from opcua_mqtt.core.signing import Signer, TrustStore
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber
from tests.integration.test_bridge import Rig, make_rig

PUBLISHERS = ("bridge-events", "bridge-events-where", "bridge-events-bad")
DEFAULTS = {"encoding": "compact", "qos": 1}
SELECT = ("EventId", "EventType", "SourceNode", "SourceName", "Time", "Message", "Severity")


@pytest.fixture(scope="module")
def signing() -> tuple[Signer, TrustStore]:
    now = datetime.now(UTC)
    ca = devpki.make_ca("event test CA", now)
    leaf = devpki.issue(ca, "event test signer", now, uris=tuple(map(publisher_uri, PUBLISHERS)))
    return Signer(leaf.key, [leaf.cert, ca.cert]), TrustStore.from_pem(ca.cert_pem())


@pytest.fixture
def rig(
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    signing: tuple[Signer, TrustStore],
) -> Rig:
    return make_rig(shared_small_opcua_server, mosquitto_tls, signing)


def _plan(publisher_id: str, **options: Any) -> BridgePlan:
    config = EventWriterConfig(
        name="ServerEvents",
        dataset_writer_id=90,
        fields=tuple(EventField(s) for s in options.pop("select", SELECT)),
        condition_refresh=False,  # the asyncua server has no conditions
        **options,
    )
    settings = event_message_settings(config, PublishingDefaults())
    return BridgePlan(publisher_id, (), event_writers=(EventWriterPlan(config, settings),))


async def _raise_event(server: OpcUaTestServer, severity: int, message: str) -> list[Any]:
    """RaiseEvent on the server, over a session of its own: the EventId and Time it sent."""
    async with Client(server.endpoint, timeout=10) as client:
        ns = list(await client.get_namespace_array())
        control = client.get_node(parse_nodeid(server.manifest["control"]["object"], ns))
        method = parse_nodeid(server.manifest["control"]["RaiseEvent"], ns)
        out: list[Any] = await control.call_method(
            method, ua.Variant(severity, ua.VariantType.UInt16), message
        )
        return out


async def _next_event(sub: Subscriber) -> ReceivedDataSet:
    async def first() -> ReceivedDataSet:
        async for ds in sub:
            if ds.message_type == "ua-event":
                return ds
        raise AssertionError("the subscriber stopped")

    return await asyncio.wait_for(first(), 15)


async def test_each_event_arrives_as_a_ua_event_with_the_fields_the_server_sent(rig: Rig) -> None:
    async with rig.subscribed(_plan("bridge-events"), f"sub-{uuid.uuid4().hex[:6]}") as sub:
        sent = [await _raise_event(rig.server, 100 + i, f"event {i}") for i in range(3)]
        received = [await _next_event(sub) for _ in sent]
    for (event_id, time), ds, i in zip(sent, received, range(3), strict=True):
        assert ds.verification.ok, ds.verification
        assert list(ds.fields) == list(SELECT)
        values = {name: f.value for name, f in ds.fields.items()}
        assert values["EventId"] == event_id
        assert values["Time"] == time
        assert values["Severity"] == 100 + i
        assert values["Message"] == ua.LocalizedText(f"event {i}")
        assert values["EventType"] == ua.NodeId(ua.ObjectIds.BaseEventType)
        assert values["SourceNode"] == ua.NodeId(ua.ObjectIds.Server)
        assert ds.fields["Severity"].variant_type == ua.VariantType.UInt16
        assert (ds.dataset_writer_id, ds.writer_group) == (90, "Events")
    sequence = [ds.sequence_number for ds in received]
    assert sequence == [sequence[0], sequence[0] + 1, sequence[0] + 2]
    meta = received[0].metadata
    assert meta is not None
    assert [(f.Name, f.BuiltInType) for f in meta.Fields] == [
        ("EventId", 15),
        ("EventType", 17),
        ("SourceNode", 17),
        ("SourceName", 12),
        ("Time", 13),
        ("Message", 21),
        ("Severity", 5),
    ]


async def test_the_where_clause_passes_only_severe_events(rig: Rig) -> None:
    plan = _plan("bridge-events-where", min_severity=500)
    async with rig.subscribed(plan, f"sub-{uuid.uuid4().hex[:6]}") as sub:
        await _raise_event(rig.server, 100, "mild")
        severe = await _raise_event(rig.server, 700, "severe")
        ds = await _next_event(sub)
    assert ds.fields["EventId"].value == severe[0]
    assert ds.fields["Message"].value == ua.LocalizedText("severe")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"select": ("EventId", "ActiveState/Idd")},
            "select path 'ActiveState/Idd' does not exist",
        ),
        (
            {"event_type": "i=2915", "select": ("ActiveState/Idd",)},
            "'Idd' is not below ActiveState",
        ),
        ({"notifier": "i=85"}, "notifier i=85 is not an event notifier"),
        ({"notifier": "i=999999"}, "notifier i=999999: BadNodeIdUnknown"),
        ({"event_type": "i=58"}, "is not an EventType"),
    ],
)
async def test_what_the_server_model_lacks_is_a_clear_error(
    rig: Rig, options: dict[str, Any], expected: str
) -> None:
    bridge = Bridge(
        _plan("bridge-events-bad", **options),
        rig.mqtt(f"bridge-{uuid.uuid4().hex[:6]}"),
        lambda: Client(rig.server.endpoint, timeout=10),
        signer=rig.signer,
    )
    with pytest.raises(EventFilterError, match=expected):
        await asyncio.wait_for(bridge.run(asyncio.Event()), 30)
    assert not bridge.ready.is_set()


async def test_browse_marks_the_notifiers_and_map_events_proposes_a_writer_that_runs(
    rig: Rig,
) -> None:
    async with Client(rig.server.endpoint, timeout=10) as client:
        result = await browse_client(client, rig.server.endpoint, max_depth=1)
    marked = {n.browse_name: n.event_notifier for n in result.nodes}
    assert marked["Server"] is True and marked["Plant"] is False
    (proposal,) = event_writers(result, taken_ids={1}, group_names={"Events"})
    assert (proposal["notifier"], proposal["writer_group"]) == ("i=2253", "Events_1")
    assert proposal["dataset_writer_id"] != 1
    (config,) = build_event_writers({"event_writers": [proposal]}, DEFAULTS)
    settings = event_message_settings(config, PublishingDefaults())
    plan = BridgePlan("bridge-events", (), event_writers=(EventWriterPlan(config, settings),))
    async with rig.subscribed(plan, f"sub-{uuid.uuid4().hex[:6]}") as sub:
        event_id, _time = await _raise_event(rig.server, 500, "mapped")
        ds = await _next_event(sub)
    assert ds.fields["EventId"].value == event_id
    assert ds.fields["ActiveState/Id"].value is None  # an alarm field of a plain event: null

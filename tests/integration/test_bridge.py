"""The bridge end to end: a real asyncua server process, a real Mosquitto over TLS, the bridge
in this process and the subscriber API on the other side of the broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, ua

from harness.datasets import first_where
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from harness.write_back import call_control
from opcua_mqtt import devpki
from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession, Outgoing
from opcua_mqtt.bridge import model_watch
from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, WriterPlan
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.core.config.model import BUILTIN_TYPES, FieldConfig
from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.settings import JsonMessageSettings, NetworkMessageContentMask
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.signing import Signer, TrustStore
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber, TrustState
from tests.strategies import assert_ua_equal

SKIP_TYPES = {0, 24}  # Null holds no value; a Variant variable only exists as an array


@pytest.fixture(scope="module")
def signing() -> tuple[Signer, TrustStore]:
    now = datetime.now(UTC)
    ca = devpki.make_ca("bridge test CA", now)
    # One signer for the bridges of every test here: bound to each of their PublisherIds.
    bridges = (
        "bridge-types",
        "bridge-untyped",
        "bridge-seq",
        "bridge-dtype",
        "bridge-acl",
        "bridge-bare",
    )
    leaf = devpki.issue(ca, "bridge test signer", now, uris=tuple(map(publisher_uri, bridges)))
    return Signer(leaf.key, [leaf.cert, ca.cert]), TrustStore.from_pem(ca.cert_pem())


def _field(name: str, entry: dict[str, Any], sampling: float = 50) -> FieldConfig:
    dims = tuple(entry["array_dimensions"] or ())
    return FieldConfig(
        name=name,
        node_id=entry["nodeid"],
        builtin_type=BUILTIN_TYPES[entry["builtin_type_id"]],
        data_type=entry["data_type"] or f"i={entry['builtin_type_id']}",
        dataset_field_id=uuid.uuid5(uuid.NAMESPACE_URL, entry["nodeid"]),
        value_rank=entry["value_rank"],
        array_dimensions=dims if entry["value_rank"] > 0 and all(dims) else (),
        sampling_interval_ms=sampling,
    )


@dataclass(frozen=True)
class Rig:
    """What every test here wires together: the OPC UA server, a broker with the TLS options
    its clients use, and the metadata signer with the trust store that checks it."""

    server: OpcUaTestServer
    broker: MosquittoBroker
    signer: Signer
    trust: TrustStore
    client_cert: bool = False  # clients present the test client certificate (mutual TLS)

    def mqtt(self, client_id: str) -> MqttOptions:
        return adapter_options(self.broker, client_id, client_cert=self.client_cert)

    @contextlib.asynccontextmanager
    async def bridge(self, plan: BridgePlan) -> AsyncIterator[Bridge]:
        """The bridge running ``plan`` in this process, once it is ready."""
        bridge = Bridge(
            plan,
            self.mqtt(f"bridge-{uuid.uuid4().hex[:6]}"),
            lambda: Client(self.server.endpoint, timeout=10),
            signer=self.signer,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop))
        try:
            await asyncio.wait_for(bridge.ready.wait(), 30)
            yield bridge
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    @contextlib.asynccontextmanager
    async def subscribed(self, plan: BridgePlan, client_id: str) -> AsyncIterator[Subscriber]:
        """A subscriber connected before the bridge running ``plan`` starts."""
        async with (
            Subscriber(self.mqtt(client_id), trust=self.trust) as sub,
            self.bridge(plan),
        ):
            yield sub


def make_rig(
    server: OpcUaTestServer,
    broker: MosquittoBroker,
    signing: tuple[Signer, TrustStore],
    *,
    client_cert: bool = False,
) -> Rig:
    signer, trust = signing
    return Rig(server, broker, signer, trust, client_cert)


@pytest.fixture
def rig(
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    signing: tuple[Signer, TrustStore],
) -> Rig:
    """The server and broker of the module: each test's bridge has its own PublisherId, so
    nothing one leaves retained is what another reads."""
    return make_rig(shared_small_opcua_server, shared_mosquitto_tls, signing)


@pytest.fixture
def own_server_rig(
    small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    signing: tuple[Signer, TrustStore],
) -> Rig:
    """A rig with a server of its own, for a test that changes the server's model."""
    return make_rig(small_opcua_server, shared_mosquitto_tls, signing)


def _plan(
    publisher_id: str, writer: WriterPlan, interval_ms: float = 100, **options: Any
) -> BridgePlan:
    """A plan with one writer group "G" holding ``writer``."""
    return BridgePlan(
        publisher_id,
        (GroupPlan("G", (writer,), publishing_interval_ms=interval_ms),),
        **options,
    )


def _sampled(name: str, node_id: str, builtin_type: int) -> FieldConfig:
    return FieldConfig(
        name,
        node_id,
        uuid.uuid4(),
        BUILTIN_TYPES[builtin_type],
        f"i={builtin_type}",
        sampling_interval_ms=50,
    )


async def _next(sub: Subscriber, timeout: float = 10) -> ReceivedDataSet:
    return await asyncio.wait_for(sub.__aiter__().__anext__(), timeout)


def _scalar_per_type(server: OpcUaTestServer) -> Iterator[tuple[str, dict[str, Any]]]:
    """One writable-or-not, non-simulated scalar and one array per built-in type."""
    changing = set(server.manifest["simulation"].values())
    seen: set[tuple[int, int]] = set()
    for entry in server.variables:
        kind = (entry["builtin_type_id"], min(entry["value_rank"], 1))
        if entry["nodeid"] in changing or kind in seen or kind[0] in SKIP_TYPES:
            continue
        if entry["value_rank"] not in (-1, 1):
            continue
        seen.add(kind)
        yield f"{entry['builtin_type']}{'Array' if kind[1] == 1 else ''}", entry


async def test_every_builtin_type_reaches_the_subscriber_as_the_server_holds_it(rig: Rig) -> None:
    chosen = dict(_scalar_per_type(rig.server))
    assert {e["builtin_type_id"] for e in chosen.values()} >= set(range(1, 24)) | {25} - SKIP_TYPES
    fields = tuple(_field(name, entry) for name, entry in chosen.items())
    plan = _plan("bridge-types", WriterPlan("AllTypes", 101, fields), interval_ms=200)
    async with rig.subscribed(plan, "sub-types") as sub:
        ds = await _next(sub)
    assert ds.message_type == "ua-keyframe"
    assert ds.verification.state is TrustState.VERIFIED, ds.verification.detail
    async with Client(rig.server.endpoint, timeout=10) as client:
        namespaces = await client.get_namespace_array()
        for name, entry in chosen.items():
            expected = await client.get_node(
                parse_nodeid(entry["nodeid"], namespaces)
            ).read_data_value()
            got = ds.fields[name]
            assert got.status.is_good(), (name, got.status)
            assert got.variant_type == expected.Value.VariantType, name
            if got.variant_type == ua.VariantType.ExpandedNodeId:
                # asyncua's binary decoder hands ExpandedNodeId values over as plain NodeIds.
                assert _ids(got.value) == _ids(expected.Value.Value), name
                continue
            assert_ua_equal(ua.Variant(got.value, got.variant_type), expected.Value)
            assert got.source_timestamp == expected.SourceTimestamp, name


async def test_fields_configured_without_a_type_take_builtin_type_and_data_type_from_the_server(
    rig: Rig,
) -> None:
    """The config schema promises that a null builtin_type/data_type is read at start."""
    chosen = {
        name: entry for name, entry in _scalar_per_type(rig.server) if entry["value_rank"] == -1
    }
    fields = tuple(
        replace(_field(name, entry), builtin_type=None, data_type=None)
        for name, entry in chosen.items()
    )
    plan = _plan("bridge-untyped", WriterPlan("Untyped", 102, fields), interval_ms=200)
    async with rig.subscribed(plan, "sub-untyped") as sub:
        ds = await _next(sub)
    assert ds.metadata is not None
    described = {f.Name: f for f in ds.metadata.Fields}
    async with Client(rig.server.endpoint, timeout=10) as client:
        namespaces = await client.get_namespace_array()
        for name, entry in chosen.items():
            node = client.get_node(parse_nodeid(entry["nodeid"], namespaces))
            assert described[name].DataType == await node.read_data_type(), name
            assert described[name].BuiltInType == entry["builtin_type_id"], name
            assert ds.fields[name].variant_type == entry["builtin_type_id"], name


def _ids(value: Any) -> Any:
    if isinstance(value, list):
        return [_ids(v) for v in value]
    return (value.Identifier, value.NamespaceIndex)


async def test_metadata_comes_first_and_sequence_numbers_have_no_gaps(rig: Rig) -> None:
    sim = rig.server.manifest["simulation"]
    fields = tuple(
        _sampled(name, sim[name], t) for name, t in (("Counter", 7), ("Sine", 11), ("Toggle", 1))
    )
    plan = _plan("bridge-seq", WriterPlan("Sim", 7, fields))
    async with MqttProbe() as probe:
        await probe.connect(rig.broker.host, rig.broker.port, rig.broker.ssl_context())
        await probe.subscribe("opcua/json/#")
        async with rig.bridge(plan):
            received = [await probe.next_message(5) for _ in range(25)]
    kinds = [(m.topic.split("/")[2], loads(m.payload)) for m in received]
    per_writer = [(k, msg) for k, msg in kinds if k in ("metadata", "data")]
    assert per_writer[0][0] == "metadata"
    sequence = [msg["Messages"][0]["SequenceNumber"] for k, msg in per_writer if k == "data"]
    assert len(sequence) >= 15
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
    for kind, msg in kinds:
        schema = {
            "metadata": "ua-metadata",
            "data": "ua-data",
            "status": "ua-status",
            "connection": "ua-connection",
        }[kind]
        errors = list(validator(schema).iter_errors(msg))
        assert not errors, (kind, errors[0].message)


async def test_a_layout_that_cannot_carry_a_keep_alive_sends_none(rig: Rig) -> None:
    """Without the DataSetMessage header a DataSetMessage is its bare payload, and a keep-alive
    (no payload) would be nothing (Part 14 §7.2.5.4.1): a quiet writer keeps sending its key
    frames and no keep-alive, though its keep_alive_ms is shorter than its key frame period."""
    constant = next(e for _n, e in _scalar_per_type(rig.server) if e["builtin_type"] == "Double")
    bare = JsonMessageSettings(
        network_mask=NetworkMessageContentMask.NETWORK_MESSAGE_HEADER
        | NetworkMessageContentMask.PUBLISHER_ID
    )
    writer = WriterPlan(
        "Bare", 9, (_field("X", constant),), key_frame_count=3, keep_alive_ms=100, settings=bare
    )
    async with MqttProbe() as probe:
        await probe.connect(rig.broker.host, rig.broker.port, rig.broker.ssl_context())
        await probe.subscribe("opcua/json/data/#")
        async with rig.bridge(_plan("bridge-bare", writer)):
            received = [loads((await probe.next_message(10)).payload) for _ in range(4)]
    assert [list(m["Messages"][0]) for m in received] == [["X"]] * 4  # key frames only


async def test_a_data_type_change_on_the_server_bumps_major_version_and_republishes_metadata(
    own_server_rig: Rig,
) -> None:
    rig = own_server_rig
    mutable = rig.server.nodeid("Plant.Dynamic.Mutable")
    plan = _plan("bridge-dtype", WriterPlan("Dyn", 9, (_sampled("Mutable", mutable, 6),)))
    async with rig.subscribed(plan, "sub-dtype") as sub:
        # A key frame may go out before the first value arrives (BadWaitingForInitialData).
        first = await first_where(
            sub,
            lambda ds: ds.fields["Mutable"].status.is_good(),
            attempts=40,
            failure="the node's value never arrived",
        )
        assert first.fields["Mutable"].variant_type == ua.VariantType.Int32
        await call_control(rig.server, "ChangeDataType", mutable)
        ds = await first_where(
            sub,
            lambda ds: (
                bool(ds.fields.get("Mutable"))
                and ds.fields["Mutable"].variant_type == ua.VariantType.Double
            ),
            attempts=30,
            failure="no Double value arrived after the type change",
        )
    assert ds.metadata_version is not None and first.metadata_version is not None
    assert ds.metadata_version[0] > first.metadata_version[0]
    assert ds.verification.state is TrustState.VERIFIED  # new metadata arrived before the data
    assert ds.metadata is not None
    assert ds.metadata.Fields[0].BuiltInType == int(ua.VariantType.Double)


async def test_bridge_works_under_mutual_tls_and_an_acl_confining_it_to_its_prefix(
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_mtls_acl: MosquittoBroker,
    signing: tuple[Signer, TrustStore],
) -> None:
    broker = mosquitto_mtls_acl
    rig = make_rig(shared_small_opcua_server, broker, signing, client_cert=True)
    sim = rig.server.manifest["simulation"]
    plan = _plan("bridge-acl", WriterPlan("Sim", 3, (_sampled("Counter", sim["Counter"], 7),)))
    # As a plant runs it: the bridge first, a subscriber joining later (metadata is retained).
    async with rig.bridge(plan), Subscriber(rig.mqtt("sub-acl"), trust=rig.trust) as sub:
        # A key frame may go out before the first value arrives (BadWaitingForInitialData).
        ds = await first_where(
            sub,
            lambda ds: ds.fields["Counter"].status.is_good(),
            attempts=40,
            failure="no Good value arrived",
        )
        assert ds.verification.ok
        # The same identity may not publish outside the prefix: the broker refuses it.
        rogue = MqttSession(rig.mqtt("acl-probe"))
        await rogue.start(wait=True)
        rogue.publish(Outgoing("plant/elsewhere", b"x", qos=1))
        await broker.wait_for_log("Denied PUBLISH", timeout=5)
        await rogue.stop()


async def test_a_node_deleted_on_the_server_turns_its_field_bad_not_silent(
    own_server_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check reads the nodes a chunk at a time (here one): the deleted node is in the
    second chunk."""
    rig = own_server_rig
    monkeypatch.setattr(model_watch, "NODE_CHECK_CHUNK", 1)
    mutable = rig.server.nodeid("Plant.Dynamic.Mutable")
    counter = _sampled("Counter", rig.server.manifest["simulation"]["Counter"], 7)
    writer = WriterPlan("Dyn", 5, (counter, _sampled("Mutable", mutable, 6)), key_frame_count=2)
    plan = _plan("bridge-gone", writer, node_check_interval_s=0.3)
    async with rig.subscribed(plan, "sub-gone") as sub:
        # A key frame may go out before the first value arrives (BadWaitingForInitialData).
        await first_where(
            sub,
            lambda ds: ds.fields["Mutable"].status.is_good(),
            attempts=40,
            failure="the node's value never arrived",
        )
        await call_control(rig.server, "DeleteVariable", mutable)
        ds = await first_where(
            sub,
            lambda ds: "Mutable" in ds.fields and ds.fields["Mutable"].status.is_bad(),
            attempts=40,
            failure="the deleted node's field never turned Bad",
        )
    assert ds.fields["Mutable"].status.value == ua.StatusCodes.BadNodeIdUnknown


async def test_a_refused_field_stays_refused_and_is_reported_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The node check reads every node again and again: for a field the server refused to
    monitor it must neither report the node once more nor turn the field into a delivering
    Bad one (which would make the bridge ready and Operational)."""
    missing = rig.server.nodeid("Plant.Nowhere")
    counter = _sampled("Counter", rig.server.manifest["simulation"]["Counter"], 7)
    writer = WriterPlan("W", 6, (counter, _sampled("Missing", missing, 11)))
    caplog.set_level(logging.INFO, logger="opcua_mqtt")
    async with rig.bridge(_plan("bridge-refused", writer, node_check_interval_s=0.1)) as bridge:
        for _ in range(100):
            if bridge.fields.report().counts["good"] == 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # about ten node checks
        report = bridge.fields.report()
    assert report.counts == {"refused": 1, "waiting": 0, "bad": 0, "good": 1}
    messages = [r.getMessage() for r in caplog.records]
    name = f"G/W/Missing ({missing})"
    assert [m for m in messages if "Missing" in m] == [
        f"field {name} refused by the server: BadNodeIdUnknown"
    ]
    states = [m for m in messages if m.startswith("publisher state")]
    assert "publisher state Operational" not in states and "publisher state Error" in states

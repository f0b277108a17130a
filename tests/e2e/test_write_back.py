"""Write-back end to end: commands over MQTT (5 and 3.1.1) to a real `opcua-mqtt run` process,
writes confirmed by independent reads from the OPC UA server, every refusal answered."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Client, ua

from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession, Outgoing, TlsOptions
from opcua_mqtt.core.json_encoding import JsonCodec, NamespaceTable
from opcua_mqtt.core.schema_validation import validator
from tests.strategies import assert_ua_equal
from tests.support.bridge import EXE, BridgeProcesses, bridge_processes, make_certs, write_config
from tests.support.mosquitto import MosquittoBroker
from tests.support.opcua_server import OpcUaTestServer, parse_nodeid

PUBLISHER = "wb-bridge"
COMMANDS = f"opcua/json/cmd/{PUBLISHER}/write"
REPLIES = f"opcua/json/cmd/{PUBLISHER}/reply/test"

#: Two values per writable built-in type, as a client would send them (plain JSON or typed).
CANDIDATES: dict[str, tuple[Any, Any]] = {
    "Boolean": (True, False),
    "SByte": (-128, 127),
    "Byte": (0, 255),
    "Int16": (-32768, 32767),
    "UInt16": (0, 65535),
    "Int32": (-2147483648, 2147483647),
    "UInt32": (0, 4294967295),
    "Int64": ("-9223372036854775808", "9223372036854775807"),
    "UInt64": ("0", "18446744073709551615"),
    "Float": (1.5, -2.25),
    "Double": (3.25, -1e300),
    "String": ("written ✓", "other text"),
    "DateTime": ("2030-01-02T03:04:05.123Z", "2031-01-01T00:00:00Z"),
    "Guid": ("72962B91-FA75-4AE6-8D28-B404DC7DAF63", "00000000-0000-0000-0000-000000000001"),
    "ByteString": ("AAEC", "/w=="),
    "NodeId": ({"UaType": 17, "Value": "i=2255"}, {"UaType": 17, "Value": "i=85"}),
    "QualifiedName": ({"UaType": 20, "Value": "Written"}, {"UaType": 20, "Value": "Other"}),
    "LocalizedText": (
        {"UaType": 21, "Value": {"Locale": "en", "Text": "hi"}},
        {"UaType": 21, "Value": {"Locale": "de", "Text": "hallo"}},
    ),
}


def _writable(server: OpcUaTestServer) -> dict[str, dict[str, Any]]:
    """One writable scalar per type, from the first machine's Parameters folder."""
    out: dict[str, dict[str, Any]] = {}
    for v in server.variables:
        if v["writable"] and v["value_rank"] == -1 and ".Parameters." in v["nodeid"]:
            out.setdefault(v["builtin_type"], v)
    return out


@pytest.fixture
def bridges() -> Iterator[BridgeProcesses]:
    yield from bridge_processes()


@pytest.fixture
def setup(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> Iterator[dict[str, Any]]:
    writable = _writable(small_opcua_server)
    assert set(CANDIDATES) <= set(writable)
    read_only = next(
        v
        for v in small_opcua_server.variables
        if not v["writable"] and v["builtin_type"] == "Double" and v["value_rank"] == -1
    )
    not_allowed = next(
        v
        for v in small_opcua_server.variables
        if v["writable"]
        and v["builtin_type"] == "Double"
        and v["value_rank"] == -1
        and v["nodeid"] != writable["Double"]["nodeid"]
    )
    fields = [
        {"name": t, "node_id": v["nodeid"], "builtin_type": t}
        for t, v in writable.items()
        if t in CANDIDATES
    ]
    fields += [
        {"name": "ReadOnly", "node_id": read_only["nodeid"], "builtin_type": "Double"},
        {"name": "NotAllowed", "node_id": not_allowed["nodeid"], "builtin_type": "Double"},
    ]
    config = write_config(
        tmp_path / "bridge.yaml",
        endpoint=small_opcua_server.endpoint,
        broker=mosquitto_tls,
        signing_dir=make_certs(tmp_path / "certs"),
        fields=fields,
        publisher_id=PUBLISHER,
    )
    doc = yaml.safe_load(config.read_text())
    doc["write_back"] = {
        "enabled": True,
        "allow": [*(f"G/W/{t}" for t in CANDIDATES), "G/W/ReadOnly"],
        "rate_per_s": 1000,
        "burst": 5000,
    }
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = bridges.start(config)
    yield {
        "server": small_opcua_server,
        "broker": mosquitto_tls,
        "writable": writable,
        "read_only": read_only,
        "not_allowed": not_allowed,
        "proc": proc,
        "config": config,
        "tmp": tmp_path,
    }


class Requester:
    """An MQTT client that sends write requests and collects the answers by RequestId."""

    def __init__(self, broker: MosquittoBroker, protocol: str = "5") -> None:
        self.answers: dict[str, Any] = {}
        self.props: dict[str, Any] = {}
        self.arrived = asyncio.Event()
        self.session = MqttSession(
            MqttOptions(
                host=broker.host,
                port=broker.port,
                client_id=f"req-{uuid.uuid4().hex[:6]}",
                protocol=protocol,
                tls=TlsOptions(ca=str(broker.ca_cert)),
            )
        )
        self.session.subscribe(REPLIES, self._on_answer)

    def _on_answer(self, _topic: str, payload: bytes, props: dict[str, Any]) -> None:
        answer = json.loads(payload)
        self.answers[answer.get("RequestId") or f"anon-{len(self.answers)}"] = answer
        self.props[answer.get("RequestId") or ""] = props
        self.arrived.set()

    async def ask(
        self,
        request: dict[str, Any] | bytes,
        *,
        v5: bool = True,
        rid: str | None = None,
        timeout: float = 20,
    ) -> Any:
        if isinstance(request, dict):
            rid = request.setdefault("RequestId", str(uuid.uuid4()))
            payload = json.dumps(request).encode()
        else:
            payload = request
        props = {"response_topic": REPLIES, "correlation_data": (rid or "x").encode()} if v5 else {}
        before = len(self.answers)
        self.session.publish(Outgoing(COMMANDS, payload, qos=1, properties=props))

        async def wait() -> Any:
            while (rid not in self.answers) if rid else len(self.answers) == before:
                self.arrived.clear()
                await self.arrived.wait()
            return self.answers[rid] if rid else list(self.answers.values())[-1]

        return await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def requester(setup: dict[str, Any]) -> AsyncIterator[Requester]:
    r = Requester(setup["broker"])
    await r.session.start(wait=True)
    await asyncio.sleep(0.2)
    # The bridge subscribes to its command topic once it is up: wait for its first answer.
    for _ in range(100):
        try:
            await r.ask(
                {"Targets": [{"Writer": "W", "Field": "Double", "Value": "not a number"}]},
                timeout=0.5,
            )
            break
        except TimeoutError:
            continue
    yield r
    await r.session.stop(drain_s=1)


async def _read(server: OpcUaTestServer, node_id: str) -> ua.Variant:
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        return (await client.get_node(parse_nodeid(node_id, ns)).read_data_value()).Value


def _check_response(answer: Any) -> None:
    errors = list(validator("write-response").iter_errors(answer))
    assert not errors, errors[0].message


async def test_every_writable_type_is_written_exactly_and_confirmed_by_an_independent_read(
    setup: dict[str, Any], requester: Requester
) -> None:
    server = setup["server"]
    targets, expected = [], {}
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        codec = JsonCodec(namespaces=NamespaceTable(ns))
        for type_name, (a, b) in CANDIDATES.items():
            node = setup["writable"][type_name]["nodeid"]
            current = (await client.get_node(parse_nodeid(node, ns)).read_data_value()).Value
            vt = ua.VariantType[type_name]
            choice = b if _same(codec, a, vt, current) else a
            wanted_variant = (
                codec.decode_variant(choice)
                if isinstance(choice, dict)
                else ua.Variant(codec.decode_value(choice, vt), vt)
            )
            expected[type_name] = wanted_variant
            targets.append({"Writer": "W", "Field": type_name, "Value": choice})
    answer = await requester.ask({"Targets": targets})
    _check_response(answer)
    assert answer["Result"]["Code"] == 0, answer
    assert [t["Status"]["Code"] for t in answer["Targets"]] == [0] * len(targets)
    for type_name, want in expected.items():
        got = await _read(server, setup["writable"][type_name]["nodeid"])
        assert_ua_equal(got, want)


def _same(codec: JsonCodec, value: Any, vt: ua.VariantType, current: ua.Variant) -> bool:
    variant = (
        codec.decode_variant(value)
        if isinstance(value, dict)
        else ua.Variant(codec.decode_value(value, vt), vt)
    )
    try:
        assert_ua_equal(variant, current)
    except AssertionError:
        return False
    return True


async def test_refusals_are_answered_and_nothing_is_written(
    setup: dict[str, Any], requester: Requester
) -> None:
    server = setup["server"]
    byte_node = setup["writable"]["Byte"]["nodeid"]
    before = await _read(server, byte_node)
    cases = [
        ({"Writer": "W", "Field": "Byte", "Value": 300}, "BadOutOfRange"),
        ({"Writer": "W", "Field": "Double", "Value": "abc"}, "BadTypeMismatch"),
        ({"Writer": "W", "Field": "Int32", "Value": 1.5}, "BadTypeMismatch"),
        ({"Writer": "W", "Field": "ReadOnly", "Value": 1.0}, "BadNotWritable"),
        ({"Writer": "W", "Field": "NotAllowed", "Value": 1.0}, "BadUserAccessDenied"),
        ({"NodeId": setup["not_allowed"]["nodeid"], "Value": 1.0}, "BadUserAccessDenied"),
    ]
    for target, symbol in cases:
        answer = await requester.ask({"Targets": [target]})
        _check_response(answer)
        assert answer["Targets"][0]["Status"]["Symbol"] == symbol, (target, answer)
        assert answer["Result"]["Code"] != 0
    assert_ua_equal(await _read(server, byte_node), before)
    not_allowed = await _read(server, setup["not_allowed"]["nodeid"])
    assert not_allowed.Value != 1.0


async def test_a_repeated_request_id_gets_the_first_answer_and_no_second_write(
    setup: dict[str, Any], requester: Requester
) -> None:
    server = setup["server"]
    node = setup["writable"]["Double"]["nodeid"]
    rid = str(uuid.uuid4())
    first = await requester.ask(
        {"RequestId": rid, "Targets": [{"Writer": "W", "Field": "Double", "Value": 11.5}]}
    )
    assert first["Result"]["Code"] == 0
    async with Client(server.endpoint, timeout=10) as client:  # someone else writes meanwhile
        ns = await client.get_namespace_array()
        await client.get_node(parse_nodeid(node, ns)).write_value(
            ua.Variant(22.5, ua.VariantType.Double)
        )
    requester.answers.pop(rid)
    again = await requester.ask(
        {"RequestId": rid, "Targets": [{"Writer": "W", "Field": "Double", "Value": 11.5}]}
    )
    assert again == first
    assert (await _read(server, node)).Value == 22.5  # not written a second time


async def test_an_expired_request_is_refused_unread(
    setup: dict[str, Any], requester: Requester
) -> None:
    node = setup["writable"]["Double"]["nodeid"]
    before = await _read(setup["server"], node)
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    answer = await requester.ask(
        {"Deadline": past, "Targets": [{"Writer": "W", "Field": "Double", "Value": 99.0}]}
    )
    assert answer["Result"]["Symbol"] == "BadTimeout"
    assert_ua_equal(await _read(setup["server"], node), before)


async def test_mqtt5_reply_carries_the_correlation_data(
    setup: dict[str, Any], requester: Requester
) -> None:
    rid = str(uuid.uuid4())
    await requester.ask(
        {"RequestId": rid, "Targets": [{"Writer": "W", "Field": "Double", "Value": 5.5}]}, rid=rid
    )
    correlation = requester.props[rid].get("correlation_data")
    assert correlation in ([rid.encode()], rid.encode())


async def test_mqtt311_clients_get_their_answer_on_reply_to(
    setup: dict[str, Any], requester: Requester
) -> None:
    del requester  # only to wait until the bridge answers
    r = Requester(setup["broker"], protocol="3.1.1")
    await r.session.start(wait=True)
    await asyncio.sleep(0.3)
    answer = await r.ask(
        {"ReplyTo": REPLIES, "Targets": [{"Writer": "W", "Field": "Double", "Value": 6.5}]},
        v5=False,
    )
    assert answer["Result"]["Code"] == 0
    assert (await _read(setup["server"], setup["writable"]["Double"]["nodeid"])).Value == 6.5
    await r.session.stop(drain_s=1)


def test_write_cli_prints_the_answer_and_exits_by_result(
    setup: dict[str, Any], requester: Requester
) -> None:
    broker = setup["broker"]
    base = [
        EXE,
        "write",
        f"{broker.host}:{broker.port}",
        "--ca",
        str(broker.ca_cert),
        "--publisher",
        PUBLISHER,
    ]
    ok = subprocess.run([*base, "W/Double", "7.25"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["Result"]["Code"] == 0
    refused = subprocess.run([*base, "W/Byte", "300"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["Targets"][0]["Status"]["Symbol"] == "BadOutOfRange"
    old = subprocess.run(
        [*base, "--protocol", "3.1.1", "W/Double", "8.25"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert old.returncode == 0, old.stderr


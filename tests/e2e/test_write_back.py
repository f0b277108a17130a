"""Write-back end to end: commands over MQTT (5 and 3.1.1) to a real `opcua-mqtt run` process,
writes confirmed by independent reads from the OPC UA server, every refusal answered."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from harness.bridge import EXE, BridgeProcesses
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from harness.plant_model import LIMITED, SERVER_MAX_BYTE_STRING_LENGTH
from harness.write_back import (
    CANDIDATES,
    COMMANDS,
    PUBLISHER,
    REPLIES,
    Requester,
    WriteBackNodes,
    call_control,
    check_response,
    pick_new_value,
    read_variant,
    server_count,
    serving_requester,
    write_back_config,
)
from opcua_mqtt.adapters.mqtt import Outgoing
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable
from tests.strategies import assert_ua_equal


def _write_cli(broker: MosquittoBroker, *args: str) -> list[str]:
    """The command line of `opcua-mqtt write` to the test bridge through ``broker``."""
    return [
        EXE,
        "write",
        f"{broker.host}:{broker.port}",
        "--ca",
        str(broker.ca_cert),
        "--publisher",
        PUBLISHER,
        *args,
    ]


@pytest.fixture
def setup(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> Iterator[dict[str, Any]]:
    """A bridge of the test's own, on the module's server and broker: every test here compares
    values with what it read before, counts Write calls as a difference, and puts back what it
    changes in the model (a data type, a stopped server)."""
    server, broker = shared_small_opcua_server, shared_mosquitto_tls
    nodes = WriteBackNodes.of(server)
    config = write_back_config(tmp_path, server.endpoint, broker, nodes.fields(), nodes.ALLOW)
    proc = bridges.start(config)
    yield {
        "server": server,
        "broker": broker,
        "writable": nodes.writable,
        "read_only": nodes.read_only,
        "not_allowed": nodes.not_allowed,
        "proc": proc,
        "config": config,
        "tmp": tmp_path,
    }


@pytest.fixture
async def requester(setup: dict[str, Any]) -> AsyncIterator[Requester]:
    async with serving_requester(setup["broker"], bridge=setup["proc"]) as r:
        yield r


async def test_every_writable_type_is_written_exactly_and_confirmed_by_an_independent_read(
    setup: dict[str, Any], requester: Requester
) -> None:
    server = setup["server"]
    targets, expected = [], {}
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        codec = JsonCodec(namespaces=NamespaceTable(ns))
        for type_name, pair in CANDIDATES.items():
            node = setup["writable"][type_name]["nodeid"]
            current = (await client.get_node(parse_nodeid(node, ns)).read_data_value()).Value
            vt = ua.VariantType[type_name]
            choice, expected[type_name] = pick_new_value(codec, pair, vt, current)
            targets.append({"Writer": "W", "Field": type_name, "Value": choice})
    answer = await requester.ask({"Targets": targets})
    check_response(answer)
    assert answer["Result"]["Code"] == 0, answer
    assert [t["Status"]["Code"] for t in answer["Targets"]] == [0] * len(targets)
    for type_name, want in expected.items():
        got = await read_variant(server.endpoint, setup["writable"][type_name]["nodeid"])
        assert_ua_equal(got, want)


async def test_concurrent_requests_share_write_calls_and_each_gets_its_own_results(
    setup: dict[str, Any], requester: Requester
) -> None:
    """Requests that arrive together are carried out in fewer OPC UA Write calls than requests
    (the server counts the calls), each answered with its own results. Two requests that write
    one node are never in one Write: they are written in request order, and each audit line
    has the value its write replaced."""
    server, proc = setup["server"], setup["proc"]
    requests: list[dict[str, Any]] = []
    expected = {}
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        codec = JsonCodec(namespaces=NamespaceTable(ns))
        for type_name, pair in CANDIDATES.items():
            node = setup["writable"][type_name]["nodeid"]
            current = (await client.get_node(parse_nodeid(node, ns)).read_data_value()).Value
            vt = ua.VariantType[type_name]
            choice, expected[type_name] = pick_new_value(codec, pair, vt, current)
            requests.append({"Targets": [{"Writer": "W", "Field": type_name, "Value": choice}]})
    requests += [
        {"Targets": [{"Writer": "W", "Field": "Double", "Value": v}]} for v in (101.5, 102.5)
    ]
    requests.append({"Targets": [{"Writer": "W", "Field": "ReadOnly", "Value": 1.0}]})
    for r in requests:
        r["RequestId"] = str(uuid.uuid4())
    calls_before = await server_count(server, "WriteCalls")
    answers = await asyncio.gather(*(requester.ask(r) for r in requests))
    calls = await server_count(server, "WriteCalls") - calls_before

    for request, answer in zip(requests, answers, strict=True):
        check_response(answer)
        assert answer["RequestId"] == request["RequestId"]
    assert [a["Result"]["Code"] for a in answers[:-1]] == [0] * (len(requests) - 1), answers
    assert answers[-1]["Targets"][0]["Status"]["Symbol"] == "BadNotWritable"
    writing = len(requests) - 1  # the last one is refused before the Write
    assert 1 <= calls < writing, f"{calls} Write calls for {writing} requests"
    for type_name, want in expected.items():
        if type_name != "Double":
            got = await read_variant(server.endpoint, setup["writable"][type_name]["nodeid"])
            assert_ua_equal(got, want)
    assert (
        await read_variant(server.endpoint, setup["writable"]["Double"]["nodeid"])
    ).Value == 102.5

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    wrote = {r.get("request_id"): r["message"] for r in proc.records() if "wrote" in r["message"]}
    assert len(wrote) == writing  # one audit line per write
    first, second = (r["RequestId"] for r in requests[-3:-1])
    assert "-> 101.5: Good" in wrote[first]
    assert "101.5 -> 102.5: Good" in wrote[second]


async def test_refusals_are_answered_and_nothing_is_written(
    setup: dict[str, Any], requester: Requester
) -> None:
    server = setup["server"]
    byte_node = setup["writable"]["Byte"]["nodeid"]
    before = await read_variant(server.endpoint, byte_node)
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
        check_response(answer)
        assert answer["Targets"][0]["Status"]["Symbol"] == symbol, (target, answer)
        assert answer["Result"]["Code"] != 0
    assert_ua_equal(await read_variant(server.endpoint, byte_node), before)
    not_allowed = await read_variant(server.endpoint, setup["not_allowed"]["nodeid"])
    assert not_allowed.Value != 1.0


async def test_strings_longer_than_the_node_or_the_server_allows_are_refused_unwritten(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """MaxStringLength / MaxByteStringLength: the node's Property (Plant/Limits), else the
    server's ServerCapabilities value (the Parameters ByteString); counted in UTF-8 bytes."""
    server, mosquitto_tls = shared_small_opcua_server, shared_mosquitto_tls
    nodes = WriteBackNodes.of(server)
    short_string, short_bytes = (server.nodeid(path) for path in LIMITED)
    assert [n for *_, n in LIMITED.values()] == [8, 4]  # what the values below are made for
    limited = [
        {"name": "ShortString", "node_id": short_string, "builtin_type": "String"},
        {"name": "ShortBytes", "node_id": short_bytes, "builtin_type": "ByteString"},
    ]
    config = write_back_config(
        tmp_path,
        server.endpoint,
        mosquitto_tls,
        [*nodes.fields(), *limited],
        [*nodes.ALLOW, "G/W/ShortString", "G/W/ShortBytes"],
    )
    proc = bridges.start(config)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def target(field: str, value: Any) -> dict[str, Any]:
        return {"Writer": "W", "Field": field, "Value": value}

    async with serving_requester(mosquitto_tls, bridge=proc) as requester:
        within = await requester.ask(
            {"Targets": [target("ShortString", "8 bytes!"), target("ShortBytes", b64(b"abcd"))]}
        )
        check_response(within)
        assert within["Result"]["Code"] == 0, within
        written = {n: await read_variant(server.endpoint, n) for n in (short_string, short_bytes)}
        assert (written[short_string].Value, written[short_bytes].Value) == ("8 bytes!", b"abcd")

        byte_string = nodes.writable["ByteString"]["nodeid"]
        before = await read_variant(server.endpoint, byte_string)
        over = await requester.ask(
            {
                "Targets": [
                    target("ShortString", "ÄÖÜ€"),  # 4 characters, 9 UTF-8 bytes
                    target("ShortBytes", b64(b"abcde")),
                    target("ByteString", b64(bytes(SERVER_MAX_BYTE_STRING_LENGTH + 1))),
                ]
            }
        )
    check_response(over)
    assert [t["Status"]["Symbol"] for t in over["Targets"]] == ["BadOutOfRange"] * 3, over
    messages = [t["Message"] for t in over["Targets"]]
    assert "the node's MaxStringLength is 8" in messages[0]
    assert "the node's MaxByteStringLength is 4" in messages[1]
    assert f"the server's MaxByteStringLength is {SERVER_MAX_BYTE_STRING_LENGTH}" in messages[2]
    for node, value in (*written.items(), (byte_string, before)):
        assert_ua_equal(await read_variant(server.endpoint, node), value)


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
    assert (await read_variant(server.endpoint, node)).Value == 22.5  # not written a second time


async def test_a_node_whose_data_type_changes_at_run_time_is_written_as_its_new_type(
    setup: dict[str, Any], requester: Requester
) -> None:
    """The bridge remembers a node's DataType, ValueRank and ArrayDimensions per session, and
    reads its AccessLevel, UserAccessLevel and value for every write: a DataType changed while
    the session lives shows in the value, and the next write converts to the new type (a
    Double written to the node that is now Int32 would be refused by the server)."""
    server = setup["server"]
    node = setup["writable"]["Double"]["nodeid"]

    async def write(value: Any) -> ua.Variant:
        answer = await requester.ask(
            {"Targets": [{"Writer": "W", "Field": "Double", "Value": value}]}
        )
        assert answer["Result"]["Code"] == 0, answer
        return await read_variant(server.endpoint, node)

    assert await write(1.5) == ua.Variant(1.5, ua.VariantType.Double)
    await call_control(server, "ChangeDataType", node)  # Double -> Int32
    assert await write(7) == ua.Variant(7, ua.VariantType.Int32)
    await call_control(server, "ChangeDataType", node)  # and back
    assert await write(2.5) == ua.Variant(2.5, ua.VariantType.Double)


async def test_an_expired_request_is_refused_unread(
    setup: dict[str, Any], requester: Requester
) -> None:
    node = setup["writable"]["Double"]["nodeid"]
    before = await read_variant(setup["server"].endpoint, node)
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    answer = await requester.ask(
        {"Deadline": past, "Targets": [{"Writer": "W", "Field": "Double", "Value": 99.0}]}
    )
    assert answer["Result"]["Symbol"] == "BadTimeout"
    assert_ua_equal(await read_variant(setup["server"].endpoint, node), before)


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
    double = setup["writable"]["Double"]["nodeid"]
    assert (await read_variant(setup["server"].endpoint, double)).Value == 6.5
    await r.session.stop(drain_s=1)


def test_write_cli_prints_the_answer_and_exits_by_result(
    setup: dict[str, Any], requester: Requester
) -> None:
    base = _write_cli(setup["broker"])
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


async def test_requests_that_expire_while_waiting_are_refused_unwritten_and_logged(
    setup: dict[str, Any], requester: Requester
) -> None:
    """Requests are carried out one at a time. One that waits behind another (here a Write held
    up by a stopped OPC UA server) until what the broker left of its MQTT 5 Message Expiry
    Interval, or its Deadline, has passed is refused when its turn comes, not written late."""
    server, proc = setup["server"], setup["proc"]
    node = setup["writable"]["Double"]["nodeid"]
    held, expiring, late = (str(uuid.uuid4()) for _ in range(3))
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")

    def send(rid: str, value: float, **props: Any) -> None:
        request = {
            "RequestId": rid,
            "Targets": [{"Writer": "W", "Field": "Double", "Value": value}],
        }
        if rid == late:
            request["Deadline"] = soon
        props |= {"response_topic": REPLIES, "correlation_data": rid.encode()}
        requester.session.publish(
            Outgoing(COMMANDS, json.dumps(request).encode(), qos=1, properties=props)
        )

    os.kill(server.pid, signal.SIGSTOP)
    try:
        send(held, 31.5)
        await asyncio.sleep(0.3)
        send(expiring, 32.5, message_expiry_interval=1)
        send(late, 33.5)
        await asyncio.sleep(3)  # both pass their time while the first one holds the line
    finally:
        os.kill(server.pid, signal.SIGCONT)

    async def answered() -> None:
        while not {held, expiring, late} <= set(requester.answers):
            requester.arrived.clear()
            await requester.arrived.wait()

    await asyncio.wait_for(answered(), 30)
    answers = requester.answers
    assert answers[held]["Result"]["Code"] == 0, answers[held]
    assert answers[expiring]["Result"]["Symbol"] == "BadTimeout"
    assert "expiry" in answers[expiring]["Message"]
    assert answers[late]["Result"]["Symbol"] == "BadTimeout"
    assert "deadline" in answers[late]["Message"]
    assert (await read_variant(server.endpoint, node)).Value == 31.5

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    records = proc.records()
    logged = {(r.get("request_id"), r.get("result"), r["level"]) for r in records}
    assert (expiring, "BadTimeout", "warning") in logged  # each refusal once, with its reason
    assert (late, "BadTimeout", "warning") in logged
    assert (held, "Good", "info") in logged  # the write, with the value before and after


async def test_write_cli_gives_its_request_a_message_expiry_interval_up_to_its_deadline(
    setup: dict[str, Any], requester: Requester
) -> None:
    broker = setup["broker"]
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe(COMMANDS)
        run = await asyncio.to_thread(
            subprocess.run,
            _write_cli(broker, "--deadline", "6.5", "W/Double", "9.25"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        seen = await probe.next_message(10)
    assert run.returncode == 0, run.stderr
    expiry = seen.properties["message_expiry_interval"]
    assert (expiry[0] if isinstance(expiry, list) else expiry) in (6, 7)  # 6.5 s, rounded up
    deadline = datetime.fromisoformat(json.loads(seen.payload)["Deadline"])
    assert deadline <= datetime.now(UTC) + timedelta(seconds=6.5)  # not the default 10 s

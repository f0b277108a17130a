"""Issue 17 end to end: two real bridges (`opcua-mqtt run`) whose metadata signers chain to the
one CA `listen` trusts, and a forger (a plain MQTT client, with the second bridge's signing key)
publishing through a real Mosquitto. `listen` (JSON lines) refuses and counts every forgery, and
shows plant1's genuine stream as `verified` by plant1's signer throughout: on a permissive broker,
and under the ACL `opcua-mqtt certs` writes (mutual TLS, each bridge's CN its PublisherId), where
the forger holds the second bridge's MQTT certificate too."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.bridge import EXE, BridgeProcesses, simulated_fields, write_config
from harness.mosquitto import MosquittoBroker, client_ssl_context
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer
from harness.pki import CLIENT_COMMON_NAME, Pki, issue_mqtt_client, issue_signer
from harness.processes import spawn
from opcua_mqtt.core.messages.members import dumps, loads
from opcua_mqtt.core.signing import SIGNATURE_MEMBER, Signer, sign_message
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.devbroker import bridge_block, render_acl

TOPICS = TopicTree()
GENUINE, OTHER = "plant1", "evil"
FORGED_COUNTER = 4_000_000_000  # a value the simulation never reaches


class Listen:
    """`opcua-mqtt listen --format json` running until stopped; its lines read from a file.
    On a mutual-TLS broker it presents the test client certificate (the ACL's tool block)."""

    def __init__(self, broker: MosquittoBroker, trust: Path, workdir: Path) -> None:
        cmd = [EXE, "listen", f"{broker.host}:{broker.port}", "--ca", str(broker.ca_cert)]
        cmd += ["--trust", str(trust), "--format", "json", "--timeout", "60"]
        if broker.mutual_tls:
            cmd += ["--cert", str(broker.client_cert), "--key", str(broker.client_key)]
        self.proc = spawn(cmd, workdir, "listen")
        self.out, self.err = self.proc.stdout_path, self.proc.stderr_path

    def lines(self) -> list[dict[str, Any]]:
        *complete, _unfinished = self.out.read_text().split("\n")
        return [json.loads(line) for line in complete]

    async def until(
        self, what: str, done: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """Poll the output until ``done`` holds (bounded by a number of tries)."""
        for _ in range(200):
            lines = self.lines()
            if done(lines):
                return lines
            assert self.proc.poll() is None, self.err.read_text()
            await asyncio.sleep(0.2)
        pytest.fail(f"listen never showed {what}; stderr: {self.err.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(20)


def _verified(lines: list[dict[str, Any]], publisher: str) -> bool:
    return any(
        ln["publisher_id"] == publisher and ln["metadata"]["state"] == "verified" for ln in lines
    )


async def _retained_metadata(broker: MosquittoBroker, publisher: str) -> dict[str, Any]:
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe(TOPICS.metadata(publisher, "G", "W"))
        message: dict[str, Any] = loads((await probe.next_message(10)).payload)
    return message


def _start_bridges(
    tmp_path: Path,
    pki: Pki,
    server: OpcUaTestServer,
    broker: MosquittoBroker,
    bridges: BridgeProcesses,
) -> dict[str, Path]:
    """`opcua-mqtt run` for plant1 and the other bridge, each with a signer bound to its
    PublisherId and, on a mutual-TLS broker, an MQTT certificate whose CN is that PublisherId;
    returns each one's signing folder."""
    signing = {p: issue_signer(pki, tmp_path / f"{p}-signer", p) for p in (GENUINE, OTHER)}
    for publisher in (GENUINE, OTHER):
        bridges.start(
            write_config(
                tmp_path / f"{publisher}.yaml",
                endpoint=server.endpoint,
                broker=broker,
                signing_dir=signing[publisher],
                fields=simulated_fields(server, "Counter"),
                publisher_id=publisher,
                mqtt_client=issue_mqtt_client(pki, publisher) if broker.mutual_tls else None,
            )
        )
    return signing


def _forgeries(genuine: dict[str, Any], other_signing: Path) -> dict[str, bytes]:
    """Data naming plant1 (a value plant1 never sends), plant1's metadata re-signed by the
    other bridge's signer, and plant1's metadata unsigned."""
    data = {
        "MessageId": "forged",
        "MessageType": "ua-data",
        "PublisherId": GENUINE,
        "WriterGroupName": "G",
        "Messages": [
            {
                "DataSetWriterId": 1001,
                "SequenceNumber": 1,
                "MessageType": "ua-keyframe",
                "Payload": {"Counter": {"UaType": 7, "Value": FORGED_COUNTER}},
            }
        ],
    }
    unsigned = {k: v for k, v in genuine.items() if k != SIGNATURE_MEMBER}
    other_key = Signer.from_pem(
        (other_signing / "metadata-signer.key").read_bytes(),
        (other_signing / "metadata-signer.pem").read_bytes(),
    )
    resigned = sign_message(unsigned, other_key, issued_at=datetime.now(UTC))
    return {"data": dumps(data), "resigned": dumps(resigned), "unsigned": dumps(unsigned)}


def _forgery_topics(publisher: str) -> dict[str, str]:
    """Where each of :func:`_forgeries` goes when published under ``publisher``'s topics."""
    metadata = TOPICS.metadata(publisher, "G", "W")
    return {"data": TOPICS.data(publisher, "G"), "resigned": metadata, "unsigned": metadata}


def _plant1_refused_then_seen(lines: list[dict[str, Any]]) -> bool:
    """Three forgeries refused, and plant1's data shown after them."""
    return any(ln["refused"]["total"] >= 3 and ln["publisher_id"] == GENUINE for ln in lines)


def _assert_each_stream_stayed_itself(lines: list[dict[str, Any]]) -> None:
    """Only plant1 and the other bridge were shown, each `verified` as itself by its own
    signer on its own topics, and the forged value never."""
    by_publisher = {p: [ln for ln in lines if ln["publisher_id"] == p] for p in (GENUINE, OTHER)}
    assert set(by_publisher) == {ln["publisher_id"] for ln in lines}
    metadata_of = {
        p: {(ln["metadata"]["state"], ln["metadata"]["identity"]) for ln in shown}
        for p, shown in by_publisher.items()
    }
    # "missing" only before the retained metadata arrived; never anyone else's identity
    assert metadata_of[GENUINE] - {("missing", None)} == {("verified", GENUINE)}
    assert metadata_of[OTHER] - {("missing", None)} == {("verified", OTHER)}
    signers = {ln["metadata"]["signer"] for ln in by_publisher[GENUINE] if ln["metadata"]["signer"]}
    assert signers == {"CN=metadata signer plant1,O=opcua-mqtt development"}
    assert all(
        ln["topic"].startswith(f"opcua/json/data/{GENUINE}/") for ln in by_publisher[GENUINE]
    )
    assert not any(ln["fields"]["Counter"]["value"] == FORGED_COUNTER for ln in lines)


async def test_listen_refuses_each_forgery_and_keeps_plant1_verified_as_plant1(
    tmp_path: Path,
    pki: Pki,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    signing = _start_bridges(tmp_path, pki, shared_small_opcua_server, mosquitto_tls, bridges)
    listen = Listen(mosquitto_tls, pki.ca_cert, tmp_path)
    try:
        await listen.until(
            "both bridges verified",
            lambda lines: _verified(lines, GENUINE) and _verified(lines, OTHER),
        )
        genuine = await _retained_metadata(mosquitto_tls, GENUINE)
        forged = _forgeries(genuine, signing[OTHER])
        async with MqttProbe() as forger:
            await forger.connect(
                mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context()
            )
            # data naming plant1 on the forger's own topic; then, on plant1's metadata topic,
            # plant1's metadata re-signed by the other signer, and unsigned after the signed
            forger.publish(TOPICS.data(OTHER, "G"), forged["data"])
            for kind in ("resigned", "unsigned"):
                forger.publish(TOPICS.metadata(GENUINE, "G", "W"), forged[kind])
            lines = await listen.until(
                "the three forgeries refused, then plant1's data again", _plant1_refused_then_seen
            )
    finally:
        code = listen.stop()
    assert code == 0, listen.err.read_text()

    assert lines[-1]["refused"] == {"total": 3, "topic": 1, "signer": 1, "downgrade": 1}
    _assert_each_stream_stayed_itself(lines)
    log = listen.err.read_text()
    for reason in ("topic", "signer", "downgrade"):
        assert f"({reason})" in log, log


async def test_under_the_example_acl_the_broker_and_listen_refuse_the_other_bridges_forgeries(
    tmp_path: Path,
    pki: Pki,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_mtls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """The forger holds everything of the other bridge: its MQTT certificate (CN = its
    PublisherId, so its ACL block) and its signing key."""
    broker = mosquitto_mtls
    # `opcua-mqtt certs`' ACL with one bridge block per PublisherId; listen (and the probe
    # reading the retained metadata) present the test client certificate: the tool block.
    broker.set_acl(
        render_acl(TOPICS, bridge_cn=GENUINE, tool_cn=CLIENT_COMMON_NAME, publisher_id=GENUINE)
        + "\n"
        + bridge_block(TOPICS, OTHER, OTHER)
    )
    await broker.astop()
    await broker.astart()
    signing = _start_bridges(tmp_path, pki, shared_small_opcua_server, broker, bridges)
    listen = Listen(broker, pki.ca_cert, tmp_path)
    try:
        await listen.until(
            "both bridges verified",
            lambda lines: _verified(lines, GENUINE) and _verified(lines, OTHER),
        )
        forged = _forgeries(await _retained_metadata(broker, GENUINE), signing[OTHER])
        async with MqttProbe() as forger:
            await forger.connect(
                broker.host,
                broker.port,
                client_ssl_context(broker.ca_cert, *issue_mqtt_client(pki, OTHER)),
            )
            # (1) On plant1's own topics the broker denies all three (PUBACK 0x87, rc135 in
            # its log): they never reach listen. A fresh gmqtt client numbers them m1, m2, m3.
            plant1_topics = list(_forgery_topics(GENUINE).items())
            for kind, topic in plant1_topics:
                forger.publish(topic, forged[kind])
            who = forger.client_id
            log = await broker.wait_for_log(f"Sending PUBACK to {who} (m3, rc135)", timeout=10)
            for mid, (_kind, topic) in enumerate(plant1_topics, 1):
                assert f"Denied PUBLISH from {who} (d0, q1, r0, m{mid}, '{topic}'" in log, log
                assert f"Sending PUBACK to {who} (m{mid}, rc135)" in log, log
            # (2) On its own topics the broker lets them through, and listen refuses them.
            for kind, topic in _forgery_topics(OTHER).items():
                forger.publish(topic, forged[kind])
            lines = await listen.until(
                "the three forgeries refused, then plant1's data again", _plant1_refused_then_seen
            )
    finally:
        code = listen.stop()
    assert code == 0, listen.err.read_text()

    # All three name PublisherId plant1 on a topic of the other bridge, and Subscriber._decode
    # checks the topic before any signature: each is a `topic` refusal, the re-signed and the
    # unsigned metadata included. `signer` and `downgrade` need metadata on plant1's own topic,
    # which only plant1's certificate may publish: under the ACL they stay 0.
    assert lines[-1]["refused"] == {"total": 3, "topic": 3, "signer": 0, "downgrade": 0}
    # (3) plant1 stayed `verified` as plant1, the other bridge as itself; no forged value
    _assert_each_stream_stayed_itself(lines)
    log = listen.err.read_text()
    for topic in set(_forgery_topics(OTHER).values()):
        assert f"refused message on {topic} (topic): message " in log, log
    assert "(signer)" not in log and "(downgrade)" not in log, log

"""Issue 17 end to end: two real bridges (`opcua-mqtt run`) whose metadata signers chain to the
one CA `listen` trusts, and a forger (a plain MQTT client, with the second bridge's signing key)
publishing through a real Mosquitto. `listen` (JSON lines) refuses and counts every forgery, and
shows plant1's genuine stream as `verified` by plant1's signer throughout."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opcua_mqtt.core.messages.members import dumps, loads
from opcua_mqtt.core.signing import SIGNATURE_MEMBER, Signer, sign_message
from opcua_mqtt.core.topics import TopicTree
from tests.support.bridge import EXE, BridgeProcesses, simulated_fields, write_config
from tests.support.mosquitto import MosquittoBroker
from tests.support.mqtt import MqttProbe
from tests.support.opcua_server import OpcUaTestServer
from tests.support.pki import Pki, issue_signer

TOPICS = TopicTree()
GENUINE, OTHER = "plant1", "evil"
FORGED_COUNTER = 4_000_000_000  # a value the simulation never reaches


class Listen:
    """`opcua-mqtt listen --format json` running until stopped; its lines read from a file."""

    def __init__(self, broker: MosquittoBroker, trust: Path, workdir: Path) -> None:
        self.out, self.err = workdir / "listen.jsonl", workdir / "listen.log"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    EXE,
                    "listen",
                    f"{broker.host}:{broker.port}",
                    "--ca",
                    str(broker.ca_cert),
                    "--trust",
                    str(trust),
                    "--format",
                    "json",
                    "--timeout",
                    "60",
                ],
                stdout=out,
                stderr=err,
            )

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


async def test_listen_refuses_each_forgery_and_keeps_plant1_verified_as_plant1(
    tmp_path: Path,
    pki: Pki,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    signing = {p: issue_signer(pki, tmp_path / f"{p}-signer", p) for p in (GENUINE, OTHER)}
    for publisher in (GENUINE, OTHER):
        bridges.start(
            write_config(
                tmp_path / f"{publisher}.yaml",
                endpoint=small_opcua_server.endpoint,
                broker=mosquitto_tls,
                signing_dir=signing[publisher],
                fields=simulated_fields(small_opcua_server, "Counter"),
                publisher_id=publisher,
            )
        )
    listen = Listen(mosquitto_tls, pki.ca_cert, tmp_path)
    try:
        await listen.until(
            "both bridges verified",
            lambda lines: _verified(lines, GENUINE) and _verified(lines, OTHER),
        )
        genuine = await _retained_metadata(mosquitto_tls, GENUINE)
        unsigned = {k: v for k, v in genuine.items() if k != SIGNATURE_MEMBER}
        evil_key = Signer.from_pem(
            (signing[OTHER] / "metadata-signer.key").read_bytes(),
            (signing[OTHER] / "metadata-signer.pem").read_bytes(),
        )
        async with MqttProbe() as forger:
            await forger.connect(
                mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context()
            )
            # data naming plant1, on the forger's own topic
            forged_data = {
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
            forger.publish(TOPICS.data(OTHER, "G"), dumps(forged_data))
            # plant1's own metadata, re-signed by the other bridge's signer, on plant1's topic
            resigned = sign_message(unsigned, evil_key, issued_at=datetime.now(UTC))
            forger.publish(TOPICS.metadata(GENUINE, "G", "W"), dumps(resigned))
            # and unsigned, after plant1's signed metadata was seen
            forger.publish(TOPICS.metadata(GENUINE, "G", "W"), dumps(unsigned))
            lines = await listen.until(
                "the three forgeries refused, then plant1's data again",
                lambda lines: any(
                    ln["refused"]["total"] >= 3 and ln["publisher_id"] == GENUINE for ln in lines
                ),
            )
    finally:
        code = listen.stop()
    assert code == 0, listen.err.read_text()

    last = lines[-1]["refused"]
    assert last == {"total": 3, "topic": 1, "signer": 1, "downgrade": 1}
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
    assert signers == {"CN=metadata signer plant1,O=opcua-mqtt tests"}
    assert all(
        ln["topic"].startswith(f"opcua/json/data/{GENUINE}/") for ln in by_publisher[GENUINE]
    )
    assert not any(ln["fields"]["Counter"]["value"] == FORGED_COUNTER for ln in lines)
    log = listen.err.read_text()
    for reason in ("topic", "signer", "downgrade"):
        assert f"({reason})" in log, log

"""Write-back identities end to end: signed commands to a real `opcua-mqtt run` (real Mosquitto,
real asyncua server), each refusal with its reason and no write (by an independent read), a
permitted signed write whose answer verifies, answers kept out of the Part 14 tree, and one
commander's flood that does not refuse another's request."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.bridge import EXE, BridgeProcesses
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.opcua_servers import OpcUaTestServer
from harness.pki import Pki, issue_requester
from harness.write_back import (
    COMMANDS,
    PUBLISHER,
    Requester,
    WriteBackNodes,
    check_response,
    read_variant,
    serving_requester,
    write_back_config,
)
from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message, verify_message

OPERATORS = "urn:plant:operator-*"


def _deadline(seconds: float = 10) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _signer(pair: tuple[Path, Path]) -> Signer:
    cert, key = pair
    return Signer.from_pem(key.read_bytes(), cert.read_bytes())


def _request(value: float, field: str = "Double", **members: Any) -> dict[str, Any]:
    return {
        "RequestId": str(uuid.uuid4()),
        "Deadline": _deadline(),
        "Targets": [{"Writer": "W", "Field": field, "Value": value}],
    } | members


@pytest.fixture
async def signed_bridge(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
    pki: Pki,
) -> AsyncIterator[dict[str, Any]]:
    """A bridge that takes only commands signed by the test CA, and lets operators (by URI SAN)
    write W/Double only; the test's own, on the module's server and broker (the tests compare
    values with what they read before)."""
    small_opcua_server, mosquitto_tls = shared_small_opcua_server, shared_mosquitto_tls
    nodes = WriteBackNodes.of(small_opcua_server)
    config = write_back_config(
        tmp_path,
        small_opcua_server.endpoint,
        mosquitto_tls,
        nodes.fields(),
        nodes.ALLOW,
        trust=str(pki.ca_cert),
        max_deadline_s=30,
        permissions=[{"identities": [OPERATORS], "allow": ["G/W/Double"]}],
    )
    proc = bridges.start(config)
    operator_files = issue_requester(pki, "operator", "operator-1", uri="urn:plant:operator-1")
    operator = _signer(operator_files)
    requester = Requester(mosquitto_tls)
    await requester.session.start(wait=True)
    await asyncio.sleep(0.2)  # the SUBACK for the reply topic
    # served once an (unpermitted but signed) probe is answered
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(proc.text())
        probe = sign_message(_request(0.0, "Int32"), operator, issued_at=datetime.now(UTC))
        try:
            answer = await requester.ask(probe, timeout=0.5)
        except TimeoutError:
            continue
        if answer["Result"].get("Symbol") != "BadServerNotConnected":
            break
        await asyncio.sleep(0.2)
    try:
        yield {
            "server": small_opcua_server,
            "node": nodes.writable["Double"]["nodeid"],
            "requester": requester,
            "operator": operator,
            "operator_files": operator_files,
            "bridge_ca_file": tmp_path / "certs" / "ca.pem",
            "bridge_ca": TrustStore.from_pem((tmp_path / "certs" / "ca.pem").read_bytes()),
            "broker": mosquitto_tls,
            "proc": proc,
        }
    finally:
        await requester.session.stop(drain_s=1)


async def test_signed_commands_prove_their_sender_and_every_refusal_writes_nothing(
    signed_bridge: dict[str, Any], pki: Pki
) -> None:
    b = signed_bridge
    endpoint, node, requester = b["server"].endpoint, b["node"], b["requester"]
    operator: Signer = b["operator"]

    def signed(request: dict[str, Any], signer: Signer = operator) -> dict[str, Any]:
        return sign_message(request, signer, issued_at=datetime.now(UTC))

    async def refused(request: dict[str, Any], symbol: str, words: str) -> None:
        before = await read_variant(endpoint, node)
        answer = await requester.ask(request)
        check_response(answer)
        assert answer["Result"].get("Symbol") == symbol, answer
        assert words in answer.get("Message", "") + json.dumps(answer.get("Targets")), answer
        assert "Requester" in answer
        assert verify_message(answer, b["bridge_ca"], at=datetime.now(UTC)).ok
        assert (await read_variant(endpoint, node)).Value == before.Value

    current = (await read_variant(endpoint, node)).Value
    value = current + 1.25

    await refused(_request(value), "BadSecurityChecksFailed", "unsigned")
    rogue = _signer(
        issue_requester(pki, "rogue-op", "operator-9", uri="urn:plant:operator-9", rogue=True)
    )
    await refused(signed(_request(value), rogue), "BadCertificateUntrusted", "untrusted-chain")
    expired = _signer(
        issue_requester(pki, "old-op", "operator-8", uri="urn:plant:operator-8", expired=True)
    )
    await refused(signed(_request(value), expired), "BadCertificateTimeInvalid", "cert-expired")
    viewer = _signer(issue_requester(pki, "viewer", "viewer-1", uri="urn:plant:viewer-1"))
    await refused(signed(_request(value), viewer), "BadUserAccessDenied", "no write permission")
    tampered = signed(_request(value))
    tampered["Targets"][0]["Value"] = value + 1
    await refused(tampered, "BadUserSignatureInvalid", "bad-signature")
    await refused(
        signed(_request(value, Deadline=_deadline(120))), "BadInvalidTimestamp", "max_deadline_s"
    )
    await refused(signed(_request(1.0, "Int32")), "BadUserAccessDenied", "not permitted for")

    # A permitted signed write succeeds, says who asked, and its answer verifies.
    first = signed(_request(value))
    answer = await requester.ask(first)
    check_response(answer)
    assert answer["Result"]["Code"] == 0, answer
    assert answer["Requester"]["Proven"] is True and "operator-1" in answer["Requester"]["Name"]
    assert verify_message(answer, b["bridge_ca"], at=datetime.now(UTC)).ok
    assert (await read_variant(endpoint, node)).Value == value

    # Its RequestId cannot be used again for another request, and a replay writes nothing.
    rid = first["RequestId"]
    requester.answers.pop(rid)
    await refused(
        signed(_request(value + 5, RequestId=rid)), "BadRequestNotAllowed", "RequestId was used"
    )
    requester.answers.pop(rid)
    replay = await requester.ask(first)
    assert replay == answer  # the first answer again
    assert (await read_variant(endpoint, node)).Value == value

    output = b["proc"].text()
    assert "from CN=operator-1" in output or "operator-1" in output


async def test_answers_never_go_to_the_part14_tree(signed_bridge: dict[str, Any]) -> None:
    """A commander names the bridge's own status topic as its reply topic: refused, not
    answered there, logged once, nothing written."""
    b = signed_bridge
    endpoint, node, requester = b["server"].endpoint, b["node"], b["requester"]
    broker: MosquittoBroker = b["broker"]
    status = f"opcua/json/status/{PUBLISHER}"
    before = (await read_variant(endpoint, node)).Value
    request = sign_message(_request(before + 3), b["operator"], issued_at=datetime.now(UTC))
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe(status)
        await asyncio.sleep(0.5)
        while not probe.messages.empty():  # the retained status
            probe.messages.get_nowait()
        props = {"response_topic": status, "correlation_data": b"x"}
        requester.session.publish(
            Outgoing(COMMANDS, json.dumps(request).encode(), qos=1, properties=props)
        )
        # served in order: once a later request is answered, the first had its turn
        later = sign_message(_request(0.0, "Int32"), b["operator"], issued_at=datetime.now(UTC))
        await requester.ask(later)
        answers = []
        while not probe.messages.empty():
            answers.append(json.loads(probe.messages.get_nowait().payload))
    assert [a for a in answers if "Result" in a] == []
    assert (await read_variant(endpoint, node)).Value == before
    lines = [line for line in b["proc"].text().split("\n") if request["RequestId"] in line]
    assert len(lines) == 1 and "will not answer" in lines[0], lines


async def test_one_commanders_flood_does_not_refuse_another(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    shared_mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    small_opcua_server, mosquitto_tls = shared_small_opcua_server, shared_mosquitto_tls
    nodes = WriteBackNodes.of(small_opcua_server)
    config = write_back_config(
        tmp_path,
        small_opcua_server.endpoint,
        mosquitto_tls,
        nodes.fields(),
        nodes.ALLOW,
        rate_per_s=5,
        burst=10,
        total_rate_per_s=1000,
        total_burst=5000,
    )
    proc = bridges.start(config)
    node = nodes.writable["Double"]["nodeid"]
    flood = 5000
    async with serving_requester(mosquitto_tls, bridge=proc) as requester:
        flooder = MqttSession(adapter_options(mosquitto_tls, "flooder"))
        await flooder.start(wait=True)
        try:
            props = {"response_topic": f"opcua/json/reply/{PUBLISHER}/flooder"}
            # what passes the flooder's bucket is refused per target: it writes nothing
            payload = json.dumps({"Targets": [{"Writer": "W", "Field": "NotAllowed", "Value": 1}]})
            for _ in range(flood):
                flooder.publish(Outgoing(COMMANDS, payload.encode(), qos=0, properties=props))
            value = (await read_variant(small_opcua_server.endpoint, node)).Value + 2.5
            answer = await requester.ask(_request(value), timeout=60)
        finally:
            await flooder.stop(drain_s=5)
    assert answer["Result"]["Code"] == 0, answer
    assert answer["Requester"] == {"Name": f"{PUBLISHER}/test", "Proven": False}
    assert (await read_variant(small_opcua_server.endpoint, node)).Value == value
    output = proc.text()
    assert "BadResourceUnavailable" not in output  # no line per request refused for rate
    assert output.count("BadUserAccessDenied") < flood / 10  # the few the bucket passed


def test_write_cli_signs_and_verifies_the_answer(signed_bridge: dict[str, Any], pki: Pki) -> None:
    b = signed_bridge
    broker: MosquittoBroker = b["broker"]
    cert, key = b["operator_files"]
    base = [
        EXE,
        "write",
        f"{broker.host}:{broker.port}",
        "W/Double",
        "17.5",
        *("--ca", str(broker.ca_cert), "--publisher", PUBLISHER),
        *("--sign-key", str(key), "--sign-cert", str(cert)),
    ]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)

    ok = run("--trust", str(b["bridge_ca_file"]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["Requester"]["Proven"] is True
    wrong = run("--trust", str(pki.rogue_ca_cert))  # not the CA of the bridge's signing key
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "signature does not verify" in wrong.stderr
    unsigned = subprocess.run(
        [*base[:-4], "--trust", str(b["bridge_ca_file"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unsigned.returncode == 1
    assert json.loads(unsigned.stdout)["Result"]["Symbol"] == "BadSecurityChecksFailed"

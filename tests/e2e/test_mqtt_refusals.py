"""What the broker refuses, as a user sees it: `opcua-mqtt run` against an ACL that denies its
topics (readiness, log, metrics, ua-status, and the recovery once the ACL allows them), and the
one-shot commands against refusals and connection problems they cannot get past."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.bridge import EXE, BridgeProcess, BridgeProcesses, simulation_config
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from harness.processes import LOOPBACK, free_port
from opcua_mqtt.core.topics import TopicTree
from tests.e2e.test_metrics import _get, _readyz, _scrape, _until, _value

PUBLISHER = "e2e-bridge"  # harness/bridge.py's default
TOPICS = TopicTree()
DATA_TOPIC = TOPICS.data(PUBLISHER, "G", "W")
NOT_AUTHORIZED = {"reason": "not_authorized"}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI; ``timeout`` is only a guard against a hang (it fails the test)."""
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _status(broker: MosquittoBroker) -> dict[str, Any]:
    done = _cli(
        "status", f"{LOOPBACK}:{broker.port}", "--ca", str(broker.ca_cert),
        "--publisher", PUBLISHER, "--format", "json",
    )  # fmt: skip
    [bridge] = json.loads(done.stdout)["bridges"]
    assert isinstance(bridge, dict)
    return bridge


def _refusal_warnings(bridge: BridgeProcess, topic: str) -> list[str]:
    return [
        r["message"]
        for r in bridge.records()
        if r["level"] == "warning" and f"refused a publish on {topic}:" in r["message"]
    ]


@pytest.mark.slow
async def test_a_bridge_whose_topics_the_acl_denies_is_not_ready_until_the_acl_allows_them(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    broker = mosquitto_tls
    # Only ua-status may be published: data, metadata and connection are refused (PUBACK 0x87).
    broker.set_acl(f"topic read #\ntopic readwrite {TOPICS.status(PUBLISHER)}\n")
    await broker.astop()
    await broker.astart()
    port = free_port()
    config = simulation_config(tmp_path, shared_small_opcua_server, broker)
    bridge = bridges.start(config, "--metrics-port", str(port))

    await _readyz(port, 503, 30)

    async def data_refused() -> bool:
        _status_code, body = await _get(port, "/readyz")
        return DATA_TOPIC in json.loads(body).get("mqtt_refused", {})

    await _until(data_refused, timeout=30, what=f"/readyz names {DATA_TOPIC}")
    report = await _readyz(port, 503, 5)
    assert report["down"] == ["mqtt"]
    assert report["mqtt"] == "refusing publishes"
    assert report["mqtt_refused"][DATA_TOPIC] == "Not authorized"
    await _until(
        lambda: _refused_at_least(port, 30), timeout=30, what="30 refused messages counted"
    )
    samples = await _scrape(port)
    refused = _value(samples, "opcua_mqtt_refused_messages_total", **NOT_AUTHORIZED)
    sent = _value(samples, "opcua_mqtt_sent_messages_total")
    # Only ua-status got through (PreOperational, then Error); refused data is not "sent".
    assert refused >= 30
    assert sent <= 4
    [warning] = _refusal_warnings(bridge, DATA_TOPIC)  # once, not once per message
    assert "Not authorized (0x87)" in warning
    assert "client id '" in warning
    assert "ACL" in warning
    assert _status(broker)["state"] == "Error"  # not Operational while data is lost

    broker.set_acl("topic readwrite #\n")
    await broker.reload()
    report = await _readyz(port, 200, 60)
    assert report["mqtt"] == "connected"
    assert _status(broker)["state"] == "Operational"
    samples = await _scrape(port)
    assert _value(samples, "opcua_mqtt_sent_messages_total") > sent
    assert any(f"accepts publishes on {DATA_TOPIC} again" in r["message"] for r in bridge.records())
    assert len(_refusal_warnings(bridge, DATA_TOPIC)) == 1


async def _refused_at_least(port: int, count: int) -> bool:
    samples = await _scrape(port)
    return _value(samples, "opcua_mqtt_refused_messages_total", **NOT_AUTHORIZED) >= count


def test_write_whose_request_the_acl_denies_exits_3_at_once(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """The guard timeout is far below --timeout: waiting for an answer would fail the test."""
    broker = mosquitto_tls
    broker.set_acl("topic read #\n")
    broker.restart()
    done = _cli(
        "write", f"{LOOPBACK}:{broker.port}", "W/Setpoint", "42", "--publisher", PUBLISHER,
        "--ca", str(broker.ca_cert), "--timeout", "600",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "WARNING" not in done.stderr  # the refusal is told once, by the command
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: the broker refused the publish for client id 'opcua-mqtt-write-")
    assert f"{TOPICS.prefix}/json/cmd/{PUBLISHER}" in line  # the command topic
    assert "Not authorized (0x87)" in line
    assert "ACL" in line


COMMANDS = {
    "listen": ["listen", "{broker}", "--timeout", "600"],
    "status": ["status", "{broker}"],
    "write": ["write", "{broker}", "W/Setpoint", "1", "--publisher", PUBLISHER],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("untrusted-broker", "the broker's certificate is not trusted"),
        ("no-client-certificate", "client certificate"),
        ("key-not-of-certificate", "the private key does not belong to the client certificate"),
        ("closed-port", "connection refused"),
    ],
)
def test_one_shot_commands_fail_with_one_line_and_exit_3(
    command: str,
    case: str,
    expected: str,
    mosquitto_tls: MosquittoBroker,
    mosquitto_mtls: MosquittoBroker,
) -> None:
    pki = mosquitto_mtls.pki
    port, tls = {
        "untrusted-broker": (mosquitto_tls.port, ["--ca", str(pki.rogue_ca_cert)]),
        "no-client-certificate": (mosquitto_mtls.port, ["--ca", str(pki.ca_cert)]),
        "key-not-of-certificate": (
            mosquitto_mtls.port,
            ["--ca", str(pki.ca_cert), "--cert", str(pki.client_cert),
             "--key", str(pki.rogue_client_key)],
        ),
        "closed-port": (free_port(), ["--ca", str(pki.ca_cert)]),
    }[case]  # fmt: skip
    args = [a.format(broker=f"{LOOPBACK}:{port}") for a in COMMANDS[command]]
    done = _cli(*args, *tls)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: MQTT connect to "), line
    assert expected in line


async def test_a_broker_certificate_run_does_not_trust_is_an_error_in_readyz_and_exits_3(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    doc = yaml.safe_load(config.read_text())
    doc["mqtt"]["tls"]["ca"] = str(mosquitto_tls.rogue_ca_cert)  # not the broker's issuer
    config.write_text(yaml.safe_dump(doc))
    port = free_port()
    bridge = bridges.start(config, "--metrics-port", str(port), "--exit-on-fatal", "4")
    # not ready from the start; the cause once the first connection attempt has failed
    report = await _readyz(port, 503, 20, lambda r: "certificate is not trusted" in r["mqtt"])
    assert "mqtt" in report["down"]
    code = await asyncio.to_thread(bridge.wait, 60)  # a guard against a hang, not a figure
    assert code == 3
    errors = [r["message"] for r in bridge.records() if r["level"] == "error"]
    # several attempts failed within the minute: one ERROR line (rate-limited), naming the cause
    assert len(errors) == 1 and "certificate is not trusted" in errors[0], errors
    said = [line for line in bridge.text().split("\n") if line.startswith("error: ")]
    assert len(said) == 1 and "--exit-on-fatal" in said[0], said

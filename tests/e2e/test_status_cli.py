"""`opcua-mqtt status` as an operator runs it, against two real `opcua-mqtt run` bridges, the
small OPC UA test server and a real Mosquitto over TLS: Operational while they run, Error from
the last will of a killed one, Disabled from a cleanly stopped one; and against retained
messages no healthy bridge would leave (stale, forged, undecodable)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.metadata import StatusMessage, encode_status_message
from tests.support.bridge import (
    EXE,
    BridgeProcesses,
    make_certs,
    simulated_fields,
    write_config,
)
from tests.support.mosquitto import MosquittoBroker
from tests.support.mqtt import MqttProbe
from tests.support.opcua_server import OpcUaTestServer

PUBLISHERS = ("line-a", "line-b")


def _status(broker: MosquittoBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "status", f"{broker.host}:{broker.port}", "--ca", str(broker.ca_cert), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bridges_json(broker: MosquittoBroker, *args: str) -> dict[str, dict[str, Any]]:
    run = _status(broker, "--format", "json", "--wait", "0.5", *args)
    assert run.returncode in (0, 4, 5), run.stderr
    return {b["publisher_id"]: b for b in json.loads(run.stdout)["bridges"]}


async def _until(
    broker: MosquittoBroker, done: Callable[[dict[str, dict[str, Any]]], bool]
) -> dict[str, dict[str, Any]]:
    """Poll `status` until ``done`` holds (bounded by a number of tries, not a clock)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(60):
        seen = await asyncio.to_thread(_bridges_json, broker)
        if done(seen):
            return seen
        await asyncio.sleep(0.3)
    pytest.fail(f"status never reached the expected state; last seen: {seen}")


def _states(seen: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    return {p: b["state"] for p, b in seen.items()}


async def test_status_follows_two_bridges_through_kill_and_clean_stop(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    empty = _status(mosquitto_tls, "--format", "json", "--wait", "0.5")
    assert empty.returncode == 4, empty.stderr
    assert json.loads(empty.stdout)["bridges"] == []
    assert "no bridge found" in empty.stderr

    certs = make_certs(tmp_path / "certs")
    procs = {
        publisher: bridges.start(
            write_config(
                tmp_path / f"{publisher}.yaml",
                endpoint=small_opcua_server.endpoint,
                broker=mosquitto_tls,
                signing_dir=certs,
                fields=simulated_fields(small_opcua_server, "Counter"),
                publisher_id=publisher,
            )
        )
        for publisher in PUBLISHERS
    }
    seen = await _until(
        mosquitto_tls,
        lambda s: all(s.get(p, {}).get("state") == "Operational" for p in PUBLISHERS),
    )
    for publisher in PUBLISHERS:
        bridge = seen[publisher]
        assert bridge["operational"] is True
        assert bridge["problems"] == []
        assert bridge["age_s"] is not None and bridge["age_s"] >= 0
        connection = bridge["connection"]
        assert connection["address"] == f"mqtts://{mosquitto_tls.host}:{mosquitto_tls.port}"
        assert connection["writer_groups"] == [
            {
                "name": "G",
                "publishing_interval_ms": 100.0,
                "writers": [{"name": "W", "dataset_writer_id": 1001}],
            }
        ]
    healthy = _status(mosquitto_tls, "--wait", "0.5", "--require-operational")
    assert healthy.returncode == 0, healthy.stderr

    table = _status(mosquitto_tls, "--format", "table", "--wait", "0.5")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:2] == ["PUBLISHER", "STATE"]
    assert sorted(r.split()[:2] for r in rows) == [[p, "Operational"] for p in PUBLISHERS]

    # SIGKILL: no clean shutdown, so the broker publishes the bridge's last will.
    killed, stopped = PUBLISHERS
    procs[killed].send_signal(signal.SIGKILL)
    procs[killed].wait(10)
    seen = await _until(mosquitto_tls, lambda s: s[killed]["state"] == "Error")
    assert seen[stopped]["state"] == "Operational"

    # SIGTERM: the bridge publishes Disabled itself and disconnects cleanly.
    procs[stopped].send_signal(signal.SIGTERM)
    assert procs[stopped].wait(10) == 0
    seen = await asyncio.to_thread(_bridges_json, mosquitto_tls)
    assert _states(seen) == {killed: "Error", stopped: "Disabled"}
    assert not any(b["operational"] for b in seen.values())

    unhealthy = _status(mosquitto_tls, "--wait", "0.5", "--require-operational")
    assert unhealthy.returncode == 5
    assert f"not Operational: {killed}, {stopped}" in unhealthy.stderr
    listed = _status(mosquitto_tls, "--wait", "0.5", "--format", "json")
    assert listed.returncode == 0, listed.stderr  # found, and no health check asked for

    one = _status(mosquitto_tls, "--wait", "0.5", "--format", "json", "--publisher", stopped)
    assert one.returncode == 0, one.stderr
    assert [b["publisher_id"] for b in json.loads(one.stdout)["bridges"]] == [stopped]
    absent = _status(mosquitto_tls, "--wait", "0.5", "--publisher", stopped, "--publisher", "nope")
    assert absent.returncode == 4
    assert "no bridge found: nope" in absent.stderr


async def test_status_flags_stale_forged_and_undecodable_retained_messages(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """What a broker may hold besides healthy bridges: a cyclic status whose NextReportTime has
    passed, a status naming another PublisherId than its topic, and a payload that is no
    ua-status. None of them passes --require-operational; a healthy one beside them does."""
    now = datetime.now(UTC)
    retained = {
        "healthy": StatusMessage("healthy", ua.PubSubState.Operational),
        "late": StatusMessage(
            "late",
            ua.PubSubState.Operational,
            is_cyclic=True,
            timestamp=now - timedelta(minutes=2),
            next_report_time=now - timedelta(minutes=1),
        ),
        "forged": StatusMessage("someone-else", ua.PubSubState.Operational),
    }
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        for topic_level, message in retained.items():
            payload = dumps(encode_status_message(message))
            probe.publish(f"opcua/json/status/{topic_level}", payload, retain=True)
        probe.publish("opcua/json/status/garbled", b"not json", retain=True)
        # The broker answers a subscription with what it retains: wait until all four are there.
        await probe.subscribe("opcua/json/status/+")
        for _ in range(4):
            await probe.next_message(10)

    seen = await asyncio.to_thread(_bridges_json, mosquitto_tls)
    assert {p: (b["state"], b["operational"]) for p, b in seen.items()} == {
        "healthy": ("Operational", True),
        "late": ("Operational", False),
        "forged": ("Operational", False),
        "garbled": (None, False),
    }
    assert seen["late"]["overdue"] is True
    assert seen["late"]["age_s"] >= 60
    assert seen["forged"]["problems"] == [
        "message on opcua/json/status/forged names PublisherId 'someone-else'"
    ]
    assert seen["garbled"]["problems"][0].startswith("undecodable message on opcua/json/status/")

    check = _status(mosquitto_tls, "--wait", "0.5", "--require-operational")
    assert check.returncode == 5
    assert "not Operational: forged, garbled, late" in check.stderr
    only_healthy = _status(
        mosquitto_tls, "--wait", "0.5", "--require-operational", "--publisher", "healthy"
    )
    assert only_healthy.returncode == 0, only_healthy.stderr
    table = _status(mosquitto_tls, "--wait", "0.5", "--format", "table").stdout
    assert "Operational (late)" in table
    assert "  ! message on opcua/json/status/forged names PublisherId 'someone-else'" in table

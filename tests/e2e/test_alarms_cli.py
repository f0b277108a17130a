"""Alarms end to end as a user runs them: `opcua-mqtt run` with an event writer and
commands.allow from its configuration file, `opcua-mqtt listen --alarms` showing the active
alarm that ConditionRefresh replays, and `opcua-mqtt ack` acknowledging it (AckedState read
back from node-opcua independently)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.bridge import EXE, BridgeProcesses, make_certs, write_config
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import NodeOpcuaTestServer, start_node_opcua_server
from tests.conftest import _serve
from tests.integration.test_alarms import NS, SELECT, TANK_ALARM
from tests.integration.test_commands import acked

PUBLISHER = "e2e-bridge"
CONDITION = f"nsu={NS};s={TANK_ALARM}"


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[NodeOpcuaTestServer]:
    yield from _serve(start_node_opcua_server, tmp_path / "plant", tank_level=90)


def alarm_config(directory: Path, plant: NodeOpcuaTestServer, broker: MosquittoBroker) -> Path:
    path = write_config(
        directory / "bridge.yaml",
        endpoint=plant.endpoint,
        broker=broker,
        signing_dir=make_certs(directory / "certs"),
        fields=[{"name": "TankLevel", "node_id": f"nsu={NS};s=Alarms.TankLevel"}],
        write_back={"enabled": True},
    )
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["event_writers"] = [
        {"name": "Alarms", "dataset_writer_id": 95, "event_type": "i=2915", "select": list(SELECT)}
    ]
    doc["commands"] = {"allow": ["Alarms/*"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def broker_args(broker: MosquittoBroker) -> list[str]:
    return [f"{broker.host}:{broker.port}", "--ca", str(broker.ca_cert)]


async def test_listen_shows_the_active_alarm_and_ack_acknowledges_it(
    tmp_path: Path,
    plant: NodeOpcuaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = alarm_config(tmp_path, plant, mosquitto_tls)
    listen = subprocess.Popen(
        [
            EXE,
            "listen",
            *broker_args(mosquitto_tls),
            "--alarms",
            "--format",
            "json",
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listen.stdout is not None and listen.stderr is not None
        while "MQTT connected" not in (said := listen.stderr.readline()):
            assert said, "listen ended before it connected"
        bridge = bridges.start(config)  # events are not retained: listen must be there first
        line: dict[str, Any] = {}
        while line.get("alarm", {}).get("condition_id") != CONDITION:
            text = listen.stdout.readline()
            assert text, f"listen ended; the bridge said:\n{bridge.text()}"
            line = json.loads(text)
    finally:
        listen.kill()
        listen.wait(10)
    alarm = line["alarm"]
    assert (alarm["active"], alarm["acked"]) == (True, False)
    assert line["counts"] == {"total": 1, "active": 1, "unacknowledged": 1}
    ack = subprocess.run(
        [
            EXE,
            "ack",
            *broker_args(mosquitto_tls),
            CONDITION,
            alarm["event_id"],
            "--comment",
            "seen",
            "--publisher",
            PUBLISHER,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ack.returncode == 0, (ack.stdout, ack.stderr)
    answer = json.loads(ack.stdout)
    assert answer["Targets"][0]["Method"] == "Acknowledge"
    assert await acked(plant.endpoint) is True

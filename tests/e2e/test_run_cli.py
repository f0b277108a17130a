"""`opcua-mqtt run CONFIG` as an operator runs it: a real process, a real OPC UA server process,
a real Mosquitto over TLS, and the subscriber API listening on the other side."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttOptions, TlsOptions
from opcua_mqtt.core.messages import decode_message
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.subscriber import Subscriber, TrustState
from tests.support.mosquitto import MosquittoBroker
from tests.support.mqtt import MqttProbe
from tests.support.opcua_server import OpcUaTestServer

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))


def _pki(tmp_path: Path) -> Path:
    subprocess.run(
        [EXE, "certs", "--dir", str(tmp_path / "certs")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return tmp_path / "certs"


def _config(tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, **opcua: Any) -> Path:
    certs = _pki(tmp_path)
    sim = server.manifest["simulation"]
    doc = {
        "version": 1,
        "publisher_id": "e2e-bridge",
        "opcua": {
            "endpoint": server.endpoint,
            "security_policy": "None",
            "security_mode": "None",
            **opcua,
        },
        "mqtt": {"host": broker.host, "port": broker.port, "tls": {"ca": str(broker.ca_cert)}},
        "metadata_signing": {
            "private_key": str(certs / "metadata-signer.key"),
            "certificate_chain": str(certs / "metadata-signer.pem"),
        },
        "defaults": {"publishing_interval_ms": 100, "sampling_interval_ms": 50},
        "writer_groups": [
            {
                "name": "Sim",
                "writers": [
                    {
                        "name": "Signals",
                        "dataset_writer_id": 1001,
                        "fields": [
                            {
                                "name": "Counter",
                                "node_id": sim["Counter"],
                                "builtin_type": "UInt32",
                            },
                            {"name": "Sine", "node_id": sim["Sine"], "builtin_type": "Double"},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def bridge_process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _start(config: Path, started: list[subprocess.Popen[str]], **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [EXE, "--log-format", "json", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    started.append(proc)
    return proc


def _subscriber(broker: MosquittoBroker, trust_pem: Path) -> Subscriber:
    mqtt = MqttOptions(
        host=broker.host,
        port=broker.port,
        client_id="e2e-sub",
        tls=TlsOptions(ca=str(broker.ca_cert)),
    )
    return Subscriber(mqtt, trust=TrustStore.from_pem(trust_pem.read_bytes()))


async def _status(broker: MosquittoBroker) -> ua.PubSubState:
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe("opcua/json/status/e2e-bridge")
        message = await probe.next_message(10)
    decoded = decode_message(message.payload)
    return decoded.status  # type: ignore[union-attr]


async def test_run_publishes_verified_data_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridge_process: list[subprocess.Popen[str]],
) -> None:
    config = _config(tmp_path, small_opcua_server, mosquitto_tls)
    proc = _start(config, bridge_process)
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        it = sub.__aiter__()
        seen = [await asyncio.wait_for(it.__anext__(), 20) for _ in range(5)]
    assert all(ds.verification.state is TrustState.VERIFIED for ds in seen)
    assert {ds.dataset_writer_name for ds in seen} == {"Signals"}
    assert await _status(mosquitto_tls) is ua.PubSubState.Operational
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    assert await _status(mosquitto_tls) is ua.PubSubState.Disabled
    logs = proc.stderr.read() if proc.stderr else ""
    assert '"message": "bridge stopped"' in logs


async def test_a_killed_bridge_leaves_its_last_will_error_status(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridge_process: list[subprocess.Popen[str]],
) -> None:
    proc = _start(_config(tmp_path, small_opcua_server, mosquitto_tls), bridge_process)
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        await asyncio.wait_for(sub.__aiter__().__anext__(), 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for _ in range(50):
        if await _status(mosquitto_tls) is ua.PubSubState.Error:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("the broker did not publish the bridge's last will")


async def test_run_over_basic256sha256_with_a_user_name_and_password(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridge_process: list[subprocess.Popen[str]],
) -> None:
    trusted = tmp_path / "trusted-servers"
    trusted.mkdir()
    shutil.copy(small_opcua_server.server_cert_path, trusted / "server.der")
    config = _config(
        tmp_path,
        small_opcua_server,
        mosquitto_tls,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=str(tmp_path / "opcua-client.pem"),
        private_key=str(tmp_path / "opcua-client.key"),
        trust_dir=str(trusted),
        username=small_opcua_server.username,
        password_env="E2E_OPCUA_PW",
    )
    proc = _start(config, bridge_process, E2E_OPCUA_PW=small_opcua_server.password)
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        ds = await asyncio.wait_for(sub.__aiter__().__anext__(), 30)
    assert ds.fields["Counter"].status.is_good()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    logs = proc.stderr.read() if proc.stderr else ""
    assert small_opcua_server.password not in logs  # secrets never reach the logs


def test_an_invalid_configuration_is_refused_with_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\npublisher_id: x\nopcua:\n  endpoint: opc.tcp://127.0.0.1:1\n"
        "  security_mode: SignEncrypt\nwriter_groups: []\n"
    )
    run = subprocess.run([EXE, "run", str(bad)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert f"{bad}:5: opcua/security_mode" in run.stderr

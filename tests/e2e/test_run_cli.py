"""`opcua-mqtt run CONFIG` as an operator runs it: a real process, a real OPC UA server process,
a real Mosquitto over TLS, and the subscriber API listening on the other side."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from asyncua import ua

from harness.bridge import EXE, BridgeProcesses, simulated_fields, simulation_config
from harness.datasets import first_good
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.opcua_servers import OpcUaTestServer
from opcua_mqtt.core.messages.decode import decode_message
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.subscriber import Subscriber, TrustState


def _subscriber(broker: MosquittoBroker, trust_pem: Path) -> Subscriber:
    trust = TrustStore.from_pem(trust_pem.read_bytes())
    return Subscriber(adapter_options(broker, "e2e-sub"), trust=trust)


def _secure_config(
    tmp_path: Path, server: OpcUaTestServer, broker: MosquittoBroker, trusted: Path, **opcua: str
) -> Path:
    """The simulation bridge over Basic256Sha256 SignAndEncrypt, trusting the servers in
    ``trusted``, its client certificate made at first start in ``tmp_path``."""
    return simulation_config(
        tmp_path,
        server,
        broker,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=str(tmp_path / "opcua-client.pem"),
        private_key=str(tmp_path / "opcua-client.key"),
        trust_dir=str(trusted),
        **opcua,
    )


async def _status(broker: MosquittoBroker) -> ua.PubSubState:
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe("opcua/json/status/e2e-bridge")
        message = await probe.next_message(10)
    decoded = decode_message(message.payload)
    return decoded.status  # type: ignore[union-attr]


async def test_run_publishes_verified_data_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    proc = bridges.start(config)
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        it = sub.__aiter__()
        seen = [await asyncio.wait_for(it.__anext__(), 20) for _ in range(5)]
    assert all(ds.verification.state is TrustState.VERIFIED for ds in seen)
    assert {ds.dataset_writer_name for ds in seen} == {"W"}
    assert await _status(mosquitto_tls) is ua.PubSubState.Operational
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, proc.text()
    assert await _status(mosquitto_tls) is ua.PubSubState.Disabled
    logs = proc.text()
    assert '"message": "bridge stopped"' in logs
    assert '"message": "event loop: uvloop"' in logs  # the test extra installs uvloop


def test_loop_uvloop_without_uvloop_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"  # first on the path: `import uvloop` fails as if not installed
    shadow.mkdir()
    (shadow / "uvloop.py").write_text("raise ImportError('hidden by the test')\n")
    config = tmp_path / "bridge.yaml"
    config.write_text("{}\n")  # not read: the loop is checked first
    run = subprocess.run(
        [EXE, "run", "--loop", "uvloop", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(shadow)},
    )
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "error: --loop uvloop: uvloop cannot be imported (hidden by the test); install "
        "opcua-mqtt[fast] or use --loop asyncio"
    ]


async def test_run_on_the_standard_event_loop_when_the_environment_says_so(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    proc = bridges.start(config, OPCUA_MQTT_LOOP="asyncio")
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        ds = await asyncio.wait_for(sub.__aiter__().__anext__(), 20)
    assert ds.verification.state is TrustState.VERIFIED
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, proc.text()
    logs = proc.text()
    assert '"message": "event loop: asyncio"' in logs
    assert "uvloop" not in logs


async def test_a_killed_bridge_leaves_its_last_will_error_status(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    proc = bridges.start(simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls))
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
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    trusted = tmp_path / "trusted-servers"
    trusted.mkdir()
    shutil.copy(shared_small_opcua_server.server_cert_path, trusted / "server.der")
    config = _secure_config(
        tmp_path,
        shared_small_opcua_server,
        mosquitto_tls,
        trusted,
        username=shared_small_opcua_server.username,
        password_env="E2E_OPCUA_PW",
    )
    proc = bridges.start(config, E2E_OPCUA_PW=shared_small_opcua_server.password)
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        await first_good(sub, "Counter")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    logs = proc.text()
    assert shared_small_opcua_server.password not in logs  # secrets never reach the logs


def test_an_invalid_configuration_is_refused_with_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\npublisher_id: x\nopcua:\n  endpoint: opc.tcp://127.0.0.1:1\n"
        "  security_mode: SignEncrypt\nwriter_groups: []\n"
    )
    run = subprocess.run([EXE, "run", str(bad)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert f"{bad}:5: opcua/security_mode" in run.stderr


def test_a_configuration_that_is_not_utf8_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("opcua:\n  endpoint: opc.tcp://caf\xe9:4840\n".encode("latin-1"))
    run = subprocess.run([EXE, "run", str(binary)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"error: {binary}: cannot read: 'utf-8' codec can't decode byte 0xe9 in position 32: "
        "invalid continuation byte"
    ]


async def test_bundled_writers_share_one_network_message_on_the_group_topic(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    config = simulation_config(tmp_path, shared_small_opcua_server, mosquitto_tls)
    doc = yaml.safe_load(config.read_text())
    group = doc["writer_groups"][0]
    group["bundle_writers"] = True
    group["writers"].append(
        {
            "name": "W2",
            "dataset_writer_id": 1002,
            "fields": simulated_fields(shared_small_opcua_server, "Toggle"),
        }
    )
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    bridges.start(config)
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe("opcua/json/data/#")
        for _ in range(50):
            msg = await probe.next_message(20)
            decoded = json.loads(msg.payload)
            if len(decoded["Messages"]) == 2:
                break
        else:
            pytest.fail("no NetworkMessage carried both writers")
    assert msg.topic == "opcua/json/data/e2e-bridge/G"
    assert {m["DataSetWriterId"] for m in decoded["Messages"]} == {1001, 1002}


async def test_the_hint_for_an_untrusted_server_names_a_command_that_trusts_it(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """`run` has no --trust-server-cert: its hint names a `browse` that saves the certificate
    into the configured trust dir, after which the running bridge connects on its next try."""
    trusted = tmp_path / "trusted servers"  # a space: the command must be quoted
    config = _secure_config(tmp_path, shared_small_opcua_server, mosquitto_tls, trusted)
    proc = bridges.start(config)
    marker = "trust it on first contact with: "
    for _ in range(100):
        failed = [m for r in proc.records() if marker in (m := r["message"])]
        if failed:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"no hint about the untrusted server certificate:\n{proc.text()}")
    command = shlex.split(failed[0].split(marker, 1)[1])
    assert command[:2] == ["opcua-mqtt", "browse"] and str(trusted) in command
    trust = subprocess.run(
        [EXE, *command[1:]], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert trust.returncode == 0, trust.stderr
    assert list(trusted.iterdir())
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        await first_good(sub, "Counter")

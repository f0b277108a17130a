"""Brokers only the integration tests use: one that keeps sessions across a restart, one
with an ACL as a plant would set it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness.mosquitto import MosquittoBroker, run_broker
from harness.mqtt import MqttProbe
from harness.pki import CLIENT_COMMON_NAME, Pki


@pytest.fixture
def mosquitto_persistent(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """TLS Mosquitto that keeps sessions and queued QoS 1 messages across a restart, as a
    production broker does; for tests where the broker goes away and comes back."""
    workdir = tmp_path / "mosquitto-persistent"
    extra = (
        "persistence true",
        f"persistence_location {workdir}/",
        "max_queued_messages 100000",
    )
    yield from run_broker(mosquitto_executable, pki, workdir, mutual_tls=False, extra=extra)



@pytest.fixture
def mosquitto_mtls_acl(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """Mutual TLS plus an ACL as a plant would set it: the bridge's identity may publish only
    under ``opcua/`` and read only its command topic; anyone else may only read ``opcua/``."""
    workdir = tmp_path / "mosquitto-mtls-acl"
    workdir.mkdir(parents=True)
    acl = workdir / "acl"
    acl.write_text(
        f"user {CLIENT_COMMON_NAME}\n"
        "topic write opcua/#\n"
        "topic read opcua/json/+/+/cmd/#\n"
        "\n"
        "pattern read opcua/#\n"
    )
    acl.chmod(0o644)
    yield from run_broker(
        mosquitto_executable, pki, workdir, mutual_tls=True, extra=(f"acl_file {acl}",)
    )


@pytest.fixture
async def forger(mosquitto_tls: MosquittoBroker) -> AsyncIterator[MqttProbe]:
    """A plain MQTT client on ``mosquitto_tls`` that publishes whatever a test makes up."""
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        yield probe

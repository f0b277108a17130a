"""Shared fixtures: a throw-away PKI per session and real Mosquitto brokers over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import NOT_INSTALLED_MESSAGE, MosquittoBroker, find_mosquitto
from tests.support.pki import Pki, generate_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, broker and client certificates plus a rogue CA, generated once per test session."""
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def mosquitto_executable() -> str:
    """Path of the mosquitto binary. A missing broker fails the tests: it never skips them."""
    executable = find_mosquitto()
    if executable is None:
        pytest.fail(NOT_INSTALLED_MESSAGE, pytrace=False)
    return executable


def _run_broker(
    executable: str, pki: Pki, workdir: Path, *, mutual_tls: bool, extra: tuple[str, ...] = ()
) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(
        executable=executable, pki=pki, workdir=workdir, mutual_tls=mutual_tls, extra_config=extra
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# Function scope: a broker starts in about 20 ms, and a test may stop or restart its broker.


@pytest.fixture
def mosquitto_tls(mosquitto_executable: str, pki: Pki, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto with server-authenticated TLS on a free loopback port; anonymous clients OK."""
    yield from _run_broker(mosquitto_executable, pki, tmp_path / "mosquitto-tls", mutual_tls=False)


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
    yield from _run_broker(mosquitto_executable, pki, workdir, mutual_tls=False, extra=extra)


@pytest.fixture
def mosquitto_mtls(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """Mosquitto requiring a client certificate from the test CA; its CN is the MQTT user name."""
    yield from _run_broker(mosquitto_executable, pki, tmp_path / "mosquitto-mtls", mutual_tls=True)

"""Fixtures shared by the integration and end-to-end tests: a throw-away PKI per session, real
Mosquitto brokers over TLS, bridge processes and real OPC UA servers (all from harness/).
Fixtures only one suite uses live in its own conftest.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.bridge import BridgeProcesses, bridge_processes
from harness.mosquitto import NOT_INSTALLED_MESSAGE, MosquittoBroker, run_broker
from harness.opcua_servers import (
    ASPACE_CACHE_ENV,
    NodeOpcuaTestServer,
    OpcUaTestServer,
    ServerProcess,
    node_opcua_missing,
    start_node_opcua_server,
    start_opcua_server,
)
from harness.pki import Pki, generate_pki
from harness.processes import StartError, find_mosquitto


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a ``slow`` test first, each kept in its order: scripts/test hands whole
    files to workers in collection order (``--dist loadfile --no-loadscope-reorder``), so the
    long ones start first and the many short ones fill the gaps at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


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


# Function scope: a broker starts in about 20 ms, and a test may stop or restart its broker.


@pytest.fixture
def mosquitto_tls(mosquitto_executable: str, pki: Pki, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto with server-authenticated TLS on a free loopback port; anonymous clients OK."""
    yield from run_broker(mosquitto_executable, pki, tmp_path / "mosquitto-tls", mutual_tls=False)


@pytest.fixture(scope="module")
def shared_mosquitto_tls(
    mosquitto_executable: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoBroker]:
    """``mosquitto_tls`` shared by the tests of a module, for tests that neither stop it nor
    depend on what earlier tests left retained on it."""
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    yield from run_broker(mosquitto_executable, pki, workdir, mutual_tls=False)


@pytest.fixture
def mosquitto_mtls(
    mosquitto_executable: str, pki: Pki, tmp_path: Path
) -> Iterator[MosquittoBroker]:
    """Mosquitto requiring a client certificate from the test CA; its CN is the MQTT user name."""
    yield from run_broker(mosquitto_executable, pki, tmp_path / "mosquitto-mtls", mutual_tls=True)


@pytest.fixture
def bridges() -> Iterator[BridgeProcesses]:
    """Starts `opcua-mqtt run` processes (harness/bridge.py); none outlives the test."""
    yield from bridge_processes()


@pytest.fixture(scope="module")
def shared_bridges() -> Iterator[BridgeProcesses]:
    """``bridges`` for module-scoped fixtures: none outlives the module."""
    yield from bridge_processes()


# -- real OPC UA servers (harness/opcua_server.py, interop/plant-server.mjs) ---------------------
# Each server runs in its own process on a free 127.0.0.1 port, is waited for with a bounded
# timeout (a server that does not come up fails the test with its stderr) and is stopped by PID.

S = TypeVar("S", bound=ServerProcess)


def _serve(start: Callable[..., S], workdir: Path, **options: Any) -> Iterator[S]:
    """``start(workdir, **options)`` for the length of a fixture, then stop it by PID. A server
    that does not come up fails the test (with its stderr), never errors it."""
    try:
        server = start(workdir, **options)
    except StartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def opcua_aspace_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every asyncua test server of the run (also those a benchmark under test starts) shares
    one start-up cache (harness/opcua_servers.py); xdist workers' temporary folders are
    folders of the run's own, which holds it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    cache = base / "opcua-aspace-cache" / "standard"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ASPACE_CACHE_ENV, str(cache))
        yield cache


@pytest.fixture(scope="session")
def opcua_server_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the asyncua test servers' certificate and key, shared by all of them (the
    first server to start generates them)."""
    return tmp_path_factory.mktemp("opcua-server-pki")


@pytest.fixture(scope="session")
def opcua_server(
    tmp_path_factory: pytest.TempPathFactory, opcua_server_cert_dir: Path
) -> Iterator[OpcUaTestServer]:
    """The asyncua test server with 10,000+ variables, shared by the whole session: do not
    change its model (use ``small_opcua_server`` for that).

    Attributes: endpoint, port, namespace_uri, application_uri, server_cert_path (DER), cert_dir,
    username, password, manifest (parsed JSON), manifest_path, pid, startup_seconds, workdir;
    ``variables`` (the manifest's entries), ``nodeid(path)``, ``running``, ``output()``, ``stop()``.
    """
    yield from _serve(
        start_opcua_server,
        tmp_path_factory.mktemp("opcua-server"),
        variables=10_000,
        cert_dir=opcua_server_cert_dir,
        timeout=60.0,
    )


@pytest.fixture
def small_opcua_server(tmp_path: Path, opcua_server_cert_dir: Path) -> Iterator[OpcUaTestServer]:
    """A fresh asyncua test server with about 200 variables, for tests that change the model
    (Control methods) or stop the server. Same attributes as ``opcua_server``."""
    yield from _small_server(tmp_path / "opcua-server", opcua_server_cert_dir)


@pytest.fixture(scope="module")
def shared_small_opcua_server(
    tmp_path_factory: pytest.TempPathFactory, opcua_server_cert_dir: Path
) -> Iterator[OpcUaTestServer]:
    """``small_opcua_server`` shared by the tests of a module, for tests that neither change
    its model nor stop it (a start costs a process and about 0.5 s of CPU)."""
    yield from _small_server(tmp_path_factory.mktemp("opcua-server"), opcua_server_cert_dir)


def _small_server(
    workdir: Path, cert_dir: Path, churn: tuple[int, int] | None = None
) -> Iterator[OpcUaTestServer]:
    """The small asyncua test server; with ``churn`` (count, interval ms) also that many Double
    variables written every interval (``--churn``)."""
    extra = ("--churn", str(churn[0]), "--churn-interval-ms", str(churn[1])) if churn else ()
    yield from _serve(
        start_opcua_server,
        workdir,
        variables=200,
        cert_dir=cert_dir,
        timeout=30.0,
        extra_args=extra,
    )


@pytest.fixture(scope="session")
def node_opcua_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcuaTestServer]:
    """interop/plant-server.mjs (node-opcua) on a free loopback port. Missing Node.js or
    node-opcua fails the tests (never skips them): run scripts/test.

    Attributes: endpoint, port, namespace_uri, server_cert_path (PEM), pki_dir, username,
    password, pid, startup_seconds; ``nodeid(path)``, ``running``, ``output()``, ``stop()``.
    """
    missing = node_opcua_missing()
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    yield from _serve(
        start_node_opcua_server, tmp_path_factory.mktemp("node-opcua-server"), timeout=60.0
    )

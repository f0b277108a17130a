"""Start the test OPC UA servers (harness/opcua_server.py, interop/plant-server.mjs)
on free loopback ports, wait for them (bounded) and stop them by PID.

With ``OPCUA_MQTT_TEST_ASPACE_CACHE`` set (tests/conftest.py sets it for a test run), every
asyncua test server started here, also by a benchmark the tests run, shares that start-up cache
(``--aspace-cache``): about 0.9 s of CPU less per start after the first.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.plant_model import APPLICATION_URI, DEFAULT_USERS, DEFAULT_VARIABLES
from harness.processes import REPO_ROOT, Process, StartError, free_port, spawn

INTEROP_DIR = REPO_ROOT / "interop"
NODE_PLANT_SERVER = INTEROP_DIR / "plant-server.mjs"
NODE_OPCUA_PACKAGE = INTEROP_DIR / "node_modules" / "node-opcua"
NODE_NAMESPACE_URI = "urn:opcua-mqtt:interop:plant"
ASPACE_CACHE_ENV = "OPCUA_MQTT_TEST_ASPACE_CACHE"


@dataclass
class ServerProcess:
    """What every test server process offers: where it listens, who may log in, its plant
    namespace, and its process (stopped by PID)."""

    endpoint: str
    port: int
    namespace_uri: str
    server_cert_path: Path
    username: str
    password: str
    pid: int
    startup_seconds: float
    _process: Process = field(repr=False)

    def nodeid(self, path: str) -> str:
        """``nsu=<plant namespace>;s=<path>``, e.g. ``nodeid("Plant.Dynamic.Mutable")``."""
        return f"nsu={self.namespace_uri};s={path}"

    @property
    def running(self) -> bool:
        return self._process.running

    def output(self) -> str:
        """What the server wrote on stdout and stderr so far."""
        return self._process.output()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL); idempotent."""
        self._process.stop(timeout)


@dataclass
class OpcUaTestServer(ServerProcess):
    """A running ``python -m harness.opcua_server`` process (server_cert_path: DER)."""

    application_uri: str
    cert_dir: Path
    manifest: dict[str, Any]
    manifest_path: Path
    workdir: Path

    @property
    def variables(self) -> list[dict[str, Any]]:
        """The manifest's variable entries (nodeid, path, builtin_type, value_rank, ...)."""
        return list(self.manifest["variables"])


def start_opcua_server(
    workdir: Path,
    *,
    variables: int = DEFAULT_VARIABLES,
    cert_dir: Path | None = None,
    users: dict[str, str] | None = None,
    trusted_client_certs: Path | None = None,
    timeout: float = 60.0,
    extra_args: Iterable[str] = (),
    port: int | None = None,
) -> OpcUaTestServer:
    """Start the asyncua test server on ``port`` (by default a free loopback port) and wait
    (bounded) until READY; ``port`` restarts a stopped server where its clients look for it.

    Raises :class:`StartError` with the server's output when it exits or is not ready
    within ``timeout`` seconds. A free port taken between choosing and binding is retried.
    """
    users = dict(users or DEFAULT_USERS)
    username, password = next(iter(users.items()))
    cert_dir = cert_dir or workdir / "pki"
    chosen = port
    for attempt in range(3):
        port = chosen or free_port()
        ready_file = workdir / "ready.json"
        ready_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "harness.opcua_server",
            "--port",
            str(port),
            "--variables",
            str(variables),
            "--cert-dir",
            str(cert_dir),
            "--users",
            ",".join(f"{u}:{p}" for u, p in users.items()),
            "--ready-file",
            str(ready_file),
        ]
        if trusted_client_certs is not None:
            cmd += ["--trusted-client-certs", str(trusted_client_certs)]
        if os.environ.get(ASPACE_CACHE_ENV):
            cmd += ["--aspace-cache", os.environ[ASPACE_CACHE_ENV]]
        cmd += list(extra_args)
        process = spawn(cmd, workdir, f"opcua-server-{attempt}", REPO_ROOT)
        try:
            process.wait_until(ready_file.exists, timeout, f"OPC UA test server (port {port})")
        except StartError as exc:
            if chosen is None and attempt < 2 and "address already in use" in str(exc).lower():
                continue
            raise
        ready = json.loads(ready_file.read_text())
        manifest_path = Path(ready["manifest"])
        return OpcUaTestServer(
            endpoint=ready["endpoint"],
            port=port,
            namespace_uri=ready["namespace_uri"],
            application_uri=APPLICATION_URI,
            server_cert_path=Path(ready["server_cert"]),
            cert_dir=cert_dir,
            username=username,
            password=password,
            manifest=json.loads(manifest_path.read_text()),
            manifest_path=manifest_path,
            pid=process.pid,
            startup_seconds=float(ready["startup_seconds"]),
            workdir=workdir,
            _process=process,
        )
    raise AssertionError("unreachable")


# -- node-opcua ------------------------------------------------------------------------------

NODE_NOT_READY = (
    "the node-opcua plant server needs Node.js (`node` on PATH) and "
    "interop/node_modules/node-opcua (pinned in interop/package-lock.json): run "
    "`bash scripts/test`, which installs both, or `cd interop && npm ci`."
)


def node_opcua_missing() -> str | None:
    """Why the node-opcua server cannot start here, or None when it can."""
    if shutil.which("node") is None:
        return "`node` is not on PATH. " + NODE_NOT_READY
    if not (NODE_OPCUA_PACKAGE / "package.json").exists():
        return f"{NODE_OPCUA_PACKAGE} is missing. " + NODE_NOT_READY
    return None


@dataclass
class NodeOpcuaTestServer(ServerProcess):
    """A running ``node interop/plant-server.mjs`` process.

    Its model (namespace :data:`NODE_NAMESPACE_URI`, string NodeIds ``s=Plant.Line1.Filler.Speed``
    etc.) is described at the top of interop/plant-server.mjs. Its server_cert_path is PEM.
    """

    pki_dir: Path

    def writes(self, path: str) -> list[str]:
        """Results (StatusCode names) of the Writes that reached the WriteBack variable
        ``path`` (e.g. ``"WriteBack.Double"``) so far, oldest first: the server's own account,
        which tells a write it refused from one never sent."""
        prefix = f"WRITE {path} "
        text = self._process.text()
        return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


def start_node_opcua_server(
    workdir: Path,
    *,
    users: dict[str, str] | None = None,
    timeout: float = 60.0,
    port: int | None = None,
    tank_level: float | None = None,
) -> NodeOpcuaTestServer:
    """Start interop/plant-server.mjs on ``port`` (by default a free loopback port, else where
    its clients look for it, to restart it); wait (bounded) for READY. ``tank_level``: the
    value of Alarms.TankLevel at start (its alarm is active above 80)."""
    missing = node_opcua_missing()
    if missing is not None:
        raise StartError(missing)
    node = shutil.which("node")
    assert node is not None
    users = dict(users or DEFAULT_USERS)
    username, password = next(iter(users.items()))
    pki_dir = workdir / "pki"
    chosen = port
    for attempt in range(3):
        started = time.monotonic()
        port = chosen or free_port()
        cmd = [
            node,
            str(NODE_PLANT_SERVER),
            str(port),
            str(pki_dir),
            "--users",
            ",".join(f"{u}:{p}" for u, p in users.items()),
            *(["--tank-level", str(tank_level)] if tank_level is not None else []),
        ]
        process = spawn(cmd, workdir, f"plant-server-{attempt}", INTEROP_DIR)

        def ready(process: Process = process) -> bool:
            return "READY " in process.text()

        try:
            process.wait_until(ready, timeout, f"OPC UA test server (node-opcua, port {port})")
        except StartError as exc:
            if chosen is None and attempt < 2 and "eaddrinuse" in str(exc).lower():
                continue
            raise
        lines = dict(line.split(" ", 1) for line in process.text().splitlines() if " " in line)
        return NodeOpcuaTestServer(
            endpoint=lines["READY"].strip(),
            port=port,
            namespace_uri=lines["NAMESPACE"].strip(),
            server_cert_path=Path(lines["CERT"].strip()),
            pki_dir=pki_dir,
            username=username,
            password=password,
            pid=process.pid,
            startup_seconds=time.monotonic() - started,
            _process=process,
        )
    raise AssertionError("unreachable")

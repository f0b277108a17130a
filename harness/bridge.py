"""Bridge processes for end-to-end tests: a configuration written to disk, `opcua-mqtt run`
started as a user would start it, and stopped (or killed) by PID."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from opcua_mqtt import devpki
from opcua_mqtt.processes import Process, spawn

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`opcua-mqtt ARGS` as a user runs it, to its end (bounded), its output captured."""
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def run_cli_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`opcua-mqtt ARGS` run in this process (click's CliRunner), for tests of what a command
    works out rather than of the process around it (exit codes and output of the real process
    are :func:`run_cli`'s): the same exit code, stdout and stderr without the interpreter start
    and imports a process pays (most of a second of CPU). An exception the command does not
    handle is raised here, where a process would print a traceback. The working directory and
    the logging the command sets up (root handlers and level, asyncua's and gmqtt's levels)
    are put back afterwards."""
    from click.testing import CliRunner

    from opcua_mqtt.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in ("asyncua", "gmqtt")}
    here = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, list(args), prog_name="opcua-mqtt")
    finally:
        os.chdir(here)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in quieted.items():
            logging.getLogger(name).setLevel(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(
        ["opcua-mqtt", *args], result.exit_code, result.stdout, result.stderr
    )


def make_certs(directory: Path, publisher_id: str = "e2e-bridge") -> Path:
    """The development PKI `opcua-mqtt certs` writes (made in this process by the same
    :func:`opcua_mqtt.devpki.write_pki`, without the broker files), its metadata signer bound
    to ``publisher_id`` (the default is :func:`write_config`'s); returns its folder."""
    devpki.write_pki(directory, bridge_name=publisher_id)
    return directory


def write_config(
    path: Path,
    *,
    endpoint: str,
    broker: MosquittoBroker,
    signing_dir: Path,
    fields: Sequence[Mapping[str, Any]],
    publisher_id: str = "e2e-bridge",
    opcua: Mapping[str, Any] | None = None,
    write_back: Mapping[str, Any] | None = None,
    mqtt_client: tuple[Path, Path] | None = None,
    status_interval_s: float | None = None,
    writers: Sequence[Mapping[str, Any]] | None = None,
    mqtt: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Path:
    """A bridge configuration with one writer group and one writer holding ``fields``, the
    ``write_back`` section if given, ``mqtt_client`` (certificate, key) as the bridge's
    MQTT client certificate for a broker that requires one, and ``status_interval_s`` as the
    period of its ua-status refresh if given. ``writers`` replaces the one writer (``fields``
    is then ignored); ``mqtt`` and ``defaults`` add to (or override) those sections."""
    tls: dict[str, Any] = {"ca": str(broker.ca_cert)}
    if mqtt_client is not None:
        tls |= {"certificate": str(mqtt_client[0]), "private_key": str(mqtt_client[1])}
    doc: dict[str, Any] = {
        "version": 1,
        "publisher_id": publisher_id,
        "opcua": {
            "endpoint": endpoint,
            "security_policy": "None",
            "security_mode": "None",
            **(opcua or {}),
        },
        "mqtt": {"host": broker.host, "port": broker.port, "tls": tls, **(mqtt or {})},
        "metadata_signing": {
            "private_key": str(signing_dir / "metadata-signer.key"),
            "certificate_chain": str(signing_dir / "metadata-signer.pem"),
        },
        "defaults": {"publishing_interval_ms": 100, "sampling_interval_ms": 50, **(defaults or {})},
        "writer_groups": [
            {
                "name": "G",
                "writers": [dict(w) for w in writers]
                if writers is not None
                else [{"name": "W", "dataset_writer_id": 1001, "fields": list(fields)}],
            }
        ],
    }
    if write_back is not None:
        doc["write_back"] = dict(write_back)
    if status_interval_s is not None:
        doc["status"] = {"interval_s": status_interval_s}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


#: The built-in types of the asyncua test server's simulated variables.
SIMULATED_TYPES = {"Counter": "UInt32", "Sine": "Double", "Toggle": "Boolean"}


def simulated_fields(server: OpcUaTestServer, *names: str) -> list[dict[str, Any]]:
    """Configured fields for the asyncua test server's simulated variables ``names`` (values
    that change all the time), each named as the variable."""
    sim = server.manifest["simulation"]
    return [{"name": n, "node_id": sim[n], "builtin_type": SIMULATED_TYPES[n]} for n in names]


def simulation_config(
    directory: Path, server: OpcUaTestServer, broker: MosquittoBroker, **opcua: Any
) -> Path:
    """``directory``/bridge.yaml: writer W publishes the server's simulated Counter and Sine,
    metadata signed by a PKI made in ``directory``/certs; ``opcua`` adds to its opcua
    section."""
    return write_config(
        directory / "bridge.yaml",
        endpoint=server.endpoint,
        broker=broker,
        signing_dir=make_certs(directory / "certs"),
        fields=simulated_fields(server, "Counter", "Sine"),
        opcua=opcua,
    )


class BridgeProcess(Process):
    """`opcua-mqtt run` started by :meth:`BridgeProcesses.start`, its stdout and stderr in one
    file (see :mod:`opcua_mqtt.processes`: never in a pipe, which once stopped a bridge that
    logged a lot from answering and publishing)."""

    def records(self) -> list[dict[str, Any]]:
        """The complete JSON log lines so far."""
        return json_records(self.text())


def json_records(output: str) -> list[dict[str, Any]]:
    """The JSON log records in a process's output: every complete line that is a JSON object.

    Lines end at "\n" only: ``str.splitlines`` also breaks at U+0085, U+2028 and U+2029, which
    a record quoting a hostile value may hold, and would cut such a record in pieces."""
    *complete, _unfinished = output.split("\n")
    return [json.loads(line) for line in complete if line.startswith("{")]


class BridgeProcesses:
    """Starts `opcua-mqtt run` processes and makes sure none outlives the test."""

    def __init__(self) -> None:
        self.started: list[BridgeProcess] = []
        self._logs = Path(tempfile.mkdtemp(prefix="bridge-logs-"))

    def start(self, config: Path, *options: str, **env: str) -> BridgeProcess:
        """`opcua-mqtt run [OPTIONS] CONFIG` with ``env`` added to the environment."""
        cmd = [EXE, "--log-format", "json", "run", *options, str(config)]
        name = f"bridge-{len(self.started)}"
        started = spawn(cmd, self._logs, name, merge=True, env={**os.environ, **env})
        proc = BridgeProcess(started.proc, started.stdout_path, started.stderr_path)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            proc.kill()
        shutil.rmtree(self._logs, ignore_errors=True)


def bridge_processes() -> Iterator[BridgeProcesses]:
    procs = BridgeProcesses()
    try:
        yield procs
    finally:
        procs.close()

"""Bridge processes for end-to-end tests: a configuration written to disk, `opcua-mqtt run`
started as a user would start it, and stopped (or killed) by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.mosquitto import MosquittoBroker

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))


def make_certs(directory: Path) -> Path:
    """A development PKI made with `opcua-mqtt certs`; returns its folder."""
    subprocess.run(
        [EXE, "certs", "--dir", str(directory)], check=True, capture_output=True, timeout=60
    )
    return directory


def write_config(
    path: Path,
    *,
    endpoint: str,
    broker: MosquittoBroker,
    signing_dir: Path,
    fields: list[Mapping[str, Any]],
    publisher_id: str = "e2e-bridge",
    opcua: Mapping[str, Any] | None = None,
    write_back: Mapping[str, Any] | None = None,
) -> Path:
    """A bridge configuration with one writer group and one writer holding ``fields``, and the
    ``write_back`` section if given."""
    doc: dict[str, Any] = {
        "version": 1,
        "publisher_id": publisher_id,
        "opcua": {
            "endpoint": endpoint,
            "security_policy": "None",
            "security_mode": "None",
            **(opcua or {}),
        },
        "mqtt": {"host": broker.host, "port": broker.port, "tls": {"ca": str(broker.ca_cert)}},
        "metadata_signing": {
            "private_key": str(signing_dir / "metadata-signer.key"),
            "certificate_chain": str(signing_dir / "metadata-signer.pem"),
        },
        "defaults": {"publishing_interval_ms": 100, "sampling_interval_ms": 50},
        "writer_groups": [
            {
                "name": "G",
                "writers": [{"name": "W", "dataset_writer_id": 1001, "fields": list(fields)}],
            }
        ],
    }
    if write_back is not None:
        doc["write_back"] = dict(write_back)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class BridgeProcess(subprocess.Popen[str]):
    """`opcua-mqtt run` with its stdout and stderr in a file, never in a pipe: an unread pipe
    fills after 64 KiB, and the process then blocks in its next write (a bridge that logs a lot
    stopped answering and publishing that way)."""

    def __init__(self, args: list[str], log_path: Path, env: Mapping[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("w") as log:
            super().__init__(args, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)

    def output(self) -> str:
        """Everything the process wrote so far (the last line may be incomplete)."""
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """The complete JSON log lines so far."""
        lines = self.output().splitlines(keepends=True)
        return [json.loads(x) for x in lines if x.startswith("{") and x.endswith("\n")]


class BridgeProcesses:
    """Starts `opcua-mqtt run` processes and makes sure none outlives the test."""

    def __init__(self) -> None:
        self.started: list[BridgeProcess] = []
        self._logs = Path(tempfile.mkdtemp(prefix="bridge-logs-"))

    def start(self, config: Path, *options: str, **env: str) -> BridgeProcess:
        """`opcua-mqtt run [OPTIONS] CONFIG` with ``env`` added to the environment."""
        proc = BridgeProcess(
            [EXE, "--log-format", "json", "run", *options, str(config)],
            self._logs / f"bridge-{len(self.started)}.log",
            {**os.environ, **env},
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        shutil.rmtree(self._logs, ignore_errors=True)


def bridge_processes() -> Iterator[BridgeProcesses]:
    procs = BridgeProcesses()
    try:
        yield procs
    finally:
        procs.close()

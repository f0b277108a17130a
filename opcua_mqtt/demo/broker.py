"""The demo's MQTT broker: Mosquitto when it is installed, else amqtt (pure Python, from PyPI).

Either runs as a child process (started by :mod:`opcua_mqtt.processes`) with a generated
configuration: a TLS listener on 127.0.0.1 only, the demo CA's broker certificate, client
certificates asked for. The child gets its own session, so a Ctrl-C in the terminal reaches the
demo alone, which stops the bridge first (so its Disabled status still reaches the broker) and
then the broker, by PID. On Linux the child is also told to die with the demo, so not even a
killed demo leaves a broker behind.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.processes import LOOPBACK, Process, StartError, free_port, spawn

DEFAULT_PORT = 8883
#: Debian installs mosquitto in /usr/sbin, which is not on an ordinary user's PATH.
_SBIN = "/usr/sbin:/usr/local/sbin:/sbin"


class BrokerKind(enum.StrEnum):
    MOSQUITTO = "mosquitto"
    AMQTT = "amqtt"


class BrokerError(OpcUaMqttError):
    """The broker asked for is not installed, its port is taken, or it failed to start."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, also where Debian puts it; None when not installed."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=_SBIN)


def choose(wanted: str) -> BrokerKind:
    """``auto``: Mosquitto if installed, else amqtt. An explicit choice must be installed."""
    has_amqtt = importlib.util.find_spec("amqtt") is not None
    if wanted in ("auto", BrokerKind.MOSQUITTO) and find_mosquitto():
        return BrokerKind.MOSQUITTO
    if wanted in ("auto", BrokerKind.AMQTT) and has_amqtt:
        return BrokerKind.AMQTT
    hints = {
        "mosquitto": "mosquitto is not installed: apt-get install mosquitto, or --broker amqtt",
        "amqtt": "amqtt is not installed: pip install 'opcua-mqtt[demo]'",
        "auto": "neither mosquitto nor amqtt is installed: apt-get install mosquitto, or "
        "pip install 'opcua-mqtt[demo]'",
    }
    raise BrokerError(hints[wanted])


def loopback_port(wanted: int | None, default: int) -> int:
    """``wanted`` if it is free (error if not), 0 or None: ``default`` if free, else any free."""
    if wanted:
        if not _free(wanted):
            raise BrokerError(f"port {wanted} on {LOOPBACK} is in use; choose another")
        return wanted
    if wanted is None and _free(default):
        return default
    return free_port(LOOPBACK)


def _free(port: int) -> bool:
    """Whether a server could listen there now. With SO_REUSEADDR, as the brokers and asyncua
    bind: connections of a demo that just stopped, in TIME_WAIT, do not make the port busy."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class BrokerCertificates:
    ca: Path
    certificate: Path
    private_key: Path


class Broker:
    """One broker child process; :meth:`start` waits until it accepts connections."""

    def __init__(self, kind: BrokerKind, port: int, certs: BrokerCertificates, workdir: Path):
        self.kind = kind
        self.host = LOOPBACK
        self.port = port
        self.certs = certs
        self.workdir = workdir
        self.log_path = workdir / f"{kind.value}.log"
        self._proc: Process | None = None

    @property
    def protocol(self) -> str:
        """The newest MQTT version it speaks: amqtt knows 3.1.1 only."""
        return "5" if self.kind is BrokerKind.MOSQUITTO else "3.1.1"

    @property
    def requires_client_certificate(self) -> bool:
        """amqtt asks for a client certificate and checks one that is sent, but lets a client
        without one in; Mosquitto refuses it."""
        return self.kind is BrokerKind.MOSQUITTO

    @functools.cached_property
    def version(self) -> str:
        """Name and version, e.g. "Mosquitto 2.0.11", for the demo's description of itself."""
        if self.kind is BrokerKind.AMQTT:
            return f"amqtt {importlib.metadata.version('amqtt')}"
        exe = find_mosquitto()
        assert exe is not None
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False).stdout
        first = out.splitlines()[0] if out else "mosquitto"
        return first.replace("mosquitto version", "Mosquitto").strip()

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the child and wait until its listener accepts TCP connections."""
        if self.kind is BrokerKind.MOSQUITTO:
            exe = find_mosquitto()
            assert exe is not None
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(self._mosquitto_config())
            command = [exe, "-c", str(conf)]
        else:
            conf = self.workdir / "amqtt.yaml"
            conf.write_text(yaml.safe_dump(self._amqtt_config(), sort_keys=False))
            command = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
        # Started here, in the event loop's thread, which lives as long as the demo: the child
        # dies with the thread that started it. Only the wait runs in a worker thread.
        self._proc = spawn(command, self.workdir, self.kind.value, merge=True, die_with_parent=True)
        what = f"{self.kind.value} on {self.host}:{self.port}"
        try:
            await asyncio.to_thread(self._proc.wait_until, self._accepts, timeout_s, what)
        except StartError as e:
            raise BrokerError(f"{str(e).splitlines()[0]}:\n{self.output_tail()}") from None

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    async def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone within ``timeout_s``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(proc.stop, timeout_s)

    def output_tail(self, lines: int = 15) -> str:
        """The end of what the broker wrote, for error messages."""
        text = ""
        for path in (self.log_path, self.workdir / f"{self.kind.value}.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:]) or "(the broker wrote nothing)"

    def _mosquitto_config(self) -> str:
        lines = ["# made by opcua-mqtt demo"]
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to the `mosquitto` user before it reads the keys,
            # which are readable by their owner only; stay root (loopback only).
            lines.append("user root")
        lines += [
            "per_listener_settings false",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
            f"cafile {self.certs.ca}",
            f"certfile {self.certs.certificate}",
            f"keyfile {self.certs.private_key}",
            "require_certificate true",
            "allow_anonymous true",  # the certificate, not a user name, identifies a client
        ]
        return "\n".join(lines) + "\n"

    def _amqtt_config(self) -> dict[str, object]:
        return {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self.port}",
                    "ssl": True,
                    "cafile": str(self.certs.ca),
                    "certfile": str(self.certs.certificate),
                    "keyfile": str(self.certs.private_key),
                }
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

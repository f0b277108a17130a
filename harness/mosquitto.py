"""A real Mosquitto broker on a free loopback port, for integration tests.

The broker is started as a child process from a generated config, waited for (bounded), and
stopped by PID. It can be stopped and started again on the same port, so a test can take the
broker away from a client and bring it back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from harness.pki import Pki
from harness.processes import LOOPBACK, Process, StartError, free_port, spawn

NOT_INSTALLED_MESSAGE = (
    "mosquitto is not installed (not on PATH, nor in /usr/sbin). The integration tests need a real "
    "broker: run `bash scripts/test`, which installs it, or `apt-get install -y mosquitto`."
)


class BrokerError(RuntimeError):
    """The broker did not start or stop as asked; the message carries its log."""


def client_ssl_context(
    cafile: Path, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """Client context: trusts only ``cafile``, checks the host name, may present a cert."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if certfile is not None:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
    return ctx


def run_as_lines() -> list[str]:
    """Config lines that keep a broker started by root under root (none for other users).

    Started as root, Mosquitto drops to the `mosquitto` user BEFORE it opens its log file and
    reads cafile/certfile/keyfile (measured with 2.0.11): it could neither traverse pytest's 0700
    tmp dirs (/tmp/pytest-of-root) nor create its log in a root-owned folder. `user root` keeps
    the broker under the identity of the test process, which can read exactly what the test
    wrote, and does not depend on a `mosquitto` account existing. (Mosquitto warns that it should
    not run as root: fine for a loopback-only test broker.) For any other user there is nothing
    to drop and the option would be ignored. The test PKI's files are 0644 in 0755 folders anyway.
    """
    return ["user root"] if os.geteuid() == 0 else []


def persistence_config(
    directory: Path, *, autosave_interval_s: int = 1, max_queued_messages: int = 100_000
) -> tuple[str, ...]:
    """``extra_config`` lines for a broker that keeps sessions, queued QoS 1/2 messages and
    retained messages in ``directory``/mosquitto.db across a crash, as a production broker does.

    Mosquitto (2.0.11) writes its database only on a clean stop and every ``autosave_interval``
    seconds: a SIGKILL keeps the state of the last save. What it acknowledged to a publisher
    after that save and had not yet handed to a subscriber's connection is lost with it, and
    what a subscriber acknowledged after it is delivered again after the restart (QoS 1
    duplicates). ``autosave_on_changes`` would save after every N changes instead, writing the
    whole database that often; a save every second bounds the window to about a second of
    traffic. The queue is raised from the default 1,000 per client so that an outage of a
    persistent-session subscriber does not overflow it."""
    return (
        "persistence true",
        f"persistence_location {directory.absolute()}/",
        f"autosave_interval {autosave_interval_s}",
        f"max_queued_messages {max_queued_messages}",
    )


class MosquittoBroker:
    """One Mosquitto process with a TLS listener on ``host:port``.

    ``mutual_tls=False``: server-authenticated TLS, anonymous clients allowed.
    ``mutual_tls=True``: clients must present a certificate signed by the test CA; its common name
    becomes the MQTT user name (``use_identity_as_username``) and anonymous clients are refused.
    """

    def __init__(
        self,
        *,
        executable: str,
        pki: Pki,
        workdir: Path,
        mutual_tls: bool,
        host: str = LOOPBACK,
        port: int | None = None,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        self.executable = executable
        self.extra_config = extra_config
        self.pki = pki
        self.workdir = workdir
        self.mutual_tls = mutual_tls
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.output_path = workdir / "mosquitto.out"
        self._proc: Process | None = None
        self._ever_started = False

    # -- what a client needs -------------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        return self.pki.ca_cert

    @property
    def client_cert(self) -> Path:
        return self.pki.client_cert

    @property
    def client_key(self) -> Path:
        return self.pki.client_key

    @property
    def rogue_ca_cert(self) -> Path:
        return self.pki.rogue_ca_cert

    def ssl_context(self, *, client_cert: bool | None = None) -> ssl.SSLContext:
        """A context trusting the test CA; presents the client cert by default on mutual TLS."""
        present = self.mutual_tls if client_cert is None else client_cert
        if present:
            return client_ssl_context(self.ca_cert, self.client_cert, self.client_key)
        return client_ssl_context(self.ca_cert)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def log_text(self) -> str:
        """Everything the broker wrote: its log file, then stdout/stderr (early errors go there)."""
        parts = []
        for path in (self.log_path, self.output_path):
            if path.exists():
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(the broker wrote nothing)"

    async def wait_for_log(self, text: str, timeout: float = 2.0) -> str:
        """Wait until the broker's log contains ``text``; return the log or raise AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the broker log:\n{self.log_text()}")
            await asyncio.sleep(0.01)

    def _config(self) -> str:
        require_cert = "true" if self.mutual_tls else "false"
        lines = ["# generated by harness/mosquitto.py", *run_as_lines()]
        lines += [
            "per_listener_settings false",
            *(
                []
                if any(x.startswith("persistence") for x in self.extra_config)
                else ["persistence false"]
            ),
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
            f"listener {self.port} {self.host}",
            "set_tcp_nodelay true",
            f"cafile {self.pki.ca_cert}",
            f"certfile {self.pki.server_cert}",
            f"keyfile {self.pki.server_key}",
            f"require_certificate {require_cert}",
        ]
        if self.mutual_tls:
            lines += ["use_identity_as_username true", "allow_anonymous false"]
        else:
            lines += ["allow_anonymous true"]
        lines += list(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts TCP connections on ``port``.

        Raises :class:`BrokerError` with the broker's log if it exits or is not ready in time.
        A port picked automatically that turns out to be taken is replaced (first start only);
        on a restart the port never changes.
        """
        if self.running:
            raise BrokerError(f"mosquitto already running (pid {self.pid}) on port {self.port}")
        attempts = 3 if (self._auto_port and not self._ever_started) else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
            except BrokerError as exc:
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    self.port = free_port(self.host)
                    continue
                raise
            self._ever_started = True
            return

    def _start_once(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.conf_path.write_text(self._config())
        # Fresh log per start attempt so that "running" below belongs to this process; the
        # previous one is kept next to it for debugging.
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".log.prev"))
        self._proc = spawn(
            [self.executable, "-c", str(self.conf_path)], self.workdir, "mosquitto", merge=True
        )
        try:
            self._proc.wait_until(
                self._listening, timeout, f"mosquitto on {self.host}:{self.port}"
            )
        except StartError as exc:
            self._proc = None
            raise BrokerError(f"{exc}\n{self.log_text()}") from None

    def _listening(self) -> bool:
        # Mosquitto logs "... running" once every listener is open. Requiring it (and not only a
        # TCP connect) avoids mistaking another process that holds the port for our broker.
        try:
            log = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False
        if " running" not in log:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker by PID (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop(timeout)

    def freeze(self) -> None:
        """SIGSTOP: the broker holds its connections open and answers nothing (a hung broker);
        :meth:`kill` or :meth:`stop` end it."""
        if self._proc is None:
            raise BrokerError("mosquitto is not running")
        self._proc.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """Kill the broker with SIGKILL: no clean shutdown, as in a crash."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()

    @property
    def acl_path(self) -> Path:
        return self.workdir / "acl"

    def set_acl(self, text: str) -> None:
        """Write the broker's ACL file and name it in its configuration (from the next start
        on); a running broker re-reads it on :meth:`reload`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.acl_path.write_text(text)
        self.acl_path.chmod(0o644)
        line = f"acl_file {self.acl_path}"
        if line not in self.extra_config:
            self.extra_config = (*self.extra_config, line)

    async def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: the broker re-reads its ACL and password files; wait until it says so."""
        if self._proc is None:
            raise BrokerError("mosquitto is not running")
        reloads = self.log_text().count("Reloading config")
        self._proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log_text().count("Reloading config") <= reloads:
            if time.monotonic() > deadline:
                raise AssertionError(f"no config reload in the broker log:\n{self.log_text()}")
            await asyncio.sleep(0.02)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start(timeout)

    async def astart(self, timeout: float = 10.0) -> None:
        """:meth:`start` without blocking the event loop (for use inside async tests)."""
        await asyncio.to_thread(self.start, timeout)

    async def astop(self, timeout: float = 5.0) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "mutual-TLS" if self.mutual_tls else "TLS"
        return f"<MosquittoBroker {kind} {self.host}:{self.port} pid={self.pid}>"


def run_broker(
    executable: str, pki: Pki, workdir: Path, *, mutual_tls: bool, extra: tuple[str, ...] = ()
) -> Iterator[MosquittoBroker]:
    """A started broker for the length of a pytest fixture, stopped by PID afterwards."""
    with MosquittoBroker(
        executable=executable, pki=pki, workdir=workdir, mutual_tls=mutual_tls, extra_config=extra
    ) as broker:
        yield broker

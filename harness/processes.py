"""Child processes for tests, benchmarks and the test servers: free loopback ports, where
Mosquitto lives, and one launcher that starts a program with its output in files (never in a
pipe: an unread pipe fills and blocks the child), waits for it (bounded) and stops it by PID."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from opcua_mqtt.demo.broker import find_mosquitto

__all__ = ["LOOPBACK", "REPO_ROOT", "Process", "StartError", "find_mosquitto", "free_port", "spawn"]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]


class StartError(RuntimeError):
    """A child process did not become ready; the message carries its output."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel picks it; it may be taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """A child started by :func:`spawn`: its stdout and stderr files, stopped by PID."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self, limit: int = 20_000) -> str:
        """The last ``limit`` characters of stdout and of stderr (one file when they share it)."""
        parts = []
        for path in dict.fromkeys((self.stdout_path, self.stderr_path)):
            text = path.read_text(errors="replace") if path.exists() else ""
            if len(text) > limit:
                text = "...\n" + text[-limit:]
            parts.append(f"--- {path.name} ---\n{text.strip() or '(empty)'}")
        return "\n".join(parts)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` until it holds; raise :class:`StartError` (with the output) and
        stop the child when it exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise StartError(
                    f"{what} exited with code {code} before it was ready\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise StartError(f"{what} not ready within {timeout:.0f} s\n{self.output()}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._close()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)
        self._close()

    def _close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()


def spawn(
    cmd: list[str], workdir: Path, name: str, cwd: Path = REPO_ROOT, *, merge: bool = False
) -> Process:
    """Start ``cmd`` with stdout in ``workdir``/NAME.out and stderr in NAME.err (``merge``:
    both in NAME.out, appended to, so a restarted child keeps its earlier output)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path = workdir / f"{name}.out"
    stderr_path = stdout_path if merge else workdir / f"{name}.err"
    out = open(stdout_path, "ab" if merge else "wb")  # noqa: SIM115 - closed in stop()
    files: list[IO[bytes]] = [out]
    err: int | IO[bytes] = subprocess.STDOUT
    if not merge:
        err = open(stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        files.append(err)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        # Own session: Ctrl-C in the terminal reaches pytest only, whose teardown stops us.
        start_new_session=True,
    )
    return Process(proc, stdout_path, stderr_path, files)

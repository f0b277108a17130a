"""One launcher for child processes (the demo's broker; the tests' and benchmarks' servers,
brokers and bridges): output in files, never in a pipe (an unread pipe fills after 64 KiB and
the child then blocks in its next write), stdin from /dev/null, its own session (a Ctrl-C in
the terminal reaches the parent only, which stops the child itself), a bounded wait until it
is ready, and a stop by PID: SIGTERM, then SIGKILL after a bound."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opcua_mqtt.core.errors import OpcUaMqttError

__all__ = ["LOOPBACK", "Process", "StartError", "free_port", "spawn"]

LOOPBACK = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
#: Loaded here, not in the child: between fork and exec only async-signal-safe work is safe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class StartError(OpcUaMqttError, RuntimeError):
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

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def poll(self) -> int | None:
        """The exit code, None while it runs."""
        return self.proc.poll()

    def wait(self, timeout: float) -> int:
        """The exit code once it has exited (``subprocess.TimeoutExpired`` after ``timeout``)."""
        return self.proc.wait(timeout)

    def send_signal(self, sig: int) -> None:
        """``sig`` by PID, e.g. SIGINT for a clean stop as from a terminal, or SIGHUP."""
        self.proc.send_signal(sig)

    def text(self) -> str:
        """Everything the child wrote to stdout so far (the last line may be incomplete)."""
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

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
                raise StartError(f"{what} not ready within {timeout:g} s\n{self.output()}")
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

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)


def spawn(
    cmd: list[str],
    workdir: Path,
    name: str,
    cwd: Path | None = None,
    *,
    merge: bool = False,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> Process:
    """Start ``cmd`` with stdout in ``workdir``/NAME.out and stderr in NAME.err (``merge``:
    both in NAME.out, appended to, so a restarted child keeps its earlier output).

    ``die_with_parent`` (Linux): the child gets SIGTERM when the thread that started it dies,
    however it dies, so not even a killed parent leaves it behind. Only for a child started
    from a thread that lives as long as the child should (not from a worker thread)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path = workdir / f"{name}.out"
    stderr_path = stdout_path if merge else workdir / f"{name}.err"
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout_path, "ab" if merge else "wb"))
        err: int | IO[bytes] = subprocess.STDOUT
        if not merge:
            err = files.enter_context(open(stderr_path, "wb"))
        # The child has its own copies of the files: ours are closed once it is started.
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and _LIBC is not None else None,
        )
    return Process(proc, stdout_path, stderr_path)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent's thread that started it dies."""
    assert _LIBC is not None
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

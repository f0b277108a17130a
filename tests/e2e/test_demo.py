"""`opcua-mqtt demo` as a user runs it: a plant, a broker and the bridge, stopped with Ctrl-C.

Each test starts the real demo (Mosquitto or amqtt, the asyncua plant, the bridge), uses the
commands it prints, and checks that Ctrl-C leaves no process and no temporary directory behind.
The terminal test reads what a terminal would show, through a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pexpect
import pytest

from harness.processes import LOOPBACK, free_port

EXE = Path(sys.executable).with_name("opcua-mqtt")
STARTUP_S = 60.0  # generous: the machine is shared; the demo itself starts in a few seconds


class Demo:
    """`opcua-mqtt demo --format json` in its own process group, as a shell runs a job; stdout
    (JSON lines) and stderr (instructions, logs) are collected as they arrive."""

    def __init__(self, *args: str) -> None:
        assert EXE.exists(), "opcua-mqtt is not installed: run scripts/test"
        self.proc = subprocess.Popen(
            [str(EXE), "demo", "--format", "json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True).start()

    def _collect(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, what: str, found: Callable[[], Any], timeout: float = STARTUP_S) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := found()):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"{what}: not seen (exit code {self.proc.poll()})\n{self.log()}")
                self._changed.wait(min(left, 0.5))
            return result

    def datasets(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout) if line.startswith("{")]

    def command(self, name: str) -> list[str]:
        """The `opcua-mqtt NAME ...` command the demo printed, as argv."""
        for line in self.stderr:
            if line.startswith(f"  {EXE} {name} "):
                return shlex.split(line)
        pytest.fail(f"no {name} command printed\n{self.log()}")

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C as a terminal sends it (to the whole foreground process group); return the
        exit code and how long the demo took to exit."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the demo did not stop on SIGINT\n{self.log()}")
        return code, time.monotonic() - started

    def log(self) -> str:
        return "--- stderr ---\n" + "\n".join(self.stderr[-60:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (children of children too), with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it has just exited
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()).decode()
                except OSError:
                    continue
                todo.append(child)
    return {p: cmd.replace("\0", " ").strip() for p, cmd in found.items()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _verified(demo: Demo) -> bool:
    return any(d["metadata"]["state"] == "verified" for d in demo.datasets())


def _setpoint_seen(demo: Demo, writer: str, field: str, value: float) -> bool:
    return any(
        d["dataset_writer_name"] == writer
        and d["fields"].get(field, {}).get("value") == value
        and d["metadata"]["state"] == "verified"
        for d in demo.datasets()
    )


def _write_and_see(demo: Demo) -> list[str]:
    """Run the printed write command; the new value must come back through the bridge."""
    write = demo.command("write")
    target, value = write[3], float(write[4])
    run = subprocess.run(write, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{demo.log()}"
    answer = json.loads(run.stdout)
    assert answer["Result"]["Code"] == 0 and answer["Targets"][0]["Written"]["Value"] == value
    writer, field = target.split("/")
    demo.wait_for(f"{target} = {value}", lambda: _setpoint_seen(demo, writer, field, value))
    return write


def _stop_and_check(demo: Demo, workdir: Path) -> dict[int, str]:
    """Ctrl-C: the demo exits 0 within 5 s, its bridge said Disabled, nothing is left."""
    children = descendants(demo.proc.pid)
    code, took = demo.interrupt()
    assert code == 0, demo.log()
    assert took < 5.0, f"took {took:.1f} s to stop\n{demo.log()}"
    demo.wait_for("the end of stderr", lambda: any("everything stopped" in s for s in demo.stderr))
    assert any("its status on the broker: Disabled" in line for line in demo.stderr), demo.log()
    assert not [cmd for pid, cmd in children.items() if alive(pid)], children
    assert not workdir.exists()
    return children


def _workdir(demo: Demo) -> Path:
    for line in demo.stderr:
        if line.startswith("  certificates "):
            return Path(line.split()[1]).parent
    pytest.fail(f"no certificates line\n{demo.log()}")


def test_demo_with_mosquitto_writes_a_setpoint_and_stops_cleanly(
    mosquitto_executable: str,
) -> None:
    demo = Demo("--broker", "mosquitto", "--port", str(free_port()))
    try:
        demo.wait_for("verified data", lambda: _verified(demo))
        assert any("MQTT 5 over TLS, client certificates required" in s for s in demo.stderr)
        listen = demo.command("listen")
        seen = subprocess.run(
            [*listen, "--format", "json", "--count", "3", "--timeout", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert seen.returncode == 0, seen.stderr
        states = {json.loads(line)["metadata"]["state"] for line in seen.stdout.splitlines()}
        assert states == {"verified"}
        write = _write_and_see(demo)
        assert "--protocol" not in write  # MQTT 5: Response Topic and Correlation Data
        children = _stop_and_check(demo, _workdir(demo))
        assert any(cmd.startswith(mosquitto_executable) for cmd in children.values()), children
    finally:
        demo.kill()


def test_demo_with_amqtt_falls_back_to_mqtt_3_1_1() -> None:
    demo = Demo("--broker", "amqtt", "--port", str(free_port()))
    try:
        demo.wait_for("verified data", lambda: _verified(demo))
        text = "\n".join(demo.stderr)
        assert "MQTT 3.1.1 over TLS" in text
        assert "speaks MQTT 3.1.1 only" in text and "ReplyTo" in text and "Message Expiry" in text
        write = _write_and_see(demo)
        assert write[-2:] == ["--protocol", "3.1.1"]  # the in-payload ReplyTo path
        children = _stop_and_check(demo, _workdir(demo))
        assert any("amqtt" in cmd for cmd in children.values()), children
    finally:
        demo.kill()


def test_demo_with_uns_topics_reads_the_same_and_writes_on_the_standard_command_topic(
    mosquitto_executable: str,
) -> None:
    """`demo --uns` (docs/uns.md): data and metadata on acme/demo-site/<line>/<machine>, the
    DataSets as the standard layout gives them (named writers, verified metadata), found by
    the printed `listen` through the bridge's ua-connection; write-back stays standard."""
    demo = Demo("--broker", "mosquitto", "--port", str(free_port()), "--uns")
    try:
        demo.wait_for("verified data", lambda: _verified(demo))
        assert any("topics: a Unified Namespace (acme/demo-site/" in s for s in demo.stderr)
        for d in demo.datasets():
            assert d["topic"].startswith("acme/demo-site/Line"), d["topic"]
            assert d["topic"].rsplit("/", 1)[1] == d["dataset_writer_name"]
            assert d["publisher_id"] == "demo-bridge" and d["fields"]
        listen = demo.command("listen")
        seen = subprocess.run(
            [*listen, "--format", "json", "--count", "3", "--timeout", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert seen.returncode == 0, seen.stderr
        lines = [json.loads(line) for line in seen.stdout.splitlines()]
        assert {d["metadata"]["state"] for d in lines} == {"verified"}
        assert all(d["topic"].startswith("acme/demo-site/") for d in lines)
        _write_and_see(demo)
        _stop_and_check(demo, _workdir(demo))
    finally:
        demo.kill()


class Screen:
    """Just enough of a terminal to replay the demo's output: text that wraps at ``columns``,
    CR, LF, cursor to previous lines (CSI n F, never above the visible screen), erase below
    (CSI J). ``lines`` keeps everything ever shown, scrolled-off lines included."""

    CONTROL = re.compile(r"\x1b\[(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]")

    def __init__(self, rows: int, columns: int) -> None:
        self.rows, self.columns = rows, columns
        self.lines = [""]
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        for m in self.CONTROL.finditer(text):
            token = m.group(0)
            if token == "\r":
                self.col = 0
            elif token == "\n":
                self._next_line()
            elif m.group(2) == "F":
                top = max(0, len(self.lines) - self.rows)
                self.row, self.col = max(top, self.row - int(m.group(1) or 1)), 0
            elif m.group(2) == "J":
                self.lines[self.row] = self.lines[self.row][: self.col]
                del self.lines[self.row + 1 :]
            elif m.group(2):
                pytest.fail(f"unexpected control sequence {token!r}")
            else:
                if self.col == self.columns:  # auto-wrap
                    self._next_line()
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + token + line[self.col + 1 :]
                self.col += 1

    def _next_line(self) -> None:
        self.row, self.col = self.row + 1, 0
        if self.row == len(self.lines):
            self.lines.append("")


def test_the_table_is_redrawn_in_place_within_100_columns_and_the_screen() -> None:
    rows, columns = 20, 100
    child = pexpect.spawn(
        str(EXE),
        ["demo", "--broker", "mosquitto", "--port", str(free_port())],
        dimensions=(rows, columns),
        # The size comes from the terminal, as for a user; some pytest plugin leaves COLUMNS=80
        # in the C-level environment that a child would otherwise inherit.
        env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        encoding="utf-8",
        timeout=STARTUP_S,
    )
    try:
        child.expect("Ctrl-C here stops everything.")
        banner = child.before + child.after
        table = ""
        deadline = time.monotonic() + STARTUP_S
        while table.count("\x1b[J") < 8 or "verified" not in table:
            assert time.monotonic() < deadline, table[-3000:]
            child.expect(r"\x1b\[J")
            table += child.before + child.after
        started = time.monotonic()
        child.sendintr()  # Ctrl-C typed on the terminal
        child.expect(pexpect.EOF, timeout=30)
        took = time.monotonic() - started
        table += child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, table[-2000:]
    assert took < 5.0

    table = table.split("DataSets received")[0].rsplit("\n", 1)[0]  # up to the last frame
    table = table.replace("^C", "")  # the terminal's echo of Ctrl-C, not the demo's output
    frames = [f for f in re.split(r"\x1b\[\d*F|\x1b\[J", table) if f.strip("\r\n")]
    drawn = [f for f in frames if "WRITER / FIELD" in f]
    assert len(drawn) >= 5
    for frame in drawn:
        lines = frame.replace("\r", "").rstrip("\n").split("\n")
        assert len(lines) <= rows - 1, frame  # leaves the cursor's line: nothing scrolls
        assert max(len(line) for line in lines) <= columns, frame
    assert "more lines: make the terminal taller" in drawn[-1]  # 21 fields do not fit 20 rows

    screen = Screen(rows, columns)
    screen.feed(banner)
    before_table = len(screen.lines)
    screen.feed(table)
    # Many redraws, yet the table only ever took the screen's height below the instructions.
    assert len(screen.lines) <= before_table + rows
    shown = "\n".join(screen.lines[-rows:])
    assert "WRITER / FIELD" in shown and "demo-bridge/" in shown and "verified" in shown


def test_a_taken_port_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [str(EXE), "demo", "--port", str(port), "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 2, run.stderr
    assert f"port {port} on 127.0.0.1 is in use" in run.stderr


def test_version_and_help_answer() -> None:
    version = subprocess.run([str(EXE), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("opcua-mqtt, version ")
    helptext = subprocess.run(
        [str(EXE), "demo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--broker", "--port", "--duration", "--format", "--workdir", "Exit codes"):
        assert option in helptext

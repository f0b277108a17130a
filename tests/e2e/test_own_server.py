"""The README's own-server path, command for command: `certs` writes a PKI and a Mosquitto
configuration, Mosquitto runs that configuration as is (started as root when the tests run as
root, so it drops to its `mosquitto` user), `map` and `run` bring a bridge up, `status` and
`listen` see verified data, a client added with `certs --client` reads, a certificate the ACL
does not name gets nothing, `write` goes through once write-back is allowed, and the README's
Python snippet prints verified values. The commands are parsed from README.md, so they cannot
drift from what this test runs."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.bridge import EXE, BridgeProcesses
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer
from harness.pki import Pki
from harness.processes import LOOPBACK, REPO_ROOT, free_port, spawn
from opcua_mqtt import devpki

README = REPO_ROOT / "README.md"
SECTION = "## Your own server"
#: What the README names that differs here.
README_ENDPOINT, README_PORT, README_TARGET = "opc.tcp://plc:4840", "8883", "Writer/Field"


def _section(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands(block: str, subs: dict[str, str]) -> list[tuple[list[str], bool]]:
    """Each command of a sh block as (argv, in background), ``subs`` applied to each word."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        background = line.endswith("&")
        words = shlex.split(line.rstrip("&"))
        for old, new in subs.items():
            words = [w.replace(old, new) for w in words]
        out.append((words, background))
    return out


class GeneratedBroker(MosquittoBroker):
    """Mosquitto on ``certs/mosquitto.conf`` exactly as `certs` wrote it: the base class
    starts it (``-c`` that file; rewritten unchanged), waits for its " running" line (on its
    stderr, where the configuration logs) and stops it by PID."""

    def __init__(self, executable: str, certs: Path, port: int, rogue: Pki) -> None:
        pki = Pki(
            directory=certs,
            ca_cert=certs / "ca.pem",
            ca_key=certs / "ca.key",
            server_cert=certs / "broker.pem",
            server_key=certs / "broker.key",
            client_cert=certs / "mqtt-client.pem",
            client_key=certs / "mqtt-client.key",
            rogue_ca_cert=rogue.rogue_ca_cert,
            rogue_ca_key=rogue.rogue_ca_key,
            rogue_client_cert=rogue.rogue_client_cert,
            rogue_client_key=rogue.rogue_client_key,
        )
        super().__init__(executable=executable, pki=pki, workdir=certs, mutual_tls=True, port=port)
        self.log_path = self.output_path

    def _config(self) -> str:
        return self.conf_path.read_text()


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's empty folder, as the current directory. Not under pytest's 0700 tmp folder:
    Mosquitto started as root reads its files as the `mosquitto` user, who must reach them."""
    path = Path(tempfile.mkdtemp(prefix="own-server-"))
    path.chmod(0o755)
    monkeypatch.chdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _cli(argv: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "opcua-mqtt", argv
    return subprocess.run(
        [EXE, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False
    )


def _until_ok(argv: list[str], attempts: int = 40) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` until it exits 0 (the bridge needs a moment to come up), bounded."""
    for _ in range(attempts):
        run = _cli(argv)
        if run.returncode == 0:
            return run
        time.sleep(0.25)
    return run


def first_help_example(command: str, subs: dict[str, str]) -> list[str]:
    """The first example of `opcua-mqtt COMMAND --help`, ``subs`` applied."""
    shown = _cli(["opcua-mqtt", command, "--help"])
    examples = shown.stdout.split("Examples:\n", 1)[1].replace("\\\n", " ")
    ((argv, _background),) = readme_commands(examples.splitlines()[0], subs)
    return argv


def _listen_json(argv: list[str], count: int) -> subprocess.CompletedProcess[str]:
    """The README's listen, bounded: JSON lines, ``count`` DataSets or 30 s of silence."""
    return _cli([*argv, "--format", "json", "--count", str(count), "--timeout", "30"])


def _with_identity(argv: list[str], certs: Path, name: str) -> list[str]:
    """``argv`` presenting ``name``.pem/.key instead of the certificate it names."""
    out = list(argv)
    out[out.index("--cert") + 1] = str(certs / f"{name}.pem")
    out[out.index("--key") + 1] = str(certs / f"{name}.key")
    return out


def _allow_writes(config: Path) -> str:
    """The README's prose step: allow the first writable Double that `map` listed under
    write_back.writable_nodes (as Group/Writer/Field); return its Writer/Field target."""
    doc = yaml.safe_load(config.read_text())
    wb = doc["write_back"]
    field = next(n["field"] for n in wb["writable_nodes"] if n["builtin_type"] == "Double")
    doc["write_back"] = {**wb, "enabled": True, "allow": [field]}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return field.split("/", 1)[1]


@pytest.mark.slow
def test_the_readme_own_server_path_runs_as_written(
    workdir: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_executable: str,
    pki: Pki,
    bridges: BridgeProcesses,
) -> None:
    port = str(free_port())
    subs = {README_ENDPOINT: small_opcua_server.endpoint, README_PORT: port}
    setup, write_block = _blocks(_section(SECTION), "sh")
    certs = workdir / "certs"
    broker: GeneratedBroker | None = None
    listen: list[str] = []
    try:
        for argv, background in readme_commands(setup, subs):
            if argv[0] == "mosquitto":
                assert (argv[1:], background) == (["-c", "certs/mosquitto.conf"], True)
                broker = GeneratedBroker(mosquitto_executable, certs, int(port), pki)
                broker.start()
            elif argv[1] == "map":
                mapped = _cli(argv)
                assert mapped.returncode == 0, mapped.stderr
            elif argv[1] == "run":
                assert background
                bridges.start(Path(argv[2]))
            elif argv[1] == "status":
                status = _until_ok([*argv, "--format", "json", "--require-operational"])
                assert status.returncode == 0, status.stdout + status.stderr
                assert [b["publisher_id"] for b in json.loads(status.stdout)["bridges"]] == [
                    "line1"
                ]
            elif argv[1] == "listen":
                listen = argv
                seen = _listen_json(argv, 6)
                assert seen.returncode == 0, seen.stderr
                states = [json.loads(ln)["metadata"]["state"] for ln in seen.stdout.splitlines()]
                # Data may overtake its retained metadata at the very start, never afterwards.
                assert states[-1] == "verified" and set(states) <= {"verified", "missing"}
            else:
                assert argv[1] == "certs" and not background, argv
                made = _cli(argv)
                assert made.returncode == 0, made.stderr
        assert broker is not None and listen
        # The first --help examples of status and listen work against this broker as well.
        help_subs = {"localhost": LOOPBACK, README_PORT: port}
        status = _cli(first_help_example("status", help_subs))
        assert status.returncode == 0 and "line1" in status.stdout, status.stderr
        seen = _listen_json(first_help_example("listen", help_subs), 2)
        assert seen.returncode == 0 and seen.stdout.count("\n") == 2, seen.stderr
        if os.geteuid() == 0:  # started as root, it runs as `mosquitto` and read its key
            uid = Path(f"/proc/{broker.pid}/status").read_text().split("\nUid:")[1].split()[1]
            assert int(uid) == pwd.getpwnam("mosquitto").pw_uid

        # The added client's ACL block applies once Mosquitto restarts (as the README says).
        broker.restart()
        historian = _listen_json(_with_identity(listen, certs, "historian"), 2)
        assert historian.returncode == 0, historian.stderr
        assert historian.stdout.count("\n") == 2

        # A certificate of the same CA that the ACL does not name connects but gets nothing.
        outsider = workdir / "outsider"
        outsider.mkdir()
        devpki.add_client(outsider, devpki.load_ca(certs), "stranger")
        stranger = _with_identity(listen, outsider, "stranger")
        nothing = _cli([*stranger, "--format", "json", "--count", "1", "--timeout", "3"])
        assert (nothing.returncode, nothing.stdout) == (4, ""), nothing.stderr

        # Writing: the README's prose step (allow a target), restart the bridge, then its block.
        config = workdir / "bridge.yaml"
        target = _allow_writes(config)
        for proc in bridges.started:
            proc.stop(30)
        write_cmds = readme_commands(write_block, {**subs, README_TARGET: target})
        for argv, background in write_cmds:
            if argv[1] == "run":
                bridges.start(Path(argv[2]))
            else:
                assert argv[1] == "write" and not background, argv
                written = _until_ok(argv)
                assert written.returncode == 0, written.stdout + written.stderr
                assert json.loads(written.stdout)["Result"]["Code"] == 0
                example = first_help_example("write", {**help_subs, "Filler/Setpoint": target})
                assert _cli(example).returncode == 0
                # The reader may not command: the broker refuses its request (PUBACK 0x87), and
                # `write` says so at once.
                refused = _cli([*_with_identity(argv, certs, "historian"), "--timeout", "3"])
                assert refused.returncode == 3, refused.stdout + refused.stderr
                assert "Not authorized (0x87)" in refused.stderr

        _readme_python_snippet_prints_verified_values(port)
    finally:
        if broker is not None:
            broker.stop()


def _readme_python_snippet_prints_verified_values(port: str) -> None:
    """The README's Python snippet (its port changed), stopped by PID after a few values."""
    (snippet,) = _blocks(README.read_text(), "python")
    script = Path("snippet.py")
    script.write_text(snippet.replace(f"port={README_PORT}", f"port={port}"))
    proc = spawn([sys.executable, "-u", str(script)], Path.cwd(), "snippet", merge=True)
    try:
        value = re.compile(r"^\S+ \S+ \S+ Good \d{4}-", re.M)
        for _ in range(300):
            if len(value.findall(proc.text())) >= 3 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert len(value.findall(proc.text())) >= 3, proc.text()
    finally:
        proc.kill()
    assert LOOPBACK in snippet

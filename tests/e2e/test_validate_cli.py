"""``opcua-mqtt validate`` as a user runs it: a configuration file in, messages and exit codes
out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from harness.bridge import run_cli as run
from harness.processes import REPO_ROOT
from opcua_mqtt.cli import COMMANDS

EXAMPLE = REPO_ROOT / "examples" / "config.example.yaml"


def test_validate_accepts_the_example() -> None:
    result = run("validate", "--strict", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        f"{EXAMPLE}: valid (0 errors, 0 warnings): 2 writer groups, 3 writers, 5 fields\n"
    )


def test_validate_reports_file_line_path_and_expectation(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("security_mode: SignAndEncrypt", "security_mode: SignEncrypt")
    text = text.replace("  publishing_interval_ms: 1000", "  publising_interval_ms: 1000")
    config.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    mode_line = next(i for i, s in enumerate(lines, 1) if "SignEncrypt" in s)
    typo_line = next(i for i, s in enumerate(lines, 1) if "publising" in s)
    result = run("validate", str(config))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{config}:{mode_line}: opcua/security_mode: expected one of None, Sign, SignAndEncrypt, "
        "got 'SignEncrypt' (did you mean 'SignAndEncrypt'?)",
        f"{config}:{typo_line}: defaults/publising_interval_ms: unknown option "
        "'publising_interval_ms' (did you mean 'publishing_interval_ms'?)",
        f"{config}: invalid (2 errors, 0 warnings)",
    ]


def test_validate_json_lines_are_reported_when_known(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["writer_groups"][0]["writers"][1]["dataset_writer_id"] = 40321
    config = tmp_path / "bridge.json"
    text = json.dumps(doc, indent=2)
    config.write_text(text, encoding="utf-8")
    first, second = [
        n for n, line in enumerate(text.splitlines(), 1) if '"dataset_writer_id": 40321' in line
    ]
    result = run("validate", str(config))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{config}:{second}: writer_groups/0/writers/1/dataset_writer_id: dataset_writer_id "
        f"40321 is already used by writer_groups/0/writers/0/dataset_writer_id (line {first})"
    )
    doc["opcua"]["username"] = "\ud83d"  # JSON escapes a lone surrogate; YAML cannot read it
    config.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    result = run("validate", str(config))
    assert result.stdout.splitlines()[0] == (
        f"{config}: writer_groups/0/writers/1/dataset_writer_id: dataset_writer_id 40321 is "
        "already used by writer_groups/0/writers/0/dataset_writer_id"
    )


def test_validate_warnings_pass_unless_strict(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("verify: true", "verify: false"),
        encoding="utf-8",
    )
    result = run("validate", str(config))
    assert result.returncode == 0
    assert ": mqtt/tls/verify: warning: the broker's certificate is not checked" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"{config}: valid (0 errors, 1 warning)")
    strict = run("validate", "--strict", str(config))
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[-1] == f"{config}: invalid (0 errors, 1 warning)"
    quiet = run("validate", "--quiet", str(config))
    assert (quiet.returncode, quiet.stdout) == (0, "")


def test_validate_strict_fails_when_metadata_is_not_signed(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    del doc["metadata_signing"]
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = run("validate", str(config))
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"{config}:1: metadata_signing: warning: metadata is not signed: subscribers cannot tell "
        "it from forged metadata (docs/signing.md; `opcua-mqtt certs` makes a signing key to "
        "try it with)",
        f"{config}: valid (0 errors, 1 warning): 2 writer groups, 3 writers, 5 fields",
    ]
    strict = run("validate", "--strict", str(config))
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[-1] == f"{config}: invalid (0 errors, 1 warning)"


def test_validate_unreadable_files_exit_2(tmp_path: Path) -> None:
    missing = run("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    nope = tmp_path / "nope.yaml"
    assert missing.stderr == f"error: {nope}: cannot read: No such file or directory\n"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert run("validate", str(binary)).returncode == 2
    assert run("validate", str(tmp_path)).returncode == 2


def test_validate_syntax_errors_exit_1_with_the_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("version: 1\nopcua: [1\nmqtt: 2\n", encoding="utf-8")
    result = run("validate", str(config))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{config}:3: (top level): not valid YAML: ")


def _imported_by(*args: str) -> set[str]:
    """The modules loaded by the end of ``opcua-mqtt ARGS`` (its entry point, in a fresh Python)."""
    code = (
        "import sys\nfrom opcua_mqtt.cli import main\n"
        "try:\n    main(sys.argv[1:])\nfinally:\n    print('loaded:', *sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1].split()
    assert last[0] == "loaded:"
    return set(last[1:])


def test_validate_loads_only_its_own_command_and_no_mqtt_client() -> None:
    imported = _imported_by("validate", str(EXAMPLE))
    assert "opcua_mqtt.cli.validate" in imported
    others = {lazy.module for lazy in COMMANDS.values()} - {"opcua_mqtt.cli.validate"}
    # asyncua is still loaded: the configuration rules parse NodeIds with asyncua.ua.
    unwanted = {"gmqtt", "opcua_mqtt.adapters", "opcua_mqtt.bridge", "opcua_mqtt.subscriber"}
    assert not (others | unwanted) & imported


def test_version_loads_no_command_and_no_protocol_library() -> None:
    imported = _imported_by("--version")
    assert "opcua_mqtt.cli.lazy" in imported
    loaded = {m for m in imported if m.startswith("opcua_mqtt.cli.")} - {"opcua_mqtt.cli.lazy"}
    assert loaded == set()
    assert not {"asyncua", "gmqtt"} & imported

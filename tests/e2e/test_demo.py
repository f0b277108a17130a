"""`opcua-mqtt demo` as a user runs it: the wire-format preview that stands in until the bridge."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def _opcua_mqtt() -> list[str]:
    exe = Path(sys.executable).with_name("opcua-mqtt")
    assert exe.exists() or shutil.which("opcua-mqtt"), (
        "opcua-mqtt is not installed: run scripts/test"
    )
    return [str(exe) if exe.exists() else "opcua-mqtt"]


def test_demo_publishes_signed_metadata_and_reads_every_value_back() -> None:
    run = subprocess.run(
        [*_opcua_mqtt(), "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "no MQTT connection is made" in out  # it says honestly what it does not do yet
    assert ": verified" in out
    assert "All values arrived and the metadata signature verified." in out
    # Every message it prints is a JSON document on the line after its topic.
    lines = out.splitlines()
    topics = [i for i, line in enumerate(lines) if line.startswith("--> opcua/json/")]
    assert len(topics) == 3
    kinds = [json.loads(lines[i + 1])["MessageType"] for i in topics]
    assert kinds == ["ua-metadata", "ua-data", "ua-data"]
    # The Int64 beyond a double's integers travels as a string, exactly.
    assert '"Totalizer":{"UaType":8,"Value":"9007199254740993"' in out


def test_version_and_help_answer() -> None:
    version = subprocess.run(
        [*_opcua_mqtt(), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("opcua-mqtt, version ")
    helptext = subprocess.run(
        [*_opcua_mqtt(), "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in helptext.stdout

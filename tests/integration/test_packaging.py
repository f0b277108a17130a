"""The wheel users install carries what the package reads at run time (the JSON Schemas)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_every_schema_as_package_data(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert run.returncode == 0, run.stderr
    (wheel,) = tmp_path.glob("opcua_mqtt-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {Path(n).name: zf.read(n) for n in zf.namelist() if "/schemas/" in n}
    expected = {p.name: p.read_bytes() for p in (REPO_ROOT / "schemas").glob("*.schema.json")}
    assert expected, "no schemas in the source tree"
    assert shipped == expected

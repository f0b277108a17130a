#!/usr/bin/env python3
"""Start-up cost of the ``opcua-mqtt`` command line: wall time, CPU and modules imported.

    python bench/bench_cli_startup.py [--runs 5] [--tree DIR]

Each command runs ``--runs`` times as ``python -c "from opcua_mqtt.cli import main; main()"
ARGS`` (the console script's own code) in a fresh interpreter; the table gives the median wall
time and CPU time (user + system: the figure that survives a busy machine), and, from one more
run under ``-X importtime``, how many modules were imported and whether asyncua and gmqtt were
among them. ``certs`` writes its PKI into a fresh temporary folder each run. ``--tree`` runs
the ``opcua_mqtt`` package of another checkout (e.g. ``git archive <commit> opcua_mqtt schemas |
tar -x -C DIR``) with this interpreter, for a before/after comparison under the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = "from opcua_mqtt.cli import main; main()"
COMMANDS = {
    "validate": ["validate", str(REPO / "examples" / "config.example.yaml")],
    "--version": ["--version"],
    "--help": ["--help"],
    "certs": ["certs", "--dir", "{tmp}"],
}


def _run(args: list[str], tree: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    # The working directory comes first on sys.path, so ``tree``'s opcua_mqtt is the one imported.
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, *flags, "-c", CODE, *(a.format(tmp=tmp) for a in args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=tree, check=True)


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout whose package runs")
    opts = parser.parse_args()
    print("| command | median wall time | median CPU | runs | modules imported | asyncua | gmqtt |")
    print("| --- | ---: | ---: | --- | ---: | --- | --- |")
    for name, args in COMMANDS.items():
        times, cpu = [], []
        for _ in range(opts.runs):
            start, start_cpu = time.perf_counter(), _children_cpu()
            _run(args, opts.tree)
            times.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - start_cpu)
        report = _run(args, opts.tree, "-X", "importtime").stderr.splitlines()
        imported = {s.rsplit("|", 1)[1].strip() for s in report if s.startswith("import time:")}
        runs = " ".join(f"{t:.2f}" for t in times)
        flags = ["yes" if m in imported else "no" for m in ("asyncua", "gmqtt")]
        print(
            f"| `{name}` | {statistics.median(times):.3f} s | {statistics.median(cpu):.3f} s "
            f"| {runs} | {len(imported) - 1} | {flags[0]} | {flags[1]} |"
        )


if __name__ == "__main__":
    main()

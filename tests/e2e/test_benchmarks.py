"""The benchmarks in bench/ run end to end with tiny counts, so that they cannot rot between the
occasions someone measures with them. Their figures are not checked: only that they run, check
what they measure, and print their table."""

from __future__ import annotations

import subprocess
import sys

from harness.processes import REPO_ROOT


def test_write_back_benchmark_answers_every_request_good_and_prints_its_table() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "bench_write_back.py"),
            "--requests",
            "6",
            "--concurrency",
            "1,3",
            "--warmup",
            "2",
            "--opcua-delay-ms",  # through bench/delay_proxy.py
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr  # 1: an answer was not Good
    rows = [line.split("|")[1:3] for line in run.stdout.splitlines() if line.startswith("| ")]
    assert [[cell.strip() for cell in row] for row in rows[2:]] == [["1", "6"], ["3", "6"]]
    assert "0 failed" in run.stdout
    assert "delay proxy" in run.stdout  # its CPU, apart from the other work


def test_write_flood_benchmark_serves_the_other_commander_and_sums_up_the_refusals() -> None:
    """The latency verdict depends on the machine (a timing, not checked here); the rest does
    not: the other commander is answered Good, and the refusals are summed up in one line."""
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "bench_write_flood.py"),
            *("--requests", "300", "--quiet-s", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    failures = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    assert all("data latency" in line for line in failures), run.stdout + run.stderr
    assert run.returncode == (1 if failures else 0), run.stdout + run.stderr
    rows = [line.split("|")[1].strip() for line in run.stdout.splitlines() if line.startswith("| ")]
    assert rows[2:] == ["quiet", "flood", "quiet gap", "flood gap"], run.stdout
    assert "other commander's request during the flood: Good" in run.stdout
    assert "write request(s) refused for rate in the last 10 s" in run.stdout, run.stdout


def test_cli_startup_benchmark_prints_each_command_and_what_it_imported() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_cli_startup.py"), "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in run.stdout.splitlines()
        if line.startswith("| ")
    ]
    assert [row[0] for row in rows[2:]] == ["`validate`", "`--version`", "`--help`", "`certs`"]
    assert [row[6] for row in rows[2:]] == ["no", "no", "no", "no"]  # gmqtt
    assert [row[5] for row in rows[3:]] == ["no", "no", "no"]  # asyncua, but for validate


def test_soak_benchmark_counts_every_message_across_a_broker_crash_and_a_bridge_kill() -> None:
    """A few seconds of the soak: the bridge killed and restarted, then the broker crashed and
    restarted; nothing the subscriber got is missing or out of order (else exit status 1)."""
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "soak.py"),
            *("--duration", "6", "--changes-per-s", "500", "--bridge-kill-at", "2"),
            *("--broker-restart-every", "4", "--broker-outage-s", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = dict(
        [cell.strip() for cell in line.split("|")[1:3]]
        for line in run.stdout.splitlines()
        if line.startswith("| ")
    )
    assert rows["broker crashes (s after first data)"] == "4", run.stdout
    assert rows["bridge SIGKILL (s after first data)"] == "2", run.stdout
    assert rows["subscriber connections"] == "2", run.stdout
    assert rows["lost (SequenceNumber gaps)"] == "0", run.stdout


def test_spool_outage_benchmark_loses_nothing_through_a_short_cut_and_prints_its_table() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "bench_spool_outage.py"),
            *("--outage-s", "2", "--sample-s", "1", "--warm-s", "1", "--items", "50"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr  # 1: a gap without a drop
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| t s | bridge RSS MiB") and len(rows) >= 5, run.stdout
    assert "sequence gaps (lost) 0," in run.stdout, run.stdout


def test_many_sources_benchmark_values_every_field_of_every_server_and_prints_its_table() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "bench_many_sources.py"),
            "--servers",
            "2",
            "--items",
            "400",
            "--interval-ms",
            "1000",
            "--minutes",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr  # 1: a field never had a value
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("|")]
    measures = [row[0].strip() for row in rows[2:]]
    assert measures[:2] == ["start -> first data", "start -> every field valued"]
    assert "(400 of 400)" in rows[3][1]
    assert "400 items over 2 server processes" in run.stdout


def test_bridge_benchmark_counts_two_servers_through_two_shards_and_verifies_the_metadata() -> None:
    """The bridge bench end to end, tiny, in the modes of issue 14's table: two churn server
    processes (one source each, changes queued directly: --churn-direct), the configuration
    split by `opcua-mqtt shard CONFIG 2` into two bridge processes (each the one-bridge path),
    counted by the light subscriber, which verifies every metadata signature. The CPU-limited
    mode (--bridge-cpu) needs root and a cgroup v1 cpu controller and is not run here."""
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "bench_bridge.py"),
            *("--sizes", "200", "--seconds", "2", "--warmup", "1", "--drain-limit", "10"),
            *("--servers", "2", "--shards", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| ")]
    assert [cell.strip() for cell in rows[2][:2]] == ["200", "2"], run.stdout
    assert rows[2][-1].strip() == "0", run.stdout  # sequence gaps
    assert "source asyncua-direct" in run.stdout, run.stdout  # the default load source
    assert "2 server(s): nominal 2,000/s" in run.stdout, run.stdout
    assert "arrival->writer tick p50/p99" in run.stdout, run.stdout
    assert "CPU %: bridge" in run.stdout and " + " in run.stdout, run.stdout  # per process
    assert "subscriber (light)" in run.stdout, run.stdout
    assert "unverified 0." in run.stdout, run.stdout

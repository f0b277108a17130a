"""`opcua-mqtt browse` as a user runs it: a subprocess, its output formats, messages, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.opcua_servers import NodeOpcuaTestServer, OpcUaTestServer
from harness.processes import free_port
from opcua_mqtt.adapters.opcua.certs import load_certificate, thumbprint
from opcua_mqtt.core.address_space import BrowseResult

EXE = str(Path(sys.executable).with_name("opcua-mqtt"))


def browse(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``tmp_path`` (so certs/ defaults land there) without a terminal."""
    full_env = {k: v for k, v in os.environ.items() if k != "OPCUA_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run(
        [EXE, "browse", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=full_env,
    )


def error_lines(run: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The one ``error:`` line and the ``hint:`` line after it; no traceback."""
    lines = run.stderr.splitlines()
    assert "Traceback" not in run.stderr, run.stderr
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    i = errors[0]
    assert i + 1 < len(lines) and lines[i + 1].startswith("hint: "), run.stderr
    return lines[i], lines[i + 1]


def test_json_output_is_the_browse_file_and_reads_back(
    opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    run = browse(tmp_path, opcua_server.endpoint, "--security-policy", "None")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["format"] == "opcua-mqtt-browse/1"
    result = BrowseResult.from_json(doc)
    plant = [
        n
        for n in result.variables()
        if n.node_id.startswith(f"nsu={opcua_server.namespace_uri};")
        and n.browse_path[0] == "Plant"
    ]
    assert len(plant) == len(opcua_server.variables)
    assert result.to_json() == doc
    # Not a terminal: no progress line; the summary is the last line of stderr.
    assert "\r" not in run.stderr and "browsing:" not in run.stderr
    summary = run.stderr.strip().splitlines()[-1]
    assert f"{len(result.nodes):,} nodes" in summary and "0 refused" in summary
    assert " s (" in summary and "Browse" in summary and "Read requests" in summary


@pytest.mark.slow
def test_yaml_csv_and_tree(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    common = (
        opcua_server.endpoint,
        "--security-policy",
        "None",
        "--start",
        opcua_server.nodeid("Plant"),
        "--path",
        "Area1/Line1/Machine1/**",
    )
    as_yaml = browse(tmp_path, *common, "-o", "plant.yaml")
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert as_yaml.stdout == ""
    result = BrowseResult.from_json(yaml.safe_load((tmp_path / "plant.yaml").read_text()))
    manifest = [
        v for v in opcua_server.variables if v["path"].startswith("Plant/Area1/Line1/Machine1/")
    ]
    assert len(result.variables()) == len(manifest)

    as_csv = browse(tmp_path, *common, "--format", "csv", "--values")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == len(manifest)
    double = next(r for r in rows if r["browse_path"] == "Area1/Line1/Machine1/Parameters/Double")
    assert double["data_type_name"] == "Double" and double["builtin_type"] == "Double"
    assert double["writable"] == "true" and double["value_rank"] == "-1"
    assert float(double["value"]) == float(double["value"])  # a number was read

    as_tree = browse(tmp_path, *common, "--format", "tree", "--data-type", "Double")
    assert as_tree.returncode == 0, as_tree.stderr
    lines = as_tree.stdout.splitlines()
    assert lines[0].startswith(opcua_server.endpoint)
    assert "  Area1/" in lines  # ancestors left out by the filter appear as bare names
    assert any(line.strip().startswith("Double  Double  rw") for line in lines)
    assert any(line.strip().startswith("DoubleMatrix  Double[") for line in lines)


def test_secure_browse_with_user_and_trust_on_first_contact(
    opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    args = (
        opcua_server.endpoint,
        "--username",
        opcua_server.username,
        "--start",
        opcua_server.nodeid("Plant"),
        "--depth",
        "1",
    )
    env = {"OPCUA_PASSWORD": opcua_server.password}
    first = browse(tmp_path, *args, "--trust-server-cert", env=env)
    assert first.returncode == 0, first.stderr
    server_print = thumbprint(load_certificate(opcua_server.server_cert_path.read_bytes()))
    assert "TRUSTING SERVER CERTIFICATE" in first.stderr and server_print in first.stderr
    assert opcua_server.password not in first.stderr + first.stdout
    assert (tmp_path / "certs" / "opcua-client.pem").exists()
    assert (tmp_path / "certs" / "opcua-client.key").stat().st_mode & 0o777 == 0o600
    assert any((tmp_path / "certs" / "trusted-servers").iterdir())
    names = {n["browse_name"] for n in json.loads(first.stdout)["nodes"]}
    assert {"Area1", "Utilities"} <= names

    again = browse(tmp_path, *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "TRUSTING" not in again.stderr


def test_wrong_password_exits_3(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    run = browse(
        tmp_path,
        opcua_server.endpoint,
        "--username",
        "operator",
        "--trust-server-cert",
        env={"OPCUA_PASSWORD": "not-the-password"},
    )
    assert run.returncode == 3
    error, hint = error_lines(run)
    assert error.startswith("error: the server refused user 'operator'")
    assert hint == "hint: check the user name and password"
    assert "not-the-password" not in run.stderr


def test_untrusted_server_certificate_exits_3(
    opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    run = browse(tmp_path, opcua_server.endpoint)
    assert run.returncode == 3
    error, hint = error_lines(run)
    server_print = thumbprint(load_certificate(opcua_server.server_cert_path.read_bytes()))
    assert error.startswith(f"error: the server certificate of {opcua_server.endpoint}")
    assert server_print in error and error.endswith("is not trusted")
    assert "--trust-server-cert" in hint and "certs/trusted-servers" in hint


def test_wrong_endpoint_exits_3(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/nothing"
    run = browse(tmp_path, endpoint, "--security-policy", "None")
    assert run.returncode == 3
    error, hint = error_lines(run)
    assert error == f"error: cannot reach {endpoint}: connection refused"
    assert hint == "hint: is the server running and the endpoint right?"


def test_policy_not_offered_lists_what_is(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    run = browse(tmp_path, opcua_server.endpoint, "--security-policy", "Aes128_Sha256_RsaOaep")
    assert run.returncode == 3
    error, _ = error_lines(run)
    assert error.endswith("it offers None, Basic256Sha256/SignAndEncrypt")


@pytest.mark.parametrize("endpoint", ["opc.tcp//127.0.0.1:4840", "opc.tcp:/127.0.0.1:4840"])
def test_a_mistyped_scheme_is_a_usage_error_not_a_host_name(tmp_path: Path, endpoint: str) -> None:
    """Before, opc.tcp//host:4840 became opc.tcp://opc.tcp:4840//host:4840 (host "opc.tcp")."""
    run = browse(tmp_path, endpoint, "--security-policy", "None")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [
        f"Error: {endpoint!r} is not an endpoint URL: expected opc.tcp://host[:port][/path]"
    ]


def test_usage_errors_exit_2(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    unknown_start = browse(
        tmp_path, opcua_server.endpoint, "--security-policy", "None", "--start", "i=999999"
    )
    assert unknown_start.returncode == 2
    error, _ = error_lines(unknown_start)
    assert "i=999999" in error and "not in the server's address space" in error

    no_password = browse(tmp_path, opcua_server.endpoint, "--username", "operator")
    assert no_password.returncode == 2
    assert "OPCUA_PASSWORD" in no_password.stderr and "--password-prompt" in no_password.stderr

    bad_mode = browse(
        tmp_path, opcua_server.endpoint, "--security-policy", "None", "--security-mode", "Sign"
    )
    assert bad_mode.returncode == 2
    bad_glob = browse(
        tmp_path, opcua_server.endpoint, "--security-policy", "None", "--path", "[z-a]"
    )
    assert bad_glob.returncode == 2 and "bad glob" in bad_glob.stderr
    assert browse(tmp_path, "http://example.com").returncode == 2
    assert browse(tmp_path, opcua_server.endpoint, "--no-such-option").returncode == 2


def test_password_prompt_reads_hidden_input(opcua_server: OpcUaTestServer, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            EXE,
            "browse",
            opcua_server.endpoint,
            "--username",
            opcua_server.username,
            "--password-prompt",
            "--trust-server-cert",
            "--depth",
            "1",
        ],
        cwd=tmp_path,
        input=opcua_server.password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert opcua_server.password not in run.stderr + run.stdout


def test_help_shows_examples_and_exit_codes(tmp_path: Path) -> None:
    run = subprocess.run(
        [EXE, "browse", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert "Examples:" in run.stdout and "opcua-mqtt browse opc.tcp://" in run.stdout
    assert "Exit codes: 0 done" in text and "2 usage error" in text
    assert "3 connection, security or authentication failure" in text
    assert "--password " not in run.stdout  # the password is never an option value
    assert "trust on first contact" in text.lower()


def test_browse_node_opcua_from_the_cli(
    node_opcua_server: NodeOpcuaTestServer, tmp_path: Path
) -> None:
    run = browse(
        tmp_path,
        node_opcua_server.endpoint,
        "--username",
        node_opcua_server.username,
        "--trust-server-cert",
        "--start",
        node_opcua_server.nodeid("Plant"),
        "--format",
        "csv",
        env={"OPCUA_PASSWORD": node_opcua_server.password},
    )
    assert run.returncode == 0, run.stderr
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(run.stdout)))
    by_path = {r["browse_path"]: r for r in rows}
    assert len(rows) == 23
    assert by_path["Line1/Filler/Speed"]["data_type_name"] == "Double"
    assert by_path["Line1/Filler/Speed"]["writable"] == "true"
    assert by_path["Utilities/Compressor/Phases"]["value_rank"] == "1"

"""`opcua-mqtt run` never claims health it does not have: a real bridge process, the asyncua
test server process and Mosquitto over TLS. A field whose node does not exist shows in the
start-up line, /readyz, the fields metric, the ua-status and one log line; an empty matrix in
the same subscription spoils none of the other values."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from asyncua import ua

from harness.bridge import BridgeProcesses, make_certs, run_cli, simulated_fields, write_config
from harness.datasets import first_good
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import NodeOpcuaTestServer, OpcUaTestServer
from harness.processes import free_port
from tests.e2e.test_metrics import _readyz, _scrape_until, _value
from tests.e2e.test_run_cli import _status, _subscriber


async def test_a_refused_field_is_counted_named_once_and_keeps_the_bridge_unready(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    odd = shared_small_opcua_server.manifest["oddities"]
    missing = shared_small_opcua_server.nodeid("Plant.Nowhere")
    fields = [
        *simulated_fields(shared_small_opcua_server, "Counter", "Sine"),
        {
            "name": "EmptyMatrix",
            "node_id": odd["EmptyMatrix"],
            "builtin_type": "Byte",
            "value_rank": 2,
            "array_dimensions": [0, 8],
        },
        {"name": "Plain", "node_id": odd["Plain"], "builtin_type": "Double"},
        {"name": "Missing", "node_id": missing, "builtin_type": "Double"},
    ]
    config = write_config(
        tmp_path / "bridge.yaml",
        endpoint=shared_small_opcua_server.endpoint,
        broker=mosquitto_tls,
        signing_dir=make_certs(tmp_path / "certs"),
        fields=fields,
    )
    port = free_port()
    proc = bridges.start(config, "--metrics-port", str(port))

    # Every other value arrives, the empty matrix as an empty array (the refused field is in
    # key frames only: its status never changes).
    async with _subscriber(mosquitto_tls, tmp_path / "certs" / "ca.pem") as sub:
        ds = await first_good(
            sub, "Counter", "Plain", "EmptyMatrix", present=("Missing",), attempts=50, timeout=20
        )
    assert ds.fields["Plain"].value == 7.25 and ds.fields["EmptyMatrix"].value == []
    assert ds.fields["EmptyMatrix"].status.is_good()
    assert ds.fields["Missing"].status.value == ua.StatusCodes.BadNodeIdUnknown

    report = await _readyz(port, 503, 20)
    assert report["down"] == ["fields"]
    name = f"G/W/Missing ({missing})"
    assert report["fields"]["refused"] == 1
    assert report["fields"]["refused_fields"] == [f"{name}: BadNodeIdUnknown"]
    await _scrape_until(
        port,
        lambda s: _value(s, "opcua_mqtt_fields", state="good") == 4,
        20,
        "four good fields",
    )
    samples = await _scrape_until(port, lambda s: True, 5, "a scrape")
    assert _value(samples, "opcua_mqtt_fields", state="refused") == 1
    assert _value(samples, "opcua_mqtt_fields", state="waiting") == 0

    # The retained status never says Operational while a field is refused.
    assert await _status(mosquitto_tls) is ua.PubSubState.Error

    messages = [r["message"] for r in proc.records()]
    assert (
        "bridge running: 1 writer groups, 1 writers, 5 fields (4 monitored, 1 refused by "
        "the server)" in messages
    )
    refusals = [m for m in messages if "refused by the server:" in m]
    assert refusals == [f"field {name} refused by the server: BadNodeIdUnknown"]
    assert not any("(0, 0, " in m for m in messages), messages  # no internal keys
    assert "publisher state Operational" not in messages


def test_browse_values_prints_an_empty_matrix_without_a_traceback(
    shared_small_opcua_server: OpcUaTestServer, tmp_path: Path
) -> None:
    server = shared_small_opcua_server
    run = _browse_values(server.endpoint, server.nodeid("Oddities"), tmp_path)
    values = {n["browse_name"]: n.get("value") for n in json.loads(run.stdout)["nodes"]}
    assert values["EmptyMatrix"] == {"UaType": 3, "Value": []}
    assert values["Plain"] == {"UaType": 11, "Value": 7.25}
    assert values["BadShape"] is None  # BadDecodingError: no value, and nothing else lost
    bad_shape = shared_small_opcua_server.manifest["oddities"]["BadShape"].split(";s=")[1]
    warnings = [line for line in run.stderr.splitlines() if "cannot be decoded" in line]
    assert len(warnings) == 1 and bad_shape in warnings[0] and "BadDecodingError" in warnings[0]


def test_browse_values_of_node_opcuas_types_reads_its_empty_matrix(
    node_opcua_server: NodeOpcuaTestServer, tmp_path: Path
) -> None:
    """The report: `browse --start i=86 --values` died with a 60-line traceback on ns=0;i=24187
    (FailureSystemIdentifier: Byte, ValueRank 2, ArrayDimensions [0, 8], no elements)."""
    run = _browse_values(node_opcua_server.endpoint, "i=86", tmp_path)
    node = next(n for n in json.loads(run.stdout)["nodes"] if n["node_id"] == "i=24187")
    assert node["value_rank"] == 2 and node["array_dimensions"] == [0, 8]
    assert node["value"] == {"UaType": 3, "Value": []}


def _browse_values(endpoint: str, start: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`browse ENDPOINT --start START --values --format json`, insecure; it must succeed and
    print no traceback."""
    args = ("--security-policy", "None", "--start", start, "--values", "--format", "json")
    run = run_cli("browse", endpoint, *args, cwd=cwd)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    return run

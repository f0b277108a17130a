"""One bridge, two OPC UA servers (`sources:`), real processes: `opcua-mqtt run`, two asyncua
test servers, a Subscriber on a real Mosquitto over TLS. One server is stopped: only the
writer group that reads from it turns Bad (BadServerNotConnected), the other group delivers
fresh Good values meanwhile, the ua-status is Error, /readyz, the metric and the one WARNING
name the source that is away; the server comes back and its group delivers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua

from harness.bridge import BridgeProcesses, make_certs, simulated_fields, write_config
from harness.mosquitto import MosquittoBroker
from harness.opcua_servers import OpcUaTestServer, ServerProcess, start_opcua_server
from harness.processes import free_port
from harness.write_back import PUBLISHER, read_variant, serving_requester, writable_scalars
from tests.e2e.test_metrics import _get, _readyz
from tests.e2e.test_opcua_outage import Seen, _watching

LINE1, LINE2 = 1001, 1002  # the DataSetWriterIds of the two sources' writers


@pytest.fixture
def second_server(tmp_path: Path, opcua_server_cert_dir: Path) -> Iterator[list[ServerProcess]]:
    """A second asyncua test server, and whatever restarts it: every one is stopped at the end."""
    servers: list[ServerProcess] = [
        start_opcua_server(
            tmp_path / "line2", variables=200, cert_dir=opcua_server_cert_dir, timeout=30.0
        )
    ]
    yield servers
    for server in servers:
        server.stop()


def _two_sources(
    path: Path,
    one: OpcUaTestServer,
    two: OpcUaTestServer,
    fields: Callable[[OpcUaTestServer], list[dict[str, Any]]] = lambda s: simulated_fields(
        s, "Counter"
    ),
    **kw: Any,
) -> Path:
    """The harness's one-server configuration turned into two sources, one group each (G1, G2
    with writers W1, W2 holding ``fields`` of their server)."""
    write_config(path, endpoint=one.endpoint, fields=[], **kw)
    doc = yaml.safe_load(path.read_text())
    plain = {"security_policy": "None", "security_mode": "None", "reconnect_max_s": 1}
    doc["sources"] = [
        {"name": "line1", "endpoint": one.endpoint, **plain},
        {"name": "line2", "endpoint": two.endpoint, **plain},
    ]
    del doc["opcua"]
    doc["writer_groups"] = [
        {
            "name": f"G{n}",
            "source": f"line{n}",
            "writers": [
                {
                    "name": f"W{n}",
                    "dataset_writer_id": wid,
                    "fields": fields(s),
                }
            ],
        }
        for n, wid, s in ((1, LINE1, one), (2, LINE2, two))
    ]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _first(seen: Seen, writer: int, since: float, good: bool) -> float | None:
    """When ``writer``'s Counter first arrived Good (or Bad) after ``since``."""
    for at, ds in seen.datasets:
        value = ds.fields.get("Counter")
        if at < since or ds.dataset_writer_id != writer or value is None:
            continue
        if value.status.is_good() == good:
            return at
    return None


def _values(seen: Seen, writer: int, since: float, until: float) -> list[Any]:
    """``writer``'s Counter values (Good ones) that arrived between ``since`` and ``until``."""
    return [
        ds.fields["Counter"].value
        for at, ds in seen.datasets
        if since <= at <= until
        and ds.dataset_writer_id == writer
        and "Counter" in ds.fields
        and ds.fields["Counter"].status.is_good()
    ]


async def test_one_of_two_servers_stopped_only_its_group_goes_bad(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    second_server: list[ServerProcess],
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    two = second_server[0]
    assert isinstance(two, OpcUaTestServer)
    config = _two_sources(
        tmp_path / "bridge.yaml",
        shared_small_opcua_server,
        two,
        broker=mosquitto_tls,
        signing_dir=make_certs(tmp_path / "certs"),
        status_interval_s=2,
    )
    port = free_port()
    bridge = bridges.start(config, "--metrics-port", str(port))
    async with _watching(mosquitto_tls, tmp_path / "certs" / "ca.pem") as seen:
        await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational")
        for writer in (LINE1, LINE2):
            await seen.until(lambda w=writer: _first(seen, w, 0, good=True), f"{writer} Good")
        report = await _readyz(port, 200, 30)
        assert report["sources"] == {"line1": "connected", "line2": "connected"}
        logged_before = len(bridge.records())

        stopped = time.monotonic()
        await asyncio.to_thread(two.stop)
        await seen.until(lambda: _first(seen, LINE2, stopped, good=False), "line2 Bad")
        bad = next(
            ds.fields["Counter"]
            for at, ds in seen.datasets
            if at >= stopped and ds.dataset_writer_id == LINE2
            if not ds.fields["Counter"].status.is_good()
        )
        assert bad.status.value == ua.StatusCodes.BadServerNotConnected
        await seen.until(lambda: seen.state() == ua.PubSubState.Error, "ua-status Error")
        report = await _readyz(port, 503, 30)
        assert report["sources"]["line1"] == "connected"
        assert report["sources"]["line2"] != "connected"
        assert report["opcua"].startswith("line2: ")
        _, metrics = await _get(port, "/metrics")
        assert b'opcua_mqtt_source_connected{source="line1"} 1.0' in metrics
        assert b'opcua_mqtt_source_connected{source="line2"} 0.0' in metrics
        # the other server's group publishes on, with fresh Good values, the whole time
        await asyncio.sleep(3)
        during = _values(seen, LINE1, stopped, time.monotonic())
        assert len(set(during)) >= 2, during
        assert not [
            ds
            for at, ds in seen.datasets
            if at >= stopped and ds.dataset_writer_id == LINE1
            if not ds.fields["Counter"].status.is_good()
        ]

        second_server.append(
            start_opcua_server(two.workdir, variables=200, cert_dir=two.cert_dir, port=two.port)
        )
        back = time.monotonic()
        await seen.until(lambda: _first(seen, LINE2, back, good=True), "line2 Good again")
        await seen.until(lambda: seen.state() == ua.PubSubState.Operational, "Operational again")
        assert (await _readyz(port, 200, 30))["sources"]["line2"] == "connected"

    records = bridge.records()[logged_before:]
    loud = [r["message"] for r in records if r["level"] in ("warning", "error")]
    assert len(loud) == 1, loud
    assert loud[0].startswith("OPC UA source 'line2': session on") and "lost (" in loud[0]
    assert not [r for r in records if "exception" in r]


async def test_a_write_goes_to_the_server_of_its_field(
    tmp_path: Path,
    shared_small_opcua_server: OpcUaTestServer,
    second_server: list[ServerProcess],
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> None:
    """Both servers have the same writable Double (the same NodeId): a write by writer and
    field reaches the server of that field's group, and only it; with that server away the
    write is refused BadServerNotConnected while the other server's field is still written."""
    two = second_server[0]
    assert isinstance(two, OpcUaTestServer)
    node = writable_scalars(shared_small_opcua_server)["Double"]["nodeid"]
    assert writable_scalars(two)["Double"]["nodeid"] == node
    config = _two_sources(
        tmp_path / "bridge.yaml",
        shared_small_opcua_server,
        two,
        lambda _s: [{"name": "Double", "node_id": node, "builtin_type": "Double"}],
        broker=mosquitto_tls,
        signing_dir=make_certs(tmp_path / "certs"),
        publisher_id=PUBLISHER,
        write_back={"enabled": True, "allow": ["G1/W1/Double", "G2/W2/Double"]},
    )
    proc = bridges.start(config)

    def write(writer: str, value: float) -> dict[str, Any]:
        return {"Targets": [{"Writer": writer, "Field": "Double", "Value": value}]}

    async with serving_requester(mosquitto_tls, bridge=proc) as requester:
        for _ in range(100):  # until both sessions are up
            answers = [await requester.ask(write(w, 0.5)) for w in ("W1", "W2")]
            if all(a["Result"]["Code"] == 0 for a in answers):
                break
            await asyncio.sleep(0.2)
        assert (await requester.ask(write("W2", 42.5)))["Result"]["Code"] == 0
        assert (await read_variant(two.endpoint, node)).Value == 42.5
        assert (await read_variant(shared_small_opcua_server.endpoint, node)).Value == 0.5
        assert (await requester.ask(write("W1", 17.5)))["Result"]["Code"] == 0
        assert (await read_variant(shared_small_opcua_server.endpoint, node)).Value == 17.5
        assert (await read_variant(two.endpoint, node)).Value == 42.5

        await asyncio.to_thread(two.stop)
        for _ in range(100):  # until the bridge has seen the session go
            refused = await requester.ask(write("W2", 1.5))
            if refused["Targets"][0]["Status"]["Symbol"] == "BadServerNotConnected":
                break
            await asyncio.sleep(0.2)
        assert refused["Targets"][0]["Status"]["Symbol"] == "BadServerNotConnected", refused
        assert (await requester.ask(write("W1", 18.5)))["Result"]["Code"] == 0
        assert (await read_variant(shared_small_opcua_server.endpoint, node)).Value == 18.5

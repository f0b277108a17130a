"""The files in examples/ do what their comments say: the bridge configurations validate, the
Mosquitto configuration and ACL load into a real broker and enforce the documented roles against
a real bridge, examples/subscriber.py prints verified values, the systemd unit verifies."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import shutil
import ssl
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.bridge import (
    EXE,
    BridgeProcesses,
    make_certs,
    run_cli,
    simulated_fields,
    write_config,
)
from harness.mosquitto import MosquittoBroker, client_ssl_context, run_as_lines
from harness.mqtt import MqttProbe
from harness.opcua_servers import OpcUaTestServer
from harness.pki import Pki
from harness.processes import REPO_ROOT
from opcua_mqtt import devpki

EXAMPLES = REPO_ROOT / "examples"
#: The identities of the example ACL: certificate common names, so MQTT user names.
BRIDGE, COMMANDER, SUBSCRIBER = "hall2-filler-plc", "hmi-hall2", "historian"


# -- bridge configurations ----------------------------------------------------------------------


@pytest.mark.parametrize("config", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configuration_is_valid_without_warnings(config: Path) -> None:
    run = subprocess.run(
        [EXE, "validate", "--strict", str(config)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert ": valid (0 errors, 0 warnings)" in run.stdout


def test_the_plant_example_and_the_acl_name_the_same_bridge() -> None:
    config = yaml.safe_load((EXAMPLES / "s7-1500.yaml").read_text())
    acl = (EXAMPLES / "mosquitto" / "mosquitto.acl").read_text()
    assert config["publisher_id"] == BRIDGE
    assert f"\nuser {BRIDGE}\n" in acl
    assert config["opcua"]["security_policy"] == "Basic256Sha256"
    assert config["opcua"]["password_env"] and "password" not in config["opcua"]
    assert config["write_back"]["enabled"] and config["write_back"]["allow"]


# -- systemd unit and container file ------------------------------------------------------------


def _unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as section -> [(key, value)], keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"option before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    text = (EXAMPLES / "opcua-mqtt.service").read_text()
    service = dict(_unit(text)["Service"])
    assert service["User"] == "opcua-mqtt" or service.get("DynamicUser") == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["Restart"] == "on-failure"
    assert service["CapabilityBoundingSet"] == ""
    start = service["ExecStart"].split()
    assert start[1:] == ["--log-format", "json", "run", "/etc/opcua-mqtt/bridge.yaml"]
    assert service["ExecStartPre"].split()[1:3] == ["validate", "--quiet"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        warnings.warn(
            "systemd-analyze not installed: the unit was parsed, not verified", stacklevel=1
        )
        return
    # verify checks that the executables exist: point them at this checkout's.
    unit = tmp_path / "opcua-mqtt.service"
    unit.write_text(text.replace(start[0], EXE))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert unit.name not in run.stderr, run.stderr  # unknown keys are only warned about


def test_containerfile_is_non_root_on_python_311_slim_and_copies_what_exists() -> None:
    """Only read: no container engine runs where the tests run (the file says so)."""
    text = (EXAMPLES / "Containerfile").read_text()
    assert "NOT BUILT BY THE TESTS" in text
    instructions = [ln.split(None, 1) for ln in text.splitlines() if ln and ln[0].isupper()]
    froms = [rest for op, rest in instructions if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for op, rest in instructions:
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            assert all((REPO_ROOT / s).exists() for s in sources), rest


def test_kubernetes_statefulset_runs_one_shard_per_pod_with_its_spool_and_probes() -> None:
    """Parsed, not applied (no cluster where the tests run; the file says so)."""
    text = (EXAMPLES / "kubernetes" / "statefulset.yaml").read_text()
    assert "not applied" in text
    doc = yaml.safe_load(text)
    spec = doc["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    script = container["args"][0]
    shards = re.findall(r"plant-shard\$\{k\}of(\d+)\.yaml", script)
    assert shards == [str(spec["replicas"])], script  # replicas = N of `opcua-mqtt shard`
    assert "${HOSTNAME##*-} + 1" in script  # the pod ordinal picks the shard
    assert "--exit-on-fatal" in script and "--exit-on-fatal" in run_cli("run", "--help").stdout
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == "/var/lib/opcua-mqtt/spool"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one bridge per spool
    assert "mqtt.spool.directory: /var/lib/opcua-mqtt/spool" in text
    container_user = (EXAMPLES / "Containerfile").read_text().split("USER ")[1].split(":")[0]
    assert pod["securityContext"]["runAsUser"] == int(container_user)


def test_compose_file_runs_each_shard_with_its_own_spool_on_an_emqx_cluster() -> None:
    """Parsed, not started (no container engine where the tests run; the file says so)."""
    text = (EXAMPLES / "compose" / "compose.yaml").read_text()
    assert "not started" in text
    services = yaml.safe_load(text)["services"]
    nodes = {n: s for n, s in services.items() if n.startswith("emqx")}
    names = {s["environment"]["EMQX_NODE__NAME"] for s in nodes.values()}
    for s in nodes.values():  # every node seeds the whole cluster
        seeds = s["environment"]["EMQX_CLUSTER__STATIC__SEEDS"]
        assert all(name in seeds for name in names), seeds
    bridges = {n: s for n, s in services.items() if n.startswith("bridge-")}
    files = sorted(s["command"][-1].rsplit("/", 1)[1] for s in bridges.values())
    assert files == ["plant-shard1of2.yaml", "plant-shard2of2.yaml"]
    spools = [
        v
        for s in bridges.values()
        for v in s["volumes"]
        if v.endswith(":/var/lib/opcua-mqtt/spool")
    ]
    assert len(set(spools)) == len(bridges) == 2  # one spool volume per shard


# -- the example broker, its ACL, a real bridge and the example subscriber ----------------------


def example_broker_config(example: str, broker: MosquittoBroker, acl: Path) -> str:
    """examples/mosquitto/mosquitto.conf with only its paths and listener changed (and the
    broker's log sent to the file the test harness watches, at debug level). The example is
    what `opcua-mqtt certs` writes (tests/e2e/test_certs_cli.py keeps them equal)."""
    pki = broker.pki
    changes = {
        "listener": f"{broker.port} {broker.host}",
        "cafile": str(pki.ca_cert),
        "certfile": str(pki.server_cert),
        "keyfile": str(pki.server_key),
        "acl_file": str(acl),
        "log_dest": f"file {broker.log_path}",
    }
    lines, changed = [*run_as_lines()], set()
    for line in example.splitlines():
        key = line.split(" ", 1)[0]
        if key in changes:
            line = f"{key} {changes[key]}"
            changed.add(key)
        lines.append(line)
    assert changed == set(changes), f"the example lacks {set(changes) - changed}"
    return "\n".join([*lines, "log_type all"]) + "\n"


class ExampleBroker(MosquittoBroker):
    """A MosquittoBroker (start, wait, stop by PID) running the example configuration, with
    the example ACL copied unchanged into its workdir."""

    @property
    def acl(self) -> Path:
        return self.workdir / "mosquitto.acl"

    def _config(self) -> str:
        example = (EXAMPLES / "mosquitto" / "mosquitto.conf").read_text()
        return example_broker_config(example, self, self.acl)


@pytest.fixture
def example_broker(mosquitto_executable: str, pki: Pki, tmp_path: Path) -> Iterator[ExampleBroker]:
    workdir = tmp_path / "example-broker"
    broker = ExampleBroker(
        executable=mosquitto_executable, pki=pki, workdir=workdir, mutual_tls=True
    )
    workdir.mkdir()
    shutil.copy(EXAMPLES / "mosquitto" / "mosquitto.acl", broker.acl)
    with broker:
        yield broker


def _client_certs(pki: Pki, directory: Path) -> dict[str, tuple[Path, Path]]:
    """A client certificate per ACL identity, from the CA the broker trusts (cafile)."""
    ca = devpki.Issued(
        serialization.load_pem_private_key(pki.ca_key.read_bytes(), None),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()),
    )
    directory.mkdir()
    out = {}
    for name in (BRIDGE, COMMANDER, SUBSCRIBER):
        issued = devpki.issue(ca, name, dt.datetime.now(dt.UTC), client=True)
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        cert.write_bytes(issued.cert_pem())
        key.write_bytes(issued.key_pem())
        out[name] = (cert, key)
    return out


@dataclass(frozen=True)
class Clients:
    """The example ACL's identities as clients of the example broker: each has a certificate
    from the CA the broker trusts and names itself with it."""

    broker: MosquittoBroker
    ca: Path
    certs: dict[str, tuple[Path, Path]]

    @property
    def address(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def tls_options(self, identity: str) -> list[str]:
        """The command-line options that present ``identity``'s certificate."""
        cert, key = self.certs[identity]
        return ["--ca", str(self.ca), "--cert", str(cert), "--key", str(key)]

    def cli(self, identity: str, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``opcua-mqtt COMMAND BROKER ARGS`` connecting as ``identity``."""
        return _cli(command, self.address, *args, *self.tls_options(identity))

    def status(self, identity: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``opcua-mqtt status`` as JSON, after listening half a second."""
        return self.cli(identity, "status", "--format", "json", "--wait", "0.5", *args)

    def write_setpoint(
        self, identity: str, value: str, *args: str
    ) -> subprocess.CompletedProcess[str]:
        """``opcua-mqtt write`` of the example bridge's W/Setpoint."""
        return self.cli(identity, "write", "W/Setpoint", value, "--publisher", BRIDGE, *args)

    @contextlib.asynccontextmanager
    async def probe(self, identity: str, client_id: str) -> AsyncIterator[MqttProbe]:
        """An MQTT client connected as ``identity``."""
        cert, key = self.certs[identity]
        async with MqttProbe(client_id) as probe:
            await probe.connect(
                self.broker.host, self.broker.port, client_ssl_context(self.ca, cert, key)
            )
            yield probe


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=90, check=False)


async def _denied(broker: MosquittoBroker, client_id: str, topic: str) -> None:
    """Wait (bounded) for the line Mosquitto logs, at debug level, for each publish its ACL
    refuses: ``Denied PUBLISH from <client> (d0, q1, r0, m1, '<topic>', ... (2 bytes))``."""
    pattern = re.compile(
        re.escape(f"Denied PUBLISH from {client_id} (") + r"[^']*'" + re.escape(topic) + "'"
    )
    for _ in range(200):
        if pattern.search(broker.log_path.read_text(errors="replace")):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"no denial of {topic} for {client_id}:\n{broker.log_text()[-3000:]}")


@pytest.mark.slow
async def test_example_broker_enforces_the_example_acl_around_a_real_bridge(
    tmp_path: Path,
    pki: Pki,
    example_broker: ExampleBroker,
    small_opcua_server: OpcUaTestServer,
    bridges: BridgeProcesses,
) -> None:
    certs = _client_certs(pki, tmp_path / "clients")
    signing = make_certs(tmp_path / "signing", BRIDGE)
    setpoint = next(
        v
        for v in small_opcua_server.variables
        if v["writable"] and v["builtin_type"] == "Double" and v["value_rank"] == -1
    )
    config = write_config(
        tmp_path / "bridge.yaml",
        endpoint=small_opcua_server.endpoint,
        broker=example_broker,
        signing_dir=signing,
        publisher_id=BRIDGE,
        fields=[
            *simulated_fields(small_opcua_server, "Counter"),
            {"name": "Setpoint", "node_id": setpoint["nodeid"], "builtin_type": "Double"},
        ],
    )
    doc = yaml.safe_load(config.read_text())
    cert, key = certs[BRIDGE]
    doc["mqtt"]["tls"] |= {"certificate": str(cert), "private_key": str(key)}
    doc["write_back"] = {"enabled": True, "allow": ["G/W/Setpoint"]}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    bridges.start(config)
    clients = Clients(example_broker, pki.ca_cert, certs)

    # A subscriber reads what the bridge publishes: examples/subscriber.py, as a user runs it.
    sub = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "subscriber.py"),
            example_broker.host,
            "--port",
            str(example_broker.port),
            *clients.tls_options(SUBSCRIBER),
            "--trust",
            str(signing / "ca.pem"),
            "--count",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert sub.returncode == 0, sub.stderr
    value = re.compile(rf"^{BRIDGE}/W (Counter|Setpoint) = \S+ Good \d{{4}}-\d\d-\d\dT")
    printed = sub.stdout.splitlines()
    assert any(ln.startswith(f"{BRIDGE}/W Counter = ") for ln in printed), sub.stdout
    # Data that arrives before its retained metadata is skipped as missing, never as untrusted.
    assert all(value.match(ln) or ln.endswith("metadata missing") for ln in printed), sub.stdout
    status = clients.status(SUBSCRIBER, "--require-operational")
    assert status.returncode == 0, status.stderr
    assert [b["publisher_id"] for b in json.loads(status.stdout)["bridges"]] == [BRIDGE]

    # A subscriber may not send commands ...
    denied = clients.write_setpoint(
        SUBSCRIBER, "13", "--client-id", "historian-cmd", "--timeout", "2"
    )
    assert denied.returncode == 3, denied.stdout + denied.stderr  # refused at once (PUBACK 0x87)
    assert "Not authorized (0x87)" in denied.stderr
    await _denied(example_broker, "historian-cmd", f"opcua/json/cmd/{BRIDGE}/write")
    # ... nor publish data or status under the bridge's name.
    async with clients.probe(SUBSCRIBER, "historian-probe") as probe:
        probe.publish(f"opcua/json/data/{BRIDGE}/G", b"{}")
        await _denied(example_broker, "historian-probe", f"opcua/json/data/{BRIDGE}/G")
        probe.publish(f"opcua/json/status/{BRIDGE}", b"{}", retain=True)
        await _denied(example_broker, "historian-probe", f"opcua/json/status/{BRIDGE}")

    # The commander's request reaches the bridge, which answers on the commander's reply topic.
    written = clients.write_setpoint(COMMANDER, "42.5")
    assert written.returncode == 0, written.stdout + written.stderr
    assert json.loads(written.stdout)["Result"]["Code"] == 0

    # The bridge's own identity is bound to its PublisherId: it cannot speak for another bridge.
    async with clients.probe(BRIDGE, "bridge-probe") as probe:
        probe.publish("opcua/json/status/other-bridge", b"{}", retain=True)
        await _denied(example_broker, "bridge-probe", "opcua/json/status/other-bridge")

    # No certificate, no connection.
    async with MqttProbe() as probe:
        with pytest.raises((TimeoutError, ssl.SSLError, ConnectionError)):
            await probe.connect(
                example_broker.host,
                example_broker.port,
                client_ssl_context(pki.ca_cert),
                timeout=3,
            )
        assert not probe.connected.is_set()
    await example_broker.wait_for_log("peer did not return a certificate")

    # None of the refused messages landed: the broker still knows one bridge, Operational.
    status = clients.status(SUBSCRIBER)
    bridges_seen = json.loads(status.stdout)["bridges"]
    assert [(b["publisher_id"], b["state"], b["problems"]) for b in bridges_seen] == [
        (BRIDGE, "Operational", [])
    ]

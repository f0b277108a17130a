"""docs/wire-format.md against a real bridge: `opcua-mqtt run` with the page's configuration, the
asyncua test server and Mosquitto over TLS. Each example block is compared with a message the
bridge really sent (the write request: the page's request, really sent and carried out), and each
topic on the page with the topic really used.

The rule is the one the page states: same member names in the same order, same JSON types, same
array lengths, equal values except for the members it lists as varying (compared by type only);
the example and the real message both validate against the message's schema.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.bridge import BridgeProcess, BridgeProcesses, make_certs
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.opcua_servers import start_opcua_server
from harness.pki import Pki
from harness.processes import StartError
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.signing import TrustStore, verify_message

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"

#: The JSON examples, each with the schema it and its real message must satisfy (None: none).
SCHEMAS: dict[str, str | None] = {
    "ua-data-keyframe": "ua-data",
    "ua-data-deltaframe": "ua-data",
    "ua-data-keepalive": "ua-data",
    "ua-metadata": "ua-metadata",
    "jws-header": None,
    "ua-status": "ua-status",
    "ua-connection": "ua-connection",
    "write-request": "write-request",
    "write-response": "write-response",
}

#: Members whose values change from run to run; the page lists the same names.
VARYING = frozenset(
    {
        "MessageId",
        "Timestamp",
        "NextReportTime",
        "SequenceNumber",
        "MajorVersion",
        "MinorVersion",
        "SourceTimestamp",
        "Url",
        "JwsSignature",
        "iat",
        "kid",
        "x5c",
        "x5t#S256",
        "RequestId",
        "Deadline",
    }
)

#: Bound on each wait for the bridge; a limit against hanging, not a performance assertion.
WAIT_S = 60.0

_BLOCK = re.compile(r"^<!-- example: ([\w-]+) -->\n```\w+\n(.*?)\n```$", re.DOTALL | re.MULTILINE)
_VARYING_LIST = re.compile(r"^<!-- varying-members -->\n(.+)$", re.MULTILINE)


def _blocks() -> dict[str, str]:
    found = _BLOCK.findall(DOC.read_text(encoding="utf-8"))
    blocks = dict(found)
    assert len(blocks) == len(found), "an example name is used twice in docs/wire-format.md"
    return blocks


BLOCKS = _blocks()


def _example(name: str) -> Any:
    return json.loads(BLOCKS[name])


def _doc_topics() -> list[tuple[str, str, bool]]:
    """(topic, kind, retained) for each line of the page's topic list."""
    out = []
    for line in BLOCKS["topics"].splitlines():
        topic, kind, *flags = line.split()
        out.append((topic, kind, flags == ["retained"]))
    return out


def _kind(message: Any) -> str:
    """ua-data, ua-metadata, ... for PubSub messages; write-request or write-response."""
    if "MessageType" in message:
        return str(message["MessageType"])
    return "write-response" if "Result" in message else "write-request"


def _is_real(name: str, example: Any, message: Any) -> bool:
    """Whether ``message`` is the real counterpart of the example ``name``: of the same kind; for
    data, from the same writer, of the same frame type, with the same fields, all Good; for
    metadata (and its signature header), of the same writer; for status, the same state."""
    if name == "jws-header":
        return _is_real("ua-metadata", _example("ua-metadata"), message)
    if _kind(message) != _kind(example):
        return False
    if name.startswith("ua-data-"):
        real, wanted = message["Messages"][0], example["Messages"][0]
        payload = real.get("Payload", {})
        return (
            real["MessageType"] == wanted["MessageType"]
            and real["DataSetWriterName"] == wanted["DataSetWriterName"]
            and list(payload) == list(wanted.get("Payload", {}))
            and not any("Status" in value for value in payload.values())
        )
    if name in ("ua-metadata", "ua-status"):
        member = "DataSetWriterName" if name == "ua-metadata" else "Status"
        return bool(message[member] == example[member])
    return True


def _jws_header(message: Any) -> Any:
    protected = message["JwsSignature"].split("..")[0]
    return json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))


@dataclass
class Run:
    """What one bridge run put on the broker."""

    seen: list[tuple[str, Any]]  # (topic, parsed payload) in arrival order
    retained: set[str]  # topics a subscriber that connected later got retained messages on
    request: dict[str, Any]  # the write request as sent
    ca_pem: bytes  # the CA of the metadata signer

    def find(self, name: str) -> Any:
        """The real message for the example ``name``, or None while it has not arrived."""
        example = _example(name)
        for _topic, message in self.seen:
            if _is_real(name, example, message):
                return _jws_header(message) if name == "jws-header" else message
        return None


def _config(tmp: Path, endpoint: str, broker: MosquittoBroker) -> Path:
    """The page's configuration plus the test run's endpoint (OPC UA security off) and broker."""
    doc = yaml.safe_load(BLOCKS["config"])
    doc["opcua"].update(endpoint=endpoint, security_policy="None", security_mode="None")
    doc["mqtt"] = {"host": broker.host, "port": broker.port, "tls": {"ca": str(broker.ca_cert)}}
    make_certs(tmp / "certs")  # the page's metadata_signing paths are relative to the file
    path = tmp / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _capture(
    broker: MosquittoBroker, start_bridge: Callable[[], BridgeProcess], ca: Path
) -> Run:
    topics = {kind: topic for topic, kind, _ in _doc_topics()}
    run = Run(seen=[], retained=set(), request={}, ca_pem=ca.read_bytes())
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        for topic_filter in ("opcua/json/#", topics["write-response"]):
            await probe.subscribe(topic_filter)
        bridge = start_bridge()

        async def until(names: list[str]) -> None:
            end = asyncio.get_running_loop().time() + WAIT_S
            while missing := [n for n in names if run.find(n) is None]:
                exited = bridge.poll() is not None
                if exited or asyncio.get_running_loop().time() > end:
                    stderr = bridge.text() if exited else ""
                    pytest.fail(
                        f"no real message for {missing}; the bridge sent on "
                        f"{sorted({topic for topic, _ in run.seen})}"
                        + (f"; it exited:\n{stderr}" if exited else ""),
                        pytrace=False,
                    )
                with contextlib.suppress(TimeoutError):
                    message = await probe.next_message(1.0)
                    run.seen.append((message.topic, json.loads(message.payload)))

        await until(["ua-data-keyframe", "ua-data-keepalive", "ua-metadata", "ua-status"])
        await until(["ua-connection"])
        deadline = datetime.now(UTC) + timedelta(seconds=WAIT_S)
        run.request = {
            **_example("write-request"),
            "RequestId": str(uuid.uuid4()),
            "Deadline": deadline.isoformat().replace("+00:00", "Z"),
        }
        probe.publish(
            topics["write-request"],
            json.dumps(run.request).encode(),
            qos=1,
            response_topic=topics["write-response"],
            correlation_data=b"wire-format",
        )
        await until(["write-request", "write-response", "ua-data-deltaframe"])
    async with MqttProbe() as late:
        await late.connect(broker.host, broker.port, broker.ssl_context())
        await late.subscribe("opcua/json/#")
        # The broker sends the retained messages first; the first live one (RETAIN 0) ends them.
        while (message := await late.next_message(WAIT_S)).properties.get("retain"):
            run.retained.add(message.topic)
    return run


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
    mosquitto_executable: str,
    pki: Pki,
    opcua_server_cert_dir: Path,
) -> Iterator[Run]:
    """One bridge run for the whole page (module scope: the run takes several seconds)."""
    tmp = tmp_path_factory.mktemp("wire-format")
    with contextlib.ExitStack() as stack:
        broker = MosquittoBroker(
            executable=mosquitto_executable, pki=pki, workdir=tmp / "mosquitto", mutual_tls=False
        )
        broker.start()
        stack.callback(broker.stop)
        try:
            server = start_opcua_server(
                tmp / "opcua-server", variables=200, cert_dir=opcua_server_cert_dir, timeout=30.0
            )
        except StartError as exc:
            pytest.fail(str(exc), pytrace=False)
        stack.callback(server.stop)
        bridges = BridgeProcesses()
        stack.callback(bridges.close)
        config = _config(tmp, server.endpoint, broker)
        yield asyncio.run(_capture(broker, lambda: bridges.start(config), tmp / "certs" / "ca.pem"))


def _differences(doc: Any, real: Any, path: str = "", member: str = "") -> list[str]:
    """Where the example ``doc`` and the real message differ by the page's rule."""
    where = path or "/"
    if type(doc) is not type(real):
        return [f"{where}: {type(doc).__name__} on the page, {type(real).__name__} on the wire"]
    if isinstance(doc, dict):
        if list(doc) != list(real):
            return [f"{where}: members {list(doc)} on the page, {list(real)} on the wire"]
        return [d for k in doc for d in _differences(doc[k], real[k], f"{path}/{k}", k)]
    if isinstance(doc, list):
        if len(doc) != len(real):
            return [f"{where}: {len(doc)} items on the page, {len(real)} on the wire"]
        pairs = zip(doc, real, strict=True)
        return [
            d for i, (a, b) in enumerate(pairs) for d in _differences(a, b, f"{path}/{i}", member)
        ]
    if member not in VARYING and doc != real:
        return [f"{where}: {doc!r} on the page, {real!r} on the wire"]
    return []


# -- the page on its own -------------------------------------------------------------------------


def test_the_page_has_one_example_of_each_kind() -> None:
    assert set(BLOCKS) == {*SCHEMAS, "config", "topics"}


def test_the_page_lists_the_members_compared_by_type_only() -> None:
    listed = _VARYING_LIST.search(DOC.read_text(encoding="utf-8"))
    assert listed is not None, "the <!-- varying-members --> line is missing"
    assert set(re.findall(r"`([^`]+)`", listed.group(1))) == VARYING


def test_the_examples_agree_with_each_other() -> None:
    """They come from one run: versions, ids, names and values line up across messages."""
    metadata = _example("ua-metadata")
    frames = [_example(n)["Messages"][0] for n in SCHEMAS if n.startswith("ua-data-")]
    for frame in frames:
        assert frame["MetaDataVersion"] == metadata["MetaData"]["ConfigurationVersion"]
    config = yaml.safe_load(BLOCKS["config"])
    writers = {w["name"]: w for g in config["writer_groups"] for w in g["writers"]}
    for frame in [*frames, metadata]:
        assert frame["DataSetWriterId"] == writers[frame["DataSetWriterName"]]["dataset_writer_id"]
    request, response = _example("write-request"), _example("write-response")
    assert response["RequestId"] == request["RequestId"]
    written = request["Targets"][0]
    delta = _example("ua-data-deltaframe")["Messages"][0]
    assert delta["Payload"][written["Field"]]["Value"] == written["Value"]
    header = _example("jws-header")
    assert header["kid"] == header["x5t#S256"]


# -- the page against the real bridge ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_example_matches_the_real_message(name: str, run: Run) -> None:
    example, real = _example(name), run.find(name)
    assert real is not None, f"the bridge sent no message like the {name} example"
    schema = SCHEMAS[name]
    if schema is not None:
        for label, value in (("the example", example), ("the real message", real)):
            errors = [e.message for e in validator(schema).iter_errors(value)]
            assert not errors, f"{label} is not valid against {schema}: {errors}"
    differences = _differences(example, real)
    assert not differences, (
        f"the {name} example on docs/wire-format.md differs from the real message:\n  "
        + "\n  ".join(differences)
        + "\nthe real message:\n"
        + json.dumps(real, indent=2, ensure_ascii=False)
    )


def test_the_topics_on_the_page_are_the_topics_used(run: Run) -> None:
    page = {(topic, kind) for topic, kind, _ in _doc_topics()}
    used = {(topic, _kind(message)) for topic, message in run.seen}
    assert page == used, f"on the page only: {page - used}; used only: {used - page}"
    page_retained = {topic for topic, _, retained in _doc_topics() if retained}
    assert page_retained == run.retained, (
        f"marked retained on the page only: {page_retained - run.retained}; "
        f"retained on the broker only: {run.retained - page_retained}"
    )


def test_the_write_request_was_carried_out_and_answered_to_its_response_topic(run: Run) -> None:
    answer = run.find("write-response")
    assert answer["RequestId"] == run.request["RequestId"]
    assert answer["Result"]["Code"] == 0, answer


def test_the_signed_metadata_verifies_against_the_signers_ca(run: Run) -> None:
    result = verify_message(
        run.find("ua-metadata"), TrustStore.from_pem(run.ca_pem), at=datetime.now(UTC)
    )
    assert result.ok, result

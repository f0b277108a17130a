"""Hostile write-back requests end to end: thousands of malformed, oversized, unauthorised,
out-of-range, stale, duplicated and unanswerable commands, drawn by hypothesis and sent in
batches to a real `opcua-mqtt run` process while it publishes.

What must hold over the whole barrage: every request with a usable reply topic gets exactly one
answer, valid against the response schema, with the refusal its kind calls for; a request whose
reply topic the broker would refuse is refused unanswered (publishing there would get the bridge
disconnected); nothing is written (the server's own Write count stays put); every refusal is
logged once per request or target, with its RequestId and result; a flood past the configured
rate limit is refused before it is parsed: unanswered but for the first refusal of a summary
interval, and logged as one summary line, not per request; and the ua-data stream has no gap in
any DataSetWriter's sequence numbers, keep-alives included.

The rate limiter is configured, not left to chance: a batch never holds more requests than the
token bucket refills between batches, so its answers are exact, and the flood at the end holds
far more than the bucket can pass in the time it takes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Client, ua
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.bridge import BridgeProcesses, json_records, simulated_fields
from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.opcua_servers import OpcUaTestServer
from harness.plant_manifest import parse_nodeid
from harness.write_back import (
    CANDIDATES,
    COMMANDS,
    PUBLISHER,
    WriteBackNodes,
    check_response,
    read_variant,
    server_count,
    serving_requester,
    write_back_config,
)
from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing
from tests.strategies import INT_RANGES

MAX_BYTES = 8192
MAX_TARGETS = 8
RATE_PER_S = 200
BURST = 250
BATCH = 100  # cases per hypothesis example; a twin case sends two requests
BATCHES = 14  # in bursts of at most 2 * BATCH requests, the bucket refilled before each
FLOOD_BATCHES = 10  # sent at once at the end: far beyond BURST + RATE_PER_S * its duration
REPLY_ROOT = f"opcua/json/reply/{PUBLISHER}/hostile"  # below the bridge's reply prefix
V5_REPLIES = f"{REPLY_ROOT}/v5"
V311_REPLIES = f"{REPLY_ROOT}/v311"

DE, TM, OR = "BadDecodingError", "BadTypeMismatch", "BadOutOfRange"
RATE_LIMITED = "BadResourceUnavailable"
REUSED = "BadRequestNotAllowed"  # a RequestId used again for other Targets


# ---------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One hostile request (two for a twin) and what the bridge must make of it.

    ``doc`` is a JSON document that gets a fresh RequestId (``with_id``) and, for the ReplyTo
    modes, its ``ReplyTo``; ``raw`` is sent as it is. ``whole`` is the Result of a request
    refused as a whole, ``targets`` the status of each target otherwise. ``reply``:
    ``v5`` (Response Topic and Correlation Data), ``reply_to`` (the ReplyTo member), ``none``,
    or ``bad_v5`` / ``bad_reply_to`` with ``bad_topic``, a topic the broker refuses to publish
    to. ``pad_to`` pads the payload with JSON whitespace. ``twin`` is sent right after, with the
    same RequestId and other content (see :func:`twin_case`)."""

    kind: str
    doc: Any = None
    raw: bytes | None = None
    with_id: bool = True
    id_survives: bool = True  # the bridge can read the RequestId back for its answer and log
    reply: str = "v5"
    bad_topic: str | None = None
    pad_to: int | None = None
    whole: str | None = None
    targets: tuple[str, ...] = ()
    twin: Case | None = None

    def payload(self, rid: str | None) -> bytes:
        if self.raw is not None:
            return self.raw
        doc = self.doc
        if isinstance(doc, dict):
            doc = dict(doc)
            if rid is not None:
                doc["RequestId"] = rid
            if self.reply in ("reply_to", "bad_reply_to"):
                doc["ReplyTo"] = self.bad_topic or V311_REPLIES
        data = json.dumps(doc, ensure_ascii=False).encode()
        if self.pad_to is not None:
            data += b" " * max(0, self.pad_to - len(data))
        return data

    @property
    def answered(self) -> bool:
        """Whether an answer must come: a usable reply topic the bridge can find."""
        if self.reply == "v5":
            return True
        return self.reply == "reply_to" and self.pad_to is None  # too large: never parsed


@dataclass
class Sent:
    case: Case
    key: str  # how the answer is filed: c:<n> (Correlation Data) or r:<RequestId>
    rid: str | None
    flood: bool
    cached: bool = False  # a twin's second request: the first answer again
    #: Larger than the MQTT 5 Maximum Packet Size the bridge sends in CONNECT
    #: (max_request_bytes + 4096): the broker drops it, it never reaches the bridge.
    dropped: bool = False

    @property
    def answered(self) -> bool:
        return self.case.answered and not self.dropped


def packet_size(payload: bytes, props: dict[str, Any]) -> int:
    """The size of the PUBLISH the broker would send the bridge (QoS 1, MQTT 5)."""

    def varint(n: int) -> int:
        return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4

    properties = sum(3 + len(v if isinstance(v, bytes) else v.encode()) for v in props.values())
    rest = 2 + len(COMMANDS.encode()) + 2 + varint(properties) + properties + len(payload)
    return 1 + varint(rest) + rest


@dataclass(frozen=True)
class Plant:
    """What the strategies need to know about the bridge's configuration."""

    writable: tuple[str, ...]  # writer W's writable fields, each named after its built-in type
    known: frozenset[tuple[str, str]]  # every (Writer, Field) the bridge publishes
    read_only: str  # NodeId (allowed by name, not writable)
    not_allowed: str  # NodeId (writable, published, not allowed)


def valid_target(plant: Plant) -> st.SearchStrategy[dict[str, Any]]:
    """A target the bridge would write: the stale, oversized, too-many and unanswerable kinds
    wrap these, so that only the refusal stands between them and a Write."""
    return st.sampled_from(plant.writable).flatmap(
        lambda name: st.sampled_from(CANDIDATES[name]).map(
            lambda value: {"Writer": "W", "Field": name, "Value": value}
        )
    )


def valid_request(plant: Plant) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(valid_target(plant), min_size=1, max_size=MAX_TARGETS).map(
        lambda targets: {"Targets": targets}
    )


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
    min_size=1,
    max_size=24,
)


def huge_string(low: int = 1000, high: int = MAX_BYTES - 300) -> st.SearchStrategy[str]:
    """One character repeated to ``low``..``high`` UTF-8 bytes: a long string that costs
    hypothesis two choices, and needs no escaping in JSON."""
    return st.builds(
        lambda c, n: c * max(1, n // len(c.encode())),
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\'),
        st.integers(low, high),
    )


INT_RANGES_BY_NAME = {vt.name for vt in INT_RANGES}
#: Objects that the candidates of these types take as they are (and none has a member Txet,
#: Body or Server).
EXACT_OBJECT = {
    "LocalizedText": {"Locale": "en", "Text": "hi"},
    "QualifiedName": {"Name": "Written", "Uri": 0},
    "NodeId": {"IdType": 0, "Id": 2255},
}


def int_out_of_range(type_name: str) -> st.SearchStrategy[Any]:
    low, high = INT_RANGES[ua.VariantType[type_name]]
    values = st.integers(high + 1, high * 2**20 + 1) | st.integers(low * 2**20 - 2**20, low - 1)
    if type_name in ("Int64", "UInt64"):  # also in the Part 6 form: up to 20 decimal digits
        digits = st.integers(high + 1, 10**20 - 1) | st.integers(1 - 10**20, low - 1)
        return values | digits.map(str)
    return values


def fraction(low: int, high: int) -> st.SearchStrategy[float]:
    """A number with a fraction within [low, high]: not an integer, yet not out of range."""
    return st.floats(max(low, -(2**52)), min(high, 2**52)).filter(lambda f: not f.is_integer())


def bad_value(type_name: str) -> st.SearchStrategy[tuple[Any, str]]:
    """A value a node of that built-in type cannot take, with the status that refuses it."""
    wrong_type: list[st.SearchStrategy[Any]] = [
        st.lists(JSON_LEAF, min_size=1, max_size=3),  # an array for a scalar
        st.integers(1, 25)
        .filter(lambda t: t != ua.VariantType[type_name].value)
        .map(lambda t: {"UaType": t, "Value": 1}),  # typed as another type
    ]
    out_of_range: list[st.SearchStrategy[Any]] = []
    # Objects of members no form has; for LocalizedText and QualifiedName, which an object can
    # be, the unknown member is what refuses it ({"Txet": "x"} is no empty LocalizedText).
    wrong_type.append(
        st.dictionaries(st.sampled_from(["x", "Type", "Body", "Txet"]), JSON_LEAF, min_size=1)
    )
    if type_name == "Boolean":
        wrong_type += [st.integers(), st.text(max_size=8), huge_string()]
    elif type_name in INT_RANGES_BY_NAME:
        out_of_range.append(int_out_of_range(type_name))
        wrong_type += [
            fraction(*INT_RANGES[ua.VariantType[type_name]]),
            st.booleans(),
            st.none(),
            st.text(max_size=8).filter(lambda s: not re.fullmatch(r"-?[0-9]+", s)),
            huge_string(),
        ]
    elif type_name == "Float":
        out_of_range += [
            st.floats(3.5e38, 1e308) | st.floats(-1e308, -3.5e38),
            st.integers(2**23, 2**27).map(lambda n: 2 * n + 1),  # odd beyond 2**24: inexact
        ]
        wrong_type += [
            st.text(max_size=8).filter(lambda s: s not in ("NaN", "Infinity", "-Infinity"))
        ]
    elif type_name == "Double":
        out_of_range.append(st.integers(2**52, 2**60).map(lambda n: 2 * n + 1))  # inexact
        wrong_type += [
            st.booleans(),
            st.text(max_size=8).filter(lambda s: s not in ("NaN", "Infinity", "-Infinity")),
            huge_string(),
        ]
    elif type_name == "String":
        wrong_type += [
            st.integers(),
            st.booleans(),
            st.floats(allow_nan=False, allow_infinity=False),
        ]
    elif type_name == "DateTime":
        out_of_range.append(
            st.integers(2, 1600).map(lambda y: f"{y:04d}-06-01T00:00:00Z")  # before 1601
        )
        wrong_type += [st.just("2030-01-01T00:00:00"), st.integers()]  # no time zone
    elif type_name == "Guid":
        wrong_type.append(st.text(max_size=20))  # never 8-4-4-4-12 hex digits
    elif type_name == "ByteString":
        wrong_type.append(st.text(max_size=10).map(lambda s: s + "!"))  # never base64
    elif type_name in ("LocalizedText", "QualifiedName", "NodeId"):
        unknown_ns = st.text(
            st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=8
        )
        typed = {"LocalizedText": 21, "QualifiedName": 20, "NodeId": 17}[type_name]
        wrong_type.append(  # an exact object plus a member it does not have
            st.tuples(st.sampled_from(["Txet", "Body", "Server"]), JSON_LEAF).map(
                lambda m: {"UaType": typed, "Value": {**EXACT_OBJECT[type_name], m[0]: m[1]}}
            )
        )
        if type_name == "LocalizedText":
            wrong_type.append(st.text(max_size=8).map(lambda s: {"UaType": typed, "Value": s}))
        else:
            body = ";s=x" if type_name == "NodeId" else ";X"
            wrong_type.append(
                unknown_ns.map(lambda u: {"UaType": typed, "Value": f"nsu=urn:nope:{u}{body}"})
            )
    cases = [s.map(lambda v: (v, TM)) for s in wrong_type]
    cases += [s.map(lambda v: (v, OR)) for s in out_of_range]
    cases += [
        # malformed typed values: unknown member, UaType out of range or not a number
        st.just(({"UaType": 11, "Value": 1.0, "Valeu": 2}, DE)),
        st.sampled_from([99, -1, True, "11"]).map(lambda t: ({"UaType": t, "Value": 1}, DE)),
        # an array of more than 32 dimensions
        st.integers(33, 300).map(lambda n: (_nested(n), OR)),
    ]
    return st.one_of(cases)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def hostile_target(plant: Plant) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """One target the bridge must refuse, with the status that refuses it."""
    unknown = st.tuples(NAME, NAME).filter(lambda wf: wf not in plant.known)
    node_ids = (
        st.integers(0, 2**32).map(lambda i: f"i={i}")
        | NAME.map(lambda s: f"nsu=urn:elsewhere;s={s.replace(';', '%3B')}")
        | st.uuids().map(lambda u: f"g={u}")
        | huge_string(100, 4000).map(lambda s: f"s={s}")
        | st.just(plant.not_allowed)
    )
    denied = "BadUserAccessDenied"
    bad_values = st.sampled_from(plant.writable).flatmap(
        lambda name: bad_value(name).map(
            lambda v: ({"Writer": "W", "Field": name, "Value": v[0]}, v[1])
        )
    )
    return st.one_of(
        st.tuples(unknown, JSON_VALUE).map(
            lambda t: (
                {"Writer": t[0][0], "Field": t[0][1], "Value": t[1]},
                "BadNodeIdUnknown",
            )
        ),
        st.tuples(node_ids, JSON_VALUE).map(lambda t: ({"NodeId": t[0], "Value": t[1]}, denied)),
        st.tuples(st.sampled_from([("W", "NotAllowed"), ("K", "Static")]), JSON_VALUE).map(
            lambda t: ({"Writer": t[0][0], "Field": t[0][1], "Value": t[1]}, denied)
        ),
        st.tuples(
            st.sampled_from([{"Writer": "W", "Field": "ReadOnly"}, {"NodeId": plant.read_only}]),
            JSON_VALUE,
        ).map(lambda t: ({**t[0], "Value": t[1]}, "BadNotWritable")),
        *[bad_values] * 4,  # the richest kind: drawn more often
        st.tuples(
            st.sampled_from(sorted(set(plant.writable) - {"String", "ByteString"})),  # substrings
            st.sampled_from(["0", "2", "1:3"]),
        ).map(
            lambda t: (
                {"Writer": "W", "Field": t[0], "Value": CANDIDATES[t[0]][0], "IndexRange": t[1]},
                "BadIndexRangeInvalid",  # a scalar has no elements
            )
        ),
    )


def per_target_case(plant: Plant) -> st.SearchStrategy[Case]:
    """A request of hostile targets only, each refused on its own, trimmed to the size limit."""
    return st.tuples(
        st.lists(hostile_target(plant), min_size=1, max_size=MAX_TARGETS),
        st.sampled_from(["v5", "v5", "reply_to", "none"]),
    ).map(lambda t: _fit(t[0], t[1]))


def _fit(targets: list[tuple[dict[str, Any], str]], reply: str) -> Case:
    while True:
        case = Case(
            "per-target",
            doc={"Targets": [target for target, _ in targets]},
            reply=reply,
            targets=tuple(expected for _, expected in targets),
        )
        if len(targets) == 1 or len(case.payload(str(uuid.uuid4()))) <= MAX_BYTES:
            return case
        targets = targets[:-1]


def schema_breaker(plant: Plant) -> st.SearchStrategy[tuple[dict[str, Any], bool]]:
    """A request that breaks the request schema, and whether its RequestId survives (it does
    unless the RequestId itself is what is broken)."""
    good = valid_request(plant)
    target = valid_target(plant)

    def with_targets(targets: Any) -> dict[str, Any]:
        return {"Targets": targets}

    def member(name: str, value: Any) -> st.SearchStrategy[tuple[dict[str, Any], bool]]:
        return good.map(lambda d: ({**d, name: value}, True))

    broken_targets = st.one_of(
        JSON_LEAF.map(with_targets),
        st.dictionaries(st.text(max_size=5), JSON_LEAF, max_size=2).map(with_targets),
        st.just({"Targets": []}),
        st.just({}),
        target.map(lambda t: with_targets([{k: v for k, v in t.items() if k != "Value"}])),
        target.map(lambda t: with_targets([{**t, "NodeId": "i=85"}])),
        target.map(lambda t: with_targets([{"Writer": t["Writer"], "Value": t["Value"]}])),
        st.tuples(target, st.sampled_from(["Valeu", "value", "Index", ""])).map(
            lambda t: with_targets([{**t[0], t[1]: 1}])
        ),
        st.tuples(target, st.sampled_from(["a", "1:", "-1", "", "1-2", "2:1:0"])).map(
            lambda t: with_targets([{**t[0], "IndexRange": t[1]}])
        ),
        st.tuples(target, st.sampled_from(["ns=2;s=x", "x", "nsu=;s=x", "i"])).map(
            lambda t: with_targets([{"NodeId": t[1], "Value": t[0]["Value"]}])
        ),
        st.tuples(target, st.sampled_from(["a/b", "", "x" * 257, "\x07", "\x85"])).map(
            lambda t: with_targets([{**t[0], "Writer": t[1]}])
        ),
    ).map(lambda d: (d, True))
    return st.one_of(
        broken_targets,
        st.tuples(good, st.sampled_from(["Target", "requestId", "Valeu", ""])).map(
            lambda t: ({**t[0], t[1]: 1}, True)
        ),
        good.flatmap(
            lambda d: st.sampled_from([7, "", "x" * 129, "bad\nid", None, ["id"]]).map(
                lambda rid: ({**d, "RequestId": rid}, False)
            )
        ),
        st.sampled_from(
            ["tomorrow", "2030-01-01T00:00:00", "2030-02-30T00:00:00Z", "2030-01-01", 1893456000]
        ).flatmap(lambda deadline: member("Deadline", deadline)),
        # answered on the MQTT 5 Response Topic, which wins over a ReplyTo (see whole_case)
        st.sampled_from(["a/#", "+", "$SYS/x", "", "a/\n", "a/\x85", "a/\ufffe", 5]).flatmap(
            lambda reply: member("ReplyTo", reply)
        ),
    )


def whole_case(plant: Plant) -> st.SearchStrategy[Case]:
    """Requests refused as a whole: not JSON, not UTF-8, nested too deeply, too large, against
    the schema, too many targets, past their deadline."""
    write = valid_request(plant)
    past = st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime.now() - timedelta(hours=1)
    ).map(lambda d: d.isoformat() + "Z")
    not_json = st.sampled_from(
        [b"", b"{", b"}", b"[1,", b"NaN", b'{"Targets": [}', b"\x00", b"null", b"[]", b"123"]
    ) | st.binary(max_size=40).map(lambda b: b"<" + b)
    template = b'{"Targets": [{"Writer": "W", "Field": "Double", "Value": "%s"}]}'
    not_utf8 = st.one_of(
        st.binary(max_size=30).map(lambda b: template % (b"\xff" + b)),
        st.sampled_from([b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]).map(
            lambda b: template % b
        ),
    )
    text_tricks = st.sampled_from(
        [
            b'{"Targets": [{"Writer": "W", "Field": "String", "Value": "\\ud800"}]}',
            b'{"Targets": [{"Writer": "W", "Field": "Double", "Value": NaN}]}',
            b'{"Targets": [{"Writer": "W", "Field": "Double", "Value": 1e999}]}',
            b'{"Targets": [], "Targets": [{"Writer": "W", "Field": "Double", "Value": 1}]}',
            b'{"Targets": [{"Writer": "W", "Field": "Double", "Value": 1, "Value": 2}]}',
        ]
    )
    value = b'{"Targets": [{"Writer": "W", "Field": "Double", "Value": %s}]}'
    deep = st.one_of(  # deeper than the parser goes (about 1,000), within MAX_BYTES
        st.integers(1100, MAX_BYTES).map(lambda n: b"[" * n),
        st.integers(1100, MAX_BYTES // 2).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1100, MAX_BYTES // 5).map(lambda n: b'{"a":' * n),
        st.integers(1100, MAX_BYTES // 2 - 50).map(lambda n: value % (b"[" * n + b"]" * n)),
    )
    return st.one_of(
        not_json.map(lambda raw: Case("not JSON", raw=raw, with_id=False, whole=DE)),
        not_utf8.map(lambda raw: Case("not UTF-8", raw=raw, with_id=False, whole=DE)),
        text_tricks.map(lambda raw: Case("not JSON text", raw=raw, with_id=False, whole=DE)),
        deep.map(lambda raw: Case("nested too deeply", raw=raw, with_id=False, whole=DE)),
        st.tuples(write, st.integers(MAX_BYTES + 1, MAX_BYTES + 2000) | st.just(70_000)).map(
            lambda t: Case(
                "too large", doc=t[0], pad_to=t[1], id_survives=False, whole="BadRequestTooLarge"
            )
        ),
        st.integers(MAX_BYTES + 1, 3 * MAX_BYTES).map(
            lambda n: Case("too large", raw=b"x" * n, with_id=False, whole="BadRequestTooLarge")
        ),
        st.tuples(schema_breaker(plant), st.sampled_from(["v5", "v5", "reply_to", "none"])).map(
            lambda t: Case(
                "against the schema",
                doc=t[0][0],
                with_id=t[0][1],  # else the RequestId it breaks would be replaced
                id_survives=t[0][1],
                # ReplyTo answers are matched by RequestId; a broken ReplyTo is not one to use
                reply="v5" if not t[0][1] or "ReplyTo" in t[0][0] else t[1],
                whole=DE,
            )
        ),
        st.lists(valid_target(plant), min_size=MAX_TARGETS + 1, max_size=MAX_TARGETS + 40).map(
            lambda targets: Case(
                "too many targets", doc={"Targets": targets}, whole="BadTooManyOperations"
            )
        ),
        st.tuples(write, past).map(
            lambda t: Case("past its deadline", doc={**t[0], "Deadline": t[1]}, whole="BadTimeout")
        ),
    )


def unanswerable_case(plant: Plant) -> st.SearchStrategy[Case]:
    """Writes the bridge would carry out, but whose reply topic the broker refuses to publish
    to: Mosquitto passes wildcards on in a Response Topic, and a ReplyTo with control characters
    or noncharacters (which the request schema refuses) leaves no topic to answer on. Refused,
    logged (with the RequestId, read leniently), unanswered."""
    write = valid_request(plant)
    return st.one_of(
        st.tuples(write, st.sampled_from([f"{REPLY_ROOT}/#", f"{REPLY_ROOT}/+/x", "#", "+"])).map(
            lambda t: Case(
                "unusable Response Topic", doc=t[0], reply="bad_v5", bad_topic=t[1], whole=DE
            )
        ),
        st.tuples(
            write,
            st.sampled_from(["\x01", "\x1f", "\x7f", "\x85", "\ufdd0", "\uffff", "\U0001fffe"]),
        ).map(
            lambda t: Case(
                "unusable ReplyTo",
                doc=t[0],
                reply="bad_reply_to",
                bad_topic=f"{V311_REPLIES}/{t[1]}",
                whole=DE,
            )
        ),
    )


def twin_case(plant: Plant) -> st.SearchStrategy[Case]:
    """The same RequestId twice with different content. After a per-target refusal (which is
    remembered) the second copy, a write the bridge would carry out, is refused as a reuse of
    the RequestId and writes nothing; after a refusal as a whole (not remembered) the second
    copy is a request of its own."""
    remembered = st.tuples(per_target_case(plant), valid_request(plant)).map(
        lambda t: replace(
            t[0],
            kind="repeated RequestId",
            reply="v5",
            twin=Case("repeated RequestId", doc=t[1]),
        )
    )
    forgotten = (
        st.tuples(schema_breaker(plant), per_target_case(plant))
        .filter(lambda t: t[0][1])
        .map(
            lambda t: Case(
                "RequestId reused after a refusal",
                doc=t[0][0],
                whole=DE,
                twin=replace(t[1], reply="v5"),
            )
        )
    )
    return remembered | forgotten


def batches(strategy: st.SearchStrategy[Case], count: int) -> list[list[Case]]:
    """``count`` hypothesis examples of :data:`BATCH` cases each (generation only: an example
    is a batch sent to the one bridge of the test, so there is nothing to shrink or replay)."""
    out: list[list[Case]] = []

    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def collect(batch: list[Case]) -> None:
        out.append(batch)

    collect()
    return out


# -------------------------------------------------------------------------------- the plant


@pytest.fixture
def plant(
    tmp_path: Path,
    small_opcua_server: OpcUaTestServer,
    mosquitto_tls: MosquittoBroker,
    bridges: BridgeProcesses,
) -> Iterator[dict[str, Any]]:
    """The bridge under attack: writer W with one writable field per candidate type, a read-only
    and a not-allowed field, and the simulated Counter (delta frames every 100 ms); writer K
    with a field that never changes (keep-alives every 300 ms)."""
    server = small_opcua_server
    nodes = WriteBackNodes.of(server)
    fields = [*nodes.fields(), *simulated_fields(server, "Counter")]
    config = write_back_config(
        tmp_path,
        server.endpoint,
        mosquitto_tls,
        fields,
        WriteBackNodes.ALLOW,
        max_request_bytes=MAX_BYTES,
        max_targets=MAX_TARGETS,
        rate_per_s=RATE_PER_S,
        burst=BURST,
        total_rate_per_s=RATE_PER_S,  # the two reply topics share one bucket's worth
        total_burst=BURST,
    )
    doc = yaml.safe_load(config.read_text())
    doc["writer_groups"][0]["writers"].append(
        {
            "name": "K",
            "dataset_writer_id": 1002,
            "keep_alive_ms": 300,
            "fields": [
                {"name": "Static", "node_id": nodes.not_allowed["nodeid"], "builtin_type": "Double"}
            ],
        }
    )
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = bridges.start(config)
    yield {
        "server": server,
        "broker": mosquitto_tls,
        "proc": proc,
        "plant": Plant(
            writable=tuple(sorted(CANDIDATES)),
            known=frozenset({("W", f["name"]) for f in fields} | {("K", "Static")}),
            read_only=nodes.read_only["nodeid"],
            not_allowed=nodes.not_allowed["nodeid"],
        ),
        "allowed": {t: nodes.writable[t]["nodeid"] for t in CANDIDATES},
    }


# ------------------------------------------------------------------------------ the attacker


class Barrage:
    """One MQTT 5 session that sends cases and files every answer by its Correlation Data or,
    for ReplyTo answers, its RequestId."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.session = MqttSession(adapter_options(broker, f"hostile-{uuid.uuid4().hex[:6]}"))
        self.session.subscribe(f"{REPLY_ROOT}/#", self._on_answer)
        self.answers: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self.sent: list[Sent] = []
        self.arrived = asyncio.Event()

    def _on_answer(self, topic: str, payload: bytes, props: dict[str, Any]) -> None:
        correlation = props.get("correlation_data")
        if isinstance(correlation, list):
            correlation = correlation[0]
        if correlation is not None:
            key = "c:" + correlation.decode()
        else:
            try:
                key = "r:" + str(json.loads(payload).get("RequestId"))
            except (ValueError, AttributeError):
                key = "unreadable"
        self.answers[key].append((topic, payload))
        self.arrived.set()

    def send_all(self, cases: list[Case], *, flood: bool) -> list[Sent]:
        """Publish every case (and twin) without waiting; what was sent, in order."""
        start = len(self.sent)
        for case in cases:
            self.send(case, flood=flood)
        return self.sent[start:]

    def send(
        self, case: Case, *, flood: bool, rid: str | None = None, cached: bool = False
    ) -> None:
        if rid is None and case.with_id and case.raw is None:
            rid = str(uuid.uuid4())
        key = f"c:{len(self.sent)}" if case.reply in ("v5", "bad_v5") else f"r:{rid}"
        props: dict[str, Any] = {}
        if case.reply in ("v5", "bad_v5"):
            topic = case.bad_topic if case.reply == "bad_v5" else V5_REPLIES
            props = {"response_topic": topic, "correlation_data": key[2:].encode()}
        payload = case.payload(rid)
        self.session.publish(Outgoing(COMMANDS, payload, qos=1, properties=props))
        dropped = packet_size(payload, props) > MAX_BYTES + 4096
        self.sent.append(Sent(case, key, rid, flood, cached, dropped))
        if case.twin is not None:
            self.send(case.twin, flood=flood, rid=rid, cached=case.whole is None)

    async def answered(self, sent: list[Sent], timeout: float) -> None:
        """Wait until every request of ``sent`` that must be answered is."""
        waiting = [s.key for s in sent if s.answered]

        async def wait() -> None:
            while any(k not in self.answers for k in waiting):
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            missing = Counter(
                f"{s.case.kind} ({len(s.case.payload(s.rid))} bytes)"
                for s in sent
                if s.answered and s.key not in self.answers
            )
            raise AssertionError(f"unanswered after {timeout:g} s: {dict(missing)}") from None


@pytest.fixture
async def barrage(plant: dict[str, Any]) -> AsyncIterator[Barrage]:
    async with serving_requester(plant["broker"]):  # the bridge answers: it is ready
        pass
    b = Barrage(plant["broker"])
    await b.session.start(wait=True)
    await asyncio.sleep(0.2)  # the SUBACK for the reply topics
    yield b
    await b.session.stop(drain_s=1)


@pytest.fixture
async def data_stream(plant: dict[str, Any]) -> AsyncIterator[MqttProbe]:
    broker = plant["broker"]
    async with MqttProbe() as probe:
        await probe.connect(broker.host, broker.port, broker.ssl_context())
        await probe.subscribe(f"opcua/json/data/{PUBLISHER}/#")
        yield probe


# ------------------------------------------------------------------------------------ checks


async def read_values(server: OpcUaTestServer, node_ids: list[str]) -> list[str]:
    async with Client(server.endpoint, timeout=10) as client:
        ns = await client.get_namespace_array()
        nodes = [client.get_node(parse_nodeid(n, ns)) for n in node_ids]
        return [repr(v) for v in await client.read_values(nodes)]


def dataset_messages(probe: MqttProbe) -> list[tuple[int, int, str]]:
    """(DataSetWriterId, SequenceNumber, MessageType) of every ua-data DataSetMessage so far."""
    out = []
    while not probe.messages.empty():
        message = json.loads(probe.messages.get_nowait().payload)
        for m in message.get("Messages", [message]):
            out.append(
                (m["DataSetWriterId"], m["SequenceNumber"], m.get("MessageType", "ua-keyframe"))
            )
    return out


def sequence_gaps(messages: list[tuple[int, int, str]]) -> list[str]:
    """Part 14: each key or delta frame takes the next number of its writer; a keep-alive
    carries the number the next frame will take, without taking it."""
    expected: dict[int, int] = {}
    gaps = []
    for writer, number, kind in messages:
        if writer in expected and number != expected[writer]:
            gaps.append(f"writer {writer}: {kind} {number}, expected {expected[writer]}")
        expected[writer] = number if kind == "ua-keepalive" else (number + 1) % 2**32
    return gaps


def check_answer(sent: Sent, answer: Any, first: dict[str, Any] | None) -> list[str]:
    """Check an answer against what its case calls for; return the results the bridge must
    have logged for that request."""
    check_response(answer)
    case = sent.case
    symbol = answer["Result"].get("Symbol")
    assert answer["Result"]["Code"] != 0, (case.kind, answer)
    if sent.cached and first is not None and first["Result"].get("Symbol") != RATE_LIMITED:
        # the RequestId again with other Targets: refused, the first answer stays the answer
        assert symbol == REUSED and "Targets" not in answer, (case.kind, answer, first)
        assert answer["RequestId"] == first["RequestId"]
        return [REUSED]
    if symbol == RATE_LIMITED:
        assert sent.flood, f"rate-limited outside the flood: {case.kind}"
        assert "Targets" not in answer
        return []  # refused before parsing: counted in a summary line, not logged alone
    if sent.rid is not None and case.id_survives:
        assert answer.get("RequestId") == sent.rid, (case.kind, answer)
    if case.whole is not None:
        assert symbol == case.whole and "Targets" not in answer, (case.kind, answer)
        return [symbol]
    statuses = [t["Status"].get("Symbol") for t in answer["Targets"]]
    assert len(statuses) == len(case.targets), (case.kind, answer)
    assert statuses == list(case.targets), (case.kind, answer)
    assert symbol == statuses[0], answer
    return statuses


def unanswered_results(sent: Sent) -> list[str]:
    """What the bridge must log for a request it cannot answer (none is in the flood, where
    the rate limiter may refuse first)."""
    case = sent.case
    if sent.dropped:
        return []
    return [case.whole] if case.whole is not None else list(case.targets)


def logged_results(records: list[dict[str, Any]]) -> tuple[dict[str, list[str]], int]:
    """The ``result`` of the bridge's write-back log records by RequestId, and how many records
    have no RequestId."""
    by_id: dict[str, list[str]] = defaultdict(list)
    without_id = 0
    for r in records:
        if r["logger"] != "opcua_mqtt.bridge.write_back" or "result" not in r:
            continue
        if "request_id" in r:
            by_id[r["request_id"]].append(r["result"])
        else:
            without_id += 1
    return by_id, without_id


def log_mismatch(
    rid: str, logged: list[str], want: list[str], barrage: Barrage, output: str
) -> str:
    """What tells a missing or extra log record apart: the requests sent with that RequestId
    (in sending order, with their answers), what was logged and expected, and every line of the
    bridge's output that names the RequestId, whether or not it parsed as a record."""
    lines = [
        f"RequestId {rid}: logged {sorted(Counter(logged).items())}, "
        f"expected {sorted(Counter(want).items())}"
    ]
    for n, s in enumerate(barrage.sent):
        if s.rid == rid:
            answers = [a.decode(errors="replace")[:600] for _, a in barrage.answers.get(s.key, [])]
            lines.append(
                f"sent #{n} {s.case.kind!r} key={s.key} cached={s.cached} reply={s.case.reply} "
                f"whole={s.case.whole} targets={list(s.case.targets)}\n"
                f"  payload {s.case.payload(rid)[:600]!r}\n  answers {answers}"
            )
    for line in output.split("\n"):
        if rid in line:
            lines.append(f"output line {line[:800]!r}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- test


async def test_thousands_of_hostile_requests_are_refused_answered_logged_and_never_stop_publishing(
    plant: dict[str, Any], barrage: Barrage, data_stream: MqttProbe
) -> None:
    server, proc, p = plant["server"], plant["proc"], plant["plant"]
    normal = batches(
        st.one_of(whole_case(p), per_target_case(p), unanswerable_case(p), twin_case(p)),
        BATCHES,
    )
    # The flood: refusals as a whole, every one answerable (so that each tells whether the
    # rate limiter or its own fault refused it).
    flood = [replace(c, reply="v5") for b in batches(whole_case(p), FLOOD_BATCHES) for c in b]
    writes_before = await server_count(server)
    values_before = await read_values(server, list(plant["allowed"].values()))
    stream = dataset_messages(data_stream)
    phases: dict[str, Counter[int]] = {}

    for batch in normal:
        await asyncio.sleep(2 * BATCH / RATE_PER_S + 0.1)  # the bucket holds >= 2 * BATCH again
        await barrage.answered(barrage.send_all(batch, flood=False), timeout=60)
    news = dataset_messages(data_stream)
    phases["batches"] = Counter(w for w, _, _ in news)
    stream += news

    await asyncio.sleep(BURST / RATE_PER_S + 0.1)  # a full bucket
    flood_started = time.monotonic()
    flood_sent = barrage.send_all(flood, flood=True)
    # Rate-limited requests are not answered: a request sent after the flood (once the bucket
    # is full again) is answered after every answer to the flood, which is served in order.
    await asyncio.sleep(BURST / RATE_PER_S + 0.1)
    flood_seconds = time.monotonic() - flood_started
    await barrage.answered(barrage.send_all(flood[:1], flood=False), timeout=60)
    await asyncio.sleep(1)  # room for answers that must not come, and for the last log lines
    news = dataset_messages(data_stream)
    phases["flood"] = Counter(w for w, _, _ in news)
    stream += news

    # Exactly one answer per answerable request, each what its case calls for.
    requests = barrage.sent
    assert len(requests) >= 2000
    expected_keys = {s.key for s in requests if s.answered and not s.flood}
    answered_keys = set(barrage.answers) - {s.key for s in requests if s.flood}
    assert answered_keys == expected_keys, answered_keys ^ expected_keys
    must_log: list[list[str]] = []
    firsts: dict[str, dict[str, Any]] = {}
    for s in requests:
        if s.flood and s.key not in barrage.answers and not s.dropped:
            must_log.append([])  # refused for rate before parsing: in the summary line only
            continue
        if not s.answered:
            must_log.append(unanswered_results(s))
            continue
        [(topic, payload)] = barrage.answers[s.key]
        assert topic == (V5_REPLIES if s.case.reply == "v5" else V311_REPLIES)
        answer = json.loads(payload)
        must_log.append(check_answer(s, answer, firsts.get(s.rid or "")))
        if s.rid is not None and not s.cached:
            firsts[s.rid] = answer

    # The rate limiter let at most BURST + RATE_PER_S * t of the flood through; it answered
    # the first request it refused (of each summary interval) and summed up the others.
    limited = [
        s
        for s, logged in zip(requests, must_log, strict=True)
        if s.flood and not s.dropped and not logged
    ]
    assert limited
    assert len(limited) >= len(flood_sent) - (BURST + RATE_PER_S * flood_seconds), flood_seconds
    rate_answers = [s for s in limited if s.key in barrage.answers]
    assert 1 <= len(rate_answers) <= 1 + flood_seconds / 10, len(rate_answers)

    # Nothing was written: by the server's own count, and by an independent read.
    assert await server_count(server) == writes_before
    assert await read_values(server, list(plant["allowed"].values())) == values_before

    # Every refusal logged once: per request refused as a whole or answered from the cache,
    # per target otherwise; by RequestId where the bridge could read one.
    output = proc.text()
    records = json_records(output)
    assert [r for r in records if r["level"] == "error"] == []
    assert [r for r in records if "connection" in r["message"] and "lost" in r["message"]] == []
    by_id, without_id = logged_results(records)
    want: dict[str, list[str]] = defaultdict(list)
    want_without_id = 0
    for s, logged in zip(requests, must_log, strict=True):
        if s.rid is not None and s.case.id_survives:
            want[s.rid] += logged
        else:
            want_without_id += len(logged)
    for rid, logged in want.items():
        if Counter(by_id[rid]) != Counter(logged):
            raise AssertionError(log_mismatch(rid, by_id[rid], logged, barrage, output))
    assert without_id == want_without_id
    summed = 0
    for _ in range(300):  # a summary comes one interval (10 s) after the first refusal
        summaries = [r for r in json_records(proc.text()) if "refused for rate" in r["message"]]
        summed = sum(int(r["message"].split()[0]) for r in summaries)
        if summed >= len(limited):
            break
        await asyncio.sleep(0.1)
    assert summed == len(limited), summaries

    # The data never stopped, and no DataSetWriter skipped a sequence number (key and delta
    # frames of W, keep-alives of K).
    for phase, counts in phases.items():
        assert counts[1001] > 0 and counts[1002] > 0, (phase, counts)
    assert sequence_gaps(stream) == []
    assert any(kind == "ua-keepalive" for w, _, kind in stream if w == 1002)

    # And the bridge still writes: one valid request after all that, counted once by the server
    # (which shows that its count above could have moved).
    await asyncio.sleep(BURST / RATE_PER_S + 0.1)  # past the rate limit again
    double = plant["allowed"]["Double"]
    value = (await read_variant(server.endpoint, double)).Value + 1.5
    async with serving_requester(plant["broker"]) as requester:
        answer = await requester.ask(
            {"Targets": [{"Writer": "W", "Field": "Double", "Value": value}]}
        )
    assert answer["Result"]["Code"] == 0, answer
    assert (await read_variant(server.endpoint, double)).Value == value
    assert await server_count(server) == writes_before + 1

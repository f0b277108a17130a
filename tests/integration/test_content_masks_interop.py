"""Every supported content-mask layout (issue 15), from a configuration to the wire: the messages
validate against schemas/ua-data.schema.json, node-opcua (interop/decode.mjs) and our Subscriber
read the same values from them, and the open62541 profile's messages hold only what open62541
1.5's JSON decoder accepts.

Layouts: the standard one (no mask keys), ``map --profile open62541``, the three JSON header
layouts of Part 14 1.05 Annex A.3 (A.3.2 minimal, with Variant fields instead of RawData so that
a decoder without the metadata reads them; A.3.3 single DataSetMessage; A.3.4 DataSetMessages),
every member at once, writers bundled and named only by DataSetWriterName, and DataSetMessages
with headers but no NetworkMessage header.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import pytest
from asyncua import ua

from harness.node_opcua_json import decode_with_node_opcua
from opcua_mqtt.adapters.mqtt import MqttOptions
from opcua_mqtt.bridge.from_config import plan_from_config
from opcua_mqtt.bridge.plan import GroupPlan
from opcua_mqtt.core.config.check import check_config_data
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage, encode_network_message
from opcua_mqtt.core.messages.members import dumps, loads
from opcua_mqtt.core.messages.metadata import MetaDataMessage, encode_metadata_message
from opcua_mqtt.core.messages.profiles import OPEN62541
from opcua_mqtt.core.messages.settings import DataSetMessageType
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber, TrustState
from tests.unit.test_config import base

pytestmark = pytest.mark.interop

VT = ua.VariantType
T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
VERSION = ua.ConfigurationVersionDataType(MajorVersion=1714564800, MinorVersion=1714564801)
TOPICS = TopicTree()
#: Values node-opcua 2.186.4 reads as the spec says (interop/FINDINGS.md: no falsy values, Good
#: statuses, no matrices).
FIELDS: Final = {
    "Temperature": ua.Variant(21.5, VT.Double),
    "Count": ua.Variant(2**40 + 1, VT.Int64),
    "Running": ua.Variant(True, VT.Boolean),
    "Name": ua.Variant("pump-1", VT.String),
    "Levels": ua.Variant([1, 2, 3], VT.Int32),
}

#: name -> (defaults added to the configuration, writer group options)
LAYOUTS: Final[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "standard": ({}, {}),
    "open62541": (
        {
            "network_message_content": list(OPEN62541.network_message_content),
            "dataset_message_content": list(OPEN62541.dataset_message_content),
        },
        {},
    ),
    "A.3.2 minimal": (
        {"network_message_content": ["SingleDataSetMessage"], "field_content": []},
        {},
    ),
    "A.3.3 single DataSetMessage": (
        {
            "network_message_content": ["DataSetMessageHeader", "SingleDataSetMessage"],
            "dataset_message_content": [
                "DataSetWriterId",
                "SequenceNumber",
                "Timestamp",
                "Status",
                "MessageType",
                "PublisherId",
                "MinorVersion",
            ],
            "encoding": "verbose",
        },
        {},
    ),
    "A.3.4 DataSetMessages": (
        {
            "network_message_content": [
                "NetworkMessageHeader",
                "DataSetMessageHeader",
                "PublisherId",
            ],
            "dataset_message_content": [
                "DataSetWriterId",
                "SequenceNumber",
                "Timestamp",
                "Status",
                "MessageType",
                "MinorVersion",
            ],
            "encoding": "verbose",
        },
        {"bundle_writers": True},
    ),
    "every member": (
        {
            "dataset_message_content": [
                "DataSetWriterId",
                "MetaDataVersion",
                "SequenceNumber",
                "Timestamp",
                "Status",
                "MessageType",
                "DataSetWriterName",
                "WriterGroupName",
                "MinorVersion",
            ],
        },
        {},
    ),
    "bundled, named only": (
        {
            "dataset_message_content": [
                "DataSetWriterName",
                "MetaDataVersion",
                "SequenceNumber",
                "MessageType",
            ]
        },
        {"bundle_writers": True},
    ),
    "no NetworkMessage header": (
        {
            "network_message_content": ["DataSetMessageHeader"],
            "dataset_message_content": ["DataSetWriterId", "SequenceNumber", "MessageType"],
        },
        {},
    ),
}


def _plan(layout: str) -> Any:
    defaults, group = LAYOUTS[layout]
    doc = base()
    doc["defaults"] = {"key_frame_count": 1, **defaults}
    doc["writer_groups"][0].update(group)
    result = check_config_data(doc, layout)
    assert result.config is not None, [str(i) for i in result.errors]
    return plan_from_config(result.config)


def _messages(plan: Any) -> list[tuple[str, bytes]]:
    """(topic, payload) of one key frame of every writer, as the bridge lays them out."""
    out = []
    for g in plan.groups:
        dsms = [
            DataSetMessage(
                dataset_writer_id=w.dataset_writer_id,
                dataset_writer_name=w.name,
                publisher_id=plan.publisher_id,
                writer_group_name=g.name,
                sequence_number=70_000,  # past UInt16: open62541 reads it as one
                metadata_version=VERSION,
                minor_version=VERSION.MinorVersion,
                timestamp=T0,
                message_type=DataSetMessageType.KEY_FRAME,
                payload={n: ua.DataValue(v, SourceTimestamp=T0) for n, v in FIELDS.items()},
            )
            for w in g.writers
        ]
        if g.bundle_writers:
            out.append(_encode(plan, g, dsms, TOPICS.data(plan.publisher_id, g.name)))
        else:
            for w, m in zip(g.writers, dsms, strict=True):
                topic = TOPICS.data(plan.publisher_id, g.name, w.name)
                out.append(_encode(plan, g, [m], topic, g.writer_settings(w)))
    return out


def _encode(
    plan: Any, g: GroupPlan, dsms: list[DataSetMessage], topic: str, s: Any = None
) -> tuple[str, bytes]:
    nm = NetworkMessage(dsms, publisher_id=plan.publisher_id, writer_group_name=g.name)
    return topic, dumps(encode_network_message(nm, s or g.settings))


def _metadata(plan: Any) -> list[tuple[str, bytes]]:
    fields = [
        ua.FieldMetaData(
            Name=name,
            BuiltInType=int(v.VariantType.value),
            DataType=ua.NodeId(int(v.VariantType.value), 0),
            ValueRank=1 if v.is_array else -1,
        )
        for name, v in FIELDS.items()
    ]
    out = []
    for g in plan.groups:
        for w in g.writers:
            meta = ua.DataSetMetaDataType(Name=w.name, Fields=fields)
            meta.ConfigurationVersion = VERSION
            msg = MetaDataMessage(plan.publisher_id, w.dataset_writer_id, meta, g.name, w.name)
            out.append(
                (
                    TOPICS.metadata(plan.publisher_id, g.name, w.name),
                    dumps(encode_metadata_message(msg)),
                )
            )
    return out


def _payloads(obj: Any) -> list[dict[str, Any]]:
    """The Payload objects of a ua-data message of any layout."""
    body = obj["Messages"] if isinstance(obj, dict) and obj.get("MessageType") == "ua-data" else obj
    dsms = body if isinstance(body, list) else [body]
    return [d.get("Payload", d) for d in dsms]


def _received(plan: Any) -> tuple[list[ReceivedDataSet], list[tuple[str, bytes]]]:
    sub = Subscriber(MqttOptions(host="127.0.0.1", port=1))
    for topic, payload in _metadata(plan):
        assert sub.handle(topic, payload) == []
    sent = _messages(plan)
    return [ds for topic, payload in sent for ds in sub.handle(topic, payload)], sent


def _plain(v: ua.Variant) -> Any:
    return str(v.Value) if v.VariantType in (VT.Int64, VT.UInt64) else v.Value


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_validates_and_reads_the_same_in_node_opcua_and_our_subscriber(
    layout: str,
) -> None:
    plan = _plan(layout)
    received, sent = _received(plan)
    writers = {(w.name, w.dataset_writer_id) for g in plan.groups for w in g.writers}
    assert {(ds.dataset_writer_name, ds.dataset_writer_id) for ds in received} == writers
    assert {ds.verification.state for ds in received} == {TrustState.UNSIGNED}  # metadata found
    requests = []
    for _topic, payload in sent:
        obj = loads(payload)
        errors = list(validator("ua-data").iter_errors(obj))
        assert not errors, [e.message for e in errors]
        for i, p in enumerate(_payloads(obj)):
            for name, value in p.items():
                # DataValue fields carry SourceTimestamp (field_content's default), Variants not
                dv = isinstance(value, dict) and "SourceTimestamp" in value
                kind = "datavalue" if dv else "variant"
                requests.append({"id": f"{len(requests)}/{i}/{name}", "kind": kind, "json": value})
    replies = decode_with_node_opcua(requests)
    for ds in received:
        assert {n: _plain(f.variant) for n, f in ds.fields.items()} == {
            n: _plain(v) for n, v in FIELDS.items()
        }
    for rid, reply in replies.items():
        name = rid.rsplit("/", 1)[1]
        assert reply["ok"], reply
        assert (reply["dataTypeName"], reply["value"]) == (
            FIELDS[name].VariantType.name,
            _plain(FIELDS[name]),
        ), rid


# open62541 v1.5.7, src/pubsub/ua_pubsub_networkmessage_json.c: NetworkMessage_decodeJsonInternal
# and DatasetMessage_Payload_decodeJsonInternal decode these members only (decodeFields refuses
# any other key with BadDecodingError); "Messages" and "MessageType" are looked up first and
# required; SequenceNumber and Status are read as UInt16; DataSetWriterId and Payload required.
OPEN62541_NETWORK_MEMBERS: Final = {
    "MessageId",
    "MessageType",
    "PublisherId",
    "DataSetClassId",
    "Messages",
}
OPEN62541_DATASET_MEMBERS: Final = {
    "DataSetWriterId",
    "SequenceNumber",
    "MetaDataVersion",
    "Timestamp",
    "Status",
    "MessageType",
    "Payload",
}


def open62541_refusal(obj: Any) -> str | None:
    """Why open62541 1.5's JSON decoder refuses a ua-data message, or None if it takes it."""
    if not isinstance(obj, dict) or obj.get("MessageType") != "ua-data" or "Messages" not in obj:
        return "no NetworkMessage header (Messages and MessageType are required)"
    if unknown := set(obj) - OPEN62541_NETWORK_MEMBERS:
        return f"unknown NetworkMessage members {sorted(unknown)}"
    body = obj["Messages"]
    for dsm in body if isinstance(body, list) else [body]:
        if unknown := set(dsm) - OPEN62541_DATASET_MEMBERS:
            return f"unknown DataSetMessage members {sorted(unknown)}"
        if "DataSetWriterId" not in dsm or "Payload" not in dsm:
            return "DataSetWriterId and Payload are required (a keep-alive has no Payload)"
        for member in ("SequenceNumber", "Status"):
            if not isinstance(dsm.get(member, 0), int) or dsm.get(member, 0) > 0xFFFF:
                return f"{member} {dsm[member]!r} is not a UInt16"
    return None


def test_open62541_takes_the_profile_s_data_messages_and_refuses_the_standard_ones() -> None:
    for _topic, payload in _messages(_plan("open62541")):
        assert open62541_refusal(loads(payload)) is None
    refusals = {open62541_refusal(loads(p)) for _t, p in _messages(_plan("standard"))}
    assert refusals == {"unknown NetworkMessage members ['WriterGroupName']"}

"""Content masks from the configuration to the wire and back (issue 15): ``network_message_content``
and ``dataset_message_content`` resolve like the other publishing options, reach the writers'
JsonMessageSettings and the ua-connection description, leave the standard layout byte for byte
as it was when unset, are checked against Part 14 §6.3.2, and whatever layout they allow, the
Subscriber reads it back and finds the writer's metadata by what the message carries."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.adapters.mqtt import MqttOptions
from opcua_mqtt.bridge.from_config import plan_from_config
from opcua_mqtt.bridge.plan import writer_group
from opcua_mqtt.core.config.check import check_config_data, config_from_dict
from opcua_mqtt.core.messages.data import encode_network_message
from opcua_mqtt.core.messages.members import dumps
from opcua_mqtt.core.messages.metadata import MetaDataMessage, encode_metadata_message
from opcua_mqtt.core.messages.profiles import OPEN62541
from opcua_mqtt.core.messages.settings import (
    DATASET_HEADER_BITS,
    STANDARD_DATASET_CONTENT,
    STANDARD_NETWORK_CONTENT,
    JsonMessageSettings,
)
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.writer_state import FieldSpec, FrameKind, WriterState
from opcua_mqtt.subscriber import Subscriber, TrustState
from tests.strategies import assert_ua_equal
from tests.unit.test_config import base, messages
from tests.unit.test_messages import (
    ALLOWED_NETWORK_MASKS,
    DEFAULT_KEY_FRAME,
    DELTA,
    DM,
    EVENT,
    FIELD_TYPES,
    FM,
    GROUP,
    KEY,
    NM,
    PUBLISHER,
    VERSION,
    FieldEncoding,
    dataset_masks,
    dataset_message,
    expected_field,
    network_message,
    pump,
    pump_fields,
    pump_message,
)

COMPACT = DM.FIELD_ENCODING_1 | DM.FIELD_ENCODING_2
VT = ua.VariantType


def _plan(doc: dict[str, Any]) -> Any:
    return plan_from_config(config_from_dict(doc))


def test_a_configuration_without_masks_publishes_the_standard_layout_byte_for_byte() -> None:
    """Defaults stay as they were: the settings of every writer are the core's default
    JsonMessageSettings, so a key frame is exactly the pinned standard message."""
    plan = _plan(base())
    for g in plan.groups:
        assert g.settings == JsonMessageSettings()
        for w in g.writers:
            s = g.writer_settings(w)
            assert s == JsonMessageSettings()
            value = encode_network_message(pump_message(pump(42, KEY, pump_fields()), "msg-1"), s)
            assert dumps(value) == DEFAULT_KEY_FRAME
    assert STANDARD_NETWORK_CONTENT == (
        "NetworkMessageHeader",
        "DataSetMessageHeader",
        "PublisherId",
        "WriterGroupName",
    )
    assert "network_message_content" not in config_from_dict(base()).to_json()["defaults"]


def test_masks_resolve_writer_then_group_then_defaults_and_describe_the_connection() -> None:
    doc = base()
    doc["defaults"] = {"dataset_message_content": ["DataSetWriterId", "SequenceNumber"]}
    group = doc["writer_groups"][0]
    group["network_message_content"] = ["NetworkMessageHeader", "DataSetMessageHeader"]
    group["writers"][1]["dataset_message_content"] = ["DataSetWriterName", "MessageType"]
    plan = _plan(doc)
    g = plan.groups[0]
    filler, capper = (g.writer_settings(w) for w in g.writers)
    assert filler.network_mask == capper.network_mask == NM(3)
    assert filler.dataset_mask == DM.DATASET_WRITER_ID | DM.SEQUENCE_NUMBER | COMPACT
    assert capper.dataset_mask == DM.DATASET_WRITER_NAME | DM.MESSAGE_TYPE | COMPACT
    described = writer_group(plan, g)
    assert described.MessageSettings.NetworkMessageContentMask == 3
    assert [w.MessageSettings.DataSetMessageContentMask for w in described.DataSetWriters] == [
        int(filler.dataset_mask),
        int(capper.dataset_mask),
    ]
    # the file form keeps what was set where it was set, and reads back the same
    again = config_from_dict(config_from_dict(doc).to_json())
    assert again == config_from_dict(doc)
    written = again.to_json()
    assert written["defaults"]["dataset_message_content"] == ["DataSetWriterId", "SequenceNumber"]
    assert (
        written["writer_groups"][0]["network_message_content"] == group["network_message_content"]
    )


def test_the_standard_masks_are_the_default_settings_the_core_always_had() -> None:
    assert JsonMessageSettings().dataset_mask == DATASET_HEADER_BITS | COMPACT
    assert len(STANDARD_DATASET_CONTENT) == 7


def _with(
    network: list[str] | None = None,
    dataset: list[str] | None = None,
    *,
    bundle: bool = False,
    capper: list[str] | None = None,
    key_frame_count: int = 1,
) -> dict[str, Any]:
    doc = base()
    doc["defaults"] = {"key_frame_count": key_frame_count}
    if network is not None:
        doc["defaults"]["network_message_content"] = network
    if dataset is not None:
        doc["defaults"]["dataset_message_content"] = dataset
    group = doc["writer_groups"][0]
    group["bundle_writers"] = bundle
    if capper is not None:
        group["writers"][1]["dataset_message_content"] = capper
    return doc


STANDARD = list(STANDARD_NETWORK_CONTENT)
FULL_DM = ["DataSetWriterId", "MetaDataVersion", "SequenceNumber", "MessageType"]
NM_PATH = "defaults/network_message_content"
DM_PATH = "defaults/dataset_message_content"


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        pytest.param(
            _with(["DataSetMessageHeader", "PublisherId", "WriterGroupName"]),
            NM_PATH,
            "PublisherId, WriterGroupName are members of the NetworkMessage header (Part 14 "
            "§7.2.5.3; §6.3.2.1.1: without NetworkMessageHeader the PublisherId and "
            "DataSetClassId bits shall be 0): add NetworkMessageHeader or leave them out",
            id="header members without the header",
        ),
        pytest.param(
            _with(STANDARD, ["PublisherId", *FULL_DM]),
            DM_PATH,
            "PublisherId in the DataSetMessage shall be left out when the NetworkMessage header "
            "is there (Part 14 §6.3.2.3.1, §7.2.5.4.1): leave it out, or NetworkMessageHeader",
            id="DataSetMessage PublisherId under a NetworkMessage header",
        ),
        pytest.param(
            _with(["NetworkMessageHeader", "SingleDataSetMessage"], ["Timestamp"]),
            DM_PATH,
            "Timestamp: DataSetMessage header members, but the network_message_content in "
            f"force ({NM_PATH}) has no DataSetMessageHeader, so they would be ignored (Part 14 "
            "§6.3.2.1.1): add DataSetMessageHeader there or leave dataset_message_content out",
            id="DataSetMessage members without the DataSetMessage header",
        ),
        pytest.param(
            _with([*STANDARD, "SingleDataSetMessage"], bundle=True),
            NM_PATH,
            "SingleDataSetMessage puts one DataSetMessage in each NetworkMessage (Part 14 "
            "§6.3.2.1.1), but writer group 'Line1' bundles 2 writers into one: leave out "
            "SingleDataSetMessage or bundle_writers",
            id="SingleDataSetMessage with bundled writers",
        ),
        pytest.param(
            _with(dataset=FULL_DM, bundle=True, capper=["DataSetWriterId", "SequenceNumber"]),
            "writer_groups/0/writers/1/dataset_message_content",
            "writers bundled into one NetworkMessage share one DataSetMessage layout: expected "
            "the same dataset_message_content as writer_groups/0/writers/0",
            id="bundled writers with different layouts",
        ),
    ],
)
def test_validate_refuses_what_part_14_forbids(doc: Any, path: str, expected: str) -> None:
    assert messages(doc)[path] == expected


def _content_warnings(doc: Any) -> set[str]:
    """The warnings about content masks (the other rules' warnings left aside)."""
    return {
        i.message
        for i in check_config_data(doc, "c.yaml").issues
        if i.severity == "warning" and i.path.endswith("_content")
    }


def test_validate_warns_about_what_a_subscriber_cannot_use() -> None:
    assert _content_warnings(_with(dataset=FULL_DM)) == set()  # key_frame_count 1
    assert _content_warnings(_with(dataset=["Timestamp"], bundle=True, key_frame_count=10)) == {
        "no DataSetWriterId: several writers share one topic (bundle_writers), and a "
        "subscriber tells their messages apart by it",
        "no SequenceNumber: a subscriber cannot detect lost messages",
        "no MetaDataVersion: a subscriber cannot tell which metadata version describes a message",
        "no MessageType: with key_frame_count 10 delta frames cannot be told from key frames "
        "(Part 14 Annex A.3.3.4, A.3.4.4 ask for it when KeyFrameCount is not 1)",
        "no DataSetWriterId, MetaDataVersion, SequenceNumber or MessageType: without one of "
        "them a keep-alive cannot be told from a payload, so none are sent",
    }
    assert _content_warnings(_with(["NetworkMessageHeader"])) == {
        "without DataSetMessageHeader a DataSetMessage is its bare Payload: no keep-alives "
        "are sent, and delta frames cannot be told from key frames (set key_frame_count 1)"
    }
    # the standard layout, set nowhere, is never warned about
    assert _content_warnings(base()) == set()


def test_the_open62541_profile_validates_with_the_one_warning_it_earns() -> None:
    doc = _with(list(OPEN62541.network_message_content), list(OPEN62541.dataset_message_content))
    assert messages(doc) == {}
    assert _content_warnings(doc) == {"no SequenceNumber: a subscriber cannot detect lost messages"}


def test_key_frames_every_interval_leave_no_room_for_a_keep_alive() -> None:
    """The open62541 profile's key_frame_count 1: a key frame every publishing interval, changed
    or not, so the keep-alive open62541 cannot read (no Payload) never comes."""
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    spec = FieldSpec("Temperature", int(VT.Double), ua.NodeId(11, 0))
    assert OPEN62541.key_frame_count == 1
    state = WriterState([spec], key_frame_count=1, keep_alive_time=timedelta(seconds=1), now=t0)
    frames = [state.tick(t0 + timedelta(seconds=i)) for i in range(1, 50)]
    assert {f.kind if f is not None else None for f in frames} == {FrameKind.KEY}


def test_a_layout_without_keep_alive_markers_sends_no_keep_alives() -> None:
    """A keep-alive is a DataSetMessage without Payload: without the DataSetMessage header, or
    with none of the members that mark a DataSetMessage, it would read as a payload."""
    assert JsonMessageSettings().sends_keep_alives
    assert not JsonMessageSettings(network_mask=NM.NETWORK_MESSAGE_HEADER).sends_keep_alives
    only_time = JsonMessageSettings(dataset_mask=DM.TIMESTAMP | COMPACT)
    assert not only_time.sends_keep_alives
    for marker in (DM.DATASET_WRITER_ID, DM.METADATA_VERSION, DM.SEQUENCE_NUMBER, DM.MESSAGE_TYPE):
        assert JsonMessageSettings(dataset_mask=marker | COMPACT).sends_keep_alives


# ------------------------------------------------------------ the Subscriber, any allowed layout

TOPICS = TopicTree()
WRITER_ID = 3


def _metadata() -> bytes:
    fields = [
        ua.FieldMetaData(
            Name=name,
            BuiltInType=int(vt.value),
            DataType=ua.NodeId(int(vt.value), 0),
            ValueRank=1 if name == "Levels" else -1,
        )
        for name, vt in FIELD_TYPES.items()
    ]
    meta = ua.DataSetMetaDataType(Name=f"Writer{WRITER_ID}", Fields=fields)
    meta.ConfigurationVersion = VERSION
    msg = MetaDataMessage(
        publisher_id=PUBLISHER,
        dataset_writer_id=WRITER_ID,
        metadata=meta,
        writer_group_name=GROUP,
        dataset_writer_name=f"Writer{WRITER_ID}",
    )
    return dumps(encode_metadata_message(msg))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nm=st.sampled_from(ALLOWED_NETWORK_MASKS),
    dm=dataset_masks(FieldEncoding.COMPACT),
    fm=st.sampled_from([FM(0), FM.RAW_DATA, FM.STATUS_CODE | FM.SOURCE_TIMESTAMP, FM(31)]),
    kind=st.sampled_from([KEY, DELTA, EVENT]),
)
def test_the_subscriber_reads_every_allowed_layout_and_finds_its_metadata(
    nm: NM, dm: DM, fm: FM, kind: Any
) -> None:
    """Encode with the core under any mask combination Part 14 allows (RawData too), decode with
    the Subscriber after the writer's metadata: the same values, and the message matched to that
    metadata whether it names its writer by id, by name, or only by its topic."""
    s = JsonMessageSettings(network_mask=nm, dataset_mask=dm, field_mask=fm)
    sub = Subscriber(MqttOptions(host="127.0.0.1", port=1))
    writer = f"Writer{WRITER_ID}"
    assert sub.handle(TOPICS.metadata(PUBLISHER, GROUP, writer), _metadata()) == []
    m = dataset_message(WRITER_ID, kind)
    sent = copy.deepcopy(m.payload)
    assert sent is not None
    value = encode_network_message(network_message([m]), s)
    (ds,) = sub.handle(TOPICS.data(PUBLISHER, GROUP, writer), dumps(value))
    assert (ds.publisher_id, ds.writer_group, ds.dataset_writer_name) == (PUBLISHER, GROUP, writer)
    assert ds.dataset_writer_id == WRITER_ID
    assert ds.verification.state is TrustState.UNSIGNED  # its metadata was found
    assert set(ds.fields) == set(sent)
    for name, dv in sent.items():
        want = expected_field(dv, s, typed=True)
        got = ds.fields[name]
        assert_ua_equal(got.variant, want.Value if want.Value is not None else ua.Variant())
        assert got.status == (want.StatusCode or ua.StatusCode(0))
        assert (got.source_timestamp, got.server_timestamp) == (
            want.SourceTimestamp,
            want.ServerTimestamp,
        )

"""PubSub JSON messages (opcua_mqtt.core.messages) against OPC 10000-14 1.05 and schemas/.

Clauses are OPC 10000-14 1.05 unless stated: §6.3.2.1.1 JsonNetworkMessageContentMask,
§6.3.2.2.1 JsonDataSetMessageContentMask (§6.3.2.3.1 in 1.05.04+), §6.2.4.2
DataSetFieldContentMask, §7.2.5.3 NetworkMessage, §7.2.5.4 DataSetMessage, §7.2.5.5.2
DataSetMetaData (ua-metadata), §7.2.5.5.5 Status (ua-status), §7.2.5.5.6 PubSubConnection
(ua-connection), Annex A.3.2.2 minimal message. Value forms are OPC 10000-6 §5.4 (1.05) and its
Annex H (1.04). Every encoded message is validated against its JSON Schema in schemas/.
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opcua_mqtt.core.errors import DecodeError, EncodeError
from opcua_mqtt.core.messages.data import DataSetMessage, NetworkMessage, encode_network_message
from opcua_mqtt.core.messages.decode import decode_message
from opcua_mqtt.core.messages.members import dumps, loads
from opcua_mqtt.core.messages.metadata import (
    ConnectionMessage,
    MetaDataMessage,
    StatusMessage,
    decode_metadata_message,
    encode_connection_message,
    encode_metadata_message,
    encode_status_message,
    metadata_field_types,
    status_expiry_s,
    status_overdue,
)
from opcua_mqtt.core.messages.settings import (
    DataSetFieldContentMask,
    DataSetMessageContentMask,
    DataSetMessageType,
    JsonMessageSettings,
    NetworkMessageContentMask,
)
from opcua_mqtt.core.schema_validation import SCHEMA_NAMES, load_schema, schema_path, validator
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from tests.strategies import NAMESPACES, SERVER_URIS, assert_ua_equal, data_values, variants_of

VT = ua.VariantType
NM = NetworkMessageContentMask
DM = DataSetMessageContentMask
FM = DataSetFieldContentMask
KEY, DELTA, EVENT, KEEP = (
    DataSetMessageType.KEY_FRAME,
    DataSetMessageType.DELTA_FRAME,
    DataSetMessageType.EVENT,
    DataSetMessageType.KEEP_ALIVE,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
PUBLISHER = "bridge-1"
GROUP = "Line1"
CLASS_ID = uuid.UUID("5a1c4b3e-0f0e-4d2c-9b8a-7766554433aa")
VERSION = ua.ConfigurationVersionDataType(MajorVersion=1714564800, MinorVersion=1714564801)
UNCERTAIN = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)  # 0x40900000
BAD = ua.StatusCode(ua.StatusCodes.BadNotConnected)  # 0x808A0000 = 2156527616
BAD_CODE = 2156527616

#: (FieldEncoding1, FieldEncoding2) bits per field encoding (§6.3.2.2.1, Table 112 in 1.05.04).
ENCODING_BITS = {
    FieldEncoding.VERBOSE: DM.FIELD_ENCODING_2,
    FieldEncoding.COMPACT: DM.FIELD_ENCODING_1 | DM.FIELD_ENCODING_2,
    FieldEncoding.NON_REVERSIBLE: DM(0),
    FieldEncoding.REVERSIBLE: DM.FIELD_ENCODING_1,
}
ENCODINGS = list(ENCODING_BITS)
HEADER_BITS = [b for b in DM if b not in (DM.FIELD_ENCODING_1, DM.FIELD_ENCODING_2)]
ALL_DM_HEADER = DM(sum(HEADER_BITS))
FULL_NM_HEADER = (
    NM.NETWORK_MESSAGE_HEADER
    | NM.DATASET_MESSAGE_HEADER
    | NM.PUBLISHER_ID
    | NM.WRITER_GROUP_NAME
    | NM.DATASET_CLASS_ID
)
#: Members that tell a DataSetMessage from a bare payload when decoding (see decode_message).
DSM_MARKERS = DM.DATASET_WRITER_ID | DM.METADATA_VERSION | DM.SEQUENCE_NUMBER | DM.MESSAGE_TYPE

FIELD_TYPES: dict[str, ua.VariantType] = {
    "Temperature": VT.Double,
    "Running": VT.Boolean,
    "Count": VT.Int64,
    "Name": VT.String,
    "Levels": VT.Int32,
    "Pressure": VT.Double,
}


def field_types(publisher: str | None, writer_id: int | None) -> Mapping[str, ua.VariantType]:
    return FIELD_TYPES


def payload() -> dict[str, ua.DataValue]:
    """One field of each kind: every DataValue member set, Good/Uncertain/Bad statuses."""
    return {
        "Temperature": ua.DataValue(
            ua.Variant(21.5, VT.Double),
            StatusCode=UNCERTAIN,
            SourceTimestamp=T0,
            SourcePicoseconds=10,
            ServerTimestamp=T1,
            ServerPicoseconds=20,
        ),
        "Running": ua.DataValue(ua.Variant(True, VT.Boolean), SourceTimestamp=T0),
        "Count": ua.DataValue(ua.Variant(2**40 + 1, VT.Int64), ServerTimestamp=T1),
        "Name": ua.DataValue(ua.Variant("pump-1", VT.String)),
        "Levels": ua.DataValue(ua.Variant([1, -2, 3], VT.Int32)),
        "Pressure": ua.DataValue(ua.Variant(), StatusCode=BAD, SourceTimestamp=T0),
    }


def dataset_message(writer_id: int, kind: DataSetMessageType, seq: int = 42) -> DataSetMessage:
    """A DataSetMessage with every header member set, so that the masks alone decide."""
    return DataSetMessage(
        dataset_writer_id=writer_id,
        dataset_writer_name=f"Writer{writer_id}",
        publisher_id=PUBLISHER,
        writer_group_name=GROUP,
        sequence_number=seq,
        metadata_version=VERSION,
        minor_version=1714564801,
        timestamp=T0,
        status=UNCERTAIN,
        message_type=kind,
        payload=None if kind is KEEP else payload(),
    )


def network_message(messages: list[DataSetMessage], message_id: str = "msg-1") -> NetworkMessage:
    return NetworkMessage(
        messages,
        message_id=message_id,
        publisher_id=PUBLISHER,
        writer_group_name=GROUP,
        dataset_class_id=CLASS_ID,
    )


def assert_valid(schema: str, value: Any) -> None:
    errors = sorted(validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def assert_invalid(schema: str, value: Any) -> None:
    assert not validator(schema).is_valid(value), f"{schema} accepted {value!r}"


def roundtrip(value: Any) -> Any:
    """What a subscriber sees: the bytes on the wire, parsed again."""
    return orjson.loads(dumps(value))


# ------------------------------------------------------------------ expectations from the masks


def expected_network_keys(s: JsonMessageSettings) -> list[str]:
    """§7.2.5.3 Table: members of the NetworkMessage header, in order."""
    nm = s.network_mask
    keys = ["MessageId", "MessageType"]
    if nm & NM.PUBLISHER_ID:
        keys.append("PublisherId")
    if nm & NM.WRITER_GROUP_NAME:
        keys.append("WriterGroupName")
    if nm & NM.DATASET_CLASS_ID:
        keys.append("DataSetClassId")
    return [*keys, "Messages"]


def header_carries(s: JsonMessageSettings) -> tuple[bool, bool]:
    """(PublisherId, WriterGroupName) carried by the NetworkMessage header."""
    nm = s.network_mask
    header = bool(nm & NM.NETWORK_MESSAGE_HEADER)
    return header and bool(nm & NM.PUBLISHER_ID), header and bool(nm & NM.WRITER_GROUP_NAME)


def expected_dataset_keys(s: JsonMessageSettings, m: DataSetMessage) -> list[str]:
    """§7.2.5.4 Table: members of a DataSetMessage, in order, for messages made by
    :func:`dataset_message`. PublisherId and WriterGroupName are left to the NetworkMessage
    header when it carries them (§7.2.5.4.1)."""
    dm = s.dataset_mask
    pub_in_header, group_in_header = header_carries(s)
    order = [
        (DM.DATASET_WRITER_ID, "DataSetWriterId", True),
        (DM.DATASET_WRITER_NAME, "DataSetWriterName", True),
        (DM.PUBLISHER_ID, "PublisherId", not pub_in_header),
        (DM.WRITER_GROUP_NAME, "WriterGroupName", not group_in_header),
        (DM.SEQUENCE_NUMBER, "SequenceNumber", True),
        (DM.METADATA_VERSION, "MetaDataVersion", True),
        (DM.MINOR_VERSION, "MinorVersion", True),
        (DM.TIMESTAMP, "Timestamp", True),
        (DM.STATUS, "Status", True),
        (DM.MESSAGE_TYPE, "MessageType", True),
    ]
    keys = [name for bit, name, ok in order if dm & bit and ok]
    return keys + (["Payload"] if m.payload is not None else [])


def expected_field(dv: ua.DataValue, s: JsonMessageSettings, *, typed: bool) -> ua.DataValue:
    """What a subscriber decodes for one field (§6.2.4.2): a DataValue keeps the members the mask
    names (a PicoSeconds bit only with its Timestamp bit); a Variant or RawData field keeps the
    value, or for a Bad field its StatusCode instead of the value, which comes back as the field's
    status when the subscriber knows the field's type (``typed``)."""
    members = s.data_value_members
    status = dv.StatusCode if dv.StatusCode is not None else ua.StatusCode(0)
    if members is None:
        if not status.is_bad():
            return ua.DataValue(dv.Value)
        if typed:
            return ua.DataValue(ua.Variant(), StatusCode=status)
        return ua.DataValue(ua.Variant(status, VT.StatusCode))
    return ua.DataValue(
        dv.Value,
        StatusCode=status if members.status else ua.StatusCode(0),
        SourceTimestamp=dv.SourceTimestamp if members.source_timestamp else None,
        ServerTimestamp=dv.ServerTimestamp if members.server_timestamp else None,
        SourcePicoseconds=dv.SourcePicoseconds if members.source_picoseconds else None,
        ServerPicoseconds=dv.ServerPicoseconds if members.server_picoseconds else None,
    )


def expected_dataset_message(
    m: DataSetMessage, s: JsonMessageSettings, nm: NetworkMessage
) -> DataSetMessage:
    pub_in_header, group_in_header = header_carries(s)
    header_pub = nm.publisher_id if pub_in_header else None
    header_group = nm.writer_group_name if group_in_header else None
    exp_payload = (
        None
        if m.payload is None
        else {k: expected_field(v, s, typed=True) for k, v in m.payload.items()}
    )
    if not s.network_mask & NM.DATASET_MESSAGE_HEADER:
        return DataSetMessage(
            publisher_id=header_pub, writer_group_name=header_group, payload=exp_payload
        )
    dm = s.dataset_mask

    def opt(bit: DM, value: Any) -> Any:
        return value if dm & bit else None

    kind = m.message_type if dm & DM.MESSAGE_TYPE else (KEY if m.payload is not None else KEEP)
    return DataSetMessage(
        dataset_writer_id=opt(DM.DATASET_WRITER_ID, m.dataset_writer_id),
        dataset_writer_name=opt(DM.DATASET_WRITER_NAME, m.dataset_writer_name),
        publisher_id=opt(DM.PUBLISHER_ID, m.publisher_id) or header_pub,
        writer_group_name=opt(DM.WRITER_GROUP_NAME, m.writer_group_name) or header_group,
        sequence_number=opt(DM.SEQUENCE_NUMBER, m.sequence_number),
        metadata_version=opt(DM.METADATA_VERSION, m.metadata_version),
        minor_version=opt(DM.MINOR_VERSION, m.minor_version),
        timestamp=opt(DM.TIMESTAMP, m.timestamp),
        status=opt(DM.STATUS, m.status),
        message_type=kind,
        payload=exp_payload,
    )


def check_roundtrip(nm: NetworkMessage, s: JsonMessageSettings) -> None:
    """Encode as the masks say, check the layout member by member, validate against the
    ua-data schema, decode the bytes and compare with what the masks let through."""
    value = encode_network_message(nm, s)
    header = bool(s.network_mask & NM.NETWORK_MESSAGE_HEADER)
    single = bool(s.network_mask & NM.SINGLE_DATASET_MESSAGE)
    if header:
        assert isinstance(value, dict)
        assert list(value) == expected_network_keys(s)
        assert value["MessageId"] == nm.message_id
        assert value["MessageType"] == "ua-data"
        body = value["Messages"]
    else:
        body = value
    dsms = [body] if single else body
    assert isinstance(dsms, list) and len(dsms) == len(nm.messages)
    for got, m in zip(dsms, nm.messages, strict=True):
        assert isinstance(got, dict)
        if s.network_mask & NM.DATASET_MESSAGE_HEADER:
            assert list(got) == expected_dataset_keys(s, m)
            payload_json = got.get("Payload")
        else:
            payload_json = got  # §7.2.5.4.1: without the header the object is the payload
        assert m.payload is not None or payload_json is None
        if m.payload is not None:
            assert list(payload_json) == list(m.payload)
    assert_valid("ua-data", value)

    decoded = decode_message(dumps(value), field_types=field_types)
    assert isinstance(decoded, NetworkMessage)
    if header:
        assert decoded.message_id == nm.message_id
        assert decoded.publisher_id == (
            nm.publisher_id if s.network_mask & NM.PUBLISHER_ID else None
        )
        assert decoded.writer_group_name == (
            nm.writer_group_name if s.network_mask & NM.WRITER_GROUP_NAME else None
        )
        assert decoded.dataset_class_id == (
            nm.dataset_class_id if s.network_mask & NM.DATASET_CLASS_ID else None
        )
    else:
        assert (decoded.message_id, decoded.publisher_id) == ("", None)
    assert len(decoded.messages) == len(nm.messages)
    for got_m, m in zip(decoded.messages, nm.messages, strict=True):
        want = expected_dataset_message(m, s, nm)
        assert_ua_equal(got_m.payload, want.payload)
        got_m.payload = want.payload = None
        assert got_m == want


# ------------------------------------------------------------------ §6.3.2.1.1 network masks

ALL_NETWORK_MASKS = [NM(v) for v in range(128)]


def _network_mask_allowed(nm: NM) -> bool:
    return bool(nm & NM.NETWORK_MESSAGE_HEADER) or not nm & (
        NM.PUBLISHER_ID | NM.DATASET_CLASS_ID | NM.WRITER_GROUP_NAME
    )


ALLOWED_NETWORK_MASKS = [nm for nm in ALL_NETWORK_MASKS if _network_mask_allowed(nm)]
MATRIX_DM = ALL_DM_HEADER | ENCODING_BITS[FieldEncoding.COMPACT]


@pytest.mark.parametrize("nm", ALL_NETWORK_MASKS, ids=lambda m: f"nm{int(m):03d}")
def test_network_mask_without_header_rejects_header_members(nm: NM) -> None:
    """§6.3.2.1.1: PublisherId, DataSetClassId and WriterGroupName live in the NetworkMessage
    header; without the header bit the settings are refused."""
    if _network_mask_allowed(nm):
        assert JsonMessageSettings(network_mask=nm).network_mask == nm
    else:
        with pytest.raises(ValueError, match="NetworkMessageHeader"):
            JsonMessageSettings(network_mask=nm)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("nm", ALLOWED_NETWORK_MASKS, ids=lambda m: f"nm{int(m):03d}")
def test_every_network_mask_layout_validates_and_round_trips(nm: NM, count: int) -> None:
    """§7.2.5.3 / §6.3.2.1.1: for every allowed JsonNetworkMessageContentMask the header has
    exactly the members the mask names; Messages is an array, or a single object with
    SingleDataSetMessage; DataSetMessage PublisherId/WriterGroupName are left to the header when
    it carries them; the result validates and decodes back."""
    s = JsonMessageSettings(network_mask=nm, dataset_mask=MATRIX_DM)
    dsm_header = bool(nm & NM.DATASET_MESSAGE_HEADER)
    second = KEEP if dsm_header else DELTA  # a keep-alive needs the DataSetMessage header
    messages = [dataset_message(1, KEY), dataset_message(2, second, seq=7)][:count]
    msg = network_message(messages)
    if nm & NM.SINGLE_DATASET_MESSAGE and count > 1:
        with pytest.raises(EncodeError, match="SingleDataSetMessage"):
            encode_network_message(msg, s)
        return
    check_roundtrip(msg, s)


def test_keep_alive_needs_the_dataset_message_header() -> None:
    """§7.2.5.4.1: a keep-alive is a DataSetMessage without Payload; without the DataSetMessage
    header there would be nothing to send."""
    s = JsonMessageSettings(network_mask=NM.NETWORK_MESSAGE_HEADER)
    with pytest.raises(EncodeError, match="keep-alive"):
        encode_network_message(network_message([dataset_message(1, KEEP)]), s)


# ------------------------------------------------------------------ §6.3.2.2.1 dataset masks


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
def test_every_dataset_mask_layout_validates_and_round_trips(encoding: FieldEncoding) -> None:
    """§7.2.5.4 / §6.3.2.2.1: all 2^10 header-bit combinations of the JsonDataSetMessageContentMask
    (× the FieldEncoding bits of this parameter = all 4096 masks), with and without PublisherId
    and WriterGroupName in the NetworkMessage header: the DataSetMessage has exactly the members
    the mask names, in the order of the §7.2.5.4 table, validates, and decodes back."""
    kinds = [KEY, DELTA, EVENT]
    for i, bits in enumerate(range(2**12)):
        dm = DM(bits)
        if dm & (DM.FIELD_ENCODING_1 | DM.FIELD_ENCODING_2) != ENCODING_BITS[encoding]:
            continue
        for nm in (
            NM.NETWORK_MESSAGE_HEADER | NM.DATASET_MESSAGE_HEADER,
            FULL_NM_HEADER,
        ):
            s = JsonMessageSettings(network_mask=nm, dataset_mask=dm)
            assert s.field_encoding is encoding
            messages = [dataset_message(1, kinds[i % 3])]
            if dm & DSM_MARKERS:
                # Without any of these a keep-alive is an empty-looking object: a reader cannot
                # tell it from a bare payload (§7.2.5.4.1 leaves this to the configuration).
                messages.append(dataset_message(2, KEEP, seq=43))
            try:
                check_roundtrip(network_message(messages), s)
            except AssertionError as e:
                raise AssertionError(f"dataset mask {int(dm)}, network mask {int(nm)}: {e}") from e


# ------------------------------------------------------------------ §6.2.4.2 field masks


def _status_json(encoding: FieldEncoding, code: int, symbol: str) -> Any:
    if encoding is FieldEncoding.REVERSIBLE:
        return code  # 1.04: a bare number
    if encoding is FieldEncoding.COMPACT:
        return {"Code": code}
    return {"Code": code, "Symbol": symbol}


def expected_temperature_json(encoding: FieldEncoding, fm: FM) -> Any:
    """The exact JSON of the "Temperature" field of :func:`payload` (Double 21.5, Uncertain,
    both timestamps and picoseconds) for one field encoding and DataSetFieldContentMask."""
    if fm & FM.RAW_DATA:
        return 21.5  # RawData: the bare value, all other bits ignored (§6.2.4.2)
    variant: Any = {
        FieldEncoding.COMPACT: {"UaType": 11, "Value": 21.5},
        FieldEncoding.VERBOSE: {"UaType": 11, "Value": 21.5},
        FieldEncoding.REVERSIBLE: {"Type": 11, "Body": 21.5},
        FieldEncoding.NON_REVERSIBLE: 21.5,
    }[encoding]
    if not fm:
        return variant  # no bit: a Variant (Uncertain is not Bad: the value is sent)
    out: dict[str, Any] = dict(variant) if encoding.is_105 else {"Value": variant}
    if fm & FM.STATUS_CODE:
        out["Status"] = _status_json(encoding, 0x40900000, "UncertainLastUsableValue")
    if fm & FM.SOURCE_TIMESTAMP:
        out["SourceTimestamp"] = "2024-05-01T12:00:00.123Z"
        if fm & FM.SOURCE_PICOSECONDS:
            out["SourcePicoseconds"] = 10
    if fm & FM.SERVER_TIMESTAMP:
        out["ServerTimestamp"] = "2024-05-01T12:00:01Z"
        if fm & FM.SERVER_PICOSECONDS:
            out["ServerPicoseconds"] = 20
    return out


def expected_pressure_json(encoding: FieldEncoding, fm: FM) -> Any:
    """The exact JSON of the Bad "Pressure" field (no value, BadNotConnected, a source time):
    as a Variant or RawData the StatusCode travels instead of the value (§6.2.4.2 Table 26)."""
    status = _status_json(encoding, BAD_CODE, "BadNotConnected")
    if not fm or fm & FM.RAW_DATA:
        if fm & FM.RAW_DATA or encoding is FieldEncoding.NON_REVERSIBLE:
            return status
        if encoding is FieldEncoding.REVERSIBLE:
            return {"Type": 19, "Body": status}
        return {"UaType": 19, "Value": status}
    out: dict[str, Any] = {}
    if fm & FM.STATUS_CODE:
        out["Status"] = status
    if fm & FM.SOURCE_TIMESTAMP:
        out["SourceTimestamp"] = "2024-05-01T12:00:00.123Z"
    return out


@pytest.mark.parametrize("fm", [FM(v) for v in range(64)], ids=lambda m: f"fm{int(m):02d}")
@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.value)
def test_every_field_mask_gives_the_field_form_and_round_trips(
    encoding: FieldEncoding, fm: FM
) -> None:
    """§6.2.4.2: no bit = Variant; RawData = the bare value, other bits ignored; any of bits 0–4 =
    a DataValue with the members named (PicoSeconds only with its Timestamp); a Bad field as a
    Variant or RawData carries its StatusCode instead of the value. Each form decodes back with
    the writer's field types."""
    s = JsonMessageSettings(
        network_mask=FULL_NM_HEADER | NM.SINGLE_DATASET_MESSAGE,
        dataset_mask=DM.DATASET_WRITER_ID | ENCODING_BITS[encoding],
        field_mask=fm,
    )
    m = dataset_message(1, KEY)
    value = encode_network_message(network_message([m]), s)
    fields = value["Messages"]["Payload"]
    assert fields["Temperature"] == expected_temperature_json(encoding, fm)
    assert fields["Pressure"] == expected_pressure_json(encoding, fm)
    assert_valid("ua-data", value)
    if encoding is FieldEncoding.REVERSIBLE and fm & FM.RAW_DATA:
        # A 1.04 Bad StatusCode as RawData is a bare number: a Double field cannot tell it from
        # a value. (1.05.04 Table 112 says the RawData bit is ignored with ReversibleFieldEncoding.)
        del value["Messages"]["Payload"]["Pressure"]
        assert m.payload is not None
        del m.payload["Pressure"]
    decoded = decode_message(dumps(value), field_types=field_types)
    assert isinstance(decoded, NetworkMessage)
    assert m.payload is not None
    assert_ua_equal(
        decoded.messages[0].payload,
        {k: expected_field(v, s, typed=True) for k, v in m.payload.items()},
    )


def test_picoseconds_bits_are_ignored_without_their_timestamp_bits() -> None:
    """§6.2.4.2 Table 24: SourcePicoSeconds/ServerPicoSeconds are ignored if the matching
    Timestamp bit is not set; the field is still a DataValue (any of bits 0–4)."""
    s = JsonMessageSettings(field_mask=FM.SOURCE_PICOSECONDS | FM.SERVER_PICOSECONDS)
    value = encode_network_message(network_message([dataset_message(1, KEY)]), s)
    assert value["Messages"][0]["Payload"]["Temperature"] == {"UaType": 11, "Value": 21.5}


# ------------------------------------------------------------------ exact vectors

DEFAULT_KEY_FRAME = (
    b'{"MessageId":"msg-1","MessageType":"ua-data","PublisherId":"bridge-1",'
    b'"WriterGroupName":"Line1","Messages":[{"DataSetWriterId":1,"DataSetWriterName":"Pump1",'
    b'"SequenceNumber":42,"MetaDataVersion":{"MajorVersion":1714564800,'
    b'"MinorVersion":1714564801},"Timestamp":"2024-05-01T12:00:00.123Z",'
    b'"MessageType":"ua-keyframe","Payload":{'
    b'"Temperature":{"UaType":11,"Value":21.5,"SourceTimestamp":"2024-05-01T12:00:00.123Z"},'
    b'"Running":{"UaType":1,"Value":true,"SourceTimestamp":"2024-05-01T12:00:00.123Z"},'
    b'"Count":{"UaType":8,"Value":"1099511627776","Status":{"Code":1083179008},'
    b'"SourceTimestamp":"2024-05-01T12:00:00.123Z"}}}]}'
)


def pump(
    seq: int,
    kind: DataSetMessageType,
    fields: dict[str, ua.DataValue] | None,
    at: datetime = T0,
    status: ua.StatusCode | None = None,
) -> DataSetMessage:
    return DataSetMessage(
        dataset_writer_id=1,
        dataset_writer_name="Pump1",
        sequence_number=seq,
        metadata_version=VERSION,
        timestamp=at,
        status=status,
        message_type=kind,
        payload=fields,
    )


def pump_fields() -> dict[str, ua.DataValue]:
    return {
        "Temperature": ua.DataValue(ua.Variant(21.5, VT.Double), SourceTimestamp=T0),
        "Running": ua.DataValue(ua.Variant(True, VT.Boolean), SourceTimestamp=T0),
        "Count": ua.DataValue(
            ua.Variant(2**40, VT.Int64), StatusCode=UNCERTAIN, SourceTimestamp=T0
        ),
    }


def pump_message(m: DataSetMessage, message_id: str) -> NetworkMessage:
    return NetworkMessage(
        [m], message_id=message_id, publisher_id=PUBLISHER, writer_group_name=GROUP
    )


def test_default_settings_key_frame_exact() -> None:
    """The default settings (§7.2.5.3 header with PublisherId and WriterGroupName, §7.2.5.4
    header, Compact, DataValue with Status and SourceTimestamp): Good statuses are left out
    (OPC 10000-6 §5.4.2.18), Int64 is a decimal string (§5.4.2.3), the DataSetMessage does not
    repeat the PublisherId the NetworkMessage carries."""
    msg = pump_message(pump(42, KEY, pump_fields()), "msg-1")
    value = encode_network_message(msg, JsonMessageSettings())
    assert dumps(value) == DEFAULT_KEY_FRAME
    assert_valid("ua-data", value)
    decoded = decode_message(DEFAULT_KEY_FRAME)
    assert isinstance(decoded, NetworkMessage)
    assert decoded.messages[0].sequence_number == 42
    assert decoded.messages[0].publisher_id == PUBLISHER  # taken from the header
    assert_ua_equal(decoded.messages[0].payload, pump_fields())


@pytest.mark.parametrize(
    ("seq", "kind", "payload", "message_id", "encoded_payload"),
    [
        pytest.param(
            43,
            DELTA,
            {"Temperature": ua.DataValue(ua.Variant(21.75, VT.Double), SourceTimestamp=T1)},
            "msg-2",
            '"MessageType":"ua-deltaframe","Payload":{"Temperature":{"UaType":11,"Value":21.75,'
            '"SourceTimestamp":"2024-05-01T12:00:01Z"}}',
            id="delta frame",
        ),
        pytest.param(44, KEEP, None, "msg-3", '"MessageType":"ua-keepalive"', id="keep-alive"),
    ],
)
def test_delta_frame_and_keep_alive_exact(
    seq: int,
    kind: DataSetMessageType,
    payload: dict[str, ua.DataValue] | None,
    message_id: str,
    encoded_payload: str,
) -> None:
    """§7.2.5.4.1: a delta frame carries only the changed fields; a keep-alive is a
    DataSetMessage without a Payload member."""
    msg = pump_message(pump(seq, kind, payload, at=T1), message_id)
    value = encode_network_message(msg, JsonMessageSettings())
    expected = (
        f'{{"MessageId":"{message_id}","MessageType":"ua-data","PublisherId":"bridge-1",'
        '"WriterGroupName":"Line1","Messages":[{"DataSetWriterId":1,"DataSetWriterName":"Pump1",'
        f'"SequenceNumber":{seq},"MetaDataVersion":{{"MajorVersion":1714564800,'
        '"MinorVersion":1714564801},"Timestamp":"2024-05-01T12:00:01Z",'
        f"{encoded_payload}}}]}}"
    )
    assert dumps(value) == expected.encode()
    assert_valid("ua-data", value)
    decoded = decode_message(dumps(value))
    assert isinstance(decoded, NetworkMessage)
    (m,) = decoded.messages
    assert (m.message_type, m.sequence_number) == (kind, seq)
    if payload is None:
        assert m.payload is None
    else:
        assert_ua_equal(m.payload, payload)


def test_raw_data_minimal_message_exact() -> None:
    """Annex A.3.2.2 minimal message: one DataSetMessage, no NetworkMessage header, no
    DataSetMessage header, Verbose with RawData: the payload object is the whole message; a
    subscriber reads it with the field types of the writer's metadata."""
    s = JsonMessageSettings(
        network_mask=NM.SINGLE_DATASET_MESSAGE,
        dataset_mask=DM.FIELD_ENCODING_2,
        field_mask=FM.RAW_DATA,
    )
    value = encode_network_message(pump_message(pump(42, KEY, pump_fields()), "x"), s)
    assert dumps(value) == b'{"Temperature":21.5,"Running":true,"Count":"1099511627776"}'
    assert_valid("ua-data", value)
    types = {"Temperature": VT.Double, "Running": VT.Boolean, "Count": VT.Int64}
    decoded = decode_message(dumps(value), field_types=lambda p, w: types)
    assert isinstance(decoded, NetworkMessage)
    assert_ua_equal(
        decoded.messages[0].payload,
        {k: ua.DataValue(v.Value) for k, v in pump_fields().items()},
    )
    with pytest.raises(DecodeError, match="metadata") as e:
        decode_message(dumps(value))  # no field types: RawData cannot be read
    assert e.value.path == "Temperature"


BAD_FIELD_VARIANT = (
    b'{"MessageId":"msg-4","MessageType":"ua-data","PublisherId":"bridge-1",'
    b'"Messages":{"DataSetWriterId":1,"Payload":{"Temperature":{"UaType":11,"Value":21.5},'
    b'"Pressure":{"UaType":19,"Value":{"Code":2156527616}}}}}'
)


def test_variant_field_with_bad_status_carries_the_status_code_exact() -> None:
    """§6.2.4.2 (Figure 23 / Table 26 of 1.05; the UADP flags of §7.2.4.5.4 say the same): a field
    represented as a Variant whose status is Bad carries the StatusCode (built-in type 19) instead
    of its value. Compact drops the Symbol, Verbose keeps it (OPC 10000-6 §5.4.2.12)."""
    m = DataSetMessage(
        dataset_writer_id=1,
        payload={
            "Temperature": ua.DataValue(ua.Variant(21.5, VT.Double)),
            # a stale value with a Bad status: the value is not sent
            "Pressure": ua.DataValue(ua.Variant(3.2, VT.Double), StatusCode=BAD),
        },
    )
    nm = NetworkMessage([m], message_id="msg-4", publisher_id=PUBLISHER)
    network = NM.NETWORK_MESSAGE_HEADER | NM.DATASET_MESSAGE_HEADER | NM.SINGLE_DATASET_MESSAGE
    network |= NM.PUBLISHER_ID
    compact = JsonMessageSettings(
        network_mask=network,
        dataset_mask=DM.DATASET_WRITER_ID | ENCODING_BITS[FieldEncoding.COMPACT],
        field_mask=FM(0),
    )
    value = encode_network_message(nm, compact)
    assert dumps(value) == BAD_FIELD_VARIANT
    assert_valid("ua-data", value)
    verbose = JsonMessageSettings(
        network_mask=network,
        dataset_mask=DM.DATASET_WRITER_ID | ENCODING_BITS[FieldEncoding.VERBOSE],
        field_mask=FM(0),
    )
    assert encode_network_message(nm, verbose)["Messages"]["Payload"]["Pressure"] == {
        "UaType": 19,
        "Value": {"Code": BAD_CODE, "Symbol": "BadNotConnected"},
    }
    # Without the field types the subscriber sees a StatusCode Variant; with them (the field is a
    # Double) the StatusCode is the field's status.
    plain = decode_message(BAD_FIELD_VARIANT)
    assert isinstance(plain, NetworkMessage) and plain.messages[0].payload is not None
    assert_ua_equal(
        plain.messages[0].payload["Pressure"], ua.DataValue(ua.Variant(BAD, VT.StatusCode))
    )
    typed = decode_message(BAD_FIELD_VARIANT, field_types=field_types)
    assert isinstance(typed, NetworkMessage) and typed.messages[0].payload is not None
    assert_ua_equal(typed.messages[0].payload["Pressure"], ua.DataValue(StatusCode=BAD))
    assert_ua_equal(
        typed.messages[0].payload["Temperature"], ua.DataValue(ua.Variant(21.5, VT.Double))
    )


def test_raw_data_field_with_bad_status_carries_the_status_code() -> None:
    """§6.2.4.2 for JSON (OPC Foundation Mantis 10154, the 1.05.04 JSON table): RawData handles a
    Bad field like a Variant and sends the StatusCode instead of the value; a subscriber with the
    field types reads it back as the field's status."""
    s = JsonMessageSettings(field_mask=FM.RAW_DATA)
    fields = {
        "Temperature": ua.DataValue(ua.Variant(21.5, VT.Double)),
        "Pressure": ua.DataValue(StatusCode=BAD),
    }
    value = encode_network_message(pump_message(pump(1, KEY, fields), "m"), s)
    assert value["Messages"][0]["Payload"] == {"Temperature": 21.5, "Pressure": {"Code": BAD_CODE}}
    decoded = decode_message(dumps(value), field_types=field_types)
    assert isinstance(decoded, NetworkMessage)
    assert_ua_equal(decoded.messages[0].payload, fields)


def sample_metadata() -> ua.DataSetMetaDataType:
    return ua.DataSetMetaDataType(
        Namespaces=["http://example.com/pump/"],
        Name="Pump",
        Description=ua.LocalizedText("Pump telemetry", "en"),
        Fields=[
            ua.FieldMetaData(
                Name="Temperature",
                Description=ua.LocalizedText("Bearing temperature", "en"),
                BuiltInType=11,
                DataType=ua.NodeId(11, 0),
                ValueRank=-1,
                DataSetFieldId=uuid.UUID("11111111-2222-3333-4444-555555555555"),
                Properties=[
                    ua.KeyValuePair(ua.QualifiedName("Unit", 1), ua.Variant("°C", VT.String))
                ],
            ),
            ua.FieldMetaData(
                Name="Mode",
                BuiltInType=6,
                DataType=ua.NodeId(3001, 1),  # an enumeration of the server's namespace
                ValueRank=-1,
                DataSetFieldId=uuid.UUID("66666666-7777-8888-9999-aaaaaaaaaaaa"),
            ),
        ],
        ConfigurationVersion=VERSION,
    )


METADATA_EXACT = (
    b'{"MessageId":"msg-5","MessageType":"ua-metadata","PublisherId":"bridge-1",'
    b'"DataSetWriterId":1,"WriterGroupName":"Line1","DataSetWriterName":"Pump1",'
    b'"Timestamp":"2024-05-01T12:00:00.123Z","MetaData":{"Namespaces":["http://example.com/pump/"],'
    b'"Name":"Pump","Description":{"Locale":"en","Text":"Pump telemetry"},"Fields":['
    b'{"Name":"Temperature","Description":{"Locale":"en","Text":"Bearing temperature"},'
    b'"BuiltInType":11,"DataType":"i=11","ValueRank":-1,'
    b'"DataSetFieldId":"11111111-2222-3333-4444-555555555555",'
    b'"Properties":[{"Key":"nsu=http://example.com/pump/;Unit",'
    b'"Value":{"UaType":12,"Value":"\xc2\xb0C"}}]},'
    b'{"Name":"Mode","BuiltInType":6,"DataType":"nsu=http://example.com/pump/;i=3001",'
    b'"ValueRank":-1,"DataSetFieldId":"66666666-7777-8888-9999-AAAAAAAAAAAA"}],'
    b'"ConfigurationVersion":{"MajorVersion":1714564800,"MinorVersion":1714564801}}}'
)


def test_metadata_message_exact() -> None:
    """§7.2.5.5.2: MessageId, MessageType, PublisherId, DataSetWriterId, WriterGroupName,
    DataSetWriterName, Timestamp, MetaData in that order. The MetaData's Namespaces array holds
    the URIs of namespace indexes 1, 2, … (index 0, OPC UA, is not in it: DataTypeSchemaHeader,
    OPC 10000-5 §12.31), so its NodeIds and QualifiedNames are written with ``nsu=``."""
    msg = MetaDataMessage(
        publisher_id=PUBLISHER,
        dataset_writer_id=1,
        metadata=sample_metadata(),
        writer_group_name=GROUP,
        dataset_writer_name="Pump1",
        timestamp=T0,
        message_id="msg-5",
    )
    value = encode_metadata_message(msg)
    assert dumps(value) == METADATA_EXACT
    assert_valid("ua-metadata", value)
    assert decode_message(METADATA_EXACT) == msg
    assert metadata_field_types(msg.metadata) == {"Temperature": VT.Double, "Mode": VT.Int32}


def test_metadata_field_types_read_raw_data() -> None:
    """The subscriber flow §7.2.5.5.2 exists for: take the field types from the retained
    ua-metadata and read a RawData payload with them."""
    meta = decode_message(METADATA_EXACT)
    assert isinstance(meta, MetaDataMessage)
    types = metadata_field_types(meta.metadata)
    data = decode_message(b'{"Temperature":21.5,"Mode":3}', field_types=lambda p, w: types)
    assert isinstance(data, NetworkMessage)
    assert_ua_equal(
        data.messages[0].payload,
        {
            "Temperature": ua.DataValue(ua.Variant(21.5, VT.Double)),
            "Mode": ua.DataValue(ua.Variant(3, VT.Int32)),
        },
    )


def test_status_message_cyclic_exact() -> None:
    """§7.2.5.5.5: a cyclic status carries Timestamp and NextReportTime; Status is the
    PubSubState number (Operational = 2)."""
    msg = StatusMessage(PUBLISHER, ua.PubSubState.Operational, True, T0, T1, message_id="msg-6")
    value = encode_status_message(msg)
    assert dumps(value) == (
        b'{"MessageId":"msg-6","MessageType":"ua-status","PublisherId":"bridge-1",'
        b'"Timestamp":"2024-05-01T12:00:00.123Z","IsCyclic":true,"Status":2,'
        b'"NextReportTime":"2024-05-01T12:00:01Z"}'
    )
    assert_valid("ua-status", value)
    assert decode_message(dumps(value)) == msg


def test_status_message_not_cyclic_exact() -> None:
    """§7.2.5.5.5: not cyclic (e.g. the MQTT last will of a dead publisher) means no Timestamp
    and no NextReportTime."""
    msg = StatusMessage(PUBLISHER, ua.PubSubState.Error, message_id="msg-7")
    value = encode_status_message(msg)
    assert dumps(value) == (
        b'{"MessageId":"msg-7","MessageType":"ua-status","PublisherId":"bridge-1",'
        b'"IsCyclic":false,"Status":3}'
    )
    assert_valid("ua-status", value)
    assert decode_message(dumps(value)) == msg


def test_a_cyclic_status_is_overdue_half_a_period_after_its_next_report_time() -> None:
    """§7.2.4.6.7: a cyclic publisher promises its next report by NextReportTime; one that
    misses it by more than half a period may be gone. A non-cyclic status never is overdue."""
    period = timedelta(seconds=10)
    msg = StatusMessage(PUBLISHER, ua.PubSubState.Operational, True, T0, T0 + period)
    assert not status_overdue(msg, T0 + period)
    assert not status_overdue(msg, T0 + period * 1.5)
    assert status_overdue(msg, T0 + period * 1.5 + timedelta(microseconds=1))
    error = StatusMessage(PUBLISHER, ua.PubSubState.Error)
    assert not status_overdue(error, T0 + timedelta(days=365))


def test_status_expiry_outlives_one_late_refresh() -> None:
    """MQTT Message Expiry in whole seconds: two periods, rounded up."""
    assert [status_expiry_s(s) for s in (1, 1.2, 60)] == [2, 3, 120]


def test_connection_message_exact() -> None:
    """§7.2.5.5.6: MessageId, MessageType, PublisherId, Timestamp, Connection (a Compact
    PubSubConnectionDataType whose PublisherId is a Variant; "the Address ... shall be empty",
    so none is written)."""
    connection = ua.PubSubConnectionDataType(
        Name="bridge-1",
        PublisherId=ua.Variant(PUBLISHER, VT.String),
        TransportProfileUri="http://opcfoundation.org/UA-Profile/Transport/pubsub-mqtt-json",
        Address=None,
        TransportSettings=None,
    )
    msg = ConnectionMessage(PUBLISHER, connection, T0, message_id="msg-8")
    value = encode_connection_message(msg)
    assert dumps(value) == (
        b'{"MessageId":"msg-8","MessageType":"ua-connection","PublisherId":"bridge-1",'
        b'"Timestamp":"2024-05-01T12:00:00.123Z","Connection":{"Name":"bridge-1",'
        b'"Enabled":true,"PublisherId":{"UaType":12,"Value":"bridge-1"},'
        b'"TransportProfileUri":"http://opcfoundation.org/UA-Profile/Transport/pubsub-mqtt-json"}}'
    )
    assert_valid("ua-connection", value)
    decoded = decode_message(dumps(value))
    assert isinstance(decoded, ConnectionMessage)
    assert (decoded.message_id, decoded.publisher_id, decoded.timestamp) == ("msg-8", PUBLISHER, T0)
    got = decoded.connection
    assert (got.Name, got.Enabled, got.TransportProfileUri) == (
        "bridge-1",
        True,
        connection.TransportProfileUri,
    )
    assert_ua_equal(got.PublisherId, connection.PublisherId)


# ------------------------------------------------------------------ decoders: tolerant & strict


def _with_unknown_members(value: Any) -> Any:
    """Add a vendor member to every object (tolerant readers ignore what they do not know)."""
    if isinstance(value, dict):
        out = {k: _with_unknown_members(v) for k, v in value.items()}
        out["XVendorExtension"] = {"anything": [1, "two", None]}
        return out
    if isinstance(value, list):
        return [_with_unknown_members(v) for v in value]
    return value


def _strip_payload_extras(value: Any) -> Any:
    """Unknown members inside a payload would be new fields: keep them out of the payload object
    itself, but leave them inside each field's Variant/DataValue object."""
    if isinstance(value, dict):
        out = {k: _strip_payload_extras(v) for k, v in value.items()}
        if "Payload" in out and isinstance(out["Payload"], dict):
            out["Payload"].pop("XVendorExtension", None)
        return out
    if isinstance(value, list):
        return [_strip_payload_extras(v) for v in value]
    return value


def test_decoders_ignore_unknown_members_everywhere() -> None:
    """Tolerant readers: an unknown member in any object — the NetworkMessage, a DataSetMessage,
    a field's DataValue, MetaDataVersion, MetaData and its Fields, a status or connection message
    — changes nothing; the schemas accept it too."""
    data = roundtrip(
        encode_network_message(
            network_message([dataset_message(1, KEY)]), JsonMessageSettings(dataset_mask=MATRIX_DM)
        )
    )
    noisy = _strip_payload_extras(_with_unknown_members(data))
    assert noisy != data
    assert_valid("ua-data", noisy)
    assert decode_message(noisy, field_types=field_types) == decode_message(
        data, field_types=field_types
    )
    for encoded, schema in [
        (METADATA_EXACT, "ua-metadata"),
        (
            dumps(
                encode_status_message(
                    StatusMessage(PUBLISHER, ua.PubSubState.Operational, True, T0, T1)
                )
            ),
            "ua-status",
        ),
        (
            dumps(
                encode_connection_message(
                    ConnectionMessage(PUBLISHER, ua.PubSubConnectionDataType(Name="c"), T0)
                )
            ),
            "ua-connection",
        ),
    ]:
        plain = loads(encoded)
        noisy = _with_unknown_members(plain)
        assert_valid(schema, noisy)
        assert decode_message(noisy) == decode_message(plain)


def _data_message() -> dict[str, Any]:
    value = roundtrip(
        encode_network_message(network_message([dataset_message(1, KEY)]), JsonMessageSettings())
    )
    assert isinstance(value, dict)
    return value


def _metadata_message() -> dict[str, Any]:
    value = loads(METADATA_EXACT)
    assert isinstance(value, dict)
    return value


def _status_message(cyclic: bool = True) -> dict[str, Any]:
    msg = StatusMessage(PUBLISHER, ua.PubSubState.Operational, cyclic, T0, T1)
    return roundtrip(encode_status_message(msg))  # type: ignore[no-any-return]


def _drop(value: dict[str, Any], *path: str | int) -> dict[str, Any]:
    out = copy.deepcopy(value)
    target: Any = out
    for p in path[:-1]:
        target = target[p]
    del target[path[-1]]
    return out


def _set(value: dict[str, Any], new: Any, *path: str | int) -> dict[str, Any]:
    out = copy.deepcopy(value)
    target: Any = out
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = new
    return out


# (case, message, schema, DecodeError.path)
# fmt: off
STRICT_CASES: list[tuple[str, Callable[[], Any], str, str]] = [
    ("MessageId missing (§7.2.5.3)",
     lambda: _drop(_data_message(), "MessageId"), "ua-data", "MessageId"),
    ("MessageId not a string",
     lambda: _set(_data_message(), 7, "MessageId"), "ua-data", "MessageId"),
    ("Messages missing (§7.2.5.3)",
     lambda: _drop(_data_message(), "Messages"), "ua-data", "Messages"),
    ("DataSetWriterId above UInt16 (§7.2.5.4)",
     lambda: _set(_data_message(), 65536, "Messages", 0, "DataSetWriterId"),
     "ua-data", "Messages/0/DataSetWriterId"),
    ("DataSetWriterId negative",
     lambda: _set(_data_message(), -1, "Messages", 0, "DataSetWriterId"),
     "ua-data", "Messages/0/DataSetWriterId"),
    ("DataSetWriterId boolean",
     lambda: _set(_data_message(), True, "Messages", 0, "DataSetWriterId"),
     "ua-data", "Messages/0/DataSetWriterId"),
    ("SequenceNumber above UInt32",
     lambda: _set(_data_message(), 2**32, "Messages", 0, "SequenceNumber"),
     "ua-data", "Messages/0/SequenceNumber"),
    ("key frame without Payload (§7.2.5.4.1)",
     lambda: _drop(_data_message(), "Messages", 0, "Payload"),
     "ua-data", "Messages/0/Payload"),
    ("unknown DataSetMessage type",
     lambda: _set(_data_message(), "ua-sometimes", "Messages", 0, "MessageType"),
     "ua-data", "Messages/0/MessageType"),
    ("Timestamp not a date",
     lambda: _set(_data_message(), "yesterday", "Messages", 0, "Timestamp"),
     "ua-data", "Messages/0/Timestamp"),
    ("DataSetClassId not a Guid",
     lambda: _set(_data_message(), "not-a-guid", "DataSetClassId"),
     "ua-data", "DataSetClassId"),
    ("MetaData missing in ua-metadata (§7.2.5.5.2)",
     lambda: _drop(_metadata_message(), "MetaData"), "ua-metadata", "MetaData"),
    ("DataSetWriterId missing in ua-metadata",
     lambda: _drop(_metadata_message(), "DataSetWriterId"), "ua-metadata", "DataSetWriterId"),
    ("PublisherId missing in ua-metadata",
     lambda: _drop(_metadata_message(), "PublisherId"), "ua-metadata", "PublisherId"),
    ("BuiltInType not a Byte in FieldMetaData",
     lambda: _set(_metadata_message(), "Double", "MetaData", "Fields", 0, "BuiltInType"),
     "ua-metadata", "MetaData/Fields/0/BuiltInType"),
    ("Status missing in ua-status (§7.2.5.5.5)",
     lambda: _drop(_status_message(), "Status"), "ua-status", "Status"),
    ("Status not a PubSubState",
     lambda: _set(_status_message(), 5, "Status"), "ua-status", "Status"),
    ("Timestamp missing in a cyclic ua-status (§7.2.5.5.5)",
     lambda: _drop(_status_message(), "Timestamp"), "ua-status", "Timestamp"),
    ("NextReportTime missing in a cyclic ua-status (§7.2.5.5.5)",
     lambda: _drop(_status_message(), "NextReportTime"), "ua-status", "NextReportTime"),
    ("IsCyclic not a boolean",
     lambda: _set(_status_message(), "yes", "IsCyclic"), "ua-status", "IsCyclic"),
    ("Connection missing in ua-connection (§7.2.5.5.6)",
     lambda: {"MessageId": "m", "MessageType": "ua-connection", "PublisherId": "p"},
     "ua-connection", "Connection"),
]
# fmt: on


@pytest.mark.parametrize(
    ("message", "schema", "path"),
    [c[1:] for c in STRICT_CASES],
    ids=[c[0] for c in STRICT_CASES],
)
def test_decoders_reject_bad_required_members_naming_them(
    message: Callable[[], Any], schema: str, path: str
) -> None:
    """A missing or malformed required member raises DecodeError whose path names the member;
    the JSON Schema rejects the same message."""
    value = message()
    assert_invalid(schema, value)
    with pytest.raises(DecodeError) as e:
        decode_message(value)
    assert e.value.path == path, str(e.value)
    with pytest.raises(DecodeError):
        decode_message(json.dumps(value))


@pytest.mark.parametrize(
    ("member", "value"),
    [("DataSetWriterId", "²"), ("DataSetWriterId", "٧"), ("Status", "Bogus_²"), ("Status", "X_٣")],
)
def test_non_ascii_digits_are_a_decode_error(member: str, value: str) -> None:
    """Found by fuzzing: str.isdigit() accepts "²" and other digits that int() rejects; the
    decoders must answer with DecodeError naming the member, not ValueError."""
    if member == "Status":
        message: dict[str, Any] = _set(_status_message(), value, "Status")
        path = "Status"
    else:
        message = _set(_data_message(), value, "Messages", 0, member)
        path = f"Messages/0/{member}"
    with pytest.raises(DecodeError) as e:
        decode_message(message)
    assert e.value.path == path


def test_unknown_message_type_is_a_decode_error() -> None:
    """Other Part 14 message types (ua-application, …) are not decoded here: DecodeError, not a
    guess."""
    for kind in ("ua-application", "ua-endpoints", "vendor-thing", 7):
        with pytest.raises(DecodeError) as e:
            decode_message({"MessageId": "m", "MessageType": kind, "PublisherId": "p"})
        assert e.value.path.endswith("MessageType")


def test_status_message_without_is_cyclic_is_not_cyclic() -> None:
    """§7.2.5.5.5: IsCyclic false means no Timestamp/NextReportTime; a missing IsCyclic reads
    as false (the field has no "mandatory" in the table)."""
    value = {"MessageId": "m", "MessageType": "ua-status", "PublisherId": "p", "Status": 3}
    assert_valid("ua-status", value)
    assert decode_message(value) == StatusMessage("p", ua.PubSubState.Error, message_id="m")
    verbose = dict(value, Status="Operational_2")  # the Verbose enumeration form
    assert_valid("ua-status", verbose)
    decoded = decode_message(verbose)
    assert isinstance(decoded, StatusMessage) and decoded.status is ua.PubSubState.Operational


V104_MESSAGE: dict[str, Any] = {
    "MessageId": "old-1",
    "MessageType": "ua-data",
    "PublisherId": "bridge-1",
    "Messages": [
        {
            "DataSetWriterId": "7",  # 1.04 Table 92: a String
            "SequenceNumber": 3,
            "Timestamp": "2024-05-01T12:00:00.123Z",
            "Status": 1083179008,  # 1.04: a StatusCode is a number
            "MessageType": "ua-keyframe",
            "Payload": {
                "Temperature": {"Type": 11, "Body": 21.5},
                "Count": {"Type": 8, "Body": "1099511627776"},
                "Pressure": {
                    "Value": {"Type": 11, "Body": 1.25},
                    "Status": 1083179008,
                    "SourceTimestamp": "2024-05-01T12:00:00.123Z",
                },
                "Flow": {"Status": BAD_CODE},
            },
        }
    ],
}


def test_104_value_forms_decode() -> None:
    """OPC 10000-6 Annex H / 1.04: Variants as {"Type","Body"}, DataValues with a nested Value
    Variant and a numeric Status, a numeric DataSetMessage Status, a String DataSetWriterId.
    The ua-data schema accepts them too."""
    assert_valid("ua-data", V104_MESSAGE)
    expected = {
        "Temperature": ua.DataValue(ua.Variant(21.5, VT.Double)),
        "Count": ua.DataValue(ua.Variant(2**40, VT.Int64)),
        "Pressure": ua.DataValue(
            ua.Variant(1.25, VT.Double), StatusCode=UNCERTAIN, SourceTimestamp=T0
        ),
        "Flow": ua.DataValue(StatusCode=BAD),
    }
    for types in (None, field_types):
        decoded = decode_message(V104_MESSAGE, field_types=types)
        assert isinstance(decoded, NetworkMessage)
        (m,) = decoded.messages
        assert (m.dataset_writer_id, m.sequence_number, m.status) == (7, 3, UNCERTAIN)
        assert_ua_equal(m.payload, expected)


def test_104_metadata_with_node_id_objects_decodes() -> None:
    """1.04 (Annex H.2): a NodeId is an object {"IdType","Id","Namespace"}; the decoder tells the
    forms apart by JSON type."""
    value = _metadata_message()
    fields = value["MetaData"]["Fields"]
    fields[0]["DataType"] = {"Id": 11}
    fields[1]["DataType"] = {"Id": 3001, "Namespace": 1}
    assert_valid("ua-metadata", value)
    decoded = decode_metadata_message(value)
    assert decoded.metadata.Fields[0].DataType == ua.NodeId(11, 0)
    assert decoded.metadata.Fields[1].DataType == ua.NodeId(3001, 1)


def test_null_and_valueless_fields_decode() -> None:
    """OPC 10000-6 §5.4.2.17/§5.4.2.18: a null Variant is JSON null, and a DataValue whose value
    is null has no Value member — with only a status, only timestamps, or nothing at all."""
    value = {
        "Payload": {
            "A": None,
            "B": {},
            "C": {"Status": {"Code": BAD_CODE}},
            "D": {"SourceTimestamp": "2024-05-01T12:00:00.123Z"},
        }
    }
    assert_valid("ua-data", value)
    decoded = decode_message(value)
    assert isinstance(decoded, NetworkMessage)
    assert_ua_equal(
        decoded.messages[0].payload,
        {
            "A": ua.DataValue(ua.Variant()),
            "B": ua.DataValue(ua.Variant()),
            "C": ua.DataValue(StatusCode=BAD),
            "D": ua.DataValue(SourceTimestamp=T0),
        },
    )


def test_layouts_without_network_header_decode() -> None:
    """§7.2.5.3: without the NetworkMessage header the message is an array of DataSetMessages,
    one DataSetMessage, or (no DataSetMessage header either) a bare payload."""
    dsm = {"DataSetWriterId": 5, "SequenceNumber": 9, "Payload": {"A": {"UaType": 6, "Value": 1}}}
    for value, count in ([dsm, dsm], 2), (dsm, 1), ({"A": {"UaType": 6, "Value": 1}}, 1):
        assert_valid("ua-data", value)
        decoded = decode_message(value)
        assert isinstance(decoded, NetworkMessage) and len(decoded.messages) == count
        assert_ua_equal(decoded.messages[0].payload, {"A": ua.DataValue(ua.Variant(1, VT.Int32))})


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_documented_draft_2020_12(name: str) -> None:
    """Each schema is draft 2020-12, has a stable $id under https://opcua-mqtt.dev/schemas/, a
    title and a description, and is found from the package (source tree or installed)."""
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://opcua-mqtt.dev/schemas/{name}.schema.json"
    assert schema["title"] and schema["description"]
    assert schema_path(name).name == f"{name}.schema.json"
    assert validator(name) is validator(name)  # cached


def test_schemas_reject_wrong_types_of_known_members() -> None:
    """Unknown members are allowed, but known members have their standard types."""
    data = _data_message()
    for bad in [
        _set(data, "ua-metadata", "MessageType"),
        _set(data, 12, "PublisherId"),
        _set(data, "7x", "Messages", 0, "DataSetWriterId"),
        _set(data, {"MajorVersion": -1}, "Messages", 0, "MetaDataVersion"),
        _set(data, "2024-05-01 noon", "Messages", 0, "Timestamp"),
        _set(data, "Bad", "Messages", 0, "Status"),
        _set(data, [], "Messages", 0, "Payload"),
        _set(data, 5, "Messages"),
        [{"MessageType": "ua-keepalive", "Payload": "x"}],
    ]:
        assert_invalid("ua-data", bad)
    meta = _metadata_message()
    assert_valid("ua-metadata", _set(meta, "eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl", "JwsSignature"))
    for sig in ["a.b.c", "a..b..c", "..", "a..b=", 5]:
        assert_invalid("ua-metadata", _set(meta, sig, "JwsSignature"))
    assert_invalid("ua-metadata", _set(meta, 26, "MetaData", "Fields", 0, "BuiltInType"))
    assert_invalid("ua-metadata", _set(meta, "x", "MetaData", "Fields", 0, "DataSetFieldId"))
    assert_invalid("ua-metadata", _set(meta, [1], "MetaData", "Namespaces"))
    assert_invalid("ua-status", _set(_status_message(False), True, "IsCyclic"))
    assert_valid("ua-status", _status_message(False))


# ------------------------------------------------------------------ property-based round trips

SAFE_NAMES = st.from_regex(r"[A-Z][a-z]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("Payload",)
)
SELF_DESCRIBING = [FieldEncoding.COMPACT, FieldEncoding.VERBOSE, FieldEncoding.REVERSIBLE]


@st.composite
def dataset_masks(draw: st.DrawFn, encoding: FieldEncoding) -> DM:
    header = DM(draw(st.integers(0, 2**12 - 1))) & ALL_DM_HEADER
    return header | ENCODING_BITS[encoding]


@st.composite
def self_describing_cases(draw: st.DrawFn) -> tuple[NetworkMessage, JsonMessageSettings]:
    encoding = draw(st.sampled_from(SELF_DESCRIBING))
    fm = FM(draw(st.integers(0, 31)))  # Variant or DataValue forms: no RawData
    nm = draw(st.sampled_from(ALLOWED_NETWORK_MASKS)) & ~NM.SINGLE_DATASET_MESSAGE
    s = JsonMessageSettings(
        network_mask=nm, dataset_mask=draw(dataset_masks(encoding)), field_mask=fm
    )
    fields = draw(st.dictionaries(SAFE_NAMES, data_values(), min_size=1, max_size=3))
    m = dataset_message(3, draw(st.sampled_from([KEY, DELTA, EVENT])))
    m.payload = fields
    return network_message([m]), s


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(self_describing_cases())
def test_any_value_round_trips_in_the_self_describing_forms(
    case: tuple[NetworkMessage, JsonMessageSettings],
) -> None:
    """Any Variant/DataValue (tests.strategies), any masks, Compact/Verbose/Reversible, Variant or
    DataValue fields: valid JSON for the schema, and a subscriber without metadata decodes what
    the masks let through."""
    nm, s = case
    codec = JsonCodec(s.field_encoding, NAMESPACES, SERVER_URIS)
    value = encode_network_message(nm, s, codec)
    assert_valid("ua-data", value)
    decoded = decode_message(
        dumps(value), codec=JsonCodec(FieldEncoding.COMPACT, NAMESPACES, SERVER_URIS)
    )
    assert isinstance(decoded, NetworkMessage)
    (m,) = nm.messages
    assert m.payload is not None
    assert_ua_equal(
        decoded.messages[0].payload,
        {k: expected_field(v, s, typed=False) for k, v in m.payload.items()},
    )


# fmt: off
RAW_TYPES = [
    VT.Boolean, VT.SByte, VT.Byte, VT.Int16, VT.UInt16, VT.Int32, VT.UInt32, VT.Int64,
    VT.UInt64, VT.Float, VT.Double, VT.String, VT.DateTime, VT.Guid, VT.ByteString,
    VT.NodeId, VT.QualifiedName, VT.LocalizedText, VT.StatusCode,
]
# fmt: on


@st.composite
def raw_fields(draw: st.DrawFn) -> tuple[dict[str, ua.DataValue], dict[str, ua.VariantType]]:
    names = draw(st.lists(SAFE_NAMES, min_size=1, max_size=4, unique=True))
    fields: dict[str, ua.DataValue] = {}
    types: dict[str, ua.VariantType] = {}
    for name in names:
        vt = draw(st.sampled_from(RAW_TYPES))
        variant = draw(variants_of(vt, shapes=("scalar", "array")))
        if variant.Value is None or (variant.is_array and any(v is None for v in variant.Value)):
            continue  # RawData has no null: the field's type cannot say "no value"
        status = draw(st.sampled_from([ua.StatusCode(0), UNCERTAIN, BAD]))
        if vt is VT.StatusCode and status.is_bad():
            status = ua.StatusCode(0)  # a StatusCode field cannot tell its status from its value
        fields[name], types[name] = ua.DataValue(variant, StatusCode=status), vt
    return fields, types


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw_fields(),
    st.sampled_from([FieldEncoding.COMPACT, FieldEncoding.VERBOSE]),
    st.sampled_from(ALLOWED_NETWORK_MASKS),
)
def test_raw_data_round_trips_with_the_field_types(
    case: tuple[dict[str, ua.DataValue], dict[str, ua.VariantType]],
    encoding: FieldEncoding,
    nm: NM,
) -> None:
    """RawData (§6.2.4.2) drops the type: with the writer's field types a subscriber reads the
    values back; Bad fields come back as their status."""
    fields, types = case
    s = JsonMessageSettings(
        network_mask=nm & ~NM.SINGLE_DATASET_MESSAGE,
        dataset_mask=ALL_DM_HEADER | ENCODING_BITS[encoding],
        field_mask=FM.RAW_DATA,
    )
    m = dataset_message(1, KEY)
    m.payload = fields
    codec = JsonCodec(encoding, NAMESPACES, SERVER_URIS)
    value = encode_network_message(network_message([m]), s, codec)
    assert_valid("ua-data", value)
    decoded = decode_message(dumps(value), codec=codec, field_types=lambda p, w: types)
    assert isinstance(decoded, NetworkMessage)
    assert_ua_equal(
        decoded.messages[0].payload,
        {k: expected_field(v, s, typed=True) for k, v in fields.items()},
    )


# ------------------------------------------------------------------ malformed input: fuzzing


def _connection_message() -> Any:
    connection = ua.PubSubConnectionDataType(Name="c", PublisherId=ua.Variant(PUBLISHER, VT.String))
    return roundtrip(encode_connection_message(ConnectionMessage(PUBLISHER, connection, T0)))


def _valid_documents() -> list[Any]:
    """Seeds for the mutations: data messages in every field encoding, field form and header
    layout, and the other message types."""
    docs: list[Any] = []
    field_masks = (FM(0), FM.RAW_DATA, FM.STATUS_CODE | FM.SOURCE_TIMESTAMP | FM.SERVER_TIMESTAMP)
    layouts = (FULL_NM_HEADER, NM.DATASET_MESSAGE_HEADER, NM(0), NM.SINGLE_DATASET_MESSAGE)
    for encoding in ENCODINGS:
        for fm in field_masks:
            for nm in layouts:
                dm = ALL_DM_HEADER | ENCODING_BITS[encoding]
                s = JsonMessageSettings(network_mask=nm, dataset_mask=dm, field_mask=fm)
                msgs = [dataset_message(1, KEY)]
                if not nm & NM.SINGLE_DATASET_MESSAGE and nm & NM.DATASET_MESSAGE_HEADER:
                    msgs.append(dataset_message(2, KEEP))
                docs.append(roundtrip(encode_network_message(network_message(msgs), s)))
    docs += [
        loads(METADATA_EXACT),
        _status_message(True),
        _status_message(False),
        _connection_message(),
        copy.deepcopy(V104_MESSAGE),
    ]
    return docs


VALID_DOCUMENTS = _valid_documents()
# fmt: off
JSON_KEYS = st.one_of(
    st.sampled_from([
        "MessageId", "MessageType", "PublisherId", "WriterGroupName", "DataSetClassId",
        "Messages", "DataSetWriterId", "DataSetWriterName", "SequenceNumber", "MetaDataVersion",
        "MajorVersion", "MinorVersion", "Timestamp", "Status", "Payload", "UaType", "Value",
        "Type", "Body", "Code", "Symbol", "Dimensions", "SourceTimestamp", "SourcePicoseconds",
        "MetaData", "Fields", "Namespaces", "DataType", "BuiltInType", "Name", "Properties",
        "Key", "IsCyclic", "NextReportTime", "Connection", "UaTypeId", "UaEncoding", "UaBody",
        "IdType", "Id", "Namespace", "Locale", "Text",
    ]),
    st.text(max_size=6),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and the infinities too: the standard library's json.loads makes them
    st.text(max_size=12),
    st.sampled_from([
        "ua-data", "ua-metadata", "ua-status", "ua-connection", "ua-keyframe", "ua-deltaframe",
        "ua-event", "ua-keepalive", "2024-05-01T12:00:00Z", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59+23:59", "i=11", "nsu=urn:x;s=a", "ns=99999;i=1", "g=zz",
        "²", "١٢", "Operational_2", "X_²", "Error_٣", "", "NaN", "-Infinity", "AAAA",
        "5a1c4b3e-0f0e-4d2c",
    ]),
)
# fmt: on
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=5),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """A valid message with one to four members deleted, replaced by random JSON, or added."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID_DOCUMENTS)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent: Any = doc
        for p in path[:-1]:
            parent = parent[p]
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif isinstance(parent, dict):
            parent[draw(JSON_KEYS)] = draw(JSON_VALUES)
        else:
            parent.insert(draw(st.integers(0, len(parent))), draw(JSON_VALUES))
    return doc


def _decode_only_decode_error(data: Any, use_types: bool) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data, field_types=field_types if use_types else None)


FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=list(HealthCheck))


@pytest.mark.timeout(120)
@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    """Anything off the wire either decodes or raises DecodeError: never another exception."""
    _decode_only_decode_error(data, False)
    _decode_only_decode_error(data.decode("utf-8", "replace"), True)


@pytest.mark.timeout(120)
@FUZZ
@given(JSON_VALUES, st.booleans())
def test_random_json_raises_only_decode_error(value: Any, use_types: bool) -> None:
    _decode_only_decode_error(value, use_types)
    try:
        text = json.dumps(value)
    except ValueError:
        return
    _decode_only_decode_error(text.encode(), use_types)


@pytest.mark.slow
@pytest.mark.timeout(120)
@settings(max_examples=500, deadline=2000, suppress_health_check=list(HealthCheck))
@given(mutated_documents(), st.booleans())
def test_mutated_messages_raise_only_decode_error(value: Any, use_types: bool) -> None:
    """Valid messages of every kind with members deleted, replaced by random JSON or added: the
    decoders answer with a message or a DecodeError, never another exception."""
    _decode_only_decode_error(value, use_types)


def test_hostile_nesting_is_a_decode_error_not_a_crash() -> None:
    """Deep nesting is refused (OPC 10000-6 §5.1.5: decoders bound it) instead of exhausting the
    stack; likewise JSON nested past the parser's limit."""
    deep: Any = {"UaType": 6, "Value": 1}
    for _ in range(500):
        deep = {"UaType": 24, "Value": deep}
    with pytest.raises(DecodeError):
        decode_message({"Payload": {"A": deep}})
    with pytest.raises(DecodeError):
        decode_message(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(DecodeError):
        decode_message(b"\xff\xfe not json")

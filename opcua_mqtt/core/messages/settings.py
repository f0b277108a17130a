"""The content masks of Part 14 (§6.2.4.2, §6.3.2) and the settings of one writer built on them."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Final

from opcua_mqtt.core.uajson.codec import DataValueMembers
from opcua_mqtt.core.uajson.forms import FieldEncoding


class NetworkMessageContentMask(enum.IntFlag):
    """JsonNetworkMessageContentMask (Part 14 §6.3.2.1.1)."""

    NETWORK_MESSAGE_HEADER = 1
    DATASET_MESSAGE_HEADER = 2
    SINGLE_DATASET_MESSAGE = 4
    PUBLISHER_ID = 8
    DATASET_CLASS_ID = 16
    REPLY_TO = 32
    WRITER_GROUP_NAME = 64


class DataSetMessageContentMask(enum.IntFlag):
    """JsonDataSetMessageContentMask (Part 14 §6.3.2.2.1)."""

    DATASET_WRITER_ID = 1
    METADATA_VERSION = 2
    SEQUENCE_NUMBER = 4
    TIMESTAMP = 8
    STATUS = 16
    MESSAGE_TYPE = 32
    DATASET_WRITER_NAME = 64
    FIELD_ENCODING_1 = 128  # "ReversibleFieldEncoding" in 1.04
    PUBLISHER_ID = 256
    WRITER_GROUP_NAME = 512
    MINOR_VERSION = 1024
    FIELD_ENCODING_2 = 2048


class DataSetFieldContentMask(enum.IntFlag):
    """DataSetFieldContentMask (Part 14 §6.2.4.2); no bit set means fields travel as Variants."""

    STATUS_CODE = 1
    SOURCE_TIMESTAMP = 2
    SERVER_TIMESTAMP = 4
    SOURCE_PICOSECONDS = 8
    SERVER_PICOSECONDS = 16
    RAW_DATA = 32


class DataSetMessageType(enum.Enum):
    KEY_FRAME = "ua-keyframe"
    DELTA_FRAME = "ua-deltaframe"
    EVENT = "ua-event"
    KEEP_ALIVE = "ua-keepalive"


NM = NetworkMessageContentMask
DM = DataSetMessageContentMask
FM = DataSetFieldContentMask

_FIELD_ENCODINGS: Final = {
    (False, True): FieldEncoding.VERBOSE,
    (True, True): FieldEncoding.COMPACT,
    (False, False): FieldEncoding.NON_REVERSIBLE,
    (True, False): FieldEncoding.REVERSIBLE,
}


#: The DataSetMessage header members the default layout (and the configuration) writes: every
#: member but the field encoding bits and the 1.05 PublisherId/WriterGroupName/MinorVersion.
DATASET_HEADER_BITS: Final = (
    DM.DATASET_WRITER_ID
    | DM.METADATA_VERSION
    | DM.SEQUENCE_NUMBER
    | DM.TIMESTAMP
    | DM.STATUS
    | DM.MESSAGE_TYPE
    | DM.DATASET_WRITER_NAME
)


#: The names of the JsonNetworkMessageContentMask bits, as the configuration writes them
#: (``network_message_content``, Part 14 §6.3.2.1.1).
NETWORK_CONTENT_NAMES: Final = {
    "NetworkMessageHeader": NM.NETWORK_MESSAGE_HEADER,
    "DataSetMessageHeader": NM.DATASET_MESSAGE_HEADER,
    "SingleDataSetMessage": NM.SINGLE_DATASET_MESSAGE,
    "PublisherId": NM.PUBLISHER_ID,
    "DataSetClassId": NM.DATASET_CLASS_ID,
    "ReplyTo": NM.REPLY_TO,
    "WriterGroupName": NM.WRITER_GROUP_NAME,
}
#: The names of the JsonDataSetMessageContentMask header bits (``dataset_message_content``,
#: Part 14 §6.3.2.3.1); the field encoding bits come from the ``encoding`` option instead.
DATASET_CONTENT_NAMES: Final = {
    "DataSetWriterId": DM.DATASET_WRITER_ID,
    "MetaDataVersion": DM.METADATA_VERSION,
    "SequenceNumber": DM.SEQUENCE_NUMBER,
    "Timestamp": DM.TIMESTAMP,
    "Status": DM.STATUS,
    "MessageType": DM.MESSAGE_TYPE,
    "DataSetWriterName": DM.DATASET_WRITER_NAME,
    "PublisherId": DM.PUBLISHER_ID,
    "WriterGroupName": DM.WRITER_GROUP_NAME,
    "MinorVersion": DM.MINOR_VERSION,
}
#: DataSetMessage members by which a reader tells a DataSetMessage without Payload (a
#: keep-alive) from a bare payload object (core/messages/data.py, schemas/ua-data.schema.json).
KEEP_ALIVE_MARKERS: Final = (
    DM.DATASET_WRITER_ID | DM.METADATA_VERSION | DM.SEQUENCE_NUMBER | DM.MESSAGE_TYPE
)


def network_mask(names: Iterable[str]) -> NetworkMessageContentMask:
    """The JsonNetworkMessageContentMask of a list of bit names."""
    mask = NM(0)
    for name in names:
        mask |= NETWORK_CONTENT_NAMES[name]
    return mask


def dataset_header_mask(names: Iterable[str]) -> DataSetMessageContentMask:
    """The header bits of a JsonDataSetMessageContentMask from a list of bit names."""
    mask = DM(0)
    for name in names:
        mask |= DATASET_CONTENT_NAMES[name]
    return mask


def mask_names(mask: int, names: Mapping[str, int]) -> list[str]:
    """The names of the bits set in ``mask``, in the table's (bit) order."""
    return [name for name, bit in names.items() if mask & bit]


@dataclasses.dataclass(frozen=True, slots=True)
class JsonMessageSettings:
    """The three masks of one WriterGroup/DataSetWriter; the defaults are a readable standard
    layout: full headers, Compact values, each field a DataValue with status and source time."""

    network_mask: NetworkMessageContentMask = (
        NM.NETWORK_MESSAGE_HEADER
        | NM.DATASET_MESSAGE_HEADER
        | NM.PUBLISHER_ID
        | NM.WRITER_GROUP_NAME
    )
    dataset_mask: DataSetMessageContentMask = (
        DATASET_HEADER_BITS | DM.FIELD_ENCODING_1 | DM.FIELD_ENCODING_2
    )
    field_mask: DataSetFieldContentMask = FM.STATUS_CODE | FM.SOURCE_TIMESTAMP

    def __post_init__(self) -> None:
        # Part 14 §6.3.2.1.1: without the NetworkMessage header, PublisherId and DataSetClassId
        # have nowhere to go.
        if not self.network_mask & NM.NETWORK_MESSAGE_HEADER and self.network_mask & (
            NM.PUBLISHER_ID | NM.DATASET_CLASS_ID | NM.WRITER_GROUP_NAME
        ):
            raise ValueError(
                "PublisherId, DataSetClassId and WriterGroupName need the NetworkMessageHeader bit"
            )

    @property
    def sends_keep_alives(self) -> bool:
        """Whether a keep-alive can be told from a data message: it needs a DataSetMessage
        header with a member that marks it as one (a bare ``{"Timestamp": ...}`` reads as a
        payload with a field named Timestamp). Otherwise the writer sends none (Part 14
        §7.2.5.4.1: keep-alives are optional)."""
        return bool(
            self.network_mask & NM.DATASET_MESSAGE_HEADER and self.dataset_mask & KEEP_ALIVE_MARKERS
        )

    @property
    def field_encoding(self) -> FieldEncoding:
        return _FIELD_ENCODINGS[
            (
                bool(self.dataset_mask & DM.FIELD_ENCODING_1),
                bool(self.dataset_mask & DM.FIELD_ENCODING_2),
            )
        ]

    @property
    def data_value_members(self) -> DataValueMembers | None:
        """The DataValue members to write, or None when fields are Variants or RawData."""
        m = self.field_mask
        if m & FM.RAW_DATA or not m:
            return None
        return DataValueMembers(
            status=bool(m & FM.STATUS_CODE),
            source_timestamp=bool(m & FM.SOURCE_TIMESTAMP),
            server_timestamp=bool(m & FM.SERVER_TIMESTAMP),
            # §6.2.4.2: a PicoSeconds bit is ignored unless its Timestamp bit is set.
            source_picoseconds=bool(m & FM.SOURCE_PICOSECONDS and m & FM.SOURCE_TIMESTAMP),
            server_picoseconds=bool(m & FM.SERVER_PICOSECONDS and m & FM.SERVER_TIMESTAMP),
        )


#: The standard layout's masks as the configuration names them (``defaults``).
STANDARD_NETWORK_CONTENT: Final = tuple(
    mask_names(JsonMessageSettings().network_mask, NETWORK_CONTENT_NAMES)
)
STANDARD_DATASET_CONTENT: Final = tuple(mask_names(DATASET_HEADER_BITS, DATASET_CONTENT_NAMES))

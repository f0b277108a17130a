"""The content masks of Part 14 (§6.2.4.2, §6.3.2) and the settings of one writer built on them."""

from __future__ import annotations

import dataclasses
import enum
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

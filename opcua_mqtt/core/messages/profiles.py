"""Content-mask sets that known subscribers read (docs/interop.md), for ``map --profile``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opcua_mqtt.core.messages.settings import STANDARD_DATASET_CONTENT, STANDARD_NETWORK_CONTENT


@dataclass(frozen=True, slots=True)
class SubscriberProfile:
    """What ``map`` writes into ``defaults`` for one subscriber."""

    network_message_content: tuple[str, ...] = STANDARD_NETWORK_CONTENT
    dataset_message_content: tuple[str, ...] = STANDARD_DATASET_CONTENT
    key_frame_count: int | None = None  # None: map's --key-frame-count


#: open62541 1.5 (src/pubsub/ua_pubsub_networkmessage_json.c) refuses a NetworkMessage with a
#: member it does not know (WriterGroupName, DataSetWriterName, MinorVersion, a DataSetMessage
#: PublisherId), needs DataSetWriterId and Payload in every DataSetMessage, and reads
#: SequenceNumber and Status as UInt16: both are left out, so a writer's 65,536th message is
#: not refused. It reads every DataSetMessage as a key frame and refuses a delta frame whose
#: fields sit past its length in the reader's metadata: key frames only, one every publishing
#: interval, which also means no keep-alive (it has no Payload) is ever sent.
OPEN62541: Final = SubscriberProfile(
    network_message_content=("NetworkMessageHeader", "DataSetMessageHeader", "PublisherId"),
    dataset_message_content=("DataSetWriterId", "MetaDataVersion", "Timestamp", "MessageType"),
    key_frame_count=1,
)

PROFILES: Final = {"standard": SubscriberProfile(), "open62541": OPEN62541}

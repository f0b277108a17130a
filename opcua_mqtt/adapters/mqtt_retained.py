"""The latest retained message per topic, kept to be sent again after a reconnect (a broker may
have lost it), its payload compressed.

Retained state is mostly ua-metadata: 12-20 KB of JSON per writer of 100 fields (more with the
signer's certificate chain), 1,000 writers at 100,000 fields, kept for the whole life of the
process and read only after a reconnect. zlib at level 1 makes it about a quarter (~80 µs per
message to compress, ~130 µs to expand); what goes out again is byte for byte what was
published, so a signature over it still verifies.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import KeysView
from dataclasses import dataclass

from opcua_mqtt.adapters.mqtt_spool import Entry, Outgoing

#: Payloads at least this large are compressed (status and connection messages stay as they are).
COMPRESS_FROM = 1024


@dataclass(frozen=True, slots=True)
class _Kept:
    msg: Outgoing  # with an empty payload when ``packed`` holds it
    packed: bytes | None
    created: float  # time.time() when published: the Message Expiry counts from then


class RetainedState:
    """Topic -> the latest retained message published to it."""

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}

    def keep(self, msg: Outgoing, created: float) -> None:
        """Remember ``msg`` (published at ``created``, time.time()) as its topic's state."""
        packed = zlib.compress(msg.payload, 1) if len(msg.payload) >= COMPRESS_FROM else None
        if packed is not None and len(packed) < len(msg.payload):
            self._kept[msg.topic] = _Kept(dataclasses.replace(msg, payload=b""), packed, created)
        else:
            self._kept[msg.topic] = _Kept(msg, None, created)

    def entry(self, topic: str) -> Entry:
        """The spool entry to send ``topic``'s state again: the message as published."""
        kept = self._kept[topic]
        msg = kept.msg
        if kept.packed is not None:
            msg = dataclasses.replace(msg, payload=zlib.decompress(kept.packed))
        return Entry(0, msg, kept.created)

    def topics(self) -> KeysView[str]:
        return self._kept.keys()

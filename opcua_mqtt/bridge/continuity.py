"""One unbroken stream across a restart: each DataSetWriter's next SequenceNumber and its
ConfigurationVersion, kept in the disk spool with the message that used them.

Part 14 lets a subscriber detect loss by the sequence numbers (§7.2.5.4: one per writer,
incremented per DataSetMessage) and decide whether its metadata still holds by the
ConfigurationVersion (§6.2.3.2.6). A bridge that restarted from 0 with a new version would make
every subscriber see a reset and fetch metadata again for nothing. So the spool stores, in the
same transaction as each data message, the writer's next SequenceNumber, its version and a
fingerprint of the DataSet's description (fields, types, namespaces); a restarted bridge
continues the numbers, and keeps the version only when the fingerprint is unchanged (else it
takes a new MajorVersion greater than the stored one).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from opcua_mqtt.bridge.plan import Writer
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.writer_state import UINT32_MAX, ConfigurationVersion

_log = logging.getLogger(__name__)


def checkpoint_key(publisher_id: str, dataset_writer_id: int) -> str:
    return f"writer/{publisher_id}/{dataset_writer_id}"


def fingerprint(fields: Sequence[DataSetField], namespaces: Sequence[str]) -> str:
    """What the writer's DataSetMetaData says, apart from version and time, as a digest."""
    described = [(f.spec, f.node_id, str(f.dataset_field_id)) for f in fields]
    return hashlib.sha256(repr((described, list(namespaces))).encode()).hexdigest()[:32]


def checkpoint_value(next_sequence: int, version: ConfigurationVersion, digest: str) -> str:
    return json.dumps([next_sequence, version.major, version.minor, digest])


def writers_checkpoint(publisher_id: str, writers: Iterable[Writer]) -> tuple[tuple[str, str], ...]:
    """The checkpoint entries of ``writers`` as they stand after their message was made."""
    return tuple(
        (
            checkpoint_key(publisher_id, w.plan.dataset_writer_id),
            checkpoint_value(w.state.next_sequence_number, w.state.version, w.fingerprint),
        )
        for w in writers
    )


@dataclass(frozen=True)
class Resumed:
    """Where a writer starts: its first SequenceNumber, and its version (None: a fresh one)."""

    first_sequence_number: int = 0
    version: ConfigurationVersion | None = None
    kept_version: bool = False


class Resumption:
    """Where each writer of a starting bridge continues, from the checkpoint ``saved`` in its
    disk spool (empty without one), counted for one log line."""

    def __init__(
        self, saved: Mapping[str, str], publisher_id: str, namespaces: Sequence[str], now: datetime
    ) -> None:
        self.saved, self.publisher_id, self.namespaces, self.now = (
            saved,
            publisher_id,
            namespaces,
            now,
        )
        self.resumed = self.kept = 0

    def start(self, writer_id: int, fields: Sequence[DataSetField]) -> tuple[Resumed, str]:
        """The writer's start, and the fingerprint of its DataSet now."""
        digest = fingerprint(fields, self.namespaces)
        key = checkpoint_key(self.publisher_id, writer_id)
        start = resume(self.saved.get(key), digest, self.now)
        self.resumed += key in self.saved
        self.kept += start.kept_version
        return start, digest

    def report(self) -> None:
        if self.resumed:
            _log.info(
                "continuing %d writers from the spool: sequence numbers go on, %d kept their "
                "ConfigurationVersion (the others' DataSets changed: new MajorVersion)",
                self.resumed,
                self.kept,
            )


def resume(saved: str | None, digest: str, now: datetime) -> Resumed:
    """The start of a writer whose checkpoint is ``saved`` (None: never ran with this spool).
    A checkpoint this version cannot read starts afresh, as without one."""
    if saved is None:
        return Resumed()
    try:
        next_sequence, major, minor, old_digest = json.loads(saved)
        old = ConfigurationVersion(int(major), int(minor))
        first = int(next_sequence) % (UINT32_MAX + 1)
    except (ValueError, TypeError):
        return Resumed()
    if old_digest == digest:
        return Resumed(first, old, kept_version=True)
    return Resumed(first, old.next_major(now))

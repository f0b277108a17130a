"""The spool: messages handed to the MQTT session and not yet taken by the broker, in order.

In memory only (``mqtt.spool.directory`` null), or on disk (:mod:`.spool_store`): then every
message is stored before ``append`` returns and removed only once the broker acknowledged it
(QoS 1/2) or it was written out (QoS 0), so a bridge killed during a broker outage sends what
waited when it starts again. Memory stays bounded however long the outage: only a window of the
oldest waiting messages is held in memory, the rest is read back from disk as the window drains.

Full (``max_messages`` or ``max_bytes``): the oldest data is dropped, never retained state
(metadata, status, connection: state, not history); the caller counts and logs it.

MQTT 5 Message Expiry is honoured across the wait: a message is sent with what is left of its
expiry interval, and one whose interval ran out while it waited is not sent at all (a status
spooled during an outage must not outlive its period once delivered).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opcua_mqtt.adapters.spool_store import SpoolError, SpoolStore

_log = logging.getLogger("opcua_mqtt.adapters.mqtt")

#: Messages held in memory ahead of the sender when the spool is on disk.
WINDOW = 1000
#: Acknowledged rows deleted from disk in one statement; a process killed before the delete
#: sends up to this many messages again after its restart (QoS 1 duplicates, each detectable
#: by its sequence number).
DELETE_BATCH = 256


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() when the oldest value this message carries reached the process; the
    # time from there to the send is observed in PublisherStats.latency.
    origin: float | None = None
    # State stored in the same transaction as the message when the spool is on disk (e.g. each
    # writer's next SequenceNumber), read back by the next process with the same spool.
    checkpoint: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Entry:
    """A spooled message: its token (row id on disk) and when it was spooled."""

    token: int
    msg: Outgoing
    created: float  # time.time()

    def live_properties(self, now: float) -> dict[str, Any] | None:
        """The MQTT properties to send with now: the Message Expiry shortened by the wait;
        None when it ran out."""
        props = self.msg.properties
        expiry = props.get("message_expiry_interval")
        if expiry is None:
            return props
        # whole seconds, rounded up: a 1 s expiry after a 10 ms wait still has 1 s to live
        left = math.ceil(expiry - (now - self.created))
        if left <= 0:
            return None
        return props if left >= expiry else {**props, "message_expiry_interval": left}


class Spool:
    """FIFO of waiting messages with limits; see the module docstring."""

    def __init__(self, max_messages: int, max_bytes: int, directory: Path | None = None) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.store = SpoolStore(directory) if directory is not None else None
        self._queue: collections.deque[Entry] = collections.deque()
        self._count = 0  # waiting, in memory and on disk
        self._bytes = 0
        self._loaded = 0  # highest row id read into memory
        self._tail_on_disk = False  # rows above _loaded wait on disk only
        self._next_token = 0
        self._done: list[int] = []
        self._delete_failed = False
        self._failure: str | None = None  # why the disk spool cannot be written now
        self._dropping_since: int | None = None  # self.dropped when the spool filled up
        self.dropped = 0
        self.checkpoint: dict[str, str] = {}
        if self.store is not None:
            self._count, self._bytes = self.store.totals()
            self._tail_on_disk = self._count > 0
            self.checkpoint = self.store.checkpoint()
        #: Messages found waiting on disk from an earlier process.
        self.restored = self._count

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, msg: Outgoing) -> int:
        """:meth:`append`, for the session: how many messages were dropped (old ones to make
        room, or this one when the disk spool cannot be written), each episode logged once."""
        try:
            dropped = self.append(msg)
        except SpoolError as e:  # e.g. the disk is full: the message is lost, and said so
            if self._failure is None:
                _log.error("%s: messages are dropped until the spool can be written again", e)
            self._failure = str(e)
            return 1
        if self._failure is not None:
            _log.info("the spool can be written again")
            self._failure = None
        if dropped and self._dropping_since is None:
            self._dropping_since = self.dropped - dropped
            _log.warning(
                "MQTT spool full (%d messages, %d bytes; mqtt.spool.max_messages %d, "
                "max_bytes %d): dropping the oldest data until the broker takes messages again",
                self._count,
                self._bytes,
                self.max_messages,
                self.max_bytes,
            )
        elif not dropped and self._dropping_since is not None:
            _log.info(
                "MQTT spool no longer full: %d data messages were dropped",
                self.dropped - self._dropping_since,
            )
            self._dropping_since = None
        return dropped

    def append(self, msg: Outgoing) -> int:
        """Spool ``msg`` (durably, with a directory); how many old messages made room."""
        created = time.time()
        if self.store is not None:
            token = self.store.append(
                msg.topic,
                msg.payload,
                msg.qos,
                msg.retain,
                msg.properties,
                created,
                msg.checkpoint,
            )
            if self._tail_on_disk or len(self._queue) >= WINDOW:
                self._tail_on_disk = True
            else:
                self._queue.append(Entry(token, msg, created))
                self._loaded = token
        else:
            # orjson's output lives in a block larger than its size (measured: a 3.5 kB
            # message holds 8 kB), so a long outage held ~2.4 x the spooled bytes; a copy
            # of its own size (0.4 µs) keeps memory at what max_bytes says.
            msg = dataclasses.replace(msg, payload=memoryview(msg.payload).tobytes())
            self._next_token += 1
            self._queue.append(Entry(self._next_token, msg, created))
        self._count += 1
        self._bytes += len(msg.payload)
        return self._enforce_limits()

    def head(self) -> Entry | None:
        """The oldest waiting message, without taking it."""
        if not self._queue and self._tail_on_disk:
            self._refill()
        return self._queue[0] if self._queue else None

    def pop(self) -> Entry:
        """Take the oldest waiting message (it stays on disk until :meth:`done`)."""
        if self.head() is None:
            raise IndexError("the spool is empty")
        entry = self._queue.popleft()
        self._count -= 1
        self._bytes -= len(entry.msg.payload)
        return entry

    def done(self, entry: Entry) -> None:
        """The broker has ``entry`` (or it will never be sent): forget it on disk too."""
        if self.store is not None:
            self._done.append(entry.token)
            if len(self._done) >= DELETE_BATCH:
                self.flush()

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put messages sent but lost with the broker's session back in front, in order."""
        for entry in reversed(list(entries)):
            self._queue.appendleft(entry)
            self._count += 1
            self._bytes += len(entry.msg.payload)

    def flush(self) -> None:
        """Delete what the broker has from disk. When that fails (a full disk), the rows stay
        and are sent again after a restart (duplicates, never a loss); said once."""
        if self.store is None or not self._done:
            return
        try:
            self.store.delete(self._done)
        except SpoolError as e:
            if not self._delete_failed:
                _log.warning("%s: sent messages stay in the spool (sent again after a restart)", e)
            self._delete_failed = True
        else:
            self._delete_failed = False
        self._done.clear()

    def close(self) -> int:
        """Flush and close; how many messages stay on disk (waiting or unacknowledged)."""
        if self.store is None:
            return 0
        self.flush()
        left, _ = self.store.totals()
        self.store.close()
        return left

    def _refill(self) -> None:
        assert self.store is not None
        rows = self.store.read(self._loaded, WINDOW)
        for r in rows:
            msg = Outgoing(r.topic, r.payload, r.qos, r.retain, r.properties)
            self._queue.append(Entry(r.row, msg, r.created))
        if rows:
            self._loaded = rows[-1].row
        if len(rows) < WINDOW:
            self._tail_on_disk = False

    def _enforce_limits(self) -> int:
        dropped = 0
        kept: list[Entry] = []  # retained state: never dropped
        while self._count > self.max_messages or self._bytes > self.max_bytes:
            if not self._queue and self._tail_on_disk:
                self._refill()
            if not self._queue:
                break
            entry = self._queue.popleft()
            if entry.msg.retain:
                kept.append(entry)
                continue
            self._count -= 1
            self._bytes -= len(entry.msg.payload)
            self.done(entry)
            dropped += 1
        self._queue.extendleft(reversed(kept))
        if dropped:
            self.dropped += dropped
            self.flush()  # the room on disk is needed now, not a batch later
        return dropped

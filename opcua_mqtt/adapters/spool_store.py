"""The spool on disk: messages waiting for the broker, and the state that must outlive the
process, in one SQLite database (``spool.db`` in ``mqtt.spool.directory``).

Why SQLite in WAL mode with ``synchronous=NORMAL``: a committed transaction is in the
operating system's page cache when ``append`` returns, so a process that is killed (SIGKILL,
OOM killer, a crash) loses nothing it had handed over; only a power cut or a kernel crash can
lose the transactions since the last WAL checkpoint (SQLite checkpoints every 1,000 pages,
a few MB), because those are not yet forced to the disk. ``synchronous=FULL`` would close that
gap at the price of an fsync per message (milliseconds on most disks); docs/operations.md
says so. A message and the checkpoint entries it carries (each writer's next SequenceNumber
and ConfigurationVersion) are written in one transaction, so after a restart the two agree.

One process at a time: an exclusive ``flock`` on ``spool.lock`` keeps a second bridge started
with the same directory from interleaving its messages with the first one's.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opcua_mqtt.core.errors import OpcUaMqttError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    properties TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


#: Size the write-ahead log is truncated to after a checkpoint.
WAL_LIMIT_BYTES = 8 * 1024 * 1024


class SpoolError(OpcUaMqttError):
    """The spool directory cannot be used (not writable, in use, not a spool)."""


@dataclass(frozen=True)
class StoredMessage:
    """A row of the spool: what ``Outgoing`` needs, its row id, and when it was spooled."""

    row: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any]
    created: float  # time.time() when it was spooled


class SpoolStore:
    """The spool database of one directory, open for the life of an MQTT session."""

    FILE = "spool.db"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(directory / "spool.lock", "a+")  # noqa: SIM115 (held open)
        except OSError as e:
            raise SpoolError(f"spool directory {directory}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "another process"
            self._lock.close()
            raise SpoolError(
                f"spool directory {directory} is in use by {holder}: give each bridge its own "
                "mqtt.spool.directory"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"process {os.getpid()}\n")
        self._lock.flush()
        try:
            self._db = sqlite3.connect(directory / self.FILE, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # The WAL file is cut back to this after each checkpoint, so the disk the spool
            # takes stays within max_bytes (plus SQLite's overhead) and this.
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            self._unlock()
            raise SpoolError(f"spool {directory / self.FILE}: {e}") from None

    def close(self) -> None:
        self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    # ------------------------------------------------------------------------ messages

    def append(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Mapping[str, Any],
        created: float,
        checkpoint: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Store a message (and the checkpoint entries it carries) durably; its row id."""
        db = self._db
        db.execute("BEGIN")
        try:
            cursor = db.execute(
                "INSERT INTO message (topic, payload, qos, retain, properties, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), _dump_properties(properties), created),
            )
            db.executemany(
                "INSERT INTO checkpoint (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                checkpoint,
            )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
                db.execute("ROLLBACK")
            raise SpoolError(f"spool {self.directory / self.FILE}: {e}") from None
        row = cursor.lastrowid
        assert row is not None
        return row

    def delete(self, rows: Sequence[int]) -> None:
        try:
            for start in range(0, len(rows), 500):  # SQLite's default limit of parameters
                chunk = rows[start : start + 500]
                self._db.execute(
                    f"DELETE FROM message WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
        except sqlite3.Error as e:
            raise SpoolError(f"spool {self.directory / self.FILE}: {e}") from None

    def read(self, after: int, limit: int) -> list[StoredMessage]:
        """The oldest ``limit`` messages with a row id above ``after``, in order."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain, properties, created FROM message "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [
            StoredMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), _load_properties(r[5]), r[6])
            for r in rows
        ]

    def oldest_data(self, after: int, limit: int) -> list[tuple[int, int]]:
        """Row id and size of the oldest ``limit`` non-retained messages above ``after``."""
        return list(
            self._db.execute(
                "SELECT id, length(payload) FROM message WHERE id > ? AND retain = 0 "
                "ORDER BY id LIMIT ?",
                (after, limit),
            )
        )

    def totals(self, after: int = 0) -> tuple[int, int]:
        """Number and payload bytes of the messages above row ``after``."""
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM message WHERE id > ?",
            (after,),
        ).fetchone()
        return int(count), int(size)

    # ------------------------------------------------------------------------ checkpoint

    def checkpoint(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM checkpoint"))

    def messages(self) -> Iterator[StoredMessage]:
        """Every stored message in order (for tests and tools)."""
        after = 0
        while batch := self.read(after, 1000):
            yield from batch
            after = batch[-1].row


def _dump_properties(properties: Mapping[str, Any]) -> str | None:
    """MQTT 5 properties as JSON; bytes (Correlation Data) as ``{"b64": ...}``."""
    if not properties:
        return None
    return json.dumps(
        {
            k: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
            for k, v in properties.items()
        }
    )


def _load_properties(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    out: dict[str, Any] = {}
    for k, v in json.loads(text).items():
        if isinstance(v, dict) and set(v) == {"b64"}:
            out[k] = base64.b64decode(v["b64"])
        elif k == "user_property":  # gmqtt wants (name, value) tuples
            out[k] = [tuple(p) for p in v]
        else:
            out[k] = v
    return out

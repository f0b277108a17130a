"""Per-writer bookkeeping of the DataSetMessages a subscriber received, by SequenceNumber: what
arrived, what is missing, what came twice, what came out of order, where a writer started again.

Used by the fault tests and the soak (bench/soak.py), which count what an independent
subscriber sees, not what the bridge says it sent. The rules (Part 14 §7.2.5.4, §7.2.4.5.8):

* a key or delta frame takes the writer's next SequenceNumber: +1 per frame, in order;
* a keep-alive takes none: it carries the number the next frame will have, so one that is
  ahead of the expected number shows frames that never arrived;
* QoS 1 may deliver a message twice. A *duplicate* is a frame whose SequenceNumber was seen
  before with the very same content (the DataSetMessage's JSON, compared by digest): a
  repetition a subscriber can recognise and drop. A frame with an earlier number and other
  content is a *restart* of the writer (its numbers begin again, as after a bridge restart
  without a spool), and starts a new run; an earlier number never seen before is *late*
  (out of order). Missing numbers are counted per run, between its first and its last frame.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DATA_FRAMES = frozenset({"ua-keyframe", "ua-deltaframe", "ua-event"})
KEEPALIVE = "ua-keepalive"


class NotData(ValueError):
    """A payload that is not a ua-data NetworkMessage the ledger can read."""


def dataset_messages(payload: bytes) -> list[dict[str, Any]]:
    """The DataSetMessages of one JSON NetworkMessage (``Messages`` an array, or one object
    with SingleDataSetMessage)."""
    try:
        message = json.loads(payload)
    except ValueError as e:
        raise NotData(f"not JSON: {e}") from None
    if not isinstance(message, dict) or message.get("MessageType") != "ua-data":
        raise NotData(f"not a ua-data NetworkMessage: {payload[:120]!r}")
    messages = message.get("Messages")
    found: list[Any] = messages if isinstance(messages, list) else [messages]
    if not all(isinstance(m, dict) and "SequenceNumber" in m for m in found):
        raise NotData(f"a DataSetMessage without a SequenceNumber: {payload[:120]!r}")
    return found


@dataclass
class Run:
    """The frames of one writer from a start (the first frame, or a restart) on."""

    first: int
    last: int
    seen: dict[int, bytes] = field(default_factory=dict)  # SequenceNumber -> digest

    @property
    def missing(self) -> int:
        return self.last - self.first + 1 - len(self.seen)

    def missing_ranges(self, limit: int = 5) -> list[tuple[int, int]]:
        """Up to ``limit`` (from, to) ranges of numbers never received, oldest first."""
        ranges: list[tuple[int, int]] = []
        gap_start: int | None = None
        for n in range(self.first, self.last + 2):
            if n <= self.last and n not in self.seen:
                gap_start = n if gap_start is None else gap_start
            elif gap_start is not None:
                ranges.append((gap_start, n - 1))
                gap_start = None
                if len(ranges) == limit:
                    break
        return ranges


@dataclass
class WriterLedger:
    runs: list[Run] = field(default_factory=list)
    frames: int = 0  # data frames received, duplicates included
    duplicates: int = 0
    late: int = 0
    keepalives: int = 0
    digests: set[tuple[int, bytes]] = field(default_factory=set)  # over all runs

    @property
    def expected(self) -> int | None:
        """The number the next frame should carry."""
        return self.runs[-1].last + 1 if self.runs else None

    @property
    def missing(self) -> int:
        return sum(run.missing for run in self.runs)

    @property
    def restarts(self) -> int:
        return max(0, len(self.runs) - 1)

    def add(self, sequence: int, kind: str, digest: bytes) -> None:
        if kind == KEEPALIVE:
            self.keepalives += 1
            expected = self.expected
            if expected is not None and sequence > expected:
                # frames expected..sequence-1 were sent before this keep-alive
                self.runs[-1].last = sequence - 1
            return
        self.frames += 1
        if (sequence, digest) in self.digests:
            self.duplicates += 1
            return
        self.digests.add((sequence, digest))
        run = self.runs[-1] if self.runs else None
        if run is None or sequence in run.seen:  # other content under a number seen before
            self.runs.append(Run(first=sequence, last=sequence, seen={sequence: digest}))
            return
        if sequence > run.last:
            run.last = sequence
        else:  # never seen, but a later number came first
            self.late += 1
            run.first = min(run.first, sequence)
        run.seen[sequence] = digest


class SequenceLedger:
    """All writers of one publisher, fed with raw MQTT payloads of ua-data NetworkMessages."""

    def __init__(self) -> None:
        self.writers: dict[int, WriterLedger] = {}
        self.network_messages = 0

    def add_payload(self, payload: bytes) -> None:
        """Book every DataSetMessage of ``payload``; raise :class:`NotData` for anything else."""
        messages = dataset_messages(payload)
        self.network_messages += 1
        for m in messages:
            writer = m.get("DataSetWriterId")
            if not isinstance(writer, int):
                raise NotData(f"a DataSetMessage without a DataSetWriterId: {m!r:.120}")
            kind = str(m.get("MessageType", "ua-keyframe"))
            if kind not in DATA_FRAMES and kind != KEEPALIVE:
                raise NotData(f"unknown DataSetMessage type {kind!r}")
            text = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
            digest = hashlib.blake2b(text, digest_size=8).digest()
            self.writers.setdefault(writer, WriterLedger()).add(
                int(m["SequenceNumber"]), kind, digest
            )

    @property
    def frames(self) -> int:
        return sum(w.frames for w in self.writers.values())

    @property
    def distinct(self) -> int:
        return sum(len(run.seen) for w in self.writers.values() for run in w.runs)

    @property
    def missing(self) -> int:
        return sum(w.missing for w in self.writers.values())

    @property
    def duplicates(self) -> int:
        return sum(w.duplicates for w in self.writers.values())

    @property
    def late(self) -> int:
        return sum(w.late for w in self.writers.values())

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.writers.values())

    def problems(self) -> Iterator[str]:
        """One line per writer that lost, reordered or restarted frames."""
        for writer_id, w in sorted(self.writers.items()):
            if w.missing or w.late or w.restarts:
                gaps = [r.missing_ranges() for r in w.runs if r.missing]
                runs = ", ".join(f"{r.first}..{r.last}" for r in w.runs)
                yield (
                    f"writer {writer_id}: runs {runs}; {w.missing} missing {gaps}, "
                    f"{w.late} out of order, {w.restarts} restarts"
                )

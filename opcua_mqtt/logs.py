"""Logging set-up: one line per event, as text for people or JSON for log collectors."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_STANDARD = frozenset(vars(logging.makeLogRecord({})))

#: Characters that some readers take for a line end (C1 NEL, U+2028, U+2029) or a terminal
#: command (the other C1 controls): messages quote values from the network, and one such
#: character could forge a log line or rewrite a terminal. Escaped as \uXXXX: in a JSON line
#: that is the same string, in a text line it is visible.
_LINE_SAFE = {c: f"\\u{c:04x}" for c in (*range(0x80, 0xA0), 0x2028, 0x2029)}
#: In text lines the C0 controls too (JSON escapes them anyway), but for newline and tab.
_TEXT_SAFE = {**_LINE_SAFE, **{c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F) if c not in (9, 10)}}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        line = json.dumps(out, ensure_ascii=False)
        # translate() looks every character up: a tenth of a write-back audit line's cost
        return line if line.isascii() else line.translate(_LINE_SAFE)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, with control characters made visible."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_TEXT_SAFE)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Route every logger to stderr; asyncua's chatty INFO lines are kept at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format shows where a record was made, nor its thread or process: not looking
    # them up for every record (the logging HOWTO's "Optimization") takes a fifth off the
    # event loop's cost of a write-back audit line (docs/benchmarks.md, write-back round 5).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if level.lower() != "debug":
        logging.getLogger("asyncua").setLevel(logging.WARNING)
        logging.getLogger("gmqtt").setLevel(logging.WARNING)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Never blocks the caller: when the queue is full, records are dropped and counted, and
    the count goes out as a warning of its own once there is room again."""

    def __init__(self, q: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Only the message is fixed now (its arguments may change later); exc_info stays for
        # the formatter, as the writer thread lives in the same process.
        # copy.copy, not makeLogRecord: that makes a whole new record first, only to
        # overwrite every attribute of it
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.dropped and not self.report_dropped(timeout=None):
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def report_dropped(self, timeout: float | None) -> bool:
        """Queue the warning that counts the dropped records (waiting up to ``timeout`` s for
        room, not at all when None); False when there was no room."""
        note = logging.makeLogRecord(
            {
                "name": __name__,
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": f"{self.dropped} log records dropped: the log output was blocked",
                "dropped": self.dropped,
            }
        )
        try:
            if timeout is None:
                self.queue.put_nowait(note)
            else:
                self.queue.put(note, timeout=timeout)  # type: ignore[attr-defined]
        except queue.Full:
            return False
        self.dropped = 0
        return True


#: Records the writer takes from the queue at most before it writes them out.
_BATCH = 256


def _write(q: queue.Queue[logging.LogRecord | None], handlers: list[logging.Handler]) -> None:
    """Write what the queue holds in batches: a stream handler gets one write and one flush
    per batch, not per record (a burst of write-back audit lines is one system call, and the
    writer holds up the event loop's thread less often)."""
    while True:
        batch: list[logging.LogRecord] = []
        record = q.get()
        while record is not None:
            batch.append(record)
            if len(batch) >= _BATCH:
                break
            try:
                record = q.get_nowait()
            except queue.Empty:
                break
        for handler in handlers:
            _emit(handler, [r for r in batch if r.levelno >= handler.level])
        if record is None:
            return


def _emit(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    """``records`` through ``handler``: one write for a plain stream handler, else each."""
    if (
        not isinstance(handler, logging.StreamHandler)
        or type(handler).emit is not logging.StreamHandler.emit  # pytest's capture, say
        or handler.stream is None
    ):
        for r in records:
            handler.handle(r)
        return
    lines = []
    for r in records:
        if handler.filter(r):
            try:
                lines.append(handler.format(r) + handler.terminator)
            except Exception:  # noqa: BLE001 - as StreamHandler.emit: reported, not raised
                handler.handleError(r)
    if not lines:
        return
    with handler.lock:  # type: ignore[union-attr]
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except Exception:  # noqa: BLE001 - as StreamHandler.emit: reported, not raised
            handler.handleError(records[-1])


@contextlib.contextmanager
def non_blocking(max_records: int = 10_000) -> Iterator[None]:
    """Log through a bounded queue and a writer thread while the block runs.

    A long-running process must not freeze when nobody reads its stderr (a full pipe, a stalled
    log shipper): the event loop would stop inside a logging call. Records beyond
    ``max_records`` are dropped and counted instead. On exit the writer gets a few seconds to
    drain the queue; the handlers configured before are restored.
    """
    root = logging.getLogger()
    handlers = root.handlers[:]
    q: queue.Queue[logging.LogRecord | None] = queue.Queue(max_records)
    writer = threading.Thread(target=_write, args=(q, handlers), name="log-writer", daemon=True)
    writer.start()
    handler = _DroppingQueueHandler(q)
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = handlers
        if not handler.dropped or handler.report_dropped(timeout=5):
            # Past these timeouts the output is blocked for good: the daemon writer and what
            # it still holds end with the process, as nothing could be written anyway.
            with contextlib.suppress(queue.Full):
                q.put(None, timeout=5)
            writer.join(timeout=5)

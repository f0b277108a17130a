"""Logging set-up: JSON lines, and a logger that never blocks on a stalled output."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Iterator

import pytest

from opcua_mqtt.logs import JsonFormatter, TextFormatter, non_blocking


@pytest.fixture
def root_handler() -> Iterator[list[logging.Handler]]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield root.handlers
    root.handlers[:] = saved
    root.setLevel(level)


def test_logging_into_a_pipe_nobody_reads_neither_blocks_nor_loses_the_drop_count(
    root_handler: list[logging.Handler],
) -> None:
    read_fd, write_fd = os.pipe()  # a real pipe: 64 KiB of buffer, then write() blocks
    out = os.fdopen(write_fd, "w", buffering=1)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root_handler[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    log = logging.getLogger("test.flood")
    line = "x" * 1000

    def flood() -> None:
        for i in range(2000):  # about 2 MB: 30 times what the pipe holds
            log.info("record %d %s", i, line)

    reader_output = io.BytesIO()
    with non_blocking(max_records=100):
        producer = threading.Thread(target=flood)
        producer.start()
        producer.join(timeout=60)
        assert not producer.is_alive(), "a logging call blocked on the full pipe"

        def drain() -> None:
            while chunk := os.read(read_fd, 65536):
                reader_output.write(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        log.warning("after the flood")
    out.close()
    reader.join(timeout=30)
    records = [json.loads(x) for x in reader_output.getvalue().decode().splitlines()]
    messages = [r["message"] for r in records]
    notes = [r for r in records if r["message"].endswith("dropped: the log output was blocked")]
    kept = [m for m in messages if m.startswith("record ") or m == "after the flood"]
    # Every record is either written or counted as dropped, and the count comes out last at
    # the latest: the writer drained the queue before the block ended.
    assert notes and sum(int(n["dropped"]) for n in notes) + len(kept) == 2001
    assert messages[-1] == "after the flood" or records[-1] is notes[-1]
    assert messages[0] == f"record 0 {line}"  # the oldest records were kept, in order
    numbers = [int(m.split()[1]) for m in kept if m.startswith("record ")]
    assert numbers == sorted(numbers)


def test_non_blocking_restores_the_handlers_and_keeps_exception_text(
    root_handler: list[logging.Handler],
) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root_handler[:] = [handler]
    with non_blocking():
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("test.exc").exception("failed %s", "here")
    assert logging.getLogger().handlers == [handler]
    record = json.loads(buffer.getvalue())
    assert record["message"] == "failed here"
    assert "ValueError: boom" in record["exception"]


class _HeldStream(io.StringIO):
    """A stream whose first write waits until the test lets it go, and that keeps each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, s: str) -> int:
        self.writes.append(s)
        self.entered.set()
        assert self.release.wait(10)
        return super().write(s)


class _Refusing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "refused" not in record.getMessage()


def test_records_queued_meanwhile_go_out_in_one_write_in_order_filtered_and_formatted(
    root_handler: list[logging.Handler],
) -> None:
    stream = _HeldStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.setLevel(logging.INFO)
    handler.addFilter(_Refusing())
    root_handler[:] = [handler]
    logging.getLogger().setLevel(logging.DEBUG)
    log = logging.getLogger("test.burst")
    with non_blocking():
        log.info("first")
        assert stream.entered.wait(10)  # the writer is inside the first write
        for i in range(50):
            log.info("burst %d", i)
        log.debug("below the handler's level")
        log.info("refused by the handler's filter")
        stream.release.set()
    assert len(stream.writes) == 2
    assert stream.writes[0].endswith("test.burst: first\n")
    lines = stream.writes[1].splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [f"burst {i}" for i in range(50)]


HOSTILE = "value \x85forged\u2028line\u2029 \x9b31m \x1b[2J\r"


def _format(formatter: logging.Formatter, message: str) -> str:
    record = logging.makeLogRecord(
        {
            "name": "t",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "%s",
            "args": (message,),
        }
    )
    return formatter.format(record)


def test_json_lines_escape_what_readers_take_for_line_ends_and_still_decode_the_same() -> None:
    line = _format(JsonFormatter(), HOSTILE)
    assert line.split("\n") == line.splitlines() == [line]  # one line for every reader
    assert all(not (0x80 <= ord(c) < 0xA0 or c in "\u2028\u2029") for c in line)
    assert json.loads(line)["message"] == HOSTILE  # escaped, not altered


def test_text_lines_show_control_characters_instead_of_obeying_them() -> None:
    line = _format(TextFormatter(), HOSTILE + "\nsecond line\tkept")
    assert line.endswith("second line\tkept")  # our own newlines and tabs stay
    first = line.split("\n")[0]
    assert first == first.splitlines()[0]
    assert "\\u001b[2J" in first and "\\u000d" in first and "\\u0085" in first
    assert all(
        c == "\t" or (c.isprintable() and c not in "\u2028\u2029") for c in line.replace("\n", "")
    )

"""What a subscriber received, shown to people: JSON lines and a live table of the latest values.

``opcua-mqtt listen`` and the demo both present received DataSets; neither owns the other.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from opcua_mqtt.alarms import Alarm, AlarmList
from opcua_mqtt.core.uajson.arrays import nest_matrix
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import OPC_UA_NAMESPACE, NamespaceTable
from opcua_mqtt.subscriber import ReceivedDataSet

WIDTH = 100  # when the terminal's width is unknown
_VALUE_ROOM = 40  # columns a value may keep from a long name; longer values are cut


def dataset_json(ds: ReceivedDataSet, codec: JsonCodec) -> dict[str, Any]:
    """One DataSet as a JSON-ready dict (the JSON-lines output of ``listen``); values in the
    1.05 Compact form without the type member (the type is given beside it)."""
    fields = {}
    for name, f in ds.fields.items():
        value: Any = codec.encode_variant(f.variant, raw=True)
        fields[name] = {
            "value": value,
            **({"dimensions": list(f.variant.Dimensions)} if f.variant.Dimensions else {}),
            "type": f.variant_type.name,
            "status": f.status.value,
            "status_name": f.status.name,
            "source_timestamp": f.source_timestamp.isoformat() if f.source_timestamp else None,
        }
    return {
        "topic": ds.topic,
        "publisher_id": ds.publisher_id,
        "writer_group": ds.writer_group,
        "dataset_writer_id": ds.dataset_writer_id,
        "dataset_writer_name": ds.dataset_writer_name,
        "sequence_number": ds.sequence_number,
        "message_type": ds.message_type,
        "metadata_version": list(ds.metadata_version) if ds.metadata_version else None,
        "metadata": {
            "state": ds.verification.state.value,
            "detail": ds.verification.detail,
            "signer": ds.verification.signer,
            "identity": ds.verification.identity,
        },
        "fields": fields,
    }


def json_line(ds: ReceivedDataSet, codec: JsonCodec) -> str:
    return orjson.dumps(dataset_json(ds, codec)).decode()


class LiveTable:
    """The latest value of every field, redrawn in place at most 4 times a second.

    Each redraw moves the cursor back up over the previous drawing and clears below it, so what
    was printed before the table (the demo's instructions) stays on the screen. Lines are cut to
    the terminal's width and the table to its height: a line that wraps or a table that scrolls
    would make that cursor movement land in the wrong place. Names get the width the values do
    not need, and a name too long even so loses its start, not its end (the field's own name).
    Values are shown as the Part 6 JSON encoder writes them (compact), and every control or
    other unprintable character from the network is shown escaped, never sent to the terminal.
    """

    def __init__(self, out: TextIO, footer: str = "") -> None:
        self.out = out
        self.footer = footer
        self.rows: dict[tuple[str, str], tuple[ReceivedDataSet, str]] = {}
        self._last_draw = 0.0
        self._drawn = 0  # lines of the previous drawing, to move back over
        self._codecs: dict[tuple[str, ...], JsonCodec] = {}

    def update(self, ds: ReceivedDataSet) -> None:
        writer = ds.dataset_writer_name or str(ds.dataset_writer_id)
        for name in ds.fields:
            self.rows[(f"{ds.publisher_id}/{writer}", name)] = (ds, name)
        now = asyncio.get_running_loop().time()
        if now - self._last_draw >= 0.25:
            self._last_draw = now
            self.draw()

    def value_text(self, ds: ReceivedDataSet, name: str) -> str:
        """A field's value in compact Part 6 JSON, NodeIds with the publisher's namespace URIs."""
        namespaces = tuple(ds.metadata.Namespaces or ()) if ds.metadata is not None else ()
        codec = self._codecs.get(namespaces)
        if codec is None:
            codec = JsonCodec(namespaces=NamespaceTable([OPC_UA_NAMESPACE, *namespaces]))
            self._codecs[namespaces] = codec
        variant = ds.fields[name].variant
        value = codec.encode_variant(variant, raw=True)
        if variant.Dimensions and isinstance(value, list):
            value = nest_matrix(value, variant.Dimensions)
        return orjson.dumps(value).decode()

    def lines(self, width: int, now: datetime | None = None) -> list[str]:
        """The header and one line per field, ``width`` columns at most."""
        now = now or datetime.now(UTC)
        rows = []
        for (writer, name), (ds, field_name) in sorted(self.rows.items()):
            f = ds.fields[field_name]
            stamp = f.source_timestamp.strftime("%H:%M:%S.%f")[:12] if f.source_timestamp else "-"
            rows.append(
                (
                    printable(f"{writer}/{name}"),
                    printable(self.value_text(ds, field_name)),
                    f"{printable(f.status.name)[:12]:<13}{stamp:<13}"
                    f"{(now - ds.received_at).total_seconds():>5.0f}s  "
                    f"{ds.verification.state.value}",
                )
            )
        tail = f"{'STATUS':<13}{'SOURCE TIME':<13}{'AGE':>6}  METADATA"
        room = max(width - len(tail) - 2, 20)  # for the name and the value, a space after each
        longest_value = min(max((len(v) for _, v, _ in rows), default=5), _VALUE_ROOM)
        label_width = min(
            max((len(label) for label, _, _ in rows), default=14),
            max(room // 2, room - longest_value),
        )
        value_width = max(room - label_width, 5)
        lines = [f"{'WRITER / FIELD':<{label_width}} {'VALUE':<{value_width}} {tail}"]
        for label, value, rest in rows:
            lines.append(
                f"{_fit_left(label, label_width):<{label_width}} "
                f"{_fit(value, value_width):<{value_width}} {rest}"
            )
        return [_fit(line, width) for line in lines]

    def draw(self) -> None:
        columns, rows = shutil.get_terminal_size((WIDTH, 25))
        lines = self.lines(columns) + ([_fit(self.footer, columns)] if self.footer else [])
        room = max(rows - 1, 2)  # the cursor's line below the table must not scroll it
        if len(lines) > room:
            hidden = len(lines) - room + 1
            lines = [*lines[: room - 1], f"… {hidden} more lines: make the terminal taller"]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)


class AlarmTable(LiveTable):
    """The alarm list of ``listen --alarms``: one line per condition, the most severe first."""

    def __init__(self, out: TextIO, alarms: AlarmList, footer: str = "") -> None:
        super().__init__(out, footer)
        self.alarms = alarms

    def lines(self, width: int, now: datetime | None = None) -> list[str]:
        counts = self.alarms.counts()
        head = (
            f"{counts['total']} conditions, {counts['active']} active, "
            f"{counts['unacknowledged']} unacknowledged"
        )
        lines = [
            head,
            f"{'SEV':>4} {'ACTIVE':<7}{'ACKED':<6}{'TIME':<13}SOURCE / CONDITION: MESSAGE",
        ]
        lines.extend(alarm_line(a) for a in self.alarms.alarms)
        return [_fit(line, width) for line in lines]


def alarm_line(a: Alarm) -> str:
    flag = {True: "yes", False: "no", None: "-"}
    stamp = a.time.strftime("%H:%M:%S.%f")[:12] if a.time else "-"
    what = printable(f"{a.source_name or '-'} / {a.condition_name or a.condition_id.to_string()}")
    return (
        f"{a.severity if a.severity is not None else '-':>4} {flag[a.active]:<7}"
        f"{flag[a.acked]:<6}{stamp:<13}{what}: {printable(a.message or '')}"
    )


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or not show (controls, escape,
    line and format characters such as bidirectional overrides) written as a Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _fit_left(text: str, width: int) -> str:
    """``text`` cut at its start: the end of a writer/field name tells fields apart."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]

"""The `listen` table: names get the terminal's width, values read as Part 6 JSON, and nothing
from the network reaches the terminal unescaped."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from asyncua import ua

from opcua_mqtt.live_view import LiveTable, printable
from opcua_mqtt.subscriber import FieldValue, ReceivedDataSet, TrustState, Verification

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
PUBLISHER = "opcua-mqtt-127.0.0.1"  # what map names a bridge of a local server


def _field(name: str, variant: ua.Variant) -> FieldValue:
    return FieldValue(
        name=name,
        value=variant.Value,
        variant_type=variant.VariantType,
        status=ua.StatusCode(ua.StatusCodes.Good),
        source_timestamp=NOW,
        server_timestamp=None,
        variant=variant,
    )


def _dataset(writer: str, fields: dict[str, ua.Variant], namespaces: list[str]) -> ReceivedDataSet:
    return ReceivedDataSet(
        topic=f"opcua/json/data/{PUBLISHER}/G/{writer}",
        publisher_id=PUBLISHER,
        writer_group="G",
        dataset_writer_id=7,
        dataset_writer_name=writer,
        sequence_number=1,
        message_type="ua-keyframe",
        timestamp=NOW,
        metadata_version=(1, 0),
        fields={name: _field(name, v) for name, v in fields.items()},
        metadata=ua.DataSetMetaDataType(Namespaces=namespaces),
        verification=Verification(TrustState.VERIFIED),
        received_at=NOW - timedelta(seconds=3),
    )


def _table() -> LiveTable:
    table = LiveTable(io.StringIO())
    ds = _dataset(
        "Line1.Filler.Dosing.Station2",
        {
            "TargetCount": ua.Variant(42, ua.VariantType.UInt32),
            "TargetTemperature": ua.Variant(42.5, ua.VariantType.Double),
            "Label": ua.Variant(ua.LocalizedText("Füller", "de-DE"), ua.VariantType.LocalizedText),
            "Blob": ua.Variant(b"\x00\x01\x02", ua.VariantType.ByteString),
            "Name": ua.Variant("text", ua.VariantType.String),
            "Speeds": ua.Variant([1, 2], ua.VariantType.Int32),
            "Grid": ua.Variant([1.5, 2.0, 3.0, 4.0], ua.VariantType.Double, [2, 2]),
            "Node": ua.Variant(ua.NodeId("Pump", 1), ua.VariantType.NodeId),
        },
        ["urn:plant"],
    )
    for name in ds.fields:
        table.rows[(f"{ds.publisher_id}/{ds.dataset_writer_name}", name)] = (ds, name)
    return table


def _row(lines: list[str], name: str) -> str:
    (line,) = [line for line in lines if f"/{name} " in line]
    return line


def test_at_160_columns_names_are_whole_and_values_are_part6_json() -> None:
    lines = _table().lines(160, now=NOW)
    assert max(len(line) for line in lines) <= 160
    label = f"{PUBLISHER}/Line1.Filler.Dosing.Station2/"
    count, temperature = _row(lines, "TargetCount"), _row(lines, "TargetTemperature")
    assert count.startswith(label + "TargetCount ") and temperature.startswith(
        label + "TargetTemperature "
    )
    values = {
        name: _row(lines, name).split()[1]
        for name in ("TargetCount", "TargetTemperature", "Blob", "Name", "Speeds", "Grid", "Node")
    }
    assert values == {
        "TargetCount": "42",
        "TargetTemperature": "42.5",
        "Blob": '"AAEC"',
        "Name": '"text"',
        "Speeds": "[1,2]",
        "Grid": "[[1.5,2.0],[3.0,4.0]]",
        "Node": '"nsu=urn:plant;s=Pump"',
    }
    assert '{"Locale":"de-DE","Text":"Füller"}' in _row(lines, "Label")
    assert temperature.split()[2:] == ["Good", "12:00:00.000", "3s", "verified"]
    assert lines[0].split() == [
        "WRITER",
        "/",
        "FIELD",
        "VALUE",
        "STATUS",
        "SOURCE",
        "TIME",
        "AGE",
        "METADATA",
    ]


def test_a_narrow_terminal_keeps_the_end_of_names() -> None:
    lines = _table().lines(80, now=NOW)
    assert max(len(line) for line in lines) <= 80
    count = next(line for line in lines if "TargetCount" in line)
    temperature = next(line for line in lines if "TargetTemperatur" in line)
    assert count.startswith("…") and temperature.startswith("…")
    assert count.split()[0] != temperature.split()[0]


def test_controls_from_the_network_are_escaped() -> None:
    table = LiveTable(io.StringIO())
    ds = _dataset(
        "W\x1b]0;owned\x07",
        {
            "Evil\u202e": ua.Variant("\x9b31mred\x1b[0m\n", ua.VariantType.String),
        },
        [],
    )
    table.rows[(f"{PUBLISHER}/W\x1b]0;owned\x07", "Evil\u202e")] = (ds, "Evil\u202e")
    text = "\n".join(table.lines(160, now=NOW))
    assert not [c for c in text.replace("\n", "") if not c.isprintable()]
    assert "/W\\x1b]0;owned\\x07/Evil\\u202e " in text
    assert '"\\x9b31mred\\u001b[0m\\n"' in text  # JSON escapes C0; the table escapes the rest
    assert printable("W\x1b]0;owned\x07") == "W\\x1b]0;owned\\x07"
    assert printable("\U000e0001") == "\\U000e0001"

"""Command targets of write-back requests (core/commands.py, docs/commands.md): parsing,
commands.allow, exact conversion of a Call's arguments; the request schema's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asyncua import ua

from opcua_mqtt.core.commands import command_allowed, convert_arguments, read_command
from opcua_mqtt.core.schema_validation import validator
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.write_request.request import ConversionError, RequestError, parse_request
from opcua_mqtt.core.write_request.response import TargetResult, build_response

S = ua.StatusCodes
ACK = {
    "Method": "Acknowledge",
    "ConditionId": "nsu=urn:plant;s=Alarms.Tank",
    "EventId": "AAECAw==",
    "Comment": {"Locale": "en", "Text": "seen"},
}
CALL = {
    "Method": "Call",
    "ObjectId": "i=2253",
    "MethodId": "nsu=urn:plant;s=M",
    "InputArguments": [1],
}


def parse(*targets: Any) -> Any:
    return parse_request(json.dumps({"Targets": list(targets)}).encode())


def test_a_command_target_reads_as_its_method_and_arguments() -> None:
    request = parse(ACK, ACK | {"Method": "Confirm", "Comment": "text"})
    ack, confirm = (read_command(t) for t in request.targets)
    assert (ack.method, ack.node, ack.event_id) == ("Acknowledge", ACK["ConditionId"], b"\0\1\2\3")
    assert ack.condition_arguments() == [
        ua.Variant(b"\0\1\2\3", ua.VariantType.ByteString),
        ua.Variant(ua.LocalizedText("seen", "en"), ua.VariantType.LocalizedText),
    ]
    assert confirm.comment == ua.LocalizedText("text")
    call = read_command(parse(CALL).targets[0])
    assert (call.is_call, call.node, call.arguments) == (True, CALL["MethodId"], (1,))


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([ACK, {"Writer": "W", "Field": "F", "Value": 1}], "writes or commands, not both"),
        ([ACK | {"ObjectId": "i=85"}], "Targets/0"),
        ([CALL | {"EventId": "AAAA"}], "Targets/0"),
        ([{"Method": "Shelve", "ConditionId": "i=1", "EventId": "AAAA"}], "Targets/0/Method"),
        ([ACK | {"EventId": "not base64!"}], "Targets/0/EventId"),
        ([ACK | {"ConditionId": "ns=2;s=x"}], "Targets/0/ConditionId"),
        ([{"Method": "Call", "ObjectId": "i=85"}], "Targets/0"),
    ],
)
def test_malformed_commands_are_refused_whole(targets: list[Any], expected: str) -> None:
    with pytest.raises(RequestError) as e:
        parse(*targets)
    assert e.value.status == S.BadDecodingError
    assert expected in e.value.message


def test_commands_allow_takes_node_ids_and_browse_path_globs() -> None:
    node = "nsu=urn:plant;s=Alarms.Tank"
    assert not command_allowed([], node, ["Alarms/Tank"])
    assert command_allowed(["nsu=urn:plant;s=Alarms.Tank"], node, [])
    assert command_allowed(["Alarms/*"], node, ["Alarms/Tank"])
    assert command_allowed(["**/Tank"], node, ["Plant/Area/Tank"])
    assert not command_allowed(["Alarms/*"], node, ["Alarms/Sub/Tank"])
    assert not command_allowed(["i=1", "Other/*"], node, ["Alarms/Tank"])


def arg(name: str, builtin: int, rank: int = -1) -> ua.Argument:
    return ua.Argument(Name=name, DataType=ua.NodeId(builtin), ValueRank=rank)


def test_call_arguments_are_converted_exactly_or_refused_naming_the_argument() -> None:
    declared = [arg("Severity", 5), arg("Message", 12), arg("Gains", 11, 1)]
    builtins = {a.DataType: a.DataType.Identifier for a in declared}
    codec = JsonCodec()
    assert convert_arguments([7, "hi", [1, 2.5]], declared, builtins, codec) == [
        ua.Variant(7, ua.VariantType.UInt16),
        ua.Variant("hi", ua.VariantType.String),
        ua.Variant([1.0, 2.5], ua.VariantType.Double),
    ]
    cases = [
        ([70000, "x", []], S.BadOutOfRange, "InputArguments/0 (Severity)"),
        ([1, 2, []], S.BadTypeMismatch, "InputArguments/1 (Message)"),
        ([1, "x"], S.BadArgumentsMissing, "takes 3 (Severity, Message, Gains), got 2"),
        ([1, "x", [], 4], S.BadTooManyArguments, "got 4"),
    ]
    for values, status, text in cases:
        with pytest.raises(ConversionError) as e:
            convert_arguments(values, declared, builtins, codec)
        assert (e.value.status, text in e.value.message) == (status, True), e.value.message


def test_a_call_answer_carries_its_method_and_outputs_valid_against_the_schema() -> None:
    result = TargetResult(
        status=0,
        node_id="nsu=urn:plant;s=M",
        method="Call",
        outputs=(ua.Variant(b"\1", ua.VariantType.ByteString),),
    )
    answer = build_response("r1", [result], JsonCodec())
    assert answer["Targets"][0]["OutputArguments"] == [{"UaType": 15, "Value": "AQ=="}]
    assert answer["Targets"][0]["Method"] == "Call"
    assert not list(validator("write-response").iter_errors(answer))


def test_the_examples_of_docs_commands_md_are_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text("utf-8")
    blocks = [json.loads(b.split("```", 1)[0]) for b in text.split("```json\n")[1:]]
    assert len(blocks) == 3
    for block in blocks:
        schema = "write-response" if "Result" in block else "write-request"
        assert not list(validator(schema).iter_errors(block)), block
        if schema == "write-request":
            parse_request(json.dumps(block).encode())

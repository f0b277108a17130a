"""Commands through the write-back channel (docs/commands.md): what a command target says, who
may send it, and its arguments converted exactly.

* Acknowledge and Confirm (Part 9 §5.7.3, §5.7.4, methods of AcknowledgeableConditionType) and
  AddComment (§5.5.5, ConditionType) are called with the condition as the Object and the
  well-known MethodId of the type, with the arguments EventId (ByteString) and Comment
  (LocalizedText).
* Call (Part 4 §5.11.2) names an Object and a Method; its InputArguments are converted to the
  DataType, ValueRank and ArrayDimensions the method's InputArguments property declares, by the
  rules of write-back values (core/write_request/convert.py), exactly or not at all.
* ``commands.allow`` denies by default: an entry is a NodeId (the condition, or the method) or a
  glob over browse paths from the Objects folder (``Alarms/TankLevelAlarm`` for a condition,
  ``Plant/Control/Reset`` for a method of an object), ``*`` within a level, ``**`` across.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.globs import glob_match
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import canonical_node_id
from opcua_mqtt.core.write_request.convert import convert_value
from opcua_mqtt.core.write_request.request import ConversionError, RequestError, Target

S = ua.StatusCodes

#: The well-known MethodIds of the condition methods (Part 9 §5.7.3, §5.7.4, §5.5.5).
CONDITION_METHODS: Final = {
    "Acknowledge": ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
    "Confirm": ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm),
    "AddComment": ua.NodeId(ua.ObjectIds.ConditionType_AddComment),
}
_NODE_ID_LIKE: Final = ("i=", "s=", "g=", "b=", "nsu=", "ns=")


@dataclass(frozen=True)
class Command:
    """One command target, read from its JSON."""

    method: str  # Acknowledge, Confirm, AddComment or Call
    condition_id: str | None = None
    event_id: bytes = b""
    comment: ua.LocalizedText = field(default_factory=ua.LocalizedText)
    object_id: str | None = None
    method_id: str | None = None
    arguments: tuple[Any, ...] = ()

    @property
    def is_call(self) -> bool:
        return self.method == "Call"

    @property
    def node(self) -> str:
        """The node the command acts on: the condition, or the method called."""
        node = self.method_id if self.is_call else self.condition_id
        assert node is not None  # the request schema requires it
        return node

    def condition_arguments(self) -> list[ua.Variant]:
        """EventId and Comment, the arguments of every condition method."""
        return [
            ua.Variant(self.event_id, ua.VariantType.ByteString),
            ua.Variant(self.comment, ua.VariantType.LocalizedText),
        ]


def read_command(target: Target) -> Command:
    """The command of a target the request schema passed; RequestError for an EventId that is
    not base64."""
    raw = target.command
    assert raw is not None
    method = raw["Method"]
    if method == "Call":
        return Command(
            method,
            object_id=raw["ObjectId"],
            method_id=raw["MethodId"],
            arguments=tuple(raw.get("InputArguments", ())),
        )
    try:
        event_id = base64.b64decode(raw["EventId"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(S.BadDecodingError, "EventId: not base64") from None
    comment = raw.get("Comment")
    text = (
        ua.LocalizedText(comment)
        if isinstance(comment, str)
        else ua.LocalizedText(comment.get("Text"), comment.get("Locale"))
        if isinstance(comment, dict)
        else ua.LocalizedText()
    )
    return Command(method, condition_id=raw["ConditionId"], event_id=event_id, comment=text)


def command_allowed(allow: Iterable[str], node_id: str, paths: Iterable[str]) -> bool:
    """Whether an ``allow`` entry names ``node_id`` (a canonical NodeId string) or matches one
    of the node's browse ``paths``."""
    paths = list(paths)
    for entry in allow:
        if entry.startswith(_NODE_ID_LIKE):
            try:
                if canonical_node_id(entry) == node_id:
                    return True
            except ValueError:
                continue
        elif any(glob_match(entry, p) for p in paths):
            return True
    return False


def convert_arguments(
    values: Sequence[Any],
    declared: Sequence[ua.Argument],
    builtins: Mapping[ua.NodeId, int],
    codec: JsonCodec,
) -> list[ua.Variant]:
    """The Variants of a Call's InputArguments, each converted exactly to its declared type;
    ConversionError (BadArgumentsMissing, BadTooManyArguments, or the conversion's status)
    naming the argument."""
    names = ", ".join(a.Name or f"#{i}" for i, a in enumerate(declared)) or "none"
    if len(values) != len(declared):
        raise ConversionError(
            S.BadArgumentsMissing if len(values) < len(declared) else S.BadTooManyArguments,
            f"InputArguments: the method takes {len(declared)} ({names}), got {len(values)}",
        )
    out = []
    for i, (value, arg) in enumerate(zip(values, declared, strict=True)):
        try:
            out.append(
                convert_value(
                    value,
                    builtin_type=builtins.get(arg.DataType, 0),
                    value_rank=arg.ValueRank,
                    array_dimensions=tuple(arg.ArrayDimensions or ()),
                    codec=codec,
                )
            )
        except ConversionError as e:
            raise ConversionError(
                e.status, f"InputArguments/{i} ({arg.Name}): {e.message}"
            ) from None
    return out

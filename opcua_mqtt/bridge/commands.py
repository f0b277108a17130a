"""Commands through the write-back channel: Acknowledge, Confirm, AddComment and Call.

The write-back path (bridge/write_back.py) has done everything a request shares with writes by
the time it hands a command request here: rate limit, size, schema, reply topic, signature,
deadline and message expiry, idempotency (a repeated RequestId is answered from the cache and
calls nothing). Per target, in order: ``commands.allow`` (deny by default; a NodeId or a glob
over the browse path, core/commands.py), the server's model (the method belongs to the object,
the condition has the method), Executable and UserExecutable, exact conversion of a Call's
arguments; only then the Call. Whatever the server answers is passed through (an old EventId:
BadEventIdUnknown, Part 9 §5.7.3). Every target is logged once: a refusal at WARNING with the
reason, a call at INFO with its result and who asked.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.opcua.commands import CommandRefused, CommandService
from opcua_mqtt.adapters.opcua.session import OpcUaSession
from opcua_mqtt.bridge.write_back_support import BRIEF, canonical_or_none, extra, status_name
from opcua_mqtt.core.commands import (
    CONDITION_METHODS,
    Command,
    command_allowed,
    convert_arguments,
    read_command,
)
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.request_auth import Identity
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.write_request.request import ConversionError, WriteRequest
from opcua_mqtt.core.write_request.response import TargetResult, build_response

_log = logging.getLogger(__name__)

S = ua.StatusCodes


class Commands:
    """Carries out the command requests of one bridge; ``allow`` is ``commands.allow``."""

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow = allow

    async def execute(
        self, request: WriteRequest, who: Identity, session: OpcUaSession | None
    ) -> tuple[dict[str, Any], bool]:
        """The answer to a command request, and whether every target was Good."""
        commands = [read_command(t) for t in request.targets]  # a bad one refuses them all
        codec = JsonCodec() if session is None else await session.codec()
        results = []
        for command in commands:
            results.append(await self._one(command, request.request_id, who, session, codec))
        good = all(r.status == 0 for r in results)
        return build_response(request.request_id, results, codec), good

    async def _one(
        self,
        command: Command,
        rid: str | None,
        who: Identity,
        session: OpcUaSession | None,
        codec: JsonCodec,
    ) -> TargetResult:
        text = command.node
        try:
            if session is None:
                raise CommandRefused(S.BadServerNotConnected, "the OPC UA server is not connected")
            service = session.commands()
            node = _node(codec, text, "MethodId" if command.is_call else "ConditionId")
            if command.is_call:
                assert command.object_id is not None
                target = _node(codec, command.object_id, "ObjectId")
                facts = await service.method(target, node)
                path = await service.browse_path(target)
                paths = [f"{path}/{facts.name}"] if path is not None else []
            else:
                target = node
                facts = await service.condition_method(node, command.method)
                path = await service.browse_path(node)
                paths = [path] if path is not None else []
            if not command_allowed(self.allow, canonical_or_none(text) or text, paths):
                raise CommandRefused(
                    S.BadUserAccessDenied,
                    f"not on commands.allow (browse path {paths[0] if paths else 'unknown'})",
                )
            if not facts.executable:
                raise CommandRefused(S.BadNotExecutable, "the server says it is not executable")
            if not facts.user_executable:
                raise CommandRefused(
                    S.BadUserAccessDenied, "the server says this user may not execute it"
                )
            if command.is_call:
                arguments = convert_arguments(
                    command.arguments,
                    facts.input_arguments,
                    await session.builtin_types(a.DataType for a in facts.input_arguments),
                    codec,
                )
                method = node
            else:
                arguments = command.condition_arguments()
                method = CONDITION_METHODS[command.method]
        except (CommandRefused, ConversionError) as e:
            return self._refused(command, rid, who, e.status, e.message)
        return await self._call(service, command, rid, who, target, method, arguments)

    async def _call(
        self,
        service: CommandService,
        command: Command,
        rid: str | None,
        who: Identity,
        target: ua.NodeId,
        method: ua.NodeId,
        arguments: list[ua.Variant],
    ) -> TargetResult:
        result = await service.call(target, method, arguments)
        code = result.StatusCode.value
        message = None
        bad = [
            f"InputArguments/{i}: {status_name(s.value)}"
            for i, s in enumerate(result.InputArgumentResults or [])
            if not s.is_good()
        ]
        if bad:
            message = "the server refused " + ", ".join(bad)
        _log.info(
            "command request %s from %s: %s %s: %s",
            rid or "(no id)",
            who,
            command.method,
            BRIEF.repr(command.node),
            status_name(code),
            extra=extra(rid, who, node_id=command.node, result=status_name(code)),
        )
        outputs = tuple(result.OutputArguments or ()) if command.is_call and code == 0 else None
        return TargetResult(
            status=code,
            node_id=command.node,
            method=command.method,
            message=message,
            outputs=outputs,
        )

    def _refused(
        self, command: Command, rid: str | None, who: Identity, status: int, message: str
    ) -> TargetResult:
        _log.warning(
            "command request %s from %s: %s %s not called (%s): %s",
            rid or "(no id)",
            who,
            command.method,
            BRIEF.repr(command.node),
            status_name(status),
            message,
            extra=extra(rid, who, node_id=command.node, result=status_name(status)),
        )
        return TargetResult(
            status=status, node_id=command.node, method=command.method, message=message
        )


def _node(codec: JsonCodec, text: str, what: str) -> ua.NodeId:
    try:
        node = codec.decode_node_id(text)
    except DecodeError as e:
        raise CommandRefused(S.BadNodeIdInvalid, f"{what}: {e}") from None
    if node.NamespaceIndex == 0 and text.startswith("nsu="):
        raise CommandRefused(S.BadNodeIdUnknown, f"{what}: the server has no such namespace")
    return node

"""The demo plant's alarm: the Line3 conveyor's jam as an OffNormalAlarm (Part 9 §5.8.23).

asyncua's server generates condition events and replays retained ones on ConditionRefresh, but
keeps no condition state and has no Acknowledge of its own: this class keeps the state (active,
acknowledged), sends an event of OffNormalAlarmType from the Server object on each change (a
new EventId each time, Retain while active or unacknowledged), and serves Acknowledge (Part 9
§5.7.3): the well-known method of AcknowledgeableConditionType, called on the condition, with
the EventId of the state acknowledged (an older one: BadEventIdUnknown).
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import Server, ua

_log = logging.getLogger(__name__)

_ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)


class JamAlarm:
    """The condition ``node_id`` whose source is the machine ``source``."""

    def __init__(self, server: Server, node_id: ua.NodeId, source: ua.NodeId, name: str) -> None:
        self._server = server
        self.node_id = node_id
        self._source = source
        self._name = name
        self.active = False
        self.acked = True
        self._generator: Any = None
        self._event_id: bytes | None = None

    async def install(self, parent: Any) -> None:
        """The condition node below ``parent`` (with its own Acknowledge method, so clients
        can see that it takes one) and the server's handling of Acknowledge."""
        condition = await parent.add_object(
            self.node_id, ua.QualifiedName("ConveyorJam", self.node_id.NamespaceIndex)
        )
        arguments = [
            ua.Argument(Name="EventId", DataType=ua.NodeId(ua.ObjectIds.ByteString), ValueRank=-1),
            ua.Argument(
                Name="Comment", DataType=ua.NodeId(ua.ObjectIds.LocalizedText), ValueRank=-1
            ),
        ]
        await condition.add_method(
            ua.NodeId(f"{self.node_id.Identifier}.Acknowledge", self.node_id.NamespaceIndex),
            ua.QualifiedName("Acknowledge", 0),
            self._acknowledge,
            arguments,
            [],
        )
        self._server.link_method(self._server.get_node(_ACKNOWLEDGE), self._acknowledge)
        self._generator = await self._server.get_event_generator(ua.ObjectIds.OffNormalAlarmType)

    async def update(self, active: bool) -> None:
        """The machine's jam began (True) or ended (False)."""
        if active == self.active:
            return
        self.active = active
        if active:
            self.acked = False
        await self._send()

    async def _send(self) -> None:
        event = self._generator.event
        event.NodeId = self.node_id
        event.SourceNode = self._source
        event.SourceName = self._name
        event.ConditionName = "ConveyorJam"
        event.Severity = 700 if self.active else 100
        setattr(event, "ActiveState/Id", self.active)
        setattr(event, "AckedState/Id", self.acked)
        event.ActiveState = ua.LocalizedText("Active" if self.active else "Inactive")
        event.AckedState = ua.LocalizedText("Acknowledged" if self.acked else "Unacknowledged")
        event.Retain = self.active or not self.acked
        state = "jammed" if self.active else "running again"
        await self._generator.trigger(message=f"{self._name} {state}")
        event_id = event.EventId
        self._event_id = event_id.Value if isinstance(event_id, ua.Variant) else event_id

    async def _acknowledge(self, parent: ua.NodeId, event_id: Any, comment: Any) -> Any:
        if parent != self.node_id:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        given = event_id.Value if isinstance(event_id, ua.Variant) else event_id
        if given != self._event_id:
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        if self.acked:
            return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        self.acked = True
        text = comment.Value if isinstance(comment, ua.Variant) else comment
        _log.info("%s acknowledged: %s", self._name, getattr(text, "Text", text))
        await self._send()
        return []

"""What a command needs from the server: browse paths (for ``commands.allow``), whether a
method belongs to an object and may be called, its declared arguments, and the Call itself.

A method belongs to an object when the object, or its type definition or one of that type's
supertypes, has it as a component (Part 3 §5.7: a method of an ObjectType applies to its
instances; Part 4 §5.11.2 lets a server take the type's MethodId with the instance as ObjectId).
Executable and UserExecutable (Part 3 §5.7) are read from the method node itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import Client, ua

from opcua_mqtt.core.errors import OpcUaMqttError

S = ua.StatusCodes
_OBJECTS = ua.NodeId(ua.ObjectIds.ObjectsFolder)
_MAX_DEPTH = 32


class CommandRefused(OpcUaMqttError):
    """The server's model says no (before any call): ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclass(frozen=True)
class MethodFacts:
    """A method as the server describes it."""

    name: str
    input_arguments: list[ua.Argument] = field(default_factory=list)
    executable: bool = True
    user_executable: bool = True


class CommandService:
    """The command questions and the Call service of one connected client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def browse_path(self, node_id: ua.NodeId) -> str | None:
        """``Area/Object/...`` from the Objects folder down to the node (BrowseName names),
        following the first hierarchical parent at each level; None when the node is not
        below the Objects folder."""
        names: list[str] = []
        node = node_id
        for _ in range(_MAX_DEPTH):
            if node == _OBJECTS:
                return "/".join(reversed(names))
            current = self._client.get_node(node)
            try:
                names.append((await current.read_browse_name()).Name)
                parents = await current.get_references(
                    ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Inverse
                )
            except ua.UaStatusCodeError:
                return None
            if not parents:
                return None
            node = parents[0].NodeId
        return None

    async def node_class(self, node_id: ua.NodeId, what: str) -> ua.NodeClass:
        try:
            return await self._client.get_node(node_id).read_node_class()
        except ua.UaStatusCodeError as e:
            raise CommandRefused(e.code, f"{what}: {ua.StatusCode(e.code).name}") from None

    async def method(self, object_id: ua.NodeId, method_id: ua.NodeId) -> MethodFacts:
        """The method's facts, or CommandRefused when it is no method of the object."""
        if await self.node_class(object_id, "ObjectId") != ua.NodeClass.Object:
            raise CommandRefused(S.BadNodeIdInvalid, "ObjectId: not an Object")
        if await self.node_class(method_id, "MethodId") != ua.NodeClass.Method:
            raise CommandRefused(S.BadMethodInvalid, "MethodId: not a Method")
        if not await self._belongs(object_id, method_id):
            raise CommandRefused(
                S.BadMethodInvalid, "MethodId: not a method of the Object or of its type"
            )
        return await self._facts(method_id)

    async def condition_method(self, condition_id: ua.NodeId, name: str) -> MethodFacts:
        """The condition's own ``name`` method (Acknowledge, Confirm, AddComment), or
        CommandRefused when the condition has none."""
        if await self.node_class(condition_id, "ConditionId") != ua.NodeClass.Object:
            raise CommandRefused(S.BadNodeIdInvalid, "ConditionId: not a condition")
        for ref in await self._components(condition_id):
            if ref.BrowseName.Name == name and ref.NodeClass == ua.NodeClass.Method:
                return await self._facts(ref.NodeId)
        raise CommandRefused(S.BadMethodInvalid, f"ConditionId: the condition has no {name}")

    async def call(
        self, object_id: ua.NodeId, method_id: ua.NodeId, arguments: list[ua.Variant]
    ) -> ua.CallMethodResult:
        request = ua.CallMethodRequest(
            ObjectId=object_id, MethodId=method_id, InputArguments=arguments
        )
        (result,) = await self._client.uaclient.call([request])
        return result

    async def _components(self, node_id: ua.NodeId) -> list[ua.ReferenceDescription]:
        refs: list[ua.ReferenceDescription] = await self._client.get_node(node_id).get_references(
            ua.ObjectIds.HasComponent, ua.BrowseDirection.Forward
        )
        return refs

    async def _belongs(self, object_id: ua.NodeId, method_id: ua.NodeId) -> bool:
        if any(r.NodeId == method_id for r in await self._components(object_id)):
            return True
        node = self._client.get_node(object_id)
        type_ref = await node.get_references(
            ua.ObjectIds.HasTypeDefinition, ua.BrowseDirection.Forward
        )
        kind = type_ref[0].NodeId if type_ref else None
        for _ in range(_MAX_DEPTH):
            if kind is None:
                return False
            if any(r.NodeId == method_id for r in await self._components(kind)):
                return True
            supers = await self._client.get_node(kind).get_references(
                ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse
            )
            kind = supers[0].NodeId if supers else None
        return False

    async def _facts(self, method_id: ua.NodeId) -> MethodFacts:
        node = self._client.get_node(method_id)
        values = await node.read_attributes(
            [
                ua.AttributeIds.BrowseName,
                ua.AttributeIds.Executable,
                ua.AttributeIds.UserExecutable,
            ]
        )
        name, executable, user_executable = (
            dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None
            for dv in values
        )
        arguments: list[ua.Argument] = []
        for ref in await node.get_references(ua.ObjectIds.HasProperty, ua.BrowseDirection.Forward):
            if ref.BrowseName.Name == "InputArguments":
                arguments = list(await self._client.get_node(ref.NodeId).read_value() or [])
        return MethodFacts(
            name.Name if isinstance(name, ua.QualifiedName) else "",
            arguments,
            executable is not False,
            user_executable is not False,
        )

"""DataType questions answered by asking the server."""

from __future__ import annotations

from collections.abc import Iterable

from asyncua import Client, ua

from opcua_mqtt.adapters.opcua_client import builtin_types


class BuiltinTypes:
    """DataType -> built-in type, asked of the server in batches and remembered: a DataType's
    place in the type hierarchy does not change while a server runs, and asking costs a Browse
    per level of supertypes. Forgotten when the client changes (as StringLimits does): another
    session may be a server restarted with another type model."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._known: dict[ua.NodeId, int] = {}

    async def of(self, client: Client, data_types: Iterable[ua.NodeId]) -> dict[ua.NodeId, int]:
        """The built-in type behind each DataType: itself for a built-in one, else its
        supertypes'; Variant where they lead to none."""
        if client is not self._client:
            self._client, self._known = client, {}
        wanted = set(data_types)
        if missing := wanted - self._known.keys():
            for data_type, builtin in (await builtin_types(client, missing)).items():
                self._known[data_type] = int(ua.VariantType.Variant) if builtin is None else builtin
        return {d: self._known[d] for d in wanted}

    async def one(self, client: Client, data_type: ua.NodeId) -> int:
        return (await self.of(client, [data_type]))[data_type]

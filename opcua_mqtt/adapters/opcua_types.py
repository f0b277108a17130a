"""DataType questions answered by asking the server."""

from __future__ import annotations

from asyncua import Client, ua

from opcua_mqtt.adapters.opcua_client import builtin_types


async def builtin_type_of(client: Client, data_type: ua.NodeId) -> int:
    """The built-in type behind a DataType: itself for a built-in one, else its supertypes';
    Variant where they lead to none."""
    builtin = (await builtin_types(client, [data_type]))[data_type]
    return int(ua.VariantType.Variant) if builtin is None else builtin

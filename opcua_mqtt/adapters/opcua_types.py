"""DataType questions answered by asking the server."""

from __future__ import annotations

from asyncua import Client, ua


async def builtin_type_of(client: Client, data_type: ua.NodeId) -> int:
    """The built-in type behind a DataType: itself for ns=0 ids 1..25, else its supertypes'."""
    seen = 0
    current = data_type
    while seen < 32:
        if current.NamespaceIndex == 0 and isinstance(current.Identifier, int):
            if 1 <= current.Identifier <= 25:
                return int(current.Identifier)
            if current.Identifier == 29:  # Enumeration
                return int(ua.VariantType.Int32)
            if current.Identifier == 22:  # Structure
                return int(ua.VariantType.ExtensionObject)
        parents = await client.get_node(current).get_references(
            refs=ua.ObjectIds.HasSubtype, direction=ua.BrowseDirection.Inverse
        )
        if not parents:
            break
        current = parents[0].NodeId
        seen += 1
    return int(ua.VariantType.Variant)

"""NodeId strings and the JSON manifest of the test plant: what a test reads to find
its nodes.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from harness.plant_model import APPLICATION_URI, NAMESPACE_URI, Model, type_name

# --------------------------------------------------------------------------------------------
# NodeId strings (OPC 10000-6 §5.3.1.10 form, with nsu= for non-zero namespaces)
# --------------------------------------------------------------------------------------------


def nodeid_to_string(nodeid: Any, namespaces: list[str]) -> str:
    """``nsu=<uri>;s=...`` (or ``i=``, ``g=``, ``b=`` base64) for ns > 0, ``i=...`` for ns 0."""
    from asyncua import ua

    kind = nodeid.NodeIdType
    if kind in (ua.NodeIdType.Numeric, ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte):
        ident = f"i={nodeid.Identifier}"
    elif kind == ua.NodeIdType.String:
        ident = f"s={nodeid.Identifier}"
    elif kind == ua.NodeIdType.Guid:
        ident = f"g={nodeid.Identifier}"
    else:
        ident = f"b={base64.b64encode(nodeid.Identifier).decode()}"
    if nodeid.NamespaceIndex == 0:
        return ident
    return f"nsu={namespaces[nodeid.NamespaceIndex]};{ident}"


def parse_nodeid(text: str, namespaces: list[str]) -> Any:
    """Inverse of :func:`nodeid_to_string`; also accepts asyncua's ``ns=<n>;...`` form."""
    from asyncua import ua

    if text.startswith("nsu="):
        uri, sep, rest = text[4:].partition(";")
        if not sep or uri not in namespaces:
            raise ValueError(f"unknown namespace in {text!r}")
        index = namespaces.index(uri)
    elif text.startswith("ns="):
        ns, sep, rest = text[3:].partition(";")
        if not sep:
            raise ValueError(f"bad NodeId {text!r}")
        index = int(ns)
    else:
        index, rest = 0, text
    kind, sep, value = rest.partition("=")
    if not sep:
        raise ValueError(f"bad NodeId {text!r}")
    if kind == "i":
        return ua.NodeId(int(value), index)
    if kind == "s":
        return ua.NodeId(value, index, ua.NodeIdType.String)
    if kind == "g":
        return ua.NodeId(uuid.UUID(value), index, ua.NodeIdType.Guid)
    if kind == "b":
        return ua.NodeId(base64.b64decode(value), index, ua.NodeIdType.ByteString)
    raise ValueError(f"bad NodeId {text!r}")


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def make_manifest(server: Any, model: Model, namespaces: list[str]) -> dict[str, Any]:
    """Every variable reachable from Objects/Plant over forward hierarchical references.

    Walked in the server's own address space after building, so it lists what a client's browse
    finds, each node once (the cycle and the shared node do not repeat anything). ``path`` is the
    shortest browse path from Plant (breadth first). A snapshot taken at start-up: the Control
    methods change the model afterwards.
    """
    from asyncua import ua

    aspace = server.iserver.aspace
    hierarchical = _hierarchical_reference_types(aspace)

    def to_s(nodeid: Any) -> str:
        return nodeid_to_string(nodeid, namespaces)

    variables: list[dict[str, Any]] = []
    objects: list[str] = []
    seen = {model.plant}
    queue: list[tuple[Any, str]] = [(model.plant, "Plant")]
    for nodeid, path in queue:  # the list grows while we walk it: breadth first
        node = aspace[nodeid]
        node_class = node.attributes[ua.AttributeIds.NodeClass].value.Value.Value
        if node_class == ua.NodeClass.Variable:
            variables.append(_variable_entry(node, to_s(nodeid), path))
        elif node_class == ua.NodeClass.Object:
            objects.append(to_s(nodeid))
        for ref in node.references:
            if ref.IsForward and ref.ReferenceTypeId in hierarchical and ref.NodeId not in seen:
                seen.add(ref.NodeId)
                queue.append((ref.NodeId, f"{path}/{ref.BrowseName.Name}"))

    served = sorted({v["builtin_type_id"] for v in variables})
    return {
        "endpoint": None,  # filled in by the caller
        "application_uri": APPLICATION_URI,
        "namespace_uri": NAMESPACE_URI,
        "namespace_index": model.ns,
        "root": to_s(model.plant),
        "variable_count": len(variables),
        "object_count": len(objects),
        "builtin_types": [type_name(t) for t in served],
        "builtin_type_ids": served,
        "builtin_type_notes": {
            "Null": "only as a scalar without value (DataType BaseDataType)",
            "Variant": "only as a 1-D array of Variants (DataType BaseDataType): a Variant cannot "
            "directly contain a scalar Variant (OPC 10000-6 5.2.2.16)",
            "ExtensionObject": "Range structures (DataType Range, i=884)",
        },
        "cycle": {
            "source": to_s(model.cycle[0]),
            "target": to_s(model.cycle[1]),
            "reference_type": "Organizes",
        },
        "shared": {
            "node": to_s(model.shared[0]),
            "parents": [to_s(p) for p in model.shared[1]],
        },
        "simulation": {name: to_s(n) for name, n in model.simulation.items()},
        "oddities": {name: to_s(n) for name, n in model.oddities.items()},
        "dynamic": to_s(model.dynamic),
        "control": {"object": to_s(model.control)},
        "objects": objects,
        "variables": variables,
    }


def _hierarchical_reference_types(aspace: Any) -> set[Any]:
    from asyncua import ua

    root = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    found = {root}
    stack = [root]
    while stack:
        for ref in aspace[stack.pop()].references:
            if (
                ref.IsForward
                and ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasSubtype)
                and ref.NodeId not in found
            ):
                found.add(ref.NodeId)
                stack.append(ref.NodeId)
    return found


def _variable_entry(node: Any, nodeid: str, path: str) -> dict[str, Any]:
    from asyncua import ua

    attrs = node.attributes
    variant = attrs[ua.AttributeIds.Value].value.Value
    value_rank = attrs[ua.AttributeIds.ValueRank].value.Value.Value
    dims_dv = attrs.get(ua.AttributeIds.ArrayDimensions)
    dims = dims_dv.value.Value.Value if dims_dv is not None and dims_dv.value is not None else None
    access = attrs[ua.AttributeIds.AccessLevel].value.Value.Value
    description = attrs[ua.AttributeIds.Description].value.Value.Value
    data_type = attrs[ua.AttributeIds.DataType].value.Value.Value
    return {
        "nodeid": nodeid,
        "path": path,
        "builtin_type": variant.VariantType.name,
        "builtin_type_id": int(variant.VariantType.value),
        "data_type": nodeid_to_string(data_type, []) if data_type.NamespaceIndex == 0 else None,
        "value_rank": int(value_rank),
        "array_dimensions": list(dims) if dims else None,
        "writable": bool(access & ua.AccessLevel.CurrentWrite.mask),
        "description": description.Text if description is not None and description.Text else None,
    }



"""The test plant's Control methods: change the model while the server runs, count
client writes.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

from harness.plant_manifest import nodeid_to_string, parse_nodeid
from harness.plant_model import Builder, Model

_logger = logging.getLogger("harness.opcua_server")

# --------------------------------------------------------------------------------------------
# Control methods
# --------------------------------------------------------------------------------------------


async def add_control_methods(server: Any, model: Model) -> dict[str, Any]:
    """Add AddVariable, ChangeDataType, DeleteVariable, WriteCount, WriteCalls and RaiseEvent to
    the Control object.

    WriteCount returns how many values clients have asked the Write service to write so far
    (the server's own changes do not count): a test can tell that nothing was written even
    where a write would have left a value as it was. WriteCalls returns how many Write service
    calls carried them: a test can tell how a client batched its writes."""
    from asyncua import ua
    from asyncua.common.callback import CallbackType

    ns = model.ns
    control = server.get_node(model.control)
    aspace = server.iserver.aspace

    def arg(name: str, description: str) -> Any:
        return ua.Argument(
            Name=name,
            DataType=ua.NodeId(ua.ObjectIds.String),
            ValueRank=-1,
            Description=ua.LocalizedText(description),
        )

    async def namespaces() -> list[str]:
        return list(await server.get_namespace_array())

    written = 0
    calls = 0

    def count_writes(event: Any, _dispatcher: Any) -> None:
        nonlocal written, calls
        if event.is_external:
            written += len(event.request_params.NodesToWrite)
            calls += 1

    server.subscribe_server_callback(CallbackType.PostWrite, count_writes)

    async def write_count(_parent: Any) -> Any:
        return [ua.Variant(written, ua.VariantType.UInt32)]

    async def write_calls(_parent: Any) -> Any:
        return [ua.Variant(calls, ua.VariantType.UInt32)]

    async def add_variable(_parent: Any, name: Any) -> Any:
        text = name.Value if isinstance(name, ua.Variant) else name
        if not isinstance(text, str) or not text or any(c in text for c in ".;/ "):
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        nodeid = ua.NodeId(f"Plant.Dynamic.{text}", ns, ua.NodeIdType.String)
        if nodeid in aspace:
            return ua.StatusCode(ua.StatusCodes.BadBrowseNameDuplicated)
        b = Builder(server, ns)
        b.var(
            nodeid, text, model.dynamic, 11, 0.0, writable=True, description="added by AddVariable"
        )
        b.flush()
        _logger.info("AddVariable: %s", nodeid)
        return [ua.Variant(nodeid_to_string(nodeid, await namespaces()), ua.VariantType.String)]

    async def variable(text: Any, *, plant_only: bool) -> tuple[ua.NodeId, Any] | ua.StatusCode:
        """The variable (NodeId and address-space node) that a Control method's NodeId argument
        names, or the StatusCode that refuses the argument."""
        text = text.Value if isinstance(text, ua.Variant) else text
        try:
            nodeid = parse_nodeid(text, await namespaces())
        except (ValueError, TypeError):
            return ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
        node = aspace.get(nodeid)
        if node is None or (plant_only and nodeid.NamespaceIndex != ns):
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        if node.attributes[ua.AttributeIds.NodeClass].value.Value.Value != ua.NodeClass.Variable:
            return ua.StatusCode(ua.StatusCodes.BadNodeClassInvalid)
        return nodeid, node

    async def change_data_type(_parent: Any, text: Any) -> Any:
        found = await variable(text, plant_only=False)
        if isinstance(found, ua.StatusCode):
            return found
        nodeid, node = found
        value_attr = node.attributes[ua.AttributeIds.Value]
        old = value_attr.value.Value if value_attr.value is not None else ua.Variant()
        old_type = old.VariantType
        new_type = (
            ua.VariantType.Int32 if old_type == ua.VariantType.Double else ua.VariantType.Double
        )
        convert: Callable[[Any], Any] = (
            _to_int32 if new_type == ua.VariantType.Int32 else _to_double
        )
        if old.is_array and isinstance(old.Value, list):
            new_value: Any = [convert(v) for v in _flatten(old.Value)]
            if old.Dimensions and len(old.Dimensions) > 1:
                new_value = _reshape(new_value, old.Dimensions)
            variant = ua.Variant(new_value, new_type, Dimensions=old.Dimensions)
        else:
            variant = ua.Variant(convert(old.Value), new_type)
        await server.write_attribute_value(
            nodeid,
            ua.DataValue(ua.Variant(ua.NodeId(new_type.value), ua.VariantType.NodeId)),
            ua.AttributeIds.DataType,
        )
        # asyncua refuses a value whose Variant type differs from the current one: forget the
        # current value first (nothing can run in between: no await), then write, which also
        # notifies the monitored items.
        value_attr.value = None
        now = dt.datetime.now(dt.UTC)
        await server.write_attribute_value(
            nodeid, ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
        )
        _logger.info("ChangeDataType: %s %s -> %s", nodeid, old_type.name, new_type.name)
        return [
            ua.Variant(old_type.name, ua.VariantType.String),
            ua.Variant(new_type.name, ua.VariantType.String),
        ]

    async def delete_variable(_parent: Any, text: Any) -> Any:
        found = await variable(text, plant_only=True)
        if isinstance(found, ua.StatusCode):
            return found
        nodeid, _node = found
        results = server.iserver.node_mgt_service.delete_nodes(
            ua.DeleteNodesParameters(
                NodesToDelete=[ua.DeleteNodesItem(NodeId=nodeid, DeleteTargetReferences=True)]
            )
        )
        _logger.info("DeleteVariable: %s", nodeid)
        return results[0]

    async def raise_event(_parent: Any, severity: Any, message: Any) -> Any:
        """A BaseEventType event from the Server object; returns its EventId and Time, so a
        test can compare what the bridge published with what the server sent."""
        level = severity.Value if isinstance(severity, ua.Variant) else severity
        text = message.Value if isinstance(message, ua.Variant) else message
        if not isinstance(level, int) or not 1 <= level <= 1000 or not isinstance(text, str):
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        generator = await server.get_event_generator()
        generator.event.Severity = level
        generator.event.Message = ua.LocalizedText(text)
        await generator.trigger()
        event = generator.event
        _logger.info("RaiseEvent: severity %d, %r", level, text)
        return [
            ua.Variant(event.EventId, ua.VariantType.ByteString),
            ua.Variant(event.Time, ua.VariantType.DateTime),
        ]

    methods = {}
    methods["RaiseEvent"] = await control.add_method(
        ua.NodeId("Control.RaiseEvent", ns, ua.NodeIdType.String),
        ua.QualifiedName("RaiseEvent", ns),
        raise_event,
        [
            ua.Argument(
                Name="Severity",
                DataType=ua.NodeId(ua.ObjectIds.UInt16),
                ValueRank=-1,
                Description=ua.LocalizedText("Severity of the event, 1..1000"),
            ),
            arg("Message", "Message of the event"),
        ],
        [
            ua.Argument(Name="EventId", DataType=ua.NodeId(ua.ObjectIds.ByteString), ValueRank=-1),
            ua.Argument(Name="Time", DataType=ua.NodeId(ua.ObjectIds.DateTime), ValueRank=-1),
        ],
    )
    methods["AddVariable"] = await control.add_method(
        ua.NodeId("Control.AddVariable", ns, ua.NodeIdType.String),
        ua.QualifiedName("AddVariable", ns),
        add_variable,
        [arg("Name", "BrowseName of a new Double variable under Plant/Dynamic")],
        [arg("NodeId", "NodeId of the new variable, nsu= form")],
    )
    methods["ChangeDataType"] = await control.add_method(
        ua.NodeId("Control.ChangeDataType", ns, ua.NodeIdType.String),
        ua.QualifiedName("ChangeDataType", ns),
        change_data_type,
        [arg("NodeId", "Variable to change: Double becomes Int32, anything else Double")],
        [arg("OldType", "built-in type before"), arg("NewType", "built-in type after")],
    )
    methods["DeleteVariable"] = await control.add_method(
        ua.NodeId("Control.DeleteVariable", ns, ua.NodeIdType.String),
        ua.QualifiedName("DeleteVariable", ns),
        delete_variable,
        [arg("NodeId", "Variable of the plant namespace to delete")],
        [],
    )
    methods["WriteCount"] = await control.add_method(
        ua.NodeId("Control.WriteCount", ns, ua.NodeIdType.String),
        ua.QualifiedName("WriteCount", ns),
        write_count,
        [],
        [
            ua.Argument(
                Name="Count",
                DataType=ua.NodeId(ua.ObjectIds.UInt32),
                ValueRank=-1,
                Description=ua.LocalizedText("values written by clients so far"),
            )
        ],
    )
    methods["WriteCalls"] = await control.add_method(
        ua.NodeId("Control.WriteCalls", ns, ua.NodeIdType.String),
        ua.QualifiedName("WriteCalls", ns),
        write_calls,
        [],
        [
            ua.Argument(
                Name="Count",
                DataType=ua.NodeId(ua.ObjectIds.UInt32),
                ValueRank=-1,
                Description=ua.LocalizedText("Write service calls by clients so far"),
            )
        ],
    )
    return {name: node.nodeid for name, node in methods.items()}


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _reshape(flat: list[Any], dims: list[int]) -> list[Any]:
    if len(dims) == 1:
        return flat
    step = len(flat) // dims[0]
    return [_reshape(flat[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]


def _to_double(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    return 0.0


def _to_int32(value: Any) -> int:
    if isinstance(value, bool | int | float) and math.isfinite(value):
        return max(-(2**31), min(2**31 - 1, round(value)))
    return 0



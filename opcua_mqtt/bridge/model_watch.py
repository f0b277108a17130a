"""Following the server's model for the configured fields while the bridge runs.

A value of another built-in type than the metadata says: the node's DataType may have changed.
The value is held back (it must not travel under metadata that describes another type), the
DataType is read again and, if it changed, the writer's metadata gets a new
ConfigurationVersion. A node deleted on the server: servers need not notify a monitored item
(asyncua's does not), so the nodes' NodeClass is read periodically and a gone node turns Bad.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import replace
from datetime import datetime

from asyncua import ua

from opcua_mqtt.adapters.opcua.session import OpcUaSession
from opcua_mqtt.bridge.field_health import FieldHealth, FieldState
from opcua_mqtt.bridge.plan import Writer
from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.field_key import FieldKey
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.uajson.codec import JsonCodec

_log = logging.getLogger(__name__)

#: Nodes checked per Read request of the node check (the session batches it further).
NODE_CHECK_CHUNK = 2000

_UNTYPED = frozenset({0, int(ua.VariantType.Variant)})  # BaseDataType fields take any type


class ModelWatch:
    """Type changes and deleted nodes of one bridge's fields (see the module docstring)."""

    def __init__(
        self,
        writers: Mapping[tuple[int, int], Writer],
        fields: FieldHealth,
        clock: Callable[[], datetime],
        publish_metadata: Callable[[Writer], None],
        session_of: Callable[[int], OpcUaSession | None],
    ) -> None:
        """``session_of``: the usable session of a writer group's source, else None."""
        self._writers = writers
        self.fields = fields
        self._clock = clock
        self._publish_metadata = publish_metadata
        self._session_of = session_of
        self._rechecks: set[FieldKey] = set()
        self._retyped_values: dict[FieldKey, ua.DataValue] = {}
        self._accepted_types: set[tuple[FieldKey, int]] = set()
        self._recheck_tasks: set[asyncio.Task[None]] = set()

    def holds(self, key: FieldKey, writer: Writer, name: str, dv: ua.DataValue) -> bool:
        """Whether ``dv`` is held back while the field's DataType is read again."""
        variant = dv.Value
        if (
            not self._rechecks
            and variant is not None
            and variant.VariantType == writer.builtin_types.get(name)
        ):
            return False  # the usual case, once per notification: the type the metadata says
        if key in self._rechecks or self._type_changed(key, writer, name, dv):
            self._hold(key, writer, name, dv)
            return True
        return False

    def cancel(self) -> None:
        for task in self._recheck_tasks:
            task.cancel()

    def _type_changed(self, key: FieldKey, writer: Writer, name: str, dv: ua.DataValue) -> bool:
        """A value of another built-in type than the metadata says: the node's DataType may
        have changed on the server."""
        variant = dv.Value
        if variant is None or variant.VariantType == ua.VariantType.Null:
            return False
        builtin = writer.builtin_types.get(name)
        if builtin is None or builtin in _UNTYPED or int(variant.VariantType) == builtin:
            return False
        # A server may legitimately send another type than the DataType (e.g. a subtype's
        # value): once re-read without a change, that type is accepted for the field.
        return (key, int(variant.VariantType)) not in self._accepted_types

    def _hold(self, key: FieldKey, writer: Writer, name: str, dv: ua.DataValue) -> None:
        """Keep the value back until the DataType is read again: it must not travel under
        metadata that describes another type. The latest held value is applied afterwards."""
        self._retyped_values[key] = dv
        if key in self._rechecks:
            return
        self._rechecks.add(key)
        task = asyncio.create_task(self._recheck(writer, name, key))
        self._recheck_tasks.add(task)
        task.add_done_callback(self._recheck_tasks.discard)

    async def _recheck(self, writer: Writer, name: str, key: FieldKey) -> None:
        try:
            fieldp = next(f for f in writer.fields if f.spec.name == name)
            session = self._session_of(key.group)
            if session is None:
                raise ua.UaError("the OPC UA server is not connected")
            node_id = (await session.codec()).decode_node_id(fieldp.node_id)
            data_type, value_rank = await session.attributes(
                node_id, ua.AttributeIds.DataType, ua.AttributeIds.ValueRank
            )
            builtin = (await session.builtin_types([data_type]))[data_type]
            new_spec = replace(
                fieldp.spec,
                builtin_type=builtin,
                data_type=data_type,
                value_rank=value_rank,
                array_dimensions=() if value_rank <= 0 else fieldp.spec.array_dimensions,
            )
            if new_spec == fieldp.spec:
                held = self._retyped_values.get(key)
                if held is not None and held.Value is not None:
                    self._accepted_types.add((key, int(held.Value.VariantType)))
                return
            writer.fields = [
                DataSetField(new_spec, f.node_id, f.dataset_field_id) if f is fieldp else f
                for f in writer.fields
            ]
            writer.index_types()
            version = writer.state.reconfigure([f.spec for f in writer.fields], self._clock())
            _log.warning(
                "field %s/%s changed type on the server to %s: ConfigurationVersion %d.%d",
                writer.plan.name,
                name,
                ua.VariantType(builtin).name,
                version.major,
                version.minor,
            )
            self._publish_metadata(writer)
        except (ua.UaError, OSError, TimeoutError, ValueError) as e:
            _log.error("could not re-read the data type of %s/%s: %s", writer.plan.name, name, e)
        finally:
            self._rechecks.discard(key)
            latest = self._retyped_values.pop(key, None)
            if latest is not None:
                writer.state.update(name, latest)

    async def check_nodes(
        self, session: OpcUaSession, interval_s: float, groups: Container[int]
    ) -> None:
        """Every ``interval_s``, read the NodeClass of every monitored node of the writer
        groups ``groups`` (those of the session's source), :data:`NODE_CHECK_CHUNK` at a time;
        a node that is gone turns Bad. Nothing is kept per field between checks, and a chunk's
        requests and answers are all that exist at once (100,000 NodeIds kept for the bridge's
        life were ~20 MiB, all requests at once a peak of ~50 MiB)."""
        codec = await session.codec()
        gone: set[FieldKey] = set()
        while True:
            await asyncio.sleep(interval_s)
            targets = self._targets(codec, groups)
            try:
                while chunk := list(itertools.islice(targets, NODE_CHECK_CHUNK)):
                    results = await session.read_attribute(
                        [n for _, _, n in chunk], ua.AttributeIds.NodeClass
                    )
                    for (key, writer, _), dv in zip(chunk, results, strict=True):
                        self._check(key, writer, dv, gone)
            except (ua.UaError, OSError, TimeoutError) as e:
                _log.info("node check skipped: %s", e)

    def _targets(
        self, codec: JsonCodec, groups: Container[int]
    ) -> Iterator[tuple[FieldKey, Writer, ua.NodeId]]:
        for index, writer in list(self._writers.items()):
            if index[0] not in groups:
                continue
            for f in writer.fields:
                try:
                    node_id = codec.decode_node_id(f.node_id)
                except DecodeError:
                    continue  # reported when the monitored item was refused
                yield FieldKey(*index, f.spec.name), writer, node_id

    def _check(
        self, key: FieldKey, writer: Writer, dv: ua.DataValue, gone: set[FieldKey]
    ) -> None:
        code = dv.StatusCode
        if code is None or code.value != ua.StatusCodes.BadNodeIdUnknown:
            return
        if key in gone or self.fields.state(key) is FieldState.REFUSED:
            return  # a refused field was reported when it was refused
        gone.add(key)
        _log.warning("field %s: node no longer exists on the server", self.fields.name(key))
        gone_value = ua.DataValue(StatusCode=code, ServerTimestamp=self._clock())
        self.fields.value(key, gone_value)
        writer.state.update(key.field, gone_value)

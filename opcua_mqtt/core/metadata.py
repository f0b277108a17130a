"""DataSetMetaData (Part 14 §6.2.3.2) built from the writer's field specifications."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import ua

from opcua_mqtt.core.writer_state import ConfigurationVersion, FieldSpec


@dataclass(frozen=True, slots=True)
class DataSetField:
    """A field as the bridge publishes it: its shape, where it comes from, its stable id. One
    per configured field (100,000 in a large bridge): slots."""

    spec: FieldSpec
    node_id: str
    dataset_field_id: uuid.UUID


def build_metadata(
    name: str,
    fields: Sequence[DataSetField],
    version: ConfigurationVersion,
    namespaces: Sequence[str],
    *,
    description: str | None = None,
    dataset_class_id: uuid.UUID | None = None,
) -> ua.DataSetMetaDataType:
    """The DataSetMetaDataType a subscriber needs to read the writer's DataSetMessages.

    ``namespaces`` is the full table the DataType NodeIds index into (OPC UA namespace first).
    DataTypeSchemaHeader.Namespaces carries the URIs from index 1 on: index 0 is always the
    OPC UA namespace and is not repeated (OPC 10000-5 §12.31, Part 14 §6.2.3.2.3).
    """
    return ua.DataSetMetaDataType(
        Namespaces=list(namespaces[1:]),
        Name=name,
        Description=ua.LocalizedText(description) if description else ua.LocalizedText(),
        Fields=[
            ua.FieldMetaData(
                Name=f.spec.name,
                Description=(
                    ua.LocalizedText(f.spec.description)
                    if f.spec.description
                    else ua.LocalizedText()
                ),
                BuiltInType=f.spec.builtin_type,
                DataType=f.spec.data_type,
                ValueRank=f.spec.value_rank,
                ArrayDimensions=list(f.spec.array_dimensions),
                DataSetFieldId=f.dataset_field_id,
                Properties=[
                    ua.KeyValuePair(ua.QualifiedName(str(k)), ua.Variant(v))
                    for k, v in f.spec.properties
                ],
            )
            for f in fields
        ],
        DataSetClassId=dataset_class_id or uuid.UUID(int=0),
        ConfigurationVersion=ua.ConfigurationVersionDataType(version.major, version.minor),
    )

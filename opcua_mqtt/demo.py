"""``opcua-mqtt demo`` before the bridge exists: the wire format, written and read by the core.

It plays both sides of the broker in one process: a publisher describes a small production line,
signs the DataSetMetaData and emits a key frame and a delta frame; a subscriber decodes what
would have travelled over MQTT, verifies the metadata signature against the CA, and prints the
values. No OPC UA server and no broker are involved yet; the output says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from opcua_mqtt import devpki
from opcua_mqtt.core.json_encoding import JsonCodec
from opcua_mqtt.core.messages import (
    DataSetMessage,
    DataSetMessageType,
    JsonMessageSettings,
    MetaDataMessage,
    NetworkMessage,
    decode_message,
    dumps,
    encode_metadata_message,
    encode_network_message,
    loads,
    metadata_field_types,
)
from opcua_mqtt.core.metadata import DataSetField, build_metadata
from opcua_mqtt.core.signing import Signer, TrustStore, sign_message, verify_message
from opcua_mqtt.core.topics import TopicTree
from opcua_mqtt.core.writer_state import FieldSpec, Frame, WriterState

PUBLISHER = "demo-bridge"
GROUP = "Line1"
WRITER = "Filler"
WRITER_ID = 1
NAMESPACES = ["http://opcfoundation.org/UA/", "urn:opcua-mqtt:demo:plant"]
VT = ua.VariantType

FIELDS = [
    FieldSpec("Temperature", int(VT.Double), ua.NodeId(11)),
    FieldSpec("Speed", int(VT.Float), ua.NodeId(10)),
    FieldSpec("Running", int(VT.Boolean), ua.NodeId(1)),
    FieldSpec("BottleCount", int(VT.UInt32), ua.NodeId(7)),
    FieldSpec("Batch", int(VT.String), ua.NodeId(12)),
    FieldSpec("Totalizer", int(VT.Int64), ua.NodeId(8)),
]


def _metadata(state: WriterState) -> ua.DataSetMetaDataType:
    fields = [
        DataSetField(
            f,
            f"nsu={NAMESPACES[1]};s={f.name}",
            uuid.uuid5(uuid.NAMESPACE_URL, f"{NAMESPACES[1]}#{f.name}"),
        )
        for f in FIELDS
    ]
    return build_metadata(
        WRITER, fields, state.version, NAMESPACES, description="Filler of demo line 1"
    )


def _network_message(frame: Frame, metadata: ua.DataSetMetaDataType) -> NetworkMessage:
    return NetworkMessage(
        publisher_id=PUBLISHER,
        writer_group_name=GROUP,
        messages=[
            DataSetMessage(
                dataset_writer_id=WRITER_ID,
                dataset_writer_name=WRITER,
                sequence_number=frame.sequence_number,
                metadata_version=metadata.ConfigurationVersion,
                timestamp=frame.timestamp,
                message_type=DataSetMessageType(frame.kind.value),
                payload=dict(frame.fields),
            )
        ],
    )


def _value(vtype: Any, value: Any, now: datetime) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=now, ServerTimestamp=now)


def run(echo: Callable[[str], None]) -> bool:
    """Publish, then subscribe; return whether every signature verified and every value arrived."""
    now = datetime.now(UTC).replace(microsecond=0)
    ca = devpki.make_ca("opcua-mqtt demo CA", now)
    signer_cert = devpki.issue(ca, "demo-bridge metadata signer", now)
    signer = Signer(signer_cert.key, [signer_cert.cert, ca.cert])
    trust = TrustStore.from_pem(ca.cert_pem())

    state = WriterState(FIELDS, key_frame_count=10, keep_alive_time=timedelta(seconds=5), now=now)
    published = {
        "Temperature": _value(VT.Double, 71.25, now),
        "Speed": _value(VT.Float, 1.5, now),
        "Running": _value(VT.Boolean, True, now),
        "BottleCount": _value(VT.UInt32, 41_207, now),
        "Batch": _value(VT.String, "B-2026-11-25-07", now),
        "Totalizer": _value(VT.Int64, 9_007_199_254_740_993, now),  # beyond a double's integers
    }
    for name, dv in published.items():
        state.update(name, dv)
    metadata = _metadata(state)
    settings = JsonMessageSettings()
    codec = JsonCodec(settings.field_encoding, NAMESPACES)
    topics = TopicTree()

    wire: list[tuple[str, bytes]] = []
    meta_json = sign_message(
        encode_metadata_message(
            MetaDataMessage(PUBLISHER, WRITER_ID, metadata, GROUP, WRITER, now)
        ),
        signer,
        issued_at=now,
    )
    wire.append((topics.metadata(PUBLISHER, GROUP, WRITER), dumps(meta_json)))
    key = state.tick(now)
    later = now + timedelta(seconds=1)
    published["Temperature"] = _value(VT.Double, 71.5, later)
    published["BottleCount"] = _value(VT.UInt32, 41_212, later)
    state.update("Temperature", published["Temperature"])
    state.update("BottleCount", published["BottleCount"])
    delta = state.tick(later)
    assert key is not None and delta is not None
    for frame in (key, delta):
        msg = encode_network_message(_network_message(frame, metadata), settings, codec)
        wire.append((topics.data(PUBLISHER, GROUP, WRITER), dumps(msg)))

    echo("opcua-mqtt demo: the wire format, published and read back by the core.")
    echo("The bridge (`opcua-mqtt run`) and the embedded broker and OPC UA server are not built")
    echo("yet, so no MQTT connection is made: the messages below are what would travel.\n")
    for topic, payload in wire:
        echo(f"--> {topic}\n{payload.decode()}\n")

    echo("Subscriber side: decode, match data to metadata, verify the signature.")
    ok = True
    received: dict[str, ua.DataValue] = {}
    field_types: dict[str, Any] = {}
    for topic, payload in wire:
        message = decode_message(payload, field_types=lambda _p, _w: field_types or None)
        if isinstance(message, MetaDataMessage):
            result = verify_message(loads(payload), trust, at=datetime.now(UTC))
            field_types.update(metadata_field_types(message.metadata))
            mark = "verified" if result.ok else f"NOT VERIFIED ({result.reason})"
            echo(f"  {topic}: metadata {message.metadata.Name!r} v{_version(message)}: {mark}")
            echo(f"    {result.detail}")
            ok = ok and result.ok
        elif isinstance(message, NetworkMessage):
            for dsm in message.messages:
                kind = dsm.message_type.value
                echo(
                    f"  {topic}: {kind} #{dsm.sequence_number} from writer {dsm.dataset_writer_id}"
                )
                for name, dv in (dsm.payload or {}).items():
                    received[name] = dv
                    status = dv.StatusCode.name if dv.StatusCode else "Good"
                    stamp = dv.SourceTimestamp.isoformat() if dv.SourceTimestamp else "-"
                    echo(f"    {name:<12} {dv.Value.Value!r:<22} {status:<6} {stamp}")
    ok = ok and all(received[n].Value == published[n].Value for n in published)
    echo("\nAll values arrived and the metadata signature verified." if ok else "\nDEMO FAILED.")
    return ok


def _version(message: MetaDataMessage) -> str:
    v = message.metadata.ConfigurationVersion
    return f"{v.MajorVersion}.{v.MinorVersion}"

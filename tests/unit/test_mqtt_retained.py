"""The retained state kept for a reconnect: large payloads compressed, handed back as published."""

from __future__ import annotations

import json
import random

from opcua_mqtt.adapters.mqtt_retained import COMPRESS_FROM, RetainedState
from opcua_mqtt.adapters.mqtt_spool import Outgoing


def _metadata_like(fields: int) -> bytes:
    return json.dumps(
        {
            "MessageType": "ua-metadata",
            "Fields": [{"Name": f"V{i}", "BuiltInType": 11} for i in range(fields)],
        }
    ).encode()


def test_a_large_payload_is_kept_compressed_and_comes_back_byte_for_byte() -> None:
    state = RetainedState()
    payload = _metadata_like(100)
    msg = Outgoing("m/w1", payload, qos=1, retain=True, properties={"message_expiry_interval": 60})
    state.keep(msg, created=1000.0)
    assert len(state._kept["m/w1"].packed or b"") < len(payload) / 4
    entry = state.entry("m/w1")
    assert entry.msg == msg
    assert entry.created == 1000.0
    assert entry.live_properties(1010.0) == {"message_expiry_interval": 50}


def test_small_or_incompressible_payloads_are_kept_as_they_are() -> None:
    state = RetainedState()
    small = Outgoing("s", b"x" * (COMPRESS_FROM - 1), retain=True)
    noise = Outgoing("n", random.Random(3).randbytes(2048), retain=True)  # zlib: no smaller
    for msg in (small, noise):
        state.keep(msg, created=1.0)
        assert state.entry(msg.topic).msg is msg
    assert set(state.topics()) == {"s", "n"}


def test_the_latest_message_of_a_topic_replaces_the_one_before() -> None:
    state = RetainedState()
    state.keep(Outgoing("m", _metadata_like(50), retain=True), created=1.0)
    newer = Outgoing("m", _metadata_like(60), retain=True)
    state.keep(newer, created=2.0)
    assert state.entry("m").msg == newer
    assert list(state.topics()) == ["m"]

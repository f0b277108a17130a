"""One tick of a writer group of many writers pauses for the event loop (bridge/group_ticks.py):
after every ``TICK_PART`` fields, between two writers, each writer's message whole; a value
that arrives during the pause goes into the frame of a writer not yet ticked, and waits for the
next tick in one already ticked. Messages go to a real MQTT session that is not connected: its
spool keeps them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua

from opcua_mqtt.adapters.mqtt import MqttOptions, MqttSession
from opcua_mqtt.bridge import group_ticks
from opcua_mqtt.bridge.group_ticks import GroupTicks
from opcua_mqtt.bridge.plan import BridgePlan, GroupPlan, Writer, WriterPlan
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.writer_state import FieldSpec, WriterState

T0 = datetime(2026, 12, 8, tzinfo=UTC)
FIELDS = 3  # per writer


def _writers(group: GroupPlan) -> list[Writer]:
    out = []
    for wp in group.writers:
        double = int(ua.VariantType.Double)
        specs = [FieldSpec(f"F{i}", double, ua.NodeId(11, 0)) for i in range(FIELDS)]
        state = WriterState(specs, key_frame_count=100, keep_alive_time=timedelta(hours=1), now=T0)
        for spec in specs:
            state.update(spec.name, ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
        fields = [DataSetField(s, f"ns=1;s={wp.name}.{s.name}", None) for s in specs]
        out.append(Writer(wp, group, state, fields, version_published=(0, 0)))
    return out


def _payloads(mqtt: MqttSession) -> list[dict[str, object]]:
    out = []
    while mqtt.spool_depth:
        entry = mqtt.spool.pop()
        out.append(json.loads(entry.msg.payload))
    return out


@pytest.mark.parametrize("bundle", [False, True])
async def test_a_tick_pauses_between_writers_every_tick_part_fields(
    monkeypatch: pytest.MonkeyPatch, bundle: bool
) -> None:
    monkeypatch.setattr(group_ticks, "TICK_PART", 2 * FIELDS)  # a pause every two writers
    group = GroupPlan(
        "G",
        tuple(WriterPlan(f"W{k}", k, ()) for k in range(1, 6)),
        publishing_interval_ms=100,
        bundle_writers=bundle,
    )
    plan = BridgePlan("P", (group,))
    writers = _writers(group)
    for w in writers:  # metadata was published: the frames carry its version
        w.version_published = (w.state.version.major, w.state.version.minor)
    mqtt = MqttSession(MqttOptions(host="127.0.0.1"))
    ticks = GroupTicks(
        plan,
        0,
        writers,
        ["http://opcfoundation.org/UA/"],
        mqtt=mqtt,
        clock=lambda: T0,
        publish_metadata=lambda w: pytest.fail(f"metadata of {w.plan.name} again"),
        count=lambda _group, _size: None,
    )
    spooled: list[int] = []

    async def meanwhile() -> None:
        """What the intake does between two parts of the tick: new values for W1 (ticked)
        and W5 (not yet)."""
        while True:
            spooled.append(mqtt.spool_depth)
            for w in (writers[0], writers[4]) if mqtt.spool_depth else ():
                w.state.update("F0", ua.DataValue(ua.Variant(2.0, ua.VariantType.Double)))
            await asyncio.sleep(0)

    task = asyncio.create_task(meanwhile())
    await asyncio.sleep(0)  # the task's first turn: before the tick
    await ticks._tick(T0 + timedelta(seconds=1))
    task.cancel()
    payloads = _payloads(mqtt)
    if bundle:
        assert spooled == [0]  # bundled writers share one message: no pause
        assert len(payloads) == 1
        return
    assert spooled == [0, 2, 4]  # paused after W2 and after W4
    messages = [p["Messages"][0] for p in payloads]  # type: ignore[index]
    assert [m["DataSetWriterId"] for m in messages] == [1, 2, 3, 4, 5]
    assert all(m["SequenceNumber"] == 0 for m in messages)  # the first message of each
    values = [m["Payload"]["F0"]["Value"] for m in messages]
    assert values == [1.0, 1.0, 1.0, 1.0, 2.0]  # W5 ticked after the value came
    # W1 ticked before the pause: the value put in the pause waits for the next tick
    assert writers[0].state.tick(T0 + timedelta(seconds=2)) is not None
    assert writers[1].state.tick(T0 + timedelta(seconds=2)) is None

"""`run` settles the heap once ready and again after each lost OPC UA session
(opcua_mqtt.cli.run._settle_when_ready)."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

import pytest

from opcua_mqtt import gc_tuning
from opcua_mqtt.cli import run


async def test_the_heap_is_frozen_when_ready_and_again_after_a_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run, "RESETTLE_S", 0.01)
    refrozen: list[int] = []
    monkeypatch.setattr(gc_tuning, "refreeze", lambda: refrozen.append(1))
    trims: list[str] = []
    monkeypatch.setattr(run, "trim", lambda why: trims.append(why) or True)
    bridge: Any = SimpleNamespace(ready=asyncio.Event(), stats=SimpleNamespace(opcua_reconnects=0))
    task = asyncio.create_task(run._settle_when_ready(bridge))
    try:
        bridge.ready.set()
        await asyncio.sleep(0.1)
        assert trims == ["creating the monitored items"] and refrozen == []  # no reconnect yet
        bridge.stats.opcua_reconnects = 2  # two sessions lost within one period: once
        await asyncio.sleep(0.1)
        assert refrozen == [1] and trims[1:] == ["a lost OPC UA session"]
    finally:
        task.cancel()
        gc.unfreeze()

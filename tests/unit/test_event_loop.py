"""The event loop choice of `run` and `demo` (opcua_mqtt.event_loop)."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import uvloop  # the test extra installs it: its absence must fail here, not skip

from opcua_mqtt.event_loop import LOOPS, LoopUnavailableError, loop_factory, run


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize(("choice", "name"), [("auto", "uvloop"), ("uvloop", "uvloop")])
def test_uvloop_runs_when_it_is_installed(
    choice: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.event_loop"):
        loop_type = run(_loop_type(), choice)
    assert issubclass(loop_type, uvloop.Loop)
    assert [r.getMessage() for r in caplog.records] == [f"event loop: {name}"]


def test_asyncio_keeps_the_standard_loop(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.event_loop"):
        loop_type = run(_loop_type(), "asyncio")
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)
    assert [r.getMessage() for r in caplog.records] == ["event loop: asyncio"]


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_factory("auto") == (None, "asyncio")
    coro = _loop_type()
    with pytest.raises(LoopUnavailableError, match=r"--loop uvloop: .*opcua-mqtt\[fast\]"):
        run(coro, "uvloop")
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


def test_an_unknown_choice_is_refused() -> None:
    assert LOOPS[0] == "auto"
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        loop_factory("trio")

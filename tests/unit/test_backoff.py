"""The reconnect back-off: doubles from its minimum, never beyond its cap, jittered, and starts
over after a reset."""

from __future__ import annotations

from opcua_mqtt.adapters.reconnect import MIN_BACKOFF_S, Backoff


def test_the_backoff_doubles_up_to_its_cap_with_each_wait_in_the_upper_half() -> None:
    backoff = Backoff(10.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next_delay() <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= MIN_BACKOFF_S


def test_the_waits_are_jittered() -> None:
    backoff = Backoff(MIN_BACKOFF_S)
    assert len({backoff.next_delay() for _ in range(20)}) > 1

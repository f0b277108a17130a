"""A connection the network stops carrying without closing it (a real TCP proxy on loopback that
swallows traffic, in front of a real Mosquitto over TLS): the session drops it after twice the
keep-alive, reconnects, and no QoS 1 message is lost."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.stall_proxy import StallProxy
from opcua_mqtt.adapters.mqtt import MqttSession, Outgoing

KEEP_ALIVE_S = 2
#: gmqtt alone reports a stalled TLS connection after 2 x keep-alive plus a 30 s TLS shutdown
#: timeout: a bound below that, yet generous, tells the watchdog's work from gmqtt's.
DETECTION_BOUND_S = 2 * KEEP_ALIVE_S + 20


async def test_a_stalled_connection_is_dropped_reconnected_and_loses_no_qos1_message(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opcua_mqtt.adapters.mqtt")
    events: list[tuple[str, float]] = []
    changed = asyncio.Event()

    def on_change(up: bool) -> None:
        events.append(("up" if up else "down", time.monotonic()))
        changed.set()

    async def until(count: int, timeout: float) -> None:
        async def wait() -> None:
            while len(events) < count:
                changed.clear()
                await changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async with StallProxy(mosquitto_tls.host, mosquitto_tls.port) as proxy, MqttProbe() as sub:
        await sub.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await sub.subscribe("t/stall")
        options = adapter_options(mosquitto_tls, "stall-publisher", keepalive_s=KEEP_ALIVE_S)
        pub = MqttSession(
            dataclasses.replace(options, host=proxy.host, port=proxy.port),
            on_connection_change=on_change,
        )
        await pub.start(wait=True)
        try:
            for i in range(10):
                pub.publish(Outgoing("t/stall", str(i).encode(), qos=1))
            got = {int((await sub.next_message(timeout=10)).payload) for _ in range(10)}
            assert got == set(range(10))

            proxy.stall()
            stalled_at = time.monotonic()
            for i in range(10, 30):  # sent into the void: no PUBACK comes back
                pub.publish(Outgoing("t/stall", str(i).encode(), qos=1))
            await until(2, DETECTION_BOUND_S)
            proxy.resume()
            await until(3, 30)
            assert [e for e, _ in events] == ["up", "down", "up"]
            while len(got) < 30:
                got.add(int((await sub.next_message(timeout=20)).payload))
            assert got == set(range(30))
            assert proxy.connections >= 2  # the new connection went through the proxy too
        finally:
            await pub.stop()
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1 and "stalled: nothing from the broker" in lost[0], lost
    # A figure for the report, not an assertion (tests never assert wall-clock times).
    print(
        f"stall detected after {events[1][1] - stalled_at:.1f} s, "
        f"new connection up after {events[2][1] - stalled_at:.1f} s "
        f"(keep-alive {KEEP_ALIVE_S} s)"
    )


async def test_publishes_made_in_one_turn_of_the_event_loop_leave_in_one_tls_record(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """gmqtt writes each packet on its own (one TLS record and one send each); the session
    joins what one turn of the loop writes: ten publishes, one record, all delivered and
    acknowledged."""
    async with StallProxy(mosquitto_tls.host, mosquitto_tls.port) as proxy, MqttProbe() as sub:
        await sub.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await sub.subscribe("t/joined")
        options = adapter_options(mosquitto_tls, "joining-publisher")
        pub = MqttSession(dataclasses.replace(options, host=proxy.host, port=proxy.port))
        await pub.start(wait=True)
        try:
            await asyncio.sleep(0.2)  # the handshake's and CONNECT's records have arrived
            before = proxy.records_up
            for i in range(10):
                pub.publish(Outgoing("t/joined", str(i).encode(), qos=1))
            got = [int((await sub.next_message(timeout=10)).payload) for _ in range(10)]
            assert got == list(range(10))

            async def acknowledged() -> None:  # every PUBACK counted
                while pub.stats.published < 10:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(acknowledged(), 10)
            assert proxy.records_up - before == 1
        finally:
            await pub.stop()

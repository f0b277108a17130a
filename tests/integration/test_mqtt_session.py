"""The MQTT adapter against a real Mosquitto over TLS: windowing, outages, spool, refusals."""

from __future__ import annotations

import asyncio
import logging

import pytest

from opcua_mqtt.adapters.mqtt import MqttError, MqttOptions, MqttSession, Outgoing, TlsOptions
from tests.support.mosquitto import MosquittoBroker, free_port


def _options(broker: MosquittoBroker, client_id: str, **kw: object) -> MqttOptions:
    tls = TlsOptions(ca=str(broker.ca_cert))
    return MqttOptions(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        tls=tls,
        **kw,  # type: ignore[arg-type]
    )


class Collector:
    """A subscriber built on the same adapter (it reconnects and resubscribes on its own)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.topics: list[str] = []
        self.changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, _props: dict[str, object]) -> None:
        self.topics.append(topic)
        self.seen.append(int(payload))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        async def until() -> None:
            while len(set(self.seen)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


async def _subscriber(broker: MosquittoBroker, topic_filter: str) -> tuple[MqttSession, Collector]:
    collector = Collector()
    session = MqttSession(_options(broker, "test-subscriber"))
    session.subscribe(topic_filter, collector)
    await session.start(wait=True)
    await asyncio.sleep(0.1)  # let the SUBACK arrive
    return session, collector


async def test_qos1_stream_beyond_the_brokers_receive_maximum_arrives_complete_and_in_order(
    mosquitto_tls: MosquittoBroker,
) -> None:
    sub, got = await _subscriber(mosquitto_tls, "t/seq")
    pub = MqttSession(_options(mosquitto_tls, "test-publisher"))
    await pub.start(wait=True)
    for i in range(2000):  # Mosquitto's Receive Maximum is 20: gmqtt alone would overflow
        pub.publish(Outgoing("t/seq", str(i).encode(), qos=1))
    await got.wait_for(2000, timeout=20)
    assert got.seen == list(range(2000))
    assert pub.stats.dropped == 0
    await pub.stop()
    await sub.stop()


async def test_messages_published_while_the_broker_is_down_arrive_after_it_returns(
    mosquitto_persistent: MosquittoBroker,
) -> None:
    broker = mosquitto_persistent
    sub, got = await _subscriber(broker, "t/outage")
    pub = MqttSession(_options(broker, "test-publisher"))
    await pub.start(wait=True)
    for i in range(300):
        pub.publish(Outgoing("t/outage", str(i).encode(), qos=1))
    await broker.astop()
    for i in range(300, 800):  # the broker is gone: these wait in the spool
        pub.publish(Outgoing("t/outage", str(i).encode(), qos=1))
    assert pub.spool_depth > 0
    await broker.astart()
    await got.wait_for(800, timeout=60)
    assert sorted(set(got.seen)) == list(range(800))
    assert pub.stats.reconnects >= 1
    assert pub.stats.dropped == 0
    await pub.stop()
    await sub.stop()


async def test_spool_is_bounded_and_drops_the_oldest_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = MqttOptions(
        host="127.0.0.1",
        port=free_port(),
        client_id="test-spool",
        spool_messages=100,
        tls=TlsOptions(enabled=False),
        connect_timeout_s=0.5,
    )
    pub = MqttSession(nowhere)
    await pub.start()
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.adapters.mqtt"):
        for i in range(250):
            pub.publish(Outgoing("t/x", str(i).encode()))
    assert pub.spool_depth == 100
    assert pub.stats.dropped == 150
    assert "dropped the oldest" in caplog.text
    await pub.stop(drain_s=0)


async def test_retained_state_is_sent_again_after_a_broker_restart(
    mosquitto_tls: MosquittoBroker,
) -> None:
    pub = MqttSession(_options(mosquitto_tls, "test-retained"))
    await pub.start(wait=True)
    pub.publish(Outgoing("state/x", b"7", qos=1, retain=True))
    await asyncio.sleep(0.3)
    await mosquitto_tls.astop()  # a non-persistent broker forgets retained messages
    await mosquitto_tls.astart()
    await pub.wait_connected(15)
    await asyncio.sleep(0.5)
    sub, got = await _subscriber(mosquitto_tls, "state/#")
    await got.wait_for(1, timeout=5)
    assert got.seen == [7]
    await pub.stop()
    await sub.stop()


async def test_broker_certificate_from_an_untrusted_ca_is_refused(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    options = MqttOptions(
        host=mosquitto_tls.host,
        port=mosquitto_tls.port,
        client_id="test-rogue",
        tls=TlsOptions(ca=str(mosquitto_tls.rogue_ca_cert)),
        connect_timeout_s=2,
    )
    pub = MqttSession(options)
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.adapters.mqtt"):
        await pub.start()
        with pytest.raises(MqttError):
            await pub.wait_connected(3)
    assert "not trusted" in caplog.text
    await pub.stop(drain_s=0)


async def test_client_without_certificate_is_refused_where_mutual_tls_is_required(
    mosquitto_mtls: MosquittoBroker,
) -> None:
    options = MqttOptions(
        host=mosquitto_mtls.host,
        port=mosquitto_mtls.port,
        client_id="test-nocert",
        tls=TlsOptions(ca=str(mosquitto_mtls.ca_cert)),
        connect_timeout_s=2,
    )
    pub = MqttSession(options)
    await pub.start()
    with pytest.raises(MqttError):
        await pub.wait_connected(4)
    await pub.stop(drain_s=0)
    with_cert = MqttOptions(
        host=mosquitto_mtls.host,
        port=mosquitto_mtls.port,
        client_id="test-cert",
        tls=TlsOptions(
            ca=str(mosquitto_mtls.ca_cert),
            certificate=str(mosquitto_mtls.client_cert),
            private_key=str(mosquitto_mtls.client_key),
        ),
    )
    ok = MqttSession(with_cert)
    await ok.start(wait=True)
    await ok.stop()


@pytest.mark.parametrize(
    ("protocol", "expiry", "flags"),
    [("3.1.1", 0, "(p2, c1,"), ("3.1.1", 3600, "(p2, c0,"), ("5", 0, "(p5, c1,")],
)
async def test_session_expiry_zero_connects_with_a_clean_session_and_nothing_is_kept(
    mosquitto_tls: MosquittoBroker, protocol: str, expiry: int, flags: str
) -> None:
    """One-shot clients (generated ids) must not leave sessions the broker queues for.

    Mosquitto logs each CONNECT as (pN, cN, ...): p2 is its code for 3.1.1, c1 a clean session."""
    client_id = f"session-{protocol}-{expiry}"
    session = MqttSession(
        _options(mosquitto_tls, client_id, protocol=protocol, session_expiry_s=expiry)
    )
    await session.start(wait=True)
    await session.stop()
    log = await mosquitto_tls.wait_for_log(f"as {client_id} ")
    connect = next(line for line in log.splitlines() if f"as {client_id} " in line)
    assert flags in connect, connect

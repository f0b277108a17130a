"""The MQTT adapter against a real Mosquitto over TLS: windowing, outages, spool, refusals
(of topics, of publishes by an ACL, of a client id taken over)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe, adapter_options
from harness.processes import free_port
from opcua_mqtt.adapters.mqtt import (
    REFUSED_RETRY_S,
    MqttError,
    MqttOptions,
    MqttSession,
    Outgoing,
    TlsOptions,
)
from opcua_mqtt.adapters.spool_store import WAL_LIMIT_BYTES


class Collector:
    """A subscriber built on the same adapter (it reconnects and resubscribes on its own)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.topics: list[str] = []
        self.payloads: list[bytes] = []
        self.changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, _props: dict[str, object]) -> None:
        self.topics.append(topic)
        self.payloads.append(payload)
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
    session = MqttSession(adapter_options(broker, "test-subscriber"))
    session.subscribe(topic_filter, collector)
    await session.start(wait=True)
    await asyncio.sleep(0.1)  # let the SUBACK arrive
    return session, collector


async def _never_connects(options: MqttOptions, within: float) -> None:
    """A session with ``options`` starts, but waiting for its connection fails."""
    session = MqttSession(options)
    await session.start()
    try:
        with pytest.raises(MqttError):
            await session.wait_connected(within)
    finally:
        await session.stop(drain_s=0)


async def test_qos1_stream_beyond_the_brokers_receive_maximum_arrives_complete_and_in_order(
    mosquitto_tls: MosquittoBroker,
) -> None:
    sub, got = await _subscriber(mosquitto_tls, "t/seq")
    pub = MqttSession(adapter_options(mosquitto_tls, "test-publisher"))
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
    pub = MqttSession(adapter_options(broker, "test-publisher"))
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
    assert "dropping the oldest" in caplog.text
    await pub.stop(drain_s=0)


async def test_spool_full_logs_once_per_episode_and_its_end(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    nowhere = MqttOptions(
        host="127.0.0.1",
        port=free_port(),
        client_id="test-spool-episode",
        spool_messages=100,
        spool_directory=tmp_path,
        tls=TlsOptions(enabled=False),
        connect_timeout_s=0.5,
    )
    pub = MqttSession(nowhere)
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.adapters.mqtt"):
        for i in range(250):
            pub.publish(Outgoing("t/x", str(i).encode()))
        for _ in range(60):  # as if the broker had taken 60 of them
            pub.spool.done(pub.spool.pop())
        pub.publish(Outgoing("t/x", b"250"))
    assert pub.stats.dropped == 150
    lines = [r.getMessage() for r in caplog.records]
    assert sum("MQTT spool full" in line for line in lines) == 1
    assert [line for line in lines if "no longer full" in line] == [
        "MQTT spool no longer full: 150 data messages were dropped"
    ]
    await pub.stop(drain_s=0)


async def test_a_full_disk_spool_stays_within_its_limits_on_disk(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """20 MB published into a 1 MiB disk spool while the broker is away: the spool holds at
    most 1 MiB of payload, the files stay small, every drop is counted and logged once."""
    limit = 1024 * 1024
    nowhere = MqttOptions(
        host="127.0.0.1",
        port=free_port(),
        client_id="test-spool-disk-full",
        spool_bytes=limit,
        spool_directory=tmp_path,
        tls=TlsOptions(enabled=False),
        connect_timeout_s=0.5,
    )
    pub = MqttSession(nowhere)
    pub.publish(Outgoing("meta", b"m" * 10_000, retain=True))
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.adapters.mqtt"):
        for i in range(2000):
            pub.publish(Outgoing("t/x", str(i).encode().ljust(10_000, b".")))
    assert pub.spool.bytes <= limit
    assert pub.stats.dropped == 2001 - pub.spool_depth
    assert sum("MQTT spool full" in r.getMessage() for r in caplog.records) == 1
    files = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    print(f"disk spool files after 20 MB into a 1 MiB spool: {files}")
    assert files["spool.db"] <= 2 * limit + 1024 * 1024, files
    assert files.get("spool.db-wal", 0) <= WAL_LIMIT_BYTES + 1024 * 1024, files
    await pub.stop(drain_s=0)
    kept = MqttSession(nowhere).spool
    assert kept.restored == 2001 - pub.stats.dropped
    assert kept.head() is not None and kept.head().msg.topic == "meta"  # never dropped
    kept.close()


async def test_a_spool_that_cannot_be_written_drops_counts_and_says_so_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The disk fills up under the spool (SQLite's page limit stands in for a full disk): each
    message that cannot be stored is counted as dropped, one ERROR says why, one INFO says when
    it is over; publish never raises."""
    nowhere = MqttOptions(
        host="127.0.0.1",
        port=free_port(),
        client_id="test-spool-disk-error",
        spool_directory=tmp_path,
        tls=TlsOptions(enabled=False),
    )
    pub = MqttSession(nowhere)
    store = pub.spool.store
    assert store is not None
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count={pages + 4}")
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.adapters.mqtt"):
        for i in range(100):
            pub.publish(Outgoing("t/x", str(i).encode().ljust(8000, b".")))
        stored = len(pub.spool)
        assert pub.stats.dropped == 100 - stored > 0
        store._db.execute("PRAGMA max_page_count=1000000")
        pub.publish(Outgoing("t/x", b"after"))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "full" in errors[0], errors
    assert "the spool can be written again" in caplog.text
    assert len(pub.spool) == stored + 1
    await pub.stop(drain_s=0)


async def test_a_disk_spool_keeps_what_waited_for_the_next_session(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A session stopped during an outage leaves its messages on disk and says so; the next
    one with the same spool sends them first, in order, then what is new."""
    spool = tmp_path / "spool"
    away = MqttOptions(
        host="127.0.0.1",
        port=free_port(),
        client_id="test-disk-spool",
        tls=TlsOptions(enabled=False),
        connect_timeout_s=0.5,
        spool_directory=spool,
    )
    first = MqttSession(away)
    await first.start()
    for i in range(500):
        first.publish(Outgoing("t/disk", str(i).encode(), qos=1))
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.adapters.mqtt"):
        await first.stop(drain_s=0)
    assert "500 messages wait in the spool" in caplog.text

    sub, got = await _subscriber(mosquitto_tls, "t/disk")
    second = MqttSession(adapter_options(mosquitto_tls, "test-disk-spool", spool_directory=spool))
    assert second.spool.restored == 500
    await second.start(wait=True)
    for i in range(500, 520):
        second.publish(Outgoing("t/disk", str(i).encode(), qos=1))
    await got.wait_for(520, timeout=30)
    assert got.seen == list(range(520))
    await second.stop()
    assert (
        MqttSession(adapter_options(mosquitto_tls, "x", spool_directory=spool)).spool.restored == 0
    )
    await sub.stop()


async def test_retained_state_is_sent_again_after_a_broker_restart(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """Small state as it is, large state (kept compressed) byte for byte as published: a
    signature over it must still verify."""
    pub = MqttSession(adapter_options(mosquitto_tls, "test-retained"))
    await pub.start(wait=True)
    # An int for the Collector, then 30 KB of whitespace of every kind, partly compressible.
    large = b"8" + bytes(random.Random(14).choice(b" \t\n\r\x0b\x0c") for _ in range(30_000))
    pub.publish(Outgoing("state/x", b"7", qos=1, retain=True))
    pub.publish(Outgoing("state/y", large, qos=1, retain=True))
    await asyncio.sleep(0.3)
    await mosquitto_tls.astop()  # a non-persistent broker forgets retained messages
    await mosquitto_tls.astart()
    await pub.wait_connected(15)
    await asyncio.sleep(0.5)
    sub, got = await _subscriber(mosquitto_tls, "state/#")
    await got.wait_for(2, timeout=5)
    assert sorted(zip(got.topics, got.payloads, strict=True)) == [
        ("state/x", b"7"),
        ("state/y", large),
    ]
    await pub.stop()
    await sub.stop()


async def test_broker_certificate_from_an_untrusted_ca_is_refused(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    rogue = adapter_options(
        mosquitto_tls, "test-rogue", ca=mosquitto_tls.rogue_ca_cert, connect_timeout_s=2
    )
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.adapters.mqtt"):
        await _never_connects(rogue, within=3)
    assert "not trusted" in caplog.text


async def test_client_without_certificate_is_refused_where_mutual_tls_is_required(
    mosquitto_mtls: MosquittoBroker,
) -> None:
    await _never_connects(
        adapter_options(mosquitto_mtls, "test-nocert", connect_timeout_s=2), within=4
    )
    ok = MqttSession(adapter_options(mosquitto_mtls, "test-cert", client_cert=True))
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
        adapter_options(mosquitto_tls, client_id, protocol=protocol, session_expiry_s=expiry)
    )
    await session.start(wait=True)
    await session.stop()
    log = await mosquitto_tls.wait_for_log(f"as {client_id} ")
    connect = next(line for line in log.splitlines() if f"as {client_id} " in line)
    assert flags in connect, connect


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


@pytest.mark.slow
async def test_a_drop_during_the_reconnect_is_noticed_and_nothing_is_lost(
    mosquitto_persistent: MosquittoBroker,
) -> None:
    """The broker drops the publisher twice in quick succession: for a packet over its
    ``max_packet_size``, and again when gmqtt replays that unacknowledged packet right after the
    CONNACK, while ``connect()`` is still waiting for the replay to be acknowledged. Each drop
    must lead to a new connection; once the broker takes the packet, everything arrives."""
    broker = mosquitto_persistent
    unlimited = broker.extra_config
    sub, got = await _subscriber(broker, "t/drop")
    pub = MqttSession(adapter_options(broker, "test-publisher"))
    await pub.start(wait=True)
    await broker.astop()
    broker.extra_config = (*unlimited, "max_packet_size 4096")
    await broker.astart()
    await pub.wait_connected(15)
    await sub.wait_connected(15)
    await asyncio.sleep(0.1)  # the subscriber's SUBACK
    drops = pub.stats.reconnects
    for i in range(30):
        payload = str(i).encode()
        pub.publish(Outgoing("t/drop", payload + b" " * 8192 if i == 10 else payload))
    # A third drop: the session reconnected after the second one, which came during connect().
    await _until(lambda: pub.stats.reconnects >= drops + 3, timeout=30)
    await broker.astop()
    broker.extra_config = unlimited
    await broker.astart()
    await got.wait_for(30, timeout=60)
    assert sorted(set(got.seen)) == list(range(30))
    assert pub.stats.dropped == 0
    await pub.stop()
    await sub.stop()


# Topic names Mosquitto 2.0.11 answers by dropping the connection (measured: MQTT 5 DISCONNECT
# 0x81 Malformed Packet or 0x82 Protocol Error; with 3.1.1 it just closes the socket). It drops
# the client for the characters in any string, so in a Response Topic too, but passes on a
# Response Topic that is empty or has wildcards.
REFUSED_NAMES = [
    pytest.param("", False, id="empty"),
    pytest.param("reply/#", False, id="wildcard-hash"),
    pytest.param("reply/+/x", False, id="wildcard-plus"),
    pytest.param("a+b", False, id="plus-inside-a-level"),
    pytest.param("a\x00b", True, id="NUL"),
    pytest.param("a\x01b", True, id="C0-control"),
    pytest.param("a\x7fb", True, id="DEL"),
    pytest.param("a\x85b", True, id="C1-control"),
    pytest.param("a\ufdd0b", True, id="noncharacter-FDD0"),
    pytest.param("a\uffffb", True, id="noncharacter-FFFF"),
    pytest.param("a\U0010fffeb", True, id="noncharacter-10FFFE"),
    pytest.param("a\ud800b", True, id="lone-surrogate"),
]


@pytest.mark.parametrize(("topic", "bad_string"), REFUSED_NAMES)
async def test_a_topic_the_broker_refuses_is_refused_before_the_spool_and_publishing_goes_on(
    mosquitto_tls: MosquittoBroker, topic: str, bad_string: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """gmqtt would keep such a message and replay it after every reconnect, each time dropped
    again. The same holds for the will's topic and for text properties."""
    sub, got = await _subscriber(mosquitto_tls, "t/after")
    pub = MqttSession(adapter_options(mosquitto_tls, "test-publisher"))
    await pub.start(wait=True)
    with pytest.raises(ValueError, match="cannot publish to"):
        pub.publish(Outgoing(topic, b"0"))
    with pytest.raises(ValueError, match="cannot publish to"):
        MqttSession(adapter_options(mosquitto_tls, "test-will"), will=Outgoing(topic, b""))
    as_reply = Outgoing("t/after", b"1", properties={"response_topic": topic})
    if bad_string:
        with pytest.raises(ValueError, match="cannot publish with response_topic"):
            pub.publish(as_reply)
        assert pub.spool_depth == 0
        pub.publish(Outgoing("t/after", b"1"))
    else:
        pub.publish(as_reply)
    await got.wait_for(1, timeout=5)
    assert got.seen == [1]
    assert pub.stats.reconnects == 0
    # The rule is the broker's: the same topic sent past the check (QoS 0, so gmqtt keeps
    # nothing to replay) gets the client dropped, with a DISCONNECT whose reason is logged.
    with caplog.at_level(logging.WARNING, logger="opcua_mqtt.adapters.mqtt"):
        pub._client.publish(topic.encode("utf-8", "surrogatepass"), b"x", qos=0)
        await _until(lambda: pub.stats.reconnects == 1, timeout=10)
    assert re.search(r"DISCONNECT (Malformed Packet, 0x81|Protocol Error, 0x82)", caplog.text)
    await pub.stop()
    await sub.stop()


async def test_topics_the_broker_takes_are_published_as_they_are(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """Next to the refused characters: U+00A0, U+FFFD, U+FEFF, empty levels, 65,535 bytes."""
    topics = ["a\xa0b", "a\ufffdb", "\ufeffa", "/a//b/", "a" * 65_535]
    sub, got = await _subscriber(mosquitto_tls, "#")
    pub = MqttSession(adapter_options(mosquitto_tls, "test-publisher"))
    await pub.start(wait=True)
    for i, topic in enumerate(topics):
        pub.publish(Outgoing(topic, str(i).encode()))
    await got.wait_for(len(topics), timeout=10)
    assert got.topics == topics
    assert pub.stats.reconnects == 0
    await pub.stop()
    await sub.stop()


@pytest.mark.parametrize(
    "topic_filter",
    [
        pytest.param("", id="empty"),
        pytest.param("a/#/b", id="hash-not-last"),
        pytest.param("a#", id="hash-inside-a-level"),
        pytest.param("a/b+", id="plus-inside-a-level"),
        pytest.param("a/\x01", id="C0-control"),
        pytest.param("a/\ufffe", id="noncharacter-FFFE"),
    ],
)
async def test_a_filter_the_broker_refuses_is_refused_by_subscribe(
    mosquitto_tls: MosquittoBroker, topic_filter: str
) -> None:
    """Refused before it is kept: the session subscribes again after every reconnect."""
    session = MqttSession(adapter_options(mosquitto_tls, "test-subscriber"))
    with pytest.raises(ValueError, match="cannot subscribe"):
        session.subscribe(topic_filter, Collector())
    await session.start(wait=True)
    session._client.subscribe(topic_filter, qos=1)  # past the check: the broker drops us
    await _until(lambda: session.stats.reconnects == 1, timeout=10)
    await session.wait_connected(10)  # and nothing poisoned is subscribed again
    await asyncio.sleep(0.3)
    assert session.stats.reconnects == 1
    await session.stop()


# -- what the broker refuses: PUBACK reason codes, DISCONNECT reasons ----------------------------


async def test_refused_publishes_are_counted_logged_once_and_retried_until_the_broker_accepts(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that denies a topic: Mosquitto answers every QoS 1 PUBLISH on it with PUBACK 0x87.
    Each is counted, not sent; one WARNING per episode; the retained state is offered again
    until the broker (its ACL reloaded) accepts it, which ends the episode."""
    broker = mosquitto_tls
    broker.set_acl("topic read #\ntopic readwrite t/ok\n")
    await broker.astop()
    await broker.astart()
    changes: list[bool] = []
    pub = MqttSession(adapter_options(broker, "test-refused"), on_refusal_change=changes.append)
    await pub.start(wait=True)
    with caplog.at_level(logging.INFO, logger="opcua_mqtt.adapters.mqtt"):
        for i in range(5):
            pub.publish(Outgoing("t/denied", str(i).encode(), retain=True))
        pub.publish(Outgoing("t/ok", b"1"))
        await _until(lambda: pub.delivery.refused_counts.get(0x87) == 5, timeout=10)
        await _until(lambda: pub.stats.published == 1, timeout=10)
        assert pub.delivery.refusing
        assert changes == [True]
        [warning] = [r.getMessage() for r in caplog.records if "refused a publish" in r.message]
        assert "on t/denied: Not authorized (0x87)" in warning
        assert "client id 'test-refused'" in warning
        assert "ACL" in warning
        assert "t/denied" in pub.delivery.describe()

        broker.set_acl("topic readwrite #\n")
        await broker.reload()
        sub, got = await _subscriber(broker, "t/denied")
        # No new publish: the retry offers the latest retained state, which ends the episode.
        await _until(lambda: not pub.delivery.refusing, timeout=3 * REFUSED_RETRY_S)
    assert changes == [True, False]
    await got.wait_for(1, timeout=10)
    assert got.seen == [4]
    assert pub.stats.published == 2
    assert "accepts publishes on t/denied again" in caplog.text
    await pub.stop()
    await sub.stop()


async def test_a_second_client_with_the_same_id_shows_as_session_taken_over(
    mosquitto_tls: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker drops the first client: the log names the likely cause (a client with the
    same id); gmqtt's "max number of failed connection attempts" ERROR stays out."""
    first = MqttSession(adapter_options(mosquitto_tls, "test-twin"))
    await first.start(wait=True)
    with caplog.at_level(logging.INFO):
        second = MqttSession(adapter_options(mosquitto_tls, "test-twin"))
        await second.start(wait=True)
        await _until(lambda: first.stats.reconnects >= 1, timeout=10)
        await second.stop()
        await first.wait_connected(60)
    # Mosquitto 2.0.11 closes the old connection without the DISCONNECT 0x8E (Session taken
    # over) it sends from 2.0.15 on, which the log line would name: the likely cause is named.
    lost = [r.getMessage() for r in caplog.records if "lost" in r.message]
    assert any("same client id 'test-twin'" in m for m in lost), lost
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await first.stop()


async def test_a_stopped_session_says_goodbye_so_the_broker_keeps_its_will(
    mosquitto_tls: MosquittoBroker,
) -> None:
    """``stop`` sends DISCONNECT before it closes the connection, though the session's
    transport holds writes until the end of a turn of the event loop: a connection closed
    without it makes the broker publish the will."""
    async with MqttProbe() as probe:
        await probe.connect(mosquitto_tls.host, mosquitto_tls.port, mosquitto_tls.ssl_context())
        await probe.subscribe("t/will")
        will = Outgoing("t/will", b"gone", qos=1)
        session = MqttSession(adapter_options(mosquitto_tls, "test-goodbye"), will=will)
        await session.start(wait=True)
        session.publish(Outgoing("t/will", b"hello", qos=1))
        assert (await probe.next_message(timeout=10)).payload == b"hello"
        await session.stop()
        probe.publish("t/will", b"after")  # anything the broker sent for the close is before it
        assert (await probe.next_message(timeout=10)).payload == b"after"

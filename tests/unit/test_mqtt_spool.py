"""The spool of messages waiting for the broker, in memory and on disk (SQLite): order, limits
(oldest data dropped, retained state never), durability across a reopen, the checkpoint stored
with a message, and the Message Expiry shortened by the wait."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opcua_mqtt.adapters import mqtt_spool
from opcua_mqtt.adapters.mqtt_spool import Entry, Outgoing, Spool
from opcua_mqtt.adapters.spool_store import SpoolError, SpoolStore


def _data(i: int, size: int = 10) -> Outgoing:
    return Outgoing(f"d/{i}", str(i).encode().ljust(size, b"."))


def _drain(spool: Spool) -> list[Outgoing]:
    out = []
    while (entry := spool.head()) is not None:
        spool.pop()
        spool.done(entry)
        out.append(entry.msg)
    return out


@pytest.fixture(params=["memory", "disk"])
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    return tmp_path / "spool" if request.param == "disk" else None


def test_messages_come_out_in_the_order_they_went_in(directory: Path | None) -> None:
    spool = Spool(1000, 10**6, directory)
    sent = [_data(i) for i in range(50)]
    for msg in sent:
        assert spool.append(msg) == 0
    assert len(spool) == 50
    assert spool.bytes == sum(len(m.payload) for m in sent)
    assert [(m.topic, m.payload) for m in _drain(spool)] == [(m.topic, m.payload) for m in sent]
    assert len(spool) == 0 and spool.bytes == 0
    spool.close()


def test_a_full_spool_drops_the_oldest_data_and_keeps_retained_state(
    directory: Path | None,
) -> None:
    spool = Spool(5, 10**6, directory)
    status = Outgoing("status", b"Operational", retain=True)
    spool.append(status)
    dropped = sum(spool.append(_data(i)) for i in range(10))
    assert dropped == 6  # 11 messages, room for 5, the retained one kept
    assert spool.dropped == 6
    remaining = _drain(spool)
    assert [m.topic for m in remaining] == ["status", "d/6", "d/7", "d/8", "d/9"]
    spool.close()


def test_the_byte_limit_drops_as_the_message_limit_does(directory: Path | None) -> None:
    spool = Spool(1000, 100, directory)
    for i in range(10):
        spool.append(_data(i, size=30))
    assert spool.bytes <= 100
    assert [m.topic for m in _drain(spool)] == ["d/7", "d/8", "d/9"]
    spool.close()


def test_messages_lost_with_the_brokers_session_go_back_in_front(directory: Path | None) -> None:
    spool = Spool(1000, 10**6, directory)
    for i in range(4):
        spool.append(_data(i))
    first, second = spool.pop(), spool.pop()
    spool.requeue([first, second])
    assert [m.topic for m in _drain(spool)] == ["d/0", "d/1", "d/2", "d/3"]
    spool.close()


def test_a_reopened_disk_spool_holds_what_was_neither_sent_nor_acknowledged(
    tmp_path: Path,
) -> None:
    spool = Spool(1000, 10**6, tmp_path)
    for i in range(6):
        spool.append(_data(i))
    acknowledged = spool.pop()
    spool.done(acknowledged)
    spool.pop()  # sent, never acknowledged: the broker may not have it
    assert spool.close() == 5

    again = Spool(1000, 10**6, tmp_path)
    assert again.restored == 5 and len(again) == 5
    assert [m.topic for m in _drain(again)] == ["d/1", "d/2", "d/3", "d/4", "d/5"]
    assert again.close() == 0
    assert Spool(1000, 10**6, tmp_path).restored == 0


def test_the_checkpoint_of_the_last_message_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(1000, 10**6, tmp_path)
    for n in range(3):
        spool.append(dataclasses.replace(_data(n), checkpoint=(("writer/p/1", str(n)),)))
    spool.append(dataclasses.replace(_data(9), checkpoint=(("writer/p/2", "x"),)))
    _drain(spool)
    spool.close()
    assert Spool(1000, 10**6, tmp_path).checkpoint == {"writer/p/1": "2", "writer/p/2": "x"}


def test_memory_holds_a_window_of_a_long_disk_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_spool, "WINDOW", 10)
    spool = Spool(10_000, 10**8, tmp_path)
    for i in range(95):
        spool.append(_data(i))
    assert len(spool._queue) <= 10  # the rest waits on disk only
    assert len(spool) == 95
    assert [m.topic for m in _drain(spool)] == [f"d/{i}" for i in range(95)]
    spool.close()


def test_mqtt_properties_survive_the_disk(tmp_path: Path) -> None:
    props = {
        "message_expiry_interval": 120,
        "correlation_data": b"\x00\xffid",
        "response_topic": "r/1",
        "user_property": [("a", "1"), ("b", "2")],
    }
    spool = Spool(100, 10**6, tmp_path)
    spool.append(Outgoing("t", b"p", qos=2, retain=True, properties=props))
    spool.close()
    (msg,) = _drain(Spool(100, 10**6, tmp_path))
    assert (msg.topic, msg.payload, msg.qos, msg.retain, msg.properties) == (
        "t",
        b"p",
        2,
        True,
        props,
    )


def test_the_message_expiry_is_shortened_by_the_wait_and_ends_it() -> None:
    msg = Outgoing("s", b"", properties={"message_expiry_interval": 60, "response_topic": "r"})
    spooled = time.time()
    assert Entry(1, msg, spooled).live_properties(spooled) == msg.properties
    assert Entry(1, msg, spooled).live_properties(spooled + 45) == {
        "message_expiry_interval": 15,
        "response_topic": "r",
    }
    assert Entry(1, msg, spooled).live_properties(spooled + 60) is None
    short = Outgoing("s", b"", properties={"message_expiry_interval": 1})
    assert Entry(1, short, spooled).live_properties(spooled + 0.01) == short.properties
    assert Entry(1, short, spooled).live_properties(spooled + 1.0) is None
    plain = Outgoing("d", b"")
    assert Entry(1, plain, spooled).live_properties(spooled + 10**6) == {}


def test_a_second_process_cannot_open_a_spool_in_use(tmp_path: Path) -> None:
    first = SpoolStore(tmp_path)
    with pytest.raises(SpoolError, match="in use by process"):
        SpoolStore(tmp_path)
    first.close()
    SpoolStore(tmp_path).close()


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match=r"spool directory .*file"):
        SpoolStore(tmp_path / "file" / "spool")


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.booleans(), st.integers(1, 40)),
        st.tuples(st.just("send"), st.booleans()),  # acknowledged or not
        st.tuples(st.just("reopen")),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_a_disk_spool_behaves_like_its_model_whatever_happens(ops: list[tuple[Any, ...]]) -> None:
    """Model: a list of waiting messages; ``send`` takes the head, acknowledged or not; a
    reopen puts the unacknowledged ones back in front (the broker never confirmed them); each
    append drops the oldest waiting data beyond the limit, never a retained message."""
    limit = 8
    with tempfile.TemporaryDirectory() as d:
        spool = Spool(limit, 10**6, Path(d))
        waiting: list[str] = []
        retained: set[str] = set()
        unacked: list[str] = []
        for n, op in enumerate(ops):
            if op[0] == "append":
                topic = f"t/{n}"
                spool.append(Outgoing(topic, b"x" * op[2], retain=op[1]))
                waiting.append(topic)
                if op[1]:
                    retained.add(topic)
                while len(waiting) > limit and any(t not in retained for t in waiting):
                    waiting.remove(next(t for t in waiting if t not in retained))
            elif op[0] == "send" and waiting:
                entry = spool.pop()
                assert entry.msg.topic == waiting.pop(0)
                if op[1]:
                    spool.done(entry)
                else:
                    unacked.append(entry.msg.topic)
            elif op[0] == "reopen":
                spool.close()
                spool = Spool(limit, 10**6, Path(d))
                waiting, unacked = unacked + waiting, []
            assert len(spool) == len(waiting)
        assert [m.topic for m in _drain(spool)] == waiting
        spool.close()


def _rss_mib() -> float:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def test_a_memory_spool_holds_about_what_it_counts() -> None:
    """orjson's output sits in a block larger than its size; spooled as it comes, 60 MiB of
    messages held ~140 MiB. The spool keeps a copy of its own size."""
    import orjson

    spool = Spool(10**6, 10**10)
    before = _rss_mib()
    for i in range(18_000):
        body = {
            "Payload": {
                f"V{j}": {"Value": float(i + j), "SourceTimestamp": "x" * 27} for j in range(50)
            }
        }
        spool.append(Outgoing("t", orjson.dumps(body)))
    held = _rss_mib() - before
    counted = spool.bytes / 2**20
    print(f"memory spool: {counted:.1f} MiB counted, RSS grew {held:.1f} MiB")
    assert counted > 50
    assert held < 1.4 * counted + 10

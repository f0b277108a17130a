"""The refusal bookkeeping of the MQTT session (no broker needed: it is fed packet ids and
reason codes, as the session feeds it from PUBACK/PUBREC)."""

from __future__ import annotations

import logging

import pytest

from opcua_mqtt.adapters.mqtt import Outgoing
from opcua_mqtt.adapters.mqtt_delivery import DeliveryTracker, reason_label, reason_name

NOT_AUTHORIZED, QUOTA = 0x87, 0x97


def _refusal_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_one_warning_per_topic_and_reason_per_episode_and_the_owner_hears_start_and_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changes: list[bool] = []
    tracker = DeliveryTracker("client id 'b'", changes.append)
    mid = 0
    with caplog.at_level(logging.INFO):
        for topic in ("a", "a", "a", "b", "b"):
            mid += 1
            tracker.sent(mid, Outgoing(topic, b"x"))
            assert tracker.acknowledged(mid, NOT_AUTHORIZED) is None
        assert changes == [True]
        assert [w.split(":")[0] for w in _refusal_warnings(caplog)] == [
            "MQTT broker refused a publish on a",
            "MQTT broker refused a publish on b",
        ]
        assert tracker.refused_counts == {NOT_AUTHORIZED: 5}
        tracker.sent(10, Outgoing("a", b"y"))
        tracker.sent(11, Outgoing("b", b"y"))
        assert tracker.acknowledged(10, 0) == Outgoing("a", b"y")  # a's episode ends
        assert tracker.refusing and changes == [True]
        assert tracker.acknowledged(11, 0x10) is not None  # No matching subscribers: success
    assert not tracker.refusing
    assert changes == [True, False]
    assert "accepts publishes on a again" in caplog.text


def test_a_new_reason_on_a_refused_topic_is_logged_again() -> None:
    tracker = DeliveryTracker("client id 'b'")
    tracker.sent(1, Outgoing("a", b""))
    tracker.sent(2, Outgoing("a", b""))
    tracker.acknowledged(1, NOT_AUTHORIZED)
    tracker.acknowledged(2, QUOTA)
    assert [str(r) for r in tracker.refusals] == ["a: Quota exceeded (0x97)"]
    assert tracker.refused_counts == {NOT_AUTHORIZED: 1, QUOTA: 1}
    assert "check the broker's ACL" not in tracker.describe()
    assert "quota" in tracker.describe()


def test_unknown_ids_and_forgotten_messages_change_nothing() -> None:
    tracker = DeliveryTracker("client id 'b'")
    assert tracker.acknowledged(7, NOT_AUTHORIZED) is None  # e.g. a SUBACK's id: not ours
    tracker.sent(1, Outgoing("a", b""))
    tracker.sent(2, Outgoing("b", b""))
    assert tracker.keep_only([2]) == [1]
    assert tracker.acknowledged(1, NOT_AUTHORIZED) is None
    assert tracker.refused_counts == {}
    assert not tracker.refusing


@pytest.mark.parametrize(
    ("code", "name", "label"),
    [
        (0x87, "Not authorized", "not_authorized"),
        (0x80, "Unspecified error", "unspecified_error"),
        (0x8E, "Session taken over", "session_taken_over"),
        (0xFE, "reason 0xFE", "0xfe"),
    ],
)
def test_reason_names_and_metric_labels(code: int, name: str, label: str) -> None:
    assert reason_name(code) == name
    assert reason_label(code) == label

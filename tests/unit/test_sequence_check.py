"""The oracle of the fault tests and the soak (harness/sequence_check.py) counts what it should:
a miss, an exact QoS 1 repeat, a late frame, a writer that starts again, a keep-alive ahead."""

from __future__ import annotations

import json

import pytest

from harness.sequence_check import NotData, SequenceLedger


def _payload(writer: int, seq: int, kind: str = "ua-deltaframe", value: int = 0) -> bytes:
    dsm = {"DataSetWriterId": writer, "SequenceNumber": seq, "MessageType": kind}
    if kind != "ua-keepalive":
        dsm["Payload"] = {"V": {"UaType": 6, "Value": value}}
    return json.dumps({"MessageId": "m", "MessageType": "ua-data", "Messages": [dsm]}).encode()


def test_a_clean_stream_with_an_exact_repeat_has_no_problem() -> None:
    ledger = SequenceLedger()
    for seq in (0, 1, 2, 1, 3):
        ledger.add_payload(_payload(7, seq, value=seq))
    ledger.add_payload(_payload(7, 4, "ua-keepalive"))  # the next number: nothing missing
    assert (ledger.frames, ledger.distinct, ledger.duplicates) == (5, 4, 1)
    assert list(ledger.problems()) == []


def test_misses_late_frames_restarts_and_keepalives_ahead_are_counted() -> None:
    ledger = SequenceLedger()
    for seq in (0, 1, 3, 2, 5):
        ledger.add_payload(_payload(7, seq, value=seq))
    ledger.add_payload(_payload(7, 8, "ua-keepalive"))  # 6 and 7 were sent, never seen
    ledger.add_payload(_payload(7, 0, value=100))  # number 0 again, other content
    ledger.add_payload(_payload(8, 0))
    writer = ledger.writers[7]
    assert (writer.missing, writer.late, writer.restarts) == (3, 1, 1)
    assert [r.missing_ranges() for r in writer.runs] == [[(4, 4), (6, 7)], []]
    (problem,) = ledger.problems()
    assert problem.startswith("writer 7: runs 0..7, 0..0; 3 missing")


@pytest.mark.parametrize(
    "payload", [b"{", b'{"MessageType":"ua-metadata"}', b'{"MessageType":"ua-data","Messages":{}}']
)
def test_what_is_not_a_readable_data_message_is_refused(payload: bytes) -> None:
    with pytest.raises(NotData):
        SequenceLedger().add_payload(payload)

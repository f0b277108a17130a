"""DataSetWriter state: key/delta/keep-alive frames, sequence numbers, ConfigurationVersion.

Clauses are OPC 10000-14 1.05.04: §6.2.4.3 KeyFrameCount, §6.2.6.3 KeepAliveTime, §7.2.4.5.8
keep-alive sequence number, §6.2.3.2.6 ConfigurationVersionDataType; VersionTime is OPC 10000-4
§7.43.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from opcua_mqtt.core.writer_state import (
    UINT32_MAX,
    ConfigurationVersion,
    FieldSpec,
    Frame,
    FrameKind,
    UnknownFieldError,
    WriterState,
    next_version,
    same_data_value,
    version_time,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VT0 = 820_540_800  # (26 * 365 + 7 leap days) * 86400 seconds from 2000-01-01 to 2026-01-01
SECOND = timedelta(seconds=1)
DOUBLE = ua.VariantType.Double.value


def spec(
    name: str,
    builtin_type: int = DOUBLE,
    *,
    value_rank: int = -1,
    array_dimensions: tuple[int, ...] = (),
    description: str = "",
    properties: tuple[tuple[str, object], ...] = (),
) -> FieldSpec:
    data_type = ua.NodeId(builtin_type)
    return FieldSpec(
        name, builtin_type, data_type, value_rank, array_dimensions, description, properties
    )


FIELDS = (spec("a"), spec("b"), spec("c"))


def dv(value: float, source: datetime | None = None, status: int = 0) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value, ua.VariantType.Double),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=source,
    )


def writer(
    key_frame_count: int = 10,
    keep_alive: timedelta = 5 * SECOND,
    version: ConfigurationVersion | None = None,
    first_sequence_number: int = 0,
) -> WriterState:
    return WriterState(
        FIELDS,
        key_frame_count=key_frame_count,
        keep_alive_time=keep_alive,
        now=T0,
        version=version,
        first_sequence_number=first_sequence_number,
    )


def tick(w: WriterState, seconds: float) -> Frame | None:
    return w.tick(T0 + timedelta(seconds=seconds))


def values(frame: Frame | None) -> dict[str, float | None]:
    assert frame is not None
    return {name: v.Value.Value for name, v in frame.fields.items()}


# --- sequence numbers -------------------------------------------------------------------------


def test_sequence_wraps_to_zero() -> None:
    w = writer(key_frame_count=1, first_sequence_number=UINT32_MAX - 1)
    numbers = [f.sequence_number for s in range(4) if (f := tick(w, s)) is not None]
    assert numbers == [UINT32_MAX - 1, UINT32_MAX, 0, 1]


def test_first_sequence_number_must_be_uint32() -> None:
    with pytest.raises(ValueError, match="UInt32"):
        writer(first_sequence_number=2**32)


# --- key frames -------------------------------------------------------------------------------


def test_first_message_is_a_key_frame_with_placeholders() -> None:
    w = writer()
    w.update("b", dv(2.0))
    frame = tick(w, 0)
    assert frame is not None
    assert frame.kind is FrameKind.KEY
    assert frame.kind.value == "ua-keyframe"
    assert frame.sequence_number == 0
    assert frame.timestamp == T0
    assert frame.metadata_version == w.version
    assert list(frame.fields) == ["a", "b", "c"]
    assert frame.fields["b"].Value.Value == 2.0
    for missing in ("a", "c"):
        status = frame.fields[missing].StatusCode
        assert status.value == ua.StatusCodes.BadWaitingForInitialData == 0x80320000
    assert frame.fields["a"] is not frame.fields["c"]  # mutable asyncua objects are not shared


def test_frame_fields_are_read_only() -> None:
    frame = tick(writer(), 0)
    assert frame is not None
    with pytest.raises(TypeError):
        frame.fields["a"] = dv(1.0)  # type: ignore[index]


def test_key_frame_count_one_makes_every_message_a_key_frame() -> None:
    # §6.2.4.3: "If the KeyFrameCount is set to 1, every message contains a key frame."
    w = writer(key_frame_count=1)
    kinds = []
    for s in range(5):
        if s == 2:
            w.update("a", dv(1.0))
        frame = tick(w, s)
        assert frame is not None
        kinds.append(frame.kind)
    assert kinds == [FrameKind.KEY] * 5


def test_key_frame_every_third_publishing_interval() -> None:
    # §6.2.4.3: KeyFrameCount multiplies the PublishingInterval, so ticks are counted, changes or
    # not: key frames on ticks 0, 3, 6; deltas only where something changed.
    w = writer(key_frame_count=3, keep_alive=timedelta(hours=1))
    kinds: list[FrameKind | None] = []
    for s in range(8):
        if s in (1, 5):
            w.update("a", dv(float(s)))
        frame = tick(w, s)
        kinds.append(frame.kind if frame else None)
    key, delta = FrameKind.KEY, FrameKind.DELTA
    assert kinds == [key, delta, None, key, None, delta, key, None]


def test_key_frame_count_zero_is_rejected() -> None:
    # §6.2.4.3: 0 is for acyclic (event) DataSets; a cyclic one shall use >= 1.
    with pytest.raises(ValueError, match="KeyFrameCount"):
        writer(key_frame_count=0)


def test_force_key_frame() -> None:
    w = writer()
    tick(w, 0)
    w.force_key_frame()
    frame = tick(w, 1)
    assert frame is not None
    assert frame.kind is FrameKind.KEY


# --- delta frames -----------------------------------------------------------------------------


def test_delta_has_only_changed_fields_in_field_order() -> None:
    w = writer()
    for name in "abc":
        w.update(name, dv(0.0))
    tick(w, 0)
    w.update("c", dv(3.0))
    w.update("a", dv(1.0))
    frame = tick(w, 1)
    assert frame is not None
    assert frame.kind is FrameKind.DELTA
    assert frame.kind.value == "ua-deltaframe"
    assert frame.sequence_number == 1
    assert values(frame) == {"a": 1.0, "c": 3.0}
    assert list(frame.fields) == ["a", "c"]


def test_delta_carries_the_latest_value() -> None:
    w = writer()
    tick(w, 0)
    w.update("a", dv(1.0))
    w.update("a", dv(2.0))
    assert values(tick(w, 1)) == {"a": 2.0}


def test_identical_update_is_not_a_change() -> None:
    w = writer()
    w.update("a", dv(1.0, T0))
    tick(w, 0)
    assert w.update("a", dv(1.0, T0)) is False  # a new object, but value, status, time equal
    assert tick(w, 1) is None


@pytest.mark.parametrize(
    "changed",
    [
        dv(2.0, T0),  # value
        dv(1.0, T0 + SECOND),  # source timestamp
        dv(1.0, T0, ua.StatusCodes.UncertainLastUsableValue),  # status
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Float), SourceTimestamp=T0),  # type
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), ServerTimestamp=T0),  # server ts
    ],
)
def test_any_difference_is_a_change(changed: ua.DataValue) -> None:
    w = writer()
    w.update("a", dv(1.0, T0))
    tick(w, 0)
    assert w.update("a", changed) is True
    frame = tick(w, 1)
    assert frame is not None
    assert frame.kind is FrameKind.DELTA


def test_value_back_to_what_was_sent_is_not_sent_again() -> None:
    w = writer()
    w.update("a", dv(1.0, T0))
    tick(w, 0)
    w.update("a", dv(2.0, T0))
    w.update("a", dv(1.0, T0))
    assert tick(w, 1) is None


def test_value_back_to_an_older_one_is_sent() -> None:
    w = writer()
    w.update("a", dv(1.0))
    tick(w, 0)  # key: a = 1
    w.update("a", dv(2.0))
    assert values(tick(w, 1)) == {"a": 2.0}
    w.update("a", dv(1.0))
    assert values(tick(w, 2)) == {"a": 1.0}


def test_same_data_value_edge_cases() -> None:
    assert same_data_value(dv(math.nan), dv(math.nan))  # ua.DataValue.__eq__ says False
    assert not same_data_value(dv(0.0), dv(-0.0))  # different JSON
    matrix = ua.Variant([1.0, 2.0, 3.0, 4.0], ua.VariantType.Double, Dimensions=[2, 2])
    flat = ua.Variant([1.0, 2.0, 3.0, 4.0], ua.VariantType.Double)
    assert not same_data_value(ua.DataValue(matrix), ua.DataValue(flat))
    assert same_data_value(ua.DataValue(flat), ua.DataValue(flat))


def test_same_data_value_compares_status_and_each_timestamp() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert same_data_value(dv(1.0, t), dv(1.0, t))  # equal StatusCodes, distinct objects
    assert not same_data_value(dv(1.0, t), dv(1.0, t, status=0x80AB0000))
    assert not same_data_value(dv(1.0, t), dv(1.0, t + timedelta(microseconds=1)))
    assert not same_data_value(dv(1.0, t), dv(1.0))  # a SourceTimestamp against none
    for member, other in (
        ("ServerTimestamp", t),
        ("SourcePicoseconds", 5),
        ("ServerPicoseconds", 5),
    ):
        changed = dv(1.0, t)
        setattr(changed, member, other)
        assert not same_data_value(dv(1.0, t), changed), member


def test_unknown_field_is_rejected() -> None:
    w = writer()
    with pytest.raises(UnknownFieldError, match=r"'nope'.*'a', 'b', 'c'") as info:
        w.update("nope", dv(1.0))
    assert info.value.name == "nope"
    assert isinstance(info.value, ValueError)


# --- keep-alive -------------------------------------------------------------------------------


def test_keep_alive_after_silence_with_next_sequence_number() -> None:
    w = writer(keep_alive=5 * SECOND)
    tick(w, 0)  # key frame, sequence 0
    w.update("a", dv(1.0))
    tick(w, 1)  # delta, sequence 1
    assert all(tick(w, s) is None for s in (2, 3, 4, 5))
    keep_alive = tick(w, 6)  # 5 s after the last message
    assert keep_alive is not None
    assert keep_alive.kind is FrameKind.KEEPALIVE
    assert keep_alive.kind.value == "ua-keepalive"
    assert dict(keep_alive.fields) == {}
    # §7.2.4.5.8: the keep-alive carries the next expected sequence number and does not use it.
    assert keep_alive.sequence_number == 2 == w.next_sequence_number
    assert tick(w, 7) is None  # the keep-alive restarted the silence timer
    w.update("a", dv(2.0))
    delta = tick(w, 8)
    assert delta is not None
    assert delta.sequence_number == 2


def test_keep_alive_repeats_and_survives_a_clock_step_back() -> None:
    w = writer(keep_alive=2 * SECOND)
    tick(w, 100)
    frame = tick(w, 102)
    assert frame is not None
    assert frame.kind is FrameKind.KEEPALIVE
    assert tick(w, 50) is None  # clock stepped back: silence is measured from here
    frame = tick(w, 52)
    assert frame is not None
    assert frame.kind is FrameKind.KEEPALIVE


def test_nothing_due_gives_no_frame() -> None:
    w = writer(keep_alive=timedelta(minutes=1))
    tick(w, 0)
    assert [tick(w, s) for s in range(1, 9)] == [None] * 8


def test_keep_alive_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="KeepAliveTime"):
        writer(keep_alive=timedelta(0))


# --- ConfigurationVersion ---------------------------------------------------------------------


def test_version_time() -> None:
    assert version_time(T0) == VT0
    assert version_time(T0.replace(tzinfo=None)) == VT0  # naive = UTC, like asyncua
    assert version_time(T0 + timedelta(milliseconds=999)) == VT0
    assert version_time(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert ConfigurationVersion.initial(datetime(1999, 1, 1, tzinfo=UTC)) == ConfigurationVersion(
        1, 1
    )  # 0 means "no version information" (OPC 10000-4 §7.43)
    with pytest.raises(ValueError, match="VersionTime"):
        version_time(datetime(2137, 1, 1, tzinfo=UTC))


def test_initial_version() -> None:
    assert ConfigurationVersion.initial(T0) == ConfigurationVersion(VT0, VT0)
    assert writer().version == ConfigurationVersion(VT0, VT0)
    kept = ConfigurationVersion(5, 7)
    assert writer(version=kept).version == kept


OLD = (spec("a"), spec("b"), spec("c"))
V0 = ConfigurationVersion(VT0 - 100, VT0 - 50)
LATER = T0 + 10 * SECOND
MAJOR = ConfigurationVersion(VT0 + 10, VT0 + 10)
MINOR = ConfigurationVersion(VT0 - 100, VT0 + 10)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param(OLD, V0, id="unchanged"),
        pytest.param((spec("a"), spec("b"), spec("c")), V0, id="equal copies"),
        pytest.param((*OLD, spec("d")), MINOR, id="appended at end"),
        pytest.param((spec("a", description="x"), *OLD[1:]), MINOR, id="description"),
        pytest.param(OLD[:2], MAJOR, id="removed"),
        pytest.param((OLD[1], OLD[0], OLD[2]), MAJOR, id="reordered"),
        pytest.param((OLD[0], spec("x"), *OLD[1:]), MAJOR, id="inserted in between"),
        pytest.param((spec("A"), *OLD[1:]), MAJOR, id="renamed"),
        pytest.param((spec("a", ua.VariantType.Float.value), *OLD[1:]), MAJOR, id="builtin type"),
        pytest.param(
            (FieldSpec("a", DOUBLE, ua.NodeId(1, 2)), *OLD[1:]), MAJOR, id="data type nodeid"
        ),
        pytest.param((spec("a", value_rank=1), *OLD[1:]), MAJOR, id="value rank"),
        pytest.param(
            (spec("a", value_rank=1, array_dimensions=(3,)), *OLD[1:]), MAJOR, id="dimensions"
        ),
        pytest.param((spec("a", properties=(("EURange", 1),)), *OLD[1:]), MAJOR, id="property"),
    ],
)
def test_version_rules(new: tuple[FieldSpec, ...], expected: ConfigurationVersion) -> None:
    assert next_version(OLD, new, V0, LATER) == expected


def test_dimensions_change_alone_is_major() -> None:
    old = (spec("a", value_rank=1, array_dimensions=(3,)),)
    new = (spec("a", value_rank=1, array_dimensions=(4,)),)
    assert next_version(old, new, V0, LATER) == MAJOR


def test_versions_strictly_increase_within_one_second() -> None:
    v0 = ConfigurationVersion.initial(T0)
    v1 = next_version(OLD, OLD[:2], v0, T0)  # major, same second
    assert v1.major == v1.minor == v0.major + 1
    v2 = next_version(OLD[:2], OLD, v1, T0 + timedelta(milliseconds=500))  # minor
    assert v2 == ConfigurationVersion(v1.major, v1.minor + 1)
    v3 = next_version(OLD, OLD[:1], v2, T0 - timedelta(hours=1))  # major, clock went back
    assert v3.major == v3.minor == v2.minor + 1


def test_reconfigure_forces_key_frame_and_keeps_compatible_values() -> None:
    w = writer()
    w.update("a", dv(1.0))
    w.update("b", dv(2.0))
    tick(w, 0)
    new = (spec("a"), spec("b", ua.VariantType.Float.value), spec("d"))
    version = w.reconfigure(new, T0 + SECOND)
    assert version == w.version == ConfigurationVersion(VT0 + 1, VT0 + 1)
    assert w.fields == new
    frame = tick(w, 1)
    assert frame is not None
    assert frame.kind is FrameKind.KEY
    assert frame.metadata_version == version
    assert frame.sequence_number == 1  # the sequence continues
    assert list(frame.fields) == ["a", "b", "d"]
    assert frame.fields["a"].Value.Value == 1.0  # same shape: kept
    bad = ua.StatusCodes.BadWaitingForInitialData
    assert frame.fields["b"].StatusCode.value == bad  # type changed: dropped
    assert frame.fields["d"].StatusCode.value == bad
    with pytest.raises(UnknownFieldError):
        w.update("c", dv(0.0))


def test_reconfigure_unchanged_keeps_version_but_still_sends_key_frame() -> None:
    w = writer()
    tick(w, 0)
    assert w.reconfigure(FIELDS, T0 + SECOND) == ConfigurationVersion(VT0, VT0)
    frame = tick(w, 1)
    assert frame is not None
    assert frame.kind is FrameKind.KEY


def test_duplicate_field_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate DataSet field names: a"):
        WriterState((spec("a"), spec("a")), key_frame_count=1, keep_alive_time=SECOND, now=T0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "non-empty name"),
        ({"builtin_type": 26}, "builtin type"),
        ({"value_rank": -4}, "value rank"),
        ({"value_rank": -1, "array_dimensions": (3,)}, "array dimensions"),
        ({"value_rank": 2, "array_dimensions": (3,)}, "array dimensions"),
        ({"value_rank": 1, "array_dimensions": (-1,)}, "UInt32"),
    ],
)
def test_field_spec_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        replace(spec("a"), **kwargs)  # replace() runs __post_init__ again


# --- property: a subscriber replaying the frames always holds the latest values ---------------

NAMES_BY_CONFIG = (("a", "b", "c"), ("a", "b", "c", "d"), ("b", "a"), ("a",))
# Few distinct samples, so that values often return to one sent before.
SAMPLES = st.sampled_from(
    [
        (0.0, None, 0),
        (-0.0, None, 0),
        (1.0, None, 0),
        (math.nan, None, 0),
        (1.0, T0, 0),
        (1.0, None, ua.StatusCodes.UncertainLastUsableValue),
    ]
).map(lambda args: dv(*args))


class WriterMachine(RuleBasedStateMachine):
    """Random updates, ticks, reconfigurations and forced key frames against a subscriber model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.latest: dict[str, ua.DataValue] = {}
        self.subscriber: dict[str, ua.DataValue] = {}
        self.last_sequence: int | None = None
        self.last_sent = T0
        self.ticks_since_key = 0
        self.key_forced = True

    @initialize(
        key_frame_count=st.sampled_from([1, 2, 3, 5, 8]),
        keep_alive=st.integers(1, 6),
        first=st.sampled_from([0, UINT32_MAX - 2]),
    )
    def start(self, key_frame_count: int, keep_alive: int, first: int) -> None:
        self.key_frame_count = key_frame_count
        self.keep_alive = keep_alive * SECOND
        self.writer = WriterState(
            FIELDS,
            key_frame_count=key_frame_count,
            keep_alive_time=self.keep_alive,
            now=self.now,
            first_sequence_number=first,
        )

    def _update(self, data: st.DataObject, value: ua.DataValue) -> None:
        name = data.draw(st.sampled_from([f.name for f in self.writer.fields]))
        self.writer.update(name, value)
        self.latest[name] = value

    # Two update rules and a rarely effective disturbance keep enough delta frames in the mix.
    @rule(data=st.data(), value=SAMPLES)
    def update(self, data: st.DataObject, value: ua.DataValue) -> None:
        self._update(data, value)

    @rule(data=st.data(), value=SAMPLES)
    def update_more(self, data: st.DataObject, value: ua.DataValue) -> None:
        self._update(data, value)

    @rule(
        what=st.sampled_from(["force", *NAMES_BY_CONFIG]),
        effective=st.integers(0, 3).map(lambda n: n == 0),
    )
    def disturb(self, what: str | tuple[str, ...], effective: bool) -> None:
        if not effective:
            return
        if what == "force":
            self.writer.force_key_frame()
        else:
            names = tuple(what)
            self.writer.reconfigure([spec(n) for n in names], self.now)
            self.latest = {n: v for n, v in self.latest.items() if n in names}
        self.key_forced = True

    @rule(step=st.sampled_from([0, 1, 1, 2, 7]))
    def tick(self, step: int) -> None:
        self.now += step * SECOND
        self.ticks_since_key += 1
        key_due = self.key_forced or self.ticks_since_key >= self.key_frame_count
        frame = self.writer.tick(self.now)
        if frame is None:
            assert not key_due
            assert self.now - self.last_sent < self.keep_alive
        else:
            self.check_frame(frame, key_due)
        self.check_replay()

    def check_frame(self, frame: Frame, key_due: bool) -> None:
        assert frame.timestamp == self.now
        assert frame.metadata_version == self.writer.version
        silence, self.last_sent = self.now - self.last_sent, self.now
        expected = None if self.last_sequence is None else (self.last_sequence + 1) % 2**32
        if frame.kind is FrameKind.KEEPALIVE:
            assert not key_due
            assert silence >= self.keep_alive
            assert not frame.fields
            # §7.2.4.5.8: the number the next key or delta frame will carry.
            assert frame.sequence_number == expected == self.writer.next_sequence_number
            return
        # (a) key and delta frames are numbered consecutively modulo 2**32.
        assert expected is None or frame.sequence_number == expected
        self.last_sequence = frame.sequence_number
        order = [f.name for f in self.writer.fields]
        assert list(frame.fields) == [n for n in order if n in frame.fields]
        if frame.kind is FrameKind.KEY:
            assert key_due
            assert list(frame.fields) == order
            self.subscriber = dict(frame.fields)
            self.ticks_since_key = 0
            self.key_forced = False
        else:
            assert not key_due
            assert frame.fields  # an empty delta frame is never sent (§6.2.4.3)
            self.subscriber.update(frame.fields)

    def check_replay(self) -> None:
        # (b) after every tick, replaying the last key frame and the deltas since gives every
        # field's latest value: nothing that changed is left unsent.
        assert set(self.subscriber) == {f.name for f in self.writer.fields}
        for name, held in self.subscriber.items():
            if name in self.latest:
                assert same_data_value(held, self.latest[name]), name
            else:
                assert held.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData, name


WriterMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40)
TestWriterMachine = WriterMachine.TestCase

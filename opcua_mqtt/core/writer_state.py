"""State of one DataSetWriter: which DataSetMessage to send on each publishing tick.

Clause numbers are OPC 10000-14 (PubSub) 1.05.04 unless stated; they move between 1.05 editions.

- Key and delta frames (§6.2.4.3 KeyFrameCount): KeyFrameCount is a multiplier of the
  PublishingInterval, "the maximum number of times the PublishingInterval expires before a key
  frame message with values for all published Variables is sent". So ticks are counted, not
  messages: with N = 3 ticks 1, 4, 7, ... carry key frames whatever happened in between. The
  first message is a key frame. Between key frames a delta frame carries only changed fields and
  "if no changes exist, the delta frame DataSetMessage shall not be sent". N = 1 makes every
  message a key frame. N = 0 is reserved for acyclic (event) DataSets, which this writer does not
  produce: a cyclic DataSet "shall" use N >= 1, so 0 is rejected.
- Keep-alive (§6.2.6.3 KeepAliveTime): sent when no DataSetMessage was sent by the writer for
  KeepAliveTime. It does not consume a sequence number: "the sequence number provides the next
  expected sequence number for the DataSetWriter" (§7.2.4.5.8; 1.04 §7.2.2.3.8 says the same).
- Sequence numbers (§5.3.3, §7.2.5.4 Table 185): UInt32, one per DataSetWriter, incremented for
  each key or delta DataSetMessage, wrapping from 2**32 - 1 to 0.
- ConfigurationVersion (§6.2.3.2.6) of VersionTime values (OPC 10000-4 §7.43, "VersionTime";
  a UInt32 of seconds since 2000-01-01T00:00:00Z, 0 meaning "no version", and a new value "shall
  be greater than the previous value").

No clock is read here: every method that needs the time is given ``now``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from asyncua import ua

from opcua_mqtt.core.errors import OpcUaMqttError

__all__ = [
    "UINT32_MAX",
    "VERSION_TIME_EPOCH",
    "ConfigurationVersion",
    "FieldSpec",
    "Frame",
    "FrameKind",
    "UnknownFieldError",
    "WriterState",
    "next_version",
    "same_data_value",
    "version_time",
]

UINT32_MAX: Final = 2**32 - 1
#: Epoch of VersionTime (OPC 10000-4 §7.43).
VERSION_TIME_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_BUILTIN_TYPE: Final = 25  # DiagnosticInfo, the last built-in type of OPC 10000-6 §5.1.2


# --- versions ----------------------------------------------------------------------------------


def version_time(now: datetime) -> int:
    """``now`` as a VersionTime: whole seconds since 2000-01-01 UTC.

    A naive datetime is taken as UTC, as asyncua does. A clock before 2000 (an unset real-time
    clock) gives 0; callers that need a real version raise that to at least 1.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    seconds = math.floor((now - VERSION_TIME_EPOCH).total_seconds())
    if seconds > UINT32_MAX:
        raise ValueError(f"{now.isoformat()} is beyond the VersionTime range (year 2136)")
    return max(seconds, 0)


def _next_time(now: datetime, after: int) -> int:
    # Strictly increasing even when two changes fall in the same second or the clock went back:
    # OPC 10000-4 §7.43 requires a new VersionTime to be greater than the previous one.
    vt = max(version_time(now), after + 1, 1)
    if vt > UINT32_MAX:
        raise ValueError("VersionTime exhausted (would pass 2**32 - 1)")
    return vt


@dataclass(frozen=True, slots=True)
class ConfigurationVersion:
    """ConfigurationVersionDataType (§6.2.3.2.6): MajorVersion and MinorVersion as VersionTime."""

    major: int
    minor: int

    def __post_init__(self) -> None:
        for label, value in (("major", self.major), ("minor", self.minor)):
            if not 0 <= value <= UINT32_MAX:
                raise ValueError(f"{label} version {value} is not a UInt32")

    @classmethod
    def initial(cls, now: datetime) -> ConfigurationVersion:
        """A first version: both parts set to ``now`` (at least 1, since 0 means "none")."""
        vt = _next_time(now, 0)
        return cls(vt, vt)

    def next_major(self, now: datetime) -> ConfigurationVersion:
        """A new MajorVersion (MinorVersion with it) greater than both parts of this one."""
        vt = _next_time(now, max(self.major, self.minor))
        return ConfigurationVersion(vt, vt)


# --- fields ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One configured DataSet field; what DataSetMetaData's FieldMetaData is built from.

    ``builtin_type`` is the BuiltInType id (OPC 10000-6 §5.1.2, as in ``ua.VariantType``),
    ``data_type`` the DataType NodeId, ``value_rank`` and ``array_dimensions`` as the Variable
    attributes of OPC 10000-3. ``description`` and ``properties`` (name, value) pairs feed the
    FieldMetaData of the same names.
    """

    name: str
    builtin_type: int
    data_type: ua.NodeId
    value_rank: int = -1
    array_dimensions: tuple[int, ...] = ()
    description: str = ""
    properties: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a DataSet field needs a non-empty name")
        if not 0 <= self.builtin_type <= _MAX_BUILTIN_TYPE:
            raise ValueError(f"field {self.name!r}: builtin type {self.builtin_type} is unknown")
        if self.value_rank < -3:
            raise ValueError(f"field {self.name!r}: value rank {self.value_rank} is invalid")
        if self.array_dimensions:
            # OPC 10000-3 ArrayDimensions: null unless ValueRank > 0, else one entry per dimension.
            if self.value_rank != len(self.array_dimensions):
                raise ValueError(
                    f"field {self.name!r}: {len(self.array_dimensions)} array dimensions "
                    f"for value rank {self.value_rank}"
                )
            if any(not 0 <= d <= UINT32_MAX for d in self.array_dimensions):
                raise ValueError(f"field {self.name!r}: array dimensions must be UInt32")

    def _shape(self) -> tuple[object, ...]:
        """What a subscriber's decoding depends on; changing it needs a new MajorVersion."""
        return (
            self.name,
            self.builtin_type,
            self.data_type,
            self.value_rank,
            self.array_dimensions,
        )


def next_version(
    old_fields: Sequence[FieldSpec],
    new_fields: Sequence[FieldSpec],
    old_version: ConfigurationVersion,
    now: datetime,
) -> ConfigurationVersion:
    """The ConfigurationVersion after changing ``old_fields`` to ``new_fields`` (§6.2.3.2.6).

    MajorVersion (and MinorVersion with it, to the same value) changes when a field is removed,
    reordered, inserted before the end, renamed (the JSON payload is keyed by name, so this is a
    removal plus an insertion), or changes DataType, BuiltInType, ValueRank or ArrayDimensions,
    or when a Property value changes (§6.2.3.2.4, §6.2.3.2.6). MinorVersion alone changes when
    fields are only appended at the end ("Only the minorVersion shall be updated if fields are
    added at the end") or only descriptions change. No change keeps the version.
    """
    old, new = tuple(old_fields), tuple(new_fields)
    if old == new:
        return old_version
    major = len(new) < len(old) or any(
        a._shape() != b._shape() or a.properties != b.properties
        for a, b in zip(old, new, strict=False)
    )
    if major:
        return old_version.next_major(now)
    return ConfigurationVersion(old_version.major, _next_time(now, old_version.minor))


# --- values ------------------------------------------------------------------------------------


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # NaN stays NaN, and 0.0 and -0.0 are different JSON.
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def same_data_value(a: ua.DataValue, b: ua.DataValue) -> bool:
    """Whether two DataValues would encode identically: value, status and both timestamps.

    ``ua.DataValue.__eq__`` will not do: it treats NaN as unequal to itself (so a NaN sample would
    count as a change for ever) and ``ua.Variant.__eq__`` ignores Dimensions.

    On the hot path (every notification, twice): the SourceTimestamp, which differs in most
    updates, is compared first, and StatusCodes (a dataclass whose ``==`` is Python code) only
    when they are not the same object, as the Publish decoder shares them.
    """
    if a.SourceTimestamp != b.SourceTimestamp:
        return False
    sa, sb = a.StatusCode, b.StatusCode
    if (
        (sa is not sb and sa != sb)
        or a.ServerTimestamp != b.ServerTimestamp
        or a.SourcePicoseconds != b.SourcePicoseconds
        or a.ServerPicoseconds != b.ServerPicoseconds
    ):
        return False
    va, vb = a.Value, b.Value
    if va is None or vb is None:
        return va is vb
    return (
        va.VariantType == vb.VariantType
        and va.Dimensions == vb.Dimensions
        and va.is_array == vb.is_array
        and _same_value(va.Value, vb.Value)
    )


def _waiting_for_initial_data() -> ua.DataValue:
    # A fresh object each time: asyncua's DataValue is mutable and frames must not share state.
    return ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))


# --- frames ------------------------------------------------------------------------------------


class FrameKind(StrEnum):
    """Kind of DataSetMessage; values are the JSON ``MessageType`` strings (§7.2.5.4)."""

    KEY = "ua-keyframe"
    DELTA = "ua-deltaframe"
    KEEPALIVE = "ua-keepalive"


@dataclass(frozen=True, slots=True)
class Frame:
    """One DataSetMessage to send, before encoding.

    ``fields`` is read-only and in configured field order: all fields for a key frame (those
    without a value yet as Bad_WaitingForInitialData), the changed ones for a delta frame, none
    for a keep-alive, whose ``sequence_number`` is the one the next key or delta frame will carry.
    """

    kind: FrameKind
    sequence_number: int
    fields: Mapping[str, ua.DataValue]
    metadata_version: ConfigurationVersion
    timestamp: datetime


class UnknownFieldError(OpcUaMqttError, ValueError):
    """An update named a field that the writer's configuration does not have."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        shown = ", ".join(repr(k) for k in known)
        super().__init__(f"unknown DataSet field {name!r}; configured fields: {shown}")


# --- the writer --------------------------------------------------------------------------------


class WriterState:
    """Decides, tick by tick, which DataSetMessage one DataSetWriter sends.

    DataValues passed to :meth:`update` are kept by reference and handed out in frames, so they
    must not be mutated afterwards (asyncua creates a new one per notification).
    """

    def __init__(
        self,
        fields: Sequence[FieldSpec],
        *,
        key_frame_count: int,
        keep_alive_time: timedelta,
        now: datetime,
        version: ConfigurationVersion | None = None,
        first_sequence_number: int = 0,
    ) -> None:
        """``version`` lets a restarted bridge keep a persisted version; otherwise it is ``now``.

        ``first_sequence_number`` is there for continuity after a restart and for tests.
        """
        if not 1 <= key_frame_count <= UINT32_MAX:
            raise ValueError(
                f"KeyFrameCount must be 1..2**32-1 for a cyclic DataSet (Part 14 §6.2.4.3); "
                f"0 is only for event DataSets, got {key_frame_count}"
            )
        if keep_alive_time <= timedelta(0):
            raise ValueError("KeepAliveTime must be larger than 0 (Part 14 §6.2.6.3)")
        if not 0 <= first_sequence_number <= UINT32_MAX:
            raise ValueError("a sequence number is a UInt32")
        self._key_frame_count = key_frame_count
        self._keep_alive_time = keep_alive_time
        self._fields: tuple[FieldSpec, ...] = ()
        self._types: dict[str, int] = {}
        self._set_fields(fields)
        self._version = version if version is not None else ConfigurationVersion.initial(now)
        self._next_sequence = first_sequence_number
        self._latest: dict[str, ua.DataValue] = {}
        # What the subscriber holds: the value last sent per field (absent: none or placeholder).
        self._sent: dict[str, ua.DataValue] = {}
        # Fields whose latest value differs from what was last sent.
        self._dirty: set[str] = set()
        self._key_due = True
        self._ticks_since_key = 0
        self._last_sent_at: datetime | None = None

    # introspection

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The configured fields, in DataSet order."""
        return self._fields

    @property
    def builtin_types(self) -> Mapping[str, int]:
        """Field name -> built-in type id of the configured fields; the same table for the
        state's life (:meth:`reconfigure` updates it), which the bridge's per-value type check
        shares (100,000 fields: a second table per writer cost ~8 MiB)."""
        return self._types

    @property
    def version(self) -> ConfigurationVersion:
        """The current ConfigurationVersion, for DataSetMessages and DataSetMetaData alike."""
        return self._version

    @property
    def next_sequence_number(self) -> int:
        """The number the next key or delta frame will carry (and a keep-alive announces)."""
        return self._next_sequence

    # input

    def update(self, name: str, value: ua.DataValue) -> bool:
        """Record a new value; return whether it differs from the previous one for ``name``.

        An update identical in value, status and timestamps (:func:`same_data_value`) is not a
        change, and a value that returns to exactly what was last sent drops out of the next
        delta frame, since the subscriber already holds it.
        """
        previous = self._latest.get(name)
        if previous is None:
            if name not in self._types:  # a field with a value is known
                raise UnknownFieldError(name, (f.name for f in self._fields))
        elif same_data_value(previous, value):
            return False
        self._latest[name] = value
        sent = self._sent.get(name)
        if sent is not None and same_data_value(sent, value):
            self._dirty.discard(name)
        else:
            self._dirty.add(name)
        return True

    def force_key_frame(self) -> None:
        """Make the next tick send a key frame, e.g. after the broker connection was restored."""
        self._key_due = True

    def reconfigure(self, fields: Sequence[FieldSpec], now: datetime) -> ConfigurationVersion:
        """Switch to a new field list; bump the version per :func:`next_version`.

        The next frame is a key frame, so a subscriber gets the full DataSet under the new
        version at once. Latest values are kept for fields whose name and shape are unchanged;
        the others wait for their first update.
        """
        old_shapes = {f.name: f._shape() for f in self._fields}
        new_version = next_version(self._fields, fields, self._version, now)
        self._set_fields(fields)
        self._version = new_version
        self._latest = {
            f.name: self._latest[f.name]
            for f in self._fields
            if f.name in self._latest and old_shapes.get(f.name) == f._shape()
        }
        self._sent.clear()
        self._dirty.clear()
        self._key_due = True
        return new_version

    # output

    def tick(self, now: datetime) -> Frame | None:
        """One PublishingInterval expired: the DataSetMessage to send now, if any."""
        if self._last_sent_at is not None and now < self._last_sent_at:
            # The clock went back; measure keep-alive silence from here rather than stall.
            self._last_sent_at = now
        self._ticks_since_key += 1
        last = self._last_sent_at
        if self._key_due or last is None or self._ticks_since_key >= self._key_frame_count:
            return self._key_frame(now)
        if self._dirty:
            return self._delta_frame(now)
        if now - last >= self._keep_alive_time:
            return self._frame(FrameKind.KEEPALIVE, self._next_sequence, {}, now)
        return None

    # internals

    def _set_fields(self, fields: Sequence[FieldSpec]) -> None:
        specs = tuple(fields)
        names = [f.name for f in specs]
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate DataSet field names: {', '.join(duplicates)}")
        self._fields = specs
        self._types.clear()  # in place: the bridge holds this table (builtin_types)
        self._types.update((f.name, f.builtin_type) for f in specs)

    def _key_frame(self, now: datetime) -> Frame:
        values: dict[str, ua.DataValue] = {}
        for spec in self._fields:
            latest = self._latest.get(spec.name)
            values[spec.name] = latest if latest is not None else _waiting_for_initial_data()
        self._sent = dict(self._latest)
        self._dirty.clear()
        self._key_due = False
        self._ticks_since_key = 0
        return self._frame(FrameKind.KEY, self._take_sequence(), values, now)

    def _delta_frame(self, now: datetime) -> Frame:
        values = {f.name: self._latest[f.name] for f in self._fields if f.name in self._dirty}
        self._sent.update(values)
        self._dirty.clear()
        return self._frame(FrameKind.DELTA, self._take_sequence(), values, now)

    def _take_sequence(self) -> int:
        number = self._next_sequence
        self._next_sequence = (number + 1) & UINT32_MAX
        return number

    def _frame(
        self, kind: FrameKind, sequence: int, values: dict[str, ua.DataValue], now: datetime
    ) -> Frame:
        self._last_sent_at = now
        return Frame(kind, sequence, MappingProxyType(values), self._version, now)

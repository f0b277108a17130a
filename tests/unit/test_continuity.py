"""Where a restarted writer starts (bridge/continuity.py): the sequence numbers go on, the
ConfigurationVersion is kept only while the DataSet's description is the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from asyncua import ua

from opcua_mqtt.bridge.continuity import checkpoint_value, fingerprint, resume
from opcua_mqtt.core.metadata import DataSetField
from opcua_mqtt.core.writer_state import ConfigurationVersion, FieldSpec, version_time

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ID = uuid.UUID(int=1)


def _fields(builtin: int = 11) -> list[DataSetField]:
    return [DataSetField(FieldSpec("Temp", builtin, ua.NodeId(builtin)), "ns=2;s=T", ID)]


def test_a_writer_without_a_checkpoint_starts_afresh() -> None:
    start = resume(None, fingerprint(_fields(), ["urn:a"]), NOW)
    assert (start.first_sequence_number, start.version, start.kept_version) == (0, None, False)


def test_an_unchanged_dataset_keeps_its_version_and_continues_its_numbers() -> None:
    digest = fingerprint(_fields(), ["urn:a"])
    old = ConfigurationVersion(100, 120)
    start = resume(checkpoint_value(4711, old, digest), digest, NOW)
    assert (start.first_sequence_number, start.version, start.kept_version) == (4711, old, True)


def test_a_changed_dataset_gets_a_greater_major_version_and_still_continues() -> None:
    old = ConfigurationVersion(version_time(NOW) + 50, version_time(NOW) + 60)  # clock went back
    saved = checkpoint_value(9, old, fingerprint(_fields(11), ["urn:a"]))
    start = resume(saved, fingerprint(_fields(6), ["urn:a"]), NOW)
    assert start.first_sequence_number == 9 and not start.kept_version
    assert start.version is not None
    assert start.version.major == start.version.minor > old.minor


def test_the_namespace_table_is_part_of_the_description() -> None:
    assert fingerprint(_fields(), ["urn:a", "urn:b"]) != fingerprint(_fields(), ["urn:b", "urn:a"])


def test_sequence_numbers_wrap_like_uint32() -> None:
    digest = fingerprint(_fields(), [])
    saved = checkpoint_value(2**32, ConfigurationVersion(1, 1), digest)
    assert resume(saved, digest, NOW).first_sequence_number == 0


def test_an_unreadable_checkpoint_starts_afresh() -> None:
    for saved in ("", "[1, 2]", "{}", '["a", 1, 1, "x"]', "[1, -5, 1, \"x\"]"):
        assert resume(saved, "x", NOW).version is None

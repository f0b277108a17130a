"""Checking a configuration in a forked child (cli/config_child.py): the same result as
in-process, the same findings for a bad file, and one clear error when the child dies."""

from __future__ import annotations

import os
import pickle
import pickletools
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from opcua_mqtt.cli import config_child
from opcua_mqtt.cli.config_child import CheckFailed, check_in_child
from opcua_mqtt.core.config.check import CheckResult, check_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.example.yaml"
NS = "urn:plant"


def large(groups: int = 3, writers: int = 20, fields: int = 50) -> str:
    """A generated configuration of groups x writers x fields (3,000 by default) with a mix of
    inherited and own options and deadbands, an event writer, write-back and metrics, as YAML."""
    doc: dict[str, Any] = {
        "version": 1,
        "publisher_id": "plant",
        "sources": [
            {"name": f"s{g}", "endpoint": f"opc.tcp://127.0.0.1:{4840 + g}"} for g in range(groups)
        ],
        "defaults": {"sampling_interval_ms": 250, "deadband": {"type": "absolute", "value": 0.5}},
        "writer_groups": [
            {
                "name": f"g{g}",
                "source": f"s{g}",
                "publishing_interval_ms": 500 + g,
                "writers": [
                    {
                        "name": f"w{w}",
                        "dataset_writer_id": g * 1000 + w + 1,
                        **({"queue_size": 3} if w % 2 else {}),
                        "fields": [
                            {
                                "name": f"f{f}",
                                "node_id": f"nsu={NS};s=G{g}.W{w}.F{f}",
                                "builtin_type": "Double",
                                **({"sampling_interval_ms": 100} if f % 7 == 0 else {}),
                                **({"deadband": {"type": "percent", "value": 2}} if f == 3 else {}),
                            }
                            for f in range(fields)
                        ],
                    }
                    for w in range(writers)
                ],
            }
            for g in range(groups)
        ],
        "event_writers": [
            {"name": "Alarms", "dataset_writer_id": 9000, "where": {"min_severity": 100}}
        ],
        "write_back": {"enabled": True, "allow": [f"nsu={NS};s=G0.W0.*"]},
        "metrics": {"port": 9464},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def test_a_large_configuration_checked_in_a_child_equals_the_one_checked_in_process() -> None:
    text = large()
    here = check_config(text, "plant.yaml")
    there = check_in_child(text, "plant.yaml")
    assert here.config is not None
    assert sum(1 for _ in here.config.fields()) == 3000
    assert here.config.event_writers and here.config.write_back.enabled and here.config.metrics
    assert there == here  # the whole Config, field by field, and the same warnings
    assert there.warnings == here.warnings


def test_fields_travel_as_columns_with_no_tuple_of_their_own() -> None:
    """One argument tuple per field would stay in the unpickler's memo until the end, between
    the fields kept (fragmenting the heap): a writer's fields go as one tuple per argument."""
    text = large(groups=1, writers=4, fields=250)
    result = check_config(text, "plant.yaml")
    assert result.config is not None
    payload = bytes(config_child.dumps(result))
    ops = Counter(op.name for op, _, _ in pickletools.genops(payload))
    assert ops["REDUCE"] + ops["NEWOBJ"] < 100  # 1,000 fields (and their UUIDs)
    there = pickle.loads(payload)
    assert there == result
    fields = [f for w in there.config.writer_groups[0].writers for f in w.fields]
    assert len(fields) == 1000
    shared = {id(f.deadband) for _, _, f in result.config.fields()}
    assert len({id(f.deadband) for f in fields}) == len(shared) < 1000  # still shared
    intervals = {f.sampling_interval_ms for f in fields}
    assert len(intervals) == 2
    assert len({id(f.sampling_interval_ms) for f in fields}) == 2 * 4  # one per writer


def test_the_example_checks_the_same_in_a_child() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert check_in_child(text, str(EXAMPLE)) == check_config(text, str(EXAMPLE))


@pytest.mark.parametrize(
    ("wrong", "right", "expected"),
    [
        (  # the schema
            "publishing_interval_ms: 500",
            "publishing_interval_ms: fast",
            "bad.yaml:14: writer_groups/0/publishing_interval_ms: expected a number or null, "
            "got 'fast'",
        ),
        (  # a rule beyond the schema
            "node_id: nsu=urn:plant;s=G0.W1.F2",
            "node_id: 'ns=x;s=broken'",
            "bad.yaml:41: writer_groups/0/writers/1/fields/2/node_id: expected a NodeId such as",
        ),
    ],
)
def test_a_bad_file_gives_the_same_findings_with_file_line_and_path(
    wrong: str, right: str, expected: str
) -> None:
    text = large(groups=1, writers=2, fields=3).replace(wrong, right, 1)
    result = check_in_child(text, "bad.yaml")
    assert result == check_config(text, "bad.yaml")
    assert result.config is None
    assert str(result.errors[0]).startswith(expected)


def _killed(text: str, source: str) -> CheckResult:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def test_a_child_that_dies_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_child.FORK  # else the check runs here, and this would kill the test run
    monkeypatch.setattr(config_child, "check_config", _killed)  # what the forked child runs
    with pytest.raises(CheckFailed) as e:
        check_in_child(large(groups=1, writers=1, fields=1), "plant.yaml")
    assert str(e.value) == (
        "plant.yaml: checking the configuration failed: its process was killed by SIGKILL "
        "(out of memory?)"
    )

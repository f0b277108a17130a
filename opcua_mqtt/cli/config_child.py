"""Checking a configuration in a child process, so that its peak memory goes with it.

Checking a large file (100,000 fields: the YAML composed with a line for every node,
jsonschema over every field object, the rules) peaks at several hundred MiB of short-lived
objects. CPython keeps most of that heap after they are freed (fragmented arenas), so a bridge
that checked in-process would carry it for its whole life. A forked child checks and builds
the :class:`~opcua_mqtt.core.config.check.CheckResult` and sends it back pickled over a pipe;
the parent holds only the built configuration. Where ``fork`` is not the platform's way
(anything but Linux) the check runs in-process.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import multiprocessing
import operator
import pickle
import signal
import sys
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from opcua_mqtt.core.config.check import CheckResult, check_config
from opcua_mqtt.core.config.model import FieldConfig, WriterConfig
from opcua_mqtt.core.errors import OpcUaMqttError

#: Forking is cheap (the child shares the imported modules) and safe here: nothing runs
#: threads before the configuration is checked.
FORK = sys.platform == "linux"


class CheckFailed(OpcUaMqttError, RuntimeError):
    """The checking process ended without an answer (killed, out of memory, a crash)."""


def check_in_child(text: str, source: str) -> CheckResult:
    """:func:`~opcua_mqtt.core.config.check.check_config` of ``text`` in a forked child; the same
    result as in-process. Raises :class:`CheckFailed` when the child ends without one."""
    if not FORK:
        return check_config(text, source)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_check, args=(text, source, send), daemon=True)
    child.start()
    send.close()  # the child holds the only writer: its end means EOF here
    try:
        payload = receive.recv_bytes()
    except EOFError:
        payload = None
    finally:
        receive.close()
    child.join()
    if payload is None:
        raise CheckFailed(
            f"{source}: checking the configuration failed: its process {_ending(child.exitcode)}"
        )
    result: CheckResult = pickle.loads(payload)
    return result


def _check(text: str, source: str, send: Connection) -> None:
    send.send_bytes(dumps(check_config(text, source)))
    send.close()


def dumps(result: CheckResult) -> memoryview:
    """``result`` pickled the way :func:`check_in_child` sends it (see :class:`_Pickler`)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(result)
    return buffer.getbuffer()


class _Pickler(pickle.Pickler):
    """Pickles the configuration's dataclasses as their constructor's arguments and UUIDs as
    their number: pickle's own way for slotted dataclasses and UUIDs calls Python functions
    that look up the fields for each of 100,000 fields (about half the time, both ways).

    A writer's fields go as columns (:func:`_columns`): one argument tuple per field would stay
    in the unpickler's memo until loading ends, interleaved on the heap with the fields kept,
    and freeing them then leaves ~20 MiB of half-empty pages at 100,000 fields."""

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is uuid.UUID:
            return _uuid, (obj.int,)
        if cls is WriterConfig and obj.fields:
            return _writer, (dataclasses.replace(obj, fields=()), _columns(obj.fields))
        if dataclasses.is_dataclass(cls) and cls.__module__.startswith(_MODEL):
            return cls, _values(cls)(obj)
        return NotImplemented


_MODEL = "opcua_mqtt.core.config."
_NAMES = [f.name for f in dataclasses.fields(FieldConfig)]
_FIELD_ID = _NAMES.index("dataset_field_id")
_SAMPLING = _NAMES.index("sampling_interval_ms")


def _uuid(number: int) -> uuid.UUID:
    return uuid.UUID(int=number)


def _columns(fields: tuple[FieldConfig, ...]) -> list[tuple[Any, ...]]:
    """The fields' constructor arguments, one tuple per argument; the UUIDs as numbers."""
    columns = list(zip(*map(_values(FieldConfig), fields), strict=True))
    columns[_FIELD_ID] = tuple(u.int for u in columns[_FIELD_ID])
    return columns


def _writer(writer: WriterConfig, columns: list[tuple[Any, ...]]) -> WriterConfig:
    """``writer`` with the fields of :func:`_columns`: each built from its arguments with no
    tuple of its own (``map`` passes them straight to the constructor). Pickle makes a float
    per field: a writer's fields share one per sampling interval."""
    columns[_FIELD_ID] = tuple(map(_uuid, columns[_FIELD_ID]))
    intervals: dict[float, float] = {}
    columns[_SAMPLING] = tuple(intervals.setdefault(x, x) for x in columns[_SAMPLING])
    return dataclasses.replace(writer, fields=tuple(map(FieldConfig, *columns)))


@functools.cache
def _values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """The constructor arguments of a dataclass instance, in order (all fields are init=True
    in the configuration's model)."""
    names = [f.name for f in dataclasses.fields(cls)]
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else lambda obj: (get(obj),)


def _ending(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"ended with exit code {code} without an answer"

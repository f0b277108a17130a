#!/usr/bin/env python3
"""Throughput of the OPC UA JSON encoder (OPC 10000-6 §5.4) on a realistic 100-field DataSet.

    python bench/bench_json_encoding.py [--seconds N] [--profile]

The DataSet: 100 DataValues as a subscription delivers them (asyncua types, aware UTC datetimes
with microseconds), each with StatusCode Good, a SourceTimestamp and a ServerTimestamp:
40 Double, 20 Int32, 10 Boolean, 10 String (16 characters), 5 Int64, 5 DateTime, 5 Float[10],
5 UInt16. One "message" is the payload object ``{field name: DataValue JSON}`` for all 100.

Measured for the Compact and the Verbose form (1.05):
  encode            JsonCodec.encode_data_value for the 100 fields (Python objects only)
  encode+orjson     … then orjson.dumps of the payload to bytes
  encode+json       … then json.dumps (stdlib, compact separators) to UTF-8 bytes
  orjson.dumps      serialisation alone (payload encoded beforehand)
  json.dumps        serialisation alone, stdlib
  orjson.loads      parsing alone
  decode            orjson.loads + JsonCodec.decode_data_value for the 100 fields

Then the DateTime formatting alone, per timestamp, for the 205 datetimes of a message (two
timestamps per DataValue plus the 5 DateTime values): our ``encode_datetime``, ``isoformat()``,
and orjson serialising the datetime objects itself (``OPT_UTC_Z``).

Each measurement: a warm-up, then several repetitions of a batch sized to ~50 ms; the table shows
the median, in values (DataValues) per second and µs per value. ``--seconds`` is the total time
budget for all measurements (default 20). ``--profile`` adds a cProfile of encode+orjson and of
decode (top 10 functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from asyncua import ua

from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import encode_datetime

VT = ua.VariantType
FORMS = (FieldEncoding.COMPACT, FieldEncoding.VERBOSE)
BATCH_SECONDS = 0.05


def build_dataset(seed: int = 1) -> tuple[list[str], list[ua.DataValue], list[ua.VariantType]]:
    """The 100 fields: names, DataValues and their built-in types."""
    rnd = random.Random(seed)
    now = datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=UTC)
    kinds: list[tuple[str, ua.VariantType, Callable[[], Any]]] = [
        *[("Double", VT.Double, lambda: rnd.uniform(-1e3, 1e3))] * 40,
        *[("Int32", VT.Int32, lambda: rnd.randint(-(2**31), 2**31 - 1))] * 20,
        *[("Boolean", VT.Boolean, lambda: rnd.random() < 0.5)] * 10,
        *[("String", VT.String, lambda: "".join(rnd.choices("abcdefghijklmnop", k=16)))] * 10,
        *[("Int64", VT.Int64, lambda: rnd.randint(-(2**63), 2**63 - 1))] * 5,
        *[("DateTime", VT.DateTime, lambda: now - timedelta(microseconds=rnd.randrange(10**9)))]
        * 5,
        *[("FloatArray", VT.Float, lambda: [rnd.uniform(-100, 100) for _ in range(10)])] * 5,
        *[("UInt16", VT.UInt16, lambda: rnd.randint(0, 65535))] * 5,
    ]
    names, values, types = [], [], []
    for i, (label, vt, make) in enumerate(kinds):
        value = make()
        source = now - timedelta(microseconds=rnd.randrange(10**6))
        names.append(f"{label}_{i:03d}")
        types.append(vt)
        values.append(
            ua.DataValue(
                Value=ua.Variant(value, vt, is_array=isinstance(value, list)),
                StatusCode=ua.StatusCode(0),
                SourceTimestamp=source,
                ServerTimestamp=source + timedelta(microseconds=350),
            )
        )
    assert len(values) == 100
    return names, values, types


def stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def make_ops(codec: JsonCodec, names: list[str], values: list[ua.DataValue]) -> dict[str, Any]:
    pairs = list(zip(names, values, strict=True))
    enc = codec.encode_data_value
    dec = codec.decode_data_value

    def encode() -> dict[str, Any]:
        return {name: enc(dv) for name, dv in pairs}

    payload = encode()
    text = orjson.dumps(payload)

    def decode() -> list[ua.DataValue]:
        obj = orjson.loads(text)
        return [dec(obj[name]) for name in names]

    # round trip sanity check: the benchmark measures something that works
    back = decode()
    for dv, got in zip(values, back, strict=True):
        assert got.Value.VariantType == dv.Value.VariantType
    assert orjson.loads(stdlib_dumps(payload)) == orjson.loads(text)

    return {
        "encode": encode,
        "encode+orjson": lambda: orjson.dumps(encode()),
        "encode+json": lambda: stdlib_dumps(encode()),
        "orjson.dumps": lambda: orjson.dumps(payload),
        "json.dumps": lambda: stdlib_dumps(payload),
        "orjson.loads": lambda: orjson.loads(text),
        "decode": decode,
        "_size": len(text),
    }


def measure(fn: Callable[[], Any], budget: float) -> float:
    """Median seconds per call, within about ``budget`` seconds."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(BATCH_SECONDS / once))
    warm_end = time.perf_counter() + budget * 0.15
    while time.perf_counter() < warm_end:
        fn()
    samples: list[float] = []
    end = time.perf_counter() + budget * 0.85
    while len(samples) < 5 or (time.perf_counter() < end and len(samples) < 200):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def profile(fn: Callable[[], Any], title: str, seconds: float = 1.0) -> None:
    prof = cProfile.Profile()
    end = time.perf_counter() + seconds
    prof.enable()
    while time.perf_counter() < end:
        fn()
    prof.disable()
    print(f"\n--- cProfile: {title} (top 10 by own time) ---")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="total time budget (20)")
    parser.add_argument("--profile", action="store_true", help="print cProfile top 10")
    args = parser.parse_args(argv)

    names, values, _ = build_dataset()
    ops_by_form = {
        form: make_ops(JsonCodec(form, namespaces=["http://opcfoundation.org/UA/"]), names, values)
        for form in FORMS
    }
    labels = [k for k in ops_by_form[FORMS[0]] if not k.startswith("_")]
    budget = args.seconds / (len(labels) * len(FORMS))

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"orjson {orjson.__version__}, {platform.machine()}, "
        f"{len(values)} DataValues per message"
    )
    for form in FORMS:
        print(f"{form.value}: {ops_by_form[form]['_size']} bytes per message (orjson)")
    header = f"{'measurement':<15} {'form':<8} {'values/s':>12} {'µs/value':>9} {'µs/msg':>9}"
    print()
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str], float] = {}
    for label in labels:
        for form in FORMS:
            per_msg = measure(ops_by_form[form][label], budget)
            results[(label, form.value)] = per_msg
            per_value = per_msg / len(values)
            print(
                f"{label:<15} {form.value:<8} {1 / per_value:>12,.0f} {per_value * 1e6:>9.2f} "
                f"{per_msg * 1e6:>9.1f}"
            )
    print()
    for form in FORMS:
        f = form.value
        ratio = results[("json.dumps", f)] / results[("orjson.dumps", f)]
        share = results[("json.dumps", f)] / results[("encode+json", f)]
        print(
            f"{f}: orjson.dumps is {ratio:.1f}x faster than json.dumps; with the stdlib, "
            f"serialising is {share:.0%} of encode+serialise"
        )

    datetimes = [t for dv in values for t in (dv.SourceTimestamp, dv.ServerTimestamp)]
    datetimes += [dv.Value.Value for dv in values if dv.Value.VariantType is VT.DateTime]
    n = len(datetimes)
    small = budget / 2
    ours = measure(lambda: [encode_datetime(d) for d in datetimes], small) / n
    iso = measure(lambda: [d.isoformat() for d in datetimes], small) / n
    native = measure(lambda: orjson.dumps(datetimes, option=orjson.OPT_UTC_Z), small) / n
    encode = results[("encode", FieldEncoding.COMPACT.value)]
    print(
        f"DateTime formatting ({n} per message): encode_datetime {ours * 1e6:.2f} µs each "
        f"({ours * n / encode:.0%} of encode, compact), isoformat() {iso * 1e6:.2f} µs, "
        f"orjson native {native * 1e6:.3f} µs"
    )

    if args.profile:
        compact = ops_by_form[FieldEncoding.COMPACT]
        profile(compact["encode+orjson"], "encode+orjson, compact")
        profile(compact["decode"], "decode (orjson.loads + decode_data_value), compact")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Decoding one Publish response: asyncua's ``struct_from_binary`` against
``opcua_mqtt.adapters.opcua.publish_decoder.decode_fast``, in this process, no I/O.

    python bench/bench_publish_decoder.py [--values 10000] [--repeat 7]

The response holds one DataChangeNotification of ``--values`` DataValues as the bridge's churn
bench receives them: a Double, StatusCode Good, a SourceTimestamp shared by blocks of 250 values
and one ServerTimestamp (asyncua's encoder writes the status even when Good). Printed: the median
over ``--repeat`` decodes of µs per value, for each decoder, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from opcua_mqtt.adapters.opcua.publish_decoder import decode_fast


def response(values: int) -> bytes:
    t0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
    items = [
        ua.MonitoredItemNotification(
            i,
            ua.DataValue(
                ua.Variant(float(i), ua.VariantType.Double),
                SourceTimestamp=t0 + timedelta(microseconds=i // 250),
                ServerTimestamp=t0,
            ),
        )
        for i in range(values)
    ]
    message = ua.NotificationMessage(1, t0, [ua.DataChangeNotification(items, [])])
    return struct_to_binary(ua.PublishResponse(Parameters=ua.PublishResult(1, [], False, message)))


def median_us_per_value(decode: object, body: bytes, values: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        decode(body)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) / values * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    body = response(args.values)
    expected = struct_from_binary(ua.PublishResponse, Buffer(body))
    if repr(decode_fast(body)) != repr(expected):
        raise SystemExit("the decoders disagree")
    slow = median_us_per_value(
        lambda b: struct_from_binary(ua.PublishResponse, Buffer(b)), body, args.values, args.repeat
    )
    fast = median_us_per_value(decode_fast, body, args.values, args.repeat)
    print(f"{args.values:,} DataValues, {len(body):,} bytes; median of {args.repeat}")
    print(f"asyncua struct_from_binary   {slow:6.2f} µs/value")
    print(f"publish_decoder.decode_fast  {fast:6.2f} µs/value   ({slow / fast:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

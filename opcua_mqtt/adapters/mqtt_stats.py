"""What the MQTT session counts for the metrics: messages the broker took, dropped ones,
reconnects, and the latency from a value's arrival to its message's send. Plain counters the
metrics collector reads when scraped: one event loop, no locks."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the latency buckets: from a fast writer group's publishing
#: interval up to a broker outage ridden out in the spool.
LATENCY_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class LatencyHistogram:
    """Bucket counts, read by the metrics collector when scraped: observing a message costs a
    bisect and two additions, no lock (one event loop)."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS_S
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last: +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@dataclass
class PublisherStats:
    # PUBLISH packets the broker took: QoS 1/2 acknowledged with success, QoS 0 written out
    published: int = 0
    published_bytes: int = 0
    dropped: int = 0
    reconnects: int = 0  # connections lost (each one starts a reconnect)
    connected: bool = False
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

"""Counting what the bridge benchmarks deliver: per churn server and tick, the values that
reached the subscriber first time, their latencies, DataSetMessage sequence gaps, and (light
subscriber) each DataSetMessage's time from the bridge's writer tick (its Timestamp) to here.

Two ways in: :class:`LightSubscriber`, a raw gmqtt client that reads the JSON with orjson and
counts about 1-2 µs per value (so that the counting does not compete with the bridge for the
machine), and :meth:`Receiver.take` for the DataSets of the product's Subscriber (``--verify``:
every value decoded and matched to verified metadata, 10+ µs per value) or the naive bridge's.
The light one verifies the signature of every metadata message (retained, one per writer), so
a run still proves that the data came from the bridge's signer.
"""

from __future__ import annotations

import datetime as dt
import time
from array import array
from typing import Any

import orjson
from bridge_load import percentile

from harness.mqtt import MqttProbe

DATA = "opcua/json/data/"
METADATA = "opcua/json/metadata/"


class Receiver:
    """Per churn server and tick: values seen first time and their latencies.

    ``sizes``: the number of variables of each server, in the order of the field names
    ``V<i>`` (i counts over all servers). Each server counts its own ticks, so a tick is
    (server, tick number)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.server_of = [s for s, n in enumerate(sizes) for _ in range(n)]
        self.last_tick = [-1] * len(self.server_of)
        self.tick_count: dict[tuple[int, int], int] = {}
        self.tick_first_src: dict[tuple[int, int], float] = {}
        self.tick_lat: dict[tuple[int, int], array[float]] = {}
        self.repeats = 0  # values already seen (key frames resend unchanged fields)
        self.out_of_order = 0
        self.datasets = 0
        self.last_seq: dict[tuple[Any, int], int] = {}
        self.seq_gaps = 0
        self.unverified = 0
        self.dropped = 0  # the subscriber's queue drops (the product's Subscriber only)
        # Per DataSetMessage with data (light subscriber only): its Timestamp (the bridge's
        # writer tick) and how long after it the message arrived here.
        self.sent_at = array("d")
        self.sent_lat = array("f")

    def sequence(self, writer: tuple[Any, int], seq: int) -> None:
        """A data frame's SequenceNumber: a gap is a frame lost between bridge and here."""
        self.datasets += 1
        prev = self.last_seq.get(writer)
        if prev is not None and seq != (prev + 1) % 2**32:
            self.seq_gaps += 1
        self.last_seq[writer] = seq

    def sent(self, at: float, recv: float) -> None:
        """A DataSetMessage made at the writer tick ``at`` arrived at ``recv``."""
        self.sent_at.append(at)
        self.sent_lat.append(recv - at)

    def value(self, i: int, tick: int, src: float, recv: float) -> None:
        """Variable ``i`` had value ``tick`` written at ``src``, received at ``recv``."""
        last = self.last_tick[i]
        if tick <= last:
            if tick < last:
                self.out_of_order += 1
            else:
                self.repeats += 1
            return
        self.last_tick[i] = tick
        key = (self.server_of[i], tick)
        lat = self.tick_lat.get(key)
        if lat is None:
            lat = self.tick_lat[key] = array("f")
            self.tick_count[key] = 0
            self.tick_first_src[key] = src
        elif src < self.tick_first_src[key]:
            self.tick_first_src[key] = src
        self.tick_count[key] += 1
        lat.append(recv - src)

    def take(self, ds: Any) -> None:
        """A DataSet of the product's Subscriber (or the naive bridge's look-alike)."""
        if ds.message_type == "ua-keepalive":
            return
        if ds.dataset_writer_id is not None and ds.sequence_number is not None:
            self.sequence((ds.publisher_id, ds.dataset_writer_id), ds.sequence_number)
        if not ds.verification.ok:
            self.unverified += 1
        recv = ds.received_at.timestamp()
        for name, fv in ds.fields.items():
            if fv.value is not None and fv.source_timestamp is not None:
                self.value(int(name[1:]), int(fv.value), fv.source_timestamp.timestamp(), recv)

    def all_past(self, t: float) -> bool:
        """Whether every variable has received a value of a tick first seen written at ``t`` or
        later (per variable values arrive in order: nothing older can still come)."""
        oldest: dict[int, int] = {}
        for i, tick in enumerate(self.last_tick):
            s = self.server_of[i]
            if tick < oldest.get(s, tick + 1):
                oldest[s] = tick
        return all(
            tick >= 0 and self.tick_first_src.get((s, tick), 0.0) >= t for s, tick in oldest.items()
        )

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Per server the ticks written in [t0, t1) (by the first value seen of each, gaps
        included): values expected and delivered, their latencies in seconds (sorted), and the
        rate written by the servers' own timestamps (not quantised by where the window edges
        fall between ticks)."""
        expected = delivered = ticks = 0
        offered = 0.0
        lats: list[float] = []
        for s, size in enumerate(self.sizes):
            inside = [
                k for (srv, k), src in self.tick_first_src.items() if srv == s and t0 <= src < t1
            ]
            if not inside:
                continue
            span = range(min(inside), max(inside) + 1)
            ticks += len(span)
            expected += size * len(span)
            delivered += sum(self.tick_count.get((s, k), 0) for k in span)
            for k in span:
                lats.extend(self.tick_lat.get((s, k), ()))
            first, last = self.tick_first_src[(s, span[0])], self.tick_first_src[(s, span[-1])]
            offered += size * (len(span) - 1) / (last - first) if last > first else 0.0
        lats.sort()
        sent = sorted(
            lat for at, lat in zip(self.sent_at, self.sent_lat, strict=True) if t0 <= at < t1
        )
        return {
            # ms, as the bridge child's LAGS; none where the counting cannot tell
            "tick_to_subscriber": {
                f"tick_to_subscriber_p{q}_ms": round(percentile(sent, q / 100) * 1000, 1)
                for q in (50, 99)
            }
            if sent
            else {},
            "ticks": ticks,
            "expected": expected,
            "delivered": delivered,
            "lats": lats,
            "offered_per_s": offered or expected / (t1 - t0),
        }


class LightSubscriber:
    """Counts the bridge's ua-data into a :class:`Receiver` straight from gmqtt's callback
    (orjson, a cache of parsed SourceTimestamps: the churn server writes a block of values
    with one), and verifies each ua-metadata signature against ``trust``."""

    def __init__(self, broker: Any, receiver: Receiver, trust: Any) -> None:
        self.broker = broker
        self.receiver = receiver
        self.trust = trust
        self.probe = MqttProbe(f"bench-light-{id(self):x}")
        self.probe.client.on_message = self._on_message
        self.metadata: dict[tuple[Any, Any], bool] = {}  # (publisher, writer) -> verified
        self._ts: dict[str, float] = {}
        self.dropped = 0

    def _timestamp(self, text: str) -> float:
        ts = self._ts.get(text)
        if ts is None:
            if len(self._ts) > 100_000:
                self._ts.clear()
            ts = self._ts[text] = dt.datetime.fromisoformat(text).timestamp()
        return ts

    def _on_message(self, _c: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        recv = time.time()
        if topic.startswith(METADATA):
            self._verify(payload)
            return 0
        if not topic.startswith(DATA):
            return 0
        msg = orjson.loads(payload)
        publisher = msg.get("PublisherId")
        take, stamp = self.receiver.value, self._timestamp
        for m in msg.get("Messages", ()):
            if m.get("MessageType") == "ua-keepalive":
                continue
            self.receiver.sequence((publisher, m.get("DataSetWriterId")), m["SequenceNumber"])
            if m.get("Timestamp") is not None:
                self.receiver.sent(stamp(m["Timestamp"]), recv)
            for name, fv in (m.get("Payload") or {}).items():
                value, ts = fv.get("Value"), fv.get("SourceTimestamp")
                if value is not None and ts is not None:
                    take(int(name[1:]), int(value), stamp(ts), recv)
        return 0

    def _verify(self, payload: bytes) -> None:
        from opcua_mqtt.core.signing import verify_message

        if not payload:  # a retained message being cleared
            return
        msg = orjson.loads(payload)
        result = verify_message(msg, self.trust, at=dt.datetime.now(dt.UTC))
        self.metadata[(msg.get("PublisherId"), msg.get("DataSetWriterId"))] = result.ok

    def unverified_writers(self) -> int:
        """Writers that sent data but whose metadata never verified (or never came)."""
        writers = set(self.receiver.last_seq)
        return sum(1 for w in writers if not self.metadata.get(w, False))

    async def __aenter__(self) -> LightSubscriber:
        await self.probe.connect(self.broker.host, self.broker.port, self.broker.ssl_context())
        await self.probe.subscribe(DATA + "#", qos=1)
        await self.probe.subscribe(METADATA + "#", qos=1)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.probe.close()

"""What the bench's bridge child (bridge_load.py) counts inside the bridge, besides its stats.

Instrumentation only, about 1 µs per value: each Publish response that carries data changes
(how many, how large, how old its first value is when it arrives), the intake's put (the sink's
end, called once per part of a response), and the writers' ticks, to count values replaced by
a newer one before a tick sent them and how long a value waited from its arrival to the tick
that took it into a frame.
"""

from __future__ import annotations

import datetime as dt
import time
from array import array
from typing import Any

from asyncua import ua

from opcua_mqtt.adapters.opcua.source import _BatchSubscription
from opcua_mqtt.core.writer_state import WriterState


class Probes:
    """Counters and lags of one bridge; ``window`` is True inside the measurement window
    (the lags are kept only then)."""

    def __init__(self, bridge: Any) -> None:
        self.counts = {"count": 0, "values": 0, "max": 0, "repeated": 0, "superseded": 0}
        self.window = False
        self.arrival_lag = array("f")
        self.tick_wait = array("f")
        # (id(WriterState), field) updated, not yet sent: when the newest value arrived
        self._pending: dict[tuple[int, str], float] = {}
        self._writers = bridge._writers
        self._put = bridge.intake.put
        bridge.intake.put = self._counting_put
        self._callback = _BatchSubscription.publish_callback
        _BatchSubscription.publish_callback = self._counting_callback(self._callback)
        self._tick = WriterState.tick
        WriterState.tick = self._counting_tick(self._tick)

    def _counting_callback(self, plain: Any) -> Any:
        counts = self.counts

        async def counting_callback(sub: Any, result: ua.PublishResult) -> None:
            items = [
                item
                for n in result.NotificationMessage.NotificationData or ()
                if isinstance(n, ua.DataChangeNotification)
                for item in n.MonitoredItems
            ]
            if items:
                counts["count"] += 1
                counts["max"] = max(counts["max"], len(items))
                counts["repeated"] += len(items) - len({i.ClientHandle for i in items})
                ts = items[0].Value.SourceTimestamp
                if ts is not None and self.window:
                    self.arrival_lag.append(time.time() - ts.timestamp())
            await plain(sub, result)

        return counting_callback

    def _counting_put(self, source: str, batch: list[Any]) -> None:
        self.counts["values"] += len(batch)
        arrived = time.time()
        pending, writers = self._pending, self._writers
        superseded = 0
        for (gi, wi, name), _dv in batch:
            k = (id(writers[(gi, wi)].state), name)
            if k in pending:
                superseded += 1
            pending[k] = arrived
        self.counts["superseded"] += superseded
        self._put(source, batch)

    def _counting_tick(self, plain: Any) -> Any:
        pending, tick_wait = self._pending, self.tick_wait

        def counting_tick(state: WriterState, now: dt.datetime) -> Any:
            frame = plain(state, now)
            if frame is not None:
                me = id(state)
                sent = time.time()
                for name in frame.fields:
                    arrived = pending.pop((me, name), None)
                    if arrived is not None and self.window:
                        tick_wait.append(sent - arrived)
            return frame

        return counting_tick

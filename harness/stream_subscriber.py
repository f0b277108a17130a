"""The independent subscriber of the fault tests and the soak: one persistent MQTT 5 session
(Clean Start 0, a Session Expiry, QoS 1) on a publisher's ua-data and ua-status topics, that
books every DataSetMessage in a :class:`~harness.sequence_check.SequenceLedger`.

It is a raw gmqtt client (:class:`~harness.mqtt.MqttProbe`), not the product's MQTT session, so
what it counts does not depend on the code under test. A probe never reconnects on its own: after
a broker outage :meth:`StreamSubscriber.connect` resumes the session with a new client under the
same client id, and :meth:`StreamSubscriber.stay_connected` does so whenever the link drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from asyncua import ua

from harness.mosquitto import MosquittoBroker
from harness.mqtt import MqttProbe
from harness.sequence_check import SequenceLedger
from opcua_mqtt.core.messages.members import loads
from opcua_mqtt.core.messages.metadata import decode_status_message

_log = logging.getLogger(__name__)


class StreamSubscriber:
    def __init__(
        self, broker: MosquittoBroker, publisher_id: str, *, session_expiry_s: int = 3600
    ) -> None:
        self.broker = broker
        self.publisher_id = publisher_id
        self.client_id = f"{publisher_id}-stream-subscriber"
        self.session_expiry_s = session_expiry_s
        self.ledger = SequenceLedger()
        self.statuses: list[bytes] = []
        self.connects = 0  # successful connections, the first included
        self.probe: MqttProbe | None = None
        self._pump: asyncio.Task[None] | None = None

    async def connect(self, *, subscribe: bool) -> bool:
        """Connect with a new client (the old one, if any, closed first) and, with
        ``subscribe``, subscribe; return whether the broker resumed an existing session."""
        await self.close()
        probe = MqttProbe(self.client_id, session_expiry_s=self.session_expiry_s)
        try:
            await probe.connect(self.broker.host, self.broker.port, self.broker.ssl_context())
            if subscribe:
                await probe.subscribe(f"opcua/json/data/{self.publisher_id}/#", qos=1)
                await probe.subscribe(f"opcua/json/status/{self.publisher_id}", qos=1)
        except BaseException:
            await probe.close()
            raise
        self.probe = probe
        self.connects += 1
        self._pump = asyncio.create_task(self._read(probe))
        return probe.session_present

    async def stay_connected(self, retry_s: float = 0.5) -> None:
        """Run until cancelled: resume the session whenever the connection drops (the session
        must exist already: call :meth:`connect` with ``subscribe`` first)."""
        while True:
            probe = self.probe
            if probe is not None and not probe.disconnected.is_set():
                await probe.disconnected.wait()
            try:
                if not await self.connect(subscribe=False):
                    _log.warning("the broker kept no session for %s", self.client_id)
            except (OSError, TimeoutError) as e:
                _log.debug("subscriber reconnect failed: %s", e)
                await asyncio.sleep(retry_s)

    async def _read(self, probe: MqttProbe) -> None:
        while True:
            msg = await probe.messages.get()
            if msg.topic.startswith("opcua/json/data/"):
                self.ledger.add_payload(msg.payload)
            elif msg.topic.startswith("opcua/json/status/"):
                self.statuses.append(msg.payload)

    def check(self) -> None:
        """Raise what stopped the reader (a payload the ledger could not read), if anything."""
        if self._pump is not None and self._pump.done():
            self._pump.result()

    def disabled(self) -> bool:
        """Whether the publisher said it stopped: its ua-status Disabled arrived (a clean stop
        sends it after all its data)."""
        return any(
            decode_status_message(loads(s)).status == ua.PubSubState.Disabled for s in self.statuses
        )

    def frames(self, writer_id: int) -> int:
        """Data frames of writer ``writer_id`` received so far, duplicates included."""
        writer = self.ledger.writers.get(writer_id)
        return writer.frames if writer is not None else 0

    async def until(self, check: Callable[[], bool], what: str, tries: int = 600) -> None:
        """Wait until ``check`` holds, bounded by ``tries`` looks 0.1 s apart; AssertionError
        naming ``what`` and the ledger's problems if it never does."""
        for _ in range(tries):
            self.check()
            if check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"never {what}; ledger: {list(self.ledger.problems())}")

    async def close(self) -> None:
        pump, probe = self._pump, self.probe
        self._pump = self.probe = None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if probe is not None:
            await probe.close()

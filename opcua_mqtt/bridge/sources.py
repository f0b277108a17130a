"""The OPC UA servers of one bridge (its sources), each with its own session, security,
reconnect loop and health.

A source owns the writer groups that name it. Its loop opens a session, lets the bridge build
its writers (once) and monitor its groups' fields, then waits for the session's loss or the
bridge's stop; while it is away only its groups' fields turn Bad, the other sources' groups
publish on. Its log lines, its /readyz entry and its metrics carry its name; a bridge of one
server (the ``opcua`` section: the source ``default``) logs as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Protocol

from asyncua import ua

from opcua_mqtt.adapters.opcua import OpcUaConnectionError
from opcua_mqtt.adapters.opcua.outage import Outage
from opcua_mqtt.adapters.opcua.session import Connector, OpcUaSession, open_session
from opcua_mqtt.adapters.opcua.source import SubscriptionSource
from opcua_mqtt.bridge.plan import BridgePlan
from opcua_mqtt.core.config.model import FieldConfig
from opcua_mqtt.core.uajson.codec import JsonCodec

_log = logging.getLogger(__name__)

#: The name of the one source of an ``opcua`` section.
DEFAULT_SOURCE = "default"


class SourceHost(Protocol):
    """What a source needs from its bridge."""

    async def source_connected(self, source: Source, session: OpcUaSession) -> SubscriptionSource:
        """Build the source's writers (first session only) and monitor its groups' fields."""

    def source_up(self, source: Source, session: OpcUaSession) -> Awaitable[None] | None:
        """The session is in use; what to run beside it until it ends (the node check)."""

    async def source_closing(self, source: Source) -> None:
        """The session is about to close (lost or stopping): what runs on it stops first."""

    def source_down(self, source: Source) -> None:
        """The source is away (lost, or an attempt failed): its fields turn Bad."""


class Source:
    """One OPC UA server of the bridge; see the module docstring."""

    def __init__(
        self, name: str, groups: tuple[int, ...], connect: Connector, reconnect_max_s: float
    ) -> None:
        self.name = name
        self.groups = groups  # indices of the plan's writer groups that read from it
        self._connect = connect
        label = "" if name == DEFAULT_SOURCE else f"source {name!r}: "
        self.outage = Outage(reconnect_max_s, label)  # reconnect policy, why it is away
        self.session: OpcUaSession | None = None  # while connected
        self.state = "disconnected"  # connected, reconnecting (after a loss), disconnected
        self.reconnects = 0  # sessions lost
        self.namespaces: list[str] = []  # of the last session
        self.built = False  # its writers exist (they outlive sessions)

    def usable_session(self) -> OpcUaSession | None:
        """The session while it can be used (write-back, model checks)."""
        return self.session if self.session is not None and self.session.usable else None

    async def run(self, host: SourceHost, stop: asyncio.Event) -> None:
        """Sessions one after the other until ``stop``."""
        while not stop.is_set():
            try:
                delay = await self._run_connected(host, stop)
            except (OSError, TimeoutError, ua.UaError, OpcUaConnectionError) as e:
                if not isinstance(e, OpcUaConnectionError):
                    e = OpcUaConnectionError(f"OPC UA session failed: {e}", kind="lost")
                host.source_down(self)
                delay = self.outage.failed(e)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _run_connected(self, host: SourceHost, stop: asyncio.Event) -> float:
        """One session, until ``stop`` (then 0) or its loss (then the wait before the next
        attempt)."""
        async with open_session(self._connect) as session:
            self.namespaces = session.namespaces
            subscriptions = await host.source_connected(self, session)
            self.session = session
            self.state = "connected"
            self.outage.connected(session.endpoint)
            beside = host.source_up(self, session)
            tasks = [asyncio.create_task(stop.wait()), asyncio.create_task(session.wait_lost())]
            if beside is not None:
                tasks.append(asyncio.ensure_future(beside))
            try:
                await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.session = None
                if not stop.is_set():
                    host.source_down(self)  # Bad values first, then the goodbye
                await host.source_closing(self)
                await subscriptions.close()
            if stop.is_set():
                return 0.0
            return self.outage.lost(session.endpoint, session.lost_cause or "closed")


def make_sources(plan: BridgePlan, connect: Connector | Mapping[str, Connector]) -> list[Source]:
    """The plan's sources: one per connector name (each taking the groups that name it), or,
    given one connector, a single source for every group."""
    reconnect = plan.opcua_reconnect_max_s
    if not isinstance(connect, Mapping):
        name = plan.groups[0].source if plan.groups else DEFAULT_SOURCE
        return [Source(name, tuple(range(len(plan.groups))), connect, reconnect)]
    unknown = {g.source for g in plan.groups} - set(connect)
    if unknown:
        raise ValueError(f"writer groups name sources without a connection: {sorted(unknown)}")
    return [
        Source(
            name,
            tuple(gi for gi, g in enumerate(plan.groups) if g.source == name),
            connector,
            plan.source_reconnect_max_s.get(name, reconnect),
        )
        for name, connector in connect.items()
    ]


async def server_types(
    session: OpcUaSession, codec: JsonCodec, fields: Iterable[FieldConfig]
) -> dict[str, tuple[int, ua.NodeId]]:
    """Built-in type and DataType of each of ``fields`` whose configuration left its type
    open, read from the source's server in batches (NodeId string -> types)."""
    open_ids = sorted({f.node_id for f in fields if f.builtin_id == 0})
    read: dict[str, ua.NodeId] = {}
    nodes = [codec.decode_node_id(n) for n in open_ids]
    for node_id, dv in zip(
        open_ids, await session.read_attribute(nodes, ua.AttributeIds.DataType), strict=True
    ):
        if not dv.StatusCode.is_good() or dv.Value is None:
            _log.warning(
                "DataType of %s not readable (%s): its field stays untyped (Variant)",
                node_id,
                dv.StatusCode.name,
            )
            continue
        read[node_id] = dv.Value.Value
    builtins = await session.builtin_types(read.values())
    found = {node_id: (builtins[dt], dt) for node_id, dt in read.items()}
    if open_ids:
        _log.info("read the DataType of %d fields configured without one", len(found))
    return found

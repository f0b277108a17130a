"""``opcua-mqtt run CONFIG``: the bridge, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from opcua_mqtt import gc_tuning
from opcua_mqtt.adapters.opcua.events import EventFilterError
from opcua_mqtt.bridge.from_config import SetupError, bridge_setup, build_bridge
from opcua_mqtt.bridge.metrics import serve_metrics
from opcua_mqtt.bridge.runtime import Bridge
from opcua_mqtt.cli.common import fail, loop_option, read_text
from opcua_mqtt.cli.config_child import CheckFailed, check_in_child
from opcua_mqtt.core.config.model import MetricsConfig
from opcua_mqtt.core.config.report import folded
from opcua_mqtt.event_loop import LoopUnavailableError, loop_factory
from opcua_mqtt.event_loop import run as run_loop
from opcua_mqtt.logs import non_blocking
from opcua_mqtt.memory import trim

_log = logging.getLogger("opcua_mqtt.run")


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve /metrics, /healthz and /readyz on this port (overrides metrics.port; the "
    "host is metrics.host, by default 127.0.0.1).",
)
@click.option(
    "--exit-on-fatal",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Exit with code 3 once the MQTT or the OPC UA connection has failed for this long for "
    "a reason retrying cannot fix (broker or server certificate not trusted, credentials or "
    "client certificate refused, unknown host, wrong endpoint), so a supervisor sees it. "
    "Without it the bridge keeps trying.",
)
@loop_option
def run(config: Path, metrics_port: int | None, exit_on_fatal: float | None, loop: str) -> None:
    """Run the bridge described by CONFIG until stopped (Ctrl-C, SIGTERM).

    Subscribes to the configured OPC UA nodes and publishes OPC UA PubSub JSON (Part 14) over
    MQTT: signed ua-metadata (retained) before the data, ua-data per writer, ua-status
    (retained; the MQTT last will turns it into Error if the process dies) and ua-connection.
    Broker and server outages are ridden out: messages wait in a bounded spool, sessions and
    subscriptions are re-created.

    With a metrics section in CONFIG, or --metrics-port, Prometheus metrics and the health
    probes are served over HTTP (docs/operations.md).

    \b
    Examples:
      opcua-mqtt run bridge.yaml
      opcua-mqtt run --metrics-port 9464 bridge.yaml
      OPCUA_PASSWORD=... opcua-mqtt --log-format json run /etc/opcua-mqtt/bridge.yaml
    \b
    Exit codes: 0 stopped cleanly, 1 invalid configuration (see `opcua-mqtt validate`) or its
    check ended without an answer (the checking process was killed),
    2 CONFIG or a file it names is missing or unusable, the spool directory is unusable or in use by
    another bridge, the metrics port cannot be bound, an event writer's notifier, type or
    select path is not in the server's model, or --loop uvloop without uvloop installed,
    3 the MQTT or the OPC UA connection failed for good for --exit-on-fatal SECONDS.
    """
    try:
        loop_factory(loop)  # before anything starts: --loop uvloop without uvloop is exit 2
    except LoopUnavailableError as e:
        fail(str(e), 2)
    try:
        result = check_in_child(read_text(config, 2), str(config))
    except CheckFailed as e:
        fail(str(e), 1)
    for line in folded(result.issues):
        click.echo(line, err=True)
    checked = result.config
    # The warnings (one per field for a plant of ns=<index> NodeIds: tens of MiB at 100,000)
    # must not live as long as the bridge: this frame does.
    del result
    if checked is None:
        raise SystemExit(1)
    try:
        setup = bridge_setup(checked, config)
    except SetupError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    try:
        bridge = build_bridge(setup)
    except SetupError as e:  # the spool directory
        click.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    metrics = checked.metrics
    if metrics_port is not None:
        metrics = replace(metrics, port=metrics_port) if metrics else MetricsConfig(metrics_port)
    trim("loading the configuration")
    gc_tuning.tune()
    with non_blocking():  # a stalled stderr reader must not freeze the bridge
        code = run_loop(_run(bridge, metrics, exit_on_fatal), loop)
    raise SystemExit(code)


async def _run(bridge: Bridge, metrics: MetricsConfig | None, exit_on_fatal: float | None) -> int:
    stop = asyncio.Event()
    fatal: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopper(stop, sig))
    async with contextlib.AsyncExitStack() as stack:
        if metrics is not None:
            try:
                await stack.enter_async_context(serve_metrics(bridge, metrics.host, metrics.port))
            except OSError as e:
                click.echo(
                    f"error: cannot serve metrics on {metrics.host}:{metrics.port}: "
                    f"{e.strerror or e}",
                    err=True,
                )
                return 2
        _log.info("bridge %s starting", bridge.plan.publisher_id)
        settled = asyncio.create_task(_settle_when_ready(bridge))
        stack.callback(settled.cancel)
        if exit_on_fatal is not None:
            watch = asyncio.create_task(_watch_fatal(bridge, exit_on_fatal, stop, fatal))
            stack.callback(watch.cancel)
        try:
            await bridge.run(stop)
        except EventFilterError as e:
            click.echo(f"error: {e}", err=True)
            return 2
    if fatal:
        click.echo(f"error: {fatal[0]}", err=True)
        return 3
    return 0


#: How often the bridge looks whether an OPC UA session was lost since the last freeze.
RESETTLE_S = 30.0


async def _settle_when_ready(bridge: Bridge) -> None:
    """Once every source's monitored items exist: what lives from then on is frozen for the
    garbage collector (gc_tuning.py), and the start-up's garbage goes back to the OS. After a
    lost OPC UA session, the same again (at most every :data:`RESETTLE_S`): the old session
    is frozen garbage until then."""
    await gc_tuning.freeze_when_ready(bridge.ready)
    trim("creating the monitored items")
    settled = bridge.stats.opcua_reconnects
    while True:
        await asyncio.sleep(RESETTLE_S)
        if bridge.stats.opcua_reconnects != settled:
            settled = bridge.stats.opcua_reconnects
            gc_tuning.refreeze()
            trim("a lost OPC UA session")


async def _watch_fatal(bridge: Bridge, limit: float, stop: asyncio.Event, out: list[str]) -> None:
    """Stop the bridge once its MQTT or OPC UA connection has failed for good for ``limit``
    seconds."""
    episodes = (bridge.mqtt.fatal, *(s.outage.fatal for s in bridge.sources))
    while True:
        await asyncio.sleep(min(1.0, limit / 4))
        for episode in episodes:
            if episode.since is not None and time.monotonic() - episode.since >= limit:
                out.append(f"{episode.error} (for {limit:g} s; exiting, --exit-on-fatal)")
                stop.set()
                return


def _stopper(stop: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        _log.info("%s received: stopping", sig.name)
        stop.set()

    return handler

"""``opcua-mqtt demo``: the whole path in one process tree, on loopback only.

It wires the real pieces, nothing simulated but the plant: a development PKI (``certs``), an
embedded broker over TLS, the plant's OPC UA server, a configuration made by browsing that
server and mapping it with the core (as ``browse`` and ``map`` do, with write-back allowed for
the setpoints), the bridge (as ``run`` does), and a subscriber that verifies the metadata and
feeds the ``listen`` table or its JSON lines. Start-up and shutdown run in opposite orders, so
the bridge still reaches the broker to publish its Disabled status when Ctrl-C arrives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click
from asyncua import ua

from opcua_mqtt import devpki, event_loop
from opcua_mqtt.adapters.mqtt import MqttError, MqttOptions, TlsOptions
from opcua_mqtt.adapters.opcua import (
    ConnectionOptions,
    OpcUaConnectionError,
    browse_endpoint,
)
from opcua_mqtt.alarms import AlarmList
from opcua_mqtt.bridge.from_config import SetupError, bridge_setup, build_bridge
from opcua_mqtt.core.config.check import config_from_dict
from opcua_mqtt.core.config.model import Config, ConfigError, PublishingDefaults
from opcua_mqtt.core.config.text import dump_yaml
from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.mapping import MappingRules, MapSettings, plan_mapping
from opcua_mqtt.core.mapping_events import event_writer_entry, events_group
from opcua_mqtt.core.signing import TrustStore
from opcua_mqtt.demo.broker import (
    DEFAULT_PORT,
    Broker,
    BrokerCertificates,
    BrokerError,
    BrokerKind,
    choose,
    loopback_port,
)
from opcua_mqtt.demo.plant import NAMESPACE, START_NODE, Plant
from opcua_mqtt.live_view import LiveTable, json_line
from opcua_mqtt.processes import LOOPBACK
from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber

_log = logging.getLogger(__name__)
T = TypeVar("T")

PUBLISHER = "demo-bridge"
WRITABLE = "*/*/*Setpoint"  # the write-back allow-list: every setpoint, nothing else
ACKNOWLEDGEABLE = "Plant/*/*/ConveyorJam"  # commands.allow: the jam alarm, nothing else
#: The Unified Namespace layout of `demo --uns` (docs/uns.md): enterprise and site above the
#: plant's own browse paths (line/machine), metadata below each machine's data topic.
UNS = {"enterprise": "acme", "site": "demo-site"}
UNS_TOPIC = "{enterprise}/{site}/{path}"
READY_TIMEOUT_S = 30.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class DemoOptions:
    broker: str = "auto"  # auto, mosquitto or amqtt
    port: int | None = None  # None: 8883 if free, else any free port; 0: any free port
    duration_s: float | None = None
    table: bool = True  # False: JSON lines on stdout, everything else on stderr
    workdir: Path | None = None  # None: a temporary directory, removed at exit
    uns: bool = False  # publish on the UNS topics of UNS_TOPIC instead of the standard tree
    loop: str = "auto"  # the event loop (opcua_mqtt.event_loop.LOOPS)


class DemoError(OpcUaMqttError):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class _Stopped(Exception):
    """Ctrl-C (or SIGTERM) arrived while the demo was still starting."""


def run(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C or ``duration_s``; return the exit code."""
    try:
        kind = choose(options.broker)
    except BrokerError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USAGE
    try:
        return event_loop.run(Demo(options, kind).main(), options.loop)
    except event_loop.LoopUnavailableError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USAGE


@dataclass
class _RunningBridge:
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        """Idempotent; a bridge that failed is reported (in the log), not raised, so the rest
        of the demo still stops."""
        self.stop_event.set()
        await asyncio.wait({self.task})
        if not self.task.cancelled() and self.task.exception() is not None:
            _log.error("the bridge failed", exc_info=self.task.exception())


class Demo:
    """One run: starts the pieces in order, each registered on an exit stack as it starts, so
    that an error or Ctrl-C at any point stops exactly what runs, in reverse order."""

    def __init__(self, options: DemoOptions, broker_kind: BrokerKind) -> None:
        self.options = options
        self.broker_kind = broker_kind
        self.stop = asyncio.Event()
        self.received = 0
        self.verified = 0
        self.table: LiveTable | None = None
        self.alarms = AlarmList()
        self._ack = ""  # the ack command, but for the EventId (set with the instructions)
        self._footer = ""

    def say(self, text: str = "") -> None:
        """Instructions and progress: on stdout above the table, on stderr beside JSON lines."""
        click.echo(text, err=not self.options.table)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        try:
            async with AsyncExitStack() as stack:
                workdir = self._workdir(stack)
                log = workdir / "demo.log"
                self._log_to(log, stack)
                try:
                    await self._run(workdir, stack)
                except _Stopped:
                    self.say("stopped while starting")
                except DemoError as e:
                    click.echo(f"error: {e}", err=True)
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    click.echo("\n".join(["the demo's log ends with:", *tail]), err=True)
                    return e.code
            kept = self.options.workdir is not None
            self.say(f"everything stopped; {workdir} {'kept' if kept else 'removed'}")
            return self._verdict()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        _log.info("stop requested")
        self.stop.set()

    def _verdict(self) -> int:
        if self.options.duration_s is not None and self.verified == 0:
            click.echo("error: no DataSet with verified metadata arrived", err=True)
            return EXIT_FAILED
        return EXIT_OK

    # ----------------------------------------------------------------------------- start-up

    def _workdir(self, stack: AsyncExitStack) -> Path:
        if self.options.workdir is not None:
            self.options.workdir.mkdir(parents=True, exist_ok=True)
            return self.options.workdir.resolve()
        path = Path(tempfile.mkdtemp(prefix="opcua-mqtt-demo-"))
        stack.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def _log_to(self, path: Path, stack: AsyncExitStack) -> None:
        """Everything goes to demo.log; a table on the terminal would be torn apart by log lines,
        so with the table only errors also reach the terminal."""
        root = logging.getLogger()
        handler = logging.FileHandler(path, encoding="utf-8")
        if root.handlers:
            handler.setFormatter(root.handlers[0].formatter)
        consoles = [(h, h.level) for h in root.handlers]
        if self.options.table:
            for h, _level in consoles:
                h.setLevel(logging.ERROR)
        root.addHandler(handler)

        def restore() -> None:
            root.removeHandler(handler)
            handler.close()
            for h, level in consoles:
                h.setLevel(level)

        stack.callback(restore)

    async def _until_stopped(self, step: Awaitable[T]) -> T:
        """Start-up steps give way to Ctrl-C: the demo stops within seconds at any point."""
        task = asyncio.ensure_future(step)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise _Stopped
        return task.result()

    async def _run(self, workdir: Path, stack: AsyncExitStack) -> None:
        self.say("opcua-mqtt demo: a simulated plant, a broker and the bridge, on 127.0.0.1 only")
        port = self._port(self.options.port, DEFAULT_PORT)
        certs = workdir / "certs"
        # RSA key generation: not in the loop. The signer is bound to the demo's PublisherId.
        await asyncio.to_thread(devpki.write_pki, certs, bridge_name=PUBLISHER)
        broker = Broker(
            self.broker_kind,
            port,
            BrokerCertificates(certs / "ca.pem", certs / "broker.pem", certs / "broker.key"),
            workdir,
        )
        stack.push_async_callback(broker.stop)
        broker_started = asyncio.ensure_future(broker.start())
        plant = Plant(LOOPBACK, self._port(None, 4840))
        stack.push_async_callback(plant.stop)
        try:
            await self._until_stopped(plant.start())
            await self._until_stopped(broker_started)
        except BrokerError as e:
            raise DemoError(str(e)) from None
        except OSError as e:
            raise DemoError(f"the simulated plant's OPC UA server: {e}") from None
        finally:
            broker_started.cancel()
        self.say(f"  certificates   {certs}  (a development CA made just now)")
        self.say(f"  OPC UA server  {plant.endpoint}  ({plant.variables} simulated variables)")
        required = "required" if broker.requires_client_certificate else "checked when sent"
        self.say(
            f"  broker         {broker.version} on {broker.host}:{broker.port}, "
            f"MQTT {broker.protocol} over TLS, client certificates {required}"
        )
        if broker.protocol != "5":
            self.say(_fallbacks(broker.version))

        config_path = workdir / "bridge.yaml"
        config = await self._until_stopped(self._configure(plant, broker, config_path))
        groups = len(config.writer_groups)
        writers = sum(1 for _ in config.writers())
        fields = sum(1 for _ in config.fields())
        self.say(
            f"  bridge         {fields} variables mapped into {groups} writer groups and "
            f"{writers} writers; write-back allowed for {WRITABLE}"
        )
        self.say(f"                 configuration: {config_path}")
        if self.options.uns:
            first = next(w for _, w in config.writers())
            self.say(
                f"                 topics: a Unified Namespace ({first.queue_name}, ...; "
                "docs/uns.md), status and connection on the standard tree"
            )
        bridge = await self._start_bridge(config, config_path, stack)

        mqtt = self._client_options(broker, certs)
        trust = TrustStore.from_pem((certs / "ca.pem").read_bytes())
        # discover: the custom topics of --uns come from the bridge's ua-connection
        subscriber = Subscriber(mqtt, trust=trust, discover=True)
        try:
            await self._until_stopped(subscriber.__aenter__())
        except MqttError as e:
            raise DemoError(f"the demo's subscriber: {e}") from None
        stack.push_async_callback(subscriber.__aexit__, None, None, None)
        stack.push_async_callback(self._stop_bridge, bridge, subscriber)

        self.say(self._instructions(broker, certs, plant))
        if self.options.table:
            self._footer = f"{PUBLISHER} via {broker.version} · Ctrl-C stops the demo"
            self.table = LiveTable(sys.stdout, footer=self._footer)
        await self._show(subscriber, bridge)

    def _port(self, wanted: int | None, default: int) -> int:
        try:
            return loopback_port(wanted, default)
        except BrokerError as e:
            raise DemoError(str(e), EXIT_USAGE) from None

    async def _configure(self, plant: Plant, broker: Broker, path: Path) -> Config:
        """Browse the plant and map it, as ``browse`` and ``map`` do; then point the result at
        the demo's broker and PKI and allow write-back for the setpoints."""
        opcua = ConnectionOptions(plant.endpoint, trust_dir=None)
        try:
            browsed = await browse_endpoint(opcua, start=START_NODE)
        except OpcUaConnectionError as e:
            raise DemoError(f"browsing the simulated plant: {e}") from None
        defaults = replace(
            PublishingDefaults(),
            publishing_interval_ms=500.0,
            sampling_interval_ms=250.0,
            keep_alive_ms=5000.0,
        )
        settings = MapSettings(publisher_id=PUBLISHER, defaults=defaults)
        if self.options.uns:
            settings = replace(settings, topic_template=UNS_TOPIC, uns=UNS)
        doc = plan_mapping(browsed, MappingRules(), settings).document
        doc["opcua"] |= {"security_policy": "None", "security_mode": "None"}
        doc["mqtt"] = {
            "host": broker.host,
            "port": broker.port,
            "protocol": broker.protocol,
            "client_id": PUBLISHER,
            "tls": {
                "ca": "certs/ca.pem",
                "certificate": "certs/bridge-mqtt.pem",
                "private_key": "certs/bridge-mqtt.key",
            },
        }
        doc["metadata_signing"] = {
            "private_key": "certs/metadata-signer.key",
            "certificate_chain": "certs/metadata-signer.pem",
        }
        doc["write_back"] |= {"enabled": True, "allow": [WRITABLE]}
        groups = doc["writer_groups"]
        doc["event_writers"] = [  # the server's events and alarms (docs/events.md)
            event_writer_entry(
                browsed.server_uri or browsed.endpoint,
                "i=2253",
                "Alarms",
                {w["dataset_writer_id"] for g in groups for w in g["writers"]},
                events_group({g["name"] for g in groups}),
            )
        ]
        doc["commands"] = {"allow": [ACKNOWLEDGEABLE]}
        try:
            config = config_from_dict(doc, source=str(path))
        except ConfigError as e:
            raise DemoError(f"the mapped configuration is invalid: {e}") from None
        header = (
            "Made by `opcua-mqtt demo` from the simulated plant; the paths are relative to\n"
            "this file. Outlives the demo only with --workdir."
        )
        path.write_text(dump_yaml(config, header=header), encoding="utf-8")
        return config

    async def _start_bridge(
        self, config: Config, path: Path, stack: AsyncExitStack
    ) -> _RunningBridge:
        try:
            setup = bridge_setup(config, path)
        except SetupError as e:
            raise DemoError(str(e)) from None
        bridge = build_bridge(setup)
        stop = asyncio.Event()
        running = _RunningBridge(asyncio.create_task(bridge.run(stop), name="bridge"), stop)
        stack.push_async_callback(running.stop)
        ready = asyncio.ensure_future(bridge.ready.wait())
        try:
            await self._until_stopped(
                asyncio.wait(
                    {ready, running.task},
                    timeout=READY_TIMEOUT_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            )
        finally:
            ready.cancel()
        if not bridge.ready.is_set():
            raise DemoError(f"the bridge was not operational within {READY_TIMEOUT_S:g} s")
        return running

    async def _stop_bridge(self, bridge: _RunningBridge, subscriber: Subscriber) -> None:
        """Stop the bridge before the subscriber, to see its Disabled status arrive."""
        await bridge.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline:
            status = subscriber.statuses.get(PUBLISHER)
            if status is not None and status.status == ua.PubSubState.Disabled:
                self.say(f"bridge stopped; its status on the broker: {status.status.name}")
                return
            await asyncio.sleep(0.05)
        self.say("bridge stopped; its Disabled status did not arrive within 2 s")

    def _client_options(self, broker: Broker, certs: Path) -> MqttOptions:
        """The demo's own subscriber connects as a user would, with the mqtt-client identity."""
        return MqttOptions(
            host=broker.host,
            port=broker.port,
            client_id="opcua-mqtt-demo",
            protocol=broker.protocol,
            tls=TlsOptions(
                ca=str(certs / "ca.pem"),
                certificate=str(certs / "mqtt-client.pem"),
                private_key=str(certs / "mqtt-client.key"),
            ),
            session_expiry_s=0,
        )

    def _instructions(self, broker: Broker, certs: Path, plant: Plant) -> str:
        exe = Path(sys.executable).with_name("opcua-mqtt")
        command = shlex.quote(str(exe)) if exe.exists() else "opcua-mqtt"
        q = shlex.quote
        tls = (
            f"--ca {q(str(certs / 'ca.pem'))} --cert {q(str(certs / 'mqtt-client.pem'))} "
            f"--key {q(str(certs / 'mqtt-client.key'))}"
        )
        if broker.protocol != "5":
            tls += f" --protocol {broker.protocol}"
        _motor, heater = plant.lines["Line1"]
        address = f"{broker.host}:{broker.port}"
        (jam,) = plant.alarms.values()
        condition = f"nsu={NAMESPACE};s={jam.node_id.Identifier}"
        self._ack = (
            f"{command} ack {address} {q(condition)} EVENT_ID --comment 'cleared the jam' "
            f"--publisher {PUBLISHER} {tls}"
        )
        return (
            "\nIn a second terminal, watch the same data (metadata signatures checked):\n"
            f"  {command} listen {address} {tls} --trust {q(str(certs / 'ca.pem'))}\n"
            f"and change a setpoint ({heater.name}'s temperature follows it):\n"
            f"  {command} write {address} {heater.name}/Setpoint {heater.setpoint_c + 10:g} "
            f"--publisher {PUBLISHER} {tls}\n"
            "and when the Line3 conveyor jams (every 45 s) its alarm shows here with its EventId:\n"
            f"  {command} listen {address} {tls} --alarms\n"
            f"  {self._ack}\n"
            "Ctrl-C here stops everything.\n"
        )

    # ------------------------------------------------------------------------------ running

    async def _show(self, subscriber: Subscriber, bridge: _RunningBridge) -> None:
        """Show what arrives until Ctrl-C or the --duration is over."""
        shown = asyncio.create_task(self._consume(subscriber), name="demo-show")
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait(
                {shown, stopped, bridge.task},
                timeout=self.options.duration_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (shown, stopped):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shown
        if bridge.task.done():
            raise DemoError("the bridge stopped unexpectedly")
        if self.table is not None:
            self.table.draw()
        self.say(
            f"{self.received} DataSets received, {self.verified} with verified metadata; stopping"
        )

    async def _consume(self, subscriber: Subscriber) -> None:
        emit: Callable[[Any], None]
        if self.table is not None:
            emit = self.table.update
        else:

            def emit(ds: Any) -> None:
                sys.stdout.write(json_line(ds, subscriber.codec(ds.publisher_id)) + "\n")
                sys.stdout.flush()

        async for ds in subscriber:
            self.received += 1
            self.verified += ds.verification.ok
            emit(ds)
            self._alarm(ds)

    def _alarm(self, ds: ReceivedDataSet) -> None:
        """Say how to acknowledge an alarm that needs it (docs/commands.md)."""
        changed = self.alarms.update(ds)
        if changed is None:
            return
        line = self._footer
        if changed.acked is False and changed.event_id:
            event_id = base64.b64encode(changed.event_id).decode()
            line = f"ALARM {changed.message} · unacknowledged · EventId {event_id}"
            if self.table is None:
                self.say(f"alarm: {changed.message}; acknowledge it with:")
                self.say("  " + self._ack.replace("EVENT_ID", shlex.quote(event_id)))
        if self.table is not None:
            self.table.footer = line


def _fallbacks(broker: str) -> str:
    return (
        f"  MQTT 3.1.1     {broker} speaks MQTT 3.1.1 only; the demo runs on it with fallbacks:\n"
        "                 - write-back answers go to the request's ReplyTo topic (`write\n"
        "                   --protocol 3.1.1` sets it), not an MQTT 5 Response Topic with\n"
        "                   Correlation Data\n"
        "                 - commands carry no Message Expiry Interval: only the request's\n"
        "                   Deadline keeps a late command from being carried out\n"
        "                 - no Session Expiry Interval and no Receive Maximum: sessions last as\n"
        "                   the broker decides, the bridge keeps its own in-flight window\n"
        "                 - client certificates are checked when sent, not required\n"
        "                 Install Mosquitto (apt-get install mosquitto) for MQTT 5."
    )

"""The demo's OPC UA server: a small simulated plant served by asyncua on loopback.

Three lines, each with a motor-driven machine and a heated one, so the bridge has something
worth publishing: speeds ramp towards their setpoints with a little noise, temperatures follow
their setpoints with a first-order lag, counters count what the motors make, and the conveyor
jams now and then (its Running flag drops, its speed falls to zero, and its ConveyorJam alarm
goes active until it runs again and someone acknowledges it: demo/alarm.py). The setpoints are
writable,
so a write-back command visibly changes the process. Security None: the server listens on
127.0.0.1 only, and the demo is about the MQTT side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType

from opcua_mqtt.demo.alarm import JamAlarm

_log = logging.getLogger(__name__)

NAMESPACE = "urn:opcua-mqtt:demo:plant"
APPLICATION_URI = "urn:opcua-mqtt:demo:plant-server"
START_NODE = f"nsu={NAMESPACE};s=Plant"
TICK_S = 0.25
AMBIENT_C = 20.0
_DOUBLE = ua.VariantType.Double


@dataclass
class Motor:
    """A motor-driven machine; ``jam_every_s`` > 0 makes it stop for ``jam_s`` now and then."""

    name: str
    counter: str  # what it makes, counted in ``items_per_rev`` per revolution
    setpoint_rpm: float
    items_per_rev: float
    jam_every_s: float = 0.0
    jam_s: float = 0.0
    speed: float = 0.0
    count: float = 0.0

    def running(self, t: float) -> bool:
        """Jams come at the end of each period, so the demo starts with everything running."""
        return not self.jam_every_s or (t % self.jam_every_s) < self.jam_every_s - self.jam_s

    def step(self, t: float, dt: float, setpoint: float, rng: random.Random) -> dict[str, Any]:
        running = self.running(t)
        target = setpoint if running else 0.0
        self.speed += (target - self.speed) * min(1.0, dt / 2.0)  # about 2 s to ramp
        if running:
            self.speed += rng.gauss(0, 0.002 * max(setpoint, 1.0))
        elif self.speed < 0.5:
            self.speed = 0.0
        self.speed = max(self.speed, 0.0)
        self.count += self.speed / 60 * dt * self.items_per_rev
        return {
            "Running": ua.Variant(running, ua.VariantType.Boolean),
            "Speed": ua.Variant(round(self.speed, 1), _DOUBLE),
            self.counter: ua.Variant(int(self.count) % 2**32, ua.VariantType.UInt32),
        }


@dataclass
class Heater:
    """A heated process: the temperature follows the setpoint with lag ``tau_s`` and noise."""

    name: str
    setpoint_c: float
    tau_s: float
    temperature: float = AMBIENT_C

    def step(self, dt: float, setpoint: float, rng: random.Random) -> dict[str, Any]:
        self.temperature += (setpoint - self.temperature) * min(1.0, dt / self.tau_s)
        self.temperature += rng.gauss(0, 0.03)
        # What a controller would put out: enough to hold the setpoint, plus the error's share.
        holding = (setpoint - AMBIENT_C) / 3
        power = min(100.0, max(0.0, holding + 8 * (setpoint - self.temperature)))
        return {
            "Temperature": ua.Variant(round(self.temperature, 2), _DOUBLE),
            "HeaterPower": ua.Variant(round(power, 1), _DOUBLE),
        }


def default_lines() -> dict[str, tuple[Motor, Heater]]:
    return {
        "Line1": (Motor("Mixer", "Batches", 90.0, 0.05), Heater("Kettle", 72.0, 20.0)),
        "Line2": (Motor("Extruder", "Meters", 240.0, 0.1), Heater("Oven", 180.0, 40.0)),
        "Line3": (
            Motor("Conveyor", "Packs", 120.0, 0.5, jam_every_s=45.0, jam_s=6.0),
            Heater("Sealer", 140.0, 15.0),
        ),
    }


class Plant:
    """The simulated plant's OPC UA server; ``start`` serves it, ``stop`` ends the simulation
    and closes the server."""

    def __init__(self, host: str, port: int) -> None:
        self.endpoint = f"opc.tcp://{host}:{port}/opcua-mqtt/demo"
        self.lines = default_lines()
        self.variables = 0
        self._server = Server()
        self._ns = 0
        self._nodes: dict[tuple[str, str], ua.NodeId] = {}  # (machine, variable) -> NodeId
        self._task: asyncio.Task[None] | None = None
        self._serving = False
        self._rng = random.Random()
        self.alarms: dict[str, JamAlarm] = {}  # machine -> its jam alarm

    async def start(self) -> None:
        server = self._server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("opcua-mqtt demo plant")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.subscribe_server_callback(CallbackType.PreWrite, _stamp_writes)
        self._ns = await server.register_namespace(NAMESPACE)
        plant = await server.nodes.objects.add_object(self._id("Plant"), self._name("Plant"))
        for line, (motor, heater) in self.lines.items():
            line_node = await plant.add_object(self._id(f"Plant.{line}"), self._name(line))
            machine = await self._machine(
                line_node,
                line,
                motor.name,
                {
                    "Running": ua.Variant(False, ua.VariantType.Boolean),
                    "Speed": ua.Variant(0.0, _DOUBLE),
                    "SpeedSetpoint": ua.Variant(motor.setpoint_rpm, _DOUBLE),
                    motor.counter: ua.Variant(0, ua.VariantType.UInt32),
                },
            )
            if motor.jam_every_s:
                alarm = JamAlarm(
                    server, self._id(f"Plant.{line}.{motor.name}.Jam"), machine.nodeid, motor.name
                )
                await alarm.install(machine)
                self.alarms[motor.name] = alarm
            await self._machine(
                line_node,
                line,
                heater.name,
                {
                    "Temperature": ua.Variant(AMBIENT_C, _DOUBLE),
                    "Setpoint": ua.Variant(heater.setpoint_c, _DOUBLE),
                    "HeaterPower": ua.Variant(0.0, _DOUBLE),
                },
            )
        await server.start()
        self._serving = True
        self._task = asyncio.create_task(self._simulate(), name="demo-plant")

    async def stop(self) -> None:
        """Idempotent, and safe after a start that failed or was interrupted."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._serving:
            self._serving = False
            await self._server.stop()

    def _id(self, text: str) -> ua.NodeId:
        return ua.NodeId(text, self._ns)

    def _name(self, text: str) -> ua.QualifiedName:
        return ua.QualifiedName(text, self._ns)

    async def _machine(
        self, parent: Any, line: str, machine: str, initial: dict[str, ua.Variant]
    ) -> Any:
        node = await parent.add_object(self._id(f"Plant.{line}.{machine}"), self._name(machine))
        for name, value in initial.items():
            var = await node.add_variable(
                self._id(f"Plant.{line}.{machine}.{name}"), self._name(name), value
            )
            if name.endswith("Setpoint"):
                await var.set_writable()
            self._nodes[(machine, name)] = var.nodeid
            self.variables += 1
        return node

    async def _simulate(self) -> None:
        loop = asyncio.get_running_loop()
        started = last = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            t, dt = now - started, now - last
            last = now
            stamp = datetime.now(UTC)
            for motor, heater in self.lines.values():
                speed = self._setpoint(motor.name, "SpeedSetpoint")
                await self._write(motor.name, motor.step(t, dt, speed, self._rng), stamp)
                if motor.name in self.alarms:
                    await self.alarms[motor.name].update(not motor.running(t))
                setpoint = self._setpoint(heater.name, "Setpoint")
                await self._write(heater.name, heater.step(dt, setpoint, self._rng), stamp)

    def _setpoint(self, machine: str, name: str) -> float:
        """The setpoint as the server holds it now: a write-back may have changed it."""
        value = self._server.read_attribute_value(self._nodes[(machine, name)]).Value
        return float(value.Value) if value is not None else 0.0

    async def _write(self, machine: str, values: dict[str, ua.Variant], stamp: datetime) -> None:
        for name, variant in values.items():
            await self._server.write_attribute_value(
                self._nodes[(machine, name)],
                ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp),
            )


def _stamp_writes(event: Any, _dispatcher: Any) -> None:
    """Clients write values without a SourceTimestamp (many servers refuse one) and asyncua
    stores none; the plant stamps what it takes, as a device does, so a written setpoint is
    published with the time it changed."""
    now = datetime.now(UTC)
    for item in event.request_params.NodesToWrite:
        if item.AttributeId == ua.AttributeIds.Value and item.Value.SourceTimestamp is None:
            item.Value = replace(item.Value, SourceTimestamp=now)

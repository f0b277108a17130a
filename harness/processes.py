"""Child processes for tests, benchmarks and the test servers: where Mosquitto lives, the
repository's root, and the product's launcher and free loopback ports
(:mod:`opcua_mqtt.processes`; the demo starts its broker with them)."""

from __future__ import annotations

from pathlib import Path

from opcua_mqtt.demo.broker import find_mosquitto
from opcua_mqtt.processes import LOOPBACK, Process, StartError, free_port, spawn

__all__ = ["LOOPBACK", "REPO_ROOT", "Process", "StartError", "find_mosquitto", "free_port", "spawn"]

REPO_ROOT = Path(__file__).resolve().parents[1]

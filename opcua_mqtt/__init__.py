"""opcua-mqtt: an OPC UA to MQTT bridge that speaks standard OPC UA PubSub JSON.

What a subscriber program needs is importable from here::

    from opcua_mqtt import MqttOptions, Subscriber, TlsOptions, TrustStore

The names are loaded on first use (PEP 562): importing them eagerly would pull in asyncua and
gmqtt (about half a second), which every CLI call, even ``opcua-mqtt --version``, would pay.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opcua_mqtt.core.errors import OpcUaMqttError

if TYPE_CHECKING:
    from opcua_mqtt.adapters.mqtt_config import MqttOptions, TlsOptions
    from opcua_mqtt.alarms import Alarm, AlarmList
    from opcua_mqtt.core.identity import SignerMap
    from opcua_mqtt.core.x509_trust import TrustStore
    from opcua_mqtt.subscriber import ReceivedDataSet, Subscriber, Verification

try:
    __version__ = version("opcua-mqtt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: The lazily loaded public names and the module each comes from.
_LAZY = {
    "Alarm": "opcua_mqtt.alarms",
    "AlarmList": "opcua_mqtt.alarms",
    "MqttOptions": "opcua_mqtt.adapters.mqtt_config",
    "TlsOptions": "opcua_mqtt.adapters.mqtt_config",
    "SignerMap": "opcua_mqtt.core.identity",
    "TrustStore": "opcua_mqtt.core.x509_trust",
    "ReceivedDataSet": "opcua_mqtt.subscriber",
    "Subscriber": "opcua_mqtt.subscriber",
    "Verification": "opcua_mqtt.subscriber",
}

__all__ = [
    "Alarm",
    "AlarmList",
    "MqttOptions",
    "OpcUaMqttError",
    "ReceivedDataSet",
    "SignerMap",
    "Subscriber",
    "TlsOptions",
    "TrustStore",
    "Verification",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

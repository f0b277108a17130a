"""opcua-mqtt: an OPC UA to MQTT bridge that speaks standard OPC UA PubSub JSON."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opcua-mqtt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

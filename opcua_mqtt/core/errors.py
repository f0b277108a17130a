"""The package's exception root, and the core's own: malformed input, values we cannot encode.

The root lives here, in the core, because every layer may import the core but the core imports
nothing above it.
"""

from __future__ import annotations


class OpcUaMqttError(Exception):
    """Base of every public exception opcua-mqtt raises, so callers can catch them all at once.

    Each subclass keeps its natural built-in base as well (``ValueError``, ``OSError``), so
    ``except ValueError`` keeps working where it did.
    """


class DecodeError(OpcUaMqttError, ValueError):
    """Malformed OPC UA JSON or PubSub message.

    ``path`` names the member that was wrong (a JSON-pointer-like path such as
    ``Messages/0/Payload/Temp/Value``) so that a subscriber's log points at the culprit.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        where = path if path else "(top level)"
        super().__init__(f"{where}: {reason}")

    def within(self, parent: str | int) -> DecodeError:
        """Return the same error with ``parent`` prefixed to its path."""
        path = f"{parent}/{self.path}" if self.path else str(parent)
        return DecodeError(path, self.reason)


class EncodeError(OpcUaMqttError, ValueError):
    """A value that cannot be written in the requested form (e.g. 300 declared as a Byte)."""

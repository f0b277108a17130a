"""The OPC UA side, owned in one place: connections, the session and its services, browse.

``connection`` opens a secure connection with clear failures; ``session`` is one server
connection with its namespace table, its server-fact caches (``facts``) and its batcher
(``batching``), and the services the bridge uses; ``source`` turns subscriptions into batches
of values; ``browse`` walks the address space; ``decoding`` repairs Variants asyncua cannot
decode; ``certs`` holds the client's certificate and the trust list. Only this package talks
to ``asyncua.Client`` (tests/unit/test_import_rules.py).
"""

from opcua_mqtt.adapters.opcua.batching import BrowseStats
from opcua_mqtt.adapters.opcua.browse import (
    BrowseError,
    browse_client,
    browse_endpoint,
    filter_nodes,
)
from opcua_mqtt.adapters.opcua.connection import (
    SECURITY_MODES,
    SECURITY_POLICIES,
    ConnectionOptions,
    connect,
    normalise_endpoint,
)
from opcua_mqtt.adapters.opcua.facts import BuiltinTypes, builtin_types
from opcua_mqtt.adapters.opcua.failures import OpcUaConnectionError

__all__ = [
    "SECURITY_MODES",
    "SECURITY_POLICIES",
    "BrowseError",
    "BrowseStats",
    "BuiltinTypes",
    "ConnectionOptions",
    "OpcUaConnectionError",
    "browse_client",
    "browse_endpoint",
    "builtin_types",
    "connect",
    "filter_nodes",
    "normalise_endpoint",
]

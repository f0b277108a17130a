"""What `browse` learns about a server, as plain data: the input of `map` and of browse output.

Kept free of asyncua's client objects so that a saved browse result (JSON/YAML) maps exactly like
a live server, and so the mapping rules can be tested without a server. NodeIds are held in the
namespace-URI string form of OPC 10000-6 §5.1.12 (``nsu=<uri>;s=...``; ``i=..`` for namespace 0),
which stays valid when a server reorders its namespace array.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class NodeClass(enum.StrEnum):
    """The node classes browse reports (OPC 10000-3 §5.2)."""

    OBJECT = "Object"
    VARIABLE = "Variable"
    METHOD = "Method"
    OBJECT_TYPE = "ObjectType"
    VARIABLE_TYPE = "VariableType"
    REFERENCE_TYPE = "ReferenceType"
    DATA_TYPE = "DataType"
    VIEW = "View"


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    """One node reached by browse. Variable-only members are None for other node classes.

    ``browse_path`` is the chain of BrowseName names from the start node (namespace left out, so
    paths read like the tree a person sees); ``node_id`` is what identifies the node exactly.
    A node reached along several paths is reported once, on the first path found.
    """

    node_id: str
    node_class: NodeClass
    browse_name: str
    display_name: str
    browse_path: tuple[str, ...]
    parent_node_id: str | None = None
    description: str | None = None
    data_type: str | None = None  # NodeId string of the DataType
    data_type_name: str | None = None  # e.g. "Double", "EUInformation"
    builtin_type: int | None = None  # 1..25; 22 for structures, 6 for enumerations
    value_rank: int | None = None
    array_dimensions: tuple[int, ...] | None = None
    readable: bool | None = None
    writable: bool | None = None
    value: Any = None  # JSON (Compact) of the current value when browse was asked to read it
    error: str | None = None  # why the server refused to describe this node, if it did
    event_notifier: bool | None = None  # an Object one can subscribe to events of

    def path_string(self) -> str:
        return "/".join(self.browse_path)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict without the members that are unset."""
        out = asdict(self)
        out["node_class"] = self.node_class.value
        out["browse_path"] = list(self.browse_path)
        if self.array_dimensions is not None:
            out["array_dimensions"] = list(self.array_dimensions)
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BrowsedNode:
        dims = obj.get("array_dimensions")
        return cls(
            node_id=obj["node_id"],
            node_class=NodeClass(obj["node_class"]),
            browse_name=obj["browse_name"],
            display_name=obj.get("display_name", obj["browse_name"]),
            browse_path=tuple(obj["browse_path"]),
            parent_node_id=obj.get("parent_node_id"),
            description=obj.get("description"),
            data_type=obj.get("data_type"),
            data_type_name=obj.get("data_type_name"),
            builtin_type=obj.get("builtin_type"),
            value_rank=obj.get("value_rank"),
            array_dimensions=tuple(dims) if dims is not None else None,
            readable=obj.get("readable"),
            writable=obj.get("writable"),
            value=obj.get("value"),
            error=obj.get("error"),
            event_notifier=obj.get("event_notifier"),
        )


@dataclass(slots=True)
class BrowseResult:
    """Everything one browse run found, with where it came from (for stable ids in `map`)."""

    endpoint: str
    server_uri: str | None
    namespaces: list[str]
    start_node: str
    nodes: list[BrowsedNode] = field(default_factory=list)

    def variables(self) -> list[BrowsedNode]:
        return [n for n in self.nodes if n.node_class is NodeClass.VARIABLE and n.error is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "opcua-mqtt-browse/1",
            "endpoint": self.endpoint,
            "server_uri": self.server_uri,
            "namespaces": self.namespaces,
            "start_node": self.start_node,
            "nodes": [n.to_json() for n in self.nodes],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BrowseResult:
        if obj.get("format") != "opcua-mqtt-browse/1":
            raise ValueError("not an opcua-mqtt browse result (format opcua-mqtt-browse/1)")
        return cls(
            endpoint=obj["endpoint"],
            server_uri=obj.get("server_uri"),
            namespaces=list(obj["namespaces"]),
            start_node=obj["start_node"],
            nodes=[BrowsedNode.from_json(n) for n in obj["nodes"]],
        )

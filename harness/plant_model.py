"""The test plant's address space, built into an asyncua server by the program in
harness/opcua_server.py; also the constants its clients need (namespace, limits).

Kept apart from the program so that the launcher and the tests can import the constants
without asyncua's server.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# Constants shared by the server process and the fixtures
# --------------------------------------------------------------------------------------------

APPLICATION_URI = "urn:opcua-mqtt:test-server"
NAMESPACE_URI = "urn:opcua-mqtt:test:plant"
RESOURCE_PATH = "/opcua-mqtt/test"
DEFAULT_VARIABLES = 10_000
DEFAULT_USERS = {"operator": "secret-pw"}
SERVER_CERT_NAME = "server_cert.der"
SERVER_KEY_NAME = "server_key.pem"
#: Sessions of vanished clients (and so their subscriptions) are dropped after this long.
DEFAULT_MAX_SESSION_TIMEOUT_S = 30.0
SIMULATION_PERIOD_S = 0.1
#: Churn variables per folder (and per write batch between yields to the event loop).
CHURN_BLOCK = 250


# Folder sizes of the generated plant. Every object has far fewer than ~300 children: the
# asyncua server checks the parent's reference list for each new child, so one wide folder
# makes building quadratic (docs: DESIGN.md, Pitfalls).
MACHINES_PER_LINE = 8
LINES_PER_AREA = 4

#: Plant/Limits: writable variables with a length-limit Property (OPC 10000-3 §5.6.2), by
#: string NodeId: (built-in type id, initial value, Property, its value).
LIMITED: dict[str, tuple[int, Any, str, int]] = {
    "Plant.Limits.ShortString": (12, "short", "MaxStringLength", 8),
    "Plant.Limits.ShortBytes": (15, b"\x01\x02", "MaxByteStringLength", 4),
}
#: The server's ServerCapabilities MaxByteStringLength (its MaxStringLength stays 0: no limit).
SERVER_MAX_BYTE_STRING_LENGTH = 4096

_BASE_TIME = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------------
# The address space
# --------------------------------------------------------------------------------------------

# Built-in type ids (OPC 10000-6 §5.1.2).
_NULL, _BOOLEAN, _EXTENSION_OBJECT, _VARIANT = 0, 1, 22, 24
_BASE_DATA_TYPE = 24  # i=24 is also the NodeId of the BaseDataType DataType
_RANGE = 884  # DataType of the ExtensionObject variables


def _sample(type_id: int, k: int, ns: int) -> Any:
    """A deterministic value of built-in type ``type_id`` for seed ``k``."""
    from asyncua import ua

    match type_id:
        case 1:
            return k % 2 == 0
        case 2:
            return (k % 256) - 128
        case 3:
            return k % 256
        case 4:
            return -1000 - (k % 30000)
        case 5:
            return 1000 + (k % 60000)
        case 6:
            return -100_000 - k
        case 7:
            return 3_000_000_000 + k
        case 8:
            return -(2**62) - k
        case 9:
            return 2**63 + k
        case 10:
            return k + 0.5  # exact in float32
        case 11:
            return k * 1.25 + 0.1
        case 12:
            return f"value {k} ÄÖÜ €"
        case 13:
            return _BASE_TIME + dt.timedelta(seconds=k)
        case 14:
            return uuid.UUID(int=(0x72962B91_FA75_4AE6_8D28_B404DC7DAF63 + k) % 2**128)
        case 15:
            return bytes([k % 256, 0, 255, 1])
        case 16:
            return ua.XmlElement(f'<v k="{k}">x</v>')
        case 17:
            return ua.NodeId(f"Target{k}", ns)
        case 18:
            return ua.ExpandedNodeId(f"Remote{k}", ns)
        case 19:
            return ua.StatusCode(
                (
                    ua.StatusCodes.Good,
                    ua.StatusCodes.UncertainInitialValue,
                    ua.StatusCodes.BadNotFound,
                )[k % 3]
            )
        case 20:
            return ua.QualifiedName(f"Name{k}", ns)
        case 21:
            return ua.LocalizedText(f"Text {k}", "en-US")
        case 22:
            return ua.Range(Low=float(k), High=float(k) + 10.0)
        case 23:
            return ua.DataValue(
                ua.Variant(k, ua.VariantType.Int32),
                StatusCode=ua.StatusCode(ua.StatusCodes.Good),
                SourceTimestamp=_BASE_TIME + dt.timedelta(seconds=k),
            )
        case 24:
            return ua.Variant(k, ua.VariantType.Int32)  # element of a Variant array
        case 25:
            return ua.DiagnosticInfo(SymbolicId=k, AdditionalInfo=f"info {k}")
    raise ValueError(type_id)


def _data_type(type_id: int) -> int:
    if type_id == _EXTENSION_OBJECT:
        return _RANGE
    if type_id in (_NULL, _VARIANT):
        return _BASE_DATA_TYPE
    return type_id


def type_name(type_id: int) -> str:
    from asyncua import ua

    return str(ua.VariantType(type_id).name)


#: Types of the read-only scalars in every machine's Status folder: every built-in type that a
#: scalar Variant can hold (not Variant itself, see the module docstring).
STATUS_TYPES = (0, *range(1, 24), 25)
#: Types of the writable scalars in every machine's Parameters folder.
PARAMETER_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 21)
#: Types of the writable arrays in Parameters.
PARAMETER_ARRAY_TYPES = (1, 6, 11, 12)
#: Types of the read-only one-dimensional arrays in every machine's Arrays folder.
ARRAY_TYPES = tuple(range(1, 26))
VARIABLES_PER_MACHINE = (
    len(STATUS_TYPES) + len(PARAMETER_TYPES) + len(PARAMETER_ARRAY_TYPES) + len(ARRAY_TYPES) + 2
)


class Builder:
    """Collects AddNodesItems and adds them in batches through the server's own node service."""

    def __init__(self, server: Any, ns: int) -> None:
        from asyncua import ua

        self.ua = ua
        self.server = server
        self.ns = ns
        self.items: list[Any] = []
        self.variable_count = 0
        # Values stored as given after the nodes exist: AddNodes rebuilds the Variant, which
        # drops Dimensions that its nesting does not show.
        self.exact_values: list[tuple[Any, Any]] = []

    def sid(self, path: str) -> Any:
        return self.ua.NodeId(path, self.ns, self.ua.NodeIdType.String)

    def obj(
        self,
        nodeid: Any,
        name: str,
        parent: Any,
        *,
        description: str | None = None,
        folder: bool = False,
        organizes: bool = False,
    ) -> Any:
        ua = self.ua
        attrs = ua.ObjectAttributes(
            DisplayName=ua.LocalizedText(name),
            Description=ua.LocalizedText(description) if description else ua.LocalizedText(),
            EventNotifier=0,
        )
        self.items.append(
            ua.AddNodesItem(
                ParentNodeId=parent,
                ReferenceTypeId=ua.NodeId(
                    ua.ObjectIds.Organizes if organizes or folder else ua.ObjectIds.HasComponent
                ),
                RequestedNewNodeId=nodeid,
                BrowseName=ua.QualifiedName(name, self.ns),
                NodeClass=ua.NodeClass.Object,
                NodeAttributes=attrs,
                TypeDefinition=ua.NodeId(
                    ua.ObjectIds.FolderType if folder else ua.ObjectIds.BaseObjectType
                ),
            )
        )
        return nodeid

    def var(
        self,
        nodeid: Any,
        name: str,
        parent: Any,
        type_id: int,
        value: Any,
        *,
        array: bool = False,
        dims: list[int] | None = None,
        wire_dims: list[int] | None = None,
        writable: bool = False,
        description: str | None = None,
    ) -> Any:
        """A variable; ``wire_dims`` (with ``dims``) sends other ArrayDimensions in the value
        than the node's attribute states, as some servers do."""
        ua = self.ua
        vtype = ua.VariantType(type_id)
        if wire_dims is not None:
            variant = ua.Variant(value, vtype, Dimensions=wire_dims, is_array=True)
            self.exact_values.append((nodeid, variant))
            value_rank, array_dims = len(dims or ()), dims
        elif dims is not None:
            variant = ua.Variant(value, vtype, Dimensions=dims)
            value_rank, array_dims = len(dims), dims
        elif array:
            variant = ua.Variant(list(value), vtype)
            value_rank, array_dims = 1, [0]
        else:
            variant = ua.Variant(value, vtype)
            value_rank, array_dims = -1, None
        access = ua.AccessLevel.CurrentRead.mask
        if writable:
            access |= ua.AccessLevel.CurrentWrite.mask
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(name),
            Description=ua.LocalizedText(description) if description else ua.LocalizedText(),
            Value=variant,
            DataType=ua.NodeId(_data_type(type_id)),
            ValueRank=value_rank,
            ArrayDimensions=array_dims,
            AccessLevel=access,
            UserAccessLevel=access,
            MinimumSamplingInterval=0.0,
            Historizing=False,
        )
        component = (ua.ObjectIds.HasComponent, ua.ObjectIds.BaseDataVariableType)
        return self._add_variable(nodeid, ua.QualifiedName(name, self.ns), parent, attrs, component)

    def prop(self, nodeid: Any, name: str, parent: Any, value: int) -> Any:
        """A read-only UInt32 Property (HasProperty, PropertyType, browse name in namespace 0)."""
        ua = self.ua
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(name),
            Description=ua.LocalizedText(),
            Value=ua.Variant(value, ua.VariantType.UInt32),
            DataType=ua.NodeId(ua.ObjectIds.UInt32),
            ValueRank=-1,
            AccessLevel=ua.AccessLevel.CurrentRead.mask,
            UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
            MinimumSamplingInterval=0.0,
            Historizing=False,
        )
        prop = (ua.ObjectIds.HasProperty, ua.ObjectIds.PropertyType)
        return self._add_variable(nodeid, ua.QualifiedName(name, 0), parent, attrs, prop)

    def _add_variable(
        self, nodeid: Any, browse_name: Any, parent: Any, attrs: Any, kind: tuple[int, int]
    ) -> Any:
        """Queue the AddNodes item of a variable; ``kind``: (reference type, type definition)."""
        ua = self.ua
        reference_type, type_definition = kind
        self.items.append(
            ua.AddNodesItem(
                ParentNodeId=parent,
                ReferenceTypeId=ua.NodeId(reference_type),
                RequestedNewNodeId=nodeid,
                BrowseName=browse_name,
                NodeClass=ua.NodeClass.Variable,
                NodeAttributes=attrs,
                TypeDefinition=ua.NodeId(type_definition),
            )
        )
        self.variable_count += 1
        return nodeid

    def flush(self) -> None:
        if not self.items:
            return
        results = self.server.iserver.node_mgt_service.add_nodes(self.items)
        for item, result in zip(self.items, results, strict=True):
            if not result.StatusCode.is_good():
                raise RuntimeError(f"adding {item.RequestedNewNodeId} failed: {result.StatusCode}")
        self.items = []
        for nodeid, variant in self.exact_values:
            value = self.server.iserver.aspace[nodeid].attributes[self.ua.AttributeIds.Value]
            value.value = self.ua.DataValue(variant)
        self.exact_values = []

    def reference(self, source: Any, target: Any, ref_type: int) -> None:
        """Add a reference between two objects in both directions (asyncua's AddReferences
        service adds only the direction it is given, so a client browsing inverse references
        would not see the second parent)."""
        ua = self.ua
        items = [
            ua.AddReferencesItem(
                SourceNodeId=a,
                ReferenceTypeId=ua.NodeId(ref_type),
                IsForward=forward,
                TargetNodeId=b,
                TargetNodeClass=ua.NodeClass.Object,
            )
            for a, b, forward in ((source, target, True), (target, source, False))
        ]
        for result in self.server.iserver.node_mgt_service.add_references(items):
            result.check()


def _add_machine(b: Builder, path: str, parent: Any, seed: int) -> None:
    machine = b.obj(b.sid(path), path.rsplit(".", 1)[1], parent, description=f"Machine {path}")
    status = b.obj(b.sid(f"{path}.Status"), "Status", machine, folder=True)
    for t in STATUS_TYPES:
        name = type_name(t)
        value = None if t == _NULL else _sample(t, seed, b.ns)
        b.var(
            b.sid(f"{path}.Status.{name}"),
            name,
            status,
            t,
            value,
            description=f"{name} scalar, read-only",
        )
    params = b.obj(
        b.sid(f"{path}.Parameters"),
        "Parameters",
        machine,
        folder=True,
        description="Writable settings",
    )
    for t in PARAMETER_TYPES:
        name = type_name(t)
        b.var(
            b.sid(f"{path}.Parameters.{name}"),
            name,
            params,
            t,
            _sample(t, seed, b.ns),
            writable=True,
        )
    for t in PARAMETER_ARRAY_TYPES:
        name = f"{type_name(t)}Array"
        values = [_sample(t, seed + i, b.ns) for i in range(4)]
        b.var(
            b.sid(f"{path}.Parameters.{name}"), name, params, t, values, array=True, writable=True
        )
    arrays = b.obj(b.sid(f"{path}.Arrays"), "Arrays", machine, folder=True)
    for t in ARRAY_TYPES:
        name = f"{type_name(t)}Array"
        values = [_sample(t, seed + i, b.ns) for i in range(3)]
        b.var(b.sid(f"{path}.Arrays.{name}"), name, arrays, t, values, array=True)
    b.var(
        b.sid(f"{path}.Arrays.DoubleMatrix"),
        "DoubleMatrix",
        arrays,
        11,
        [[seed + 0.5, 1.5, 2.5], [3.5, 4.5, 5.5]],
        dims=[2, 3],
        description="2 x 3 matrix (ValueRank 2)",
    )
    b.var(
        b.sid(f"{path}.Arrays.Int32Matrix"),
        "Int32Matrix",
        arrays,
        6,
        [[seed, 1], [2, 3], [4, 5]],
        dims=[3, 2],
        writable=True,
    )


@dataclass
class Model:
    """What :func:`build_address_space` created that the rest of the server needs."""

    ns: int
    plant: Any
    dynamic: Any
    control: Any
    simulation: dict[str, Any]
    oddities: dict[str, Any]
    cycle: tuple[Any, Any]
    shared: tuple[Any, list[Any]]


async def build_address_space(server: Any, variables: int) -> Model:
    """Create the plant model with at least ``variables`` variables.

    Objects/Plant (s=Plant)
      Area<k>/Line<j>/Machine<i>/      objects, MACHINES_PER_LINE x LINES_PER_AREA per area
        Status/<Type>                  read-only scalar of each built-in type (Null..DiagnosticInfo)
        Parameters/<Type>, <T>Array    writable scalars and 1-D arrays
        Arrays/<Type>Array             read-only 1-D arrays of every built-in type (incl. Variant)
        Arrays/DoubleMatrix, Int32Matrix   ValueRank 2 with ArrayDimensions
      Area1/Line1/Machine1 --Organizes--> Area1      (a reference cycle)
      SharedTank (object, 2 variables): HasComponent from Area1/Line1 AND Organizes from
                                        Utilities (one node, two parents)
      Utilities/Pressure, Utilities/SharedTank
      Identifiers/                     numeric (i=1001, i=1002), GUID and opaque NodeIds, and an
                                       object with a numeric id holding a variable with an
                                       opaque id
      Simulation/                      Sine, Counter, Toggle, Sawtooth, Clock, Wave (every 100 ms)
      Dynamic/Mutable                  Int32, writable; AddVariable adds here
      Limits/ShortString, ShortBytes   writable, with a MaxStringLength / MaxByteStringLength
                                       Property (:data:`LIMITED`)
    Objects/Control (s=Control)        methods AddVariable, ChangeDataType, DeleteVariable,
                                       WriteCount, WriteCalls
    Objects/Oddities (s=Oddities)      EmptyMatrix, BadShape: values written as other servers
                                       write them (see below); Plain, a Double
    """
    from asyncua import ua

    ns = await server.register_namespace(NAMESPACE_URI)
    b = Builder(server, ns)
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    plant = b.obj(
        b.sid("Plant"), "Plant", objects, organizes=True, description="Generated test plant"
    )
    b.flush()

    machines = max(1, math.ceil(max(variables - 20, 1) / VARIABLES_PER_MACHINE))
    per_area = MACHINES_PER_LINE * LINES_PER_AREA
    for m in range(machines):
        area_no, rest = divmod(m, per_area)
        line_no, machine_no = divmod(rest, MACHINES_PER_LINE)
        area_path = f"Plant.Area{area_no + 1}"
        line_path = f"{area_path}.Line{line_no + 1}"
        if rest == 0:
            b.obj(b.sid(area_path), f"Area{area_no + 1}", plant, description=f"Area {area_no + 1}")
        if machine_no == 0:
            b.obj(b.sid(line_path), f"Line{line_no + 1}", b.sid(area_path))
        _add_machine(b, f"{line_path}.Machine{machine_no + 1}", b.sid(line_path), m + 1)
        b.flush()  # one batch per machine keeps the batches small

    # Utilities, and a node with two parents.
    utilities = b.obj(b.sid("Plant.Utilities"), "Utilities", plant)
    b.var(b.sid("Plant.Utilities.Pressure"), "Pressure", utilities, 11, 6.5, description="bar")
    tank = b.obj(
        b.sid("Plant.SharedTank"),
        "SharedTank",
        b.sid("Plant.Area1.Line1"),
        description="Referenced by Area1/Line1 and by Utilities",
    )
    b.var(b.sid("Plant.SharedTank.Level"), "Level", tank, 11, 0.5)
    b.var(b.sid("Plant.SharedTank.Volume"), "Volume", tank, 11, 1000.0, writable=True)

    # NodeIds that are not strings.
    ids = b.obj(b.sid("Plant.Identifiers"), "Identifiers", plant, description="Non-string NodeIds")
    b.var(ua.NodeId(1001, ns), "Numeric", ids, 6, 1001)
    b.var(ua.NodeId(1002, ns), "NumericWritable", ids, 11, 10.02, writable=True)
    guid = uuid.UUID("5f0c3a52-2f4b-4d8e-9c1a-7b6d2e8f9a01")
    b.var(ua.NodeId(guid, ns, ua.NodeIdType.Guid), "Guid", ids, 12, "guid id")
    b.var(
        ua.NodeId(b"\x01\x02opaque", ns, ua.NodeIdType.ByteString),
        "Opaque",
        ids,
        1,
        True,
        writable=True,
    )
    numeric_object = b.obj(ua.NodeId(1000, ns), "NumericObject", ids)
    b.var(
        ua.NodeId(b"\xde\xad\xbe\xef", ns, ua.NodeIdType.ByteString),
        "OpaqueChild",
        numeric_object,
        5,
        4242,
    )

    # Values that change.
    sim = b.obj(b.sid("Plant.Simulation"), "Simulation", plant, description="Updated every 100 ms")
    simulation = {
        "Sine": b.var(b.sid("Plant.Simulation.Sine"), "Sine", sim, 11, 0.0),
        "Counter": b.var(b.sid("Plant.Simulation.Counter"), "Counter", sim, 7, 0),
        "Toggle": b.var(b.sid("Plant.Simulation.Toggle"), "Toggle", sim, 1, False),
        "Sawtooth": b.var(b.sid("Plant.Simulation.Sawtooth"), "Sawtooth", sim, 10, 0.0),
        "Clock": b.var(b.sid("Plant.Simulation.Clock"), "Clock", sim, 13, _BASE_TIME),
        "Wave": b.var(b.sid("Plant.Simulation.Wave"), "Wave", sim, 11, [0.0] * 8, array=True),
    }

    # The part of the model that the Control methods change.
    dynamic = b.obj(b.sid("Plant.Dynamic"), "Dynamic", plant, description="Changed by Control")
    b.var(b.sid("Plant.Dynamic.Mutable"), "Mutable", dynamic, 6, 42, writable=True)

    # Length limits: per node (Properties) and server-wide (ServerCapabilities).
    limits = b.obj(b.sid("Plant.Limits"), "Limits", plant, description="Length-limited values")
    for path, (type_id, value, prop, length) in LIMITED.items():
        node = b.var(b.sid(path), path.rsplit(".", 1)[1], limits, type_id, value, writable=True)
        b.prop(b.sid(f"{path}.{prop}"), prop, node, length)
    await server.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength).write_value(
        ua.Variant(SERVER_MAX_BYTE_STRING_LENGTH, ua.VariantType.UInt32)
    )

    control = b.obj(
        b.sid("Control"), "Control", objects, organizes=True, description="Changes the model"
    )
    # Values some clients cannot decode, outside Plant (not in the manifest's variables): an
    # empty matrix encoded as node-opcua encodes ns=0;i=24187 (ValueRank 2, ArrayDimensions
    # [0, 8]; on the wire no elements and an empty ArrayDimensions array), on which asyncua 2.1
    # raises IndexError, and a matrix whose 5 elements do not fit its dimensions [2, 2] (Part 6
    # §5.2.2.16: BadDecodingError). Next to them an ordinary Double.
    odd = b.obj(b.sid("Oddities"), "Oddities", objects, organizes=True, description="Odd encodings")
    oddities = {
        "EmptyMatrix": b.var(
            b.sid("Oddities.EmptyMatrix"), "EmptyMatrix", odd, 3, [], dims=[0, 8], wire_dims=[]
        ),
        "BadShape": b.var(
            b.sid("Oddities.BadShape"),
            "BadShape",
            odd,
            6,
            [1, 2, 3, 4, 5],
            dims=[2, 2],
            wire_dims=[2, 2],
        ),
        "Plain": b.var(b.sid("Oddities.Plain"), "Plain", odd, 11, 7.25),
    }
    b.flush()

    # The cycle: a deep object organizes one of its ancestors.
    cycle_source, cycle_target = b.sid("Plant.Area1.Line1.Machine1"), b.sid("Plant.Area1")
    b.reference(cycle_source, cycle_target, ua.ObjectIds.Organizes)
    b.reference(utilities, tank, ua.ObjectIds.Organizes)

    return Model(
        ns=ns,
        plant=plant,
        dynamic=dynamic,
        control=control,
        simulation=simulation,
        oddities=oddities,
        cycle=(cycle_source, cycle_target),
        shared=(tank, [b.sid("Plant.Area1.Line1"), utilities]),
    )


def build_churn_variables(server: Any, model: Model, count: int) -> list[Any]:
    """``count`` writable Double variables in folders of :data:`CHURN_BLOCK` under Plant/Churn."""
    b = Builder(server, model.ns)
    churn = b.obj(b.sid("Plant.Churn"), "Churn", model.plant, description="--churn variables")
    b.flush()
    nodes: list[Any] = []
    for start in range(0, count, CHURN_BLOCK):
        block = b.obj(
            b.sid(f"Plant.Churn.Block{start // CHURN_BLOCK + 1}"),
            f"Block{start // CHURN_BLOCK + 1}",
            churn,
            folder=True,
        )
        for i in range(start, min(start + CHURN_BLOCK, count)):
            nodes.append(b.var(b.sid(f"Plant.Churn.V{i}"), f"V{i}", block, 11, 0.0, writable=True))
        b.flush()
    return nodes



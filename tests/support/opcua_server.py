"""Real OPC UA servers for the tests: an asyncua server in its own process, and node-opcua.

Run the asyncua server by hand (from the repository root)::

    python -m tests.support.opcua_server --port 4840 --variables 10000 \
        [--cert-dir D] [--users operator:secret-pw] [--ready-file F] [--manifest M]
        [--churn N --churn-interval-ms MS]

It serves ``opc.tcp://127.0.0.1:<port>/opcua-mqtt/test`` (application URI
``urn:opcua-mqtt:test-server``) with

* security None and Basic256Sha256 SignAndEncrypt; the server certificate (DER) and key (PEM) are
  generated into ``--cert-dir`` at first start (self-signed RSA 2048, application URI in the SAN);
  any client certificate is accepted unless ``--trusted-client-certs DIR`` names the only ones;
* identities anonymous and user name / password (``operator`` / ``secret-pw`` by default); a
  wrong password gets BadUserAccessDenied;
* an address space of at least ``--variables`` variables in namespace
  ``urn:opcua-mqtt:test:plant``, described in :func:`build_address_space` and listed in a JSON
  manifest (see :func:`make_manifest`);
* ``Objects/Oddities``: values encoded as other servers encode them (an empty matrix the way
  node-opcua writes ns=0;i=24187, a matrix whose dimensions do not fit its elements) next to a
  plain Double, listed in the manifest under ``oddities``;
* a ``Control`` object whose methods change the model at run time (AddVariable, ChangeDataType,
  DeleteVariable) or count the values clients wrote (WriteCount), and ``Plant/Simulation``
  variables that change every 100 ms;
* with ``--churn N``, N more Double variables ``Plant/Churn/Block<k>/V<i>`` (string NodeIds
  ``Plant.Churn.V<i>``, listed in the manifest under ``churn``) that all get a new value every
  ``--churn-interval-ms``: the tick number as a Double, SourceTimestamp taken just before each
  block is written. For load tests (bench/bench_bridge.py); it prints ``CHURN {json}`` once a
  second on stdout so a caller can see whether the server keeps up.

It prints ``READY <endpoint>`` on stdout (and writes ``--ready-file``, a JSON object) only once
the address space is complete and the server listens. SIGTERM / SIGINT stop it cleanly, and it
stops by itself when its parent process goes away (a killed pytest leaves no server behind).

The second half of this module starts these servers (and ``interop/plant-server.mjs``) from
pytest fixtures: :func:`start_opcua_server`, :func:`start_node_opcua_server`.

Built-in types served (OPC 10000-6 §5.1.2, ids 0..25): all of them. Null (0) only as a scalar
without value (DataType BaseDataType); Variant (24) only as a one-dimensional array of Variants
(DataType BaseDataType), because a Variant cannot directly contain a scalar Variant
(OPC 10000-6 §5.2.2.16). ExtensionObject (22) variables hold ``Range`` structures (DataType
Range, i=884).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_logger = logging.getLogger("tests.support.opcua_server")

# --------------------------------------------------------------------------------------------
# Constants shared by the server process and the fixtures
# --------------------------------------------------------------------------------------------

APPLICATION_URI = "urn:opcua-mqtt:test-server"
NAMESPACE_URI = "urn:opcua-mqtt:test:plant"
RESOURCE_PATH = "/opcua-mqtt/test"
LOOPBACK = "127.0.0.1"
DEFAULT_VARIABLES = 10_000
DEFAULT_USERS = {"operator": "secret-pw"}
SERVER_CERT_NAME = "server_cert.der"
SERVER_KEY_NAME = "server_key.pem"
#: Sessions of vanished clients (and so their subscriptions) are dropped after this long.
DEFAULT_MAX_SESSION_TIMEOUT_S = 30.0
SIMULATION_PERIOD_S = 0.1
#: Churn variables per folder (and per write batch between yields to the event loop).
CHURN_BLOCK = 250

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = REPO_ROOT / "interop"
NODE_PLANT_SERVER = INTEROP_DIR / "plant-server.mjs"
NODE_OPCUA_PACKAGE = INTEROP_DIR / "node_modules" / "node-opcua"
NODE_NAMESPACE_URI = "urn:opcua-mqtt:interop:plant"

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
# Certificates
# --------------------------------------------------------------------------------------------


def make_application_certificate(
    cert_path: Path,
    key_path: Path,
    application_uri: str,
    *,
    common_name: str,
    days: int = 30,
    valid_since_days: int = 1,
) -> None:
    """Write a self-signed OPC UA application instance certificate and its RSA 2048 key.

    The certificate is what OPC 10000-6 §6.2.2 asks of an application instance certificate:
    the application URI as SAN URI, DNS ``localhost`` and this host's name, IP ``127.0.0.1``;
    keyUsage digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment;
    extendedKeyUsage serverAuth + clientAuth; basicConstraints CA=false. Basic256Sha256 needs an
    RSA key of 2048..4096 bits. The file format follows the suffix: ``.der`` or ``.pem``
    (asyncua's loaders pick the format from the suffix the same way). The key is always PEM,
    unencrypted (test material).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opcua-mqtt tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    dns_names = {"localhost", socket.gethostname()}
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    san += [x509.DNSName(n) for n in sorted(dns_names) if n]
    san.append(x509.IPAddress(ipaddress.IPv4Address(LOOPBACK)))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=valid_since_days))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    encoding = (
        serialization.Encoding.PEM
        if cert_path.suffix.lower() in (".pem", ".crt")
        else serialization.Encoding.DER
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    _atomic_write(cert_path, cert.public_bytes(encoding))


def ensure_server_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """The server's certificate (DER) and key (PEM) in ``cert_dir``, generated if missing.

    Several servers may share ``cert_dir``: a lock file keeps them from writing a certificate
    of one key next to another key.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path = cert_dir / SERVER_CERT_NAME
    key_path = cert_dir / SERVER_KEY_NAME
    with open(cert_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            make_application_certificate(
                cert_path, key_path, APPLICATION_URI, common_name="opcua-mqtt test server"
            )
    return cert_path, key_path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# NodeId strings (OPC 10000-6 §5.3.1.10 form, with nsu= for non-zero namespaces)
# --------------------------------------------------------------------------------------------


def nodeid_to_string(nodeid: Any, namespaces: list[str]) -> str:
    """``nsu=<uri>;s=...`` (or ``i=``, ``g=``, ``b=`` base64) for ns > 0, ``i=...`` for ns 0."""
    from asyncua import ua

    kind = nodeid.NodeIdType
    if kind in (ua.NodeIdType.Numeric, ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte):
        ident = f"i={nodeid.Identifier}"
    elif kind == ua.NodeIdType.String:
        ident = f"s={nodeid.Identifier}"
    elif kind == ua.NodeIdType.Guid:
        ident = f"g={nodeid.Identifier}"
    else:
        ident = f"b={base64.b64encode(nodeid.Identifier).decode()}"
    if nodeid.NamespaceIndex == 0:
        return ident
    return f"nsu={namespaces[nodeid.NamespaceIndex]};{ident}"


def parse_nodeid(text: str, namespaces: list[str]) -> Any:
    """Inverse of :func:`nodeid_to_string`; also accepts asyncua's ``ns=<n>;...`` form."""
    from asyncua import ua

    if text.startswith("nsu="):
        uri, sep, rest = text[4:].partition(";")
        if not sep or uri not in namespaces:
            raise ValueError(f"unknown namespace in {text!r}")
        index = namespaces.index(uri)
    elif text.startswith("ns="):
        ns, sep, rest = text[3:].partition(";")
        if not sep:
            raise ValueError(f"bad NodeId {text!r}")
        index = int(ns)
    else:
        index, rest = 0, text
    kind, sep, value = rest.partition("=")
    if not sep:
        raise ValueError(f"bad NodeId {text!r}")
    if kind == "i":
        return ua.NodeId(int(value), index)
    if kind == "s":
        return ua.NodeId(value, index, ua.NodeIdType.String)
    if kind == "g":
        return ua.NodeId(uuid.UUID(value), index, ua.NodeIdType.Guid)
    if kind == "b":
        return ua.NodeId(base64.b64decode(value), index, ua.NodeIdType.ByteString)
    raise ValueError(f"bad NodeId {text!r}")


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


def _type_name(type_id: int) -> str:
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


class _Builder:
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
        self.items.append(
            ua.AddNodesItem(
                ParentNodeId=parent,
                ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                RequestedNewNodeId=nodeid,
                BrowseName=ua.QualifiedName(name, self.ns),
                NodeClass=ua.NodeClass.Variable,
                NodeAttributes=attrs,
                TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType),
            )
        )
        self.variable_count += 1
        return nodeid

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
        self.items.append(
            ua.AddNodesItem(
                ParentNodeId=parent,
                ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasProperty),
                RequestedNewNodeId=nodeid,
                BrowseName=ua.QualifiedName(name, 0),
                NodeClass=ua.NodeClass.Variable,
                NodeAttributes=attrs,
                TypeDefinition=ua.NodeId(ua.ObjectIds.PropertyType),
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


def _add_machine(b: _Builder, path: str, parent: Any, seed: int) -> None:
    machine = b.obj(b.sid(path), path.rsplit(".", 1)[1], parent, description=f"Machine {path}")
    status = b.obj(b.sid(f"{path}.Status"), "Status", machine, folder=True)
    for t in STATUS_TYPES:
        name = _type_name(t)
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
        name = _type_name(t)
        b.var(
            b.sid(f"{path}.Parameters.{name}"),
            name,
            params,
            t,
            _sample(t, seed, b.ns),
            writable=True,
        )
    for t in PARAMETER_ARRAY_TYPES:
        name = f"{_type_name(t)}Array"
        values = [_sample(t, seed + i, b.ns) for i in range(4)]
        b.var(
            b.sid(f"{path}.Parameters.{name}"), name, params, t, values, array=True, writable=True
        )
    arrays = b.obj(b.sid(f"{path}.Arrays"), "Arrays", machine, folder=True)
    for t in ARRAY_TYPES:
        name = f"{_type_name(t)}Array"
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
                                       WriteCount
    Objects/Oddities (s=Oddities)      EmptyMatrix, BadShape: values written as other servers
                                       write them (see below); Plain, a Double
    """
    from asyncua import ua

    ns = await server.register_namespace(NAMESPACE_URI)
    b = _Builder(server, ns)
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


# --------------------------------------------------------------------------------------------
# Control methods
# --------------------------------------------------------------------------------------------


async def add_control_methods(server: Any, model: Model) -> dict[str, Any]:
    """Add AddVariable, ChangeDataType, DeleteVariable and WriteCount to the Control object.

    WriteCount returns how many values clients have asked the Write service to write so far
    (the server's own changes do not count): a test can tell that nothing was written even
    where a write would have left a value as it was."""
    from asyncua import ua
    from asyncua.common.callback import CallbackType

    ns = model.ns
    control = server.get_node(model.control)
    aspace = server.iserver.aspace

    def arg(name: str, description: str) -> Any:
        return ua.Argument(
            Name=name,
            DataType=ua.NodeId(ua.ObjectIds.String),
            ValueRank=-1,
            Description=ua.LocalizedText(description),
        )

    async def namespaces() -> list[str]:
        return list(await server.get_namespace_array())

    written = 0

    def count_writes(event: Any, _dispatcher: Any) -> None:
        nonlocal written
        if event.is_external:
            written += len(event.request_params.NodesToWrite)

    server.subscribe_server_callback(CallbackType.PostWrite, count_writes)

    async def write_count(_parent: Any) -> Any:
        return [ua.Variant(written, ua.VariantType.UInt32)]

    async def add_variable(_parent: Any, name: Any) -> Any:
        text = name.Value if isinstance(name, ua.Variant) else name
        if not isinstance(text, str) or not text or any(c in text for c in ".;/ "):
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        nodeid = ua.NodeId(f"Plant.Dynamic.{text}", ns, ua.NodeIdType.String)
        if nodeid in aspace:
            return ua.StatusCode(ua.StatusCodes.BadBrowseNameDuplicated)
        b = _Builder(server, ns)
        b.var(
            nodeid, text, model.dynamic, 11, 0.0, writable=True, description="added by AddVariable"
        )
        b.flush()
        _logger.info("AddVariable: %s", nodeid)
        return [ua.Variant(nodeid_to_string(nodeid, await namespaces()), ua.VariantType.String)]

    async def variable(text: Any, *, plant_only: bool) -> tuple[ua.NodeId, Any] | ua.StatusCode:
        """The variable (NodeId and address-space node) that a Control method's NodeId argument
        names, or the StatusCode that refuses the argument."""
        text = text.Value if isinstance(text, ua.Variant) else text
        try:
            nodeid = parse_nodeid(text, await namespaces())
        except (ValueError, TypeError):
            return ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
        node = aspace.get(nodeid)
        if node is None or (plant_only and nodeid.NamespaceIndex != ns):
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        if node.attributes[ua.AttributeIds.NodeClass].value.Value.Value != ua.NodeClass.Variable:
            return ua.StatusCode(ua.StatusCodes.BadNodeClassInvalid)
        return nodeid, node

    async def change_data_type(_parent: Any, text: Any) -> Any:
        found = await variable(text, plant_only=False)
        if isinstance(found, ua.StatusCode):
            return found
        nodeid, node = found
        value_attr = node.attributes[ua.AttributeIds.Value]
        old = value_attr.value.Value if value_attr.value is not None else ua.Variant()
        old_type = old.VariantType
        new_type = (
            ua.VariantType.Int32 if old_type == ua.VariantType.Double else ua.VariantType.Double
        )
        convert: Callable[[Any], Any] = (
            _to_int32 if new_type == ua.VariantType.Int32 else _to_double
        )
        if old.is_array and isinstance(old.Value, list):
            new_value: Any = [convert(v) for v in _flatten(old.Value)]
            if old.Dimensions and len(old.Dimensions) > 1:
                new_value = _reshape(new_value, old.Dimensions)
            variant = ua.Variant(new_value, new_type, Dimensions=old.Dimensions)
        else:
            variant = ua.Variant(convert(old.Value), new_type)
        await server.write_attribute_value(
            nodeid,
            ua.DataValue(ua.Variant(ua.NodeId(new_type.value), ua.VariantType.NodeId)),
            ua.AttributeIds.DataType,
        )
        # asyncua refuses a value whose Variant type differs from the current one: forget the
        # current value first (nothing can run in between: no await), then write, which also
        # notifies the monitored items.
        value_attr.value = None
        now = dt.datetime.now(dt.UTC)
        await server.write_attribute_value(
            nodeid, ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
        )
        _logger.info("ChangeDataType: %s %s -> %s", nodeid, old_type.name, new_type.name)
        return [
            ua.Variant(old_type.name, ua.VariantType.String),
            ua.Variant(new_type.name, ua.VariantType.String),
        ]

    async def delete_variable(_parent: Any, text: Any) -> Any:
        found = await variable(text, plant_only=True)
        if isinstance(found, ua.StatusCode):
            return found
        nodeid, _node = found
        results = server.iserver.node_mgt_service.delete_nodes(
            ua.DeleteNodesParameters(
                NodesToDelete=[ua.DeleteNodesItem(NodeId=nodeid, DeleteTargetReferences=True)]
            )
        )
        _logger.info("DeleteVariable: %s", nodeid)
        return results[0]

    methods = {}
    methods["AddVariable"] = await control.add_method(
        ua.NodeId("Control.AddVariable", ns, ua.NodeIdType.String),
        ua.QualifiedName("AddVariable", ns),
        add_variable,
        [arg("Name", "BrowseName of a new Double variable under Plant/Dynamic")],
        [arg("NodeId", "NodeId of the new variable, nsu= form")],
    )
    methods["ChangeDataType"] = await control.add_method(
        ua.NodeId("Control.ChangeDataType", ns, ua.NodeIdType.String),
        ua.QualifiedName("ChangeDataType", ns),
        change_data_type,
        [arg("NodeId", "Variable to change: Double becomes Int32, anything else Double")],
        [arg("OldType", "built-in type before"), arg("NewType", "built-in type after")],
    )
    methods["DeleteVariable"] = await control.add_method(
        ua.NodeId("Control.DeleteVariable", ns, ua.NodeIdType.String),
        ua.QualifiedName("DeleteVariable", ns),
        delete_variable,
        [arg("NodeId", "Variable of the plant namespace to delete")],
        [],
    )
    methods["WriteCount"] = await control.add_method(
        ua.NodeId("Control.WriteCount", ns, ua.NodeIdType.String),
        ua.QualifiedName("WriteCount", ns),
        write_count,
        [],
        [
            ua.Argument(
                Name="Count",
                DataType=ua.NodeId(ua.ObjectIds.UInt32),
                ValueRank=-1,
                Description=ua.LocalizedText("values written by clients so far"),
            )
        ],
    )
    return {name: node.nodeid for name, node in methods.items()}


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _reshape(flat: list[Any], dims: list[int]) -> list[Any]:
    if len(dims) == 1:
        return flat
    step = len(flat) // dims[0]
    return [_reshape(flat[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]


def _to_double(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    return 0.0


def _to_int32(value: Any) -> int:
    if isinstance(value, bool | int | float) and math.isfinite(value):
        return max(-(2**31), min(2**31 - 1, round(value)))
    return 0


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def make_manifest(server: Any, model: Model, namespaces: list[str]) -> dict[str, Any]:
    """Every variable reachable from Objects/Plant over forward hierarchical references.

    Walked in the server's own address space after building, so it lists what a client's browse
    finds, each node once (the cycle and the shared node do not repeat anything). ``path`` is the
    shortest browse path from Plant (breadth first). A snapshot taken at start-up: the Control
    methods change the model afterwards.
    """
    from asyncua import ua

    aspace = server.iserver.aspace
    hierarchical = _hierarchical_reference_types(aspace)

    def to_s(nodeid: Any) -> str:
        return nodeid_to_string(nodeid, namespaces)

    variables: list[dict[str, Any]] = []
    objects: list[str] = []
    seen = {model.plant}
    queue: list[tuple[Any, str]] = [(model.plant, "Plant")]
    for nodeid, path in queue:  # the list grows while we walk it: breadth first
        node = aspace[nodeid]
        node_class = node.attributes[ua.AttributeIds.NodeClass].value.Value.Value
        if node_class == ua.NodeClass.Variable:
            variables.append(_variable_entry(node, to_s(nodeid), path))
        elif node_class == ua.NodeClass.Object:
            objects.append(to_s(nodeid))
        for ref in node.references:
            if ref.IsForward and ref.ReferenceTypeId in hierarchical and ref.NodeId not in seen:
                seen.add(ref.NodeId)
                queue.append((ref.NodeId, f"{path}/{ref.BrowseName.Name}"))

    served = sorted({v["builtin_type_id"] for v in variables})
    return {
        "endpoint": None,  # filled in by the caller
        "application_uri": APPLICATION_URI,
        "namespace_uri": NAMESPACE_URI,
        "namespace_index": model.ns,
        "root": to_s(model.plant),
        "variable_count": len(variables),
        "object_count": len(objects),
        "builtin_types": [_type_name(t) for t in served],
        "builtin_type_ids": served,
        "builtin_type_notes": {
            "Null": "only as a scalar without value (DataType BaseDataType)",
            "Variant": "only as a 1-D array of Variants (DataType BaseDataType): a Variant cannot "
            "directly contain a scalar Variant (OPC 10000-6 5.2.2.16)",
            "ExtensionObject": "Range structures (DataType Range, i=884)",
        },
        "cycle": {
            "source": to_s(model.cycle[0]),
            "target": to_s(model.cycle[1]),
            "reference_type": "Organizes",
        },
        "shared": {
            "node": to_s(model.shared[0]),
            "parents": [to_s(p) for p in model.shared[1]],
        },
        "simulation": {name: to_s(n) for name, n in model.simulation.items()},
        "oddities": {name: to_s(n) for name, n in model.oddities.items()},
        "dynamic": to_s(model.dynamic),
        "control": {"object": to_s(model.control)},
        "objects": objects,
        "variables": variables,
    }


def _hierarchical_reference_types(aspace: Any) -> set[Any]:
    from asyncua import ua

    root = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    found = {root}
    stack = [root]
    while stack:
        for ref in aspace[stack.pop()].references:
            if (
                ref.IsForward
                and ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasSubtype)
                and ref.NodeId not in found
            ):
                found.add(ref.NodeId)
                stack.append(ref.NodeId)
    return found


def _variable_entry(node: Any, nodeid: str, path: str) -> dict[str, Any]:
    from asyncua import ua

    attrs = node.attributes
    variant = attrs[ua.AttributeIds.Value].value.Value
    value_rank = attrs[ua.AttributeIds.ValueRank].value.Value.Value
    dims_dv = attrs.get(ua.AttributeIds.ArrayDimensions)
    dims = dims_dv.value.Value.Value if dims_dv is not None and dims_dv.value is not None else None
    access = attrs[ua.AttributeIds.AccessLevel].value.Value.Value
    description = attrs[ua.AttributeIds.Description].value.Value.Value
    data_type = attrs[ua.AttributeIds.DataType].value.Value.Value
    return {
        "nodeid": nodeid,
        "path": path,
        "builtin_type": variant.VariantType.name,
        "builtin_type_id": int(variant.VariantType.value),
        "data_type": nodeid_to_string(data_type, []) if data_type.NamespaceIndex == 0 else None,
        "value_rank": int(value_rank),
        "array_dimensions": list(dims) if dims else None,
        "writable": bool(access & ua.AccessLevel.CurrentWrite.mask),
        "description": description.Text if description is not None and description.Text else None,
    }


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


class _UserManager:
    """Anonymous users and the configured user names; a wrong password returns None, which
    asyncua answers with BadUserAccessDenied."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            # asyncua's default ruleset lets role Anonymous do nothing at all (not even Read):
            # anonymous sessions get role User, which may read, write, browse, call.
            return User(role=UserRole.User, name="anonymous")
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User, name=username)
        return None


def _trusted_client_validator(trust_dir: Path) -> Callable[..., Any]:
    """Accept a client certificate only if its exact DER is in ``trust_dir`` (.der/.pem/.crt,
    read at every CreateSession, so tests may add certificates while the server runs)."""

    async def validate(cert: x509.Certificate, _app_description: Any) -> None:
        from asyncua import ua
        from asyncua.common.utils import ServiceError

        wanted = cert.public_bytes(serialization.Encoding.DER)
        for path in sorted(trust_dir.glob("*")):
            try:
                data = path.read_bytes()
                trusted = (
                    x509.load_pem_x509_certificate(data)
                    if data.lstrip().startswith(b"-----BEGIN")
                    else x509.load_der_x509_certificate(data)
                )
            except (OSError, ValueError):
                continue
            if trusted.public_bytes(serialization.Encoding.DER) == wanted:
                return
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


async def _simulate(server: Any, model: Model, stop: asyncio.Event) -> None:
    from asyncua import ua

    sim = model.simulation
    tick = 0
    parent = os.getppid()
    while not stop.is_set():
        tick += 1
        now = dt.datetime.now(dt.UTC)
        phase = tick * SIMULATION_PERIOD_S
        updates = {
            "Sine": ua.Variant(math.sin(phase), ua.VariantType.Double),
            "Counter": ua.Variant(tick % 2**32, ua.VariantType.UInt32),
            "Toggle": ua.Variant(tick % 2 == 0, ua.VariantType.Boolean),
            "Sawtooth": ua.Variant(float(tick % 100), ua.VariantType.Float),
            "Clock": ua.Variant(now, ua.VariantType.DateTime),
            "Wave": ua.Variant(
                [math.sin(phase + i / 8 * math.tau) for i in range(8)], ua.VariantType.Double
            ),
        }
        for name, variant in updates.items():
            await server.write_attribute_value(
                sim[name], ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            )
        if tick % 10 == 0 and os.getppid() != parent:
            _logger.warning("parent process %d went away: stopping", parent)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SIMULATION_PERIOD_S)


def build_churn_variables(server: Any, model: Model, count: int) -> list[Any]:
    """``count`` writable Double variables in folders of :data:`CHURN_BLOCK` under Plant/Churn."""
    b = _Builder(server, model.ns)
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


async def _churn(server: Any, nodes: list[Any], period_s: float, stop: asyncio.Event) -> None:
    """Write the tick number to every churn variable every ``period_s``, block by block.

    Ticks run on a fixed schedule; a tick that starts late is counted, and a server more than one
    period behind skips ahead (counted too) rather than bursting. Once a second a ``CHURN`` line
    on stdout gives the totals.
    """
    from asyncua import ua

    class SharedValue(ua.DataValue):  # type: ignore[misc]
        """A DataValue nobody mutates: asyncua's server deep-copies every written DataValue once
        per monitored item (about 40 µs each, measured), which would make this server, not its
        client, the limit of a load test. One instance is shared by a block of variables."""

        def __deepcopy__(self, memo: dict[int, Any]) -> SharedValue:
            return self

    write = server.iserver.aspace.write_attribute_value  # no per-call service overhead
    value_attr = ua.AttributeIds.Value
    blocks = [nodes[i : i + CHURN_BLOCK] for i in range(0, len(nodes), CHURN_BLOCK)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    due = started
    tick = late = skipped = values = 0
    busy = max_tick = 0.0
    next_report = started + 1.0
    while not stop.is_set():
        tick += 1
        t0 = time.perf_counter()
        for block in blocks:
            now = dt.datetime.now(dt.UTC)
            dv = SharedValue(
                ua.Variant(float(tick), ua.VariantType.Double),
                SourceTimestamp=now,
                ServerTimestamp=now,
            )
            for nodeid in block:
                await write(nodeid, value_attr, dv)
            values += len(block)
            await asyncio.sleep(0)  # let Publish requests through between blocks
        spent = time.perf_counter() - t0
        busy += spent
        max_tick = max(max_tick, spent)
        due += period_s
        now_t = loop.time()
        if now_t > due:
            late += 1
            if now_t - due > period_s:
                missed = int((now_t - due) / period_s)
                skipped += missed
                due += missed * period_s
        if now_t >= next_report:
            next_report = now_t + 1.0
            report = {
                "t": time.time(),
                "tick": tick,
                "values": values,
                "elapsed_s": round(now_t - started, 3),
                "busy_s": round(busy, 3),
                "late_ticks": late,
                "skipped_ticks": skipped,
                "max_tick_ms": round(max_tick * 1000, 1),
            }
            print("CHURN " + json.dumps(report), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))


async def serve(args: argparse.Namespace) -> None:
    from asyncua import Server, ua

    started = time.perf_counter()
    users = dict(DEFAULT_USERS)
    if args.users:
        users = {}
        for spec in args.users:
            for pair in spec.split(","):
                name, sep, password = pair.partition(":")
                if not sep or not name:
                    raise SystemExit(f"bad --users entry {pair!r}: want name:password")
                users[name] = password
    cert_dir = Path(args.cert_dir) if args.cert_dir else Path(tempfile.mkdtemp(prefix="opcua-pki-"))
    cert_path, key_path = ensure_server_certificate(cert_dir)

    server = Server(user_manager=_UserManager(users))
    await server.init()
    endpoint = f"opc.tcp://{LOOPBACK}:{args.port}{RESOURCE_PATH}"
    server.set_endpoint(endpoint)
    server.set_server_name("opcua-mqtt test server")
    await server.set_application_uri(APPLICATION_URI)
    server.product_uri = "urn:opcua-mqtt:test-server:product"
    server.set_security_policy(
        [ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
    )
    server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
    await server.load_certificate(str(cert_path))
    await server.load_private_key(str(key_path))
    if args.trusted_client_certs:
        server.set_certificate_validator(_trusted_client_validator(Path(args.trusted_client_certs)))
    # else: a test server, so ANY client certificate is accepted on Basic256Sha256 (asyncua does
    # not check client certificates unless a validator is set).
    server.iserver.max_session_timeout_ms = args.max_session_timeout * 1000

    build_started = time.perf_counter()
    model = await build_address_space(server, args.variables)
    churn_nodes = build_churn_variables(server, model, args.churn) if args.churn > 0 else []
    control_methods = await add_control_methods(server, model)
    build_seconds = time.perf_counter() - build_started
    namespaces = list(await server.get_namespace_array())
    manifest = make_manifest(server, model, namespaces)
    manifest["endpoint"] = endpoint
    manifest["control"].update(
        {k: nodeid_to_string(v, namespaces) for k, v in control_methods.items()}
    )
    manifest["build_seconds"] = round(build_seconds, 3)
    if churn_nodes:
        manifest["churn"] = {
            "count": len(churn_nodes),
            "interval_ms": args.churn_interval_ms,
            "nodeids": [nodeid_to_string(n, namespaces) for n in churn_nodes],
        }

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.start()
    try:
        startup_seconds = time.perf_counter() - started
        manifest["startup_seconds"] = round(startup_seconds, 3)
        _announce(args, endpoint, manifest, cert_path, startup_seconds, build_seconds)
        churn = None
        if churn_nodes:
            churn = asyncio.create_task(
                _churn(server, churn_nodes, args.churn_interval_ms / 1000, stop)
            )
        try:
            await _simulate(server, model, stop)
        finally:
            if churn is not None:
                churn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await churn
    finally:
        await server.stop()


def _announce(
    args: argparse.Namespace,
    endpoint: str,
    manifest: dict[str, Any],
    cert_path: Path,
    startup_seconds: float,
    build_seconds: float,
) -> None:
    manifest_path: Path | None = None
    if args.manifest:
        manifest_path = Path(args.manifest)
    elif args.ready_file:
        manifest_path = Path(args.ready_file).parent / "manifest.json"
    if manifest_path is not None:
        _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    else:
        print("MANIFEST " + json.dumps(manifest, separators=(",", ":")), flush=True)
    if args.ready_file:
        ready = {
            "endpoint": endpoint,
            "pid": os.getpid(),
            "manifest": str(manifest_path),
            "server_cert": str(cert_path),
            "namespace_uri": NAMESPACE_URI,
            "variable_count": manifest["variable_count"],
            "startup_seconds": round(startup_seconds, 3),
            "build_seconds": round(build_seconds, 3),
        }
        _atomic_write(Path(args.ready_file), json.dumps(ready).encode())
    print(f"READY {endpoint}", flush=True)
    print(
        f"opcua_server: {manifest['variable_count']} variables, address space built in "
        f"{build_seconds:.2f} s, ready after {startup_seconds:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.opcua_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variables", type=int, default=DEFAULT_VARIABLES)
    parser.add_argument("--cert-dir", help="server certificate and key (generated if missing)")
    parser.add_argument(
        "--users",
        action="append",
        help="name:password[,name:password...] (default operator:secret-pw)",
    )
    parser.add_argument("--ready-file", help="written (JSON) once the server is ready")
    parser.add_argument(
        "--manifest", help="where to write the manifest (default: next to --ready-file)"
    )
    parser.add_argument(
        "--trusted-client-certs",
        help="accept only the client certificates in this folder (default: accept any)",
    )
    parser.add_argument(
        "--max-session-timeout",
        type=float,
        default=DEFAULT_MAX_SESSION_TIMEOUT_S,
        help="seconds; sessions of vanished clients (and their subscriptions) end after this",
    )
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        metavar="N",
        help="add N Double variables under Plant/Churn that change every --churn-interval-ms",
    )
    parser.add_argument(
        "--churn-interval-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="period of the --churn writes (default 1000)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))


# --------------------------------------------------------------------------------------------
# Starting the servers from fixtures
# --------------------------------------------------------------------------------------------


class ServerStartError(RuntimeError):
    """A test server did not become ready; the message carries its output."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, limit: int = 20_000) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            text = path.read_text(errors="replace") if path.exists() else ""
            if len(text) > limit:
                text = "...\n" + text[-limit:]
            parts.append(f"--- {path.name} ---\n{text.strip() or '(empty)'}")
        return "\n".join(parts)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for f in self.files:
            f.close()
        self.files.clear()


def _spawn(cmd: list[str], workdir: Path, name: str, cwd: Path) -> _Process:
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / f"{name}.out", workdir / f"{name}.err"
    out, err = open(stdout_path, "wb"), open(stderr_path, "wb")  # noqa: SIM115 - closed in stop()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        # Own session: Ctrl-C in the terminal reaches pytest only, whose teardown stops us.
        start_new_session=True,
    )
    return _Process(proc, stdout_path, stderr_path, [out, err])


@dataclass
class ServerProcess:
    """What every test server process offers: where it listens, who may log in, its plant
    namespace, and its process (stopped by PID)."""

    endpoint: str
    port: int
    namespace_uri: str
    server_cert_path: Path
    username: str
    password: str
    pid: int
    startup_seconds: float
    _process: _Process = field(repr=False)

    def nodeid(self, path: str) -> str:
        """``nsu=<plant namespace>;s=<path>``, e.g. ``nodeid("Plant.Dynamic.Mutable")``."""
        return f"nsu={self.namespace_uri};s={path}"

    @property
    def running(self) -> bool:
        return self._process.proc.poll() is None

    def output(self) -> str:
        """What the server wrote on stdout and stderr so far."""
        return self._process.output()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL); idempotent."""
        self._process.stop(timeout)


@dataclass
class OpcUaTestServer(ServerProcess):
    """A running ``python -m tests.support.opcua_server`` process (server_cert_path: DER)."""

    application_uri: str
    cert_dir: Path
    manifest: dict[str, Any]
    manifest_path: Path
    workdir: Path

    @property
    def variables(self) -> list[dict[str, Any]]:
        """The manifest's variable entries (nodeid, path, builtin_type, value_rank, ...)."""
        return list(self.manifest["variables"])


def start_opcua_server(
    workdir: Path,
    *,
    variables: int = DEFAULT_VARIABLES,
    cert_dir: Path | None = None,
    users: dict[str, str] | None = None,
    trusted_client_certs: Path | None = None,
    timeout: float = 60.0,
    extra_args: Iterable[str] = (),
) -> OpcUaTestServer:
    """Start the asyncua test server on a free loopback port and wait (bounded) until READY.

    Raises :class:`ServerStartError` with the server's output when it exits or is not ready
    within ``timeout`` seconds. A port taken between choosing and binding is retried.
    """
    users = dict(users or DEFAULT_USERS)
    username, password = next(iter(users.items()))
    cert_dir = cert_dir or workdir / "pki"
    for attempt in range(3):
        port = free_port()
        ready_file = workdir / "ready.json"
        ready_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "tests.support.opcua_server",
            "--port",
            str(port),
            "--variables",
            str(variables),
            "--cert-dir",
            str(cert_dir),
            "--users",
            ",".join(f"{u}:{p}" for u, p in users.items()),
            "--ready-file",
            str(ready_file),
        ]
        if trusted_client_certs is not None:
            cmd += ["--trusted-client-certs", str(trusted_client_certs)]
        cmd += list(extra_args)
        process = _spawn(cmd, workdir, f"opcua-server-{attempt}", REPO_ROOT)
        try:
            _wait_for(ready_file.exists, process, timeout, f"port {port}")
        except ServerStartError as exc:
            if attempt < 2 and "address already in use" in str(exc).lower():
                continue
            raise
        ready = json.loads(ready_file.read_text())
        manifest_path = Path(ready["manifest"])
        return OpcUaTestServer(
            endpoint=ready["endpoint"],
            port=port,
            namespace_uri=ready["namespace_uri"],
            application_uri=APPLICATION_URI,
            server_cert_path=Path(ready["server_cert"]),
            cert_dir=cert_dir,
            username=username,
            password=password,
            manifest=json.loads(manifest_path.read_text()),
            manifest_path=manifest_path,
            pid=process.pid,
            startup_seconds=float(ready["startup_seconds"]),
            workdir=workdir,
            _process=process,
        )
    raise AssertionError("unreachable")


def _wait_for(condition: Callable[[], bool], process: _Process, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.proc.poll() is not None:
            code = process.proc.returncode
            process.stop()
            raise ServerStartError(
                f"OPC UA test server ({what}) exited with code {code} before it was ready\n"
                f"{process.output()}"
            )
        if time.monotonic() > deadline:
            process.stop()
            raise ServerStartError(
                f"OPC UA test server ({what}) not ready within {timeout:.0f} s\n{process.output()}"
            )
        time.sleep(0.02)


# -- node-opcua ------------------------------------------------------------------------------

NODE_NOT_READY = (
    "the node-opcua plant server needs Node.js (`node` on PATH) and "
    "interop/node_modules/node-opcua (pinned in interop/package-lock.json): run "
    "`bash scripts/test`, which installs both, or `cd interop && npm ci`."
)


def node_opcua_missing() -> str | None:
    """Why the node-opcua server cannot start here, or None when it can."""
    import shutil

    if shutil.which("node") is None:
        return "`node` is not on PATH. " + NODE_NOT_READY
    if not (NODE_OPCUA_PACKAGE / "package.json").exists():
        return f"{NODE_OPCUA_PACKAGE} is missing. " + NODE_NOT_READY
    return None


@dataclass
class NodeOpcuaTestServer(ServerProcess):
    """A running ``node interop/plant-server.mjs`` process.

    Its model (namespace :data:`NODE_NAMESPACE_URI`, string NodeIds ``s=Plant.Line1.Filler.Speed``
    etc.) is described at the top of interop/plant-server.mjs. Its server_cert_path is PEM.
    """

    pki_dir: Path

    def writes(self, path: str) -> list[str]:
        """Results (StatusCode names) of the Writes that reached the WriteBack variable
        ``path`` (e.g. ``"WriteBack.Double"``) so far, oldest first: the server's own account,
        which tells a write it refused from one never sent."""
        prefix = f"WRITE {path} "
        text = self._process.stdout_path.read_text(errors="replace")
        return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


def start_node_opcua_server(
    workdir: Path,
    *,
    users: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> NodeOpcuaTestServer:
    """Start interop/plant-server.mjs on a free loopback port; wait (bounded) for READY."""
    import shutil

    missing = node_opcua_missing()
    if missing is not None:
        raise ServerStartError(missing)
    node = shutil.which("node")
    assert node is not None
    users = dict(users or DEFAULT_USERS)
    username, password = next(iter(users.items()))
    pki_dir = workdir / "pki"
    for attempt in range(3):
        started = time.monotonic()
        port = free_port()
        cmd = [
            node,
            str(NODE_PLANT_SERVER),
            str(port),
            str(pki_dir),
            "--users",
            ",".join(f"{u}:{p}" for u, p in users.items()),
        ]
        process = _spawn(cmd, workdir, f"plant-server-{attempt}", INTEROP_DIR)

        def ready(process: _Process = process) -> bool:
            return "READY " in process.stdout_path.read_text(errors="replace")

        try:
            _wait_for(ready, process, timeout, f"node-opcua, port {port}")
        except ServerStartError as exc:
            if attempt < 2 and "eaddrinuse" in str(exc).lower():
                continue
            raise
        lines = dict(
            line.split(" ", 1)
            for line in process.stdout_path.read_text().splitlines()
            if " " in line
        )
        return NodeOpcuaTestServer(
            endpoint=lines["READY"].strip(),
            port=port,
            namespace_uri=lines["NAMESPACE"].strip(),
            server_cert_path=Path(lines["CERT"].strip()),
            pki_dir=pki_dir,
            username=username,
            password=password,
            pid=process.pid,
            startup_seconds=time.monotonic() - started,
            _process=process,
        )
    raise AssertionError("unreachable")


if __name__ == "__main__":
    main()

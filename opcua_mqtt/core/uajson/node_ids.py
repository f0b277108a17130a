"""NodeIds, ExpandedNodeIds, QualifiedNames and the namespace tables they index (§5.4.2.10-14)."""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

from asyncua import ua

from opcua_mqtt.core.errors import DecodeError
from opcua_mqtt.core.uajson.forms import FieldEncoding
from opcua_mqtt.core.uajson.scalars import (
    VT,
    decode_bytes,
    decode_guid,
    decode_int,
    enc_bytes,
    enc_guid,
    expect_str,
    json_type,
)

OPC_UA_NAMESPACE: Final = "http://opcfoundation.org/UA/"


class NamespaceTable:
    """Index ↔ URI mapping for namespaces (or server URIs); index 0 is the OPC UA namespace."""

    __slots__ = ("_index", "_uris")

    def __init__(self, uris: Sequence[str] = (OPC_UA_NAMESPACE,)) -> None:
        self._uris: list[str] = list(uris)
        self._index: dict[str, int] = {}
        for i, uri in enumerate(self._uris):
            self._index.setdefault(uri, i)

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(self._uris)

    def uri(self, index: int) -> str | None:
        return self._uris[index] if 0 <= index < len(self._uris) else None

    def index(self, uri: str) -> int | None:
        return self._index.get(uri)


def _table(value: NamespaceTable | Sequence[str] | None, default: Sequence[str]) -> NamespaceTable:
    if isinstance(value, NamespaceTable):
        return value
    return NamespaceTable(default if value is None else value)


_NS: Final = re.compile(r"(?:ns=(?P<ns>\d+)|nsu=(?P<uri>[^;]*));")
_SVR: Final = re.compile(r"(?:svr=(?P<svr>\d+)|svu=(?P<svu>[^;]*));")
_QN_PREFIX: Final = _NS


class NodeIdCodec:
    """NodeIds, ExpandedNodeIds and QualifiedNames in one JSON form against one pair of
    namespace / server tables: the part of the codec that resolves indexes and URIs."""

    def __init__(
        self,
        encoding: FieldEncoding = FieldEncoding.COMPACT,
        namespaces: NamespaceTable | Sequence[str] | None = None,
        server_uris: NamespaceTable | Sequence[str] | None = None,
    ) -> None:
        self.encoding = encoding
        self.namespaces = _table(namespaces, (OPC_UA_NAMESPACE,))
        self.server_uris = _table(server_uris, ())
        self._verbose = encoding is FieldEncoding.VERBOSE
        self._is105 = encoding.is_105

    def encode_node_id(self, node_id: ua.NodeId) -> Any:
        """NodeId: 1.05 string (Part 6 §5.4.2.10 / §5.1.12), 1.04 object (Annex H.2)."""
        if self._is105:
            return self._node_id_string(node_id, node_id.NamespaceIndex, None)
        kind, ident = _identifier(node_id)
        out: dict[str, Any] = {}
        if kind:
            out["IdType"] = kind
        out["Id"] = ident
        ns = node_id.NamespaceIndex
        if ns:
            uri = self.namespaces.uri(ns) if self.encoding is FieldEncoding.NON_REVERSIBLE else None
            out["Namespace"] = uri if uri is not None else ns
        return out

    def encode_expanded_node_id(self, node_id: ua.ExpandedNodeId) -> Any:
        """ExpandedNodeId: 1.05 string with ``svu=``/``svr=`` (§5.4.2.11), 1.04 object (H.3)."""
        ns_uri = getattr(node_id, "NamespaceUri", None) or None
        server = int(getattr(node_id, "ServerIndex", 0) or 0)
        if self._is105:
            prefix = ""
            if server:
                suri = self.server_uris.uri(server)
                prefix = f"svu={_escape_uri(suri)};" if suri is not None else f"svr={server};"
            return prefix + self._node_id_string(node_id, node_id.NamespaceIndex, ns_uri)
        kind, ident = _identifier(node_id)
        out: dict[str, Any] = {}
        if kind:
            out["IdType"] = kind
        out["Id"] = ident
        if ns_uri is not None:
            out["Namespace"] = ns_uri
        elif node_id.NamespaceIndex:
            uri = None
            if self.encoding is FieldEncoding.NON_REVERSIBLE and node_id.NamespaceIndex != 1:
                uri = self.namespaces.uri(node_id.NamespaceIndex)
            out["Namespace"] = uri if uri is not None else node_id.NamespaceIndex
        if server:
            suri = None
            if self.encoding is FieldEncoding.NON_REVERSIBLE:
                suri = self.server_uris.uri(server)
            out["ServerUri"] = suri if suri is not None else server
        return out

    def encode_qualified_name(self, qn: ua.QualifiedName) -> Any:
        """QualifiedName: 1.05 string ``nsu=<uri>;<name>`` (§5.4.2.14), 1.04 object (H.5)."""
        ns = qn.NamespaceIndex
        name = qn.Name if qn.Name is not None else ""
        if self._is105:
            if ns == 0:
                return name
            uri = self.namespaces.uri(ns)
            if uri is None:  # first abnormal state: the index has no URI
                return f"ns={ns};{name}"
            return f"nsu={_escape_uri(uri)};{name}"
        out: dict[str, Any] = {"Name": qn.Name}
        if ns:
            uri = self.namespaces.uri(ns) if self.encoding is FieldEncoding.NON_REVERSIBLE else None
            out["Uri"] = uri if uri is not None else ns
        return out

    def decode_node_id(self, x: Any) -> ua.NodeId:
        """NodeId from a 1.05 string or a 1.04 object."""
        if isinstance(x, str):
            return self._parse_node_id(x, expanded=False)
        if isinstance(x, dict):
            return self._node_id_from_object(x, expanded=False)
        raise DecodeError("", f"expected a NodeId string, got {json_type(x)}")

    def decode_expanded_node_id(self, x: Any) -> ua.ExpandedNodeId:
        """ExpandedNodeId from a 1.05 string or a 1.04 object."""
        if isinstance(x, str):
            node = self._parse_node_id(x, expanded=True)
        elif isinstance(x, dict):
            node = self._node_id_from_object(x, expanded=True)
        else:
            raise DecodeError("", f"expected an ExpandedNodeId string, got {json_type(x)}")
        assert isinstance(node, ua.ExpandedNodeId)
        return node

    def decode_qualified_name(self, x: Any) -> ua.QualifiedName:
        """QualifiedName from a 1.05 string or a 1.04 ``{"Name","Uri"}`` object."""
        if isinstance(x, str):
            m = _QN_PREFIX.match(x)
            if m is None:
                return ua.QualifiedName(x, 0)
            if m.group("ns") is not None:
                return ua.QualifiedName(x[m.end() :], _ns_index(m.group("ns")))
            uri = _unescape_uri(m.group("uri"))
            idx = self.namespaces.index(uri)
            if idx is None:  # second abnormal state (Part 6 §5.4.2.14)
                return ua.QualifiedName(x, 0)
            return ua.QualifiedName(x[m.end() :], idx)
        if isinstance(x, dict):
            name = x.get("Name")
            if name is not None and not isinstance(name, str):
                raise DecodeError("Name", f"expected a string, got {json_type(name)}")
            uri = x.get("Uri", 0)
            if isinstance(uri, str):
                idx = self.namespaces.index(uri)
                if idx is None:
                    raise DecodeError("Uri", f"namespace {uri!r} is not in the namespace table")
                return ua.QualifiedName(name, idx)
            return ua.QualifiedName(name, decode_int(uri or 0, VT.UInt16, "Uri"))
        raise DecodeError("", f"expected a QualifiedName, got {json_type(x)}")

    def _node_id_string(self, node_id: ua.NodeId, ns: int, ns_uri: str | None) -> str:
        ident = _identifier_string(node_id)
        if ns_uri is not None and ns_uri != OPC_UA_NAMESPACE:
            return f"nsu={_escape_uri(ns_uri)};{ident}"
        if ns == 0 or ns_uri == OPC_UA_NAMESPACE:
            return ident
        uri = self.namespaces.uri(ns)
        if uri is None:  # first abnormal state (Part 6 §5.4.2.10): index without a URI
            return f"ns={ns};{ident}"
        return f"nsu={_escape_uri(uri)};{ident}"

    def _parse_node_id(self, text: str, *, expanded: bool) -> ua.NodeId:
        rest = text
        server = 0
        ns_uri: str | None = None
        ns = 0
        if expanded:
            m = _SVR.match(rest)
            if m is not None:
                if m.group("svr") is not None:
                    server = _ns_index(m.group("svr"), "svr", 2**32 - 1)
                else:
                    suri = _unescape_uri(m.group("svu"))
                    sidx = self.server_uris.index(suri)
                    if sidx is None:  # second abnormal state (Part 6 §5.4.2.11)
                        return ua.ExpandedNodeId(text, 0, ua.NodeIdType.String)
                    server = sidx
                rest = rest[m.end() :]
        m = _NS.match(rest)
        if m is not None:
            if m.group("ns") is not None:
                ns = _ns_index(m.group("ns"))
            else:
                uri = _unescape_uri(m.group("uri"))
                idx = self.namespaces.index(uri)
                if idx is not None:
                    ns = idx
                elif expanded:
                    ns_uri = uri
                else:  # second abnormal state (Part 6 §5.4.2.10)
                    return ua.NodeId(text, 0, ua.NodeIdType.String)
            rest = rest[m.end() :]
        identifier, kind = _parse_identifier(rest)
        if expanded:
            return ua.ExpandedNodeId(identifier, ns, kind, NamespaceUri=ns_uri, ServerIndex=server)
        return ua.NodeId(identifier, ns, kind)

    def _node_id_from_object(self, x: dict[str, Any], *, expanded: bool) -> ua.NodeId:
        id_type = x.get("IdType", 0)
        if id_type not in (0, 1, 2, 3):
            raise DecodeError("IdType", f"expected 0..3, got {id_type!r}")
        ident = x.get("Id")
        value: Any
        try:
            if id_type == 0:
                value, kind = decode_int(ident, VT.UInt32), ua.NodeIdType.Numeric
            elif id_type == 1:
                value, kind = expect_str(ident, "Id"), ua.NodeIdType.String
            elif id_type == 2:
                value, kind = decode_guid(expect_str(ident, "Id")), ua.NodeIdType.Guid
            else:
                value, kind = decode_bytes(ident) or b"", ua.NodeIdType.ByteString
        except DecodeError as e:
            raise e.within("Id") from None
        ns_member = x.get("Namespace", 0) or 0
        ns_uri: str | None = None
        ns = 0
        if isinstance(ns_member, str):
            idx = self.namespaces.index(ns_member)
            if idx is not None:
                ns = idx
            elif expanded:
                ns_uri = ns_member
            else:
                raise DecodeError("Namespace", f"namespace {ns_member!r} is not in the table")
        else:
            ns = decode_int(ns_member, VT.UInt16, "Namespace")
        if not expanded:
            return ua.NodeId(value, ns, kind)
        srv = x.get("ServerUri", 0) or 0
        if isinstance(srv, str):
            sidx = self.server_uris.index(srv)
            if sidx is None:
                raise DecodeError("ServerUri", f"server {srv!r} is not in the server table")
            srv = sidx
        server = decode_int(srv, VT.UInt32, "ServerUri")
        return ua.ExpandedNodeId(value, ns, kind, NamespaceUri=ns_uri, ServerIndex=server)


def _identifier(node_id: ua.NodeId) -> tuple[int, Any]:
    """(IdType as 1.04 writes it, identifier as JSON)."""
    kind = node_id.NodeIdType
    ident = node_id.Identifier
    if kind in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        return 0, int(ident)
    if kind is ua.NodeIdType.String:
        return 1, ident
    if kind is ua.NodeIdType.Guid:
        return 2, enc_guid(ident)
    return 3, enc_bytes(ident if isinstance(ident, bytes) else str(ident).encode())


def _identifier_string(node_id: ua.NodeId) -> str:
    kind, ident = _identifier(node_id)
    return ("i=", "s=", "g=", "b=")[kind] + str(ident)


def _parse_identifier(text: str) -> tuple[Any, ua.NodeIdType]:
    if len(text) < 2 or text[1] != "=":
        raise DecodeError("", f"{text!r} has no identifier (i=, s=, g= or b=)")
    kind, body = text[0], text[2:]
    if kind == "i":
        if not body.isdigit() or not body.isascii():
            raise DecodeError("", f"numeric identifier {body!r} is not a number")
        if len(body) > 20:
            raise DecodeError("", f"numeric identifier {body[:20]}… exceeds UInt32")
        value = int(body)
        if value > 2**32 - 1:
            raise DecodeError("", f"numeric identifier {value} exceeds UInt32")
        return value, ua.NodeIdType.Numeric
    if kind == "s":
        return body, ua.NodeIdType.String
    if kind == "g":
        return decode_guid(body), ua.NodeIdType.Guid
    if kind == "b":
        return decode_bytes(body) or b"", ua.NodeIdType.ByteString
    raise DecodeError("", f"unknown identifier type {kind!r}")


def _ns_index(text: str, what: str = "ns", hi: int = 2**16 - 1) -> int:
    if len(text) > 20:  # also keeps int() below Python's digit limit
        raise DecodeError("", f"{what}={text[:20]}… is out of range")
    value = int(text)
    if value > hi:
        raise DecodeError("", f"{what}={value} is out of range")
    return value


def _escape_uri(uri: str) -> str:
    """Percent-encode the characters that would break the NodeId grammar (Part 6 §5.1.12)."""
    return uri.replace("%", "%25").replace(";", "%3B")


def _unescape_uri(text: str) -> str:
    return urllib.parse.unquote(text)  # RFC 3986 percent-encoding of UTF-8 octets (§5.1.12)


_NSU: Final = re.compile(r"nsu=([^;]*);")


@lru_cache(maxsize=64)
def _codec(uri: str | None) -> NodeIdCodec:
    return NodeIdCodec(namespaces=[OPC_UA_NAMESPACE] if uri is None else [OPC_UA_NAMESPACE, uri])


def canonical_node_id(text: str) -> str:
    """The 1.05 string form of a NodeId, normalised so that equal NodeIds compare equal
    (``nsu=`` URIs escaped one way, Guids lower case). Raises ValueError with the reason."""
    m = _NSU.match(text)
    uri = urllib.parse.unquote(m.group(1)) if m else None
    if m and not uri:
        raise ValueError("the namespace URI after nsu= is empty")
    codec = _codec(uri)
    try:
        node = codec.decode_node_id(text)
    except DecodeError as e:
        raise ValueError(e.reason) from None
    if node.Identifier in (0, "", b"", None) or (
        node.NodeIdType.name == "Guid" and node.Identifier == uuid.UUID(int=0)
    ):
        raise ValueError("the null NodeId names no node")
    out = codec.encode_node_id(node)
    return out if isinstance(out, str) else text

"""OPC UA client side: secure connections with clear failures, and a batched address-space browse.

Connecting (``connect``) asks the server for its endpoints over an unsecured channel first, so
that every failure can be named before any secret leaves the process: nothing listening, the
security policy not offered (with the list of what is), the server's certificate not in our trust
folder (unless trusting on first contact was asked for, which is logged loudly), no identity
token for the user, or a password that would travel readable. Failures of the session itself are
told apart by status code: our certificate refused by the server, the user refused, timeouts.
All of them arrive as one :class:`OpcUaConnectionError` with a one-line message and a hint.

Browsing (``browse_endpoint`` / ``browse_client``) walks hierarchical references breadth first,
many nodes per Browse/Read request within the server's OperationLimits, several requests in
flight, each node once. asyncua pitfalls this module is shaped by (asyncua 2.1):

* ``Node.get_children``/``read_*`` send one request per node: this module builds Browse and Read
  requests itself and sends them through ``client.uaclient``;
* ``ua.BrowseParameters()`` puts *now* into ``View.Timestamp``; servers may refuse a view at a
  time they do not keep: the timestamp is set to the null DateTime (1601);
* ``set_security`` decides between PEM and DER by the file suffix (``.pem`` only): our files
  are loaded here and handed over as DER bytes;
* the protocol logger writes every request at DEBUG, the ActivateSession request with the
  user's password in it: a logging filter drops that record;
* the client's supervisor probes the server every ``watchdog_intervall`` (1 s) and, with a
  timeout of the same 1 s, marks the connection lost when a probe waits behind large requests:
  every later request then fails with "client is disconnected". The interval is set to the
  request timeout, and batches are capped at 1,000 operations so requests stay short;
* the asyncua *server* implements neither continuation points nor BrowseNext (it returns all
  references at once): the BrowseNext path is tested against a fake server in the unit tests.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import shlex
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlparse

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography.hazmat.primitives.serialization import Encoding

from opcua_mqtt.adapters.opcua_certs import (
    CertificateError,
    ClientCredentials,
    TrustList,
    client_application_uri,
    load_or_create_client_credentials,
    server_certificate_problem,
    subject_name,
    thumbprint,
)
from opcua_mqtt.adapters.opcua_decoding import checked, undecodable_reason
from opcua_mqtt.core.address_space import BrowsedNode, BrowseResult, NodeClass
from opcua_mqtt.core.errors import EncodeError
from opcua_mqtt.core.globs import glob_regex
from opcua_mqtt.core.uajson.codec import JsonCodec
from opcua_mqtt.core.uajson.node_ids import NamespaceTable

__all__ = [
    "SECURITY_MODES",
    "SECURITY_POLICIES",
    "BrowseError",
    "BrowseStats",
    "ConnectionOptions",
    "OpcUaConnectionError",
    "browse_client",
    "browse_endpoint",
    "builtin_types",
    "connect",
    "filter_nodes",
    "normalise_endpoint",
]

_log = logging.getLogger(__name__)

SECURITY_POLICIES: Final[dict[str, Any]] = {
    "None": None,
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
SECURITY_MODES: Final[dict[str, ua.MessageSecurityMode]] = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_POLICY_NAMES: Final = {
    (cls.URI if cls is not None else security_policies.SecurityPolicyNone.URI): name
    for name, cls in SECURITY_POLICIES.items()
}
DEFAULT_PORT: Final = 4840
# Asked for (servers revise it); keep-alive probes hold the session open while we are connected.
SESSION_TIMEOUT_MS: Final = 120_000
# Batch sizes when the server states no OperationLimits, and our own ceiling when it states
# larger ones: on the asyncua server (limits 10,000) 1,000 per request with 3 in flight browsed
# 10k variables fastest, and keeps each request short enough not to starve keep-alive probes.
DEFAULT_NODES_PER_BROWSE: Final = 500
DEFAULT_NODES_PER_READ: Final = 1000
MAX_NODES_PER_BROWSE: Final = 1000
MAX_NODES_PER_READ: Final = 1000
# Requests in flight at once during browse: the server works on one while we decode another.
DEFAULT_CONCURRENCY: Final = 3

_CERT_REJECTED: Final = frozenset(
    {
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateUseNotAllowed,
        ua.StatusCodes.BadCertificateTimeInvalid,
        ua.StatusCodes.BadCertificateRevoked,
        ua.StatusCodes.BadCertificateRevocationUnknown,
        ua.StatusCodes.BadCertificateIssuerRevocationUnknown,
        ua.StatusCodes.BadCertificateChainIncomplete,
        ua.StatusCodes.BadCertificatePolicyCheckFailed,
        ua.StatusCodes.BadCertificateHostNameInvalid,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadNoValidCertificates,
    }
)
_USER_REJECTED: Final = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadUserSignatureInvalid,
    }
)
_POLICY_REJECTED: Final = frozenset(
    {
        ua.StatusCodes.BadSecurityPolicyRejected,
        ua.StatusCodes.BadSecurityModeRejected,
        ua.StatusCodes.BadSecurityModeInsufficient,
    }
)
_CONNECTION_LOST: Final = frozenset(
    {
        ua.StatusCodes.BadConnectionClosed,
        ua.StatusCodes.BadSecureChannelClosed,
        ua.StatusCodes.BadSessionClosed,
        ua.StatusCodes.BadSessionIdInvalid,
        ua.StatusCodes.BadServerHalted,
        ua.StatusCodes.BadCommunicationError,
        ua.StatusCodes.BadTimeout,
        ua.StatusCodes.BadRequestTimeout,
    }
)


class OpcUaConnectionError(Exception):
    """Connecting to (or staying connected to) an OPC UA server failed.

    ``message`` is one line saying what went wrong; ``hint`` one line saying what to do.
    ``kind`` names the failure for programs: ``unreachable``, ``timeout``, ``policy``,
    ``server-untrusted``, ``client-rejected``, ``auth``, ``certificate``, ``lost``, ``protocol``.
    """

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "protocol") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class ConnectionOptions:
    """How to reach and authenticate to one OPC UA server.

    ``certificate``/``private_key`` are this client's application instance certificate and key
    (made on first use when both are absent; only needed with a security policy).
    ``trust_dir`` holds the server certificates (or their CAs) we trust; with
    ``trust_server_cert`` an unknown server certificate is saved there on first contact.
    """

    endpoint: str
    security_policy: str = "None"
    security_mode: str = "None"
    certificate: Path = Path("certs/opcua-client.pem")
    private_key: Path = Path("certs/opcua-client.key")
    trust_dir: Path | None = Path("certs/trusted-servers")
    trust_server_cert: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    # Keep the session alive across server restarts (asyncua re-creates subscriptions): the
    # bridge wants this, one-shot commands such as browse do not.
    auto_reconnect: bool = False

    def __post_init__(self) -> None:
        if self.security_policy not in SECURITY_POLICIES:
            raise ValueError(
                f"unknown security policy {self.security_policy!r} "
                f"(one of {', '.join(SECURITY_POLICIES)})"
            )
        if self.security_mode not in SECURITY_MODES:
            raise ValueError(
                f"unknown security mode {self.security_mode!r} (one of {', '.join(SECURITY_MODES)})"
            )
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                f"security policy {self.security_policy} with mode {self.security_mode}: policy "
                "None goes with mode None, and a policy other than None needs Sign or "
                "SignAndEncrypt"
            )
        if self.timeout <= 0:
            raise ValueError("the timeout must be positive")
        normalise_endpoint(self.endpoint)  # raises ValueError on a malformed endpoint


# --------------------------------------------------------------------------------- connecting


class _RedactActivateSession(logging.Filter):
    """Drop asyncua's DEBUG dump of the ActivateSession request (it holds the password)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            return not isinstance(args[0], ua.ActivateSessionRequest)
        return True


_REDACTOR = _RedactActivateSession()
for _name in ("asyncua.client.ua_client.UASocketProtocol", "asyncua.client.ua_client.UaClient"):
    logging.getLogger(_name).addFilter(_REDACTOR)


def normalise_endpoint(endpoint: str) -> str:
    """``host``, ``host:port`` or ``opc.tcp://host[:port][/path]`` -> a full opc.tcp URL.

    Anything else is a ValueError, in particular a mistyped scheme (``opc.tcp//host``,
    ``opc.tcp:/host``): taken for a host name it would become ``opc.tcp://opc.tcp:4840//host``
    and fail later as an unknown host."""
    text = endpoint.strip()
    if "://" not in text:
        if text.lower().startswith("opc.tcp") or "/" in text:
            raise ValueError(
                f"{endpoint!r} is not an endpoint URL: expected opc.tcp://host[:port][/path]"
            )
        text = "opc.tcp://" + text
    url = urlparse(text)
    if url.scheme != "opc.tcp":
        raise ValueError(f"{endpoint!r}: only opc.tcp:// endpoints are supported")
    if not url.hostname:
        raise ValueError(f"{endpoint!r}: the endpoint names no host")
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"{endpoint!r}: the port must be a number 1..65535") from None
    if port is None:
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        text = url._replace(netloc=f"{host}:{DEFAULT_PORT}").geturl()
    return text


def _status_name(code: int) -> str:
    return str(ua.StatusCode(code).name)


def _describe_endpoints(endpoints: Sequence[Any]) -> str:
    offered = []
    for ep in endpoints:
        policy = _POLICY_NAMES.get(ep.SecurityPolicyUri, str(ep.SecurityPolicyUri).rsplit("#")[-1])
        mode = ep.SecurityMode.name.rstrip("_")
        text = "None" if policy == "None" else f"{policy}/{mode}"
        if text not in offered:
            offered.append(text)
    return ", ".join(offered) if offered else "nothing"


def _token_types(endpoint: Any) -> list[str]:
    return [t.TokenType.name for t in (endpoint.UserIdentityTokens or [])]


def _unreachable(url: str, exc: BaseException, timeout: float) -> OpcUaConnectionError:
    if isinstance(exc, TimeoutError):
        return OpcUaConnectionError(
            f"no answer from {url} within {timeout:g} s",
            "is the host right and the port open? A firewall may be dropping the packets",
            kind="timeout",
        )
    if isinstance(exc, ConnectionRefusedError):
        return OpcUaConnectionError(
            f"cannot reach {url}: connection refused",
            "is the server running and the endpoint right?",
            kind="unreachable",
        )
    if isinstance(exc, socket.gaierror):
        host = urlparse(url).hostname
        return OpcUaConnectionError(
            f"cannot reach {url}: the host name {host!r} does not resolve",
            "check the spelling of the host in the endpoint",
            kind="unreachable",
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return OpcUaConnectionError(
            f"cannot reach {url}: {reason}",
            "is the server running and the endpoint right?",
            kind="unreachable",
        )
    if isinstance(exc, UaStatusCodeError):
        return OpcUaConnectionError(
            f"{url} refused the connection: {_status_name(exc.code)}",
            "check the endpoint URL the server advertises",
            kind="unreachable",
        )
    return OpcUaConnectionError(
        f"{url} did not answer as an OPC UA server: {exc or type(exc).__name__}",
        "is this the OPC UA port (opc.tcp, usually 4840) of the server?",
        kind="protocol",
    )


def _session_error(
    url: str, exc: BaseException, options: ConnectionOptions, creds: ClientCredentials | None
) -> OpcUaConnectionError:
    """Name a failure of OpenSecureChannel / CreateSession / ActivateSession."""
    code = exc.code if isinstance(exc, UaStatusCodeError) else None
    if code in _CERT_REJECTED and creds is not None:
        return OpcUaConnectionError(
            f"{url} rejected our client certificate ({_status_name(code or 0)})",
            f"make the server trust {creds.certificate_path} (thumbprint "
            f"{thumbprint(creds.certificate)}): copy it into the server's trusted certificates",
            kind="client-rejected",
        )
    if code in _USER_REJECTED:
        who = f"user {options.username!r}" if options.username else "anonymous access"
        hint = (
            "check the user name and password"
            if options.username
            else "give a user name (--username) and its password"
        )
        return OpcUaConnectionError(
            f"the server refused {who} ({_status_name(code or 0)})", hint, kind="auth"
        )
    if code in _POLICY_REJECTED:
        return OpcUaConnectionError(
            f"{url} rejected security policy {options.security_policy}/{options.security_mode} "
            f"({_status_name(code or 0)})",
            "choose a policy and mode the server offers",
            kind="policy",
        )
    if isinstance(exc, TimeoutError):
        return OpcUaConnectionError(
            f"{url} did not answer within {options.timeout:g} s while opening the session",
            "raise --timeout, or check the server's load",
            kind="timeout",
        )
    if isinstance(exc, ConnectionError | OSError) or code in _CONNECTION_LOST:
        hint = "check the server's log for why it dropped the connection"
        if creds is not None:
            hint = (
                f"servers often hang up on a client certificate they do not trust: make the "
                f"server trust {creds.certificate_path}"
            )
        return OpcUaConnectionError(
            f"{url} closed the connection while the session was being opened", hint, kind="lost"
        )
    if code is not None:
        return OpcUaConnectionError(
            f"{url} refused the session: {_status_name(code)}",
            "check the server's log for the reason",
            kind="protocol",
        )
    return OpcUaConnectionError(
        f"opening a session on {url} failed: {exc or type(exc).__name__}",
        "check the server's log for the reason",
        kind="protocol",
    )


def _check_server_certificate(
    url: str, endpoint: ua.EndpointDescription, options: ConnectionOptions
) -> None:
    """Refuse a server certificate that is outside its validity period, names another
    application, or is not in the trust folder (an unknown one is saved there, if asked)."""
    cert_der = endpoint.ServerCertificate
    if not cert_der:
        raise OpcUaConnectionError(
            f"{url} offers no certificate for {options.security_policy}",
            "the server's endpoint configuration is incomplete",
            kind="server-untrusted",
        )
    cert = uacrypto.x509_from_der(cert_der)
    server = endpoint.Server
    problem = server_certificate_problem(
        cert, server.ApplicationUri if server is not None else None, datetime.now(UTC)
    )
    if problem is not None:
        raise OpcUaConnectionError(
            f"the server certificate of {url} ({subject_name(cert)}, thumbprint "
            f"{thumbprint(cert)}) cannot be used: {problem}",
            "the server needs a current certificate issued for its own ApplicationUri; "
            "trusting it does not help",
            kind="server-untrusted",
        )
    trust = TrustList(options.trust_dir)
    if trust.is_trusted(cert):
        return
    print_ = thumbprint(cert)
    if options.trust_server_cert and options.trust_dir is not None:
        path = trust.add(cert)
        _log.warning(
            "TRUSTING SERVER CERTIFICATE %s (%s) of %s ON FIRST CONTACT; saved to %s. Check the "
            "thumbprint with the server's administrator.",
            print_,
            subject_name(cert),
            url,
            path,
        )
        return
    where = f"the trust dir {options.trust_dir}" if options.trust_dir else "a trust dir"
    # A command that exists whoever asks (`run` has no --trust-server-cert: its trust dir is
    # in the configuration, and this saves the certificate there).
    trust_dir = shlex.quote(str(options.trust_dir)) if options.trust_dir else "DIR"
    raise OpcUaConnectionError(
        f"the server certificate of {url} ({subject_name(cert)}, thumbprint {print_}) is not "
        "trusted",
        f"put it into {where}, or trust it on first contact with: opcua-mqtt browse "
        f"{shlex.quote(url)} --trust-dir {trust_dir} --trust-server-cert --depth 1",
        kind="server-untrusted",
    )


def _load_credentials(options: ConnectionOptions) -> ClientCredentials:
    try:
        return load_or_create_client_credentials(options.certificate, options.private_key)
    except (CertificateError, OSError) as e:
        raise OpcUaConnectionError(
            f"our client certificate cannot be used: {e}",
            "check --certificate and --private-key",
            kind="certificate",
        ) from None


async def _open(options: ConnectionOptions) -> Client:
    try:
        url = normalise_endpoint(options.endpoint)
    except ValueError as e:
        raise OpcUaConnectionError(
            str(e), "write it as opc.tcp://host:port", kind="unreachable"
        ) from None
    # asyncua's supervisor probes the server every `watchdog_intervall` seconds and declares the
    # connection lost when a probe takes longer than that (1 s by default): a server busy with
    # our large batches would be dropped. Give the probe the request timeout.
    client = Client(url, timeout=options.timeout, watchdog_intervall=max(1.0, options.timeout))
    client.session_timeout = SESSION_TIMEOUT_MS
    client.name = "opcua-mqtt"
    client.description = "opcua-mqtt"
    client.product_uri = "urn:opcua-mqtt"
    client.application_uri = client_application_uri()

    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except Exception as e:  # noqa: BLE001 - every failure here is told as "cannot reach"
        raise _unreachable(url, e, options.timeout) from None

    policy_cls = SECURITY_POLICIES[options.security_policy]
    policy_uri = (policy_cls or security_policies.SecurityPolicyNone).URI
    mode = SECURITY_MODES[options.security_mode]
    chosen = next(
        (
            ep
            for ep in endpoints
            if ep.SecurityPolicyUri == policy_uri
            and ep.SecurityMode == mode
            and str(ep.EndpointUrl or "").startswith("opc.tcp")
        ),
        None,
    )
    if chosen is None:
        wanted = (
            "None" if policy_cls is None else f"{options.security_policy}/{options.security_mode}"
        )
        raise OpcUaConnectionError(
            f"{url} does not offer security {wanted}; it offers {_describe_endpoints(endpoints)}",
            "choose one of those with --security-policy and --security-mode",
            kind="policy",
        )

    token_types = _token_types(chosen)
    user_token: Any = None
    if options.username:
        user_token = next(
            (
                t
                for t in chosen.UserIdentityTokens or []
                if t.TokenType == ua.UserTokenType.UserName
            ),
            None,
        )
        if user_token is None:
            raise OpcUaConnectionError(
                f"{url} does not accept user names on this endpoint (it accepts: "
                f"{', '.join(token_types) or 'nothing'})",
                "connect without --username, or choose another security policy",
                kind="auth",
            )
    elif token_types and "Anonymous" not in token_types:
        raise OpcUaConnectionError(
            f"{url} does not accept anonymous sessions (it accepts: {', '.join(token_types)})",
            "give a user name (--username) and its password",
            kind="auth",
        )

    token_encrypted = False
    if user_token is not None and options.password is not None:
        token_policy = user_token.SecurityPolicyUri or policy_uri
        token_encrypted = token_policy != security_policies.SecurityPolicyNone.URI
        if not token_encrypted and mode != ua.MessageSecurityMode.SignAndEncrypt:
            raise OpcUaConnectionError(
                f"{url} would receive the password of user {options.username!r} unencrypted",
                "use --security-policy Basic256Sha256 --security-mode SignAndEncrypt",
                kind="policy",
            )

    creds: ClientCredentials | None = None
    if policy_cls is not None or token_encrypted:
        _check_server_certificate(url, chosen, options)
    if policy_cls is not None:
        creds = _load_credentials(options)
        client.application_uri = creds.application_uri or client.application_uri
        await client.set_security(
            policy_cls,
            uacrypto.CertProperties(creds.certificate_der(), extension="der"),
            uacrypto.CertProperties(creds.private_key_der(), extension="der"),
            server_certificate=uacrypto.CertProperties(
                _first_certificate(chosen.ServerCertificate), extension="der"
            ),
            mode=mode,
            certificate_chain=[
                uacrypto.CertProperties(c.public_bytes(Encoding.DER), extension="der")
                for c in creds.chain
            ],
        )
    elif policy_cls is None:
        _log.info("connecting to %s without security (policy None)", url)
    if options.username:
        client.set_user(options.username)
    if options.password is not None:
        client.set_password(options.password)

    try:
        await client.connect(auto_reconnect=options.auto_reconnect)
    except Exception as e:  # noqa: BLE001 - translated into one OpcUaConnectionError
        # asyncua has closed the session, the channel and the socket already.
        raise _session_error(url, e, options, creds) from None
    return client


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may hold a chain (long-form length)."""
    if len(der) < 4 or der[0] != 0x30:
        return der
    first = der[1]
    if first < 0x80:
        return der[: 2 + first]
    n = first & 0x7F
    length = int.from_bytes(der[2 : 2 + n], "big")
    return der[: 2 + n + length]


@contextlib.asynccontextmanager
async def connect(options: ConnectionOptions) -> AsyncIterator[Client]:
    """Connect and activate a session; yield the asyncua Client; close the session after.

    Any failure to connect, and a connection lost or timing out inside the block, raises
    :class:`OpcUaConnectionError`.
    """
    client = await _open(options)
    url = normalise_endpoint(options.endpoint)
    try:
        yield client
    except TimeoutError as e:
        raise OpcUaConnectionError(
            f"{url} did not answer within {options.timeout:g} s",
            "raise --timeout, or check the server's load",
            kind="timeout",
        ) from e
    except (ConnectionError, OSError) as e:
        raise OpcUaConnectionError(
            f"lost the connection to {url}: {e or type(e).__name__}",
            "check that the server is still running",
            kind="lost",
        ) from e
    except UaStatusCodeError as e:
        if e.code in _CONNECTION_LOST:
            raise OpcUaConnectionError(
                f"lost the session on {url}: {_status_name(e.code)}",
                "check that the server is still running",
                kind="lost",
            ) from e
        raise
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), options.timeout)
        except Exception as e:  # noqa: BLE001 - the session is gone either way
            _log.debug("disconnect from %s: %s", url, e)


# ------------------------------------------------------------------------------------ browsing


@dataclass
class BrowseStats:
    """What a browse cost: service calls, operations, time; and the limits it worked within."""

    browse_requests: int = 0
    browse_next_requests: int = 0
    read_requests: int = 0
    browse_operations: int = 0
    read_operations: int = 0
    server_max_nodes_per_browse: int = 0  # the server's OperationLimits; 0 = not stated
    server_max_nodes_per_read: int = 0
    browse_batch: int = 0  # what was used
    read_batch: int = 0
    seconds: float = 0.0


Progress = Callable[[int, int], None]

_CURRENT_READ: Final = 0x01
_CURRENT_WRITE: Final = 0x02
_NODE_CLASSES: Final = {
    ua.NodeClass.Object: NodeClass.OBJECT,
    ua.NodeClass.Variable: NodeClass.VARIABLE,
    ua.NodeClass.Method: NodeClass.METHOD,
    ua.NodeClass.ObjectType: NodeClass.OBJECT_TYPE,
    ua.NodeClass.VariableType: NodeClass.VARIABLE_TYPE,
    ua.NodeClass.ReferenceType: NodeClass.REFERENCE_TYPE,
    ua.NodeClass.DataType: NodeClass.DATA_TYPE,
    ua.NodeClass.View: NodeClass.VIEW,
}
_A = ua.AttributeIds
_VARIABLE_ATTRIBUTES: Final = (
    _A.Description,
    _A.DataType,
    _A.ValueRank,
    _A.ArrayDimensions,
    _A.AccessLevel,
    _A.UserAccessLevel,
)
# Attributes whose refusal leaves the node usable: ArrayDimensions is optional (OPC 10000-3),
# UserAccessLevel falls back to AccessLevel, a Bad value is a value. Any other refusal (and a
# Description refused other than as absent) records the node with `error`.
_OPTIONAL: Final = frozenset({_A.ArrayDimensions, _A.UserAccessLevel, _A.Value})
_BUILTIN_NAMES: Final = {
    i: str(ua.ObjectIdNames[i]) for i in range(1, 30)
}  # Boolean..DiagnosticInfo, Number, Integer, UInteger, Enumeration
_ABSTRACT_TO_BUILTIN: Final = {22: 22, 24: 24, 26: 24, 27: 24, 28: 24, 29: 6}


@dataclass(slots=True)
class _Found:
    """A node met during the walk, before its attributes are known."""

    node_id: ua.NodeId
    node_class: ua.NodeClass
    browse_name: str
    display_name: str
    path: tuple[str, ...]
    parent: ua.NodeId | None
    depth: int
    attributes: dict[int, ua.DataValue] = field(default_factory=dict)
    error: str | None = None
    children: list[ua.NodeId] = field(default_factory=list)


#: Service results saying a request was too large for the server: it goes again in halves.
_TOO_LARGE: Final = frozenset(
    {
        ua.StatusCodes.BadTooManyOperations,
        ua.StatusCodes.BadResponseTooLarge,
        ua.StatusCodes.BadEncodingLimitsExceeded,
    }
)


@dataclass
class _Batch:
    """How many operations a request of one service carries; it shrinks when one is refused."""

    service: str  # "Read", "Browse": for the log
    unit: str  # what an operation is: "items", "nodes"
    size: int


class _Limits:
    def __init__(self) -> None:
        self.browse = _Batch("Browse", "nodes", DEFAULT_NODES_PER_BROWSE)
        self.read = _Batch("Read", "items", DEFAULT_NODES_PER_READ)
        self.continuation_points = 0


def _null_view() -> ua.ViewDescription:
    view = ua.ViewDescription()
    view.Timestamp = ua.get_win_epoch()
    return view


def _descriptions(
    nodes: Iterable[ua.NodeId],
    direction: ua.BrowseDirection,
    reference_type: int,
    *,
    subtypes: bool,
) -> list[ua.BrowseDescription]:
    """What to browse of each of ``nodes``: its references of one type (with ``subtypes``, of
    its subtypes too) in one direction, to nodes of any class, every result field."""
    return [
        ua.BrowseDescription(
            NodeId=n,
            BrowseDirection=direction,
            ReferenceTypeId=ua.NodeId(reference_type),
            IncludeSubtypes=subtypes,
            NodeClassMask=0,
            ResultMask=ua.BrowseResultMask.All,
        )
        for n in nodes
    ]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_T = TypeVar("_T")
_R = TypeVar("_R")
_Send = Callable[[Sequence[_T]], Awaitable[list[_R]]]


class _Walker:
    """Batched Browse/BrowseNext/Read on one session, with a bound on requests in flight."""

    def __init__(self, client: Client, stats: BrowseStats, concurrency: int) -> None:
        self.uaclient = client.uaclient
        self.stats = stats
        self.slots = asyncio.Semaphore(concurrency)
        self.limits = _Limits()

    async def _send(
        self, service: str, call: Callable[[Any], Awaitable[list[Any]]], params: Any, count: int
    ) -> list[Any]:
        """One request, in a free slot; its answer must hold a result per operation."""
        async with self.slots:
            results: list[Any] = await call(params)
        if len(results) != count:
            raise ua.UaError(f"{service} answered {len(results)} results for {count}")
        return results

    async def _batched(
        self,
        batch: _Batch,
        items: Sequence[_T],
        send: _Send[_T, _R],
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> list[_R]:
        """``send`` ``items`` in chunks of the batch size, several in flight; results in order.

        ``on_chunk(first, count)`` is told of each chunk done.
        """
        size = batch.size

        async def one(start: int) -> list[_R]:
            chunk = items[start : start + size]
            result = await send(chunk)
            if on_chunk is not None:
                on_chunk(start, len(chunk))
            return result

        parts = await asyncio.gather(*(one(s) for s in range(0, len(items), size)))
        return [r for part in parts for r in part]

    async def _halves(
        self,
        batch: _Batch,
        items: Sequence[_T],
        refusal: UaStatusCodeError,
        send: _Send[_T, _R],
    ) -> list[_R]:
        """After the server refused ``items`` in one request: ``send`` them in two halves if it
        found the request too large (later batches no larger than a half), else re-raise."""
        if refusal.code not in _TOO_LARGE or len(items) < 2:
            raise refusal
        half = len(items) // 2
        batch.size = max(1, min(batch.size, half))
        _log.info(
            "%s of %d %s refused (%s): halving", batch.service, len(items), batch.unit, refusal
        )
        first = await send(items[:half])
        return first + await send(items[half:])

    # ----------------------------------------------------------------- Read
    async def read(
        self,
        items: Sequence[ua.ReadValueId],
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> list[ua.DataValue]:
        """Read ``items`` in chunks of MaxNodesPerRead, several in flight; results in order."""
        return await self._batched(self.limits.read, items, self._read_split, on_chunk)

    async def _read_split(self, items: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        self.stats.read_requests += 1
        self.stats.read_operations += len(items)
        params = ua.ReadParameters(
            MaxAge=0, TimestampsToReturn=ua.TimestampsToReturn.Neither, NodesToRead=list(items)
        )
        try:
            results = await self._send("Read", self.uaclient.read, params, len(items))
        except UaStatusCodeError as e:
            return await self._halves(self.limits.read, items, e, self._read_split)
        return [_decoded(item, dv) for item, dv in zip(items, results, strict=True)]

    # ---------------------------------------------------------------- Browse
    async def browse(
        self, descriptions: Sequence[ua.BrowseDescription]
    ) -> list[tuple[list[Any], int]]:
        """Browse ``descriptions`` in chunks within the limits, several chunks in flight."""
        # Full batches even when the server states few MaxBrowseContinuationPoints: with
        # RequestedMaxReferencesPerNode 0 servers hand out continuation points only for nodes
        # with very many references, and running out is repaired below.
        results = await self._batched(self.limits.browse, descriptions, self._browse_chunk)
        # Nodes the server had no continuation point for: again, in batches no larger than its
        # supply, one batch at a time (each batch's points are used up before the next).
        for _attempt in range(8):
            retry = [
                i
                for i, (_, status) in enumerate(results)
                if status == ua.StatusCodes.BadNoContinuationPoints
            ]
            if not retry:
                break
            step = max(1, (self.limits.continuation_points or 1))
            for chunk in _chunks(retry, step):
                again = await self._browse_chunk([descriptions[i] for i in chunk])
                for i, result in zip(chunk, again, strict=True):
                    results[i] = result
        return results

    async def _browse_chunk(
        self, descriptions: Sequence[ua.BrowseDescription]
    ) -> list[tuple[list[Any], int]]:
        """One Browse request (halved if too large), then BrowseNext while points are left."""
        self.stats.browse_requests += 1
        self.stats.browse_operations += len(descriptions)
        params = ua.BrowseParameters(
            View=_null_view(), RequestedMaxReferencesPerNode=0, NodesToBrowse=list(descriptions)
        )
        try:
            results = await self._send("Browse", self.uaclient.browse, params, len(descriptions))
        except UaStatusCodeError as e:
            return await self._halves(self.limits.browse, descriptions, e, self._browse_chunk)
        refs: list[list[Any]] = []
        status: list[int] = []
        origin: dict[bytes, int] = {}
        for i, r in enumerate(results):
            refs.append(list(r.References or []))
            status.append(int(r.StatusCode.value))
            if r.ContinuationPoint and r.StatusCode.is_good():
                origin[bytes(r.ContinuationPoint)] = i
        while origin:
            points = list(origin)
            self.stats.browse_next_requests += 1
            more = await self._send(
                "BrowseNext",
                self.uaclient.browse_next,
                ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=points),
                len(points),
            )
            next_origin: dict[bytes, int] = {}
            for point, r in zip(points, more, strict=True):
                i = origin[point]
                refs[i].extend(r.References or [])
                if not r.StatusCode.is_good():
                    status[i] = int(r.StatusCode.value)
                elif r.ContinuationPoint:
                    next_origin[bytes(r.ContinuationPoint)] = i
            origin = next_origin
        return list(zip(refs, status, strict=True))


# ------------------------------------------------------------------------------ browse proper


class BrowseError(ValueError):
    """The browse cannot start: the start node is malformed or not on the server."""


def _decoded(item: ua.ReadValueId, dv: ua.DataValue) -> ua.DataValue:
    """``dv``, or BadDecodingError (logged, naming the node) for a value asyncua could not
    decode (opcua_decoding)."""
    reason = undecodable_reason(dv)
    if reason is None:
        return dv
    _log.warning(
        "%s: value cannot be decoded (%s): BadDecodingError", item.NodeId.to_string(), reason
    )
    return checked(dv)


def _is_good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or bool(dv.StatusCode.is_good())


def _status_of(dv: ua.DataValue) -> int:
    return 0 if dv.StatusCode is None else int(dv.StatusCode.value)


def _is_terminal_type(nid: ua.NodeId) -> bool:
    return nid.NamespaceIndex == 0 and isinstance(nid.Identifier, int) and 1 <= nid.Identifier <= 29


def _terminal_builtin(nid: ua.NodeId) -> int:
    ident = int(nid.Identifier)
    return _ABSTRACT_TO_BUILTIN.get(ident, ident)


def _local(nid: Any, namespaces: NamespaceTable) -> ua.NodeId | None:
    """A reference target as a plain NodeId of this server; None if it lives elsewhere."""
    if getattr(nid, "ServerIndex", 0):
        return None
    ns = nid.NamespaceIndex
    uri = getattr(nid, "NamespaceUri", None)
    if uri:
        index = namespaces.index(uri)
        if index is None:
            return None
        ns = index
    return ua.NodeId(nid.Identifier, ns, nid.NodeIdType)


def _int_value(dv: ua.DataValue, default: int) -> int:
    value = dv.Value.Value if dv.Value is not None else None
    return int(value) if isinstance(value, int) else default


def _text(lt: Any) -> str | None:
    text = getattr(lt, "Text", None)
    return str(text) if text else None


async def _builtin_types(
    walker: _Walker, namespaces: NamespaceTable, type_ids: Iterable[ua.NodeId]
) -> dict[ua.NodeId, int | None]:
    """DataType -> the built-in type behind it (None where its supertypes lead to none): the
    HasSubtype references are browsed upwards for all of them at once, one batch a level."""
    originals = list(dict.fromkeys(type_ids))
    supertype: dict[ua.NodeId, ua.NodeId | None] = {}
    frontier = [n for n in originals if not _is_terminal_type(n)]
    while frontier:
        descriptions = _descriptions(
            frontier, ua.BrowseDirection.Inverse, ua.ObjectIds.HasSubtype, subtypes=False
        )
        following: list[ua.NodeId] = []
        for nid, (refs, _status) in zip(frontier, await walker.browse(descriptions), strict=True):
            parent = next((_local(r.NodeId, namespaces) for r in refs if not r.IsForward), None)
            supertype[nid] = parent
            if (
                parent is not None
                and not _is_terminal_type(parent)
                and parent not in supertype
                and parent not in following
            ):
                following.append(parent)
        frontier = [n for n in following if n not in supertype]

    out: dict[ua.NodeId, int | None] = {}
    for nid in originals:
        builtin: int | None = None
        cursor: ua.NodeId | None = nid
        seen: set[ua.NodeId] = set()
        while cursor is not None and cursor not in seen:
            if _is_terminal_type(cursor):
                builtin = _terminal_builtin(cursor)
                break
            seen.add(cursor)
            cursor = supertype.get(cursor)
        out[nid] = builtin
    return out


async def builtin_types(
    client: Client, type_ids: Iterable[ua.NodeId]
) -> dict[ua.NodeId, int | None]:
    """DataType -> the built-in type behind it, None where its supertypes lead to none; asked
    of a connected client the way browse asks (batched, within the default limits)."""
    walker = _Walker(client, BrowseStats(), DEFAULT_CONCURRENCY)
    return await _builtin_types(walker, NamespaceTable(), type_ids)


class _Browse:
    """One browse run over a connected client."""

    def __init__(
        self,
        client: Client,
        stats: BrowseStats,
        *,
        read_values: bool,
        progress: Progress | None,
        concurrency: int,
    ) -> None:
        self.walker = _Walker(client, stats, concurrency)
        self.stats = stats
        self.read_values = read_values
        self.progress = progress
        self.found: dict[ua.NodeId, _Found] = {}
        self.done = 0
        self.codec = JsonCodec()
        self.namespaces = NamespaceTable()
        self.server_uri: str | None = None

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, len(self.found))

    async def read_server_facts(self) -> None:
        """NamespaceArray, ServerArray and the operation limits, in one Read."""
        ids = ua.ObjectIds
        wanted = [
            ids.Server_NamespaceArray,
            ids.Server_ServerArray,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
            ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            ids.Server_ServerCapabilities_MaxBrowseContinuationPoints,
        ]
        items = [ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=_A.Value) for i in wanted]
        ns, servers, per_browse, per_read, cps = await self.walker.read(items)
        if not _is_good(ns) or not ns.Value or not ns.Value.Value:
            raise BrowseError(f"the server did not give its NamespaceArray ({ns.StatusCode})")
        self.namespaces = NamespaceTable([str(u) for u in ns.Value.Value])
        self.codec = JsonCodec(namespaces=self.namespaces)
        if _is_good(servers) and servers.Value and servers.Value.Value:
            self.server_uri = str(servers.Value.Value[0])

        def stated(dv: ua.DataValue) -> int:
            if _is_good(dv) and dv.Value is not None and isinstance(dv.Value.Value, int):
                return int(dv.Value.Value)
            return 0

        limits = self.walker.limits
        self.stats.server_max_nodes_per_browse = stated(per_browse)
        self.stats.server_max_nodes_per_read = stated(per_read)
        limits.browse.size = min(
            stated(per_browse) or DEFAULT_NODES_PER_BROWSE, MAX_NODES_PER_BROWSE
        )
        limits.read.size = min(stated(per_read) or DEFAULT_NODES_PER_READ, MAX_NODES_PER_READ)
        limits.continuation_points = stated(cps)
        self.stats.browse_batch = limits.browse.size
        self.stats.read_batch = limits.read.size

    def parse_start(self, start: str) -> ua.NodeId:
        try:
            nid = self.codec.decode_node_id(start)
        except ValueError as e:
            raise BrowseError(f"start node {start!r}: {e}") from None
        if start.startswith("nsu=") and nid.NamespaceIndex == 0:
            uri = start[4:].split(";", 1)[0]
            if uri != self.namespaces.uri(0):
                raise BrowseError(f"start node {start!r}: the server has no namespace {uri!r}")
        return nid

    async def check_start(self, nid: ua.NodeId, text: str) -> tuple[str, ua.NodeClass]:
        items = [
            ua.ReadValueId(NodeId=nid, AttributeId=_A.BrowseName),
            ua.ReadValueId(NodeId=nid, AttributeId=_A.NodeClass),
        ]
        name, cls = await self.walker.read(items)
        if not _is_good(name):
            raise BrowseError(
                f"start node {text!r} is not in the server's address space "
                f"({_status_name(_status_of(name))})"
            )
        return str(name.Value.Value.Name), ua.NodeClass(cls.Value.Value)

    async def walk(self, start: ua.NodeId, max_depth: int | None) -> list[_Found]:
        root = _Found(start, ua.NodeClass.Unspecified, "", "", (), None, 0)
        level = [root]
        while level:
            to_browse = [n for n in level if max_depth is None or n.depth < max_depth]
            to_read = [n for n in level if n is not root]
            descriptions = _descriptions(
                [n.node_id for n in to_browse],
                ua.BrowseDirection.Forward,
                ua.ObjectIds.HierarchicalReferences,
                subtypes=True,
            )
            browsed, _ = await asyncio.gather(
                self.walker.browse(descriptions), self.read_attributes(to_read)
            )
            next_level: list[_Found] = []
            for parent, (refs, status) in zip(to_browse, browsed, strict=True):
                if status and ua.StatusCode(status).is_bad():
                    if parent is root:
                        raise BrowseError(
                            f"the server refused to browse the start node: {_status_name(status)}"
                        )
                    parent.error = parent.error or f"{_status_name(status)} browsing it"
                    continue
                for ref in refs:
                    nid = _local(ref.NodeId, self.namespaces)
                    if nid is None or nid in self.found or nid == start:
                        continue
                    name = str(ref.BrowseName.Name or "")
                    child = _Found(
                        node_id=nid,
                        node_class=ua.NodeClass(ref.NodeClass),
                        browse_name=name,
                        display_name=_text(ref.DisplayName) or name,
                        path=(*parent.path, name),
                        parent=parent.node_id if parent is not root else start,
                        depth=parent.depth + 1,
                    )
                    self.found[nid] = child
                    parent.children.append(nid)
                    next_level.append(child)
            self._report()
            level = next_level
        # Depth-first order along the first path that found each node: reads like the tree.
        ordered: list[_Found] = []
        stack = list(reversed(root.children))
        while stack:
            node = self.found[stack.pop()]
            ordered.append(node)
            stack.extend(reversed(node.children))
        return ordered

    def _attributes_for(self, node: _Found) -> tuple[int, ...]:
        if node.node_class == ua.NodeClass.Variable:
            return (*_VARIABLE_ATTRIBUTES, _A.Value) if self.read_values else _VARIABLE_ATTRIBUTES
        return (_A.Description,)

    async def read_attributes(self, nodes: Sequence[_Found]) -> None:
        items: list[ua.ReadValueId] = []
        owners: list[tuple[_Found, int]] = []
        ends: list[int] = []
        for node in nodes:
            for attr in self._attributes_for(node):
                items.append(ua.ReadValueId(NodeId=node.node_id, AttributeId=attr))
                owners.append((node, attr))
            ends.append(len(items))
        if not items:
            return

        def on_chunk(first: int, count: int) -> None:
            # nodes whose last attribute is in this chunk are complete (up to reordering)
            self.done += bisect.bisect_left(ends, first + count + 1) - bisect.bisect_left(
                ends, first + 1
            )
            self._report()

        values = await self.walker.read(items, on_chunk)
        for (node, attr), dv in zip(owners, values, strict=True):
            node.attributes[attr] = dv

    async def resolve_data_types(
        self, type_ids: Iterable[ua.NodeId]
    ) -> dict[ua.NodeId, tuple[str, int | None]]:
        """DataType -> (name, built-in type); the names are read while the supertypes are
        browsed."""
        originals = list(dict.fromkeys(type_ids))
        builtins, names = await asyncio.gather(
            _builtin_types(self.walker, self.namespaces, originals), self._type_names(originals)
        )
        return {nid: (names.get(nid, str(nid.Identifier)), builtins[nid]) for nid in originals}

    async def _type_names(self, type_ids: Sequence[ua.NodeId]) -> dict[ua.NodeId, str]:
        """The BrowseNames of DataTypes, read only for those OPC UA does not name itself."""
        names: dict[ua.NodeId, str] = {}
        need_names = []
        for nid in type_ids:
            if nid.NamespaceIndex == 0 and isinstance(nid.Identifier, int):
                known = ua.ObjectIdNames.get(nid.Identifier)
                if known is not None:
                    names[nid] = str(known)
                    continue
            need_names.append(nid)
        items = [ua.ReadValueId(NodeId=n, AttributeId=_A.BrowseName) for n in need_names]
        for nid, dv in zip(need_names, await self.walker.read(items), strict=True):
            if _is_good(dv) and dv.Value is not None:
                names[nid] = str(dv.Value.Value.Name)
        return names

    def build(
        self, found: Sequence[_Found], types: dict[ua.NodeId, tuple[str, int | None]]
    ) -> list[BrowsedNode]:
        encode = self.codec.encode_node_id
        out: list[BrowsedNode] = []
        for f in found:
            attrs = f.attributes
            refused: dict[str, list[str]] = {}
            for attr, dv in attrs.items():
                code = _status_of(dv)
                if not code or not ua.StatusCode(code).is_bad() or attr in _OPTIONAL:
                    continue
                if attr == _A.Description and code == ua.StatusCodes.BadAttributeIdInvalid:
                    continue
                refused.setdefault(_status_name(code), []).append(_A(attr).name)
            errors = [f.error] if f.error else []
            errors += [f"{status} reading {', '.join(names)}" for status, names in refused.items()]
            node_class = _NODE_CLASSES.get(f.node_class)
            if node_class is None:
                node_class = NodeClass.OBJECT
                errors.append(f"unknown node class {f.node_class}")
            description = None
            d = attrs.get(_A.Description)
            if d is not None and _is_good(d) and d.Value is not None:
                description = _text(d.Value.Value)
            kw: dict[str, Any] = {}
            if f.node_class == ua.NodeClass.Variable and not errors:
                kw = self._variable_members(attrs, types)
            out.append(
                BrowsedNode(
                    node_id=encode(f.node_id),
                    node_class=node_class,
                    browse_name=f.browse_name,
                    display_name=f.display_name,
                    browse_path=f.path,
                    parent_node_id=encode(f.parent) if f.parent is not None else None,
                    description=description,
                    error="; ".join(errors) if errors else None,
                    **kw,
                )
            )
        return out

    def _variable_members(
        self, attrs: dict[int, ua.DataValue], types: dict[ua.NodeId, tuple[str, int | None]]
    ) -> dict[str, Any]:
        dt = attrs[_A.DataType].Value.Value
        name, builtin = types.get(dt, (str(dt), None))
        dims_dv = attrs.get(_A.ArrayDimensions)
        dims = None
        if dims_dv is not None and _is_good(dims_dv) and dims_dv.Value is not None:
            raw = dims_dv.Value.Value
            if raw:
                dims = tuple(int(d) for d in raw)
        access = _int_value(attrs[_A.AccessLevel], 0)
        user = attrs.get(_A.UserAccessLevel)
        if (
            user is not None
            and _is_good(user)
            and isinstance(getattr(user.Value, "Value", None), int)
        ):
            access &= int(user.Value.Value)
        members: dict[str, Any] = {
            "data_type": self.codec.encode_node_id(dt),
            "data_type_name": name,
            "builtin_type": builtin,
            "value_rank": _int_value(attrs[_A.ValueRank], -2),
            "array_dimensions": dims,
            "readable": bool(access & _CURRENT_READ),
            "writable": bool(access & _CURRENT_WRITE),
        }
        value = attrs.get(_A.Value)
        if value is not None and _is_good(value) and value.Value is not None:
            try:
                members["value"] = self.codec.encode_variant(value.Value)
            except (EncodeError, ValueError, TypeError, KeyError, AttributeError) as e:
                _log.debug("value of %s not encodable: %s", dt, e)
        return members


def _data_type_matches(node: BrowsedNode, wanted: set[str]) -> bool:
    if node.node_class is not NodeClass.VARIABLE or node.error:
        return False
    candidates = {node.data_type_name, node.data_type}
    if node.builtin_type is not None:
        candidates.add(ua.VariantType(node.builtin_type).name)
    return any(c is not None and c.lower() in wanted for c in candidates)


def filter_nodes(
    nodes: Iterable[BrowsedNode],
    *,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
) -> list[BrowsedNode]:
    """Keep the nodes matching every given filter (node class, browse-path glob, data type)."""
    classes = {NodeClass(c) for c in node_classes} if node_classes else None
    pattern = glob_regex(path_glob) if path_glob else None
    types = {t.lower() for t in data_types} if data_types else None
    out = []
    for node in nodes:
        if classes is not None and node.node_class not in classes:
            continue
        if pattern is not None and not pattern.match(node.path_string()):
            continue
        if types is not None and not _data_type_matches(node, types):
            continue
        out.append(node)
    return out


async def browse_client(
    client: Client,
    endpoint: str,
    start: str = "i=85",
    max_depth: int | None = None,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
    read_values: bool = False,
    progress: Progress | None = None,
    *,
    stats: BrowseStats | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> BrowseResult:
    """Browse an already connected client (see :func:`browse_endpoint`)."""
    began = time.monotonic()
    if path_glob:
        try:
            glob_regex(path_glob)  # a bad pattern fails now, not after the walk
        except ValueError as e:
            raise BrowseError(str(e)) from None
    stats = stats if stats is not None else BrowseStats()
    run = _Browse(
        client, stats, read_values=read_values, progress=progress, concurrency=concurrency
    )
    await run.read_server_facts()
    start_id = run.parse_start(start)
    await run.check_start(start_id, start)
    found = await run.walk(start_id, max_depth)
    type_ids = [
        f.attributes[_A.DataType].Value.Value
        for f in found
        if f.node_class == ua.NodeClass.Variable
        and _A.DataType in f.attributes
        and _is_good(f.attributes[_A.DataType])
        and isinstance(f.attributes[_A.DataType].Value.Value, ua.NodeId)
    ]
    types = await run.resolve_data_types(type_ids)
    nodes = run.build(found, types)
    nodes = filter_nodes(
        nodes, node_classes=node_classes, path_glob=path_glob, data_types=data_types
    )
    stats.browse_batch = run.walker.limits.browse.size  # smaller if the server refused a batch
    stats.read_batch = run.walker.limits.read.size
    stats.seconds = time.monotonic() - began
    return BrowseResult(
        endpoint=endpoint,
        server_uri=run.server_uri,
        namespaces=list(run.namespaces.uris),
        start_node=run.codec.encode_node_id(start_id),
        nodes=nodes,
    )


async def browse_endpoint(
    options: ConnectionOptions,
    start: str = "i=85",
    max_depth: int | None = None,
    node_classes: Iterable[NodeClass | str] | None = None,
    path_glob: str | None = None,
    data_types: Iterable[str] | None = None,
    read_values: bool = False,
    progress: Progress | None = None,
    *,
    stats: BrowseStats | None = None,
) -> BrowseResult:
    """Connect with ``options`` and browse from ``start`` along hierarchical references.

    Each node is visited once (the address space is a graph); ``max_depth`` 1 reports the start
    node's children only. Variables come with their DataType (name and built-in type),
    ValueRank, ArrayDimensions, readable/writable (CurrentRead/CurrentWrite of AccessLevel,
    narrowed by UserAccessLevel) and, with ``read_values``, the current value as Compact JSON.
    Nodes the server refuses to describe are kept with ``error`` set. Filters apply to what is
    reported, not to what is walked. ``progress(done, total_known)`` is called as nodes finish.
    """
    url = normalise_endpoint(options.endpoint)
    async with connect(options) as client:
        try:
            return await browse_client(
                client,
                url,
                start,
                max_depth,
                node_classes,
                path_glob,
                data_types,
                read_values,
                progress,
                stats=stats,
            )
        except UaStatusCodeError as e:
            if e.code in _CONNECTION_LOST:
                raise  # connect() names it
            denied = e.code in _USER_REJECTED
            raise OpcUaConnectionError(
                f"{url} refused a browse request: {_status_name(e.code)}",
                "this user may not browse the address space: ask for the right, or use another "
                "--username"
                if denied
                else "check the server's log for the reason",
                kind="auth" if denied else "protocol",
            ) from e
        except ua.UaError as e:
            raise OpcUaConnectionError(
                f"{url} answered a browse request wrongly: {e}",
                "check the server's log; report it to the server's vendor",
                kind="protocol",
            ) from e

"""Why connecting to an OPC UA server failed, in words an operator can act on: the error type
the adapter raises, and the reading of the exceptions and status codes asyncua gives for a
failed connection attempt (refused, unknown host, timeout) and a failed session (certificate,
user, policy). Whether trying again can help decides what the bridge does next (outage.py)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final
from urllib.parse import urlparse

from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

from opcua_mqtt.adapters.opcua.certs import ClientCredentials, thumbprint
from opcua_mqtt.core.errors import OpcUaMqttError

if TYPE_CHECKING:
    from opcua_mqtt.adapters.opcua.connection import ConnectionOptions

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
USER_REJECTED: Final = frozenset(
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
_PERMANENT_KINDS: Final = frozenset(
    {"policy", "server-untrusted", "client-rejected", "auth", "certificate"}
)
#: getaddrinfo's answers for a name that does not exist (not a DNS server that is away).
_UNKNOWN_HOST: Final = frozenset(
    {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
)
CONNECTION_LOST: Final = frozenset(
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


class OpcUaConnectionError(OpcUaMqttError):
    """Connecting to (or staying connected to) an OPC UA server failed.

    ``message`` is one line saying what went wrong; ``hint`` one line saying what to do.
    ``kind`` names the failure for programs: ``unreachable``, ``timeout``, ``policy``,
    ``server-untrusted``, ``client-rejected``, ``auth``, ``certificate``, ``lost``, ``protocol``.
    ``permanent``: trying again cannot help (by default for the kinds ``policy``,
    ``server-untrusted``, ``client-rejected``, ``auth`` and ``certificate``).
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        kind: str = "protocol",
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind
        self.permanent = kind in _PERMANENT_KINDS if permanent is None else permanent

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


def status_name(code: int) -> str:
    return str(ua.StatusCode(code).name)


def unreachable(url: str, exc: BaseException, timeout: float) -> OpcUaConnectionError:
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
            permanent=exc.errno in _UNKNOWN_HOST,
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
            f"{url} refused the connection: {status_name(exc.code)}",
            "check the endpoint URL the server advertises",
            kind="unreachable",
            permanent=True,
        )
    return OpcUaConnectionError(
        f"{url} did not answer as an OPC UA server: {exc or type(exc).__name__}",
        "is this the OPC UA port (opc.tcp, usually 4840) of the server?",
        kind="protocol",
        permanent=True,
    )


def session_error(
    url: str, exc: BaseException, options: ConnectionOptions, creds: ClientCredentials | None
) -> OpcUaConnectionError:
    """Name a failure of OpenSecureChannel / CreateSession / ActivateSession."""
    code = exc.code if isinstance(exc, UaStatusCodeError) else None
    if code in _CERT_REJECTED and creds is not None:
        return OpcUaConnectionError(
            f"{url} rejected our client certificate ({status_name(code or 0)})",
            f"make the server trust {creds.certificate_path} (thumbprint "
            f"{thumbprint(creds.certificate)}): copy it into the server's trusted certificates",
            kind="client-rejected",
        )
    if code in USER_REJECTED:
        who = f"user {options.username!r}" if options.username else "anonymous access"
        hint = (
            "check the user name and password"
            if options.username
            else "give a user name (--username) and its password"
        )
        return OpcUaConnectionError(
            f"the server refused {who} ({status_name(code or 0)})", hint, kind="auth"
        )
    if code in _POLICY_REJECTED:
        return OpcUaConnectionError(
            f"{url} rejected security policy {options.security_policy}/{options.security_mode} "
            f"({status_name(code or 0)})",
            "choose a policy and mode the server offers",
            kind="policy",
        )
    if isinstance(exc, TimeoutError):
        return OpcUaConnectionError(
            f"{url} did not answer within {options.timeout:g} s while opening the session",
            "raise --timeout, or check the server's load",
            kind="timeout",
        )
    if isinstance(exc, ConnectionError | OSError) or code in CONNECTION_LOST:
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
            f"{url} refused the session: {status_name(code)}",
            "check the server's log for the reason",
            kind="protocol",
        )
    return OpcUaConnectionError(
        f"opening a session on {url} failed: {exc or type(exc).__name__}",
        "check the server's log for the reason",
        kind="protocol",
    )

"""Connecting to an OPC UA server: security, trust, and clear failures.

Connecting (``connect``) asks the server for its endpoints over an unsecured channel first, so
that every failure can be named before any secret leaves the process: nothing listening, the
security policy not offered (with the list of what is), the server's certificate not in our trust
folder (unless trusting on first contact was asked for, which is logged loudly), no identity
token for the user, or a password that would travel readable. Failures of the session itself are
told apart by status code: our certificate refused by the server, the user refused, timeouts.
All of them arrive as one :class:`OpcUaConnectionError` with a one-line message and a hint.

asyncua pitfalls this module is shaped by (asyncua 2.1):

* ``set_security`` decides between PEM and DER by the file suffix (``.pem`` only): our files
  are loaded here and handed over as DER bytes;
* the protocol logger writes every request at DEBUG, the ActivateSession request with the
  user's password in it: a logging filter drops that record;
* the client's supervisor probes the server every ``watchdog_intervall`` (1 s) and, with a
  timeout of the same 1 s, marks the connection lost when a probe waits behind large requests:
  every later request then fails with "client is disconnected". The interval is the
  keep-alive (the bridge's ``opcua.keep_alive_s``), else the request timeout (and batching.py
  caps batches at 1,000 operations so requests stay short); a stalled connection is noticed
  within twice the interval;
* asyncua's own reconnect (``auto_reconnect``) retries with a fixed, unjittered back-off and
  swallows why an attempt failed, while its publish loop logs a traceback every second: it is
  not used. A lost connection ends the session (session.py), and the bridge opens a new one
  with :func:`connect`, which names every failure;
* ``disconnect()`` on a lost connection sends CloseSession and CloseSecureChannel into it: a
  stalled one answers neither (twice the request timeout). The transport is aborted first, and
  the two warnings asyncua then logs ("... was called but connection is closed") are dropped,
  as is its warning on every session that the server revised the session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography.hazmat.primitives.serialization import Encoding

from opcua_mqtt.adapters.opcua.asyncua_logs import install as install_log_filters
from opcua_mqtt.adapters.opcua.certs import (
    CertificateError,
    ClientCredentials,
    TrustList,
    client_application_uri,
    load_or_create_client_credentials,
    server_certificate_problem,
    subject_name,
    thumbprint,
)
from opcua_mqtt.adapters.opcua.failures import (
    CONNECTION_LOST,
    OpcUaConnectionError,
    session_error,
    status_name,
    unreachable,
)

__all__ = [
    "SECURITY_MODES",
    "SECURITY_POLICIES",
    "ConnectionOptions",
    "connect",
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

_LOST_NAMES: Final = frozenset(str(ua.StatusCode(code).name) for code in CONNECTION_LOST)


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
    # Seconds between the probes that notice a stalled connection (None: the timeout).
    keep_alive_s: float | None = None

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
        if self.keep_alive_s is not None and self.keep_alive_s <= 0:
            raise ValueError("the keep-alive must be positive")
        normalise_endpoint(self.endpoint)  # raises ValueError on a malformed endpoint


# --------------------------------------------------------------------------------- connecting


install_log_filters(_LOST_NAMES)


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
    # our large batches would be dropped. The probe gets the keep-alive, else the timeout.
    watchdog = options.keep_alive_s or max(1.0, options.timeout)
    client = Client(url, timeout=options.timeout, watchdog_intervall=watchdog)
    client.session_timeout = SESSION_TIMEOUT_MS
    client.name = "opcua-mqtt"
    client.description = "opcua-mqtt"
    client.product_uri = "urn:opcua-mqtt"
    client.application_uri = client_application_uri()

    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except Exception as e:  # noqa: BLE001 - every failure here is told as "cannot reach"
        raise unreachable(url, e, options.timeout) from None

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
        await client.connect(auto_reconnect=False)
    except Exception as e:  # noqa: BLE001 - translated into one OpcUaConnectionError
        # asyncua has closed the session, the channel and the socket already.
        raise session_error(url, e, options, creds) from None
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
        if e.code in CONNECTION_LOST:
            raise OpcUaConnectionError(
                f"lost the session on {url}: {status_name(e.code)}",
                "check that the server is still running",
                kind="lost",
            ) from e
        raise
    finally:
        await _close(client, url, options.timeout)


async def _close(client: Client, url: str, timeout: float) -> None:
    """Close the session; on a connection already lost (asyncua's state is no longer
    "connected"), abort the transport first, so that nothing waits for a goodbye a stalled
    server cannot answer."""
    if client.uaclient.state is not UaClientState.CONNECTED:
        transport = getattr(client.uaclient.protocol, "transport", None)
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0)  # the protocol hears of it (connection_lost) first
    try:
        await asyncio.wait_for(client.disconnect(), timeout)
    except Exception as e:  # noqa: BLE001 - the session is gone either way
        _log.debug("disconnect from %s: %s", url, e)


# ------------------------------------------------------------------------------------ browsing

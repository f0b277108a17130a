"""What an MQTT session is told (:class:`MqttOptions`) and what it says when it cannot connect:
:class:`MqttError`, with the failure told in words an operator can act on, and whether trying
again can help (a one-shot command stops at once when it cannot)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from gmqtt.mqtt.handler import MQTTError

from opcua_mqtt.core.errors import OpcUaMqttError


class MqttError(OpcUaMqttError):
    """A connection problem worth one clear line in the log or on the terminal.

    ``permanent``: trying again cannot help (an untrusted certificate, a key that does not
    match its certificate, credentials the broker refuses)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TlsOptions:
    enabled: bool = True
    ca: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext | bool:
        """The SSLContext for gmqtt, or False for plain TCP (never the default)."""
        if not self.enabled:
            return False
        ctx = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.certificate:
            ctx.load_cert_chain(self.certificate, self.private_key)
        return ctx


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int = 8883
    client_id: str = "opcua-mqtt"
    protocol: str = "5"  # "5" or "3.1.1"
    tls: TlsOptions = field(default_factory=TlsOptions)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: MQTT keep-alive; nothing heard from the broker for twice this long is a stalled
    #: connection, dropped and replaced (see :mod:`.mqtt_reconnect`).
    keepalive_s: int = 15
    #: Cap of the jittered exponential back-off between reconnect attempts.
    reconnect_max_s: float = 10.0
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 3600
    max_inflight: int = 64
    spool_messages: int = 100_000
    spool_bytes: int = 256 * 1024 * 1024
    #: Where the spool keeps waiting messages and the writers' state across restarts (None:
    #: in memory only, lost with the process). See :mod:`.mqtt_spool`.
    spool_directory: Path | None = None
    # MQTT 5 Maximum Packet Size sent in CONNECT: the broker drops larger messages for us
    # instead of delivering them into memory (None: no limit beyond the protocol's).
    maximum_packet_size: int | None = None
    #: Failed connection attempts after which ``wait_connected`` gives up (0: never). A
    #: one-shot command sets a few, so a closed port fails after a short retry. Such a session
    #: leaves telling refused publishes and the failed attempts before its first connection to
    #: its caller: it logs them at DEBUG, and the command says what went wrong in one line.
    connect_attempts: int = 0


def client_identity(options: MqttOptions) -> str:
    """How the broker knows this client, for log lines about what it refuses: the client id,
    the user name, and the client certificate's subject (brokers map it to a user name)."""
    parts = [f"client id {options.client_id!r}"]
    if options.username:
        parts.append(f"user {options.username!r}")
    if options.tls.enabled and options.tls.certificate:
        try:
            with open(options.tls.certificate, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            parts.append(f"certificate {cert.subject.rfc4514_string()!r}")
        except (OSError, ValueError):
            parts.append(f"certificate {options.tls.certificate}")
    return ", ".join(parts)


def describe_failure(e: BaseException, o: MqttOptions) -> tuple[str, bool]:
    """Why a connection attempt failed, in words, and whether trying again can help."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return (
            f"the broker's certificate is not trusted ({e.verify_message}); "
            "check the CA certificate (tls.ca, --ca)",
            True,
        )
    if isinstance(e, ssl.SSLError) and "ALERT" in str(e.reason):
        alert = str(e.reason).split("ALERT_", 1)[-1].replace("_", " ").lower()
        if not o.tls.certificate:
            return f"the broker requires a client certificate (TLS alert: {alert})", True
        return f"the broker refused the client certificate (TLS alert: {alert})", True
    if isinstance(e, TimeoutError):
        return (
            f"no answer within {o.connect_timeout_s:g} s (with mutual TLS this is how a broker "
            "refuses a missing or untrusted client certificate)",
            False,
        )
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: is the broker running on that port?", False
    if isinstance(e, (ConnectionResetError, BrokenPipeError)) and o.tls.enabled:
        if not o.tls.certificate:
            return (
                "the broker closed the connection before answering: it may require a client "
                "certificate (tls.certificate, --cert)",
                False,
            )
        return (
            "the broker closed the connection before answering (a broker that requires "
            "client certificates does this for one it does not trust)",
            False,
        )
    if isinstance(e, MQTTError):
        code = getattr(e, "_code", None)
        permanent = code in (4, 5, 0x86, 0x87, 0x8A, 0x8C)  # credentials, not authorized, banned
        return (
            f"the broker refused the connection ({e}); check user name, password and ACL",
            permanent,
        )
    return f"{type(e).__name__}: {e}", False


def describe_tls_files(e: BaseException) -> str:
    """A client certificate or key that cannot be used: the broker is never asked."""
    if isinstance(e, ssl.SSLError) and "KEY_VALUES_MISMATCH" in str(e):
        return (
            "the private key does not belong to the client certificate "
            "(tls.private_key / tls.certificate, --key / --cert)"
        )
    return f"cannot load the TLS certificates or key: {e}"

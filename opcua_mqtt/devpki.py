"""A development PKI made on the fly: a CA and the leaf certificates a bridge needs.

For demos and first steps only; production certificates come from the plant's own PKI. Keys are
EC P-256 (fast to make, ES256 for metadata signatures). Only :func:`write_pki` touches the disk.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.x509_maker import build_certificate, key_usage, validity_window

VALIDITY = dt.timedelta(days=365)
BRIDGE_NAME = "opcua-mqtt bridge"  # default common name of the bridge's MQTT certificate
TOOL_NAME = "opcua-mqtt client"  # common name of mqtt-client.pem, people's tools


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: PrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opcua-mqtt development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str, now: dt.datetime) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_certificate(
        _name(common_name),
        key,
        None,
        validity=validity_window(now, VALIDITY),
        ca=True,
        path_length=0,
        usage=key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
        subject_key_id=True,
    )
    return Issued(key, cert)


def issue(
    ca: Issued,
    common_name: str,
    now: dt.datetime,
    *,
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    rsa_bits: int | None = None,
) -> Issued:
    """A leaf certificate with digitalSignature key usage and the EKUs and SANs asked for.

    ``rsa_bits`` makes an RSA key instead of EC P-256: the OPC UA security policies
    (Basic256Sha256, Aes*_Sha256_*) are defined for RSA application certificates only, and they
    also need keyEncipherment/dataEncipherment (OPC 10000-6 §6.2.2).
    """
    key: PrivateKey = (
        rsa.generate_private_key(65537, rsa_bits)
        if rsa_bits
        else ec.generate_private_key(ec.SECP256R1())
    )
    encipher = bool(rsa_bits)
    usage = key_usage(
        digital_signature=True,
        non_repudiation=encipher,
        key_encipherment=encipher,
        data_encipherment=encipher,
        key_agreement=(server or client) and not rsa_bits,
    )
    ekus = [
        oid
        for flag, oid in (
            (server, ExtendedKeyUsageOID.SERVER_AUTH),
            (client, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        if flag
    ]
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    cert = build_certificate(
        _name(common_name),
        key,
        ca,
        validity=validity_window(now, VALIDITY),
        usage=usage,
        ekus=ekus,
        sans=sans,
        authority_key_id=True,
    )
    return Issued(key, cert)


#: file stem -> what it is, in the order they are written (the CA first).
FILES = {
    "ca": "development certificate authority",
    "broker": "MQTT broker TLS server certificate",
    "bridge-mqtt": "bridge MQTT client certificate (mutual TLS)",
    "mqtt-client": "MQTT client certificate for people's tools: listen, write (mutual TLS)",
    "metadata-signer": "DataSetMetaData signing certificate (digitalSignature)",
    "opcua-client": "OPC UA application instance certificate of the bridge",
}


def write_pki(
    directory: Path,
    *,
    broker_hosts: Sequence[str] = (),
    bridge_name: str = BRIDGE_NAME,
    application_uri: str | None = None,
) -> str:
    """Write the CA and every pair of :data:`FILES` into ``directory`` (created if needed),
    overwriting what is there; return the bridge's OPC UA application URI. ``certs`` and
    ``demo`` both use it, so the demo's throw-away PKI is the one users get from ``certs``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    hostname = socket.gethostname()
    app_uri = application_uri or f"urn:opcua-mqtt:bridge:{hostname}"
    dns = ("localhost", *(h for h in broker_hosts if not _is_ip(h)))
    ips = ("127.0.0.1", *(h for h in broker_hosts if _is_ip(h)))

    ca = make_ca("opcua-mqtt development CA", now)
    issued = {
        "ca": ca,
        "broker": issue(ca, "opcua-mqtt broker", now, server=True, dns=dns, ips=ips),
        "bridge-mqtt": issue(ca, bridge_name, now, client=True),
        "mqtt-client": issue(ca, TOOL_NAME, now, client=True),
        # Bound to the PublisherId: subscribers accept its signatures for that publisher only.
        "metadata-signer": issue(
            ca, "opcua-mqtt metadata signer", now, uris=(publisher_uri(bridge_name),)
        ),
        "opcua-client": issue(
            ca,
            "opcua-mqtt bridge",
            now,
            server=True,
            client=True,
            dns=(hostname, "localhost"),
            uris=(app_uri,),
            rsa_bits=2048,
        ),
    }
    for stem, item in issued.items():
        _write_pair(directory, stem, item, ca)
    return app_uri


def load_ca(directory: Path) -> Issued:
    """The CA that :func:`write_pki` wrote into ``directory``."""
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{directory / 'ca.key'}: not an EC or RSA private key")
    return Issued(key, x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes()))


def add_client(directory: Path, ca: Issued, name: str) -> None:
    """Write ``name``.pem/.key: an MQTT client certificate with common name ``name``, issued
    by ``ca`` (the one already in ``directory``, so brokers and other clients keep working)."""
    _write_pair(directory, name, issue(ca, name, dt.datetime.now(dt.UTC), client=True), ca)


def common_name(path: Path) -> str:
    """The subject common name of the (first) certificate in the PEM file ``path``."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _write_pair(directory: Path, stem: str, item: Issued, ca: Issued) -> None:
    """NAME.pem (the certificate, followed by the CA's unless it is the CA) and NAME.key."""
    chain = item.cert_pem() + (ca.cert_pem() if item is not ca else b"")
    write_file(directory / f"{stem}.pem", chain, 0o644)
    write_file(directory / f"{stem}.key", item.key_pem(), 0o600)


class SymlinkError(OpcUaMqttError, OSError):
    """A file to write is a symbolic link: writing through it would put a key or a broker
    setting wherever the link points (a file of another user, a system file when run as root)."""


def write_file(path: Path, data: bytes, mode: int, *, append: bool = False) -> None:
    """Create (or replace, or append to) ``path`` with its final mode from the start, never
    through a symbolic link: a key is never world-readable, and never lands elsewhere."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SymlinkError(
                errno.ELOOP, f"{path} is a symbolic link; refusing to write through it"
            ) from None
        raise
    with os.fdopen(fd, "ab" if append else "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)


def symlinks_among(paths: Sequence[Path]) -> list[Path]:
    """The ``paths`` that are symbolic links (dangling ones included)."""
    return [p for p in paths if p.is_symlink()]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

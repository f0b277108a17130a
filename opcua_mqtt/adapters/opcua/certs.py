"""The OPC UA application instance certificate of our client, and the folder of trusted servers.

OPC UA authenticates applications (not hosts) with X.509 certificates (OPC 10000-4 §6.1,
OPC 10000-6 §6.2.2): the certificate names the application URI in its subjectAltName, and the
RSA policies in use (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) need an RSA
key. When the configured certificate and key are both absent, a self-signed pair is made on first
use; the key is written readable by its owner only. Servers are trusted by putting their
certificate (or the CA that issued it) into the trust folder: nothing is trusted implicitly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opcua_mqtt.core.errors import OpcUaMqttError
from opcua_mqtt.x509_maker import build_certificate, key_usage, validity_window

_log = logging.getLogger(__name__)

RSA_KEY_BITS = 2048  # the minimum of Basic256Sha256; also within Aes256_Sha256_RsaPss (2048..4096)
VALIDITY = dt.timedelta(days=5 * 365)
CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


class CertificateError(OpcUaMqttError):
    """Our own certificate or key cannot be used (unreadable, mismatched, half missing)."""


def client_application_uri(hostname: str | None = None) -> str:
    """The application URI of this client on this host (the SAN URI of its certificate)."""
    return f"urn:opcua-mqtt:client:{hostname or socket.gethostname()}"


def thumbprint(cert: x509.Certificate) -> str:
    """The OPC UA thumbprint of a certificate: SHA-1 of its DER form, as upper-case hex."""
    return (
        hashlib.sha1(  # the thumbprint OPC UA defines (not a security check)
            cert.public_bytes(serialization.Encoding.DER)
        )
        .hexdigest()
        .upper()
    )


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes (told apart by content, never by file name)."""
    return load_certificates(data)[0]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM file (leaf first, then its issuers), or the one of a DER file."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError("the OPC UA security policies need an RSA private key")
    return key


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The first URI in the certificate's subjectAltName (the OPC UA application URI)."""
    uris = _san_uris(cert)
    return uris[0] if uris else None


def server_certificate_problem(
    cert: x509.Certificate, application_uri: str | None, now: dt.datetime
) -> str | None:
    """Why ``cert`` cannot stand for the server that presented it, or None. Two of the checks
    of OPC 10000-4 §6.1.3 (Table 106) that a trust list alone does not make: the validity
    period (Bad_CertificateTimeInvalid) and the application URI in the subjectAltName equal
    to the server's ApplicationDescription (Bad_CertificateUriInvalid): a certificate copied
    from another trusted server must not vouch for this one."""
    if now < cert.not_valid_before_utc:
        return f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if application_uri:
        uris = _san_uris(cert)
        if application_uri not in uris:
            named = ", ".join(uris) if uris else "no URI"
            return (
                f"it names {named} in its subjectAltName, but the server's ApplicationUri is "
                f"{application_uri}"
            )
    return None


def _san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def subject_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def make_application_certificate(
    application_uri: str,
    hostname: str,
    *,
    common_name: str = "opcua-mqtt",
    now: dt.datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A self-signed OPC UA application instance certificate (OPC 10000-6 §6.2.2, Table 42).

    RSA 2048 with SHA-256; subjectAltName has the application URI and the host name; key usages
    digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, plus keyCertSign as a
    self-signed certificate has; extended key usage clientAuth.
    """
    now = now or dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}@{hostname}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opcua-mqtt"),
        ]
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    if hostname:
        sans.append(x509.DNSName(hostname))
    cert = build_certificate(
        name,
        key,
        None,
        validity=validity_window(now, VALIDITY),
        ca=True,
        path_length=0,
        usage=key_usage(
            digital_signature=True,
            non_repudiation=True,
            key_encipherment=True,
            data_encipherment=True,
            key_cert_sign=True,  # self-signed
        ),
        ekus=[ExtendedKeyUsageOID.CLIENT_AUTH],
        sans=sans,
        subject_key_id=True,
        authority_key_id=True,
    )
    return key, cert


@dataclass(frozen=True)
class ClientCredentials:
    """Our certificate and key, loaded; ``generated`` when they were made just now."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    certificate_path: Path
    generated: bool
    chain: tuple[x509.Certificate, ...] = ()  # issuers after the leaf in the certificate file

    @property
    def application_uri(self) -> str | None:
        return application_uri_of(self.certificate)

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def private_key_der(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_or_create_client_credentials(
    certificate_path: Path, private_key_path: Path, *, hostname: str | None = None
) -> ClientCredentials:
    """Load our certificate and key; make a self-signed pair when both files are absent.

    One present without the other is an error rather than a reason to overwrite anything.
    """
    cert_exists, key_exists = certificate_path.exists(), private_key_path.exists()
    if not cert_exists and not key_exists:
        host = hostname or socket.gethostname()
        key, cert = make_application_certificate(client_application_uri(host), host)
        _write_new(
            private_key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            mode=0o600,
        )
        _write_new(certificate_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        _log.warning(
            "created a self-signed OPC UA client certificate %s (thumbprint %s, application URI "
            "%s); servers that check client certificates must be told to trust it",
            certificate_path,
            thumbprint(cert),
            client_application_uri(host),
        )
        return ClientCredentials(cert, key, certificate_path, generated=True)
    if not cert_exists:
        raise CertificateError(
            f"the private key {private_key_path} exists but its certificate {certificate_path} "
            "does not: restore it, or remove both to have a new pair made"
        )
    if not key_exists:
        raise CertificateError(
            f"the certificate {certificate_path} exists but its private key {private_key_path} "
            "does not: restore it, or remove both to have a new pair made"
        )
    try:
        cert, *chain = load_certificates(certificate_path.read_bytes())
    except (OSError, ValueError) as e:
        raise CertificateError(f"cannot read the certificate {certificate_path}: {e}") from None
    try:
        key = load_private_key(private_key_path.read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise CertificateError(f"cannot read the private key {private_key_path}: {e}") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertificateError(
            f"the private key {private_key_path} does not belong to the certificate "
            f"{certificate_path}"
        )
    return ClientCredentials(cert, key, certificate_path, generated=False, chain=tuple(chain))


def _write_new(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # whatever the umask


class TrustList:
    """The certificates in the trust folder: trusted themselves, or as the issuing CA."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.certificates: list[x509.Certificate] = []
        if directory is not None and directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.suffix.lower() not in CERT_SUFFIXES or not path.is_file():
                    continue
                try:
                    self.certificates.append(load_certificate(path.read_bytes()))
                except (OSError, ValueError) as e:
                    _log.warning("ignoring %s in the trust folder: %s", path, e)

    def is_trusted(self, cert: x509.Certificate) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        for trusted in self.certificates:
            if trusted.public_bytes(serialization.Encoding.DER) == der:
                return True
        for ca in self.certificates:
            if not _is_ca(ca) or ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False

    def add(self, cert: x509.Certificate) -> Path:
        """Save ``cert`` (DER) into the trust folder; return its path."""
        if self.directory is None:
            raise CertificateError("no trust folder is configured to save the certificate in")
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", subject_name(cert)).strip("_") or "server"
        path = self.directory / f"{label[:48]}_{thumbprint(cert)}.der"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        self.certificates.append(cert)
        return path


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False

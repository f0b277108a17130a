"""Throw-away X.509 PKI for a test run.

Everything here is test-only: private keys are written unencrypted and world-readable so
that a Mosquitto started as root, which drops to the ``mosquitto`` user, can still read them.
Never point this at a folder that outlives the test run.

EC P-256 keys keep generation at a few milliseconds per key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opcua_mqtt.core.identity import publisher_uri

#: Common name of the client certificate; with ``use_identity_as_username`` it is the MQTT user.
CLIENT_COMMON_NAME = "opcua-mqtt-test-client"

# Validity starts a day back so that a slightly skewed clock cannot make a new cert "not yet valid".
_BACKDATE = dt.timedelta(days=1)
_LIFETIME = dt.timedelta(days=7)

# Readable by every user: Mosquitto started as root reads its files as the `mosquitto` user.
_FILE_MODE = 0o644
_DIR_MODE = 0o755


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files written by :func:`generate_pki`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A CA that signed nothing the broker knows: trusting only it must fail verification.
    rogue_ca_cert: Path
    rogue_ca_key: Path
    #: A client certificate signed by the rogue CA: a mutual-TLS broker must refuse it.
    rogue_client_cert: Path
    rogue_client_key: Path


@dataclass(frozen=True)
class _Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opcua-mqtt tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _make_ca(common_name: str, now: dt.datetime) -> _Issued:
    key = _new_key()
    name = _name(common_name)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(key, cert)


def _issue_leaf(
    issuer: _Issued,
    common_name: str,
    usage: x509.ObjectIdentifier | None,
    now: dt.datetime,
    san: list[x509.GeneralName] | None = None,
) -> _Issued:
    key = _new_key()
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return _Issued(key, builder.sign(issuer.key, hashes.SHA256()))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, _FILE_MODE)
    return path


def _write_pair(directory: Path, stem: str, issued: _Issued) -> tuple[Path, Path]:
    cert = _write(directory / f"{stem}.crt", issued.cert.public_bytes(serialization.Encoding.PEM))
    key = _write(
        directory / f"{stem}.key",
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert, key


def generate_pki(directory: Path) -> Pki:
    """Create a CA, a broker cert, a client cert and an unrelated rogue CA in ``directory``.

    The server certificate carries ``DNS:localhost`` and ``IP:127.0.0.1`` so that a client with
    ``check_hostname`` on can connect to either name. ``directory`` is created if needed and made
    world-traversable (0755); every file is 0644.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, _DIR_MODE)
    now = dt.datetime.now(dt.UTC)

    ca = _make_ca("opcua-mqtt test CA", now)
    server = _issue_leaf(
        ca,
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        now,
        san=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        ],
    )
    client = _issue_leaf(ca, CLIENT_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, now)
    rogue_ca = _make_ca("opcua-mqtt rogue CA", now)
    rogue_client = _issue_leaf(rogue_ca, CLIENT_COMMON_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, now)

    ca_cert, ca_key = _write_pair(directory, "ca", ca)
    server_cert, server_key = _write_pair(directory, "server", server)
    client_cert, client_key = _write_pair(directory, "client", client)
    rogue_ca_cert, rogue_ca_key = _write_pair(directory, "rogue-ca", rogue_ca)
    rogue_client_cert, rogue_client_key = _write_pair(directory, "rogue-client", rogue_client)

    return Pki(
        directory=directory,
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        rogue_ca_cert=rogue_ca_cert,
        rogue_ca_key=rogue_ca_key,
        rogue_client_cert=rogue_client_cert,
        rogue_client_key=rogue_client_key,
    )


def issue_signer(pki: Pki, directory: Path, publisher_id: str | None) -> Path:
    """A metadata signer issued by the test CA, bound to ``publisher_id`` (SAN URI
    ``urn:opcua-mqtt:publisher:<id>``; None: bound to nothing, as certificates made before the
    binding existed). Writes ``metadata-signer.pem`` (certificate, then the CA) and
    ``metadata-signer.key`` into ``directory``, the names a bridge configuration's
    ``metadata_signing`` uses (tests/support/bridge.py); returns ``directory``.

    Every signer of a test run chains to the same CA, the CA the subscriber trusts: a signer's
    binding is then all that tells one publisher's signature from another's.
    """
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = _Issued(ca_key, x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    san = [x509.UniformResourceIdentifier(publisher_uri(publisher_id))] if publisher_id else None
    common_name = f"metadata signer {publisher_id or '(unbound)'}"
    signer = _issue_leaf(ca, common_name, None, dt.datetime.now(dt.UTC), san)
    directory.mkdir(parents=True, exist_ok=True)
    _write_pair(directory, "metadata-signer", signer)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (signer.cert, ca.cert))
    _write(directory / "metadata-signer.pem", chain)
    return directory


def issue_requester(
    pki: Pki,
    stem: str,
    common_name: str,
    *,
    uri: str | None = None,
    rogue: bool = False,
    expired: bool = False,
) -> tuple[Path, Path]:
    """A signing certificate (digitalSignature) for ``common_name`` from the test CA (or the
    rogue CA), with a URI SAN if given; ``expired`` makes one whose validity ended weeks ago.
    Written as ``stem``.crt/.key beside the PKI; returns (certificate, key)."""
    ca_cert, ca_key = (pki.rogue_ca_cert, pki.rogue_ca_key) if rogue else (pki.ca_cert, pki.ca_key)
    key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer = _Issued(key, x509.load_pem_x509_certificate(ca_cert.read_bytes()))
    now = dt.datetime.now(dt.UTC) - (dt.timedelta(days=30) if expired else dt.timedelta(0))
    san: list[x509.GeneralName] | None = [x509.UniformResourceIdentifier(uri)] if uri else None
    leaf = _issue_leaf(issuer, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, now, san)
    return _write_pair(pki.directory, stem, leaf)

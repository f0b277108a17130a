"""Throw-away X.509 PKI for a test run, made with the product's own makers
(:func:`opcua_mqtt.devpki.make_ca` and :func:`~opcua_mqtt.devpki.issue`), and, for what the
product never makes (expired or malformed certificates, other key types, the test OPC UA
server's self-signed certificate), with the product's one builder
(:func:`opcua_mqtt.x509_maker.build_certificate`) given the odd parameters.

Everything here is test-only: private keys are written unencrypted and world-readable so
that a Mosquitto started as root, which drops to the ``mosquitto`` user, can still read them.
Never point this at a folder that outlives the test run.
"""

from __future__ import annotations

import datetime as dt
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

from opcua_mqtt.core.identity import publisher_uri
from opcua_mqtt.devpki import VALIDITY, Issued, issue, make_ca
from opcua_mqtt.x509_maker import CertKey, build_certificate, key_usage

#: Common name of the client certificate; with ``use_identity_as_username`` it is the MQTT user.
CLIENT_COMMON_NAME = "opcua-mqtt-test-client"

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


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, _FILE_MODE)
    return path


def _write_pair(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    cert = _write(directory / f"{stem}.crt", issued.cert_pem())
    return cert, _write(directory / f"{stem}.key", issued.key_pem())


def generate_pki(directory: Path) -> Pki:
    """Create a CA, a broker cert, a client cert and an unrelated rogue CA in ``directory``.

    The server certificate carries ``DNS:localhost`` and ``IP:127.0.0.1`` so that a client with
    ``check_hostname`` on can connect to either name. ``directory`` is created if needed and made
    world-traversable (0755); every file is 0644.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, _DIR_MODE)
    now = dt.datetime.now(dt.UTC)

    ca = make_ca("opcua-mqtt test CA", now)
    server = issue(ca, "localhost", now, server=True, dns=("localhost",), ips=("127.0.0.1",))
    client = issue(ca, CLIENT_COMMON_NAME, now, client=True)
    rogue_ca = make_ca("opcua-mqtt rogue CA", now)
    rogue_client = issue(rogue_ca, CLIENT_COMMON_NAME, now, client=True)

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
    ``metadata_signing`` uses (harness/bridge.py); returns ``directory``.

    Every signer of a test run chains to the same CA, the CA the subscriber trusts: a signer's
    binding is then all that tells one publisher's signature from another's.
    """
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = Issued(ca_key, x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    uris = (publisher_uri(publisher_id),) if publisher_id else ()
    common_name = f"metadata signer {publisher_id or '(unbound)'}"
    signer = issue(ca, common_name, dt.datetime.now(dt.UTC), uris=uris)
    directory.mkdir(parents=True, exist_ok=True)
    _write_pair(directory, "metadata-signer", signer)
    _write(directory / "metadata-signer.pem", signer.cert_pem() + ca.cert_pem())
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
    """A write-back requester's signing certificate (clientAuth, digitalSignature) for
    ``common_name`` from the test CA (or the rogue CA), with a URI SAN if given; ``expired``
    makes one whose validity ended weeks ago. Written as ``stem``.crt/.key beside the PKI;
    returns (certificate, key)."""
    ca_cert, ca_key = (pki.rogue_ca_cert, pki.rogue_ca_key) if rogue else (pki.ca_cert, pki.ca_key)
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    issuer = Issued(key, x509.load_pem_x509_certificate(ca_cert.read_bytes()))
    now = dt.datetime.now(dt.UTC)
    if expired:
        now -= VALIDITY + dt.timedelta(days=30)
    leaf = issue(issuer, common_name, now, client=True, uris=(uri,) if uri else ())
    return _write_pair(pki.directory, stem, leaf)


def issue_mqtt_client(pki: Pki, common_name: str) -> tuple[Path, Path]:
    """An MQTT client certificate from the test CA (the same clientAuth profile as a
    requester's) whose CN is ``common_name``: the user name a broker with
    ``use_identity_as_username`` and its ACL know the client by. Written as
    ``mqtt-<common_name>``.crt/.key beside the PKI; returns (certificate, key)."""
    return issue_requester(pki, f"mqtt-{common_name}", common_name)


@dataclass(frozen=True)
class Made:
    """A key and the certificate :func:`make_certificate` made for it."""

    key: CertKey
    cert: x509.Certificate


def make_certificate(
    subject: str | x509.Name,
    key: CertKey,
    issuer: Made | None,
    *,
    usage: x509.KeyUsage | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool | None = False,
    path_length: int | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Made:
    """:func:`~opcua_mqtt.x509_maker.build_certificate` as the signing tests use it: a str
    ``subject`` is a common name, and the key comes back with its certificate, so that the
    result can issue the next one. ``ca`` None leaves basicConstraints out, ``usage`` None
    keyUsage; ``extra`` are (extension, critical) pairs: nothing else is added."""
    if isinstance(subject, str):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    cert = build_certificate(
        subject,
        key,
        issuer,
        usage=usage,
        validity=(not_before, not_after),
        ca=ca,
        path_length=path_length,
        extra=extra,
    )
    return Made(key, cert)


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
    extendedKeyUsage serverAuth + clientAuth; basicConstraints CA=false. Unlike the product's
    maker (:func:`opcua_mqtt.adapters.opcua.certs.make_application_certificate`, a client's)
    it serves servers too, and ``days``/``valid_since_days`` make expired or not yet valid
    ones. The file format follows the suffix: ``.der``, or ``.pem``/``.crt`` (asyncua's loaders
    pick the format from the suffix the same way). The key is always PEM, unencrypted.
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
    san.append(x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")))
    cert = build_certificate(
        name,
        key,
        None,
        validity=(now - dt.timedelta(days=valid_since_days), now + dt.timedelta(days=days)),
        usage=key_usage(
            digital_signature=True,
            non_repudiation=True,
            key_encipherment=True,
            data_encipherment=True,
        ),
        ekus=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        sans=san,
        subject_key_id=True,
        authority_key_id=True,
    )
    encoding = (
        serialization.Encoding.PEM
        if cert_path.suffix.lower() in (".pem", ".crt")
        else serialization.Encoding.DER
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    atomic_write(cert_path, cert.public_bytes(encoding))


def atomic_write(path: Path, data: bytes) -> None:
    """Readers (a server starting next to us) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

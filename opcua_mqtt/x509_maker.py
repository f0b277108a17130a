"""The one X.509 certificate builder: the development PKI (:mod:`opcua_mqtt.devpki`), the OPC UA
client's self-signed application certificate (:mod:`opcua_mqtt.adapters.opcua.certs`) and the
test PKI (``harness/pki.py``) all call :func:`build_certificate` with their own fixed choices, so
that a certificate's extensions are decided in one place. Pure: it makes no key and touches no
disk; the callers choose the key and the validity window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ObjectIdentifier

#: How long before "now" a certificate becomes valid: a peer whose clock runs a little behind
#: ours still accepts a certificate made just now.
CLOCK_SKEW = dt.timedelta(minutes=5)

#: The key types a certificate made here may certify or be signed with.
CertKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class Issuer(Protocol):
    """What signs a certificate: its private key and its own certificate (whose subject becomes
    the issuer name and whose public key the authorityKeyIdentifier)."""

    @property
    def key(self) -> CertKey: ...

    @property
    def cert(self) -> x509.Certificate: ...


def validity_window(now: dt.datetime, length: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """(not before, not after) of a certificate made ``now`` to last ``length``."""
    return now - CLOCK_SKEW, now + length


def key_usage(
    *,
    digital_signature: bool = False,
    non_repudiation: bool = False,
    key_encipherment: bool = False,
    data_encipherment: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A keyUsage with the bits named set (encipherOnly/decipherOnly are never used here)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=key_encipherment,
        data_encipherment=data_encipherment,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def build_certificate(
    subject: x509.Name,
    key: CertKey,
    issuer: Issuer | None,
    *,
    validity: tuple[dt.datetime, dt.datetime],
    usage: x509.KeyUsage | None,
    ca: bool | None = False,
    path_length: int | None = None,
    ekus: Sequence[ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
    subject_key_id: bool = False,
    authority_key_id: bool = False,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """A certificate for ``key`` signed by ``issuer`` (self-signed if None), valid from
    ``validity[0]`` to ``validity[1]`` (see :func:`validity_window`), SHA-256 (EdDSA for an
    Ed25519 signer), with a random serial and exactly the extensions asked for, in this order:

    basicConstraints (critical; ``ca`` None leaves it out, ``path_length`` counts for a CA only),
    keyUsage (critical; None leaves it out), extendedKeyUsage (``ekus``, if any),
    subjectAltName (``sans`` in the order given, if any), subjectKeyIdentifier,
    authorityKeyIdentifier (from the issuer's public key, or ``key``'s when self-signed), then
    ``extra`` (extension, critical) pairs for what only tests make.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if subject_key_id:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if authority_key_id:
        issuer_public = issuer.cert.public_key() if issuer else key.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    signing_key = issuer.key if issuer else key
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)

"""What the product's certificates contain, now that one builder (opcua_mqtt.x509_maker) makes
them all: every extension with its criticality, the key type and size, the validity window and
the signature hash of a development CA, its leaves, and the OPC UA client's self-signed
application instance certificate (OPC 10000-6 §6.2.2). Nothing more and nothing less."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from opcua_mqtt import devpki
from opcua_mqtt.adapters.opcua import certs
from opcua_mqtt.x509_maker import CLOCK_SKEW, key_usage

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

#: The key usages OPC 10000-6 §6.2.2 asks of an RSA application instance certificate.
APPLICATION_USAGE = {
    "digital_signature": True,
    "non_repudiation": True,
    "key_encipherment": True,
    "data_encipherment": True,
}

Extensions = dict[ObjectIdentifier, tuple[bool, x509.ExtensionType]]


def _extensions(cert: x509.Certificate) -> Extensions:
    return {e.oid: (e.critical, e.value) for e in cert.extensions}


def _expect(*items: tuple[bool, x509.ExtensionType]) -> Extensions:
    return {value.oid: (critical, value) for critical, value in items}


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def _assert_p256(cert: x509.Certificate) -> None:
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)


def _assert_rsa(cert: x509.Certificate, bits: int) -> None:
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert (key.key_size, key.public_numbers().e) == (bits, 65537)


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca("profile test CA", NOW)


def test_devpki_ca_is_a_p256_path_length_zero_ca(ca: devpki.Issued) -> None:
    cert = ca.cert
    _assert_p256(cert)
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "profile test CA"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_before_utc == NOW - CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + devpki.VALIDITY
    assert _extensions(cert) == _expect(
        (True, x509.BasicConstraints(ca=True, path_length=0)),
        (True, key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)),
        (False, _ski(cert)),
    )
    cert.verify_directly_issued_by(cert)


def test_devpki_tls_leaf_has_key_agreement_its_eku_and_sans(ca: devpki.Issued) -> None:
    leaf = devpki.issue(
        ca, "broker", NOW, server=True, dns=("localhost",), ips=("127.0.0.1",), uris=("urn:x",)
    ).cert
    _assert_p256(leaf)
    assert leaf.issuer == ca.cert.subject
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (
        NOW - CLOCK_SKEW,
        NOW + devpki.VALIDITY,
    )
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.UniformResourceIdentifier("urn:x"),
    ]
    assert _extensions(leaf) == _expect(
        (True, x509.BasicConstraints(ca=False, path_length=None)),
        (True, key_usage(digital_signature=True, key_agreement=True)),
        (False, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])),
        (False, x509.SubjectAlternativeName(sans)),
        (False, _aki(ca.cert)),
    )
    leaf.verify_directly_issued_by(ca.cert)


def test_devpki_signing_leaf_has_digital_signature_only_and_no_eku(ca: devpki.Issued) -> None:
    leaf = devpki.issue(ca, "signer", NOW).cert
    assert _extensions(leaf) == _expect(
        (True, x509.BasicConstraints(ca=False, path_length=None)),
        (True, key_usage(digital_signature=True)),
        (False, _aki(ca.cert)),
    )


def test_devpki_rsa_leaf_is_an_opc_ua_application_certificate(ca: devpki.Issued) -> None:
    """The opcua-client pair of ``certs``: RSA for the OPC UA policies, with the key usages of
    OPC 10000-6 §6.2.2 (no keyAgreement: that is for EC TLS keys)."""
    leaf = devpki.issue(
        ca,
        "app",
        NOW,
        server=True,
        client=True,
        dns=("localhost",),
        uris=("urn:app",),
        rsa_bits=2048,
    ).cert
    _assert_rsa(leaf, 2048)
    assert _extensions(leaf) == _expect(
        (True, x509.BasicConstraints(ca=False, path_length=None)),
        (
            True,
            key_usage(**APPLICATION_USAGE),
        ),
        (
            False,
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
        ),
        (
            False,
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.UniformResourceIdentifier("urn:app")]
            ),
        ),
        (False, _aki(ca.cert)),
    )


def test_opc_ua_client_application_certificate_follows_part_6() -> None:
    """OPC 10000-6 §6.2.2: RSA (2048 for Basic256Sha256), SHA-256, the application URI in the
    subjectAltName (first, with the host name as DNS), digitalSignature, nonRepudiation,
    keyEncipherment, dataEncipherment, plus keyCertSign as a self-signed certificate has;
    clientAuth; subject and authority key identifiers."""
    key, cert = certs.make_application_certificate("urn:opcua-mqtt:client:h1", "h1", now=NOW)
    assert cert.public_key() == key.public_key()
    _assert_rsa(cert, certs.RSA_KEY_BITS)
    assert certs.RSA_KEY_BITS == 2048
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "opcua-mqtt@h1"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        NOW - CLOCK_SKEW,
        NOW + certs.VALIDITY,
    )
    sans = [x509.UniformResourceIdentifier("urn:opcua-mqtt:client:h1"), x509.DNSName("h1")]
    assert _extensions(cert) == _expect(
        (True, x509.BasicConstraints(ca=True, path_length=0)),
        (
            True,
            key_usage(**APPLICATION_USAGE, key_cert_sign=True),
        ),
        (False, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])),
        (False, x509.SubjectAlternativeName(sans)),
        (False, _ski(cert)),
        (False, _aki(cert)),
    )
    assert certs.application_uri_of(cert) == "urn:opcua-mqtt:client:h1"
    cert.verify_directly_issued_by(cert)

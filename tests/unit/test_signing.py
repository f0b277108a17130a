"""JWS signatures on PubSub JSON messages: opcua_mqtt.core.signing (see docs/signing.md).

The PKI is generated in memory once per session with fixed validity periods, and every check
runs at the fixed time NOW, so the tests are deterministic.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from harness.pki import Made, make_certificate
from opcua_mqtt.core.canonical_json import canonicalize
from opcua_mqtt.core.signing import (
    JWS_TYPE,
    SIGNATURE_MEMBER,
    Signer,
    TrustStore,
    VerificationResult,
    VerifyFailure,
    detached_payload,
    sign_message,
    thumbprint_s256,
    verify_message,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)
VALID_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---------------------------------------------------------------------------------------------
# in-memory PKI


def _usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=not digital_signature and not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


SIGNER_USAGE = _usage(digital_signature=True)
CA_USAGE = _usage(cert_sign=True)
NO_SIGN_USAGE = _usage()  # keyEncipherment only


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


#: A publisher's signing certificate unless told otherwise, valid from VALID_FROM to VALID_UNTIL.
_issue = functools.partial(
    make_certificate, usage=SIGNER_USAGE, not_before=VALID_FROM, not_after=VALID_UNTIL
)


@dataclass(frozen=True)
class Pki:
    root: Made
    intermediate: Made
    rogue_root: Made
    es256: Made
    eddsa: Made
    rs256: Made
    via_intermediate: Made
    rogue_signer: Made
    expired: Made
    not_yet_valid: Made
    no_digital_signature: Made
    no_key_usage: Made
    pinned_self_signed: Made
    not_a_ca: Made
    under_not_a_ca: Made
    ca_without_cert_sign: Made
    under_ca_without_cert_sign: Made
    expired_intermediate: Made
    under_expired_intermediate: Made
    path_len_zero_root: Made
    path_len_zero_intermediate: Made
    under_path_len_zero: Made
    critical_policy: Made


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = _issue("Test Root CA", _ec(), None, ca=True, usage=CA_USAGE)
    intermediate = _issue("Test Intermediate CA", _ec(), root, ca=True, usage=CA_USAGE)
    rogue_root = _issue("Test Root CA", _ec(), None, ca=True, usage=CA_USAGE)  # same name!
    not_a_ca = _issue("Not A CA", _ec(), root, ca=False, usage=CA_USAGE)
    ca_without_cert_sign = _issue(
        "CA Without keyCertSign", _ec(), root, ca=True, usage=SIGNER_USAGE
    )
    expired_intermediate = _issue(
        "Expired Intermediate",
        _ec(),
        root,
        ca=True,
        usage=CA_USAGE,
        not_after=NOW - timedelta(days=1),
    )
    path_len_zero_root = _issue(
        "PathLen0 Root", _ec(), None, ca=True, usage=CA_USAGE, path_length=0
    )
    path_len_zero_intermediate = _issue(
        "PathLen0 Intermediate", _ec(), path_len_zero_root, ca=True, usage=CA_USAGE
    )
    return Pki(
        root=root,
        intermediate=intermediate,
        rogue_root=rogue_root,
        es256=_issue("ES256 Publisher", _ec(), root),
        eddsa=_issue("EdDSA Publisher", ed25519.Ed25519PrivateKey.generate(), root),
        rs256=_issue(
            "RS256 Publisher", rsa.generate_private_key(public_exponent=65537, key_size=2048), root
        ),
        via_intermediate=_issue("Publisher Under Intermediate", _ec(), intermediate),
        rogue_signer=_issue("ES256 Publisher", _ec(), rogue_root),
        expired=_issue(
            "Expired Publisher",
            _ec(),
            root,
            not_before=NOW - timedelta(days=400),
            not_after=NOW - timedelta(seconds=1),
        ),
        not_yet_valid=_issue(
            "Future Publisher", _ec(), root, not_before=NOW + timedelta(seconds=1)
        ),
        no_digital_signature=_issue("Encipher-only Publisher", _ec(), root, usage=NO_SIGN_USAGE),
        no_key_usage=_issue("No-KeyUsage Publisher", _ec(), root, usage=None),
        pinned_self_signed=_issue("Pinned Publisher", _ec(), None, ca=None),
        not_a_ca=not_a_ca,
        under_not_a_ca=_issue("Publisher Under Non-CA", _ec(), not_a_ca),
        ca_without_cert_sign=ca_without_cert_sign,
        under_ca_without_cert_sign=_issue(
            "Publisher Under No-CertSign CA", _ec(), ca_without_cert_sign
        ),
        expired_intermediate=expired_intermediate,
        under_expired_intermediate=_issue(
            "Publisher Under Expired CA", _ec(), expired_intermediate
        ),
        path_len_zero_root=path_len_zero_root,
        path_len_zero_intermediate=path_len_zero_intermediate,
        under_path_len_zero=_issue("Publisher Too Deep", _ec(), path_len_zero_intermediate),
        critical_policy=_issue(
            "Publisher With Critical Policy",
            _ec(),
            root,
            extra=[
                (
                    x509.CertificatePolicies(
                        [x509.PolicyInformation(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), None)]
                    ),
                    True,
                )
            ],
        ),
    )


@pytest.fixture(scope="session")
def trust(pki: Pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.cert])


def _signer(identity: Made, *issuers: Made, alg: str | None = None) -> Signer:
    return Signer(identity.key, [identity.cert, *(i.cert for i in issuers)], alg)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _header(signed: dict[str, Any]) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(_b64url_decode(signed[SIGNATURE_MEMBER].split(".")[0]))
    return header


# ---------------------------------------------------------------------------------------------
# sample messages (Part 14 §7.2.5.5.2 ua-metadata, §7.2.5.5.5 ua-status)


def metadata_message() -> dict[str, Any]:
    def field(name: str, built_in: int, data_type: str, field_id: str) -> dict[str, Any]:
        return {
            "Name": name,
            "FieldFlags": 0,
            "BuiltInType": built_in,
            "DataType": data_type,
            "ValueRank": -1,
            "ArrayDimensions": [],
            "MaxStringLength": 0,
            "DataSetFieldId": field_id,
            "Properties": [
                {"Key": {"Name": "EngineeringUnits"}, "Value": {"UaType": 12, "Value": "°C"}}
            ],
        }

    return {
        "MessageId": "b1f4a2c0-7d1e-4f55-9a0e-3c2b8d6e9f01",
        "MessageType": "ua-metadata",
        "PublisherId": "plant-7/line-2",
        "DataSetWriterId": 3,
        "WriterGroupName": "Fast",
        "DataSetWriterName": "Boiler",
        "Timestamp": "2025-06-01T12:00:00.1234567Z",
        "MetaData": {
            "Name": "Boiler",
            "Description": {"Locale": "en", "Text": 'Boiler 1 "main"\n\tline'},
            "Namespaces": ["http://opcfoundation.org/UA/", "urn:example:boiler"],
            "Fields": [
                field("Temperature", 11, "i=11", "5f0c1e8a-3b7d-4e2a-9c41-0d8f6b2a7e13"),
                field("Pressure", 10, "i=10", "0a9d4e6c-1f2b-4c3d-8e5f-6a7b8c9d0e1f"),
                field("Running", 1, "i=1", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"),
                {
                    "Name": "Setpoints",
                    "FieldFlags": 0,
                    "BuiltInType": 11,
                    "DataType": "nsu=urn:example:boiler;s=Setpoint%3BType",
                    "ValueRank": 1,
                    "ArrayDimensions": [4],
                    "MaxStringLength": 0,
                    "DataSetFieldId": "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b",
                    "Properties": [],
                },
            ],
            "ConfigurationVersion": {"MajorVersion": 770000000, "MinorVersion": 770000042},
            "Scale": 0.5,
            "Ratio": -1.25e-7,
        },
    }


def status_message() -> dict[str, Any]:
    return {
        "MessageId": "3f1d",
        "MessageType": "ua-status",
        "PublisherId": "plant-7/line-2",
        "Timestamp": "2025-06-01T12:00:00Z",
        "IsCyclic": True,
        "Status": 2,
        "NextReportTime": "2025-06-01T12:01:00Z",
    }


@pytest.fixture(scope="session")
def signed_metadata(pki: Pki) -> dict[str, Any]:
    return sign_message(metadata_message(), _signer(pki.es256), issued_at=NOW)


def _verify(message: Any, trust: TrustStore) -> VerificationResult:
    return verify_message(message, trust, at=NOW)


def _reason(message: Any, trust: TrustStore) -> VerifyFailure | None:
    result = _verify(message, trust)
    assert result.ok == (result.reason is None)
    return result.reason


# ---------------------------------------------------------------------------------------------
# format


def test_signing_appends_the_member_last_and_leaves_the_input_untouched(pki: Pki) -> None:
    message = metadata_message()
    original = copy.deepcopy(message)
    signed = sign_message(message, _signer(pki.es256), issued_at=NOW)
    assert message == original
    assert list(signed)[-1] == SIGNATURE_MEMBER == "JwsSignature"
    assert list(signed)[:-1] == list(original)


def test_plain_subscriber_ignoring_unknown_members_reads_the_original_message(
    signed_metadata: dict[str, Any],
) -> None:
    received = json.loads(json.dumps(signed_metadata))
    received.pop(SIGNATURE_MEMBER)
    assert received == metadata_message()


def test_member_is_a_detached_compact_jws_with_the_documented_header(pki: Pki) -> None:
    signed = sign_message(metadata_message(), _signer(pki.es256), issued_at=NOW)
    protected, payload, signature = signed[SIGNATURE_MEMBER].split(".")
    assert payload == ""
    assert len(_b64url_decode(signature)) == 64  # ES256 raw r||s, not DER
    header = _header(signed)
    der = pki.es256.cert.public_bytes(serialization.Encoding.DER)
    thumbprint = _b64url(hashlib.sha256(der).digest())
    assert header == {
        "alg": "ES256",
        "typ": JWS_TYPE,
        "kid": thumbprint,
        "x5t#S256": thumbprint,
        "x5c": [base64.b64encode(der).decode()],
        "iat": int(NOW.timestamp()),
    }
    assert _b64url_decode(protected) == canonicalize(header)


def test_signing_is_deterministic_apart_from_the_signature_value(pki: Pki) -> None:
    signer = _signer(pki.eddsa)  # Ed25519 signatures are deterministic
    first = sign_message(metadata_message(), signer, issued_at=NOW)
    second = sign_message(metadata_message(), signer, issued_at=NOW)
    assert first == second


def test_one_signer_writes_each_seconds_header_with_its_own_iat(
    pki: Pki, trust: TrustStore
) -> None:
    """The encoded protected header is made once a second: messages signed in one second share
    it, the next second has its own iat, and a second already past is made again."""
    signer = _signer(pki.es256)
    later = NOW + timedelta(seconds=1.5)
    signed = [
        sign_message(metadata_message(), signer, issued_at=t)
        for t in (NOW, NOW + timedelta(milliseconds=900), later, NOW)
    ]
    iats = [_header(m)["iat"] for m in signed]
    assert iats == [int(NOW.timestamp())] * 2 + [int(later.timestamp()), int(NOW.timestamp())]
    for message in signed:
        assert _verify(message, trust).ok


# ---------------------------------------------------------------------------------------------
# successful verification


@pytest.mark.parametrize(
    ("identity", "alg", "expected_alg"),
    [
        ("es256", None, "ES256"),
        ("eddsa", None, "EdDSA"),
        ("eddsa", "Ed25519", "Ed25519"),
        ("rs256", None, "RS256"),
    ],
)
def test_signed_message_verifies_for_each_algorithm_after_json_round_trip(
    pki: Pki, trust: TrustStore, identity: str, alg: str | None, expected_alg: str
) -> None:
    signer = _signer(getattr(pki, identity), alg=alg)
    assert signer.algorithm == expected_alg
    signed = sign_message(metadata_message(), signer, issued_at=NOW)
    assert _header(signed)["alg"] == expected_alg
    received = json.loads(json.dumps(signed, indent=2, ensure_ascii=True))
    result = _verify(received, trust)
    assert result.ok, result.detail
    assert result.reason is None
    assert result.signer_subject == getattr(pki, identity).cert.subject.rfc4514_string()
    assert result.thumbprint == thumbprint_s256(getattr(pki, identity).cert)
    assert result.issued_at == NOW


def test_verification_does_not_depend_on_member_order_or_whitespace(
    signed_metadata: dict[str, Any], trust: TrustStore
) -> None:
    reordered = dict(reversed(list(signed_metadata.items())))
    reordered["MetaData"] = dict(sorted(signed_metadata["MetaData"].items(), reverse=True))
    assert _verify(json.loads(json.dumps(reordered, separators=(",", ":"))), trust).ok


def test_any_message_type_can_be_signed_not_only_metadata(pki: Pki, trust: TrustStore) -> None:
    signed = sign_message(status_message(), _signer(pki.es256), issued_at=NOW)
    assert _verify(signed, trust).ok


def test_chain_through_an_intermediate_ca_in_x5c_verifies(pki: Pki, trust: TrustStore) -> None:
    signed = sign_message(
        metadata_message(), _signer(pki.via_intermediate, pki.intermediate), issued_at=NOW
    )
    assert len(_header(signed)["x5c"]) == 2
    result = _verify(signed, trust)
    assert result.ok, result.detail


def test_x5c_may_include_the_root_and_list_issuers_in_any_order(
    pki: Pki, trust: TrustStore
) -> None:
    signer = _signer(pki.via_intermediate, pki.root, pki.intermediate)
    assert _verify(sign_message(metadata_message(), signer, issued_at=NOW), trust).ok


def test_intermediate_missing_from_x5c_is_untrusted_unless_it_is_an_anchor(pki: Pki) -> None:
    signed = sign_message(metadata_message(), _signer(pki.via_intermediate), issued_at=NOW)
    assert _reason(signed, TrustStore(anchors=[pki.root.cert])) is VerifyFailure.UNTRUSTED_CHAIN
    assert _verify(signed, TrustStore(anchors=[pki.intermediate.cert])).ok


def test_pinned_signer_certificate_verifies_without_any_ca(pki: Pki) -> None:
    signed = sign_message(metadata_message(), _signer(pki.pinned_self_signed), issued_at=NOW)
    result = _verify(signed, TrustStore(pinned=[pki.pinned_self_signed.cert]))
    assert result.ok, result.detail
    assert "pinned" in result.detail
    # A CA-issued signer may be pinned too, without trusting its CA.
    signed = sign_message(metadata_message(), _signer(pki.es256), issued_at=NOW)
    assert _verify(signed, TrustStore(pinned=[pki.es256.cert])).ok


def test_pinning_matches_exact_der_not_the_same_key_or_name(pki: Pki) -> None:
    reissued = _issue("Pinned Publisher", pki.pinned_self_signed.key, None, ca=None)
    assert reissued.cert != pki.pinned_self_signed.cert
    signed = sign_message(metadata_message(), Signer(reissued.key, [reissued.cert]), issued_at=NOW)
    store = TrustStore(pinned=[pki.pinned_self_signed.cert])
    assert _reason(signed, store) is VerifyFailure.UNTRUSTED_CHAIN


def test_trust_store_from_pem_sorts_cas_into_anchors_and_others_into_pins(pki: Pki) -> None:
    store = TrustStore.from_pem(_pem(pki.root.cert, pki.pinned_self_signed.cert))
    assert store.anchors == (pki.root.cert,)
    assert store.pinned == (pki.pinned_self_signed.cert,)
    for identity in (pki.es256, pki.pinned_self_signed):
        assert _verify(sign_message(status_message(), _signer(identity), issued_at=NOW), store).ok
    with pytest.raises(ValueError):
        TrustStore.from_pem(b"")
    with pytest.raises(ValueError):
        TrustStore()


def test_signer_from_pem_puts_the_key_certificate_first_and_accepts_a_password(
    pki: Pki, trust: TrustStore
) -> None:
    key_pem = pki.via_intermediate.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    bundle = _pem(pki.intermediate.cert, pki.via_intermediate.cert)
    signer = Signer.from_pem(key_pem, bundle, password=b"secret")
    assert signer.chain == (pki.via_intermediate.cert, pki.intermediate.cert)
    assert signer.algorithm == "ES256"
    assert _verify(sign_message(metadata_message(), signer, issued_at=NOW), trust).ok
    with pytest.raises(ValueError, match="no certificate"):
        Signer.from_pem(key_pem, _pem(pki.intermediate.cert), password=b"secret")


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: Signer(p.es256.key, [p.eddsa.cert]), "does not hold the signing key"),
        (lambda p: Signer(p.es256.key, []), "at least the signer"),
        (lambda p: Signer(p.es256.key, [p.es256.cert], "RS256"), "RS256 needs an RSA key"),
        (lambda p: Signer(p.eddsa.key, [p.eddsa.cert], "ES256"), "ES256 needs an EC"),
        (lambda p: Signer(p.es256.key, [p.es256.cert], "none"), "unsupported algorithm"),
        (lambda p: Signer(p.es256.key, [p.es256.cert], "HS256"), "unsupported algorithm"),
    ],
)
def test_signer_refuses_keys_that_do_not_match_certificate_or_algorithm(
    pki: Pki, make: Callable[[Pki], Signer], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        make(pki)


def test_signer_refuses_ecdsa_keys_not_on_p256() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    identity = _issue("P-384", key, None)
    with pytest.raises(ValueError, match="P-256"):
        Signer(identity.key, [identity.cert])


def test_sign_message_refuses_already_signed_naive_time_and_non_json_values(
    pki: Pki, signed_metadata: dict[str, Any]
) -> None:
    signer = _signer(pki.es256)
    with pytest.raises(ValueError, match="already has"):
        sign_message(signed_metadata, signer, issued_at=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_message(status_message(), signer, issued_at=datetime(2025, 6, 1))
    with pytest.raises(TypeError, match="datetime is not a JSON type"):
        sign_message({"Timestamp": NOW}, signer, issued_at=NOW)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        sign_message({"Big": 2**63}, signer, issued_at=NOW)


def test_verify_requires_an_aware_verification_time(
    signed_metadata: dict[str, Any], trust: TrustStore
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_message(signed_metadata, trust, at=datetime(2025, 6, 1))


# ---------------------------------------------------------------------------------------------
# interoperability with an independent JOSE implementation (joserfc)


def _joserfc_registry(alg: str) -> JWSRegistry:
    """joserfc, strict by default, must be told two things (see docs/signing.md): the protected
    header with x5c exceeds its 512-byte cap, and "iat" is not a registered JWS header parameter."""
    registry = JWSRegistry(
        header_registry={"iat": HeaderParameter("Issued At", "int")}, algorithms=[alg]
    )
    registry.max_header_length = 16_384
    return registry


def _jwk(identity: Made) -> ECKey | OKPKey | RSAKey:
    pem = identity.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(identity.key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(pem)
    if isinstance(identity.key, ed25519.Ed25519PrivateKey):
        return OKPKey.import_key(pem)
    return RSAKey.import_key(pem)


@pytest.mark.parametrize("identity", ["es256", "eddsa", "rs256"])
def test_joserfc_verifies_our_signature_with_the_jcs_bytes_as_detached_payload(
    pki: Pki, identity: str
) -> None:
    ident: Made = getattr(pki, identity)
    signed = sign_message(metadata_message(), _signer(ident), issued_at=NOW)
    received = json.loads(json.dumps(signed))
    payload = canonicalize({k: v for k, v in received.items() if k != SIGNATURE_MEMBER})
    assert payload == detached_payload(received)
    protected, _, signature = received[SIGNATURE_MEMBER].split(".")
    alg = _header(signed)["alg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc flags "EdDSA" per RFC 9864
        token = jws.deserialize_compact(
            f"{protected}.{_b64url(payload)}.{signature}",
            _jwk(ident),
            registry=_joserfc_registry(alg),
        )
        with pytest.raises(BadSignatureError):
            jws.deserialize_compact(
                f"{protected}.{_b64url(payload + b' ')}.{signature}",
                _jwk(ident),
                registry=_joserfc_registry(alg),
            )
    assert token.payload == payload
    assert token.protected["x5t#S256"] == thumbprint_s256(ident.cert)


def test_signature_made_by_joserfc_verifies_with_us(pki: Pki, trust: TrustStore) -> None:
    message = metadata_message()
    der = pki.es256.cert.public_bytes(serialization.Encoding.DER)
    header = {  # joserfc serialises the header its own way (not JCS, other member order)
        "typ": JWS_TYPE,
        "alg": "ES256",
        "x5c": [base64.b64encode(der).decode()],
        "iat": int(NOW.timestamp()),
    }
    private_jwk = ECKey.import_key(
        pki.es256.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    compact = jws.serialize_compact(
        header, canonicalize(message), private_jwk, registry=_joserfc_registry("ES256")
    )
    message[SIGNATURE_MEMBER] = jws.detach_content(compact)
    result = _verify(message, trust)
    assert result.ok, result.detail


# ---------------------------------------------------------------------------------------------
# tampering (hypothesis)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every node below the root: dict keys and list indexes."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _containers(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict | list):
        yield prefix
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            yield from _containers(child, (*prefix, key))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


UNSIGNED_PATHS = sorted(_paths(metadata_message()), key=repr)
DICT_PATHS = sorted(
    (p for p in _containers(metadata_message()) if isinstance(_get(metadata_message(), p), dict)),
    key=repr,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(path=st.sampled_from(UNSIGNED_PATHS), replacement=json_values)
def test_changing_any_single_value_anywhere_breaks_the_signature(
    signed_metadata: dict[str, Any], trust: TrustStore, path: tuple[Any, ...], replacement: Any
) -> None:
    tampered = copy.deepcopy(signed_metadata)
    assume(canonicalize(_get(tampered, path)) != canonicalize(replacement))  # 1 vs 1.0 is equal
    _get(tampered, path[:-1])[path[-1]] = replacement
    assert _reason(tampered, trust) is VerifyFailure.BAD_SIGNATURE


@FUZZ
@given(path=st.sampled_from(UNSIGNED_PATHS))
def test_removing_any_member_or_array_element_breaks_the_signature(
    signed_metadata: dict[str, Any], trust: TrustStore, path: tuple[Any, ...]
) -> None:
    tampered = copy.deepcopy(signed_metadata)
    del _get(tampered, path[:-1])[path[-1]]
    assert _reason(tampered, trust) is VerifyFailure.BAD_SIGNATURE


@FUZZ
@given(path=st.sampled_from(DICT_PATHS), name=st.text(min_size=1, max_size=10), value=json_values)
def test_adding_an_unknown_member_anywhere_breaks_the_signature(
    signed_metadata: dict[str, Any],
    trust: TrustStore,
    path: tuple[Any, ...],
    name: str,
    value: Any,
) -> None:
    tampered = copy.deepcopy(signed_metadata)
    target = _get(tampered, path)
    assume(name not in target)
    target[name] = value
    assert _reason(tampered, trust) is VerifyFailure.BAD_SIGNATURE


@FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_reordering_members_keeps_the_signature_valid_but_reordering_arrays_does_not(
    signed_metadata: dict[str, Any], trust: TrustStore, rnd: random.Random
) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    reordered = shuffled(signed_metadata)
    assert _verify(reordered, trust).ok
    fields = reordered["MetaData"]["Fields"]
    reordered["MetaData"]["Fields"] = fields[1:] + fields[:1]  # arrays are ordered in JSON
    assert _reason(reordered, trust) is VerifyFailure.BAD_SIGNATURE


@FUZZ
@given(data=st.data())
def test_flipping_any_byte_of_the_serialised_message_breaks_the_signature(
    signed_metadata: dict[str, Any], trust: TrustStore, data: st.DataObject
) -> None:
    """A subscriber receives the message with one byte changed (outside the signature member)."""
    unsigned = {k: v for k, v in signed_metadata.items() if k != SIGNATURE_MEMBER}
    wire = bytearray(json.dumps(unsigned, ensure_ascii=False).encode("utf-8"))
    index = data.draw(st.integers(0, len(wire) - 1), label="index")
    byte = data.draw(st.integers(0x09, 0x7E).filter(lambda b: b != wire[index]), label="byte")
    wire[index] = byte
    try:
        received = json.loads(wire.decode("utf-8"))
    except ValueError:
        assume(False)  # not JSON any more: a subscriber drops it before verifying
    assume(isinstance(received, dict))
    received[SIGNATURE_MEMBER] = signed_metadata[SIGNATURE_MEMBER]
    try:
        same = canonicalize(received) == canonicalize(signed_metadata)
    except ValueError:  # e.g. "3e12345678" parses as inf
        assert _reason(received, trust) is VerifyFailure.MALFORMED_MESSAGE
        return
    if same:  # whitespace, or 1 -> 1.0: the JSON value did not change
        assert _verify(received, trust).ok
    else:
        assert _reason(received, trust) is VerifyFailure.BAD_SIGNATURE


# A one-character change in the protected header can rename "alg" (ES256 -> ES2V6 or RS256) before
# the signature check is reached; in the signature segment it is always BAD or MALFORMED.
HEADER_TAMPER_REASONS = {
    VerifyFailure.BAD_SIGNATURE,
    VerifyFailure.MALFORMED_SIGNATURE,
    VerifyFailure.UNSUPPORTED_ALGORITHM,
    VerifyFailure.ALG_KEY_MISMATCH,
}
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@FUZZ
@given(data=st.data())
def test_changing_any_character_of_the_jws_value_fails_verification(
    signed_metadata: dict[str, Any], trust: TrustStore, data: st.DataObject
) -> None:
    token = signed_metadata[SIGNATURE_MEMBER]
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    char = data.draw(
        st.sampled_from(B64URL_ALPHABET + ".=+/ é").filter(lambda c: c != token[index]),
        label="char",
    )
    tampered = dict(signed_metadata)
    tampered[SIGNATURE_MEMBER] = token[:index] + char + token[index + 1 :]
    assert _reason(tampered, trust) in HEADER_TAMPER_REASONS


def test_changing_any_character_of_the_signature_segment_is_bad_or_malformed(
    signed_metadata: dict[str, Any], trust: TrustStore
) -> None:
    token = signed_metadata[SIGNATURE_MEMBER]
    start = token.rindex(".") + 1
    seen = set()
    for index in range(start, len(token)):
        for char in ("A", "z", "_"):
            if char == token[index]:
                continue
            tampered = dict(signed_metadata)
            tampered[SIGNATURE_MEMBER] = token[:index] + char + token[index + 1 :]
            reason = _reason(tampered, trust)
            assert reason in {VerifyFailure.BAD_SIGNATURE, VerifyFailure.MALFORMED_SIGNATURE}
            seen.add(reason)
    # The last character carries 2 unused bits: changing only those is caught as non-canonical.
    assert seen == {VerifyFailure.BAD_SIGNATURE, VerifyFailure.MALFORMED_SIGNATURE}


@FUZZ
@given(value=json_values)
def test_verification_never_raises_for_any_json_value_in_the_member(
    signed_metadata: dict[str, Any], trust: TrustStore, value: Any
) -> None:
    tampered = dict(signed_metadata)
    tampered[SIGNATURE_MEMBER] = value
    assert _reason(tampered, trust) is VerifyFailure.MALFORMED_SIGNATURE


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "typ", "x5c", "iat", "x5t#S256", "kid", "crit", "b64"]),
        json_values,
    ),
    signature=st.binary(max_size=80),
)
def test_verification_never_raises_for_any_protected_header(
    signed_metadata: dict[str, Any],
    trust: TrustStore,
    header: dict[str, Any],
    signature: bytes,
) -> None:
    tampered = dict(signed_metadata)
    tampered[SIGNATURE_MEMBER] = f"{_b64url(json.dumps(header).encode())}..{_b64url(signature)}"
    result = _verify(tampered, trust)
    assert not result.ok
    assert result.reason in {
        VerifyFailure.MALFORMED_SIGNATURE,
        VerifyFailure.UNSUPPORTED_ALGORITHM,
    }


# ---------------------------------------------------------------------------------------------
# failure reasons


def _forge(
    message: dict[str, Any],
    header: dict[str, Any],
    sign: Callable[[bytes], bytes] | None = None,
) -> dict[str, Any]:
    """Message with a hand-made JWS: ``header`` as given, signature from ``sign`` (or junk)."""
    protected = _b64url(json.dumps(header).encode())
    signing_input = f"{protected}.{_b64url(canonicalize(message))}".encode()
    signature = sign(signing_input) if sign else b"\x01" * 64
    forged = dict(message)
    forged[SIGNATURE_MEMBER] = f"{protected}..{_b64url(signature)}"
    return forged


def _es256_header(pki: Pki, **changes: Any) -> dict[str, Any]:
    header = _header(sign_message(status_message(), _signer(pki.es256), issued_at=NOW))
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def test_signature_by_an_untrusted_ca_with_the_same_name_is_untrusted(
    pki: Pki, trust: TrustStore
) -> None:
    signed = sign_message(
        metadata_message(), _signer(pki.rogue_signer, pki.rogue_root), issued_at=NOW
    )
    result = _verify(signed, trust)
    assert result.reason is VerifyFailure.UNTRUSTED_CHAIN
    assert result.signer_subject == "CN=ES256 Publisher"


def test_expired_and_not_yet_valid_signers_are_refused_at_the_verification_time(
    pki: Pki, trust: TrustStore
) -> None:
    expired = sign_message(metadata_message(), _signer(pki.expired), issued_at=NOW)
    future = sign_message(metadata_message(), _signer(pki.not_yet_valid), issued_at=NOW)
    assert _reason(expired, trust) is VerifyFailure.CERT_EXPIRED
    assert _reason(future, trust) is VerifyFailure.CERT_NOT_YET_VALID
    # the verification time decides, not the issue time
    before = pki.expired.cert.not_valid_after_utc - timedelta(days=1)
    signed_before = sign_message(metadata_message(), _signer(pki.expired), issued_at=before)
    assert verify_message(signed_before, trust, at=before).ok
    assert _reason(signed_before, trust) is VerifyFailure.CERT_EXPIRED
    assert verify_message(future, trust, at=NOW + timedelta(days=1)).ok


def test_expired_intermediate_or_anchor_is_refused(pki: Pki, trust: TrustStore) -> None:
    signed = sign_message(
        metadata_message(),
        _signer(pki.under_expired_intermediate, pki.expired_intermediate),
        issued_at=NOW,
    )
    assert _reason(signed, trust) is VerifyFailure.CERT_EXPIRED
    ok = sign_message(metadata_message(), _signer(pki.es256), issued_at=NOW)
    assert verify_message(ok, trust, at=VALID_UNTIL + timedelta(seconds=1)).reason is (
        VerifyFailure.CERT_EXPIRED
    )


@pytest.mark.parametrize(
    ("identity", "issuers", "detail"),
    [
        ("no_digital_signature", (), "lacks digitalSignature"),
        ("no_key_usage", (), "no keyUsage extension"),
        ("under_not_a_ca", ("not_a_ca",), "not a CA"),
        ("under_ca_without_cert_sign", ("ca_without_cert_sign",), "lacks keyCertSign"),
        ("critical_policy", (), "critical extension"),
    ],
)
def test_key_usage_and_ca_constraints_are_enforced(
    pki: Pki, trust: TrustStore, identity: str, issuers: tuple[str, ...], detail: str
) -> None:
    signer = _signer(getattr(pki, identity), *(getattr(pki, i) for i in issuers))
    result = _verify(sign_message(metadata_message(), signer, issued_at=NOW), trust)
    assert result.reason is VerifyFailure.KEY_USAGE
    assert detail in result.detail


def test_path_length_constraint_is_enforced(pki: Pki) -> None:
    signer = _signer(pki.under_path_len_zero, pki.path_len_zero_intermediate)
    signed = sign_message(metadata_message(), signer, issued_at=NOW)
    result = _verify(signed, TrustStore(anchors=[pki.path_len_zero_root.cert]))
    assert result.reason is VerifyFailure.KEY_USAGE
    assert "intermediate CAs" in result.detail


@pytest.mark.parametrize("trusted_as", ["anchor", "pinned"])
def test_a_ca_certificate_cannot_sign_even_when_trusted(pki: Pki, trusted_as: str) -> None:
    """A CA key signs certificates; a message signed with it is refused whether the CA is a
    trust anchor or pinned (it has digitalSignature, so only basicConstraints tells)."""
    signed = sign_message(metadata_message(), _signer(pki.root), issued_at=NOW)
    store = TrustStore(**{"anchors" if trusted_as == "anchor" else "pinned": [pki.root.cert]})
    result = _verify(signed, store)
    assert result.reason is VerifyFailure.KEY_USAGE
    assert "is a CA certificate" in result.detail
    assert result.signer_certificate is None


def test_a_leaf_without_basic_constraints_may_sign(pki: Pki) -> None:
    """RFC 5280: no basicConstraints means CA=false (pinned self-signed leaf)."""
    signed = sign_message(metadata_message(), _signer(pki.pinned_self_signed), issued_at=NOW)
    assert _verify(signed, TrustStore(pinned=[pki.pinned_self_signed.cert])).ok


def test_iat_in_the_future_beyond_the_clock_skew_is_refused(pki: Pki, trust: TrustStore) -> None:
    """A signature dated ahead of the verifier's clock is refused beyond the skew (default
    5 minutes, configurable), accepted within it; the signer is known either way."""
    ahead = sign_message(
        metadata_message(), _signer(pki.es256), issued_at=NOW + timedelta(minutes=6)
    )
    result = _verify(ahead, trust)
    assert result.reason is VerifyFailure.ISSUED_IN_FUTURE
    assert result.signer_subject == "CN=ES256 Publisher"
    assert "more than 300 s after" in result.detail
    assert verify_message(ahead, trust, at=NOW, max_clock_skew=timedelta(minutes=7)).ok
    within = sign_message(
        metadata_message(), _signer(pki.es256), issued_at=NOW + timedelta(minutes=4)
    )
    assert _verify(within, trust).ok
    assert _verify(within, trust).signer_certificate == pki.es256.cert


def test_pinned_signer_still_needs_digital_signature_usage(pki: Pki) -> None:
    signed = sign_message(metadata_message(), _signer(pki.no_key_usage), issued_at=NOW)
    assert _reason(signed, TrustStore(pinned=[pki.no_key_usage.cert])) is VerifyFailure.KEY_USAGE


def test_alg_header_not_matching_the_certificate_key_is_alg_key_mismatch(
    pki: Pki, trust: TrustStore
) -> None:
    """Pinned: ALG_KEY_MISMATCH, found before the signature is checked (not BAD_SIGNATURE)."""
    message = status_message()
    # EC certificate, header claims EdDSA, signed by some Ed25519 key
    other = ed25519.Ed25519PrivateKey.generate()
    forged = _forge(message, _es256_header(pki, alg="EdDSA"), other.sign)
    assert _reason(forged, trust) is VerifyFailure.ALG_KEY_MISMATCH
    # EC certificate, header claims RS256
    assert _reason(_forge(message, _es256_header(pki, alg="RS256")), trust) is (
        VerifyFailure.ALG_KEY_MISMATCH
    )


def test_rs256_with_a_short_rsa_key_is_alg_key_mismatch(pki: Pki) -> None:
    weak = _issue("Weak RSA", rsa.generate_private_key(public_exponent=65537, key_size=1024), None)
    der = weak.cert.public_bytes(serialization.Encoding.DER)
    header = {"alg": "RS256", "typ": JWS_TYPE, "x5c": [base64.b64encode(der).decode()], "iat": 1}
    forged = _forge(status_message(), header)
    result = _verify(forged, TrustStore(pinned=[weak.cert]))
    assert result.reason is VerifyFailure.ALG_KEY_MISMATCH
    assert "2048" in result.detail


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "ES384", "PS256", "RS512", "ES256K"])
def test_algorithms_outside_the_profile_are_unsupported(
    pki: Pki, trust: TrustStore, alg: str
) -> None:
    forged = _forge(status_message(), _es256_header(pki, alg=alg))
    forged[SIGNATURE_MEMBER] = forged[SIGNATURE_MEMBER].rsplit(".", 1)[0] + "."  # 'none' style
    assert _reason(forged, trust) is VerifyFailure.UNSUPPORTED_ALGORITHM


def test_hs256_with_the_certificate_as_secret_is_refused(pki: Pki, trust: TrustStore) -> None:
    import hmac

    secret = pki.es256.cert.public_bytes(serialization.Encoding.PEM)
    forged = _forge(
        status_message(),
        _es256_header(pki, alg="HS256"),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    assert _reason(forged, trust) is VerifyFailure.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        ["a", "b"],
        "",
        "garbage",
        "a.b",
        "a..b..c",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",  # attached payload: not our detached profile
        "!!!..AAAA",
        "e30..AAAA",  # header {} without alg
        "W10..AAAA",  # header [] not an object
        "bnVsbA..AAAA",  # header null
        "_w..AAAA",  # header not UTF-8
    ],
)
def test_garbage_in_the_member_is_malformed(
    signed_metadata: dict[str, Any], trust: TrustStore, value: Any
) -> None:
    tampered = dict(signed_metadata)
    tampered[SIGNATURE_MEMBER] = value
    assert _reason(tampered, trust) is VerifyFailure.MALFORMED_SIGNATURE


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"typ": "JWT"}, "typ"),
        ({"typ": None}, "typ"),
        ({"iat": "2025-06-01"}, "iat"),
        ({"iat": True}, "iat"),
        ({"iat": None}, "iat"),
        ({"iat": 10**30}, "iat"),
        ({"x5c": []}, "x5c"),
        ({"x5c": None}, "x5c"),
        ({"x5c": ["not base64!"]}, "x5c[0]"),
        ({"x5c": ["AAAA"]}, "x5c[0]"),
        ({"x5c": [7]}, "x5c[0]"),
        ({"x5t#S256": "AAAA"}, "x5t#S256"),
        ({"crit": ["exp"]}, "crit"),
        ({"b64": False}, "b64"),
    ],
)
def test_header_outside_the_profile_is_malformed(
    pki: Pki, trust: TrustStore, changes: dict[str, Any], detail: str
) -> None:
    header = _es256_header(pki)
    for name, value in changes.items():
        if value is None:
            header.pop(name)
        else:
            header[name] = value
    result = _verify(_forge(status_message(), header, _signer(pki.es256).sign_bytes), trust)
    assert result.reason is VerifyFailure.MALFORMED_SIGNATURE
    assert detail in result.detail


def test_duplicate_header_parameters_are_malformed(
    signed_metadata: dict[str, Any], trust: TrustStore
) -> None:
    header = _header(signed_metadata)
    text = json.dumps(header)[:-1] + ', "alg": "ES256"}'
    tampered = dict(signed_metadata)
    signature = signed_metadata[SIGNATURE_MEMBER].split(".")[2]
    tampered[SIGNATURE_MEMBER] = f"{_b64url(text.encode())}..{signature}"
    result = _verify(tampered, trust)
    assert result.reason is VerifyFailure.MALFORMED_SIGNATURE
    assert "duplicate" in result.detail


def test_message_without_the_member_is_missing_signature(trust: TrustStore) -> None:
    result = _verify(metadata_message(), trust)
    assert result.reason is VerifyFailure.MISSING_SIGNATURE
    assert not result


@pytest.mark.parametrize("bad", [float("nan"), 2**60, "\ud800", b"bytes"])
def test_message_that_cannot_be_canonicalised_is_malformed_message(
    signed_metadata: dict[str, Any], trust: TrustStore, bad: Any
) -> None:
    tampered = dict(signed_metadata)
    tampered["Extra"] = bad
    assert _reason(tampered, trust) is VerifyFailure.MALFORMED_MESSAGE


@pytest.mark.parametrize("message", [None, [], "text", 42])
def test_non_object_message_is_malformed_message(trust: TrustStore, message: Any) -> None:
    assert _reason(message, trust) is VerifyFailure.MALFORMED_MESSAGE


def test_failure_reasons_are_pairwise_distinct(pki: Pki, trust: TrustStore) -> None:
    def signed(identity: Made, *issuers: Made) -> dict[str, Any]:
        return sign_message(metadata_message(), _signer(identity, *issuers), issued_at=NOW)

    good = signed(pki.es256)
    tampered = copy.deepcopy(good)
    tampered["MetaData"]["Fields"][0]["BuiltInType"] = 6
    malformed = dict(good, **{SIGNATURE_MEMBER: "garbage"})
    cases = {
        VerifyFailure.MISSING_SIGNATURE: metadata_message(),
        VerifyFailure.MALFORMED_MESSAGE: dict(good, Extra=float("inf")),
        VerifyFailure.MALFORMED_SIGNATURE: malformed,
        VerifyFailure.UNSUPPORTED_ALGORITHM: _forge(
            status_message(), _es256_header(pki, alg="none")
        ),
        VerifyFailure.ALG_KEY_MISMATCH: _forge(status_message(), _es256_header(pki, alg="RS256")),
        VerifyFailure.BAD_SIGNATURE: tampered,
        VerifyFailure.UNTRUSTED_CHAIN: signed(pki.rogue_signer, pki.rogue_root),
        VerifyFailure.CERT_NOT_YET_VALID: signed(pki.not_yet_valid),
        VerifyFailure.CERT_EXPIRED: signed(pki.expired),
        VerifyFailure.KEY_USAGE: signed(pki.no_digital_signature),
        VerifyFailure.ISSUED_IN_FUTURE: sign_message(
            metadata_message(), _signer(pki.es256), issued_at=NOW + timedelta(hours=1)
        ),
    }
    reasons = {expected: _reason(message, trust) for expected, message in cases.items()}
    assert reasons == {expected: expected for expected in cases}
    assert set(reasons.values()) == set(VerifyFailure)
    # no Enum aliases: every reason has its own value
    assert len({reason.value for reason in VerifyFailure}) == len(VerifyFailure.__members__)
    assert _verify(good, trust).ok

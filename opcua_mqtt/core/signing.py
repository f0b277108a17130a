"""Message-level signatures for PubSub JSON messages (an opcua-mqtt extension).

OPC 10000-14 defines no message security for the JSON mapping. We add one optional member,
``"JwsSignature"`` (:data:`SIGNATURE_MEMBER`), holding a JWS (RFC 7515) in compact serialisation
with a detached payload (RFC 7515 Appendix F): ``<protected>..<signature>``. The payload is the
RFC 8785 canonical form (JCS) of the message *without* that member, so the signature survives any
re-serialisation, and a plain Part 14 subscriber that ignores unknown members reads the message
unchanged. The module is message-type agnostic (ua-metadata, ua-status, ua-connection, ...).

Protected header (serialised with JCS, though verifiers must not depend on that):

``alg``       ``ES256`` (ECDSA P-256/SHA-256, raw r||s), ``EdDSA`` (Ed25519) or ``RS256``
              (RSASSA-PKCS1-v1_5/SHA-256, key >= 2048 bits); ``Ed25519`` (RFC 9864) is accepted
              and may be chosen explicitly
``typ``       :data:`JWS_TYPE`
``x5c``       signer certificate first, then its issuers (standard base64 DER)
``x5t#S256``  base64url SHA-256 of the signer certificate's DER
``kid``       same value as ``x5t#S256``
``iat``       integer Unix seconds, given by the caller

Signing input is the ordinary JWS one, ``BASE64URL(protected) || '.' || BASE64URL(JCS(message))``
(``b64`` stays true), so every JOSE library can verify it once the payload is re-attached.

Verification (:func:`verify_message`) never raises for bad input: it returns a
:class:`VerificationResult` whose :class:`VerifyFailure` says which check failed. The trust store
and the certificate path checks are in :mod:`.x509_trust`; which PublisherId a signer may speak
for is :mod:`.identity`.

No I/O and no clock reads: callers pass ``issued_at`` and ``at``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .canonical_json import canonicalize, unique_members
from .jws_keys import SigningKey, alg_fits_key, default_alg, sign_raw, signature_ok, spki
from .x509_trust import (
    CERT_ERRORS,
    MAX_CHAIN_LENGTH,
    CertificateProblem,
    TrustStore,
    check_trust,
    subject_name,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_CLOCK_SKEW",
    "JWS_TYPE",
    "MAX_CHAIN_LENGTH",
    "SIGNATURE_MEMBER",
    "Signer",
    "TrustStore",
    "VerificationResult",
    "VerifyFailure",
    "detached_payload",
    "sign_message",
    "thumbprint_s256",
    "verify_message",
]

#: Top-level member that carries the signature. Part 14 subscribers ignore unknown members.
SIGNATURE_MEMBER = "JwsSignature"

#: ``typ`` header value: a JWS over the JCS form of an opcua-mqtt PubSub JSON message.
JWS_TYPE = "opcua-mqtt+jws"

#: Accepted ``alg`` values. ``Ed25519`` is the RFC 9864 fully-specified name of ``EdDSA``/Ed25519.
ALGORITHMS = frozenset({"ES256", "EdDSA", "Ed25519", "RS256"})

#: How far ``iat`` may lie ahead of the verifier's clock: clocks differ a little, but a
#: signature dated well into the future would outlive any freshness check made on it.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class VerifyFailure(Enum):
    """Why :func:`verify_message` refused a message. Each check has its own value."""

    #: The message has no ``JwsSignature`` member.
    MISSING_SIGNATURE = "missing-signature"
    #: The message itself is not a JSON object that RFC 8785 can canonicalise
    #: (NaN, integer beyond ±2**53, lone surrogate, non-JSON type).
    MALFORMED_MESSAGE = "malformed-message"
    #: The member is not a detached compact JWS of our profile: bad structure or base64url,
    #: header not a JSON object, missing/ill-typed ``typ``/``iat``/``x5c``, ``crit`` present,
    #: undecodable certificate, ``x5t#S256`` not matching the signer certificate.
    MALFORMED_SIGNATURE = "malformed-signature"
    #: ``alg`` is not one of :data:`ALGORITHMS` (this includes ``none`` and HMAC).
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    #: ``alg`` does not fit the signer certificate's key (type, curve, RSA size).
    ALG_KEY_MISMATCH = "alg-key-mismatch"
    #: The signature does not verify over the header and the canonical message.
    BAD_SIGNATURE = "bad-signature"
    #: No path from the signer certificate (via ``x5c``) to a trust anchor, and the signer
    #: certificate is not pinned.
    UNTRUSTED_CHAIN = "untrusted-chain"
    #: A certificate of the path is not valid yet at the verification time.
    CERT_NOT_YET_VALID = "cert-not-yet-valid"
    #: A certificate of the path has expired at the verification time.
    CERT_EXPIRED = "cert-expired"
    #: A certificate's extensions forbid this use: the signer is a CA (basicConstraints CA=true)
    #: or lacks keyUsage digitalSignature (a missing keyUsage extension counts as lacking it),
    #: an issuer lacks basicConstraints
    #: CA=true or keyUsage keyCertSign, a pathLenConstraint is exceeded, or a certificate has a
    #: critical extension we do not process.
    KEY_USAGE = "key-usage"
    #: ``iat`` lies further in the future than the allowed clock skew.
    ISSUED_IN_FUTURE = "issued-in-future"


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify_message`.

    ``signer_subject`` (RFC 4514), ``thumbprint`` (x5t#S256) and ``issued_at`` (from ``iat``) are
    filled in as soon as they could be read, also for most failures, for logging;
    ``signer_certificate`` only when the signature verified (so that a caller can ask what the
    signer may speak for, :mod:`.identity`).
    """

    ok: bool
    reason: VerifyFailure | None
    detail: str
    signer_subject: str | None = None
    thumbprint: str | None = None
    issued_at: datetime | None = None
    signer_certificate: x509.Certificate | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return self.ok


class _Failure(Exception):
    def __init__(self, reason: VerifyFailure, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------
# encoding helpers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str, what: str) -> bytes:
    """Strict base64url without padding; rejects non-canonical trailing bits."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded by the regex
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"{what} is not base64url") from exc
    if _b64url(data) != segment:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"{what} is not canonical base64url")
    return data


def thumbprint_s256(certificate: x509.Certificate) -> str:
    """``x5t#S256`` of a certificate: base64url SHA-256 of its DER encoding."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return _b64url(hashlib.sha256(der).digest())


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


# --------------------------------------------------------------------------------------------
# signing


@dataclass(frozen=True, eq=False)
class Signer:
    """A private key with its certificate chain (signer certificate first).

    ``alg`` defaults from the key type: EC P-256 -> ES256, Ed25519 -> EdDSA, RSA -> RS256. The
    constructor checks that the key matches ``chain[0]`` and fits ``alg``; it does not check the
    certificates' validity or key usage (the verifier does).
    """

    private_key: SigningKey
    chain: Sequence[x509.Certificate]
    alg: str | None = None
    _x5c: tuple[str, ...] = field(init=False, repr=False)
    _thumbprint: str = field(init=False, repr=False)
    #: The encoded protected header of the current second (see :meth:`protected`).
    _protected: dict[int, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        key = self.private_key
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            raise TypeError(f"unsupported private key type {type(key).__name__}")
        chain = tuple(self.chain)
        if not chain or not all(isinstance(c, x509.Certificate) for c in chain):
            raise ValueError("chain must hold at least the signer certificate")
        if len(chain) > MAX_CHAIN_LENGTH:
            raise ValueError(f"chain longer than {MAX_CHAIN_LENGTH} certificates")
        if spki(chain[0].public_key()) != spki(key.public_key()):
            raise ValueError("the first certificate of the chain does not hold the signing key")
        alg = self.alg if self.alg is not None else default_alg(key)
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {alg!r}; use one of {sorted(ALGORITHMS)}")
        mismatch = alg_fits_key(alg, key)
        if mismatch is not None:
            raise ValueError(mismatch)
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "alg", alg)
        object.__setattr__(
            self,
            "_x5c",
            tuple(
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
                for c in chain
            ),
        )
        object.__setattr__(self, "_thumbprint", thumbprint_s256(chain[0]))

    @property
    def algorithm(self) -> str:
        """The JWS ``alg`` in use (``alg`` after defaulting)."""
        assert self.alg is not None  # set in __post_init__
        return self.alg

    @property
    def certificate(self) -> x509.Certificate:
        """The signer certificate (``chain[0]``)."""
        return self.chain[0]

    @property
    def thumbprint(self) -> str:
        """``x5t#S256`` (and ``kid``) of the signer certificate."""
        return self._thumbprint

    @classmethod
    def from_pem(
        cls,
        key_pem: bytes,
        chain_pem: bytes,
        password: bytes | None = None,
        *,
        alg: str | None = None,
    ) -> Signer:
        """Load a PEM private key and a PEM bundle holding its certificate and issuers.

        The certificate matching the key is moved to the front; the others keep their order.
        Raises ``ValueError``/``TypeError`` for unreadable PEM, a wrong password, an unsupported
        key type, or a bundle without the key's certificate.
        """
        key = serialization.load_pem_private_key(key_pem, password=password)
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            raise TypeError(f"unsupported private key type {type(key).__name__}")
        certificates = x509.load_pem_x509_certificates(chain_pem)
        wanted = spki(key.public_key())
        for index, certificate in enumerate(certificates):
            if spki(certificate.public_key()) == wanted:
                rest = certificates[:index] + certificates[index + 1 :]
                return cls(key, (certificate, *rest), alg)
        raise ValueError("no certificate in the chain holds the public key of the private key")

    def header(self, issued_at: datetime) -> dict[str, Any]:
        """The protected header this signer writes for ``issued_at``."""
        _require_aware(issued_at, "issued_at")
        return {
            "alg": self.algorithm,
            "typ": JWS_TYPE,
            "kid": self._thumbprint,
            "x5t#S256": self._thumbprint,
            "x5c": list(self._x5c),
            "iat": int(issued_at.timestamp() // 1),
        }

    def protected(self, issued_at: datetime) -> str:
        """The encoded protected header for ``issued_at``: the same for every message signed
        within one second (``iat``), so made once a second rather than once a message (its
        certificate chain is most of a write-back answer's canonicalisation)."""
        header = self.header(issued_at)
        iat = header["iat"]
        encoded = self._protected.get(iat)
        if encoded is None:
            encoded = _b64url(canonicalize(header))
            self._protected.clear()
            self._protected[iat] = encoded
        return encoded

    def sign_bytes(self, data: bytes) -> bytes:
        """The JWS signature value (raw r||s for ES256) of ``data``."""
        return sign_raw(self.private_key, data)


def detached_payload(message: Mapping[str, Any]) -> bytes:
    """The signed payload: JCS of ``message`` without :data:`SIGNATURE_MEMBER`.

    Raises ``TypeError``/``ValueError`` if the rest is not canonicalisable JSON.
    """
    return canonicalize({k: v for k, v in message.items() if k != SIGNATURE_MEMBER})


def sign_message(message: dict[str, Any], signer: Signer, *, issued_at: datetime) -> dict[str, Any]:
    """Return a new dict: ``message`` plus :data:`SIGNATURE_MEMBER` as its last member.

    ``message`` must already be a JSON value (strings, numbers, lists, dicts; no datetime or
    bytes objects) exactly as it will be serialised. Raises ``ValueError`` if it is already
    signed or not canonicalisable, ``TypeError`` for non-JSON values, and ``ValueError`` for a
    naive ``issued_at``.
    """
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}")
    if SIGNATURE_MEMBER in message:
        raise ValueError(f"message already has a {SIGNATURE_MEMBER!r} member")
    payload = canonicalize(message)
    protected = signer.protected(issued_at)
    signing_input = f"{protected}.{_b64url(payload)}".encode("ascii")
    signature = _b64url(signer.sign_bytes(signing_input))
    signed = dict(message)
    signed[SIGNATURE_MEMBER] = f"{protected}..{signature}"
    return signed


# --------------------------------------------------------------------------------------------
# trust


# --------------------------------------------------------------------------------------------
# verification


def verify_message(
    message: Mapping[str, Any],
    trust: TrustStore,
    *,
    at: datetime,
    max_clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> VerificationResult:
    """Verify the :data:`SIGNATURE_MEMBER` of ``message`` against ``trust`` at time ``at``.

    Checks, in this order (the first failure is reported): the member is present; it is a
    detached compact JWS of our profile; ``alg`` is supported and fits the signer key; the
    message without the member canonicalises; the signature verifies over header and canonical
    message; the signer certificate is pinned or chains (issuer name and signature, each link)
    to an anchor; every certificate of that path is valid at ``at``; key usage and basic
    constraints allow the path (the signer a leaf); ``iat`` is at most ``max_clock_skew`` after
    ``at``.

    Never raises for any ``message`` content; raises ``ValueError`` only for a naive ``at``.
    """
    _require_aware(at, "at")
    state = _State()
    try:
        _verify(message, trust, at, state)
        if state.issued_at is not None and state.issued_at > at + max_clock_skew:
            raise _Failure(
                VerifyFailure.ISSUED_IN_FUTURE,
                f"signed at {state.issued_at.isoformat()} (iat), more than "
                f"{max_clock_skew.total_seconds():g} s after {at.isoformat()}",
            )
    except _Failure as failure:
        return VerificationResult(
            ok=False,
            reason=failure.reason,
            detail=failure.detail,
            signer_subject=state.subject,
            thumbprint=state.thumbprint,
            issued_at=state.issued_at,
        )
    except RecursionError:
        return VerificationResult(
            ok=False,
            reason=VerifyFailure.MALFORMED_MESSAGE,
            detail="message nested too deeply",
            signer_subject=state.subject,
            thumbprint=state.thumbprint,
            issued_at=state.issued_at,
        )
    return VerificationResult(
        ok=True,
        reason=None,
        detail=f"signed by {state.subject} ({state.alg}), {state.path_detail}",
        signer_subject=state.subject,
        thumbprint=state.thumbprint,
        issued_at=state.issued_at,
        signer_certificate=state.certificate,
    )


@dataclass
class _State:
    subject: str | None = None
    thumbprint: str | None = None
    issued_at: datetime | None = None
    alg: str | None = None
    path_detail: str = ""
    certificate: x509.Certificate | None = None


def _verify(message: Mapping[str, Any], trust: TrustStore, at: datetime, state: _State) -> None:
    if not isinstance(message, Mapping):
        raise _Failure(
            VerifyFailure.MALFORMED_MESSAGE,
            f"message is {type(message).__name__}, not a JSON object",
        )
    if SIGNATURE_MEMBER not in message:
        raise _Failure(VerifyFailure.MISSING_SIGNATURE, f"no {SIGNATURE_MEMBER!r} member")
    token = message[SIGNATURE_MEMBER]
    if not isinstance(token, str):
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE,
            f"{SIGNATURE_MEMBER!r} is {type(token).__name__}, not a string",
        )
    parts = token.split(".")
    if len(parts) != 3:
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE, "not a compact JWS (three dot-separated parts)"
        )
    protected, attached, signature_b64 = parts
    if attached:
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE, "payload must be detached (RFC 7515 Appendix F)"
        )
    header = _decode_header(protected)
    alg = _header_alg(header)
    state.alg = alg
    _check_header_profile(header, state)
    chain = _header_chain(header)
    signer_cert = chain[0]
    state.thumbprint = thumbprint_s256(signer_cert)
    state.subject = subject_name(signer_cert)
    x5t = header.get("x5t#S256")
    if x5t is not None and x5t != state.thumbprint:
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE,
            "x5t#S256 does not match the first x5c certificate",
        )
    try:
        public_key = signer_cert.public_key()
    except CERT_ERRORS as exc:
        raise _Failure(
            VerifyFailure.ALG_KEY_MISMATCH, f"signer certificate key unusable: {exc}"
        ) from exc
    mismatch = alg_fits_key(alg, public_key)
    if mismatch is not None:
        raise _Failure(VerifyFailure.ALG_KEY_MISMATCH, mismatch)
    signature = _b64url_decode(signature_b64, "signature")
    try:
        payload = detached_payload(message)
    except (TypeError, ValueError) as exc:
        raise _Failure(VerifyFailure.MALFORMED_MESSAGE, str(exc)) from exc
    signing_input = f"{protected}.{_b64url(payload)}".encode("ascii")
    if not signature_ok(alg, public_key, signing_input, signature):
        raise _Failure(
            VerifyFailure.BAD_SIGNATURE,
            "signature does not match the message (changed after signing?)",
        )
    try:
        state.path_detail = check_trust(chain, trust, at)
    except CertificateProblem as problem:
        raise _Failure(VerifyFailure(problem.code), problem.detail) from problem
    state.certificate = signer_cert


def _decode_header(protected: str) -> dict[str, Any]:
    raw = _b64url_decode(protected, "protected header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_members)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE, f"protected header is not JSON: {exc}"
        ) from exc
    if not isinstance(header, dict):
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "protected header is not a JSON object")
    return header


def _header_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "header has no string 'alg'")
    if alg not in ALGORITHMS:
        raise _Failure(
            VerifyFailure.UNSUPPORTED_ALGORITHM,
            f"alg {alg!r} not accepted; accepted: {', '.join(sorted(ALGORITHMS))}",
        )
    return alg


def _check_header_profile(header: Mapping[str, Any], state: _State) -> None:
    if "crit" in header:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "'crit' header extensions not supported")
    if header.get("b64", True) is not True:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "unencoded payload (b64) not supported")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != JWS_TYPE:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"typ is {typ!r}, expected {JWS_TYPE!r}")
    iat = header.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "header has no integer 'iat'")
    try:
        state.issued_at = datetime.fromtimestamp(iat, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"iat {iat} out of range") from exc


def _header_chain(header: Mapping[str, Any]) -> list[x509.Certificate]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, "header has no non-empty 'x5c' list")
    if len(x5c) > MAX_CHAIN_LENGTH:
        raise _Failure(
            VerifyFailure.MALFORMED_SIGNATURE,
            f"x5c holds more than {MAX_CHAIN_LENGTH} certificates",
        )
    chain: list[x509.Certificate] = []
    for index, entry in enumerate(x5c):
        if not isinstance(entry, str):
            raise _Failure(VerifyFailure.MALFORMED_SIGNATURE, f"x5c[{index}] is not a string")
        try:
            der = base64.b64decode(entry, validate=True)
            certificate = x509.load_der_x509_certificate(der)
            _ = certificate.extensions  # parse now: malformed extensions are a header problem
        except (binascii.Error, *CERT_ERRORS) as exc:
            raise _Failure(
                VerifyFailure.MALFORMED_SIGNATURE, f"x5c[{index}] is not a DER certificate: {exc}"
            ) from exc
        chain.append(certificate)
    return chain


def signer_certificate(message: Mapping[str, Any]) -> x509.Certificate | None:
    """The signer certificate (first ``x5c`` entry) of a message's signature, or None if it
    cannot be read. It says *who* signed only after :func:`verify_message` accepted the
    message: callers read names from it (write-back permissions match its SANs)."""
    token = message.get(SIGNATURE_MEMBER) if isinstance(message, Mapping) else None
    if not isinstance(token, str):
        return None
    try:
        return _header_chain(_decode_header(token.split(".", 1)[0]))[0]
    except _Failure:
        return None

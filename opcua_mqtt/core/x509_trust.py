"""Which signer certificates a verifier trusts: the trust store and the X.509 path checks.

Implemented explicitly rather than with ``cryptography.x509.verification``, whose single
``VerificationError`` does not tell the failures apart and whose web-PKI profile (EKU, SAN, AKI
requirements) rejects typical OPC UA / private-CA certificates. Used by :mod:`.signing`; no I/O
and no clock reads (callers pass ``at``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from opcua_mqtt.core.errors import OpcUaMqttError

__all__ = [
    "CERT_ERRORS",
    "MAX_CHAIN_LENGTH",
    "CertificateProblem",
    "TrustStore",
    "check_trust",
    "subject_name",
]

#: Longest accepted certificate path, signer and trust anchor included.
MAX_CHAIN_LENGTH = 8

_MAX_PATH_SEARCH_STEPS = 256

#: :attr:`CertificateProblem.code` values; they are the matching ``VerifyFailure`` values.
UNTRUSTED_CHAIN = "untrusted-chain"
CERT_NOT_YET_VALID = "cert-not-yet-valid"
CERT_EXPIRED = "cert-expired"
KEY_USAGE = "key-usage"

# Extensions whose criticality we honour: the ones checked below, plus ones that never restrict
# the use of a key for signing. A certificate with any other critical extension (name or policy
# constraints, ...) is refused, as RFC 5280 §4.2 requires of a verifier that does not process it.
_UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)

# Exceptions cryptography raises for certificates it can parse but not fully interpret.
CERT_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.InvalidVersion,
)


class CertificateProblem(OpcUaMqttError):
    """Why a signer certificate is not trusted; ``code`` is one of the constants above."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, eq=False)
class TrustStore:
    """What a verifier trusts.

    ``anchors``: CA certificates; a signer certificate chaining up to one of them (through the
    message's ``x5c``) is trusted. ``pinned``: signer certificates trusted as they are, matched
    by exact DER equality. A signer certificate equal to an anchor is trusted directly, too.
    Validity periods and key usage are checked for every certificate either way.
    """

    anchors: Sequence[x509.Certificate] = ()
    pinned: Sequence[x509.Certificate] = ()
    _direct: frozenset[bytes] = field(init=False, repr=False)
    _anchor_ders: frozenset[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        anchors = tuple(self.anchors)
        pinned = tuple(self.pinned)
        for certificate in (*anchors, *pinned):
            if not isinstance(certificate, x509.Certificate):
                raise TypeError(f"not an x509.Certificate: {type(certificate).__name__}")
        if not anchors and not pinned:
            raise ValueError("a trust store needs at least one CA or pinned certificate")
        object.__setattr__(self, "anchors", anchors)
        object.__setattr__(self, "pinned", pinned)
        anchor_ders = frozenset(_der(c) for c in anchors)
        object.__setattr__(self, "_anchor_ders", anchor_ders)
        object.__setattr__(self, "_direct", anchor_ders | {_der(c) for c in pinned})

    @classmethod
    def from_certificates(cls, certificates: Iterable[x509.Certificate]) -> TrustStore:
        """Sort certificates into anchors (basicConstraints CA=true) and pinned (the rest)."""
        anchors: list[x509.Certificate] = []
        pinned: list[x509.Certificate] = []
        for certificate in certificates:
            (anchors if _is_ca(certificate) else pinned).append(certificate)
        return cls(anchors=tuple(anchors), pinned=tuple(pinned))

    @classmethod
    def from_pem(cls, bundle: bytes) -> TrustStore:
        """Load a PEM bundle, sorted as in :meth:`from_certificates`.

        Raises ``ValueError`` if the bundle holds no certificate.
        """
        return cls.from_certificates(x509.load_pem_x509_certificates(bundle))

    def trusts_directly(self, certificate: x509.Certificate) -> bool:
        return _der(certificate) in self._direct

    def is_anchor(self, certificate: x509.Certificate) -> bool:
        return _der(certificate) in self._anchor_ders


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def check_trust(chain: list[x509.Certificate], trust: TrustStore, at: datetime) -> str:
    """Return a description of the accepted path, or raise the most relevant failure."""
    signer = chain[0]
    if trust.trusts_directly(signer):
        _check_path([signer], at)
        return "pinned signer certificate"
    paths = _candidate_paths(signer, chain[1:], trust)
    if not paths:
        raise CertificateProblem(
            UNTRUSTED_CHAIN,
            f"no path from {subject_name(signer)} to a trusted CA "
            f"(issuer {_issuer(signer)}) and the certificate is not pinned",
        )
    first_failure: CertificateProblem | None = None
    for path in paths:
        try:
            _check_path(path, at)
        except CertificateProblem as failure:
            first_failure = first_failure or failure
            continue
        return "chain " + " -> ".join(subject_name(c) for c in path) + " (anchor)"
    assert first_failure is not None
    raise first_failure


def _candidate_paths(
    signer: x509.Certificate, pool: list[x509.Certificate], trust: TrustStore
) -> list[list[x509.Certificate]]:
    """All paths signer -> ... -> anchor whose links have matching names and signatures.

    Intermediates come from ``pool`` (the rest of x5c, in any order); the path ends at the first
    certificate that is an anchor. Work is bounded by :data:`MAX_CHAIN_LENGTH` and a step budget.
    """
    candidates: dict[bytes, x509.Certificate] = {}
    for certificate in (*trust.anchors, *pool):
        candidates.setdefault(_der(certificate), certificate)
    link_cache: dict[tuple[bytes, bytes], bool] = {}
    paths: list[list[x509.Certificate]] = []
    steps = 0

    def issued_by(child: x509.Certificate, child_der: bytes, issuer_der: bytes) -> bool:
        key = (child_der, issuer_der)
        if key not in link_cache:
            issuer = candidates[issuer_der]
            try:
                ok = child.issuer == issuer.subject
                if ok:
                    child.verify_directly_issued_by(issuer)
            except (InvalidSignature, *CERT_ERRORS):
                ok = False
            link_cache[key] = ok
        return link_cache[key]

    def extend(path: list[x509.Certificate], ders: list[bytes]) -> None:
        nonlocal steps
        steps += 1
        if steps > _MAX_PATH_SEARCH_STEPS:
            return
        if len(path) > 1 and trust.is_anchor(path[-1]):
            paths.append(list(path))
            return
        if len(path) >= MAX_CHAIN_LENGTH:
            return
        child, child_der = path[-1], ders[-1]
        for issuer_der, issuer in candidates.items():
            if issuer_der in ders or not issued_by(child, child_der, issuer_der):
                continue
            path.append(issuer)
            ders.append(issuer_der)
            extend(path, ders)
            path.pop()
            ders.pop()

    extend([signer], [_der(signer)])
    return paths


def _check_path(path: list[x509.Certificate], at: datetime) -> None:
    """Validity of every certificate, then extensions (path[0] signer, path[-1] anchor)."""
    for certificate in path:
        if at < certificate.not_valid_before_utc:
            raise CertificateProblem(
                CERT_NOT_YET_VALID,
                f"{subject_name(certificate)} is valid from "
                f"{certificate.not_valid_before_utc.isoformat()}, checked at {at.isoformat()}",
            )
        if at > certificate.not_valid_after_utc:
            raise CertificateProblem(
                CERT_EXPIRED,
                f"{subject_name(certificate)} expired "
                f"{certificate.not_valid_after_utc.isoformat()}, checked at {at.isoformat()}",
            )
    for certificate in path:
        _check_critical_extensions(certificate)
    _check_signer_usage(path[0])
    for depth, issuer in enumerate(path[1:], start=1):
        _check_issuer(issuer, intermediates_below=depth - 1)


def _extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except CERT_ERRORS as exc:
        raise CertificateProblem(
            KEY_USAGE, f"{subject_name(certificate)}: unreadable extensions: {exc}"
        ) from exc


def _check_critical_extensions(certificate: x509.Certificate) -> None:
    try:
        extensions = list(certificate.extensions)
    except CERT_ERRORS as exc:
        raise CertificateProblem(
            KEY_USAGE, f"{subject_name(certificate)}: unreadable extensions: {exc}"
        ) from exc
    for extension in extensions:
        if extension.critical and extension.oid not in _UNDERSTOOD_EXTENSIONS:
            name = getattr(extension.oid, "_name", extension.oid.dotted_string)
            raise CertificateProblem(
                KEY_USAGE,
                f"{subject_name(certificate)} has critical extension {name} that is not processed",
            )


def _check_signer_usage(certificate: x509.Certificate) -> None:
    """A signer is a leaf with digitalSignature: a CA's key signs certificates, and letting it
    sign messages too would let whoever holds it speak for every publisher below it. A missing
    basicConstraints extension means CA=false (RFC 5280 §4.2.1.9); a missing keyUsage does not
    mean digitalSignature."""
    constraints = _extension(certificate, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise CertificateProblem(
            KEY_USAGE,
            f"signer {subject_name(certificate)} is a CA certificate (basicConstraints CA=true); "
            "only a leaf certificate (CA=false) may sign",
        )
    usage = _extension(certificate, x509.KeyUsage)
    if usage is None:
        raise CertificateProblem(
            KEY_USAGE,
            f"signer {subject_name(certificate)} has no keyUsage extension "
            "(digitalSignature required)",
        )
    if not usage.digital_signature:
        raise CertificateProblem(
            KEY_USAGE,
            f"signer {subject_name(certificate)} keyUsage lacks digitalSignature",
        )


def _check_issuer(certificate: x509.Certificate, *, intermediates_below: int) -> None:
    constraints = _extension(certificate, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise CertificateProblem(
            KEY_USAGE,
            f"issuer {subject_name(certificate)} is not a CA (basicConstraints CA=true required)",
        )
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        raise CertificateProblem(
            KEY_USAGE,
            f"issuer {subject_name(certificate)} allows {constraints.path_length} intermediate CAs "
            f"below it, the path has {intermediates_below}",
        )
    usage = _extension(certificate, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise CertificateProblem(
            KEY_USAGE,
            f"issuer {subject_name(certificate)} keyUsage lacks keyCertSign",
        )


def subject_name(certificate: x509.Certificate) -> str:
    try:
        return certificate.subject.rfc4514_string() or "(empty subject)"
    except CERT_ERRORS:
        return "(unreadable subject)"


def _issuer(certificate: x509.Certificate) -> str:
    try:
        return certificate.issuer.rfc4514_string() or "(empty issuer)"
    except CERT_ERRORS:
        return "(unreadable issuer)"

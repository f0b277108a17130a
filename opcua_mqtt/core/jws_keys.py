"""The JWS algorithms of :mod:`.signing` and the keys they fit: ES256 (ECDSA P-256, raw r||s),
EdDSA/Ed25519 and RS256 (RSASSA-PKCS1-v1_5, at least 2048 bits); signing and checking raw
signature values."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

MIN_RSA_BITS = 2048
P256_BYTES = 32

#: Private keys a :class:`.signing.Signer` accepts.
SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def spki(key: CertificatePublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo: two keys are the same key when these bytes are equal."""
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def alg_fits_key(alg: str, key: object) -> str | None:
    """Return None if ``alg`` may be used with ``key`` (public or private), else the reason."""
    if alg == "ES256":
        if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
            if isinstance(key.curve, ec.SECP256R1):
                return None
            return f"ES256 needs a P-256 key, not {key.curve.name}"
        return f"ES256 needs an EC P-256 key, not {_key_name(key)}"
    if alg in ("EdDSA", "Ed25519"):
        if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
            return None
        return f"{alg} needs an Ed25519 key, not {_key_name(key)}"
    if alg == "RS256":
        if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
            if key.key_size >= MIN_RSA_BITS:
                return None
            return f"RS256 needs an RSA key of at least {MIN_RSA_BITS} bits, not {key.key_size}"
        return f"RS256 needs an RSA key, not {_key_name(key)}"
    return f"unsupported algorithm {alg!r}"


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return type(key).__name__


def default_alg(key: SigningKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


def sign_raw(key: SigningKey, data: bytes) -> bytes:
    """The JWS signature value of ``data`` (raw r||s for ES256)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(P256_BYTES, "big") + s.to_bytes(P256_BYTES, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def signature_ok(alg: str, key: CertificatePublicKeyTypes, data: bytes, signature: bytes) -> bool:
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * P256_BYTES:
                return False
            r = int.from_bytes(signature[:P256_BYTES], "big")
            s = int.from_bytes(signature[P256_BYTES:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
        if alg in ("EdDSA", "Ed25519") and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False  # pragma: no cover - alg_fits_key ran first

"""Who asked for a write, what they may write, and where the answer may go.

Write-back requests may carry a ``JwsSignature``: the detached JWS over JCS of
:mod:`opcua_mqtt.core.signing` (the metadata scheme), signed with the requester's key and
carrying its certificate chain (``x5c``). :class:`RequestAuth` verifies it against the requester
CA bundle (``write_back.trust``) and turns it into an :class:`Identity`:

* a *proven* identity is the signer certificate's subject (RFC 4514), with its SANs; permissions
  (:class:`Permission`) match globs against either;
* an unsigned request (only where signatures are not required) has a *claimed* identity: the
  reply topic's levels below the reply prefix (``<PublisherId>/<client_id>`` by default), which
  anyone who can publish commands can claim. It keys the rate limit and shows in the audit log;
  it proves nothing.

A signed request must name a RequestId and a Deadline at most ``max_deadline_s`` ahead: together
with the idempotency cache (:class:`IdempotencyCache`, keyed by identity and RequestId, holding
the digest of the request) that bounds replays: within the window a copy gets the first answer
and writes nothing; a RequestId used again for another request is refused; after the window the
Deadline has passed.

Answers go only below the reply prefixes (:func:`reply_topic_problem`) and never into the Part 14
tree, where the bridge's own data, metadata and status live: the broker lets the bridge publish
there, so a requester must not be able to choose those topics.

Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from asyncua import ua
from cryptography import x509

from opcua_mqtt.core.globs import glob_match
from opcua_mqtt.core.signing import (
    SIGNATURE_MEMBER,
    TrustStore,
    VerifyFailure,
    signer_certificate,
    verify_message,
)
from opcua_mqtt.core.topics import MessageType
from opcua_mqtt.core.write_request.request import RequestError, WriteRequest

__all__ = [
    "ACTIONS",
    "IdempotencyCache",
    "Identity",
    "Permission",
    "RequestAuth",
    "claimed_identity",
    "reply_topic_problem",
    "request_digest",
]

S = ua.StatusCodes

#: What a permission can grant. Writing is the only command there is so far.
ACTIONS: Final = frozenset({"write"})

_FAILURE_STATUS: Final = {
    VerifyFailure.BAD_SIGNATURE: S.BadUserSignatureInvalid,
    VerifyFailure.UNTRUSTED_CHAIN: S.BadCertificateUntrusted,
    VerifyFailure.CERT_EXPIRED: S.BadCertificateTimeInvalid,
    VerifyFailure.CERT_NOT_YET_VALID: S.BadCertificateTimeInvalid,
    VerifyFailure.KEY_USAGE: S.BadCertificateUseNotAllowed,
}


@dataclass(frozen=True)
class Identity:
    """Who asked: ``name`` is a certificate subject when ``proven``, else what the request
    claims (see the module docstring)."""

    name: str
    proven: bool
    alt_names: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The rate-limit and idempotency key: a claim never shares one with a certificate."""
        return f"{'cert' if self.proven else 'claimed'}:{self.name}"

    def __str__(self) -> str:
        return f"{self.name} ({'certificate' if self.proven else 'claimed'})"

    def to_json(self) -> dict[str, Any]:
        """The answer's ``Requester`` member."""
        return {"Name": self.name, "Proven": self.proven}


def claimed_identity(reply: str | None, prefixes: Sequence[str]) -> str:
    """What an unsigned request claims to be: its reply topic below the reply prefix, the whole
    reply topic if it is below none, ``(anonymous)`` without one."""
    if reply is None:
        return "(anonymous)"
    for prefix in prefixes:
        if reply.startswith(prefix + "/"):
            return reply[len(prefix) + 1 :]
    return reply


def reply_topic_problem(topic: str, prefixes: Sequence[str], tree: tuple[str, str]) -> str | None:
    """Why an answer may not go to ``topic``, or None: it must be below one of ``prefixes`` and
    outside the Part 14 tree and the command topics of ``tree`` (``(prefix, encoding)``)."""
    prefix, encoding = tree
    levels = topic.split("/")
    root = [*prefix.split("/"), encoding]
    if levels[: len(root)] == root and len(levels) > len(root):
        kind = levels[len(root)]
        if kind in _PART14 or kind == "cmd":
            return f"it is in the {'command' if kind == 'cmd' else 'Part 14'} topic tree"
    if not any(topic.startswith(p + "/") for p in prefixes):
        return "it is not below " + " or ".join(f"{p}/" for p in prefixes)
    return None


_PART14: Final = frozenset(m.value for m in MessageType)


@dataclass(frozen=True)
class Permission:
    """Identities (globs over a certificate subject or one of its SANs, the syntax of
    :mod:`opcua_mqtt.core.globs`) that may do ``actions`` on ``nodes`` (canonical NodeIds)."""

    identities: tuple[str, ...]
    nodes: frozenset[str]
    actions: frozenset[str] = ACTIONS

    def matches(self, identity: Identity) -> bool:
        names = (identity.name, *identity.alt_names)
        return identity.proven and any(glob_match(g, n) for g in self.identities for n in names)


@dataclass(frozen=True)
class RequestAuth:
    """The requester side of the write-back configuration.

    ``permissions`` None: every identity may write the whole allow-list (the bridge's own
    ``allowed``). Otherwise a signed request's identity gets what its matching permissions
    grant, within the allow-list, and an identity no permission names is refused."""

    trust: TrustStore | None = None
    require_signature: bool = False
    max_deadline_s: float = 60.0
    permissions: tuple[Permission, ...] | None = None

    def identify(self, request: WriteRequest, claimed: str, now: datetime) -> Identity:
        """The identity of ``request``, or :class:`RequestError` saying why it is refused
        (unsigned where a signature is required, a signature that does not verify, a signed
        request without RequestId or with a Deadline beyond the window, no permission)."""
        document = request.document
        if SIGNATURE_MEMBER not in document:
            if self.require_signature:
                raise RequestError(
                    S.BadSecurityChecksFailed,
                    "unsigned request: this bridge takes only signed requests "
                    f"({SIGNATURE_MEMBER})",
                )
            return Identity(claimed, proven=False)
        if self.trust is None:
            raise RequestError(
                S.BadSecurityChecksFailed,
                "signed request, but this bridge has no write_back.trust to verify it with",
            )
        result = verify_message(document, self.trust, at=now)
        if not result.ok:
            assert result.reason is not None
            raise RequestError(
                _FAILURE_STATUS.get(result.reason, S.BadSecurityChecksFailed),
                f"signature refused ({result.reason.value}): {result.detail}",
            )
        certificate = signer_certificate(document)
        assert certificate is not None and result.signer_subject is not None  # it verified
        identity = Identity(result.signer_subject, True, _alt_names(certificate))
        if request.request_id is None:
            raise RequestError(
                S.BadSecurityChecksFailed, "a signed request needs a RequestId (replay protection)"
            )
        latest = now + timedelta(seconds=self.max_deadline_s)
        if request.deadline is None or request.deadline > latest:
            raise RequestError(
                S.BadInvalidTimestamp,
                "a signed request needs a Deadline at most "
                f"{self.max_deadline_s:g} s ahead (write_back.max_deadline_s)",
            )
        if self.permissions is not None and not any(
            "write" in p.actions and p.matches(identity) for p in self.permissions
        ):
            raise RequestError(
                S.BadUserAccessDenied, f"{identity.name} has no write permission on this bridge"
            )
        return identity

    def allowed(self, identity: Identity, allowed: frozenset[str]) -> frozenset[str]:
        """The part of the bridge's allow-list (canonical NodeIds) ``identity`` may write."""
        if self.permissions is None or not identity.proven:
            return allowed
        granted: set[str] = set()
        for p in self.permissions:
            if "write" in p.actions and p.matches(identity):
                granted |= p.nodes
        return allowed & granted


def _alt_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = (
        *san.get_values_for_type(x509.DNSName),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
        *san.get_values_for_type(x509.RFC822Name),
    )
    return tuple(str(n) for n in names)


def request_digest(request: WriteRequest) -> str:
    """What a RequestId stands for: the SHA-256 of its Targets (sorted keys), so that a retry
    with a new Deadline or a new signature is the same request, and other Targets are not."""
    targets = request.document.get("Targets")
    try:
        # a fifth of the standard library's cost (docs/benchmarks.md, write-back round 5)
        text = orjson.dumps(targets, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits; marked, so it never equals orjson's text
        text = b"json:" + json.dumps(
            targets, sort_keys=True, ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    return hashlib.sha256(text).hexdigest()


class IdempotencyCache:
    """The answers to recent requests, so that a repeated request is answered, not re-done.

    Keyed by (identity, RequestId): one requester's RequestId never answers another's. An
    answer is kept ``window_s`` seconds from :meth:`put`, with the request's digest; the first
    answer for a key wins. Memory is bounded by ``max_entries`` answers and ``max_bytes`` of
    them: past either, the oldest go first. ``now`` is any monotonic clock in seconds."""

    def __init__(
        self, window_s: float = 300.0, max_entries: int = 10_000, max_bytes: int = 64 * 2**20
    ) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self.window_s = float(window_s)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[float, str, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> bytes | None:
        """The first answer for ``key`` within the window."""
        entry = self._entry(key, now)
        return None if entry is None else entry[2]

    def digest(self, key: Hashable, now: float) -> str | None:
        """The digest given with the first answer for ``key`` within the window."""
        entry = self._entry(key, now)
        return None if entry is None else entry[1]

    def put(self, key: Hashable, response: bytes, now: float, digest: str = "") -> None:
        self._expire(now)
        if key in self._entries:
            return
        self._entries[key] = (now, digest, response)
        self._bytes += _cost(key, response)
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._pop_oldest()

    def _entry(self, key: Hashable, now: float) -> tuple[float, str, bytes] | None:
        self._expire(now)
        return self._entries.get(key)

    def _expire(self, now: float) -> None:
        while self._entries:
            _, (stamp, _, _) = next(iter(self._entries.items()))
            if now - stamp < self.window_s:
                break
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        key, (_, _, response) = self._entries.popitem(last=False)
        self._bytes -= _cost(key, response)


def _cost(key: Hashable, response: bytes) -> int:
    return len(response) + len(repr(key)) + 64

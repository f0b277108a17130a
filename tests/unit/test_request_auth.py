"""Write-back requesters: signatures and identities, permissions, replay window, reply topics,
per-requester rate limits and the keyed idempotency cache (core only, no I/O)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from harness.pki import Pki, generate_pki, issue_requester
from opcua_mqtt.core.canonical_json import canonicalize
from opcua_mqtt.core.rate_limit import RefusalTally, RequesterLimits
from opcua_mqtt.core.request_auth import (
    IdempotencyCache,
    Identity,
    Permission,
    RequestAuth,
    claimed_identity,
    reply_topic_problem,
    request_digest,
)
from opcua_mqtt.core.signing import (
    JWS_TYPE,
    SIGNATURE_MEMBER,
    Signer,
    TrustStore,
    sign_message,
)
from opcua_mqtt.core.write_request.request import RequestError, WriteRequest, parse_request

S = ua.StatusCodes
#: The instant every check here is made at. Certificates are issued when a test runs, valid from
#: five minutes (the clock skew allowed) before: an instant taken at import fell before them when
#: the file ran more than five minutes after collection (a busy machine). An hour on, it lies
#: inside the validity of every certificate issued within the hour, however late the file runs.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
NODE_A = "nsu=urn:plant;s=A"
NODE_B = "nsu=urn:plant;s=B"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    return TrustStore.from_pem(pki.ca_cert.read_bytes())


def _signer(pair: tuple[Path, Path]) -> Signer:
    cert, key = pair
    return Signer.from_pem(key.read_bytes(), cert.read_bytes())


def _request(**members: Any) -> dict[str, Any]:
    deadline = (NOW + timedelta(seconds=10)).isoformat().replace("+00:00", "Z")
    return {
        "RequestId": "r-1",
        "Deadline": deadline,
        "Targets": [{"NodeId": NODE_A, "Value": 1.5}],
    } | members


def _parsed(document: dict[str, Any]) -> Any:
    return parse_request(json.dumps(document).encode())


def _refusal(auth: RequestAuth, document: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as e:
        auth.identify(_parsed(document), "claimed", NOW)
    return e.value


# -------------------------------------------------------------------------- signatures


def test_unsigned_request_is_refused_where_signatures_are_required(trust: TrustStore) -> None:
    auth = RequestAuth(trust=trust, require_signature=True)
    e = _refusal(auth, _request())
    assert e.status == S.BadSecurityChecksFailed and "unsigned" in e.message


def test_unsigned_request_has_a_claimed_identity_where_allowed() -> None:
    who = RequestAuth().identify(_parsed(_request()), "bridge/alice", NOW)
    assert who == Identity("bridge/alice", proven=False)
    assert who.key == "claimed:bridge/alice" and who.to_json() == {
        "Name": "bridge/alice",
        "Proven": False,
    }


def test_a_request_signed_with_joserfc_proves_its_sender(pki: Pki, trust: TrustStore) -> None:
    """What docs/write-back.md tells a requester to do with any JOSE library."""
    cert_path, key_path = issue_requester(pki, "jose", "alice", uri="urn:plant:alice")
    request = _request()
    header = {
        "typ": JWS_TYPE,
        "alg": "ES256",
        "iat": int(NOW.timestamp()),
        "x5c": [
            base64.b64encode(
                x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
                    serialization.Encoding.DER
                )
            ).decode()
        ],
    }
    registry = JWSRegistry(
        header_registry={"iat": HeaderParameter("Issued At", "int")}, algorithms=["ES256"]
    )
    registry.max_header_length = 16_384
    compact = jws.serialize_compact(
        header, canonicalize(request), ECKey.import_key(key_path.read_bytes()), registry=registry
    )
    request[SIGNATURE_MEMBER] = jws.detach_content(compact)
    who = RequestAuth(trust=trust, require_signature=True).identify(
        _parsed(request), "claimed", NOW
    )
    assert who.proven and "CN=alice" in who.name and who.alt_names == ("urn:plant:alice",)
    assert who.key.startswith("cert:")


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("tampered", S.BadUserSignatureInvalid),
        ("rogue", S.BadCertificateUntrusted),
        ("expired", S.BadCertificateTimeInvalid),
        ("far_deadline", S.BadInvalidTimestamp),
        ("no_deadline", S.BadInvalidTimestamp),
        ("no_request_id", S.BadSecurityChecksFailed),
    ],
)
def test_signed_requests_are_refused_with_their_reason(
    pki: Pki, trust: TrustStore, case: str, status: int
) -> None:
    pair = issue_requester(
        pki, case, f"user-{case}", rogue=case == "rogue", expired=case == "expired"
    )
    request = _request()
    if case == "far_deadline":
        request["Deadline"] = (NOW + timedelta(seconds=61)).isoformat()
    if case == "no_deadline":
        del request["Deadline"]
    if case == "no_request_id":
        del request["RequestId"]
    signed = sign_message(request, _signer(pair), issued_at=NOW)
    if case == "tampered":
        signed["Targets"][0]["Value"] = 99.0
    e = _refusal(RequestAuth(trust=trust, max_deadline_s=60), signed)
    assert e.status == status, e.message


def test_signed_request_without_trust_configured_is_refused(pki: Pki) -> None:
    signed = sign_message(_request(), _signer(issue_requester(pki, "nt", "nt")), issued_at=NOW)
    assert _refusal(RequestAuth(), signed).status == S.BadSecurityChecksFailed


# -------------------------------------------------------------------------- permissions


def test_permissions_match_subject_or_san_and_narrow_the_allow_list(
    pki: Pki, trust: TrustStore
) -> None:
    auth = RequestAuth(
        trust=trust,
        require_signature=True,
        permissions=(
            Permission(("urn:plant:operator-*",), frozenset({NODE_A})),
            Permission(("CN=viewer*",), frozenset({NODE_B}), actions=frozenset()),
        ),
    )
    operator = _signer(issue_requester(pki, "op", "op", uri="urn:plant:operator-7"))
    who = auth.identify(_parsed(sign_message(_request(), operator, issued_at=NOW)), "c", NOW)
    assert auth.allowed(who, frozenset({NODE_A, NODE_B})) == {NODE_A}
    assert auth.allowed(who, frozenset({NODE_B})) == frozenset()  # allow stays the ceiling
    for stem in ("viewer", "stranger"):  # a rule without the write action grants nothing
        signer = _signer(issue_requester(pki, stem, stem))
        e = _refusal(auth, sign_message(_request(), signer, issued_at=NOW))
        assert e.status == S.BadUserAccessDenied and stem in e.message


# -------------------------------------------------------------------------- reply topics


TREE = ("opcua", "json")
PREFIXES = ("opcua/json/reply",)


@pytest.mark.parametrize(
    "topic",
    [
        "opcua/json/data/plant1/G",
        "opcua/json/metadata/plant1/G/W",
        "opcua/json/status/plant1",
        "opcua/json/connection/plant1",
        "opcua/json/cmd/plant1/write",
        "opcua/json/cmd/plant1/reply/x",
        "app/replies/7",
        "opcua/json/reply",  # the prefix itself is not below it
        "opcua/json/replyX/a",
    ],
)
def test_answers_never_go_outside_the_reply_prefixes(topic: str) -> None:
    assert reply_topic_problem(topic, PREFIXES, TREE) is not None


def test_answers_go_below_the_reply_prefixes() -> None:
    assert reply_topic_problem("opcua/json/reply/plant1/me", PREFIXES, TREE) is None
    assert reply_topic_problem("app/replies/7", ("app/replies",), TREE) is None
    # a configured prefix inside the Part 14 tree still cannot reach it
    assert reply_topic_problem("opcua/json/status/x", ("opcua/json",), TREE) is not None


def test_claimed_identity_is_the_reply_topic_below_its_prefix() -> None:
    assert claimed_identity("opcua/json/reply/plant1/me", PREFIXES) == "plant1/me"
    assert claimed_identity("elsewhere/x", PREFIXES) == "elsewhere/x"
    assert claimed_identity(None, PREFIXES) == "(anonymous)"


# -------------------------------------------------------------------------- rate limits


def test_one_requesters_flood_does_not_refuse_another() -> None:
    limits = RequesterLimits(rate_per_s=10, burst=5, total_rate_per_s=100, total_burst=50)
    refused = [limits.allow("flooder", 0.0) for _ in range(40_000)]
    assert refused.count(None) == 5 and set(refused[5:]) == {"requester"}
    assert limits.allow("alice", 0.0) is None


def test_the_global_cap_holds_over_many_requesters() -> None:
    limits = RequesterLimits(rate_per_s=10, burst=5, total_rate_per_s=100, total_burst=50)
    results = [limits.allow(f"r{i}", 0.0) for i in range(200)]
    assert results.count(None) == 50 and set(results[50:]) == {"total"}
    assert limits.allow("r0", 0.0, total=False) is None  # a second key of the same request


def test_requester_buckets_are_bounded() -> None:
    limits = RequesterLimits(1, 1, 1000, 1000, max_requesters=3)
    for i in range(10):
        limits.allow(f"r{i}", float(i) / 1000)
    assert len(limits) == 3


def test_refusals_are_summarised_once_per_interval() -> None:
    tally = RefusalTally()
    assert tally.add("flooder") is True
    assert not any(tally.add("flooder") for _ in range(39_999))
    tally.add("other")
    line = tally.summary(10)
    assert line is not None and "40001 write request(s)" in line and "flooder (40000)" in line
    assert tally.summary(10) is None and tally.add("x") is True


# -------------------------------------------------------------------------- idempotency


def test_idempotency_is_per_requester_and_remembers_the_digest() -> None:
    cache = IdempotencyCache(window_s=10)
    cache.put(("cert:alice", "r-1"), b"answer", 0.0, "d1")
    assert cache.get(("cert:bob", "r-1"), 1.0) is None
    assert cache.get(("cert:alice", "r-1"), 1.0) == b"answer"
    assert cache.digest(("cert:alice", "r-1"), 1.0) == "d1"


def test_request_digest_is_of_the_targets_only() -> None:
    a = _parsed(_request())
    later = _parsed(_request(Deadline=(NOW + timedelta(seconds=30)).isoformat()))
    other = _parsed(_request(Targets=[{"NodeId": NODE_A, "Value": 2.5}]))
    assert request_digest(a) == request_digest(later) != request_digest(other)


#: JSON values as parse_request leaves them: unicode without lone surrogates, finite floats,
#: integers of any size (those beyond 64 bits take request_digest's other path).
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64 - 2, max_value=2**64 + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=3), inner)
    ),
    max_leaves=10,
)


def _digest_of(targets: Any) -> str:
    return request_digest(WriteRequest(targets=(), document={"Targets": targets}))


@given(a=_JSON, b=_JSON)
def test_request_digest_tells_targets_apart_as_their_sorted_json_does(a: Any, b: Any) -> None:
    """The same Targets (in any member order) have the same digest, any others another."""
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (_digest_of(a) == _digest_of(b)) is same
    reordered = json.loads(json.dumps(a), object_pairs_hook=lambda pairs: dict(pairs[::-1]))
    assert _digest_of(reordered) == _digest_of(a)

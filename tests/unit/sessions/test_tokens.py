"""Session JWTs: round trip, and each way a token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from services.platform.tokens import (
    SessionClaims,
    TokenRejected,
    mint_session_token,
    verify_session_token,
)

SECRET = bytes(range(32))
ISSUED = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
CLAIMS = SessionClaims(
    user_id="user-7",
    session_id="sess-42",
    tier="pro",
    issued_at=ISSUED,
    expires_at=ISSUED + timedelta(minutes=10),
)
DURING = ISSUED + timedelta(minutes=5)


def _forge(payload_changes: dict[str, Any], *, secret: bytes = SECRET, **encode: Any) -> str:
    """A token signed with ``secret`` whose payload differs from CLAIMS' by ``payload_changes``."""
    payload: dict[str, Any] = {
        "iss": "mbt.raxx.dev",
        "aud": "mbt",
        "sub": "user-7",
        "sid": "sess-42",
        "tier": "pro",
        "iat": int(ISSUED.timestamp()),
        "nbf": int(ISSUED.timestamp()),
        "exp": int(CLAIMS.expires_at.timestamp()),
    }
    payload.update(payload_changes)
    payload = {k: v for k, v in payload.items() if v is not None}
    options: dict[str, Any] = {"algorithm": "HS256", "headers": {"typ": "mbt-session+jwt"}}
    options.update(encode)
    return jwt.encode(payload, secret, **options)


def _rejection(token: str, now: datetime = DURING, secret: bytes = SECRET) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        verify_session_token(secret=secret, token=token, now=now)
    assert str(caught.value).startswith(caught.value.reason)
    return caught.value


def test_round_trip() -> None:
    token = mint_session_token(secret=SECRET, claims=CLAIMS)
    assert verify_session_token(secret=SECRET, token=token, now=DURING) == CLAIMS
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "typ": "mbt-session+jwt",
    }


def test_a_forged_token_with_the_same_claims_is_the_same_token() -> None:
    # Guards _forge: the rejection tests below differ from a valid token only where they say.
    assert verify_session_token(secret=SECRET, token=_forge({}), now=DURING) == CLAIMS


def test_times_are_whole_seconds_and_expiry_is_never_extended() -> None:
    claims = SessionClaims(
        user_id="u",
        session_id="s",
        tier="free",
        issued_at=ISSUED + timedelta(microseconds=900_000),
        expires_at=ISSUED + timedelta(seconds=60, microseconds=900_000),
    )
    token = mint_session_token(secret=SECRET, claims=claims)
    decoded = verify_session_token(secret=SECRET, token=token, now=ISSUED)
    assert decoded.issued_at == ISSUED
    assert decoded.expires_at == ISSUED + timedelta(seconds=60)


def test_expired_at_exp_with_no_leeway() -> None:
    token = mint_session_token(secret=SECRET, claims=CLAIMS)
    last_valid = CLAIMS.expires_at - timedelta(microseconds=1)
    assert verify_session_token(secret=SECRET, token=token, now=last_valid) == CLAIMS
    assert _rejection(token, now=CLAIMS.expires_at).reason == "expired"
    assert str(_rejection(token, now=CLAIMS.expires_at + timedelta(days=1))) == "expired"


def test_expiry_uses_the_given_clock_not_the_wall_clock() -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    old = SessionClaims("u", "s", "free", long_ago, long_ago + timedelta(minutes=10))
    token = mint_session_token(secret=SECRET, claims=old)
    assert verify_session_token(secret=SECRET, token=token, now=long_ago) == old


def test_tampered_signature() -> None:
    header, payload, signature = mint_session_token(secret=SECRET, claims=CLAIMS).split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert _rejection(f"{header}.{payload}.{flipped}").reason == "invalid signature"


def test_tampered_payload() -> None:
    header, payload, signature = mint_session_token(secret=SECRET, claims=CLAIMS).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tier"] = "pro+"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _rejection(f"{header}.{forged}.{signature}").reason == "invalid signature"


def test_wrong_secret() -> None:
    token = mint_session_token(secret=b"\xff" * 32, claims=CLAIMS)
    assert _rejection(token).reason == "invalid signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
        "eyJhbGciOiJIUzI1NiJ9.!!!.c2ln",
    ],
)
def test_malformed(token: str) -> None:
    assert _rejection(token).reason == "malformed"


def test_algorithm_none_is_refused() -> None:
    _, payload, _ = _forge({}).split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"mbt-session+jwt"}')
    unsigned = f"{none_header.rstrip(b'=').decode()}.{payload}."
    assert _rejection(unsigned).reason == "invalid signature"
    assert "algorithm" in str(_rejection(unsigned))


def test_another_hmac_algorithm_is_refused_even_with_the_right_secret() -> None:
    secret = bytes(range(64))  # long enough for HS512 without a key-length warning
    token = _forge({}, secret=secret, algorithm="HS512")
    assert _rejection(token, secret=secret).reason == "invalid signature"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "paper-api"},
        {"aud": ["mbt", "paper-api"]},
        {"iss": "sessions"},
        {"iss": "https://mbt.raxx.dev"},
    ],
)
def test_wrong_audience_or_issuer(changes: dict[str, Any]) -> None:
    assert _rejection(_forge(changes)).reason == "wrong audience/issuer"


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "sid", "tier", "iat", "nbf", "exp"])
def test_missing_claim_is_malformed(claim: str) -> None:
    rejection = _rejection(_forge({claim: None}))
    assert rejection.reason == "malformed"
    assert claim in str(rejection)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": ""},
        {"sid": 42},
        {"tier": ["pro"]},
        {"exp": "2026-11-02T14:40:00Z"},
        {"iat": 1.5},
        {"exp": True},
        {"exp": 10**20},
        {"exp": int(ISSUED.timestamp())},  # not after iat
    ],
)
def test_bad_claim_values_are_malformed(changes: dict[str, Any]) -> None:
    assert _rejection(_forge(changes)).reason == "malformed"


def test_a_token_of_another_type_is_refused() -> None:
    other = _forge({}, headers={"typ": "handoff+jwt"})
    rejection = _rejection(other)
    assert (rejection.reason, str(rejection)) == (
        "malformed",
        "malformed: not a session token (typ)",
    )


def test_weak_secrets_and_naive_times_are_programming_errors() -> None:
    token = mint_session_token(secret=SECRET, claims=CLAIMS)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_session_token(secret=b"short", claims=CLAIMS)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verify_session_token(secret=b"short", token=token, now=DURING)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_session_token(secret=SECRET, token=token, now=DURING.replace(tzinfo=None))
    naive = SessionClaims("u", "s", "free", datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        mint_session_token(secret=SECRET, claims=naive)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_token_from_the_future_is_not_yet_valid(claim: str) -> None:
    # one second of clock skew between replicas is tolerated, a minute is not
    later = int(DURING.timestamp()) + 60
    assert _rejection(_forge({claim: later})).reason == "not yet valid"
    skewed = int(DURING.timestamp()) + 1
    claims = verify_session_token(secret=SECRET, token=_forge({claim: skewed}), now=DURING)
    assert claims.user_id == CLAIMS.user_id


def test_an_oversize_token_is_refused_before_parsing() -> None:
    assert _rejection("x" * 20_000).reason == "malformed"

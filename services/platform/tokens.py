"""Session JWTs: HS256 with RFC 8725 hygiene.

The algorithm list is fixed here, never read from the token (RFC 8725 §3.1); the token is
explicitly typed (§3.11) and carries required ``iss``/``aud`` claims (§3.8, §3.9); the secret
must have at least 256 bits (§3.5). Time is passed in: expiry is checked against the caller's
``now`` with no leeway, because pyjwt's own check reads the wall clock.

A valid token only proves what was minted. The caller still loads the session row by
``session_id`` and rejects revoked or idle-expired sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

ISSUER = "mbt.raxx.dev"
AUDIENCE = "mbt"
TOKEN_TYPE = "mbt-session+jwt"
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # HS256 output size (RFC 8725 §3.5, OWASP JWT cheat sheet)
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "tier", "iat", "nbf", "exp"]
# Clock skew tolerated for `iat` / `nbf` between replicas; `iat` is truncated to the second.
NOT_BEFORE_LEEWAY = timedelta(seconds=1)
MAX_TOKEN_CHARS = 4096  # ours are ~400; anything larger is refused before it is parsed

TokenRejectionReason = Literal[
    "expired", "invalid signature", "malformed", "not yet valid", "wrong audience/issuer"
]


class TokenRejected(Exception):
    """A session token was refused; ``reason`` is one of :data:`TokenRejectionReason`."""

    def __init__(self, reason: TokenRejectionReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: TokenRejectionReason = reason


@dataclass(frozen=True)
class SessionClaims:
    """What a session token asserts. Times are timezone-aware and whole seconds on the wire."""

    user_id: str
    session_id: str
    tier: str
    issued_at: datetime
    expires_at: datetime


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"session token secret must be at least {MIN_SECRET_BYTES} bytes")


def _epoch_seconds(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return int(moment.timestamp())  # truncates: a token never outlives its expires_at


def mint_session_token(*, secret: bytes, claims: SessionClaims) -> str:
    """Sign ``claims`` into a compact HS256 JWT (sub = user_id, sid = session_id)."""
    _check_secret(secret)
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": claims.user_id,
        "sid": claims.session_id,
        "tier": claims.tier,
        "iat": _epoch_seconds(claims.issued_at, "issued_at"),
        "nbf": _epoch_seconds(claims.issued_at, "issued_at"),
        "exp": _epoch_seconds(claims.expires_at, "expires_at"),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE})


def _decode(secret: bytes, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        decoded = jwt.decode_complete(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=0,
            options={
                "require": _REQUIRED_CLAIMS,
                "strict_aud": True,
                "verify_exp": False,  # checked against `now` below
                "verify_iat": False,
                "verify_nbf": False,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected("invalid signature") from None
    except jwt.InvalidAlgorithmError:
        raise TokenRejected("invalid signature", "algorithm not allowed") from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise TokenRejected("wrong audience/issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected("malformed", f"missing claim {exc.claim!r}") from None
    except jwt.InvalidTokenError:
        raise TokenRejected("malformed") from None
    return decoded["header"], decoded["payload"]


def _string_claim(payload: dict[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise TokenRejected("malformed", f"claim {name!r} is not a non-empty string")
    return value


def _time_claim(payload: dict[str, Any], name: str) -> datetime:
    value = payload[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenRejected("malformed", f"claim {name!r} is not an integer")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenRejected("malformed", f"claim {name!r} is out of range") from None


def verify_session_token(*, secret: bytes, token: str, now: datetime) -> SessionClaims:
    """Return the claims of a valid token, or raise :class:`TokenRejected`.

    Checks, in order: length, signature with HS256 only, audience and issuer, required claims,
    ``typ``, claim types, ``iat``/``nbf`` not in the future (1 s of skew), then expiry: the token
    is expired once ``now >= exp`` (no leeway).
    """
    _check_secret(secret)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("malformed", f"longer than {MAX_TOKEN_CHARS} characters")
    header, payload = _decode(secret, token)
    if header.get("typ") != TOKEN_TYPE:
        raise TokenRejected("malformed", "not a session token (typ)")
    claims = SessionClaims(
        user_id=_string_claim(payload, "sub"),
        session_id=_string_claim(payload, "sid"),
        tier=_string_claim(payload, "tier"),
        issued_at=_time_claim(payload, "iat"),
        expires_at=_time_claim(payload, "exp"),
    )
    if claims.expires_at <= claims.issued_at:
        raise TokenRejected("malformed", "exp is not after iat")
    not_before = _time_claim(payload, "nbf")
    if claims.issued_at > now + NOT_BEFORE_LEEWAY or not_before > now + NOT_BEFORE_LEEWAY:
        raise TokenRejected("not yet valid", "iat or nbf is in the future")
    if now >= claims.expires_at:
        raise TokenRejected("expired")
    return claims

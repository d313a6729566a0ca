"""Who is calling: principals from bearer JWTs, service tokens, and the revocation list."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.platform.errors import PermissionDenied, Unauthenticated
from services.platform.tokens import (
    SessionClaims,
    TokenRejected,
    mint_session_token,
    verify_session_token,
)

SERVICE_PREFIX = "svc:"
SERVICE_TOKEN_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of an RPC: a user's session, or another MBT service."""

    user_id: str
    session_id: str
    tier: str

    @property
    def is_service(self) -> bool:
        return self.user_id.startswith(SERVICE_PREFIX)


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "mbt_principal", default=None
)


def current_principal() -> Principal | None:
    return _current.get()


def set_principal(p: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(p)


def require_user() -> Principal:
    """The calling user, or UNAUTHENTICATED. Services are not users."""
    p = _current.get()
    if p is None:
        raise Unauthenticated("a session is required: sign in with `mbt login`")
    if p.is_service:
        raise PermissionDenied("this method is for users, not services")
    return p


def require_service() -> Principal:
    p = _current.get()
    if p is None or not p.is_service:
        raise PermissionDenied("internal method: only MBT services may call it")
    return p


class RevocationList:
    """Session ids revoked before their expiry; fed by `mbt.sessions.revoked` events."""

    def __init__(self) -> None:
        self._revoked: dict[str, datetime] = {}

    def revoke(self, session_id: str, expires_at: datetime) -> None:
        self._revoked[session_id] = expires_at

    def is_revoked(self, session_id: str) -> bool:
        return session_id in self._revoked

    def prune(self, now: datetime) -> None:
        for sid in [s for s, exp in self._revoked.items() if exp <= now]:
            del self._revoked[sid]


def authenticate(
    authorization: str | None, secret: bytes, revocations: RevocationList
) -> Principal:
    """Turn an `authorization: Bearer <jwt>` value into a Principal, or raise Unauthenticated."""
    if not authorization:
        raise Unauthenticated("missing credentials: send `authorization: Bearer <token>`")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be `Bearer <token>`")
    try:
        claims = verify_session_token(secret=secret, token=token.strip(), now=datetime.now(UTC))
    except TokenRejected as exc:
        raise Unauthenticated(f"session token rejected: {exc}", reason="TOKEN_REJECTED") from exc
    if revocations.is_revoked(claims.session_id):
        raise Unauthenticated("session has been revoked; sign in again", reason="SESSION_REVOKED")
    return Principal(user_id=claims.user_id, session_id=claims.session_id, tier=claims.tier)


def service_token(secret: bytes, service: str) -> str:
    """A bearer token one MBT service presents to another."""
    now = datetime.now(UTC)
    claims = SessionClaims(
        user_id=f"{SERVICE_PREFIX}{service}",
        session_id=f"{SERVICE_PREFIX}{service}",
        tier="service",
        issued_at=now,
        expires_at=now + SERVICE_TOKEN_TTL,
    )
    return mint_session_token(secret=secret, claims=claims)

"""Who is calling: principals from session JWTs, API keys, service tokens and the operator.

Every service authenticates every call itself, against the same credential registry
(`credentials`): a JWT proves what was minted, the registry says whether its session still
lives (unknown, revoked or ended sessions are refused) and what the user's tier is now.
"""

from __future__ import annotations

import contextvars
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.platform.credentials import CredentialRegistry, api_key_hash
from services.platform.errors import PermissionDenied, Unauthenticated
from services.platform.tokens import (
    MAX_TOKEN_CHARS,
    SessionClaims,
    TokenRejected,
    mint_session_token,
    verify_session_token,
)

__all__ = [
    "KEY_ID_HEADER",
    "KEY_SECRET_HEADER",
    "OPERATOR_HEADER",
    "Principal",
    "authenticate",
    "check_scope",
    "current_principal",
    "gateway_vouch_key",
    "require_operator",
    "require_passkey_session",
    "require_service",
    "require_user",
    "service_token",
    "set_principal",
]

SERVICE_PREFIX = "svc:"
OPERATOR_PREFIX = "op:"
KEY_PREFIX = "key:"
SERVICE_TOKEN_TTL = timedelta(hours=24)
# Alpaca's header names, on HTTP and as gRPC metadata alike (lower case on the wire).
KEY_ID_HEADER = "apca-api-key-id"
KEY_SECRET_HEADER = "apca-api-secret-key"
OPERATOR_HEADER = "x-mbt-operator-token"
OPERATOR_NAME_HEADER = "x-mbt-operator"
ALL_SCOPES = frozenset({"trading", "data"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user's session or API key, an MBT service, or an operator."""

    user_id: str
    session_id: str  # the session id; "key:<key id>" for an API key
    tier: str
    scopes: frozenset[str] = ALL_SCOPES
    read_only: bool = False

    @property
    def is_service(self) -> bool:
        return self.user_id.startswith(SERVICE_PREFIX)

    @property
    def is_operator(self) -> bool:
        return self.user_id.startswith(OPERATOR_PREFIX)

    @property
    def api_key_id(self) -> str:
        return self.session_id[len(KEY_PREFIX) :] if self.session_id.startswith(KEY_PREFIX) else ""


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "mbt_principal", default=None
)


def current_principal() -> Principal | None:
    return _current.get()


def set_principal(p: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(p)


def require_user() -> Principal:
    """The calling user, or UNAUTHENTICATED. Services and operators are not users."""
    p = _current.get()
    if p is None:
        raise Unauthenticated("a session is required: sign in with `mbt login`")
    if p.is_service or p.is_operator:
        raise PermissionDenied("this method is for users, not services")
    return p


def require_passkey_session() -> Principal:
    """The calling user signed in with a passkey (an API key is not enough)."""
    p = require_user()
    if p.api_key_id:
        raise PermissionDenied(
            "an API key cannot do this; sign in with a passkey (`mbt login`)",
            reason="PASSKEY_SESSION_REQUIRED",
        )
    return p


def require_service() -> Principal:
    p = _current.get()
    if p is None or not p.is_service:
        raise PermissionDenied("internal method: only MBT services may call it")
    return p


def require_operator() -> Principal:
    p = _current.get()
    if p is None or not p.is_operator:
        raise PermissionDenied("operator method: use `mbt admin` with the operator credential")
    return p


# Which key scope a service's methods need; services absent here refuse API keys, except the
# methods listed in KEY_METHODS.
SCOPE_OF_SERVICE = {
    "raxx.mbt.v1.OrdersService": "trading",
    "raxx.mbt.v1.AccountsService": "trading",
    "raxx.mbt.v1.MarketDataService": "data",
}
KEY_METHODS = frozenset({"raxx.mbt.v1.SessionsService/GetCurrentSession"})
READ_PREFIXES = ("Get", "List", "Stream")


def check_scope(p: Principal, full_method: str) -> None:
    """Refuse an API key outside its scopes (`trading`, `data`) or, read-only, a write."""
    if not p.api_key_id:
        return
    service, _, method = full_method.strip("/").partition("/")
    scope = SCOPE_OF_SERVICE.get(service)
    if scope is None and f"{service}/{method}" not in KEY_METHODS:
        raise PermissionDenied(
            f"API keys cannot call {method}; sign in with a passkey",
            reason="PASSKEY_SESSION_REQUIRED",
        )
    if scope is not None and scope not in p.scopes:
        raise PermissionDenied(
            f"this API key lacks the {scope!r} scope needed for {method}", reason="KEY_SCOPE"
        )
    if p.read_only and not method.startswith(READ_PREFIXES):
        raise PermissionDenied(
            f"this API key is read-only; {method} writes", reason="KEY_READ_ONLY"
        )


async def _from_api_key(
    key_id: str, secret: str, platform_secret: bytes, reg: CredentialRegistry
) -> Principal:
    if not key_id or not secret:
        raise Unauthenticated(
            f"send both {KEY_ID_HEADER} and {KEY_SECRET_HEADER}", reason="API_KEY_REJECTED"
        )
    if len(key_id) > 64 or len(secret) > 256:
        raise Unauthenticated("API key rejected", reason="API_KEY_REJECTED")
    entry = await reg.api_key(key_id)
    presented = api_key_hash(platform_secret, secret)
    if entry is None or not hmac.compare_digest(presented, entry.secret_hash):
        raise Unauthenticated(
            "API key rejected: unknown key or wrong secret", reason="API_KEY_REJECTED"
        )
    if entry.revoked:
        raise Unauthenticated("API key has been revoked", reason="API_KEY_REVOKED")
    tier = await reg.tier(entry.user_id, "free")
    return Principal(
        entry.user_id, f"{KEY_PREFIX}{key_id}", tier, frozenset(entry.scopes), entry.read_only
    )


_VERIFIED: OrderedDict[tuple[bytes, str], SessionClaims] = OrderedDict()
VERIFIED_CACHE_SIZE = 8192


def _verified(secret: bytes, token: str, now: datetime) -> SessionClaims:
    """`verify_session_token`, remembering tokens already verified (the signature and claims
    of a token never change; only its expiry is checked again). The session it names is still
    looked up on every call, so a revoked session stops at once."""
    key = (secret, token)
    claims = _VERIFIED.get(key)
    if claims is None:
        claims = verify_session_token(secret=secret, token=token, now=now)
        _VERIFIED[key] = claims
        if len(_VERIFIED) > VERIFIED_CACHE_SIZE:
            _VERIFIED.popitem(last=False)
        return claims
    if now >= claims.expires_at:
        del _VERIFIED[key]
        raise TokenRejected("expired")
    _VERIFIED.move_to_end(key)
    return claims


async def _from_bearer(authorization: str, secret: bytes, reg: CredentialRegistry) -> Principal:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be `Bearer <token>`")
    try:
        claims = _verified(secret, token.strip(), datetime.now(UTC))
    except TokenRejected as exc:
        raise Unauthenticated(f"session token rejected: {exc}", reason="TOKEN_REJECTED") from exc
    if claims.user_id.startswith(SERVICE_PREFIX):
        return Principal(claims.user_id, claims.session_id, claims.tier)
    entry = await reg.session(claims.session_id)
    if entry is None or entry.user_id != claims.user_id:
        raise Unauthenticated("unknown session; sign in again", reason="SESSION_UNKNOWN")
    if not reg.session_live(entry):
        raise Unauthenticated("session has been revoked; sign in again", reason="SESSION_REVOKED")
    tier = await reg.tier(claims.user_id, claims.tier)
    return Principal(claims.user_id, claims.session_id, tier)


async def authenticate(
    metadata: Mapping[str, str],
    secret: bytes,
    registry: CredentialRegistry,
    operator_token: str = "",
) -> Principal:
    """The caller named by request metadata, or Unauthenticated (never a 5xx, never a 429).

    Accepted: ``authorization: Bearer <jwt>`` (a session or an MBT service), the Alpaca key
    headers, or the operator token (``x-mbt-operator-token``, with ``x-mbt-operator`` naming the
    person for the audit log).
    """
    if OPERATOR_HEADER in metadata:
        presented = metadata[OPERATOR_HEADER]
        if not operator_token or not hmac.compare_digest(
            presented.encode(), operator_token.encode()
        ):
            raise Unauthenticated("operator credential rejected", reason="OPERATOR_REJECTED")
        name = "".join(c for c in metadata.get(OPERATOR_NAME_HEADER, "operator") if c.isprintable())
        return Principal(f"{OPERATOR_PREFIX}{name[:60] or 'operator'}", "operator", "operator")
    if KEY_ID_HEADER in metadata or KEY_SECRET_HEADER in metadata:
        return await _from_api_key(
            metadata.get(KEY_ID_HEADER, ""), metadata.get(KEY_SECRET_HEADER, ""), secret, registry
        )
    authorization = metadata.get("authorization", "")
    if not authorization:
        raise Unauthenticated(
            "missing credentials: send `authorization: Bearer <token>` or an API key"
        )
    if len(authorization) > MAX_TOKEN_CHARS + 16:
        raise Unauthenticated("session token rejected: too long", reason="TOKEN_REJECTED")
    return await _from_bearer(authorization, secret, registry)


def gateway_vouch_key(secret: bytes) -> str:
    """What the gateway presents to vouch for a caller's address: derived from the platform
    secret, so the gateway can vouch without being able to mint tokens."""
    return hmac.new(secret, b"mbt gateway vouch v1", "sha256").hexdigest()


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

"""Browser credentials at the edge: session and refresh cookies, and who may send them.

The access token rides in ``mbt_session`` (15 minutes), the refresh token in ``mbt_refresh``,
scoped to the refresh route so it travels nowhere else. Both are HttpOnly; Secure;
SameSite=Strict, and neither appears in a response body a script could read. Unsafe requests
from another site are refused (login CSRF included), whether or not they carry a cookie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.platform.auth import KEY_ID_HEADER, KEY_SECRET_HEADER
from services.platform.grpc_server import CLIENT_ADDR_HEADER, GATEWAY_VOUCH_HEADER

__all__ = [
    "ACCESS_COOKIE",
    "REFRESH_COOKIE",
    "REFRESH_PATH",
    "SESSION_OPENING_METHODS",
    "CredentialRefused",
    "ascii_header",
    "credential_metadata",
    "clear_session_cookies",
    "cross_site",
    "set_session_cookies",
    "take_tokens",
]

ACCESS_COOKIE = "mbt_session"
REFRESH_COOKIE = "mbt_refresh"
REFRESH_PATH = "/api/sessions/refresh"
SESSION_OPENING_METHODS = frozenset({"FinishRegistration", "FinishLogin", "RefreshSession"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site(request: Request, allowed_origins: Sequence[str]) -> bool:
    """An unsafe request another site's page made (Fetch metadata, then the Origin header)."""
    if request.method in SAFE_METHODS:
        return False
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    return origin is not None and origin not in allowed_origins


MAX_CREDENTIAL_CHARS = 4096
CREDENTIAL_HEADERS = (KEY_ID_HEADER, KEY_SECRET_HEADER)


def ascii_header(value: str) -> bool:
    return value.isascii() and value.isprintable()


@dataclass(frozen=True)
class CredentialRefused:
    status: int
    code: str
    message: str


def credential_metadata(
    request: Request, allowed_origins: Sequence[str], vouch_key: str, rid: str
) -> list[tuple[str, str]] | CredentialRefused:
    """The caller's credential as gRPC metadata (API key headers, bearer, or the session
    cookie), or why the request is refused before it reaches a service."""
    metadata: list[tuple[str, str]] = [("x-request-id", rid)]
    if vouch_key and request.client is not None:
        # the services limit unauthenticated calls per client address; only we may say it
        metadata += [(CLIENT_ADDR_HEADER, request.client.host), (GATEWAY_VOUCH_HEADER, vouch_key)]
    if cross_site(request, allowed_origins):
        return CredentialRefused(403, "CSRF_REJECTED", "a request from another site was refused")
    auth = request.headers.get("authorization")
    keys = [(h, request.headers[h]) for h in CREDENTIAL_HEADERS if h in request.headers]
    cookie = request.cookies.get(ACCESS_COOKIE)
    presented = [v for _, v in keys] + ([auth] if auth else [])
    if any(len(v) > MAX_CREDENTIAL_CHARS or not ascii_header(v) for v in presented):
        return CredentialRefused(
            401, "TOKEN_REJECTED", "credential rejected: malformed or too long"
        )
    if keys:
        metadata += keys
    elif auth:
        metadata.append(("authorization", auth))
    elif cookie and ascii_header(cookie) and len(cookie) <= MAX_CREDENTIAL_CHARS:
        metadata.append(("authorization", f"Bearer {cookie}"))
    return metadata


def _seconds_until(ts: str, default: int) -> int:
    try:
        end = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return default
    return max(0, int((end - datetime.now(UTC)).total_seconds()))


@dataclass(frozen=True)
class SessionTokens:
    access: str
    access_max_age: int
    refresh: str
    refresh_max_age: int


def take_tokens(data: dict[str, Any]) -> SessionTokens:
    """Remove the tokens from a Session reply's body (they travel only as cookies)."""
    return SessionTokens(
        str(data.pop("token", "")),
        _seconds_until(str(data.get("access_expires_at", "")), 15 * 60),
        str(data.pop("refresh_token", "")),
        _seconds_until(str(data.get("expires_at", "")), 30 * 86400),
    )


def set_session_cookies(resp: Response, tokens: SessionTokens, secure: bool) -> None:
    resp.set_cookie(
        ACCESS_COOKIE,
        tokens.access,
        max_age=tokens.access_max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    if tokens.refresh:
        resp.set_cookie(
            REFRESH_COOKIE,
            tokens.refresh,
            max_age=tokens.refresh_max_age,
            path=REFRESH_PATH,
            secure=secure,
            httponly=True,
            samesite="strict",
        )


def clear_session_cookies(resp: Response, secure: bool, *, refresh_too: bool = True) -> None:
    resp.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    if refresh_too:
        resp.delete_cookie(
            REFRESH_COOKIE, path=REFRESH_PATH, secure=secure, httponly=True, samesite="strict"
        )

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

__all__ = [
    "ACCESS_COOKIE",
    "REFRESH_COOKIE",
    "REFRESH_PATH",
    "SESSION_OPENING_METHODS",
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

"""The CLI's HTTP client for the gateway, and where it keeps its passkey and session."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import platformdirs

DEFAULT_URL = "http://127.0.0.1:8080"
COOKIE_RE = re.compile(r"mbt_session=([^;]+)")
REFRESH_RE = re.compile(r"mbt_refresh=([^;]+)")


class CliError(Exception):
    """One clear line for the user; `exit_code` for the shell."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def config_dir() -> Path:
    return Path(os.environ.get("MBT_CONFIG_DIR") or platformdirs.user_config_dir("mbt"))


def origin_for(url: str) -> str:
    """The WebAuthn origin for a gateway URL (loopback is spelled `localhost`, as browsers do)."""
    parts = urlsplit(url)
    host = "localhost" if parts.hostname in ("127.0.0.1", "::1", "localhost") else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass
class SavedSession:
    """The signed-in session: a 15-minute access token and the refresh token that renews it."""

    url: str
    email: str
    token: str
    refresh_token: str = ""

    @classmethod
    def load(cls) -> SavedSession | None:
        path = config_dir() / "session.json"
        if not path.exists():
            return None
        d = json.loads(path.read_text())
        return cls(
            url=d["url"], email=d["email"], token=d["token"], refresh_token=d.get("refresh", "")
        )

    def save(self) -> None:
        d = config_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / "session.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            body = {"url": self.url, "email": self.email, "token": self.token}
            json.dump({**body, "refresh": self.refresh_token}, f)
        tmp.replace(path)

    @staticmethod
    def clear() -> None:
        (config_dir() / "session.json").unlink(missing_ok=True)


def passkey_path(email: str) -> Path:
    safe = re.sub(r"[^a-zA-Z0-9@._-]", "_", email.lower())
    return config_dir() / "passkeys" / f"{safe}.json"


class Api:
    def __init__(
        self, url: str, token: str | None = None, session: SavedSession | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.session = session  # refreshed (and saved) when the access token expires
        self.http = httpx.Client(base_url=self.url, timeout=15.0)

    def _refresh(self) -> bool:
        """Trade the saved refresh token for a new pair; False when there is none or it fails."""
        s = self.session
        if s is None or not s.refresh_token:
            return False
        try:
            r = self.http.post("/api/sessions/refresh", json={"refresh_token": s.refresh_token})
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        s.token, s.refresh_token = session_tokens(r)
        s.save()
        self.token = s.token
        return True

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[Any, httpx.Response]:
        try:
            return self._call(method, path, json_body=json_body, params=params)
        except SessionExpired:
            if not self._refresh():
                raise CliError(
                    "the session has ended: sign in again with `mbt login` [SESSION_EXPIRED]"
                ) from None
            return self._call(method, path, json_body=json_body, params=params)

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[Any, httpx.Response]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = self.http.request(method, path, json=json_body, params=params, headers=headers)
        except httpx.ConnectError:
            raise CliError(f"cannot reach MBT at {self.url}: is `mbt up` running?", 2) from None
        except httpx.TimeoutException:
            raise CliError(f"MBT at {self.url} did not answer in time", 2) from None
        try:
            body = r.json()
        except ValueError:
            raise CliError(f"unexpected reply from {self.url} (HTTP {r.status_code})") from None
        if r.status_code >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            code = err.get("code", str(r.status_code))
            if r.status_code == 401 and self.session is not None and code == "TOKEN_REJECTED":
                raise SessionExpired(err.get("message", ""))
            hint = " (sign in again with `mbt login`)" if r.status_code == 401 else ""
            raise CliError(f"{err.get('message', 'request failed')} [{code}]{hint}")
        return body.get("data"), r


class SessionExpired(Exception):
    """The access token was refused (expired): refresh and try once more."""


def session_tokens(resp: httpx.Response) -> tuple[str, str]:
    """(access token, refresh token) from a session-opening reply's cookies."""
    access = refresh = ""
    for value in resp.headers.get_list("set-cookie"):
        if m := COOKIE_RE.search(value):
            access = m.group(1)
        if m := REFRESH_RE.search(value):
            refresh = m.group(1)
    if not access:
        raise CliError("the server did not open a session")
    return access, refresh

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
    url: str
    email: str
    token: str

    @classmethod
    def load(cls) -> SavedSession | None:
        path = config_dir() / "session.json"
        if not path.exists():
            return None
        d = json.loads(path.read_text())
        return cls(url=d["url"], email=d["email"], token=d["token"])

    def save(self) -> None:
        d = config_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / "session.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "email": self.email, "token": self.token}, f)
        tmp.replace(path)

    @staticmethod
    def clear() -> None:
        (config_dir() / "session.json").unlink(missing_ok=True)


def passkey_path(email: str) -> Path:
    safe = re.sub(r"[^a-zA-Z0-9@._-]", "_", email.lower())
    return config_dir() / "passkeys" / f"{safe}.json"


class Api:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.url, timeout=15.0)

    def call(
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
            hint = " (sign in again with `mbt login`)" if r.status_code == 401 else ""
            raise CliError(f"{err.get('message', 'request failed')} [{code}]{hint}")
        return body.get("data"), r


def session_token(resp: httpx.Response) -> str:
    for value in resp.headers.get_list("set-cookie"):
        m = COOKIE_RE.search(value)
        if m:
            return m.group(1)
    raise CliError("the server did not open a session")

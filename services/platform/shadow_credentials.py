"""Shadow mode's Alpaca paper credentials, per user, from the operator's secret store.

A JSON file (``MBT_SHADOW_CREDENTIALS_FILE``; mode 0600 locally, a mounted Secret in k8s):
``{"users": {"<user id>": {"key_id": "...", "secret_key": "...", "url": "..."}}}``. It is
re-read when it changes. `mbt admin shadow-credentials set` writes it locally.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.platform.secret import Secret

__all__ = ["AlpacaPaperCredentials", "ShadowCredentials", "trading_client"]

PAPER_URL = "https://paper-api.alpaca.markets"


@dataclass(frozen=True)
class AlpacaPaperCredentials:
    key_id: str
    secret: Secret
    url: str = PAPER_URL


def trading_client(creds: AlpacaPaperCredentials) -> Any:
    """alpaca-py's TradingClient on this paper account, answering Alpaca's JSON as dicts."""
    from alpaca.trading.client import TradingClient

    return TradingClient(
        api_key=creds.key_id,
        secret_key=creds.secret.reveal(),
        paper=True,
        raw_data=True,
        url_override=creds.url,
    )


class ShadowCredentials:
    def __init__(self, path: str | None = None) -> None:
        self.path = Path(
            path if path is not None else os.environ.get("MBT_SHADOW_CREDENTIALS_FILE", "")
        )
        self._mtime: int | None = None
        self._users: dict[str, AlpacaPaperCredentials] = {}

    def _load(self) -> None:
        if not str(self.path) or str(self.path) == ".":
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            self._users = {}
            return
        if mtime == self._mtime:
            return
        try:
            doc = json.loads(self.path.read_text())
            users = {
                str(uid): AlpacaPaperCredentials(
                    str(c["key_id"]), Secret(str(c["secret_key"])), str(c.get("url") or PAPER_URL)
                )
                for uid, c in (doc.get("users") or {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # a half-written or broken file: keep what was read before
        self._users, self._mtime = users, mtime

    def of(self, user_id: str) -> AlpacaPaperCredentials | None:
        self._load()
        return self._users.get(user_id)

    def users(self) -> list[str]:
        self._load()
        return sorted(self._users)

    def set(self, user_id: str, key_id: str, secret: str, url: str = "") -> None:
        """Add or replace one user's credentials (atomically, mode 0600)."""
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            doc = {"users": {}}
        doc.setdefault("users", {})[user_id] = {
            "key_id": key_id,
            "secret_key": secret,
            "url": url or PAPER_URL,
        }
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)

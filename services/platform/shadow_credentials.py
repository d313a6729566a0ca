"""Shadow mode's Alpaca paper credentials, per user, from the operator's secret store.

A JSON file (``MBT_SHADOW_CREDENTIALS_FILE``; mode 0600 locally, a mounted Secret in k8s):
``{"users": {"<user id>": {"key_id": "...", "secret_key": "...", "url": "..."}}}``. It is
re-read when it changes. `mbt admin shadow-credentials set` writes it locally.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.platform.secret import Secret

__all__ = ["AlpacaPaperCredentials", "ShadowCredentials", "read_paper", "trading_client"]

PAPER_URL = "https://paper-api.alpaca.markets"


@dataclass(frozen=True)
class AlpacaPaperCredentials:
    key_id: str
    secret: Secret
    url: str = PAPER_URL


async def read_paper(creds: AlpacaPaperCredentials, read: Callable[[Any], Any]) -> Any:
    """``read(client)`` on the user's Alpaca paper account, off the event loop. Alpaca is the
    source of a shadow user's reads, so its silence is UNAVAILABLE, said plainly."""
    from alpaca.common.exceptions import APIError

    from services.platform.errors import Unavailable

    try:
        return await asyncio.to_thread(lambda: read(trading_client(creds)))
    except (APIError, OSError) as err:
        raise Unavailable(
            f"shadow mode reads from Alpaca paper, which did not answer ({type(err).__name__})",
            reason="SHADOW_SOURCE_UNAVAILABLE",
        ) from None


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

"""Settings of the Alpaca market-data provider, read from the environment.

| variable                    | meaning                                                      |
|-----------------------------|--------------------------------------------------------------|
| `ALPACA_MARKET_DATA_KEY`    | key id of the one shared server-side data account (required) |
| `ALPACA_MARKET_DATA_SECRET` | its secret (required; never logged, hidden in every repr)    |
| `ALPACA_DATA_FEED`          | `iex` (default, free) or `sip` (paid, consolidated)          |
| `ALPACA_DATA_URL`           | REST base instead of `https://data.alpaca.markets`           |
| `ALPACA_STREAM_URL`         | stream instead of `wss://stream.data.alpaca.markets/v2/<feed>`; |
|                             | a bare `ws[s]://host[:port]` gets `/v2/<feed>` appended       |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from alpaca.data.enums import DataFeed

from services.marketdata.providers.errors import ProviderConfigError
from services.platform.secret import Secret

__all__ = ["AlpacaSettings", "Secret"]

FEEDS: Final = {"iex": DataFeed.IEX, "sip": DataFeed.SIP}


@dataclass(frozen=True, slots=True)
class AlpacaSettings:
    """Credentials and endpoints of the shared Alpaca market-data account."""

    key: str
    secret: Secret
    feed: DataFeed = DataFeed.IEX
    data_url: str | None = None
    stream_url: str | None = None

    def __post_init__(self) -> None:
        if not self.key or not self.secret.reveal():
            raise ProviderConfigError("Alpaca market data needs a key and a secret")
        if self.feed not in FEEDS.values():
            raise ProviderConfigError(f"Alpaca stock feed must be iex or sip, not {self.feed!r}")
        _check_url("ALPACA_DATA_URL", self.data_url, ("http", "https"))
        _check_url("ALPACA_STREAM_URL", self.stream_url, ("ws", "wss"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlpacaSettings:
        """Read the variables in the module docstring (from ``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        missing = [
            name
            for name in ("ALPACA_MARKET_DATA_KEY", "ALPACA_MARKET_DATA_SECRET")
            if not env.get(name, "").strip()
        ]
        if missing:
            raise ProviderConfigError(f"set {' and '.join(missing)} for the Alpaca provider")
        feed_name = env.get("ALPACA_DATA_FEED", "iex").strip().lower() or "iex"
        if feed_name not in FEEDS:
            raise ProviderConfigError(f"ALPACA_DATA_FEED must be iex or sip, not {feed_name!r}")
        return cls(
            key=env["ALPACA_MARKET_DATA_KEY"].strip(),
            secret=Secret(env["ALPACA_MARKET_DATA_SECRET"].strip()),
            feed=FEEDS[feed_name],
            data_url=env.get("ALPACA_DATA_URL", "").strip() or None,
            stream_url=env.get("ALPACA_STREAM_URL", "").strip() or None,
        )

    @property
    def rest_endpoint(self) -> str | None:
        """The REST ``url_override`` for alpaca-py (None: Alpaca's own)."""
        # alpaca-py appends "/v2/..." to the base: a trailing slash would double it
        return self.data_url.rstrip("/") if self.data_url else None

    @property
    def stream_endpoint(self) -> str | None:
        """The stream ``url_override`` for alpaca-py, which uses it verbatim (None: Alpaca's)."""
        if self.stream_url is None:
            return None
        if urlsplit(self.stream_url).path in ("", "/"):
            return f"{self.stream_url.rstrip('/')}/v2/{self.feed.value}"
        return self.stream_url


def _check_url(name: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.username or parts.password:  # checked first: the next message quotes the URL
        raise ProviderConfigError(f"{name} must not carry credentials")
    if parts.scheme not in schemes or not parts.hostname:
        raise ProviderConfigError(f"{name} must be a {'/'.join(schemes)} URL, not {url!r}")

"""Handoff's clients for Alpaca: OAuth (Authlib), the Trading API (alpaca-py) and trade updates.

Everything that touches the broker token takes a `SecretToken` and reveals it only into the
client call, never into a log line, an exception text or a return value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from services.handoff.crypto import SecretToken

__all__ = [
    "AlpacaConfig",
    "AlpacaOAuth",
    "AlpacaTrading",
    "APIError",
    "BrokerRejected",
    "BrokerUnreachable",
    "OAuthError",
    "OAuthTradeUpdates",
]

log = logging.getLogger("mbt.handoff.alpaca")


@dataclass(frozen=True)
class AlpacaConfig:
    """Where Alpaca is (real URLs by default; `mbt up --live-sandbox` points them at the sandbox)
    and MBT's registered OAuth client."""

    authorize_url: str
    token_url: str
    revoke_url: str
    trading_url: str
    stream_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str = "trading"

    @classmethod
    def from_env(cls) -> AlpacaConfig:
        env = os.environ.get
        secret = env("MBT_ALPACA_CLIENT_SECRET", "")
        secret_file = env("MBT_ALPACA_CLIENT_SECRET_FILE", "")
        if secret_file:
            secret = Path(secret_file).read_text().strip()
        return cls(
            authorize_url=env(
                "MBT_ALPACA_OAUTH_AUTHORIZE_URL", "https://app.alpaca.markets/oauth/authorize"
            ),
            token_url=env("MBT_ALPACA_OAUTH_TOKEN_URL", "https://api.alpaca.markets/oauth/token"),
            revoke_url=env("MBT_ALPACA_OAUTH_REVOKE_URL", ""),
            trading_url=env("MBT_ALPACA_TRADING_URL", "https://api.alpaca.markets"),
            stream_url=env("MBT_ALPACA_STREAM_URL", "wss://api.alpaca.markets/stream"),
            client_id=env("MBT_ALPACA_CLIENT_ID", ""),
            client_secret=secret,
            redirect_uri=env(
                "MBT_HANDOFF_REDIRECT_URI", "http://localhost:8080/console/handoff.html"
            ),
        )

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    def __repr__(self) -> str:  # the client secret never shows
        return f"AlpacaConfig(authorize_url={self.authorize_url!r}, client_id={self.client_id!r})"


class BrokerUnreachable(RuntimeError):
    """Alpaca did not answer (network, timeout, 5xx): the outcome is unknown."""


class BrokerRejected(RuntimeError):
    """Alpaca answered with a refusal (4xx): ``status`` and Alpaca's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AlpacaOAuth:
    """Authorization code with PKCE (S256) through Authlib's OAuth 2 client (its requests
    integration, run off the event loop like alpaca-py)."""

    def __init__(self, cfg: AlpacaConfig) -> None:
        self.cfg = cfg

    def _client(self) -> OAuth2Session:
        return OAuth2Session(
            client_id=self.cfg.client_id,
            client_secret=self.cfg.client_secret,
            scope=self.cfg.scope,
            redirect_uri=self.cfg.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",  # Alpaca takes form fields
            revocation_endpoint_auth_method="client_secret_post",
        )

    def authorization(self) -> tuple[str, str, str]:
        """A fresh (authorize URL, state, code_verifier)."""
        verifier = generate_token(64)
        state = generate_token(40)
        with self._client() as client:
            url, _ = client.create_authorization_url(
                self.cfg.authorize_url, state=state, code_verifier=verifier
            )
        return str(url), state, verifier

    async def exchange(self, code: str, verifier: str) -> tuple[SecretToken, str]:
        """The token and its granted scope, exchanged server-side (with the PKCE verifier)."""

        def fetch() -> dict[str, Any]:
            with self._client() as client:
                return dict(
                    client.fetch_token(
                        self.cfg.token_url, code=code, code_verifier=verifier, timeout=10
                    )
                )

        token = await asyncio.to_thread(fetch)
        access = str(token.get("access_token", ""))
        if not access:
            raise OAuthError("invalid_token", "Alpaca answered without an access token")
        return SecretToken(access), str(token.get("scope", ""))

    async def revoke(self, token: SecretToken) -> bool:
        """Revoke at Alpaca (RFC 7009) where a revoke URL is configured; True if it answered."""
        if not self.cfg.revoke_url:
            return False

        def revoke() -> int:
            with self._client() as client:
                return int(
                    client.revoke_token(
                        self.cfg.revoke_url, token=token.reveal(), timeout=10
                    ).status_code
                )

        return await asyncio.to_thread(revoke) < 400


class AlpacaTrading:
    """alpaca-py's TradingClient with the user's OAuth token, run off the event loop."""

    def __init__(self, cfg: AlpacaConfig) -> None:
        self.cfg = cfg

    def _client(self, token: SecretToken) -> TradingClient:
        return TradingClient(
            oauth_token=token.reveal(), raw_data=True, url_override=self.cfg.trading_url
        )

    async def _run(self, fn: Callable[[TradingClient], Any], token: SecretToken) -> Any:
        def call() -> Any:
            try:
                return fn(self._client(token))
            except APIError as err:
                status = err.status_code or 0
                if status >= 500 or status == 0:
                    raise BrokerUnreachable(f"Alpaca answered {status}") from None
                raise BrokerRejected(status, _api_message(err)) from None
            except OSError as err:  # requests' ConnectionError and timeouts are OSErrors
                raise BrokerUnreachable(type(err).__name__) from None

        return await asyncio.to_thread(call)

    async def account(self, token: SecretToken) -> dict[str, Any]:
        return dict(await self._run(lambda c: c.get_account(), token))

    async def submit(self, token: SecretToken, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /v2/orders with exactly ``payload`` (its client_order_id makes a retry safe:
        alpaca-py retries 429/504 with the same body, and Alpaca refuses a repeat)."""
        return dict(await self._run(lambda c: c.post("/orders", payload), token))

    async def by_client_order_id(
        self, token: SecretToken, client_order_id: str
    ) -> dict[str, Any] | None:
        try:
            return dict(await self._run(lambda c: c.get_order_by_client_id(client_order_id), token))
        except BrokerRejected as err:
            if err.status == 404:
                return None
            raise


def _api_message(err: APIError) -> str:
    try:
        return str(json.loads(str(err)).get("message") or err)
    except (ValueError, AttributeError):
        return str(err)[:300]


class OAuthTradeUpdates(TradingStream):
    """alpaca-py's TradingStream (its reconnects, dispatch and TradeUpdate parsing), signing in
    with an OAuth token as Alpaca's stream accepts (``{"action":"authenticate","data":
    {"oauth_token":…}}``), which the SDK itself does not offer."""

    def __init__(self, token: SecretToken, url: str) -> None:
        super().__init__("", "", raw_data=True, url_override=url)
        self._token = token

    async def _auth(self) -> None:
        assert self._ws is not None
        await self._ws.send(
            json.dumps({"action": "authenticate", "data": {"oauth_token": self._token.reveal()}})
        )
        msg = json.loads(await self._ws.recv())
        if (msg.get("data") or {}).get("status") != "authorized":
            raise ValueError("Alpaca refused the token on the trade_updates stream")

    def listen(self, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> asyncio.Task[None]:
        async def on_update(msg: Any) -> None:
            await handler(dict(msg.get("data") or {}))

        self.subscribe_trade_updates(on_update)
        return asyncio.create_task(self._run_forever())  # type: ignore[no-untyped-call]

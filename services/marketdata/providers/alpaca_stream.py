"""alpaca-py's stock quote stream, instrumented for a long-running service.

`StockDataStream._run_forever` already owns the connection loop (connect, msgpack handshake,
subscribe, consume, reconnect on a dropped socket); it is the coroutine ``StockDataStream.run``
hands to ``asyncio.run``, so awaiting it as a task is how it runs inside an existing loop. This
subclass hooks three of its steps and leaves the rest as shipped:

* `_reconnect_delay`: our `ReconnectBackoff` instead of the library's fixed 1-30 s schedule;
* `_start_ws`: counts each authenticated connection (the first is a connect, later ones are
  reconnects);
* `_auth`: a rejected key stops the loop (``stop_ws``) and is kept as `fatal`, instead of being
  retried forever. "connection limit exceeded" (the old socket of this key not yet reaped) and
  "auth timeout" stay retryable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from alpaca.data.live import StockDataStream

from services.marketdata.providers.alpaca_settings import AlpacaSettings
from services.marketdata.providers.backoff import ReconnectBackoff
from services.marketdata.providers.errors import ProviderAuthError, ProviderError

__all__ = ["QuoteStream", "StreamCounters"]

log = logging.getLogger("mbt.marketdata.alpaca")

RETRYABLE_AUTH_ERRORS: Final = frozenset({"connection limit exceeded", "auth timeout"})


class _NoFrameDumps(logging.Filter):
    """Drop websockets' DEBUG frame and header dumps: the auth frame holds the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(("> ", "< ")))


# The websockets connection logs here instead of under "websockets.client".
WIRE_LOG: Final = logging.getLogger("mbt.marketdata.alpaca.wire")
WIRE_LOG.addFilter(_NoFrameDumps())


@dataclass
class StreamCounters:
    """Live-stream health, for metrics and logs."""

    connects: int = 0  # authenticated connections, the first one included
    reconnects: int = 0  # authenticated connections after the first
    quotes_received: int = 0
    handler_errors: int = 0  # quotes the consumer's callback raised on


class QuoteStream(StockDataStream):
    """One WebSocket for the whole key (Alpaca allows one per key), see the module docstring."""

    def __init__(
        self,
        settings: AlpacaSettings,
        backoff: ReconnectBackoff,
        counters: StreamCounters,
        data_timeout: float | None = None,
    ) -> None:
        params: dict[str, Any] = {
            # the library defaults, which passing websocket_params replaces
            "ping_interval": 10,
            "ping_timeout": 180,
            "max_queue": 1024,
            # bounded close handshake, so cancelling never hangs on a dead peer
            "close_timeout": 2,
            "logger": WIRE_LOG,
        }
        super().__init__(
            settings.key,
            settings.secret.reveal(),
            feed=settings.feed,
            websocket_params=params,
            url_override=settings.stream_endpoint,
            data_timeout=data_timeout,
        )
        self.key_id = settings.key
        self.backoff = backoff
        self.counters = counters
        self.fatal: ProviderError | None = None

    def __repr__(self) -> str:
        return f"QuoteStream(key={self.key_id!r}, endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _reconnect_delay(self, retries: int) -> float:
        delay = self.backoff.delay(retries)
        log.info("alpaca stream: reconnect attempt %d in %.3f s", retries, delay)
        return delay

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self.counters.connects += 1
        if self.counters.connects > 1:
            self.counters.reconnects += 1
            log.info("alpaca stream: reconnected (%d reconnects)", self.counters.reconnects)

    async def _auth(self) -> None:
        try:
            await super()._auth()
        except ValueError as exc:
            reason = str(exc)
            if reason not in RETRYABLE_AUTH_ERRORS:
                self.fatal = ProviderAuthError(
                    f"Alpaca market data refused key {self.key_id!r} on {self.endpoint}: {reason}"
                )
                await self.stop_ws()
            raise

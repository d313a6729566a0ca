"""Live and historical NBBO quotes from Alpaca's market-data API, as MBT `Quote`s.

Everything goes through alpaca-py: `StockDataStream` (msgpack WebSocket) for live quotes,
`StockHistoricalDataClient` for history and latest quotes, `OptionHistoricalDataClient` for an
option chain's latest quotes. alpaca-py parses prices into floats; they become ``Decimal`` via
their shortest round-trip text (the digits Alpaca sent, see `price_from_wire`), never floats.
The REST clients are blocking (requests), so they run in a worker thread, one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from alpaca.common.exceptions import APIError
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.models import Quote as AlpacaQuote
from alpaca.data.models import QuoteSet
from alpaca.data.requests import OptionChainRequest, StockLatestQuoteRequest, StockQuotesRequest

from services.conventions.quote import Quote
from services.marketdata.providers.alpaca_settings import AlpacaSettings, Secret
from services.marketdata.providers.alpaca_stream import QuoteStream, StreamCounters
from services.marketdata.providers.backoff import ReconnectBackoff
from services.marketdata.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderStreamError,
)

__all__ = [
    "AlpacaQuoteProvider",
    "AlpacaSettings",
    "OnQuote",
    "Secret",
    "StreamCounters",
    "price_from_wire",
    "quote_from_alpaca",
]

log = logging.getLogger("mbt.marketdata.alpaca")

OnQuote = Callable[[Quote], Awaitable[None]]
_R = TypeVar("_R")


def price_from_wire(value: float) -> Decimal:
    """The decimal Alpaca sent, from the float alpaca-py parsed it into.

    ``repr`` of a float is the shortest text that reads back as the same float, so it is the
    number as written on the wire (Alpaca's prices have far fewer than 15 significant digits).
    An integral price loses the float's ``.0`` to read like the recorded archive (``182``).
    """
    text = repr(float(value))
    return Decimal(text[:-2] if text.endswith(".0") else text)


def quote_from_alpaca(q: AlpacaQuote) -> Quote:
    """An alpaca-py quote as an MBT `Quote`: exact Decimal prices, whole sizes, UTC time."""
    ts = q.timestamp
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return Quote(
        symbol=q.symbol,
        ts=ts,
        bid=price_from_wire(q.bid_price),
        ask=price_from_wire(q.ask_price),
        bid_size=int(q.bid_size),
        ask_size=int(q.ask_size),
    )


class AlpacaQuoteProvider:
    """Quotes of ``symbols`` from the shared Alpaca market-data account.

    `run` streams live quotes until cancelled, reconnecting by itself with `backoff`;
    `counters` tells how that goes. `history`, `latest_quotes` and `option_chain` are REST.
    """

    def __init__(
        self,
        settings: AlpacaSettings,
        symbols: Iterable[str],
        *,
        backoff: ReconnectBackoff | None = None,
        data_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.symbols = tuple(dict.fromkeys(symbols))
        if not self.symbols:
            raise ValueError("the Alpaca provider needs at least one symbol to stream")
        self.backoff = backoff if backoff is not None else ReconnectBackoff()
        self.data_timeout = data_timeout
        self.counters = StreamCounters()
        self._running = False
        self._rest_lock = asyncio.Lock()
        self._stocks: StockHistoricalDataClient | None = None
        self._options: OptionHistoricalDataClient | None = None

    def __repr__(self) -> str:
        return (
            f"AlpacaQuoteProvider(key={self.settings.key!r}, feed={self.settings.feed.value!r}, "
            f"symbols={len(self.symbols)})"
        )

    # -- live ----------------------------------------------------------------------------------
    async def run(self, on_quote: OnQuote) -> None:
        """Stream live quotes into ``on_quote`` until cancelled.

        Drops and failed connects are retried with the backoff. ``on_quote`` errors are logged
        and counted, never end the stream. Raises `ProviderAuthError` if Alpaca refuses the key,
        `ProviderStreamError` if the stream ends on its own. One `run` at a time per provider
        (Alpaca allows one stream connection per key).
        """
        if self._running:
            raise RuntimeError("AlpacaQuoteProvider.run is already running")
        stream = QuoteStream(self.settings, self.backoff, self.counters, self.data_timeout)

        async def handle(item: AlpacaQuote | dict[Any, Any]) -> None:
            if not isinstance(item, AlpacaQuote):  # only with raw_data=True, which we never set
                return
            quote = quote_from_alpaca(item)
            self.counters.quotes_received += 1
            try:
                await on_quote(quote)
            except Exception:
                self.counters.handler_errors += 1
                log.exception("quote handler failed on %s", quote.symbol)

        stream.subscribe_quotes(handle, *self.symbols)
        log.info(
            "alpaca stream: %d symbols from %s (key %s)",
            len(self.symbols),
            stream.endpoint,
            self.settings.key,
        )
        self._running = True
        # `_run_forever` is the loop alpaca-py's blocking `run()` hands to asyncio.run
        task = asyncio.create_task(stream._run_forever(), name="alpaca-quote-stream")
        try:
            await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
            self._running = False
            await stream.close()
        if stream.fatal is not None:
            raise stream.fatal
        raise ProviderStreamError("the Alpaca quote stream stopped by itself")

    # -- REST ----------------------------------------------------------------------------------
    async def history(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        """Recorded quotes of ``symbol`` with ``start <= ts < end``, oldest first.

        Same interval as `RecordedArchive.quotes_between` (Alpaca's own ``end`` is inclusive;
        quotes stamped exactly ``end`` are dropped). alpaca-py follows ``next_page_token``.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        request = StockQuotesRequest(
            symbol_or_symbols=symbol, start=start, end=end, feed=self.settings.feed
        )
        result = await self._rest(self._stock_client().get_stock_quotes, request)
        if not isinstance(result, QuoteSet):
            raise ProviderError("alpaca-py returned raw quote data")
        quotes = [quote_from_alpaca(q) for q in result.data.get(symbol, [])]
        return [q for q in quotes if q.ts < end]

    async def latest_quotes(self, symbols: Iterable[str]) -> dict[str, Quote]:
        """The latest NBBO of each of ``symbols`` (absent: Alpaca has none)."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        request = StockLatestQuoteRequest(symbol_or_symbols=wanted, feed=self.settings.feed)
        result = await self._rest(self._stock_client().get_stock_latest_quote, request)
        return {s: quote_from_alpaca(q) for s, q in result.items() if isinstance(q, AlpacaQuote)}

    async def option_chain(self, underlying: str) -> dict[str, Quote]:
        """The latest quote of every listed option contract on ``underlying`` (OCC symbols)."""
        request = OptionChainRequest(underlying_symbol=underlying)
        result = await self._rest(self._option_client().get_option_chain, request)
        chain: dict[str, Quote] = {}
        for contract, snapshot in result.items():
            latest = getattr(snapshot, "latest_quote", None)
            if isinstance(latest, AlpacaQuote):
                chain[contract] = quote_from_alpaca(latest)
        return chain

    async def _rest(self, call: Callable[[Any], _R], request: Any) -> _R:
        async with self._rest_lock:  # one requests.Session per client: one call at a time
            try:
                return await asyncio.to_thread(call, request)
            except APIError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise ProviderAuthError(
                        f"Alpaca market data refused key {self.settings.key!r} ({status})"
                    ) from None
                raise ProviderError(f"Alpaca market data request failed ({status}): {exc}") from exc

    def _stock_client(self) -> StockHistoricalDataClient:
        if self._stocks is None:
            self._stocks = StockHistoricalDataClient(
                self.settings.key,
                self.settings.secret.reveal(),
                url_override=self.settings.rest_endpoint,
            )
        return self._stocks

    def _option_client(self) -> OptionHistoricalDataClient:
        if self._options is None:
            self._options = OptionHistoricalDataClient(
                self.settings.key,
                self.settings.secret.reveal(),
                url_override=self.settings.rest_endpoint,
            )
        return self._options

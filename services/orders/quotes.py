"""The quote an order's hold is priced at: the engine's latest, else market data's.

The engine sees every quote market data publishes from the moment this process subscribed, so
its latest quote is market data's latest. Until a symbol's first quote arrives after a start
(a symbol that quotes once a minute, an option contract that quotes rarely), market data is
asked, once for the orders that come while it answers; its answer serves the orders that
follow for `REUSE_S`, so a burst of orders for a quiet symbol costs one call, not one each
(it was one call each: a second gRPC hop on every submit of such a symbol, and market data's
CPU). Market data also answers NOT_FOUND for an unknown symbol and FAILED_PRECONDITION while
it has no quote yet; neither is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from services.orders.domain.model import Quote

__all__ = ["REUSE_S", "QuoteSource"]

REUSE_S = 1.0


class QuoteSource:
    def __init__(
        self,
        engine_latest: Callable[[str], Quote | None],
        ask_market_data: Callable[[str], Awaitable[Quote]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine_latest = engine_latest
        self._ask = ask_market_data
        self._clock = clock
        # symbols market data has confirmed, with its latest answer and when it came
        self._asked: dict[str, tuple[float, Quote]] = {}
        self._pending: dict[str, asyncio.Future[Quote]] = {}

    async def current(self, symbol: str) -> Quote:
        asked = self._asked.get(symbol)
        if asked is not None:  # a known symbol: the engine's quote once it has one
            q = self._engine_latest(symbol)
            if q is not None:
                return q
            if self._clock() - asked[0] < REUSE_S:
                return asked[1]
        # orders that come together while market data is being asked wait for that answer
        pending = self._pending.get(symbol)
        if pending is None:
            pending = self._pending[symbol] = asyncio.ensure_future(self._ask_and_keep(symbol))
            pending.add_done_callback(lambda f: self._settled(symbol, f))
        return await asyncio.shield(pending)

    async def _ask_and_keep(self, symbol: str) -> Quote:
        quote = await self._ask(symbol)
        self._asked[symbol] = (self._clock(), quote)
        return quote

    def _settled(self, symbol: str, f: asyncio.Future[Quote]) -> None:
        self._pending.pop(symbol, None)
        if not f.cancelled():
            f.exception()  # retrieved here too: every waiter may have gone (cancelled)

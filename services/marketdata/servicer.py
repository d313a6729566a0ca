"""MarketDataService over gRPC: latest quotes, the clock, symbols and a quote stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from raxx.mbt.v1 import common_pb2, marketdata_service_pb2 as pb, marketdata_service_pb2_grpc as pb_grpc
from services.marketdata.feed import ReplayFeed
from services.orders.domain.model import Quote
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from services.platform.wire import dec_to_wire, ts_to_wire

Ctx = grpc.aio.ServicerContext[Any, Any]


def quote_to_pb(q: Quote) -> common_pb2.Quote:
    return common_pb2.Quote(
        symbol=q.symbol,
        bid=dec_to_wire(q.bid),
        ask=dec_to_wire(q.ask),
        bid_size=q.bid_size,
        ask_size=q.ask_size,
        timestamp=ts_to_wire(q.ts),
    )


def normalize_symbol(raw: str) -> str:
    s = raw.strip().upper()
    if not s:
        raise InvalidArgument("symbol", "is required")
    if not s.isalnum() or len(s) > 32:
        raise InvalidArgument("symbol", f"not a valid symbol: {raw!r}")
    return s


class MarketDataServicer(pb_grpc.MarketDataServiceServicer):
    def __init__(self, feed: ReplayFeed, symbols: list[str]) -> None:
        self.feed = feed
        self.symbols = sorted(symbols)
        self._known = set(symbols)

    def _check_known(self, symbol: str) -> None:
        if symbol not in self._known:
            raise NotFound(
                f"unknown symbol {symbol}: no market data for it (try one of "
                f"{', '.join(self.symbols[:8])})",
                reason="UNKNOWN_SYMBOL",
                metadata={"symbol": symbol},
            )

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Ctx) -> common_pb2.Quote:
        symbol = normalize_symbol(request.symbol)
        self._check_known(symbol)
        q = self.feed.cache.get(symbol)
        if q is None:
            raise FailedPrecondition(f"no quote for {symbol} yet", reason="NO_QUOTE",
                                     metadata={"symbol": symbol})
        return quote_to_pb(q)

    async def GetClock(self, request: pb.GetClockRequest, context: Ctx) -> pb.Clock:
        now = self.feed.clock.now()
        cal = self.feed.calendar
        close = cal.session_close_after(now)
        nxt_open = cal.next_open(now)
        if close is None:
            b = cal.session_bounds(nxt_open.date())
            close = b[1] if b else None
        return pb.Clock(
            timestamp=ts_to_wire(now),
            is_open=cal.is_open(now),
            next_open=ts_to_wire(nxt_open),
            next_close=ts_to_wire(close),
            source="replay",
        )

    async def ListSymbols(self, request: pb.ListSymbolsRequest, context: Ctx) -> pb.ListSymbolsResponse:
        return pb.ListSymbolsResponse(symbols=self.symbols)

    async def StreamQuotes(self, request: pb.StreamQuotesRequest, context: Ctx) -> AsyncIterator[common_pb2.Quote]:
        wanted = {normalize_symbol(s) for s in request.symbols}
        for s in wanted:
            self._check_known(s)
        queue: asyncio.Queue[Quote] = asyncio.Queue()
        self.feed.subscribers.add(queue)
        try:
            for s in sorted(wanted):
                q = self.feed.cache.get(s)
                if q is not None:
                    yield quote_to_pb(q)
            while True:
                q = await queue.get()
                if not wanted or q.symbol in wanted:
                    yield quote_to_pb(q)
        finally:
            self.feed.subscribers.discard(queue)

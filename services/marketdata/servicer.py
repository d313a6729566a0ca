"""MarketDataService over gRPC: latest quotes, the clock, symbols and a quote stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc

from raxx.mbt.v1 import (
    common_pb2,
)
from raxx.mbt.v1 import (
    marketdata_service_pb2 as pb,
)
from raxx.mbt.v1 import (
    marketdata_service_pb2_grpc as pb_grpc,
)
from services.conventions.decimals import dec_to_wire
from services.conventions.quote import Quote
from services.marketdata.domain.bars import TIMEFRAMES, quote_bars
from services.marketdata.domain.corporate_actions import (
    CorporateAction,
    Split,
    load_corporate_actions,
)
from services.marketdata.domain.options import option_chain, option_expiries
from services.marketdata.domain.recorded import RecordedArchive
from services.marketdata.feed import ReplayFeed
from services.marketdata.quote_book import delay_for
from services.marketdata.watchdog import FeedWatchdog
from services.platform.auth import Principal, current_principal
from services.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.platform.pagination import next_page_token, page_bounds
from services.platform.wire import parse_date, ts_from_wire, ts_to_wire

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


NEW_YORK = ZoneInfo("America/New_York")


def normalize_symbol(raw: str) -> str:
    s = raw.strip().upper()
    if not s:
        raise InvalidArgument("symbol", "is required")
    if not s.isalnum() or len(s) > 32:
        raise InvalidArgument("symbol", f"not a valid symbol: {raw!r}")
    return s


def caller() -> Principal:
    p = current_principal()
    if p is None:
        raise Unauthenticated("a session is required for market data")
    return p


def tier_of(p: Principal) -> str:
    return "service" if p.is_service else p.tier


def action_to_pb(a: CorporateAction) -> pb.CorporateAction:
    """A corporate action as it travels to other contexts (accounts applies them)."""
    if isinstance(a, Split):
        return pb.CorporateAction(
            symbol=a.symbol,
            ex_date=a.ex_date.isoformat(),
            type="split",
            split_from=a.ratio.denominator,
            split_to=a.ratio.numerator,
        )
    return pb.CorporateAction(
        symbol=a.symbol,
        ex_date=a.ex_date.isoformat(),
        type="cash_dividend",
        cash_amount=dec_to_wire(a.amount),
    )


class MarketDataServicer(pb_grpc.MarketDataServiceServicer):
    def __init__(
        self, feed: ReplayFeed, symbols: list[str], archive: RecordedArchive | None = None
    ) -> None:
        self.feed = feed
        self.archive = archive or RecordedArchive()
        self.stream_poll_s = 0.05
        self.watchdog: FeedWatchdog | None = None
        self.provider = "replay"
        self._actions: dict[str, list[CorporateAction]] = {}
        self.symbols = sorted(symbols)
        self._known = set(symbols)

    def _check_known(self, symbol: str, archive: bool = False) -> None:
        """The feed serves the symbol, or (archive reads: replays, backtests) it is recorded."""
        if symbol in self._known or (archive and self.archive.days(symbol)):
            return
        raise NotFound(
            f"unknown symbol {symbol}: no market data for it (try one of "
            f"{', '.join(self.symbols[:8])})",
            reason="UNKNOWN_SYMBOL",
            metadata={"symbol": symbol},
        )

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Ctx) -> common_pb2.Quote:
        symbol = normalize_symbol(request.symbol)
        self._check_known(symbol)
        delay = delay_for(tier_of(caller()))
        if delay:
            q = self.feed.book.latest(symbol, self.feed.clock.now() - delay)
        else:
            q = self.feed.cache.get(symbol)
        if q is None:
            raise FailedPrecondition(
                f"no quote for {symbol} yet", reason="NO_QUOTE", metadata={"symbol": symbol}
            )
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

    async def GetOptionChain(
        self, request: pb.GetOptionChainRequest, context: Ctx
    ) -> pb.OptionChain:
        principal = caller()
        underlying = normalize_symbol(request.underlying)
        now = self.feed.clock.now()
        as_of = parse_date("as_of", request.as_of) or now.date()
        expiries = option_expiries(self.archive, underlying, as_of)
        if not expiries:
            raise NotFound(
                f"no option contracts recorded for {underlying} on {as_of}",
                reason="NO_OPTION_CHAIN",
                metadata={"underlying": underlying, "asOf": as_of.isoformat()},
            )
        expiry = parse_date("expiry", request.expiry) or expiries[0]
        if expiry not in expiries:
            raise NotFound(
                f"no {underlying} contracts expire on {expiry}; expiries: "
                + ", ".join(e.isoformat() for e in expiries),
                reason="NO_SUCH_EXPIRY",
            )
        out = pb.OptionChain(
            underlying=underlying,
            expiry=expiry.isoformat(),
            expiries=[e.isoformat() for e in expiries],
        )
        bounds = self.feed.calendar.session_bounds(as_of)
        # each contract's last quote as of the market clock (and the caller's tier delay):
        # never one from later in the day
        seen_until = now - delay_for(tier_of(principal))
        for c in option_chain(self.archive, underlying, expiry, as_of):
            last = None
            if bounds is not None and bounds[0] <= seen_until:
                end = min(bounds[1], seen_until + timedelta(microseconds=1))
                window = self.archive.quotes_between(c.symbol, bounds[0], end)
                last = window[-1] if window else None
            out.contracts.add(
                symbol=c.symbol,
                underlying=underlying,
                expiry=c.expiry.isoformat(),
                type="call" if c.is_call else "put",
                strike=dec_to_wire(c.strike),
                multiplier=c.multiplier,
                quote=quote_to_pb(last) if last is not None else None,
            )
        return out

    async def ListCalendar(
        self, request: pb.ListCalendarRequest, context: Ctx
    ) -> pb.ListCalendarResponse:
        start = parse_date("start_date", request.start_date)
        end = parse_date("end_date", request.end_date)
        if start is None or end is None:
            raise InvalidArgument("start_date", "start_date and end_date are required")
        if end < start or (end - start).days > 366:
            raise InvalidArgument("end_date", "must be on or after start_date, within a year")
        out = pb.ListCalendarResponse()
        d = start
        while d <= end:
            b = self.feed.calendar.session_bounds(d)
            if b is not None:
                local_close = b[1].astimezone(NEW_YORK)
                out.sessions.add(
                    date=d.isoformat(),
                    open=ts_to_wire(b[0]),
                    close=ts_to_wire(b[1]),
                    early_close=(local_close.hour, local_close.minute) < (16, 0),
                )
            d += timedelta(days=1)
        return out

    async def ListCorporateActions(
        self, request: pb.ListCorporateActionsRequest, context: Ctx
    ) -> pb.ListCorporateActionsResponse:
        caller()
        start = parse_date("start_date", request.start_date)
        end = parse_date("end_date", request.end_date)
        if start is None or end is None:
            raise InvalidArgument("start_date", "start_date and end_date are required")
        out = pb.ListCorporateActionsResponse()
        for symbol in sorted({normalize_symbol(s) for s in request.symbols}):
            if symbol not in self._actions:  # the file's own calendar span (0.4 s once)
                self._actions[symbol] = load_corporate_actions(symbol)
            out.actions.extend(
                action_to_pb(a) for a in self._actions[symbol] if start <= a.ex_date <= end
            )
        return out

    async def GetFeedStatus(self, request: pb.GetFeedStatusRequest, context: Ctx) -> pb.FeedStatus:
        w = self.watchdog
        return pb.FeedStatus(
            provider=self.provider,
            stale=bool(w and w.stale),
            stale_reason=w.reason if w else "",
            quotes_published=self.feed.published,
            rejected=dict(self.feed.hygiene.counts),
            market_time=ts_to_wire(self.feed.clock.now()),
        )

    async def ListSymbols(
        self, request: pb.ListSymbolsRequest, context: Ctx
    ) -> pb.ListSymbolsResponse:
        return pb.ListSymbolsResponse(symbols=self.symbols)

    def _range_quotes(
        self, symbol: str, tier: str, start_ts: Any, end_ts: Any, archive: bool, has: bool
    ) -> list[Quote]:
        """Quotes of `symbol` in [start, end): the live buffer cut at what `tier` may see,
        or (Pro+) the recorded archive."""
        if not has:
            raise InvalidArgument("start_time", "start_time and end_time are required")
        start, end = ts_from_wire(start_ts), ts_from_wire(end_ts)
        if end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        if archive:
            if tier not in ("pro_plus", "service"):
                raise PermissionDenied(
                    "the quote archive is a Pro+ feature", reason="TIER_REQUIRED"
                )
            return self.archive.quotes_between(symbol, start, end)
        end = min(end, self.feed.clock.now() - delay_for(tier) + timedelta(microseconds=1))
        return self.feed.book.between(symbol, start, end)

    async def ListQuotes(
        self, request: pb.ListQuotesRequest, context: Ctx
    ) -> pb.ListQuotesResponse:
        symbol = normalize_symbol(request.symbol)
        self._check_known(symbol, request.archive)
        quotes = self._range_quotes(
            symbol,
            tier_of(caller()),
            request.start_time,
            request.end_time,
            request.archive,
            request.HasField("start_time") and request.HasField("end_time"),
        )
        size, offset = page_bounds(request.page_size, request.page_token, default=1000)
        page = quotes[offset : offset + size + 1]
        return pb.ListQuotesResponse(
            quotes=[quote_to_pb(q) for q in page[:size]],
            next_page_token=next_page_token(offset, size, len(page)),
        )

    async def ListBars(self, request: pb.ListBarsRequest, context: Ctx) -> pb.ListBarsResponse:
        symbol = normalize_symbol(request.symbol)
        self._check_known(symbol, request.archive)
        frame = request.timeframe or "1Min"
        if frame not in TIMEFRAMES:
            raise InvalidArgument("timeframe", f"must be one of {', '.join(TIMEFRAMES)}")
        quotes = self._range_quotes(
            symbol,
            tier_of(caller()),
            request.start_time,
            request.end_time,
            request.archive,
            request.HasField("start_time") and request.HasField("end_time"),
        )
        out = pb.ListBarsResponse()
        for b in quote_bars(quotes, TIMEFRAMES[frame]):
            out.bars.add(
                start=ts_to_wire(b.start),
                open=dec_to_wire(b.open),
                high=dec_to_wire(b.high),
                low=dec_to_wire(b.low),
                close=dec_to_wire(b.close),
                quotes=b.quotes,
            )
        return out

    async def StreamQuotes(
        self, request: pb.StreamQuotesRequest, context: Ctx
    ) -> AsyncIterator[common_pb2.Quote]:
        wanted = {normalize_symbol(s) for s in request.symbols}
        for s in wanted:
            self._check_known(s)
        delay = delay_for(tier_of(caller()))
        if delay:
            async for dq in self._delayed_stream(sorted(wanted or self.symbols), delay):
                yield dq
            return
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

    async def _delayed_stream(
        self, symbols: list[str], delay: timedelta
    ) -> AsyncIterator[common_pb2.Quote]:
        """Quotes released only once the market clock is `delay` past their timestamp."""
        sent: dict[str, datetime] = {}
        while True:
            horizon = self.feed.clock.now() - delay
            for s in symbols:
                last = sent.get(s)
                if last is None:
                    q = self.feed.book.latest(s, horizon)
                    batch = [q] if q is not None else []
                else:
                    batch = self.feed.book.between(
                        s, last + timedelta(microseconds=1), horizon + timedelta(microseconds=1)
                    )
                for q in batch:
                    sent[s] = q.ts
                    yield quote_to_pb(q)
            await asyncio.sleep(self.stream_poll_s)

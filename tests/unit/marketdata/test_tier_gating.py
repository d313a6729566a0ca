"""Tier gating at the market-data boundary: Free sees quotes 15 minutes late, by every route."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from raxx.mbt.v1 import marketdata_service_pb2 as pb
from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.feed import ReplayFeed
from services.marketdata.servicer import MarketDataServicer
from services.platform.auth import Principal, set_principal
from services.platform.errors import FailedPrecondition, PermissionDenied

pytestmark = pytest.mark.anyio

T0 = datetime(2013, 10, 7, 14, 0, tzinfo=UTC)
FREE = Principal(user_id="u-free", session_id="s1", tier="free")
PRO = Principal(user_id="u-pro", session_id="s2", tier="pro")


def q(minutes: float, bid: str) -> Quote:
    b = Decimal(bid)
    return Quote("IBM", T0 + timedelta(minutes=minutes), b, b + Decimal("0.05"), 100, 100)


async def _noop(_: Quote) -> None:
    return None


def make() -> tuple[ReplayFeed, MarketDataServicer]:
    feed = ReplayFeed((), T0, float("inf"), MarketCalendar(), _noop)
    svc = MarketDataServicer(feed, ["IBM"])
    svc.stream_poll_s = 0
    return feed, svc


def publish(feed: ReplayFeed, quote: Quote) -> None:
    feed.clock.jump_to(quote.ts)
    feed.cache.put(quote)
    feed.book.add(quote)
    for sub in feed.subscribers:
        sub.put_nowait(quote)


async def test_latest_quote_is_delayed_for_free() -> None:
    feed, svc = make()
    for quote in (q(0, "180.00"), q(10, "181.00"), q(16, "182.00")):
        publish(feed, quote)
    ctx: Any = None
    set_principal(PRO)
    assert (await svc.GetQuote(pb.GetQuoteRequest(symbol="IBM"), ctx)).bid == "182"
    set_principal(FREE)
    # at 14:16 a Free caller sees the market of 14:01 or earlier: the 14:00 quote
    assert (await svc.GetQuote(pb.GetQuoteRequest(symbol="IBM"), ctx)).bid == "180"
    feed.clock.jump_to(T0 + timedelta(minutes=25))
    assert (await svc.GetQuote(pb.GetQuoteRequest(symbol="IBM"), ctx)).bid == "181"


async def test_free_gets_nothing_before_fifteen_minutes() -> None:
    feed, svc = make()
    publish(feed, q(0, "180.00"))
    set_principal(FREE)
    with pytest.raises(FailedPrecondition, match="no quote"):
        await svc.GetQuote(pb.GetQuoteRequest(symbol="IBM"), None)  # type: ignore[arg-type]


async def test_history_is_cut_at_the_delay_and_archive_needs_pro_plus() -> None:
    feed, svc = make()
    for quote in (q(0, "180.00"), q(10, "181.00"), q(16, "182.00")):
        publish(feed, quote)
    req = pb.ListQuotesRequest(symbol="IBM")
    req.start_time.FromDatetime(T0 - timedelta(hours=1))
    req.end_time.FromDatetime(T0 + timedelta(hours=1))
    set_principal(PRO)
    assert [x.bid for x in (await svc.ListQuotes(req, None)).quotes] == ["180", "181", "182"]  # type: ignore[arg-type]
    set_principal(FREE)
    assert [x.bid for x in (await svc.ListQuotes(req, None)).quotes] == ["180"]  # type: ignore[arg-type]
    req.archive = True
    with pytest.raises(PermissionDenied):
        await svc.ListQuotes(req, None)  # type: ignore[arg-type]


async def test_free_stream_receives_each_quote_exactly_15_minutes_after_pro() -> None:
    feed, svc = make()
    received: dict[str, list[tuple[datetime, str]]] = {"pro": [], "free": []}

    async def subscribe(who: str, principal: Principal) -> None:
        set_principal(principal)
        async for quote in svc.StreamQuotes(pb.StreamQuotesRequest(symbols=["IBM"]), None):  # type: ignore[arg-type]
            received[who].append((feed.clock.now(), quote.bid))

    tasks = [
        asyncio.create_task(subscribe("pro", PRO)),
        asyncio.create_task(subscribe("free", FREE)),
    ]
    await asyncio.sleep(0)
    schedule = {0: "180.00", 3: "180.50", 7: "181.00"}  # minute -> bid
    for second in range(0, 25 * 60 + 1):  # the simulated clock, second by second
        minute, rem = divmod(second, 60)
        if rem == 0 and minute in schedule:
            publish(feed, q(minute, schedule[minute]))
        else:
            feed.clock.jump_to(T0 + timedelta(seconds=second))
        for _ in range(3):
            await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pro = {bid: at for at, bid in received["pro"]}
    free = {bid: at for at, bid in received["free"]}
    assert set(pro) == set(free) == {"180", "180.5", "181"}
    for bid in pro:
        assert free[bid] - pro[bid] == timedelta(minutes=15), bid


async def test_bars_follow_the_same_tier_cut() -> None:
    feed, svc = make()
    for quote in (q(0, "180.00"), q(0.5, "181.00"), q(16, "182.00")):
        publish(feed, quote)
    req = pb.ListBarsRequest(symbol="IBM", timeframe="1Min")
    req.start_time.FromDatetime(T0 - timedelta(hours=1))
    req.end_time.FromDatetime(T0 + timedelta(hours=1))
    set_principal(PRO)
    bars = (await svc.ListBars(req, None)).bars  # type: ignore[arg-type]
    # minute 0: mids 180.025 then 181.025; minute 16: 182.025
    assert [(b.open, b.close, b.quotes) for b in bars] == [
        ("180.025", "181.025", 2),
        ("182.025", "182.025", 1),
    ]
    set_principal(FREE)  # at 14:16 a Free caller sees only up to 14:01
    assert [b.quotes for b in (await svc.ListBars(req, None)).bars] == [2]  # type: ignore[arg-type]

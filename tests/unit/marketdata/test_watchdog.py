from __future__ import annotations

import pytest

from services.marketdata.watchdog import FeedWatchdog


def test_goes_stale_only_while_open_and_recovers_on_the_next_quote() -> None:
    w = FeedWatchdog(stale_after_s=10)
    assert w.check(0.0, market_open=True) is False  # no quote seen yet: nothing to judge
    w.on_quote(100.0)
    assert w.check(109.0, market_open=True) is False
    assert w.check(111.0, market_open=False) is False  # a closed market is quiet, not stale
    assert w.check(111.0, market_open=True) is True
    assert w.stale and "no quotes for 11 s" in w.reason
    assert w.check(120.0, market_open=True) is False  # reported once
    assert w.on_quote(121.0) is True and not w.stale
    assert w.on_quote(122.0) is False


@pytest.mark.anyio
async def test_feed_status_reports_staleness_and_hygiene_counts() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from raxx.mbt.v1 import marketdata_service_pb2 as pb
    from services.conventions.calendar import MarketCalendar
    from services.conventions.quote import Quote
    from services.marketdata.feed import ReplayFeed
    from services.marketdata.servicer import MarketDataServicer

    t = datetime(2013, 10, 7, 14, tzinfo=UTC)
    good = Quote("IBM", t, Decimal("1"), Decimal("2"), 1, 1)
    crossed = Quote("IBM", t, Decimal("3"), Decimal("2"), 1, 1)

    async def publish(_: Quote) -> None:
        return None

    feed = ReplayFeed((), t, float("inf"), MarketCalendar(), publish)
    for q in (good, crossed, crossed):
        await feed.ingest(q)
    svc = MarketDataServicer(feed, ["IBM"])
    svc.watchdog = FeedWatchdog(stale_after_s=10)
    svc.watchdog.on_quote(0.0)
    svc.watchdog.check(20.0, market_open=True)
    status = await svc.GetFeedStatus(pb.GetFeedStatusRequest(), None)  # type: ignore[arg-type]
    assert (status.quotes_published, status.rejected["crossed"], status.stale) == (1, 2, True)
    assert "no quotes for 20 s" in status.stale_reason

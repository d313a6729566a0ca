"""Option chain and calendar RPCs, checked against the recorded files and the NYSE calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from raxx.mbt.v1 import marketdata_service_pb2 as pb
from services.conventions.calendar import MarketCalendar
from services.conventions.quote import Quote
from services.marketdata.domain.recorded import RecordedArchive, default_archive_root
from services.marketdata.feed import ReplayFeed
from services.marketdata.servicer import MarketDataServicer
from services.platform.auth import Principal, set_principal
from services.platform.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.anyio


async def _noop(_: Quote) -> None:
    return None


def servicer() -> MarketDataServicer:
    feed = ReplayFeed(
        (), datetime(2015, 12, 24, 15, tzinfo=UTC), float("inf"), MarketCalendar(), _noop
    )
    set_principal(Principal(user_id="u", session_id="s", tier="pro"))
    return MarketDataServicer(feed, ["GOOG"])


async def test_goog_chain_expiring_2015_12_24_matches_the_recorded_contracts() -> None:
    svc = servicer()
    req = pb.GetOptionChainRequest(underlying="goog", expiry="2015-12-24", as_of="2015-12-23")
    chain = await svc.GetOptionChain(req, None)  # type: ignore[arg-type]
    folder = default_archive_root() / "quotes" / "GOOG" / "2015-12-23"
    recorded = sorted(p.name.removesuffix(".csv.gz") for p in folder.glob("GOOG151224*.csv.gz"))
    assert sorted(c.symbol for c in chain.contracts) == recorded
    c = next(c for c in chain.contracts if c.symbol == "GOOG151224C00600000")
    assert (c.type, c.strike, c.multiplier, c.expiry) == ("call", "600", 100, "2015-12-24")
    # its quote is the last recorded row of the 2015-12-23 regular session
    rows = RecordedArchive().load("GOOG151224C00600000", date(2015, 12, 23))
    last = [q for q in rows if q.ts < datetime(2015, 12, 23, 21, tzinfo=UTC)][-1]
    assert Decimal(c.quote.ask) == last.ask and Decimal(c.quote.bid) == last.bid
    with pytest.raises(NotFound, match="expiries"):
        await svc.GetOptionChain(
            pb.GetOptionChainRequest(underlying="GOOG", expiry="2016-01-15", as_of="2015-12-23"),
            None,
        )  # type: ignore[arg-type]


async def test_chain_quotes_are_as_of_the_market_clock_never_later() -> None:
    """Mid-session, each contract's quote is its latest at the clock (Pro) or 15 minutes
    before it (Free): never one recorded later that day."""
    now = datetime(2015, 12, 23, 15, 0, tzinfo=UTC)
    feed = ReplayFeed((), now, float("inf"), MarketCalendar(), _noop)
    svc = MarketDataServicer(feed, ["GOOG"])
    rows = RecordedArchive().load("GOOG151224C00742500", date(2015, 12, 23))
    for tier, seen_until in (("pro", now), ("free", datetime(2015, 12, 23, 14, 45, tzinfo=UTC))):
        set_principal(Principal(user_id="u", session_id="s", tier=tier))
        chain = await svc.GetOptionChain(
            pb.GetOptionChainRequest(underlying="GOOG", expiry="2015-12-24"),
            None,  # type: ignore[arg-type]
        )
        c = next(c for c in chain.contracts if c.symbol == "GOOG151224C00742500")
        expected = [q for q in rows if q.ts <= seen_until][-1]
        assert c.quote.timestamp.ToDatetime(tzinfo=UTC) == expected.ts, tier
        assert (Decimal(c.quote.bid), Decimal(c.quote.ask)) == (expected.bid, expected.ask)


async def test_calendar_skips_holidays_and_shows_early_closes() -> None:
    svc = servicer()
    out = await svc.ListCalendar(
        pb.ListCalendarRequest(start_date="2015-12-23", end_date="2015-12-28"), None
    )  # type: ignore[arg-type]
    days = {s.date: s for s in out.sessions}
    assert sorted(days) == [
        "2015-12-23",
        "2015-12-24",
        "2015-12-28",
    ]  # 25th: Christmas; 26-27 weekend
    assert days["2015-12-24"].early_close and not days["2015-12-23"].early_close
    # 13:00 ET on the early close = 18:00 UTC
    assert days["2015-12-24"].close.ToDatetime(tzinfo=UTC) == datetime(2015, 12, 24, 18, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="end_date"):
        await svc.ListCalendar(
            pb.ListCalendarRequest(start_date="2015-12-28", end_date="2015-12-01"), None
        )  # type: ignore[arg-type]


async def test_corporate_actions_rpc_reports_aapl_split_and_dividend() -> None:
    svc = servicer()
    req = pb.ListCorporateActionsRequest(
        symbols=["aapl"], start_date="2013-05-01", end_date="2014-06-30"
    )
    out = await svc.ListCorporateActions(req, None)  # type: ignore[arg-type]
    by_date = {a.ex_date: a for a in out.actions}
    assert (
        by_date["2013-05-09"].type == "cash_dividend"
        and by_date["2013-05-09"].cash_amount == "3.05"
    )
    split = by_date["2014-06-09"]
    assert (split.type, split.split_from, split.split_to) == ("split", 1, 7)

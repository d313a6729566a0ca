"""The engine on real recorded quotes: every expected fill is worked out from the rows, here.

Each test scans the recorded rows itself (never asking the engine) for the row the rules
select, and then checks that `replay` fills at exactly that row and price.

On 2013-10-07 (a Monday, EDT) the regular session is 09:30-16:00 ET = 13:30:00 <= t < 20:00:00
UTC; the scan below hard-codes that window rather than asking the calendar.
IBM: every NBBO change (tick data). SPY: the last quote of each minute, stamped at its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import pytest

from services.conventions.calendar import MarketCalendar
from services.orders.domain import Event, OrderExpired, Quote, StopTriggered, replay
from tests.unit.orders.matching_support import D, fills, load_quotes, only, order, ts

OPEN, CLOSE = ts("2013-10-07T13:30:00"), ts("2013-10-07T20:00:00")


@pytest.fixture(scope="module")
def ibm() -> tuple[Quote, ...]:
    return load_quotes("IBM", "2013-10-07", "IBM")


@pytest.fixture(scope="module")
def spy() -> tuple[Quote, ...]:
    return load_quotes("SPY", "2013-10-07", "SPY")


def usable_after(rows: Sequence[Quote], after: datetime) -> list[Quote]:
    """Rows a fill may use: stamped after ``after``, in the session, with sane prices."""
    return [
        q
        for q in rows
        if q.ts > after and OPEN <= q.ts < CLOSE and q.ask > 0 and 0 <= q.bid <= q.ask
    ]


def first(rows: Sequence[Quote], cond: object) -> Quote:
    hit = next((q for q in rows if cond(q)), None)  # type: ignore[operator]
    assert hit is not None, "the recorded day has no such row; the test's numbers are wrong"
    return hit


def fill_of(events: list[Event], order_id: str) -> tuple[datetime, Decimal]:
    [fill] = [f for f in fills(events) if f.order_id == order_id]
    return fill.ts, fill.price


def test_ibm_market_buy_fills_at_the_ask_of_the_next_tick(
    ibm: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    o = order("buy", "market", at="2013-10-07T14:00:00")
    # The first usable row after 14:00:00.000 is the fill row; a market buy pays its ask.
    row = usable_after(ibm, o.accepted_at)[0]
    events = replay([o], ibm, calendar)
    assert fill_of(events, o.id) == (row.ts, row.ask)


def test_ibm_resting_limit_fills_at_its_limit_when_the_ask_comes_down(
    ibm: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    o = order("buy", "limit", limit="182.30", at="2013-10-07T15:00:00")
    rows = usable_after(ibm, o.accepted_at)
    # On its first row the ask is above 182.30, so the order rests (no price improvement)...
    assert rows[0].ask > D("182.30")
    # ...and fills at 182.30 on the first later row whose ask is at or below 182.30.
    row = first(rows[1:], lambda q: q.ask <= D("182.30"))
    events = replay([o], ibm, calendar)
    assert fill_of(events, o.id) == (row.ts, D("182.30"))


def test_ibm_sell_stop_fills_at_the_bid_of_its_trigger_tick(
    ibm: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    o = order("sell", "stop", stop="182.30", at="2013-10-07T15:00:00")
    rows = usable_after(ibm, o.accepted_at)
    assert rows[0].bid > D("182.30")  # not through on arrival
    # A sell stop triggers on the first row with bid <= 182.30 and sells at that row's bid
    # (which may be below the stop: a gap fills at the quote).
    row = first(rows, lambda q: q.bid <= D("182.30"))
    events = replay([o], ibm, calendar)
    assert [e.ts for e in only(events, StopTriggered)] == [row.ts]
    assert fill_of(events, o.id) == (row.ts, row.bid)


@pytest.mark.parametrize(
    ("stop", "limit", "gapped"),
    [
        ("183.00", "183.05", False),  # the trigger tick's ask is within the limit
        ("182.80", "182.80", True),  # the trigger tick's ask (182.81) is past the limit
    ],
)
def test_ibm_stop_limit_triggers_then_fills_by_the_limit_rules(
    ibm: tuple[Quote, ...], calendar: MarketCalendar, stop: str, limit: str, gapped: bool
) -> None:
    o = order("buy", "stop_limit", stop=stop, limit=limit, at="2013-10-07T14:00:00")
    rows = usable_after(ibm, o.accepted_at)
    # Trigger: the first row with ask >= stop.
    i, trigger = next((i, q) for i, q in enumerate(rows) if q.ask >= D(stop))
    assert (trigger.ask > D(limit)) is gapped
    if not gapped:
        # Marketable on its trigger row: an arriving limit fills at that ask.
        expected = (trigger.ts, trigger.ask)
    else:
        # Gapped past the limit: it rests, then fills at its limit when the ask comes back.
        row = first(rows[i + 1 :], lambda q: q.ask <= D(limit))
        expected = (row.ts, D(limit))
    events = replay([o], ibm, calendar)
    assert [e.ts for e in only(events, StopTriggered)] == [trigger.ts]
    assert fill_of(events, o.id) == expected


def test_spy_per_minute_market_order_fills_on_the_next_minute(
    spy: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    o = order("buy", "market", symbol="SPY", at="2013-10-07T14:30:30")
    # Per-minute rows: the next row is stamped 14:31:00.000, the end of that minute.
    row = usable_after(spy, o.accepted_at)[0]
    assert row.ts == ts("2013-10-07T14:31:00")
    events = replay([o], spy, calendar)
    assert fill_of(events, o.id) == (row.ts, row.ask)


def test_spy_sell_stop_limit(spy: tuple[Quote, ...], calendar: MarketCalendar) -> None:
    o = order(
        "sell", "stop_limit", stop="167.70", limit="167.60", symbol="SPY", at="2013-10-07T19:00:00"
    )
    rows = usable_after(spy, o.accepted_at)
    i, trigger = next((i, q) for i, q in enumerate(rows) if q.bid <= D("167.70"))
    if trigger.bid >= D("167.60"):
        expected = (trigger.ts, trigger.bid)  # arriving limit: sells at the bid
    else:
        row = first(rows[i + 1 :], lambda q: q.bid >= D("167.60"))
        expected = (row.ts, D("167.60"))  # rested: sells at its limit
    events = replay([o], spy, calendar)
    assert fill_of(events, o.id) == expected


def test_spy_day_limit_expires_at_the_close_though_after_hours_would_fill(
    spy: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    o = order("buy", "limit", limit="167.40", symbol="SPY", at="2013-10-07T15:00:00")
    # In the session after 15:00 no ask reaches 167.40...
    assert all(q.ask > D("167.40") for q in usable_after(spy, o.accepted_at))
    # ...while after the 16:00 close some rows do: a day order must not fill on them.
    assert any(q.ts >= CLOSE and q.ask <= D("167.40") for q in spy)
    events = replay([o], spy, calendar)
    assert fills(events) == []
    assert [(e.order_id, e.ts) for e in only(events, OrderExpired)] == [(o.id, CLOSE)]


def test_replaying_the_ibm_day_twice_gives_the_same_events(
    ibm: tuple[Quote, ...], calendar: MarketCalendar
) -> None:
    orders = [
        order("buy", "limit", limit="182.30", at="2013-10-07T15:00:00", oid="l"),
        order("sell", "stop", stop="182.30", at="2013-10-07T15:00:00", oid="s"),
        order("buy", "market", at="2013-10-07T13:00:00", oid="m"),
    ]
    assert replay(orders, ibm, calendar) == replay(orders, ibm, calendar)

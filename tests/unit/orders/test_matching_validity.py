"""BRIEF §4 rule 1: which quotes may fill an order, and how a deferral is stated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from services.orders.domain import FillDeferred, MatchingEngine, OrderStatus
from services.orders.domain.quotes import (
    REASON_CLOSED,
    REASON_CROSSED,
    REASON_NEGATIVE_BID,
    REASON_NO_ASK,
    REASON_NOT_AFTER_ACCEPTANCE,
)
from tests.unit.orders.matching_support import D, feed, fills, only, order, quote

# 2013-10-07 is a Monday; the regular session is 13:30-20:00 UTC (09:30-16:00 EDT).


def test_no_fill_on_a_quote_at_or_before_acceptance(engine: MatchingEngine) -> None:
    o = order("buy", "market", at="2013-10-07T14:00:00")
    engine.accept(o)
    early = engine.on_quote(quote("2013-10-07T13:59:59", "182.00", "182.05"))
    same = engine.on_quote(quote("2013-10-07T14:00:00", "182.10", "182.15"))
    assert fills(early + same) == []
    assert [e.reason for e in only(early + same, FillDeferred)] == [REASON_NOT_AFTER_ACCEPTANCE]
    later = engine.on_quote(quote("2013-10-07T14:00:00.001", "182.20", "182.25"))
    assert [(f.price, f.ts) for f in fills(later)] == [
        (D("182.25"), quote("2013-10-07T14:00:00.001", "0", "1").ts)
    ]


def test_accept_never_fills(engine: MatchingEngine) -> None:
    engine.on_quote(quote("2013-10-07T13:59:00", "182.00", "182.05"))
    events = engine.accept(order("buy", "market", at="2013-10-07T14:00:00"))
    assert fills(events) == []
    assert engine.open_orders()[0].status is OrderStatus.ACCEPTED


def test_crossed_quote_fills_nothing_and_says_why(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="200")
    engine.accept(o)
    events = engine.on_quote(quote("2013-10-07T14:00:01", "182.10", "182.05"))
    assert fills(events) == []
    assert [(e.order_id, e.reason) for e in only(events, FillDeferred)] == [(o.id, REASON_CROSSED)]


def test_zero_or_negative_prices_fill_nothing(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "market"))
    engine.accept(order("sell", "market"))
    zero_ask = engine.on_quote(quote("2013-10-07T14:00:01", "0", "0"))
    neg_bid = engine.on_quote(quote("2013-10-07T14:00:02", "-0.01", "182.00"))
    assert fills(zero_ask + neg_bid) == []
    assert {e.reason for e in only(zero_ask, FillDeferred)} == {REASON_NO_ASK}
    assert {e.reason for e in only(neg_bid, FillDeferred)} == {REASON_NEGATIVE_BID}


def test_locked_quote_is_valid(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "market"))
    events = engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.00"))
    assert [f.price for f in fills(events)] == [D("182.00")]


def test_deferral_is_stated_once_per_change_of_reason(engine: MatchingEngine) -> None:
    o = order("buy", "market")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.10", "182.05"),  # crossed
            quote("2013-10-07T14:00:02", "182.11", "182.05"),  # crossed again: no new event
            quote("2013-10-07T14:00:03", "182.00", "0"),  # no ask: a new reason
            quote("2013-10-07T14:00:04", "182.12", "182.05"),  # crossed: changed again
        ],
    )
    assert [e.reason for e in only(events, FillDeferred)] == [
        REASON_CROSSED,
        REASON_NO_ASK,
        REASON_CROSSED,
    ]
    assert engine.get(o.id) is not None and engine.get(o.id).status is OrderStatus.ACCEPTED  # type: ignore[union-attr]


def test_order_accepted_outside_the_session_waits_for_the_first_quote_inside(
    engine: MatchingEngine,
) -> None:
    o = order("buy", "market", at="2013-10-07T12:00:00")  # 08:00 ET, pre-market
    accepted = engine.accept(o)
    assert [e.reason for e in only(accepted, FillDeferred)] == [REASON_CLOSED]
    pre = feed(
        engine,
        [
            quote("2013-10-07T12:30:00", "181.50", "181.60"),
            quote("2013-10-07T13:29:59.999", "181.55", "181.65"),
        ],
    )
    assert fills(pre) == []
    assert only(pre, FillDeferred) == []  # already told "market closed" at acceptance
    opened = engine.on_quote(quote("2013-10-07T13:30:00.072", "181.69", "181.90"))
    assert [(f.price, f.ts.isoformat()) for f in fills(opened)] == [
        (D("181.90"), "2013-10-07T13:30:00.072000+00:00")
    ]


def test_quotes_after_the_close_do_not_fill(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="182.00", tif="gtc", at="2013-10-07T19:00:00")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T19:00:01", "182.10", "182.20"))  # rests
    # 16:00:00 ET exactly is outside [open, close); after-hours ask through the limit.
    events = feed(
        engine,
        [
            quote("2013-10-07T20:00:00", "181.90", "181.95"),
            quote("2013-10-07T21:00:00", "181.80", "181.85"),
        ],
    )
    assert fills(events) == []
    assert [e.reason for e in only(events, FillDeferred)] == [REASON_CLOSED]
    # Next morning's first in-session quote that touches fills it at the limit.
    nxt = engine.on_quote(quote("2013-10-08T13:30:01", "181.70", "181.75"))
    assert [f.price for f in fills(nxt)] == [D("182.00")]


def test_stale_quote_defers(make_engine: Callable[..., MatchingEngine]) -> None:
    engine = make_engine(max_quote_age=timedelta(seconds=5))
    o = order("buy", "market", symbol="IBM")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:10", "1", "2", symbol="SPY"))  # the clock moves on
    late = engine.on_quote(quote("2013-10-07T14:00:04", "182.00", "182.05"))  # 6 s old
    assert fills(late) == []
    assert [e.reason for e in only(late, FillDeferred)] == ["stale quote (older than 5 s)"]
    fresh = engine.on_quote(quote("2013-10-07T14:00:06", "182.00", "182.05"))  # 4 s old
    assert [f.price for f in fills(fresh)] == [D("182.05")]


def test_a_quote_older_than_the_symbols_latest_is_ignored(engine: MatchingEngine) -> None:
    engine.on_quote(quote("2013-10-07T14:00:05", "182.00", "182.05"))
    o = order("buy", "market", at="2013-10-07T14:00:01")
    engine.accept(o)
    assert engine.on_quote(quote("2013-10-07T14:00:03", "182.00", "182.01")) == []
    events = engine.on_quote(quote("2013-10-07T14:00:06", "182.00", "182.06"))
    assert [f.price for f in fills(events)] == [D("182.06")]


def test_resting_orders_are_told_once_when_after_hours_quotes_reach_them(
    engine: MatchingEngine,
) -> None:
    a = order("buy", "limit", limit="182.00", tif="gtc", at="2013-10-07T19:00:00")
    engine.accept(a)
    engine.on_quote(quote("2013-10-07T19:00:01", "182.10", "182.20"))  # rests
    after = feed(
        engine,
        [
            quote("2013-10-07T20:00:01", "182.10", "182.20"),  # does not reach it
            quote("2013-10-07T20:00:02", "181.95", "181.99"),  # reaches it: told
            quote("2013-10-07T20:00:03", "181.90", "181.95"),  # further: already told
            quote("2013-10-07T20:00:04", "181.96", "181.98"),
        ],
    )
    assert [(e.order_id, e.ts.second) for e in only(after, FillDeferred)] == [(a.id, 2)]
    # An order that rests later (after hours, it waits as "arriving") is told too.
    b = order("buy", "limit", limit="181.97", tif="gtc", at="2013-10-07T20:00:05")
    engine.accept(b)
    more = engine.on_quote(quote("2013-10-07T20:00:06", "181.90", "181.95"))
    assert [e.order_id for e in only(more, FillDeferred)] == []  # b was told at acceptance
    assert fills(more) == []
    opened = engine.on_quote(quote("2013-10-08T13:30:01", "181.90", "181.95"))
    # Next morning: a is resting and fills at its limit; b arrives and takes the ask.
    assert [(f.order_id, f.price) for f in fills(opened)] == [
        (a.id, D("182.00")),
        (b.id, D("181.95")),
    ]


def test_an_order_resting_inside_an_already_told_region_is_still_told(
    engine: MatchingEngine,
) -> None:
    a = order("buy", "limit", limit="182.00", tif="gtc", at="2013-10-07T19:00:00")
    engine.accept(a)
    engine.on_quote(quote("2013-10-07T19:00:01", "182.10", "182.20"))
    engine.on_quote(quote("2013-10-07T20:00:02", "181.80", "181.85"))  # a is told
    c = order("buy", "limit", limit="181.90", tif="gtc", at="2013-10-08T14:00:00")
    engine.accept(c)
    engine.on_quote(quote("2013-10-08T14:00:01", "182.10", "182.20"))  # c rests (in session)
    later = engine.on_quote(quote("2013-10-08T20:00:02", "181.80", "181.85"))
    assert [e.order_id for e in only(later, FillDeferred)] == [c.id]

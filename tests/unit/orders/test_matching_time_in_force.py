"""BRIEF §4 rule 5: day (holiday- and early-close-aware), gtc, ioc and fok."""

from __future__ import annotations

from collections.abc import Callable

from services.orders.domain import (
    MatchingEngine,
    OrderCanceled,
    OrderExpired,
    OrderStatus,
)
from tests.unit.orders.matching_support import D, feed, fills, only, order, quote, ts

# ---------------------------------------------------------------- day


def test_day_order_expires_at_the_close(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="100.00", at="2013-10-07T15:00:00")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T15:00:01", "182.00", "182.05"))
    assert engine.on_time(ts("2013-10-07T19:59:59.999")) == []
    events = engine.on_time(ts("2013-10-07T20:00:00"))  # 16:00 EDT
    assert [(e.order_id, e.ts) for e in only(events, OrderExpired)] == [
        (o.id, ts("2013-10-07T20:00:00"))
    ]
    assert engine.get(o.id).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    assert engine.open_orders() == []


def test_day_order_expires_at_1300_et_on_an_early_close(engine: MatchingEngine) -> None:
    # 2013-11-29, the day after Thanksgiving: NYSE closes at 13:00 EST = 18:00 UTC.
    o = order("buy", "limit", limit="170.00", at="2013-11-29T15:00:00")
    engine.accept(o)
    engine.on_quote(quote("2013-11-29T15:00:01", "179.00", "179.05"))
    assert engine.on_time(ts("2013-11-29T17:59:59")) == []
    # A quote after 13:00 that touches the limit fills nothing: the order has expired first.
    events = engine.on_quote(quote("2013-11-29T18:00:00.500", "169.00", "169.05"))
    assert fills(events) == []
    [expired] = only(events, OrderExpired)
    assert (expired.order_id, expired.ts) == (o.id, ts("2013-11-29T18:00:00"))


def test_day_order_expires_at_1300_et_on_christmas_eve_2015(engine: MatchingEngine) -> None:
    o = order("sell", "limit", limit="900", symbol="GOOG", at="2015-12-24T14:31:00")
    engine.accept(o)
    events = engine.on_time(ts("2015-12-24T21:00:00"))
    assert [e.ts for e in only(events, OrderExpired)] == [ts("2015-12-24T18:00:00")]


def test_day_order_accepted_on_a_holiday_lives_through_the_next_session(
    engine: MatchingEngine,
) -> None:
    # Thanksgiving 2013-11-28: no session; the order is for Friday's (early-closing) session.
    o = order("buy", "market", at="2013-11-28T16:00:00")
    engine.accept(o)
    assert engine.on_time(ts("2013-11-28T21:00:00")) == []
    events = engine.on_quote(quote("2013-11-29T14:30:01", "179.00", "179.05"))
    assert [f.price for f in fills(events)] == [D("179.05")]
    assert engine.get(o.id).expires_at == ts("2013-11-29T18:00:00")  # type: ignore[union-attr]


def test_day_order_accepted_after_the_close_is_for_the_next_session(
    engine: MatchingEngine,
) -> None:
    o = order("buy", "limit", limit="100", at="2013-10-07T21:30:00")
    engine.accept(o)
    assert engine.on_time(ts("2013-10-08T13:00:00")) == []
    events = engine.on_time(ts("2013-10-08T20:00:00"))
    assert [e.order_id for e in only(events, OrderExpired)] == [o.id]


def test_gtc_order_survives_the_close(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="181.00", tif="gtc", at="2013-10-07T19:00:00")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T19:00:01", "182.00", "182.05"))
    assert engine.on_time(ts("2013-10-08T13:00:00")) == []
    events = engine.on_quote(quote("2013-10-08T13:30:01", "180.90", "180.95"))
    assert [f.price for f in fills(events)] == [D("181.00")]


def test_partially_filled_day_order_expires(make_engine: Callable[..., MatchingEngine]) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    o = order("buy", "limit", limit="182.10", qty=300, at="2013-10-07T19:00:00")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T19:00:01", "182.00", "182.05", ask_size=100))
    events = engine.on_time(ts("2013-10-07T20:00:00"))
    assert len(only(events, OrderExpired)) == 1
    done = engine.get(o.id)
    assert done is not None and done.status is OrderStatus.EXPIRED and done.filled_qty == 100


# ---------------------------------------------------------------- ioc / fok


def test_ioc_remainder_is_canceled(make_engine: Callable[..., MatchingEngine]) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    o = order("buy", "market", qty=300, tif="ioc")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.00", "182.05", ask_size=100),
            quote("2013-10-07T14:00:02", "182.00", "182.05", ask_size=1000),
        ],
    )
    assert [(f.qty, f.remaining_qty) for f in fills(events)] == [(D(100), D(200))]
    [canceled] = only(events, OrderCanceled)
    assert canceled.order_id == o.id and "ioc" in canceled.reason
    state = engine.get(o.id)
    assert state is not None and state.status is OrderStatus.CANCELED and state.filled_qty == 100


def test_ioc_limit_not_marketable_is_canceled(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "limit", limit="181.00", tif="ioc"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.00", "182.05"),
            quote("2013-10-07T14:00:02", "180.00", "180.05"),
        ],
    )
    assert fills(events) == [] and len(only(events, OrderCanceled)) == 1


def test_ioc_waits_for_its_first_valid_quote(engine: MatchingEngine) -> None:
    # Invalid quotes (pre-market, crossed) are not "its first valid quote": nothing is canceled.
    engine.accept(order("buy", "market", tif="ioc", at="2013-10-07T13:00:00"))
    events = feed(
        engine,
        [
            quote("2013-10-07T13:10:00", "182.00", "182.05"),
            quote("2013-10-07T13:30:01", "182.10", "182.05"),
            quote("2013-10-07T13:30:02", "182.00", "182.05"),
        ],
    )
    assert only(events, OrderCanceled) == []
    assert [f.price for f in fills(events)] == [D("182.05")]


def test_fok_fills_all_on_one_quote_or_cancels(make_engine: Callable[..., MatchingEngine]) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    small = order("buy", "market", qty=300, tif="fok")
    big = order("sell", "market", qty=300, tif="fok")
    engine.accept(small)
    engine.accept(big)
    events = engine.on_quote(
        quote("2013-10-07T14:00:01", "182.00", "182.05", bid_size=300, ask_size=200)
    )
    assert [(f.order_id, f.qty) for f in fills(events)] == [(big.id, D(300))]
    assert [e.order_id for e in only(events, OrderCanceled)] == [small.id]


def test_fok_limit_not_marketable_is_canceled(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "limit", limit="183.00", tif="fok"))
    events = engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    assert fills(events) == [] and len(only(events, OrderCanceled)) == 1


def test_ioc_stop_not_reached_on_its_first_quote_is_canceled(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "stop", stop="190.00", tif="ioc"))
    events = engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    assert len(only(events, OrderCanceled)) == 1


# ---------------------------------------------------------------- partial fills


def test_without_the_cap_size_does_not_limit_a_fill(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "market", qty=5000))
    events = engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05", ask_size=100))
    assert [(f.qty, f.remaining_qty) for f in fills(events)] == [(D(5000), D(0))]


def test_capped_market_order_carries_its_remainder(
    make_engine: Callable[..., MatchingEngine],
) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    o = order("buy", "market", qty=500)
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.00", "182.05", ask_size=200),
            quote("2013-10-07T14:00:02", "182.00", "182.07", ask_size=0),
            quote("2013-10-07T14:00:03", "182.00", "182.06", ask_size=100),
            quote("2013-10-07T14:00:04", "182.00", "182.08", ask_size=900),
        ],
    )
    assert [
        (f.execution_id, f.qty, f.price, f.cumulative_qty, f.remaining_qty) for f in fills(events)
    ] == [
        (f"{o.id}:1", D(200), D("182.05"), D(200), D(300)),
        (f"{o.id}:2", D(100), D("182.06"), D(300), D(200)),
        (f"{o.id}:3", D(200), D("182.08"), D(500), D(0)),
    ]
    assert "capped at displayed ask size 200" in fills(events)[0].explanation
    state = engine.get(o.id)
    assert state is not None and state.filled_avg_price == (
        (200 * D("182.05") + 100 * D("182.06") + 200 * D("182.08")) / 500
    )


def test_capped_resting_limit_fills_at_its_limit_in_parts(
    make_engine: Callable[..., MatchingEngine],
) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    engine.accept(order("sell", "limit", limit="182.50", qty=300))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.00", "182.05"),  # rests
            quote("2013-10-07T14:00:02", "182.55", "182.60", bid_size=100),
            quote("2013-10-07T14:00:03", "182.40", "182.45"),  # not touched
            quote("2013-10-07T14:00:04", "182.50", "182.60", bid_size=700),
        ],
    )
    assert [(f.qty, f.price) for f in fills(events)] == [
        (D(100), D("182.50")),
        (D(200), D("182.50")),
    ]


def test_rearmed_day_order_past_its_close_expires_on_accept(engine: MatchingEngine) -> None:
    engine.on_time(ts("2013-10-08T14:00:00"))
    o = order("buy", "limit", limit="100", at="2013-10-07T15:00:00")
    events = engine.accept(o)
    assert [(e.order_id, e.ts) for e in only(events, OrderExpired)] == [
        (o.id, ts("2013-10-07T20:00:00"))
    ]
    assert engine.open_orders() == []

"""BRIEF §4 rules 2-4: market, limit, stop and stop-limit on synthetic quotes."""

from __future__ import annotations

from collections.abc import Callable

from services.orders.domain import (
    FillDeferred,
    MatchingEngine,
    OrderStatus,
    StopTriggered,
)
from services.orders.domain.quotes import REASON_NO_BID
from tests.unit.orders.matching_support import D, feed, fills, only, order, quote

# ---------------------------------------------------------------- market (rule 2)


def test_market_buy_fills_at_the_ask_of_the_first_valid_quote(engine: MatchingEngine) -> None:
    o = order("buy", "market", qty=100)
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "182.00", "182.05"),
            quote("2013-10-07T14:00:02", "181.00", "181.05"),
        ],
    )
    [fill] = fills(events)
    assert (fill.price, fill.qty, fill.execution_id) == (D("182.05"), D(100), f"{o.id}:1")
    assert fill.quote.ask == D("182.05") and fill.remaining_qty == 0
    assert fill.explanation == (
        "buy market on bid 182.00 / ask 182.05 at 2013-10-07 10:00:01.000 ET; filled at ask 182.05"
    )
    assert engine.get(o.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert engine.open_orders() == []


def test_market_sell_fills_at_the_bid(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "market"))
    [fill] = fills(engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05")))
    assert fill.price == D("182.00")


def test_market_sell_with_no_bid_waits_for_a_bid(engine: MatchingEngine) -> None:
    o = order("sell", "market", symbol="OPT")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "0", "0.05", symbol="OPT"),
            quote("2013-10-07T14:00:02", "0", "0.10", symbol="OPT"),
            quote("2013-10-07T14:00:03", "0.01", "0.10", symbol="OPT"),
        ],
    )
    assert [e.reason for e in only(events, FillDeferred)] == [REASON_NO_BID]
    assert [(f.price, f.ts.second) for f in fills(events)] == [(D("0.01"), 3)]


def test_market_buy_with_no_bid_still_fills(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "market", symbol="OPT"))
    events = engine.on_quote(quote("2013-10-07T14:00:01", "0", "0.05", symbol="OPT"))
    assert [f.price for f in fills(events)] == [D("0.05")]


# ---------------------------------------------------------------- limit (rule 3)


def test_marketable_limit_fills_at_the_ask_with_price_improvement(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "limit", limit="182.10"))
    [fill] = fills(engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05")))
    assert fill.price == D("182.05")
    assert "price improvement 0.05" in fill.explanation


def test_marketable_sell_limit_fills_at_the_bid(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "limit", limit="181.90"))
    [fill] = fills(engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05")))
    assert fill.price == D("182.00")


def test_resting_buy_limit_fills_at_its_limit_on_touch(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="185.10")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "185.12", "185.15"),  # not marketable: rests
            quote("2013-10-07T14:00:02", "185.11", "185.13"),  # still above the limit
            quote("2013-10-07T14:03:07.412", "185.05", "185.08"),  # ask falls through it
        ],
    )
    [fill] = fills(events)
    # Resting at 185.10, it fills at 185.10, not at the better ask 185.08 (never better).
    assert (fill.price, fill.ts.minute) == (D("185.10"), 3)
    assert fill.explanation == (
        "buy limit 185.10 rested; ask fell to 185.08 at 2013-10-07 10:03:07.412 ET; "
        "filled at limit 185.10"
    )


def test_resting_sell_limit_fills_at_its_limit_on_touch(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "limit", limit="185.10"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "185.00", "185.02"),
            quote("2013-10-07T14:00:02", "185.10", "185.12"),  # bid touches the limit
        ],
    )
    [fill] = fills(events)
    assert fill.price == D("185.10")
    assert "bid touched 185.10" in fill.explanation


def test_resting_limit_does_not_fill_while_not_touched(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "limit", limit="185.10"))
    engine.accept(order("sell", "limit", limit="185.30"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "185.15", "185.20"),
            quote("2013-10-07T14:00:02", "185.11", "185.29"),
            quote("2013-10-07T14:00:03", "185.12", "185.28"),
        ],
    )
    assert fills(events) == []
    assert len(engine.open_orders()) == 2


def test_queue_pessimistic_needs_a_strict_cross(
    make_engine: Callable[..., MatchingEngine],
) -> None:
    engine = make_engine(queue_pessimistic=True)
    engine.accept(order("buy", "limit", limit="185.10"))
    engine.accept(order("sell", "limit", limit="185.50"))
    touch = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "185.20", "185.30"),  # both rest
            quote("2013-10-07T14:00:02", "185.05", "185.10"),  # buy touched only
            quote("2013-10-07T14:00:03", "185.50", "185.55"),  # sell touched only
        ],
    )
    assert fills(touch) == []
    cross = feed(
        engine,
        [
            quote("2013-10-07T14:00:04", "185.00", "185.09"),
            quote("2013-10-07T14:00:05", "185.51", "185.55"),
        ],
    )
    assert [f.price for f in fills(cross)] == [D("185.10"), D("185.50")]


def test_resting_limits_fill_in_price_then_time_priority(engine: MatchingEngine) -> None:
    a = order("buy", "limit", limit="185.00", oid="a")
    b = order("buy", "limit", limit="185.05", oid="b")
    c = order("buy", "limit", limit="185.00", oid="c")
    for o in (a, b, c):
        engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:01", "185.10", "185.20"))
    events = engine.on_quote(quote("2013-10-07T14:00:02", "184.90", "184.95"))
    assert [f.order_id for f in fills(events)] == ["b", "a", "c"]


# ---------------------------------------------------------------- stop (rule 4)


def test_buy_stop_triggers_on_ask_at_or_above_stop_and_fills_at_the_ask(
    engine: MatchingEngine,
) -> None:
    o = order("buy", "stop", stop="185.00")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "184.80", "184.90"),
            quote("2013-10-07T14:00:02", "185.10", "185.20"),  # gap through the stop
        ],
    )
    assert [e.order_id for e in only(events, StopTriggered)] == [o.id]
    [fill] = fills(events)
    assert (fill.price, fill.ts.second) == (D("185.20"), 2)  # the quote, worse than the stop
    assert fill.explanation.startswith(
        "buy stop 185.00 triggered: ask 185.20 >= stop 185.00 at 2013-10-07 10:00:02.000 ET"
    )


def test_sell_stop_triggers_on_bid_at_or_below_stop(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "stop", stop="184.00"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "184.10", "184.20"),
            quote("2013-10-07T14:00:02", "184.00", "184.05"),  # bid == stop
        ],
    )
    assert [f.price for f in fills(events)] == [D("184.00")]


def test_stops_do_not_trigger_on_the_wrong_side(engine: MatchingEngine) -> None:
    # A buy stop above the market waits for the ask to rise to it; a sell stop below the market
    # waits for the bid to fall to it. Neither fires on the other side of the quote.
    sell = order("sell", "stop", stop="184.00")
    buy = order("buy", "stop", stop="185.00")
    engine.accept(sell)
    engine.accept(buy)
    quiet = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "184.01", "184.99"),
            quote("2013-10-07T14:00:02", "184.50", "184.60"),
        ],
    )
    assert only(quiet, StopTriggered) == [] and fills(quiet) == []
    # The ask reaches the buy stop while the bid (184.95) is still below it: the buy fires
    # on its ask, and the sell stop (bid 184.95 > 184.00) does not.
    up = engine.on_quote(quote("2013-10-07T14:00:03", "184.95", "185.00"))
    assert [e.order_id for e in only(up, StopTriggered)] == [buy.id]
    # The bid reaches the sell stop while the ask (184.10) is above it: the sell fires.
    down = engine.on_quote(quote("2013-10-07T14:00:04", "184.00", "184.10"))
    assert [e.order_id for e in only(down, StopTriggered)] == [sell.id]
    assert [f.price for f in fills(up + down)] == [D("185.00"), D("184.00")]


def test_stop_already_through_on_its_first_quote_triggers_there(engine: MatchingEngine) -> None:
    engine.accept(order("sell", "stop", stop="190.00"))  # bid is far below already
    [fill] = fills(engine.on_quote(quote("2013-10-07T14:00:01", "184.00", "184.05")))
    assert fill.price == D("184.00")


def test_stop_limit_on_its_trigger_quote_is_an_arriving_limit(engine: MatchingEngine) -> None:
    engine.accept(order("buy", "stop_limit", stop="185.00", limit="185.50"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "184.80", "184.90"),
            quote("2013-10-07T14:00:02", "185.10", "185.20"),  # triggers; ask within limit
        ],
    )
    [fill] = fills(events)
    assert fill.price == D("185.20")  # arriving: at the ask (price improvement vs 185.50)
    assert "as an arriving limit" in fill.explanation


def test_stop_limit_gapping_past_its_limit_rests_then_fills_at_its_limit(
    engine: MatchingEngine,
) -> None:
    o = order("sell", "stop_limit", stop="184.00", limit="183.80")
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "184.10", "184.20"),
            quote("2013-10-07T14:00:02", "183.50", "183.60"),  # triggers, bid below the limit
            quote("2013-10-07T14:00:03", "183.70", "183.75"),  # still below the limit
            quote("2013-10-07T14:00:04", "184.50", "184.60"),  # back above the stop
        ],
    )
    assert len(only(events, StopTriggered)) == 1
    [fill] = fills(events)
    # The trigger is sticky: the bid back above the stop still touches the resting limit, and
    # the order fills at its limit 183.80, not at the better bid 184.50.
    assert (fill.price, fill.ts.second) == (D("183.80"), 4)
    assert engine.get(o.id).triggered  # type: ignore[union-attr]


def test_stop_limit_trigger_is_sticky_even_if_the_limit_fills_later(
    engine: MatchingEngine,
) -> None:
    engine.accept(order("buy", "stop_limit", stop="185.00", limit="185.05"))
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "185.00", "185.10"),  # triggers; ask above the limit
            quote("2013-10-07T14:00:02", "184.80", "184.90"),  # below the stop, touches limit
        ],
    )
    assert [f.price for f in fills(events)] == [D("185.05")]

"""BRIEF §4 rule 6: multi-leg orders — net price, atomic snapshot, exact leg split, preferences.

The running example is a call vertical, as written: buy 1 C100, sell 1 C105.
  C100 bid 5.00 / ask 5.20 (mid 5.10);  C105 bid 2.00 / ask 2.10 (mid 2.05)
  spread ask (natural debit) = 5.20 - 2.00 = 3.20
  spread bid                 = 5.00 - 2.10 = 2.90
  spread mid                 = 5.10 - 2.05 = 3.05
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.orders.domain import (
    FillDeferred,
    FillPreference,
    Leg,
    MatchingEngine,
    Order,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderStatus,
    Quote,
    Side,
)
from services.orders.domain.multileg import (
    allocate_leg_prices,
    leg_sign,
    spread_quote,
)
from tests.unit.orders.matching_support import D, feed, fills, only, order, quote

VERTICAL = (Leg("C100", Side.BUY, 1), Leg("C105", Side.SELL, 1))


def legs_quotes(when: str, c100: tuple[str, str], c105: tuple[str, str]) -> list[Quote]:
    return [
        quote(when, *c100, symbol="C100", bid_size=50, ask_size=50),
        quote(when, *c105, symbol="C105", bid_size=50, ask_size=50),
    ]


def spread_order(
    limit: str | None,
    pref: FillPreference,
    side: str = "buy",
    legs: tuple[Leg, ...] = VERTICAL,
    **kw: object,
) -> Order:
    return order(
        side,
        "market" if limit is None else "limit",
        qty=2,
        limit=limit,
        symbol="XYZ",
        legs=legs,
        fill_preference=pref,
        **kw,  # type: ignore[arg-type]
    )


def net_of(fill: OrderFilled, legs: Sequence[Leg]) -> Decimal:
    return sum(
        (
            leg_sign(leg) * leg.ratio * lf.price
            for leg, lf in zip(legs, fill.leg_fills, strict=True)
        ),
        Decimal(0),
    )


FIRST = legs_quotes("2013-10-07T14:00:01", ("5.00", "5.20"), ("2.00", "2.10"))


@pytest.mark.parametrize(
    ("pref", "limit", "expected", "legs"),
    [
        # conservative: worse of mid (3.05) and offer (3.20) = the natural 3.20
        (FillPreference.CONSERVATIVE, "3.20", "3.20", ("5.20", "2.00")),
        (FillPreference.CONSERVATIVE, "3.19", None, None),
        # mid: the mid 3.05, each leg at its mid
        (FillPreference.MID, "3.05", "3.05", ("5.10", "2.05")),
        (FillPreference.MID, "3.04", None, None),
        # aggressive on arrival: the mid when the limit allows it
        (FillPreference.AGGRESSIVE, "3.10", "3.05", ("5.10", "2.05")),
        (FillPreference.AGGRESSIVE, "3.04", None, None),
        # market: conservative takes the natural, mid and aggressive the mid
        (FillPreference.CONSERVATIVE, None, "3.20", ("5.20", "2.00")),
        (FillPreference.AGGRESSIVE, None, "3.05", ("5.10", "2.05")),
    ],
)
def test_fill_preference_on_the_first_snapshot(
    engine: MatchingEngine,
    pref: FillPreference,
    limit: str | None,
    expected: str | None,
    legs: tuple[str, str] | None,
) -> None:
    o = spread_order(limit, pref)
    engine.accept(o)
    got = fills(feed(engine, FIRST))
    if expected is None:
        assert got == []
        return
    [fill] = got
    assert fill.price == D(expected) and fill.qty == 2
    assert legs is not None and tuple(lf.price for lf in fill.leg_fills) == (D(legs[0]), D(legs[1]))
    assert [(lf.symbol, lf.side, lf.qty) for lf in fill.leg_fills] == [
        ("C100", Side.BUY, D(2)),
        ("C105", Side.SELL, D(2)),
    ]
    assert net_of(fill, VERTICAL) == fill.price


def test_aggressive_rests_then_fills_at_its_limit_when_the_mid_touches(
    engine: MatchingEngine,
) -> None:
    o = spread_order("3.00", FillPreference.AGGRESSIVE)
    engine.accept(o)
    assert fills(feed(engine, FIRST)) == []  # mid 3.05 > 3.00: rests
    # Next snapshot: C100 4.90/5.10 (mid 5.00), C105 2.00/2.06 (mid 2.03):
    #   mid 2.97 <= 3.00 touches; natural 5.10 - 2.00 = 3.10 >= 3.00: fills at the limit 3.00.
    events = feed(engine, legs_quotes("2013-10-07T14:00:02", ("4.90", "5.10"), ("2.00", "2.06")))
    [fill] = fills(events)
    assert fill.price == D("3.00")
    assert net_of(fill, VERTICAL) == D("3.00")
    # The 0.03 above the mid is split evenly toward each leg's natural side (3/13 of the way).
    for lf in fill.leg_fills:
        assert lf.quote.bid <= lf.price <= lf.quote.ask
    assert "rested" in fill.explanation and "filled at limit 3.00" in fill.explanation


def test_aggressive_rested_never_pays_more_than_the_natural(engine: MatchingEngine) -> None:
    o = spread_order("3.00", FillPreference.AGGRESSIVE)
    engine.accept(o)
    feed(engine, FIRST)
    # The market gaps down: natural 4.70 - 2.00 = 2.70 < limit 3.00 -> fills at 2.70.
    events = feed(engine, legs_quotes("2013-10-07T14:00:02", ("4.50", "4.70"), ("2.00", "2.10")))
    assert [f.price for f in fills(events)] == [D("2.70")]


def test_mid_keeps_filling_at_the_mid_after_resting(engine: MatchingEngine) -> None:
    o = spread_order("3.00", FillPreference.MID)
    engine.accept(o)
    feed(engine, FIRST)
    events = feed(engine, legs_quotes("2013-10-07T14:00:02", ("4.50", "4.70"), ("2.00", "2.10")))
    assert [f.price for f in fills(events)] == [D("2.55")]  # mid 4.60 - 2.05


def test_sell_side_receives_the_net_and_trades_every_leg_opposite(
    engine: MatchingEngine,
) -> None:
    o = spread_order("2.90", FillPreference.CONSERVATIVE, side="sell")
    engine.accept(o)
    [fill] = fills(feed(engine, FIRST))
    # Selling the vertical at the natural: sell C100 at its bid, buy C105 at its ask.
    assert fill.price == D("2.90")
    assert [(lf.side, lf.price) for lf in fill.leg_fills] == [
        (Side.SELL, D("5.00")),
        (Side.BUY, D("2.10")),
    ]


def test_credit_spread_has_a_negative_net(engine: MatchingEngine) -> None:
    # Bull put credit spread as written: sell P100 (3.00/3.20), buy P95 (1.00/1.10).
    # ask = 1.10 - 3.00 = -1.90, bid = 1.00 - 3.20 = -2.20, mid = -2.05.
    legs = (Leg("P100", Side.SELL, 1), Leg("P95", Side.BUY, 1))
    conservative = spread_order("-2.00", FillPreference.CONSERVATIVE, legs=legs)
    mid = spread_order("-2.00", FillPreference.MID, legs=legs)
    engine.accept(conservative)
    engine.accept(mid)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "3.00", "3.20", symbol="P100"),
            quote("2013-10-07T14:00:01", "1.00", "1.10", symbol="P95"),
        ],
    )
    # A credit of at least 2.00 (net <= -2.00): only the mid (-2.05) is good enough.
    assert [(f.order_id, f.price) for f in fills(events)] == [(mid.id, D("-2.05"))]


def test_all_legs_need_a_valid_quote_after_acceptance(engine: MatchingEngine) -> None:
    o = spread_order("3.20", FillPreference.CONSERVATIVE)
    engine.accept(o)
    one_leg = feed(engine, [quote("2013-10-07T14:00:01", "5.00", "5.20", symbol="C100")])
    assert fills(one_leg) == []
    assert [e.reason for e in only(one_leg, FillDeferred)] == ["leg C105: no quote yet"]
    crossed = feed(engine, [quote("2013-10-07T14:00:02", "2.20", "2.10", symbol="C105")])
    assert fills(crossed) == []
    assert "leg C105: crossed quote" in only(crossed, FillDeferred)[0].reason
    ok = feed(engine, [quote("2013-10-07T14:00:03", "2.00", "2.10", symbol="C105")])
    [fill] = fills(ok)
    # Atomic: both legs on the one snapshot, each with the quote it used.
    assert [lf.quote.ts.second for lf in fill.leg_fills] == [1, 3]


def test_a_leg_quoted_only_before_acceptance_does_not_count(engine: MatchingEngine) -> None:
    engine.on_quote(quote("2013-10-07T13:59:59", "2.00", "2.10", symbol="C105"))
    o = spread_order("3.20", FillPreference.CONSERVATIVE)
    engine.accept(o)
    events = feed(engine, [quote("2013-10-07T14:00:01", "5.00", "5.20", symbol="C100")])
    assert fills(events) == []
    assert only(events, FillDeferred)[0].reason == (
        "leg C105: quote not after the order's acceptance"
    )


def test_ratio_spread_leg_quantities_and_exact_net(engine: MatchingEngine) -> None:
    # 1x2 call ratio, as written: buy 1 C100 (5.00/5.20), sell 2 C105 (2.00/2.10).
    # mid = 5.10 - 2 x 2.05 = 1.00; aggressive limit 0.99 rests, then a touch fills at 0.99.
    legs = (Leg("C100", Side.BUY, 1), Leg("C105", Side.SELL, 2))
    o = spread_order("0.99", FillPreference.AGGRESSIVE, legs=legs)
    engine.accept(o)
    assert fills(feed(engine, FIRST)) == []
    # C100 4.97/5.17 (mid 5.07), C105 2.00/2.10: mid = 5.07 - 4.10 = 0.97 <= 0.99.
    events = feed(engine, legs_quotes("2013-10-07T14:00:02", ("4.97", "5.17"), ("2.00", "2.10")))
    [fill] = fills(events)
    assert fill.price == D("0.99") and net_of(fill, legs) == D("0.99")
    assert [lf.qty for lf in fill.leg_fills] == [D(2), D(4)]


def test_ioc_spread_not_marketable_is_canceled(engine: MatchingEngine) -> None:
    o = spread_order("3.00", FillPreference.MID, tif="ioc")
    engine.accept(o)
    events = feed(engine, FIRST)
    assert fills(events) == [] and [e.order_id for e in only(events, OrderCanceled)] == [o.id]
    assert engine.open_orders() == []


def test_spread_fill_capped_by_leg_sizes(make_engine: Callable[..., MatchingEngine]) -> None:
    engine = make_engine(cap_at_displayed_size=True)
    legs = (Leg("C100", Side.BUY, 1), Leg("C105", Side.SELL, 2))
    o = order("buy", "market", qty=10, symbol="XYZ", legs=legs)
    engine.accept(o)
    events = feed(
        engine,
        [
            quote("2013-10-07T14:00:01", "5.00", "5.20", symbol="C100", ask_size=7),
            quote("2013-10-07T14:00:01", "2.00", "2.10", symbol="C105", bid_size=9),
        ],
    )
    # C100 shows 7 spreads' worth, C105 shows 9 // 2 = 4: four spreads fill.
    assert [(f.qty, f.remaining_qty) for f in fills(events)] == [(D(4), D(6))]
    assert engine.get(o.id).status is OrderStatus.PARTIALLY_FILLED  # type: ignore[union-attr]


def test_spread_day_order_expires_at_the_close(engine: MatchingEngine) -> None:
    o = spread_order("1.00", FillPreference.MID)
    engine.accept(o)
    feed(engine, FIRST)
    after = feed(engine, legs_quotes("2013-10-07T20:30:00", ("4.00", "4.10"), ("3.50", "3.60")))
    assert fills(after) == []
    assert [e.order_id for e in only(after, OrderExpired)] == [o.id]
    assert engine.get(o.id).status is OrderStatus.EXPIRED  # type: ignore[union-attr]


def test_spread_waits_while_the_market_is_closed(engine: MatchingEngine) -> None:
    o = spread_order("1.00", FillPreference.MID, tif="gtc")
    engine.accept(o)
    feed(engine, FIRST)
    # After hours the mid (4.05 - 3.55 = 0.50) is within the limit, but the session is closed.
    after = feed(engine, legs_quotes("2013-10-07T20:30:00", ("4.00", "4.10"), ("3.50", "3.60")))
    assert fills(after) == []
    assert [e.reason for e in only(after, FillDeferred)] == [
        "market closed: waiting for a quote inside the regular session"
    ]
    morning = feed(engine, legs_quotes("2013-10-08T13:30:01", ("4.00", "4.10"), ("3.50", "3.60")))
    assert [f.price for f in fills(morning)] == [D("0.50")]


_price = st.integers(min_value=0, max_value=5000).map(lambda c: Decimal(c) / 100)


@st.composite
def _spread_case(draw: st.DrawFn) -> tuple[list[Leg], list[Quote], Decimal]:
    n = draw(st.integers(min_value=2, max_value=4))
    ratios = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n).filter(_gcd_one))
    legs, quotes = [], []
    for i, ratio in enumerate(ratios):
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        bid = draw(_price)
        ask = bid + draw(_price)
        if ask == 0:
            ask = Decimal("0.01")
        legs.append(Leg(f"L{i}", side, ratio))
        quotes.append(quote("2013-10-07T14:00:01", str(bid), str(ask), symbol=f"L{i}"))
    sq = spread_quote(legs, quotes)
    # Any net between the spread's bid and ask, at a cent or a half cent.
    steps = int((sq.ask - sq.bid) * 200)
    net = sq.bid + Decimal(draw(st.integers(0, steps))) / 200
    return legs, quotes, net


def _gcd_one(ratios: list[int]) -> bool:
    from math import gcd

    g = 0
    for r in ratios:
        g = gcd(g, r)
    return g == 1


@given(_spread_case())
def test_leg_prices_always_sum_exactly_to_the_net(
    case: tuple[list[Leg], list[Quote], Decimal],
) -> None:
    legs, quotes, net = case
    prices = allocate_leg_prices(legs, quotes, net)
    total = sum(
        (leg_sign(leg) * leg.ratio * p for leg, p in zip(legs, prices, strict=True)), Decimal(0)
    )
    assert total == net
    # Each leg stays at its quote, up to the sub-cent rounding the anchor leg absorbs.
    for p, q in zip(prices, quotes, strict=True):
        assert q.bid - Decimal("0.01") <= p <= q.ask + Decimal("0.01")

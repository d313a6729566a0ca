"""Properties over random orders and random quote streams (hypothesis).

For every fill:
- its quote is valid (ask > 0, 0 <= bid <= ask), in the session, stamped after acceptance;
- the price is never beyond the limit (buy <= limit, sell >= limit);
- the price is inside [bid, ask] of its quote, except a *rested* limit, which fills exactly at
  its limit on a quote that touches it (BRIEF §4 rule 3: a resting buy at 185.10 fills at
  185.10 when the ask falls to 185.08);
- market and stop fills are at the ask (buy) or bid (sell);
- filled quantity never exceeds the order's, and without the size cap each fill is the whole order.
And replaying the same inputs twice gives identical events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.conventions.calendar import MarketCalendar
from services.orders.domain import (
    EngineConfig,
    Event,
    FillPreference,
    Leg,
    Order,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderType,
    Quote,
    Side,
    TimeInForce,
    replay,
)
from tests.unit.orders.matching_support import shared_calendar, ts

START = ts("2013-10-07T19:59:00")  # a minute before the close, so the stream crosses it
SYMBOLS = ("AAA", "BBB")
cents = st.integers(min_value=9_900, max_value=10_100).map(lambda c: Decimal(c) / 100)


@st.composite
def quote_stream(draw: st.DrawFn) -> list[Quote]:
    out: list[Quote] = []
    t = START
    for _ in range(draw(st.integers(1, 60))):
        t += timedelta(milliseconds=draw(st.integers(1, 5_000)))
        bid = draw(cents)
        ask = bid + Decimal(draw(st.integers(0, 20))) / 100
        kind = draw(st.sampled_from(["ok"] * 8 + ["crossed", "no_ask"]))
        if kind == "crossed":
            bid, ask = ask + Decimal("0.01"), bid
        elif kind == "no_ask":
            ask = Decimal(0)
        sizes = st.integers(0, 300)
        out.append(Quote(draw(st.sampled_from(SYMBOLS)), t, bid, ask, draw(sizes), draw(sizes)))
    return out


@st.composite
def orders(draw: st.DrawFn) -> list[Order]:
    out: list[Order] = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(list(OrderType)))
        tif = draw(st.sampled_from(list(TimeInForce)))
        limit = draw(cents) if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
        stop = draw(cents) if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None
        out.append(
            Order(
                id=f"p{i}",
                account_id="a",
                symbol=draw(st.sampled_from(SYMBOLS)),
                side=draw(st.sampled_from(list(Side))),
                qty=Decimal(draw(st.integers(1, 400))),
                order_type=kind,
                time_in_force=tif,
                accepted_at=START + timedelta(milliseconds=draw(st.integers(0, 120_000))),
                limit_price=limit,
                stop_price=stop,
            )
        )
    return out


def check(events: list[Event], by_id: dict[str, Order], config: EngineConfig) -> None:
    calendar = shared_calendar()
    filled: dict[str, Decimal] = defaultdict(Decimal)
    done: set[str] = set()
    looked: set[str] = set()
    for e in events:
        if isinstance(e, OrderCanceled | OrderExpired):
            assert e.order_id not in done
            done.add(e.order_id)
        if not isinstance(e, OrderFilled):
            continue
        o, q, p = by_id[e.order_id], e.quote, e.price
        assert e.order_id not in done, "a fill after the order was finished"
        assert q.ask > 0 and 0 <= q.bid <= q.ask
        assert q.ts > o.accepted_at and e.ts == q.ts and calendar.is_open(q.ts)
        buy = o.side is Side.BUY
        if o.limit_price is not None:
            assert (p <= o.limit_price) if buy else (p >= o.limit_price)
        if not q.bid <= p <= q.ask:
            # Only a rested limit, exactly at its limit, on a quote that touches it.
            assert o.limit_price is not None and p == o.limit_price
            assert q.ask <= p if buy else q.bid >= p
            assert "rested" in e.explanation
        if o.order_type in (OrderType.MARKET, OrderType.STOP):
            assert p == (q.ask if buy else q.bid)
        assert e.qty > 0
        filled[e.order_id] += e.qty
        assert filled[e.order_id] == e.cumulative_qty <= o.qty
        assert e.remaining_qty == o.qty - e.cumulative_qty
        if e.remaining_qty == 0:
            done.add(e.order_id)
        if not config.cap_at_displayed_size:
            assert e.qty == o.qty
        if o.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            assert e.order_id not in looked, "ioc/fok get one look only"
            looked.add(e.order_id)
        if o.time_in_force is TimeInForce.FOK:
            assert e.qty == o.qty


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    quotes=quote_stream(),
    order_list=orders(),
    cap=st.booleans(),
    pessimistic=st.booleans(),
)
def test_fills_respect_the_rules_and_replay_is_deterministic(
    quotes: list[Quote], order_list: list[Order], cap: bool, pessimistic: bool
) -> None:
    calendar: MarketCalendar = shared_calendar()
    config = EngineConfig(cap_at_displayed_size=cap, queue_pessimistic=pessimistic)
    events = replay(order_list, quotes, calendar, config)
    check(events, {o.id: o for o in order_list}, config)
    assert replay(order_list, quotes, calendar, config) == events


@st.composite
def spread_orders(draw: st.DrawFn) -> list[Order]:
    out: list[Order] = []
    for i in range(draw(st.integers(1, 6))):
        limit = draw(st.one_of(st.none(), st.integers(-300, 300).map(lambda c: Decimal(c) / 100)))
        out.append(
            Order(
                id=f"s{i}",
                account_id="a",
                symbol="XYZ",
                side=draw(st.sampled_from(list(Side))),
                qty=Decimal(draw(st.integers(1, 20))),
                order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
                time_in_force=draw(st.sampled_from(list(TimeInForce))),
                accepted_at=START + timedelta(milliseconds=draw(st.integers(0, 60_000))),
                limit_price=limit,
                legs=(Leg("AAA", Side.BUY, 1), Leg("BBB", Side.SELL, draw(st.integers(1, 3)))),
                fill_preference=draw(st.sampled_from(list(FillPreference))),
            )
        )
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quotes=quote_stream(), order_list=spread_orders(), cap=st.booleans())
def test_spread_fills_are_exact_atomic_and_within_the_limit(
    quotes: list[Quote], order_list: list[Order], cap: bool
) -> None:
    calendar = shared_calendar()
    config = EngineConfig(cap_at_displayed_size=cap)
    events = replay(order_list, quotes, calendar, config)
    by_id = {o.id: o for o in order_list}
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for e in events:
        if not isinstance(e, OrderFilled):
            continue
        o = by_id[e.order_id]
        assert len(e.leg_fills) == len(o.legs)
        net = Decimal(0)
        for leg, lf in zip(o.legs, e.leg_fills, strict=True):
            q = lf.quote
            assert q.symbol == leg.symbol and q.ask > 0 and 0 <= q.bid <= q.ask
            assert o.accepted_at < q.ts <= e.ts and calendar.is_open(e.ts)
            assert lf.qty == e.qty * leg.ratio
            assert lf.side is (leg.side if o.side is Side.BUY else leg.side.opposite)
            net += (1 if leg.side is Side.BUY else -1) * leg.ratio * lf.price
        assert net == e.price  # the legs sum exactly to the net
        if o.limit_price is not None:
            assert e.price <= o.limit_price if o.side is Side.BUY else e.price >= o.limit_price
        filled[e.order_id] += e.qty
        assert filled[e.order_id] == e.cumulative_qty <= o.qty
    assert replay(order_list, quotes, calendar, config) == events

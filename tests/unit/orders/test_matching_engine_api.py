"""The engine's lifecycle API: accept, cancel, get, open_orders, replay, re-arming, the index."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from services.conventions.calendar import MarketCalendar
from services.orders.domain import (
    DuplicateOrderError,
    InvalidOrderError,
    Leg,
    MatchingEngine,
    OrderCanceled,
    OrderStatus,
    Side,
    replay,
)
from tests.unit.orders.matching_support import D, feed, fills, only, order, quote, ts


def test_cancel_is_idempotent(engine: MatchingEngine) -> None:
    o = order("buy", "limit", limit="100")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))  # rests
    first = engine.cancel(o.id, ts("2013-10-07T14:00:02"))
    assert [(e.order_id, e.ts) for e in only(first, OrderCanceled)] == [
        (o.id, ts("2013-10-07T14:00:02"))
    ]
    assert engine.cancel(o.id, ts("2013-10-07T14:00:03")) == []
    assert engine.cancel("no-such-order", ts("2013-10-07T14:00:03")) == []
    # A canceled resting order never fills, even when the market comes through it.
    assert fills(engine.on_quote(quote("2013-10-07T14:00:04", "99.00", "99.05"))) == []
    assert engine.get(o.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_cancel_of_an_order_awaiting_its_first_quote(engine: MatchingEngine) -> None:
    o = order("buy", "market")
    engine.accept(o)
    engine.cancel(o.id, ts("2013-10-07T14:00:00.5"))
    assert fills(engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))) == []


def test_cancel_of_a_filled_order_does_nothing(engine: MatchingEngine) -> None:
    o = order("buy", "market")
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    assert engine.cancel(o.id, ts("2013-10-07T14:00:02")) == []
    assert engine.get(o.id).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_engine_keeps_its_own_copy(engine: MatchingEngine) -> None:
    o = order("buy", "market", status=OrderStatus.NEW)
    engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    assert o.status is OrderStatus.NEW and o.filled_qty == 0
    assert engine.get(o.id).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_open_orders_in_acceptance_order(engine: MatchingEngine) -> None:
    ids = [order("buy", "limit", limit=str(100 + i), oid=f"x{i}") for i in range(3)]
    for o in ids:
        engine.accept(o)
    engine.cancel("x1", ts("2013-10-07T14:00:01"))
    assert [o.id for o in engine.open_orders()] == ["x0", "x2"]


def test_duplicate_order_id_is_refused(engine: MatchingEngine) -> None:
    engine.accept(order(oid="dup"))
    with pytest.raises(DuplicateOrderError):
        engine.accept(order(oid="dup"))


_BAD: list[tuple[dict[str, Any], str]] = [
    ({"qty": 0}, "qty"),
    ({"order_type": "limit"}, "limit_price"),
    ({"order_type": "limit", "limit": "-1"}, "limit_price"),
    ({"order_type": "stop"}, "stop_price"),
    ({"order_type": "market", "limit": "10"}, "limit_price"),
    ({"order_type": "stop_limit", "stop": "10"}, "limit_price"),
]


@pytest.mark.parametrize(("kwargs", "field"), _BAD)
def test_invalid_orders_name_the_field(
    engine: MatchingEngine, kwargs: dict[str, Any], field: str
) -> None:
    kind = kwargs.pop("order_type", "market")
    with pytest.raises(InvalidOrderError) as err:
        engine.accept(order("buy", kind, **kwargs))
    assert err.value.field == field


@pytest.mark.parametrize(
    ("legs", "field"),
    [
        ((Leg("A", Side.BUY, 1),), "legs"),
        (tuple(Leg(s, Side.BUY, 1) for s in "ABCDE"), "legs"),
        ((Leg("A", Side.BUY, 2), Leg("B", Side.SELL, 4)), "legs"),
        ((Leg("A", Side.BUY, 1), Leg("A", Side.SELL, 1)), "legs"),
        ((Leg("A", Side.BUY, 1), Leg("B", Side.SELL, 0)), "legs[1].ratio"),
    ],
)
def test_invalid_multileg_orders(engine: MatchingEngine, legs: tuple[Leg, ...], field: str) -> None:
    with pytest.raises(InvalidOrderError) as err:
        engine.accept(order("buy", "limit", limit="1.00", legs=legs))
    assert err.value.field == field


def test_rearmed_rested_limit_fills_at_its_limit(engine: MatchingEngine) -> None:
    # After a restart the service re-arms an open order with its state: it already rested and
    # had two fills, so it fills at its limit on touch and the next execution id is ":3".
    o = order(
        "buy",
        "limit",
        limit="182.10",
        qty=300,
        filled_qty=D(100),
        filled_notional=D("18209"),
        fill_count=2,
        rested=True,
        status=OrderStatus.PARTIALLY_FILLED,
    )
    engine.accept(o)
    [fill] = fills(engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05")))
    assert (fill.price, fill.qty, fill.execution_id, fill.cumulative_qty) == (
        D("182.10"),
        D(200),
        f"{o.id}:3",
        D(300),
    )


def test_replay_is_deterministic_and_does_not_touch_its_inputs(calendar: MarketCalendar) -> None:
    orders = [
        order("buy", "limit", limit="182.02", oid="a", at="2013-10-07T14:00:00"),
        order("sell", "stop", stop="181.95", oid="b", at="2013-10-07T14:00:00"),
        order("buy", "market", oid="c", at="2013-10-07T14:00:01.5"),
    ]
    quotes = [
        quote("2013-10-07T14:00:01", "182.00", "182.05"),
        quote("2013-10-07T14:00:02", "182.00", "182.01"),
        quote("2013-10-07T14:00:03", "181.90", "181.95"),
    ]
    first = replay(orders, quotes, calendar)
    second = replay(orders, quotes, calendar)
    assert first == second
    assert [(f.order_id, f.price) for f in fills(first)] == [
        ("a", D("182.02")),  # rested at 14:00:01, ask 182.01 touches at 14:00:02
        ("c", D("182.01")),
        ("b", D("181.90")),
    ]
    assert all(o.status is OrderStatus.ACCEPTED and o.filled_qty == 0 for o in orders)


def test_replay_accepts_an_order_before_a_quote_with_the_same_timestamp(
    calendar: MarketCalendar,
) -> None:
    o = order("buy", "market", at="2013-10-07T14:00:01")
    quotes = [
        quote("2013-10-07T14:00:01", "182.00", "182.05"),
        quote("2013-10-07T14:00:02", "182.00", "182.06"),
    ]
    assert [f.price for f in fills(replay([o], quotes, calendar))] == [D("182.06")]


def test_a_quote_that_reaches_nothing_does_not_visit_resting_orders(
    engine: MatchingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(2000):
        engine.accept(order("buy", "limit", limit=str(100 + i % 50), tif="gtc"))
        engine.accept(order("sell", "stop", stop=str(100 + i % 50), tif="gtc"))
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))  # all rest
    visits: list[str] = []
    for name in ("_fire_limits", "_fire_stops", "_fill_rested", "_process_arrivals"):
        monkeypatch.setattr(engine, name, lambda *a, _n=name, **k: visits.append(_n))
    feed(engine, [quote(f"2013-10-07T14:01:{s:02d}", "182.00", "182.05") for s in range(50)])
    assert visits == []


def test_lazy_deletion_compacts_and_never_fills_dead_orders(engine: MatchingEngine) -> None:
    orders = [order("buy", "limit", limit="150.00", tif="gtc") for _ in range(300)]
    for o in orders:
        engine.accept(o)
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    for o in orders[:250]:
        engine.cancel(o.id, ts("2013-10-07T14:00:02"))
    book = engine._books["IBM"]
    assert book.resting_count == 50 and len(book.buy_limits) < 300  # compacted at least once
    events = engine.on_quote(quote("2013-10-07T14:00:03", "149.00", "149.05"))
    assert sorted(f.order_id for f in fills(events)) == sorted(o.id for o in orders[250:])


def test_replace_is_cancel_plus_a_new_order(engine: MatchingEngine) -> None:
    # The engine has no replace: the service cancels the old order and accepts a new one.
    old = order("buy", "limit", limit="180.00")
    engine.accept(old)
    engine.on_quote(quote("2013-10-07T14:00:01", "182.00", "182.05"))
    engine.cancel(old.id, ts("2013-10-07T14:00:02"))
    new = replace(
        old, id=old.id + "-r", limit_price=Decimal("182.05"), accepted_at=ts("2013-10-07T14:00:02")
    )
    engine.accept(new)
    events = engine.on_quote(quote("2013-10-07T14:00:03", "182.00", "182.05"))
    assert [f.order_id for f in fills(events)] == [new.id]

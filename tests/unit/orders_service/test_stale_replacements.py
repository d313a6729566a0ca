"""A replacement is committed only if the order it replaces is as it was when it was asked for.

Its hold was decided with the old order's hold as credit, and its qty (by default) from the
old order's remaining qty. An old order that fills, even in part, or ends, between the hold
and the commit would otherwise leave both working, or buying power spent twice; two
replacements of one order in one batch would both go live.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.orders.accept import PendingSubmit, refuse_stale_replacements
from services.orders.domain.model import Order, OrderStatus, OrderType, Side, TimeInForce
from services.orders.validation import OrderIntent

pytestmark = pytest.mark.anyio
T = datetime(2024, 1, 2, 15, tzinfo=UTC)


def _old(filled: str = "0", status: OrderStatus = OrderStatus.ACCEPTED) -> Order:
    return Order(
        "old",
        "acct",
        "IBM",
        Side.BUY,
        Decimal(100),
        OrderType.LIMIT,
        TimeInForce.GTC,
        T,
        limit_price=Decimal(100),
        filled_qty=Decimal(filled),
        status=status,
    )


def _replacement(name: str, replaces: str | None = "old", filled: str = "0") -> PendingSubmit:
    intent = OrderIntent(
        "IBM", Side.BUY, Decimal(100), OrderType.LIMIT, TimeInForce.GTC, Decimal(99), None, name
    )
    done: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
    p = PendingSubmit(name, "u1", name, intent, Decimal(9900), replaces, T, done)  # type: ignore[arg-type]
    p.replaces_filled = Decimal(filled)
    return p


async def test_an_unchanged_old_order_lets_its_replacement_through() -> None:
    batch = [_replacement("new", filled="10"), _replacement("plain", replaces=None)]
    refuse_stale_replacements(batch, {"old": _old(filled="10")}.get)
    assert [p.refusal for p in batch] == [None, None]


@pytest.mark.parametrize(
    ("old", "said"),
    [
        (_old(filled="50"), "filled 50 more"),  # in part, between the hold and the commit
        (_old(filled="100", status=OrderStatus.FILLED), "filled or ended"),
        (_old(status=OrderStatus.CANCELED), "filled or ended"),
        (None, "filled or ended"),  # not on this book
    ],
)
async def test_an_old_order_that_changed_refuses_its_replacement(
    old: Order | None, said: str
) -> None:
    (p,) = batch = [_replacement("new")]
    refuse_stale_replacements(batch, {"old": old}.get if old else {}.get)
    assert p.refusal is not None and p.refusal.reason == "ORDER_NOT_OPEN"
    assert said in p.refusal.message


async def test_only_the_first_of_two_replacements_in_a_batch_goes_through() -> None:
    first, second = batch = [_replacement("a"), _replacement("b")]
    refuse_stale_replacements(batch, {"old": _old()}.get)
    assert first.refusal is None
    assert second.refusal is not None and "was replaced" in second.refusal.message

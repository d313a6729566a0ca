"""T+1 settlement for cash accounts: sale proceeds are cash, but not spendable until they settle.

The proceeds of a sale on trade date D settle on the next trading day after D (the exchange
calendar's); until the market clock's date reaches it, a cash account's buying power leaves
them out. Margin accounts are not limited this way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.accounts.adapters.tables import activities
from services.accounts.domain.ledger import ZERO
from services.accounts.domain.settlement import settlement_date
from services.conventions.calendar import MarketCalendar

NEW_YORK = ZoneInfo("America/New_York")
LOOKBACK = timedelta(days=10)  # a sale settles within a few calendar days, holidays included


def next_trading_day(calendar: MarketCalendar) -> Callable[[date], date]:
    def step(d: date) -> date:
        for k in range(1, 15):
            nxt = d + timedelta(days=k)
            if calendar.session_bounds(nxt) is not None:
                return nxt
        raise ValueError(f"no trading day within two weeks after {d}")

    return step


async def unsettled_proceeds(
    conn: AsyncConnection, account_id: str, as_of: datetime, calendar: MarketCalendar
) -> Decimal:
    """Sale proceeds of `account_id` not yet settled at `as_of` (the market clock)."""
    rows = (
        await conn.execute(
            select(activities.c.amount, activities.c.occurred_at).where(
                activities.c.account_id == account_id,
                activities.c.activity_type == "fill",
                activities.c.amount > 0,
                activities.c.occurred_at > as_of - LOOKBACK,
            )
        )
    ).all()
    return unsettled_of([(r[0], r[1]) for r in rows], as_of, calendar)


def unsettled_of(
    sales: Iterable[tuple[Any, datetime]], as_of: datetime, calendar: MarketCalendar
) -> Decimal:
    """The part of these sale proceeds (amount, when) not yet settled at `as_of`."""
    today = as_of.astimezone(NEW_YORK).date()
    step = next_trading_day(calendar)
    pending = ZERO
    for amount, occurred_at in sales:
        if occurred_at <= as_of - LOOKBACK:
            continue
        trade_date = occurred_at.astimezone(NEW_YORK).date()
        if settlement_date(trade_date, step) > today:
            pending += Decimal(amount)
    return pending

"""T+1 settlement: a cash account cannot spend sale proceeds before they settle."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, Fill
from services.accounts.domain.errors import InsufficientBuyingPower
from services.accounts.domain.instruments import Equity
from services.accounts.domain.ledger import Holding, PositionState
from services.accounts.domain.settlement import CashBalance, settlement_date

HOLIDAYS = {date(2014, 7, 4)}


def next_trading_day(d: date) -> date:
    d += timedelta(days=1)
    while d.weekday() >= 5 or d in HOLIDAYS:
        d += timedelta(days=1)
    return d


FRI, MON = date(2014, 6, 6), date(2014, 6, 9)


def test_settlement_is_the_next_trading_day() -> None:
    assert settlement_date(date(2014, 6, 5), next_trading_day) == FRI  # Thu -> Fri
    assert settlement_date(FRI, next_trading_day) == MON  # Fri -> Mon
    assert settlement_date(date(2014, 7, 3), next_trading_day) == date(2014, 7, 7)  # holiday
    with pytest.raises(ValueError, match="not a later day"):
        settlement_date(FRI, lambda d: d)


def test_sale_proceeds_are_cash_but_not_spendable_until_they_settle() -> None:
    cash = CashBalance(D(1000))
    cash = cash.post_trade(D(500), FRI, next_trading_day)  # a sale on Friday
    assert cash.total == 1500 and cash.settled == 1000
    assert cash.spendable(FRI) == 1000 and cash.unsettled_proceeds(FRI) == 500
    assert cash.spendable(MON) == 1500
    # a purchase is committed at once, settled or not: 1000 - 300 = 700 on Friday
    cash = cash.post_trade(D(-300), FRI, next_trading_day)
    assert cash.spendable(FRI) == 700 and cash.total == 1200
    assert cash.settled_as_of(FRI) == 1000 and cash.settled_as_of(MON) == 1200
    settled = cash.settle(MON)
    assert settled.settled == 1200 and settled.pending == () and settled.total == 1200
    assert cash.settle(FRI) is cash
    assert cash.post_trade(D(0), FRI, next_trading_day) is cash


def test_cash_account_waits_for_settlement_before_buying_with_proceeds() -> None:
    aapl = Equity("AAPL")
    acct = AccountLedger(
        AccountType.CASH,
        next_trading_day,
        cash=CashBalance(D(100)),
        holdings=[Holding(aapl, PositionState(D(10), D("92.00")))],
    )
    acct.apply_fill(Fill("x1", "o1", aapl, "sell", D(10), D("92.50"), FRI, order_done=True))
    # cash 100 + 925.00 = 1025.00, but on Friday only the settled 100 can be spent
    assert acct.cash.total == D("1025.00")
    assert acct.buying_power(FRI) == 100
    with pytest.raises(InsufficientBuyingPower, match=r"needs \$500.00, available \$100.00"):
        acct.place_hold("o2", aapl, "buy", D(5), D("500.00"), as_of=FRI)
    # Monday the proceeds have settled
    assert acct.buying_power(MON) == D("1025.00")
    acct.place_hold("o2", aapl, "buy", D(5), D("500.00"), as_of=MON)
    assert acct.buying_power(MON) == D("525.00")

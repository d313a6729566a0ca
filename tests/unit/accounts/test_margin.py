"""Reg-T margin and buying power, worked by hand (50% initial, 25% maintenance)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, Fill
from services.accounts.domain.errors import InsufficientBuyingPower, MissingMark
from services.accounts.domain.holds import (
    BuyingPowerHold,
    cash_account_hold,
    margin_account_hold,
    opening_qty,
)
from services.accounts.domain.instruments import Equity, MarkedPosition
from services.accounts.domain.margin import (
    cash_account_buying_power,
    hold_for_requirement,
    margin_summary,
)
from services.accounts.domain.settlement import CashBalance

XYZ = Equity("XYZ")
DAY = date(2024, 3, 1)


def next_day(d: date) -> date:
    return d + timedelta(days=1)


def test_long_on_margin() -> None:
    # 10,000 cash buys 100 XYZ @ 150 = 15,000 -> cash -5,000 (a 5,000 loan)
    s = margin_summary(D(-5000), [MarkedPosition(XYZ, D(100), D(150))], D(0), D(0))
    assert s.equity == s.margin_equity == 10000
    assert s.initial_margin == 7500  # 50% x 15,000
    assert s.maintenance_margin == 3750  # 25% x 15,000
    assert s.excess_equity == 2500 and s.buying_power == 5000  # 2 x 2,500
    assert s.options_buying_power == 2500 and s.margin_call == 0
    # XYZ falls to 60: mv 6,000, equity 1,000 < maintenance 1,500 -> a 500 margin call
    s = margin_summary(D(-5000), [MarkedPosition(XYZ, D(100), D(60))], D(0), D(0))
    assert s.equity == 1000 and s.maintenance_margin == 1500
    assert s.margin_call == 500 and s.buying_power == 0


def test_short_on_margin_and_holds() -> None:
    # short 100 @ 50 with 10,000: cash 15,000, short mv -5,000, equity 10,000
    # initial 2,500 -> excess 7,500 -> buying power 15,000, less 4,000 held = 11,000
    s = margin_summary(D(15000), [MarkedPosition(XYZ, D(-100), D(50))], D(0), D(4000))
    assert s.short_market_value == -5000 and s.long_market_value == 0
    assert s.equity == 10000 and s.initial_margin == 2500
    assert s.buying_power == 11000


def test_cash_account_buying_power() -> None:
    assert cash_account_buying_power(D(1000), D(300), D(600)) == 100
    assert cash_account_buying_power(D(1000), D(300), D(800)) == 0


def test_hold_amounts() -> None:
    assert opening_qty("buy", D(10), D(-4)) == 6 and opening_qty("sell", D(3), D(5)) == 0
    assert cash_account_hold(XYZ, "buy", D(10), D("12.50"), D(0)) == D("125.00")
    assert cash_account_hold(XYZ, "sell", D(10), D("12.50"), D(10)) == 0
    # margin: an equity order holds the notional of its opening part only
    assert margin_account_hold(XYZ, "buy", D(10), D(50), D(0)) == 500
    assert margin_account_hold(XYZ, "buy", D(10), D(50), D(-4)) == 300  # 4 cover, 6 open
    assert margin_account_hold(XYZ, "sell", D(10), D(50), D(10)) == 0
    assert margin_account_hold(XYZ, "sell", D(10), D(50), D(0)) == 500  # a short sale
    assert hold_for_requirement(D(215)) == 430
    # a fill of 4 of 10 leaves 6/10 of the hold
    h = BuyingPowerHold("o", "XYZ", "buy", D(10), D(500))
    left = h.after_fill(D(4))
    assert left is not None and left.qty == 6 and left.amount == 300
    assert h.after_fill(D(10)) is None


def test_margin_account_aggregate_buys_twice_its_cash() -> None:
    acct = AccountLedger(AccountType.MARGIN, next_day, cash=CashBalance(D(10000)))
    marks = {"XYZ": D(100)}
    assert acct.buying_power(DAY, marks) == 20000
    with pytest.raises(InsufficientBuyingPower):
        acct.place_hold("o0", XYZ, "buy", D(201), D(20100), as_of=DAY, marks=marks)
    acct.place_hold("o1", XYZ, "buy", D(200), D(20000), as_of=DAY, marks=marks)
    assert acct.buying_power(DAY, marks) == 0
    acct.apply_fill(Fill("x1", "o1", XYZ, "buy", D(200), D(100), DAY, order_done=True))
    # cash -10,000; mv 20,000; equity 10,000; initial 10,000 -> no excess
    s = acct.margin(marks)
    assert s.cash == -10000 and s.equity == 10000 and s.excess_equity == 0
    assert s.maintenance_margin == 5000
    with pytest.raises(ValueError, match="needs marks"):
        acct.buying_power(DAY)
    with pytest.raises(MissingMark, match="XYZ"):
        acct.margin({})

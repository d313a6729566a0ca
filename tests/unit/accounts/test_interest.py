"""Margin interest: actual/360 daily accrual, cents posted, the remainder carried."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, ActivityType
from services.accounts.domain.interest import accrue_margin_interest
from services.accounts.domain.settlement import CashBalance

RATE = D("0.08")
MON = date(2024, 3, 4)


def test_one_day_on_a_10000_debit() -> None:
    # 10,000 x 8% / 360 x 1 = 2.2222...: 2.22 charged, 0.002222... carried
    a = accrue_margin_interest(D(-10000), RATE, MON, MON + timedelta(days=1))
    assert a.cash_delta == D("-2.22") and a.days == 1
    assert a.exact == D(800) / 360 and a.carry == D(800) / 360 - D("2.22")
    assert a.explanation == (
        "Margin interest for 2024-03-04 to 2024-03-04 (1 day, actual/360): you borrowed "
        "$10,000.00; $10,000.00 x 8% a year / 360 x 1 = $2.222222; $2.22 charged."
    )


def test_the_carry_makes_daily_charges_add_up() -> None:
    # three days one at a time: 2.2222 -> 2.22 (carry .0022); 2.2244 -> 2.22 (carry .0044);
    # 2.2267 -> 2.23 (carry -.0033): 6.67 in all, = 10,000 x 8% x 3 / 360 = 6.6667 rounded
    carry, total = D(0), D(0)
    for i in range(3):
        day = MON + timedelta(days=i)
        a = accrue_margin_interest(D(-10000), RATE, day, day + timedelta(days=1), carry)
        carry, total = a.carry, total + a.cash_delta
    assert total == D("-6.67")
    assert "carried from earlier rounding" in a.explanation
    # a small debit: 100 x 8% / 360 = 0.0222 a day would round to 0.02 x 30 = 0.60 without
    # the carry; with it, 30 days charge 0.67 = 100 x 8% x 30 / 360 = 0.6667 rounded
    carry, total = D(0), D(0)
    for i in range(30):
        day = MON + timedelta(days=i)
        a = accrue_margin_interest(D(-100), RATE, day, day + timedelta(days=1), carry)
        carry, total = a.carry, total + a.cash_delta
    assert total == D("-0.67")


def test_friday_to_monday_is_three_days() -> None:
    fri = date(2024, 3, 1)
    a = accrue_margin_interest(D(-10000), RATE, fri, fri + timedelta(days=3))
    assert a.days == 3 and a.cash_delta == D("-6.67")
    assert "(3 days, actual/360)" in a.explanation and "to 2024-03-03" in a.explanation


def test_credit_balance_accrues_nothing() -> None:
    a = accrue_margin_interest(D(500), RATE, MON, MON + timedelta(days=1), D("0.004"))
    assert a.cash_delta == 0 and a.carry == D("0.004") and "no debit balance" in a.explanation
    with pytest.raises(ValueError, match="empty"):
        accrue_margin_interest(D(-1), RATE, MON, MON)
    with pytest.raises(ValueError, match="not negative"):
        accrue_margin_interest(D(-1), D("-0.01"), MON, MON + timedelta(days=1))


def test_the_account_charges_interest_on_its_settled_debit() -> None:
    def nxt(d: date) -> date:
        return d + timedelta(days=1)

    acct = AccountLedger(AccountType.MARGIN, nxt, cash=CashBalance(D(-10000)))
    act = acct.accrue_interest(RATE, MON, MON + timedelta(days=1))
    assert act is not None and act.activity_type is ActivityType.INTEREST
    assert act.amount == D("-2.22") and acct.cash.total == D("-10002.22")
    assert acct.interest_carry == D(800) / 360 - D("2.22")
    cash = AccountLedger(AccountType.CASH, nxt, cash=CashBalance(D(100)))
    assert cash.accrue_interest(RATE, MON, MON + timedelta(days=1)) is None

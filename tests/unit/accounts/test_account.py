"""The account aggregate: fills once, holds, no shorting in cash accounts, activities."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, ActivityType, Fill
from services.accounts.domain.errors import InsufficientQuantity
from services.accounts.domain.instruments import Equity, OptionContract, OptionRight
from services.accounts.domain.settlement import CashBalance

XYZ = Equity("XYZ")
DAY = date(2024, 3, 1)


def nxt(d: date) -> date:
    return d + timedelta(days=1)


def cash_account(cash: str = "10000") -> AccountLedger:
    return AccountLedger(AccountType.CASH, nxt, cash=CashBalance(D(cash)))


def test_a_replayed_fill_is_not_applied_twice() -> None:
    acct = cash_account()
    fill = Fill("exec-1", "o1", XYZ, "buy", D(10), D("12.34"), DAY)
    act = acct.apply_fill(fill)
    assert act is not None and act.amount == D("-123.40") and act.qty == 10
    assert act.activity_type is ActivityType.FILL and act.ref_id == "exec-1"
    assert acct.apply_fill(fill) is None
    assert acct.position("XYZ").qty == 10 and acct.cash.total == D("9876.60")
    assert len(acct.activities) == 1


def test_holds_shrink_with_fills_and_go_on_done_or_cancel() -> None:
    acct = cash_account()
    acct.place_hold("o1", XYZ, "buy", D(10), D("1000.00"), as_of=DAY)  # limit 100
    assert acct.place_hold("o1", XYZ, "buy", D(99), D(1), as_of=DAY).qty == 10  # idempotent
    assert acct.buying_power(DAY) == 9000
    acct.apply_fill(Fill("x1", "o1", XYZ, "buy", D(4), D("99.50"), DAY))
    # 6 of 10 left -> 600.00 held; cash 10,000 - 398.00 = 9,602.00 -> 9,002.00 available
    assert acct.holds["o1"].amount == 600 and acct.held_amount == 600
    assert acct.buying_power(DAY) == D("9002.00")
    acct.apply_fill(Fill("x2", "o1", XYZ, "buy", D(1), D(99), DAY, order_done=True))
    assert "o1" not in acct.holds and acct.buying_power(DAY) == D("9503.00")
    acct.place_hold("o2", XYZ, "sell", D(5), D(0), as_of=DAY)
    assert acct.held_qty("XYZ") == 5
    with pytest.raises(InsufficientQuantity, match="selling 1 XYZ but 0 available"):
        acct.place_hold("o3", XYZ, "sell", D(1), D(0), as_of=DAY)
    assert acct.release_hold("o2") is not None and acct.release_hold("o2") is None
    with pytest.raises(ValueError):
        acct.place_hold("o4", XYZ, "hold", D(1), D(0), as_of=DAY)
    with pytest.raises(ValueError):
        acct.place_hold("o4", XYZ, "buy", D(0), D(0), as_of=DAY)


def test_a_cash_account_fill_that_would_short_is_refused() -> None:
    acct = cash_account()
    with pytest.raises(InsufficientQuantity):
        acct.apply_fill(Fill("x1", "o1", XYZ, "sell", D(1), D(10), DAY))
    assert acct.applied_executions == set() and acct.cash.total == 10000


def test_fill_cash_is_rounded_to_the_cent() -> None:
    acct = cash_account()
    # 3 x 0.1234 = 0.3702 -> 0.37 paid; the average entry keeps the exact 0.1234
    act = acct.apply_fill(Fill("x1", "o1", XYZ, "buy", D(3), D("0.1234"), DAY))
    assert act is not None and act.amount == D("-0.37")
    assert acct.position("XYZ").avg_entry_price == D("0.1234")
    # options carry the multiplier: 2 x 2.15 x 100 = 430.00
    call = OptionContract("XYZ240315C00100000", "XYZ", OptionRight.CALL, D(100), DAY)
    act = acct.apply_fill(Fill("x2", "o2", call, "buy", D(2), D("2.15"), DAY))
    assert act is not None and act.amount == D("-430.00")
    assert acct.holdings[call.symbol].cost_basis == D("430.00")


def test_corporate_actions_on_the_account() -> None:
    acct = cash_account("0")
    acct.apply_fill(Fill("x1", "o1", XYZ, "buy", D(15), D("12.34"), DAY))
    assert acct.apply_cash_dividend("ABC", D(1), DAY) is None  # no position
    assert acct.apply_split("ABC", Fraction(2), DAY) == []
    div = acct.apply_cash_dividend("XYZ", D("0.10"), DAY)
    assert div is not None and div.amount == D("1.50")
    acts = acct.apply_split("XYZ", Fraction(1, 10), DAY, D("9.87"))
    assert [a.activity_type for a in acts] == [ActivityType.SPLIT, ActivityType.CASH_IN_LIEU]
    assert acts[0].qty == -14 and acts[1].amount == D("49.35")
    # -185.10 + 1.50 + 49.35 = -134.25
    assert acct.cash.total == D("-134.25") and acct.position("XYZ").qty == 1
    assert acct.position("XYZ").realized_pl == D("-12.35")


def test_margin_account_snapshot_reports_maintenance() -> None:
    acct = AccountLedger(AccountType.MARGIN, nxt, cash=CashBalance(D(10000)))
    acct.apply_fill(Fill("x1", "o1", XYZ, "sell", D(100), D(50), DAY))  # a short
    snap = acct.snapshot(DAY, {"XYZ": D(50)})
    assert snap.short_market_value == -5000 and snap.maintenance_margin == 1250
    assert snap.equity == 10000


def test_options_take_no_dividends_and_no_splits_here() -> None:
    call = OptionContract("XYZ240315C00100000", "XYZ", OptionRight.CALL, D(100), DAY)
    acct = cash_account()
    acct.apply_fill(Fill("x1", "o1", call, "buy", D(1), D(2), DAY))
    assert acct.apply_cash_dividend(call.symbol, D(1), DAY) is None
    with pytest.raises(ValueError, match="OCC"):
        acct.apply_split(call.symbol, Fraction(2), DAY)

"""Options strategy requirements, with tastytrade's worked figures (research/simulators.md §5)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, Fill
from services.accounts.domain.errors import InsufficientBuyingPower, InsufficientQuantity
from services.accounts.domain.holds import cash_account_hold, margin_account_hold
from services.accounts.domain.instruments import (
    Equity,
    MarkedPosition,
    OptionContract,
    OptionRight,
)
from services.accounts.domain.ledger import Holding, PositionState
from services.accounts.domain.option_margin import (
    cash_secured_put_requirement,
    iron_condor_requirement,
    long_option_requirement,
    naked_option_requirement,
    option_requirement,
    vertical_spread_requirement,
)
from services.accounts.domain.settlement import CashBalance

CALL, PUT = OptionRight.CALL, OptionRight.PUT
EXP = date(2024, 3, 15)
DAY = date(2024, 3, 1)


def opt(right: OptionRight, strike: int) -> OptionContract:
    return OptionContract(
        f"XYZ240315{right.value[0].upper()}{strike * 1000:08d}", "XYZ", right, D(strike), EXP
    )


def pos(right: OptionRight, strike: int, qty: int, mark: str = "1") -> MarkedPosition:
    return MarkedPosition(opt(right, strike), D(qty), D(mark))


def test_single_strategies() -> None:
    assert long_option_requirement(D("2.15"), D(1)) == D("215.00")
    # tastytrade cash-secured put: 6 x 11 x 100 = 6,600 (6,150 after the 450 premium)
    assert cash_secured_put_requirement(D(11), D(6)) == 6600
    # credit call spread short 100 / long 105: width 5 x 100 x 2 = 1,000; the debit one: 0
    assert vertical_spread_requirement(CALL, D(100), D(105), D(2)) == 1000
    assert vertical_spread_requirement(CALL, D(105), D(100), D(2)) == 0
    assert vertical_spread_requirement(PUT, D(95), D(90), D(1)) == 500
    assert vertical_spread_requirement(PUT, D(90), D(95), D(1)) == 0
    # iron condor 90/95 puts, 105/110 calls: one side, 500; with 105/115 calls the wider, 1,000
    assert iron_condor_requirement(D(5), D(5), D(1)) == 500
    assert iron_condor_requirement(D(5), D(10), D(1)) == 1000


def test_naked_calls_and_puts() -> None:
    # tastytrade: short 1 MAR 68 call @ 1.50, stock 65: OTM 3; 20% x 65 - 3 = 10 > 10% x 65 = 6.5
    # -> (1.50 + 10) x 100 = 1,150
    assert naked_option_requirement(CALL, D(68), D(65), D("1.50"), D(1)) == 1150
    # deep OTM call 100 with stock 65: 13 - 35 < 6.5 -> (0.10 + 6.5) x 100 = 660
    assert naked_option_requirement(CALL, D(100), D(65), D("0.10"), D(1)) == 660
    # put 60, stock 65, premium 1: OTM 5; 13 - 5 = 8 > 10% x 60 = 6 -> 9 x 100 = 900
    assert naked_option_requirement(PUT, D(60), D(65), D(1), D(1)) == 900
    # deep OTM put 40 @ 0.05: 13 - 25 < 10% x 40 = 4 -> 4.05 x 100 = 405 (the strike, not 6.5)
    assert naked_option_requirement(PUT, D(40), D(65), D("0.05"), D(1)) == 405
    # the margin hold for selling that call: (1,150 - 150 premium) = 1,000 of excess -> 2,000 BP
    assert margin_account_hold(opt(CALL, 68), "sell", D(1), D("1.50"), D(0), D(65)) == 2000
    assert margin_account_hold(opt(CALL, 68), "buy", D(1), D("1.50"), D(0)) == 300
    with pytest.raises(ValueError, match="underlying"):
        margin_account_hold(opt(CALL, 68), "sell", D(1), D("1.50"), D(0))


def test_positions_pair_into_spreads_and_condors() -> None:
    prices = {"XYZ": D(100)}
    condor = [pos(PUT, 90, 1), pos(PUT, 95, -1), pos(CALL, 105, -1), pos(CALL, 110, 1)]
    assert option_requirement(condor, prices, {}) == 500
    wide = [pos(PUT, 90, 2), pos(PUT, 95, -2), pos(CALL, 105, -1), pos(CALL, 115, 1)]
    # one condor 10-wide calls with 5-wide puts: 1,000; one put spread left: 500
    assert option_requirement(wide, prices, {}) == 1500
    # shorts 100 and 110 calls, longs 105 and 120: 100/105 (5) + 110/120 (10) = 1,500,
    # not 100/120 (20) + 110/105 (0) = 2,000
    calls = [pos(CALL, 100, -1), pos(CALL, 110, -1), pos(CALL, 105, 1), pos(CALL, 120, 1)]
    assert option_requirement(calls, prices, {}) == 1500
    # a long option alone needs nothing more (its premium was paid)
    assert option_requirement([pos(CALL, 100, 3)], prices, {}) == 0


def test_covered_and_naked_calls() -> None:
    prices = {"XYZ": D(65)}
    two_calls = [pos(CALL, 68, -2, "1.50")]
    # 150 shares cover one call; the other is naked: 1,150
    assert option_requirement(two_calls, prices, {"XYZ": D(150)}) == 1150
    assert option_requirement(two_calls, prices, {"XYZ": D(200)}) == 0
    # equities in the list are ignored
    assert option_requirement([MarkedPosition(Equity("XYZ"), D(100), D(65))], prices, {}) == 0
    # a short put: naked in a margin account, cash-secured in a cash account
    assert option_requirement([pos(PUT, 60, -1)], prices, {}) == 900
    assert option_requirement([pos(PUT, 60, -1)], prices, {}, cash_account=True) == 6000


def test_cash_account_writes_a_cash_secured_put() -> None:
    put = opt(PUT, 11)
    acct = AccountLedger(
        AccountType.CASH, lambda d: d + timedelta(days=1), cash=CashBalance(D(7000))
    )
    hold = cash_account_hold(put, "sell", D(6), D("0.75"), D(0))
    assert hold == 6600  # 6 x 11 x 100
    acct.place_hold("o1", put, "sell", D(6), hold, as_of=DAY)
    assert acct.buying_power(DAY) == 400
    acct.apply_fill(Fill("x1", "o1", put, "sell", D(6), D("0.75"), DAY, order_done=True))
    # premium 6 x 0.75 x 100 = 450 received (unsettled); 6,600 secures the puts:
    # spendable 7,000 - 6,600 collateral = 400 today; 850 once the premium settles
    assert acct.position(put.symbol).qty == -6
    assert acct.option_collateral() == 6600
    assert acct.buying_power(DAY) == 400
    assert acct.buying_power(DAY + timedelta(days=1)) == 850
    with pytest.raises(InsufficientBuyingPower):
        acct.place_hold("o2", put, "sell", D(1), D(1100), as_of=DAY)


def test_cash_account_covered_calls_only() -> None:
    call = opt(CALL, 68)
    acct = AccountLedger(
        AccountType.CASH,
        lambda d: d + timedelta(days=1),
        cash=CashBalance(D(1000)),
        holdings=[Holding(Equity("XYZ"), PositionState(D(150), D(60)))],
    )
    acct.place_hold("o1", call, "sell", D(1), D(0), as_of=DAY)  # covered by 100 of 150 shares
    acct.apply_fill(Fill("x1", "o1", call, "sell", D(1), D("1.50"), DAY, order_done=True))
    with pytest.raises(InsufficientQuantity):  # the second would need 200 shares
        acct.place_hold("o2", call, "sell", D(1), D(0), as_of=DAY)
    # 100 of the 150 shares cover the call: 50 may be sold, not 51
    with pytest.raises(InsufficientQuantity, match="cannot sell short"):
        acct.place_hold("o3", Equity("XYZ"), "sell", D(51), D(0), as_of=DAY)
    acct.place_hold("o4", Equity("XYZ"), "sell", D(50), D(0), as_of=DAY)

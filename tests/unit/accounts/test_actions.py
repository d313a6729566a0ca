"""Dividends and splits on a position, with the data's own AAPL figures, worked by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from fractions import Fraction

import pytest

from services.accounts.domain.actions import apply_cash_dividend, apply_split
from services.accounts.domain.ledger import PositionState
from services.accounts.domain.money import round_cash
from services.marketdata.domain.corporate_actions import (
    CashDividend,
    Split,
    load_corporate_actions,
)

AAPL_ACTIONS = load_corporate_actions("AAPL")
# AAPL's factor file: row 2014-06-06 has reference price (the close) 645.57; the split row.
AAPL_CLOSE_2014_06_06 = D("645.57")


def test_the_data_has_the_readme_figures() -> None:
    assert Split("AAPL", date(2014, 6, 9), Fraction(7)) in AAPL_ACTIONS
    assert CashDividend("AAPL", date(2013, 5, 9), D("3.05")) in AAPL_ACTIONS


def test_aapl_7_for_1_keeps_the_cost_basis() -> None:
    split = next(a for a in AAPL_ACTIONS if isinstance(a, Split) and a.ex_date.year == 2014)
    # 10 shares @ 600 avg, 7-for-1 -> 70 @ 600/7 = 85.714285..., cost basis 6000.00 unchanged
    e = apply_split("AAPL", PositionState(D(10), D(600)), split.ratio, split.ex_date)
    assert e.position.qty == 70 and e.qty_delta == 60
    assert e.position.avg_entry_price == D(600) / 7
    assert str(e.position.avg_entry_price).startswith("85.714285714285")
    assert round_cash(e.position.cost_basis) == D("6000.00")
    assert abs(e.position.cost_basis - 6000) < D("1e-20")
    assert e.cash_in_lieu == 0 and e.realized_pl == 0 and e.fractional_qty == 0
    assert "7-for-1" in e.explanation and "cost basis $6,000.00 unchanged" in e.explanation


def test_aapl_bought_at_the_pre_split_close() -> None:
    # 10 @ 645.57 = 6455.70; after 7-for-1: 70 @ 645.57 / 7 = 92.224285714...
    pos = PositionState(D(10), AAPL_CLOSE_2014_06_06)
    e = apply_split("AAPL", pos, Fraction(7), date(2014, 6, 9))
    assert e.position.qty == 70
    assert e.position.avg_entry_price.quantize(D("0.000001")) == D("92.224286")
    assert round_cash(e.position.cost_basis) == D("6455.70")


def test_reverse_split_pays_cash_in_lieu_for_the_fraction() -> None:
    # 15 @ 12.34 (basis 185.10), 1-for-10 -> 1.5 new shares @ 123.40
    # keep 1 share (basis 123.40); 1/2 share is paid at the split-adjusted close
    # 9.87 x 10 = 98.70 a new share -> cash in lieu 49.35; its basis 61.70 -> realized -12.35
    e = apply_split(
        "XYZ", PositionState(D(15), D("12.34")), Fraction(1, 10), date(2024, 1, 2), D("9.87")
    )
    assert e.position.qty == 1 and e.position.avg_entry_price == D("123.40")
    assert e.fractional_qty == Fraction(1, 2)
    assert e.cash_in_lieu == D("49.35") and e.realized_pl == D("-12.35")
    # cash in lieu + remaining basis − realized = 49.35 + 123.40 + 12.35 = 185.10, the old basis
    assert e.cash_in_lieu + e.position.cost_basis - e.realized_pl == D("185.10")
    assert "1-for-10" in e.explanation and "cash in lieu" in e.explanation


def test_a_third_of_a_share_is_rounded_to_the_cent() -> None:
    # 1 share @ 30, 4-for-3 -> 4/3: keep 1 @ 22.50; 1/3 share at 40.00 x 3/4 = 30.00 -> 10.00
    # its basis 22.50 / 3 = 7.50 -> realized 2.50
    e = apply_split("XYZ", PositionState(D(1), D(30)), Fraction(4, 3), date(2024, 1, 2), D(40))
    assert e.position.qty == 1 and e.position.avg_entry_price == D("22.50")
    assert e.cash_in_lieu == D("10.00") and e.realized_pl == D("2.50")
    # 5 @ 30 at 3-for-2 -> 7.5: 1/2 share at 45.01 x 2/3 = 30.00666.. -> 15.003333 -> 15.00
    e = apply_split("XYZ", PositionState(D(5), D(30)), Fraction(3, 2), date(2024, 1, 2), D("45.01"))
    assert e.position.qty == 7 and e.cash_in_lieu == D("15.00") and e.realized_pl == D("5.00")


def test_short_positions_split_and_pay_cash_in_lieu() -> None:
    e = apply_split("AAPL", PositionState(D(-10), D(600)), Fraction(7), date(2014, 6, 9))
    assert e.position.qty == -70 and round_cash(e.position.cost_basis) == D("-6000.00")
    # short 15 @ 12.34, 1-for-10, close 9.87: -1 share kept; buying back 1/2 at 98.70 costs
    # 49.35; the half share was shorted for 61.70 -> realized +12.35
    e = apply_split(
        "XYZ", PositionState(D(-15), D("12.34")), Fraction(1, 10), date(2024, 1, 2), D("9.87")
    )
    assert e.position.qty == -1 and e.fractional_qty == Fraction(-1, 2)
    assert e.cash_in_lieu == D("-49.35") and e.realized_pl == D("12.35")


def test_a_position_split_away_entirely_is_closed() -> None:
    # 5 shares, 1-for-10 -> 1/2 share: all cash in lieu at 2.00 x 10 = 20.00 -> 10.00
    e = apply_split("XYZ", PositionState(D(5), D(3)), Fraction(1, 10), date(2024, 1, 2), D(2))
    assert e.position.qty == 0 and e.position.avg_entry_price == 0
    assert e.cash_in_lieu == D("10.00") and e.realized_pl == D("-5.00")


def test_a_fraction_needs_the_pre_split_close() -> None:
    with pytest.raises(ValueError, match="pre-split close"):
        apply_split("XYZ", PositionState(D(15), D(1)), Fraction(1, 10), date(2024, 1, 2))
    with pytest.raises(ValueError, match="positive"):
        apply_split("XYZ", PositionState(D(15), D(1)), Fraction(0), date(2024, 1, 2))


def test_aapl_dividend_of_3_05() -> None:
    div = next(
        a for a in AAPL_ACTIONS if isinstance(a, CashDividend) and a.ex_date == date(2013, 5, 9)
    )
    # 100 shares x 3.05 = 305.00 credited on the ex-date
    e = apply_cash_dividend("AAPL", D(100), div.amount, div.ex_date)
    assert e.cash_delta == D("305.00")
    assert e.explanation == (
        "AAPL cash dividend, ex-date 2013-05-09: 100 shares x $3.05 = $305.00 credited"
    )
    # a short of 100 pays the lender the same 305.00
    short = apply_cash_dividend("AAPL", D(-100), div.amount, div.ex_date)
    assert short.cash_delta == D("-305.00") and "owe the lender" in short.explanation
    # half a share: 0.5 x 3.05 = 1.525 -> 1.53 (half away from zero)
    assert apply_cash_dividend("AAPL", D("0.5"), div.amount, div.ex_date).cash_delta == D("1.53")
    with pytest.raises(ValueError):
        apply_cash_dividend("AAPL", D(1), D(-1), div.ex_date)

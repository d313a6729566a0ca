"""Margin interest on a debit balance: accrued daily on actual/360, posted as an activity.

For the days ``start`` (inclusive) to ``end`` (exclusive), with a debit balance D (cash < 0)
and an annual rate r from configuration:

    interest = |D| x r x days / 360            (actual/360: every calendar day counts, so a
                                                Friday-to-Monday accrual is 3 days)

The charge posted is rounded to the cent (``round_cash``); the unrounded remainder is carried
into the next accrual, so many small daily charges add up to the exact interest instead of
rounding to zero each day. The caller keeps ``carry`` with the account. A credit balance accrues
nothing (and the carry is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from services.accounts.domain.money import ZERO, round_cash

__all__ = ["DAY_COUNT_BASIS", "InterestAccrual", "accrue_margin_interest"]

DAY_COUNT_BASIS = 360


@dataclass(frozen=True)
class InterestAccrual:
    cash_delta: Decimal  # the charge, to the cent, as a negative cash amount (0 if none)
    exact: Decimal  # this period's unrounded interest (positive)
    carry: Decimal  # the unrounded remainder to carry into the next accrual
    days: int
    explanation: str


def accrue_margin_interest(
    cash: Decimal, annual_rate: Decimal, start: date, end: date, carry: Decimal = ZERO
) -> InterestAccrual:
    """Interest on ``cash`` (a debit if negative) for the days ``start`` to ``end``."""
    days = (end - start).days
    if days <= 0:
        raise ValueError(f"the accrual period {start} to {end} is empty")
    if annual_rate < 0:
        raise ValueError("the margin interest rate is not negative")
    debit = max(-cash, ZERO)
    plural = "s" if days != 1 else ""
    period = f"{start} to {end - timedelta(days=1)} ({days} day{plural}, actual/360)"
    if debit == 0:
        text = f"No margin interest for {period}: no debit balance."
        return InterestAccrual(ZERO, ZERO, carry, days, text)
    exact = debit * annual_rate * days / DAY_COUNT_BASIS
    due = exact + carry
    charged = round_cash(due)
    text = (
        f"Margin interest for {period}: you borrowed ${debit:,.2f}; "
        f"${debit:,.2f} x {_percent(annual_rate)} a year / 360 x {days} = ${exact:.6f}"
    )
    if carry:
        text += f", plus ${carry:.6f} carried from earlier rounding"
    text += f"; ${charged:,.2f} charged."
    return InterestAccrual(-charged, exact, due - charged, days, text)


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"

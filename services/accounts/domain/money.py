"""Where money is rounded, and how.

The ledger keeps exact ``Decimal`` everywhere except where a broker turns an amount into cash on
a statement; those postings are rounded to the cent, half away from zero (``ROUND_HALF_UP``):

- a fill's net cash (``qty x price x multiplier``): already whole cents for penny prices and whole
  shares; sub-penny prices and fractional shares round here, as a trade confirmation does;
- a cash dividend per position (``qty x amount per share``), as the paying agent credits it;
- cash in lieu of a fractional share after a split;
- a margin-interest posting (the unrounded remainder is carried to the next posting).

Prices, average entry prices, cost bases, realized and unrealized P&L stay exact (28 significant
digits); display code quantizes them, the ledger does not.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["CENT", "ZERO", "round_cash"]

ZERO = Decimal(0)
CENT = Decimal("0.01")


def round_cash(amount: Decimal) -> Decimal:
    """``amount`` to the cent, ties away from zero (2.675 -> 2.68, -0.005 -> -0.01)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)

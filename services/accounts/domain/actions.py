"""Corporate actions applied to a position: cash dividends and splits.

Cash dividend (on the ex-date; the data has no pay dates): a long position of q shares is
credited ``round_cash(q x amount)``, a short position is charged the same (the short seller pays
the lender). Holders of record are those at the close before the ex-date, so the job applies it
before the ex-date's fills.

Split of ``ratio`` new shares per old share (7 for 7-for-1, 1/10 for 1-for-10):
new qty = old qty x ratio and avg entry price = old avg / ratio, so the cost basis is unchanged
(to 28 significant digits; to the cent after rounding). A fractional new share is not kept: it
is paid as cash in lieu at the split-adjusted close (the last pre-split close / ratio), rounded
to the cent, which realizes P&L on the fraction (cash in lieu − the fraction's cost basis); a
short pays cash in lieu to close its fraction. The position keeps its (split-adjusted) average.
Options on the split underlying are not adjusted here (the OCC's deliverable adjustment).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from fractions import Fraction

from services.accounts.domain.ledger import PositionState
from services.accounts.domain.money import ZERO, round_cash

__all__ = ["DividendEffect", "SplitEffect", "apply_cash_dividend", "apply_split", "split_label"]


@dataclass(frozen=True)
class DividendEffect:
    cash_delta: Decimal  # to the cent; negative for a short position
    explanation: str


@dataclass(frozen=True)
class SplitEffect:
    position: PositionState
    qty_delta: Decimal  # shares added (removed by a reverse split), before cash in lieu
    cash_in_lieu: Decimal  # to the cent: + paid to a long, − paid by a short
    fractional_qty: Fraction  # the new shares settled in cash (signed like the position)
    realized_pl: Decimal
    explanation: str


def apply_cash_dividend(
    symbol: str, qty: Decimal, amount_per_share: Decimal, ex_date: date
) -> DividendEffect:
    """The dividend cash for a position of ``qty`` shares held at the close before ``ex_date``."""
    if amount_per_share < 0:
        raise ValueError("a cash dividend is not negative")
    cash = round_cash(qty * amount_per_share)
    shares = f"{abs(qty).normalize():f}"
    if qty >= 0:
        text = (
            f"{symbol} cash dividend, ex-date {ex_date}: {shares} shares x "
            f"${amount_per_share} = ${cash:,.2f} credited"
        )
    else:
        text = (
            f"{symbol} cash dividend, ex-date {ex_date}: short {shares} shares owe the lender "
            f"{shares} x ${amount_per_share} = ${-cash:,.2f}, charged"
        )
    return DividendEffect(cash, text)


def apply_split(
    symbol: str,
    pos: PositionState,
    ratio: Fraction,
    ex_date: date,
    pre_split_close: Decimal | None = None,
) -> SplitEffect:
    """Split ``pos``; ``pre_split_close`` prices cash in lieu (needed only for a fraction)."""
    if ratio <= 0:
        raise ValueError("a split ratio is positive")
    num, den = Decimal(ratio.numerator), Decimal(ratio.denominator)
    exact = Fraction(pos.qty) * ratio
    whole = Decimal(int(exact))  # toward zero: the fraction has the position's sign
    fraction = exact - int(exact)
    adjusted_avg = pos.avg_entry_price * den / num
    avg = adjusted_avg if whole != 0 else ZERO
    cash = realized = ZERO
    if fraction:
        if pre_split_close is None:
            raise ValueError(f"{symbol}: a fractional share needs the pre-split close")
        price = pre_split_close * den / num
        cash = round_cash(Decimal(fraction.numerator) * price / Decimal(fraction.denominator))
        basis = Decimal(fraction.numerator) * adjusted_avg / Decimal(fraction.denominator)
        realized = cash - basis
    new = replace(pos, qty=whole, avg_entry_price=avg, realized_pl=pos.realized_pl + realized)
    text = (
        f"{symbol} {split_label(ratio)} split, ex-date {ex_date}: "
        f"{pos.qty.normalize():f} shares at ${pos.avg_entry_price:.4f} average became "
        f"{whole.normalize():f} at ${avg:.4f}; cost basis ${round_cash(pos.cost_basis):,.2f}"
    )
    if fraction:
        text += (
            f", of which {fraction} share was paid as ${abs(cash):,.2f} cash in lieu "
            f"({'credited' if cash >= 0 else 'charged'}; realized ${realized:,.2f})"
        )
    else:
        text += " unchanged"
    return SplitEffect(new, whole - pos.qty, cash, fraction, realized, text)


def split_label(ratio: Fraction) -> str:
    """7 -> '7-for-1', 1/10 -> '1-for-10', 3/2 -> '3-for-2'."""
    return f"{ratio.numerator}-for-{ratio.denominator}"

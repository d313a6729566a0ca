"""Splits and cash dividends read from LEAN factor files (``data/corporate_actions/<SYMBOL>.csv``).

Rows are ``date,price_factor,split_factor,reference_price`` sorted by date; a row's factors hold
for prices on and before its date and ``reference_price`` is that date's close. For each row R
and the next row N, the event takes effect (ex-date) on the first trading day after R's date:

- split when ``R.split_factor != N.split_factor``: one old share becomes
  ``N.split_factor / R.split_factor`` new shares. The factors are printed to 7-8 decimals
  (1/28 is written 0.0357143), so the ratio is the simplest fraction within their rounding
  error (1e-5 relative): AAPL 0.0357143 -> 0.25 is exactly 7, not 6.99999720...
- cash dividend when ``R.price_factor != N.price_factor``: per share
  ``R.reference_price * (1 - R.price_factor / N.price_factor)``, rounded half-up to cents.

The last row (2050-12-31) only closes the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from services.marketdata.domain.recorded import default_archive_root

__all__ = [
    "CashDividend",
    "CorporateAction",
    "FactorRow",
    "SessionCalendar",
    "Split",
    "corporate_actions",
    "load_corporate_actions",
    "parse_factor_file",
]

_CENT = Decimal("0.01")
# LEAN prints factors to about 6 significant digits, and not consistently ("0.25", "0.01785710"
# for 1/56, "0.00892857" for 1/112), so a ratio is trusted to 1e-5 relative: still far tighter
# than the gap between real split ratios (2, 3/2, 7, 4, 1/10 ...).
_RATIO_REL_ERROR = Fraction(1, 10**5)
_MAX_CLOSED_DAYS = 10  # the longest NYSE closure (Sept 2001) is 4 weekdays


class SessionCalendar(Protocol):
    def session_bounds(self, d: date) -> tuple[datetime, datetime] | None: ...


@dataclass(frozen=True)
class FactorRow:
    day: date
    price_factor: Decimal
    split_factor: Decimal
    reference_price: Decimal


@dataclass(frozen=True)
class Split:
    symbol: str
    ex_date: date
    ratio: Fraction  # new shares per old share (7 for AAPL's 7-for-1)


@dataclass(frozen=True)
class CashDividend:
    symbol: str
    ex_date: date
    amount: Decimal  # dollars per share, to the cent


CorporateAction = Split | CashDividend


def parse_factor_file(text: str, *, source: str = "<text>") -> list[FactorRow]:
    """Parse a factor file's rows; raises ValueError naming the line on bad input."""
    rows: list[FactorRow] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d, pf, sf, ref = line.strip().split(",")
            day = datetime.strptime(d, "%Y%m%d").date()
            row = FactorRow(day, Decimal(pf), Decimal(sf), Decimal(ref))
        except (ValueError, InvalidOperation) as exc:
            raise ValueError(
                f"{source}:{lineno}: not date,price_factor,split_factor,reference_price"
            ) from exc
        if row.price_factor <= 0 or row.split_factor <= 0:
            raise ValueError(f"{source}:{lineno}: factors must be positive")
        if rows and row.day <= rows[-1].day:
            raise ValueError(f"{source}:{lineno}: rows must be sorted by date")
        rows.append(row)
    return rows


def corporate_actions(
    symbol: str, rows: list[FactorRow], calendar: SessionCalendar
) -> list[CorporateAction]:
    """The splits and cash dividends encoded by ``rows``, by ex-date (dividend first on a tie)."""
    events: list[CorporateAction] = []
    for r, n in zip(rows, rows[1:], strict=False):
        if r.split_factor == n.split_factor and r.price_factor == n.price_factor:
            continue
        ex = _next_session(calendar, r.day)
        if r.price_factor != n.price_factor:
            amount = r.reference_price * (1 - r.price_factor / n.price_factor)
            events.append(CashDividend(symbol, ex, amount.quantize(_CENT, ROUND_HALF_UP)))
        if r.split_factor != n.split_factor:
            events.append(Split(symbol, ex, _split_ratio(r.split_factor, n.split_factor)))
    return events


def load_corporate_actions(
    symbol: str, root: Path | None = None, calendar: SessionCalendar | None = None
) -> list[CorporateAction]:
    """Events of ``symbol`` from the packaged factor file (none if there is no file).

    Without ``calendar`` an NYSE ``MarketCalendar`` spanning the file's dates is built.
    """
    path = (root if root is not None else default_archive_root()) / "corporate_actions"
    path = path / f"{symbol}.csv"
    if not path.is_file():
        return []
    rows = parse_factor_file(path.read_text(encoding="ascii"), source=str(path))
    if calendar is None and len(rows) > 1:
        from services.conventions.calendar import MarketCalendar

        calendar = MarketCalendar(start=rows[0].day, end=rows[-2].day + timedelta(days=30))
    return corporate_actions(symbol, rows, calendar) if calendar is not None else []


def _next_session(calendar: SessionCalendar, after: date) -> date:
    d = after
    for _ in range(_MAX_CLOSED_DAYS):
        d += timedelta(days=1)
        if calendar.session_bounds(d) is not None:
            return d
    raise ValueError(f"no trading session within {_MAX_CLOSED_DAYS} days after {after}")


def _split_ratio(old: Decimal, new: Decimal) -> Fraction:
    exact = Fraction(new) / Fraction(old)
    return _simplest_within(exact, _RATIO_REL_ERROR * exact)


def _simplest_within(x: Fraction, tol: Fraction) -> Fraction:
    """The first continued-fraction convergent of ``x`` within ``tol`` of it."""
    h0, h1, k0, k1 = 0, 1, 1, 0
    rest = x
    while True:
        a = rest.numerator // rest.denominator
        h0, h1 = h1, a * h1 + h0
        k0, k1 = k1, a * k1 + k0
        approx = Fraction(h1, k1)
        if abs(approx - x) <= tol or approx == x:
            return approx
        rest = 1 / (rest - a)

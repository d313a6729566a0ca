"""Monthly paper cycles: the record a Pro+ user graduates to live trading on.

A cycle is a calendar month. It starts at the equity of the previous month's last snapshot (or
the account's opening cash, for the first month) and ends at the equity of its own last
snapshot; it is *complete* once the snapshot of the month's last trading session exists, and
*profitable* when it ended above where it started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

__all__ = ["Cycle", "consecutive_profitable", "last_session_of_month", "monthly_cycles"]


@dataclass(frozen=True)
class Cycle:
    month: str  # YYYY-MM
    start_equity: Decimal
    end_equity: Decimal
    complete: bool

    @property
    def profit_loss(self) -> Decimal:
        return self.end_equity - self.start_equity

    @property
    def profitable(self) -> bool:
        return self.complete and self.end_equity > self.start_equity


def last_session_of_month(year: int, month: int, is_session: Callable[[date], bool]) -> date:
    d = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    while not is_session(d):
        d -= timedelta(days=1)
    return d


def monthly_cycles(
    points: Sequence[tuple[date, Decimal]],
    opening_equity: Decimal,
    is_session: Callable[[date], bool],
) -> list[Cycle]:
    """One cycle per month that has a snapshot, oldest first (``points`` in date order)."""
    last_of: dict[tuple[int, int], tuple[date, Decimal]] = {}
    for d, equity in points:
        last_of[(d.year, d.month)] = (d, equity)
    out: list[Cycle] = []
    start = opening_equity
    for (y, m), (d, equity) in sorted(last_of.items()):
        complete = d >= last_session_of_month(y, m, is_session)
        out.append(Cycle(f"{y:04d}-{m:02d}", start, equity, complete))
        start = equity
    return out


def consecutive_profitable(cycles: Sequence[Cycle]) -> int:
    """How many complete cycles in a row, ending with the latest complete one, were profitable."""
    n = 0
    for c in reversed([c for c in cycles if c.complete]):
        if not c.profitable:
            break
        n += 1
    return n

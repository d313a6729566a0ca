"""End-of-day snapshots, P&L over a window, and the portfolio history series.

A snapshot values every open position at the day's closing price (× multiplier). Because every
cash movement is either external (deposits), a trade, or income (dividends, interest, cash in
lieu), the account's equity decomposes exactly:

    equity = net deposits + realized P&L to date + unrealized P&L + income to date

where unrealized P&L = market value − cost basis, and income to date = dividends − interest (the
rest of the cash identity: cash + cost basis − realized = net deposits + income). So P&L over a
window that starts after the close ``before`` and ends at the close ``after`` is

    total = (equity_after − equity_before) − (deposits_after − deposits_before)
          = Δ realized + Δ unrealized + Δ income

``WindowPnl`` reports all four. ``portfolio_history`` is Alpaca's series: equity per day and the
profit/loss since the base (the close before the first point), net of deposits; the percentage is
that profit/loss over the base equity (``None`` when the base equity is zero).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.accounts.domain.errors import MissingMark
from services.accounts.domain.ledger import Holding
from services.accounts.domain.money import ZERO

__all__ = [
    "EodSnapshot",
    "HistoryPoint",
    "PortfolioHistory",
    "WindowPnl",
    "eod_snapshot",
    "intraday_pl",
    "pnl_for_window",
    "portfolio_history",
]


@dataclass(frozen=True)
class EodSnapshot:
    day: date
    cash: Decimal
    long_market_value: Decimal
    short_market_value: Decimal  # negative
    cost_basis: Decimal  # Σ signed cost basis of open positions (× multiplier)
    realized_pl: Decimal  # to date, every position ever held
    net_deposits: Decimal  # to date: starting cash and deposits, less withdrawals
    maintenance_margin: Decimal = ZERO

    @property
    def equity(self) -> Decimal:
        return self.cash + self.long_market_value + self.short_market_value

    @property
    def unrealized_pl(self) -> Decimal:
        return self.long_market_value + self.short_market_value - self.cost_basis

    @property
    def income(self) -> Decimal:
        """Dividends less interest to date (plus cash-rounding residue)."""
        return self.equity - self.net_deposits - self.realized_pl - self.unrealized_pl


def eod_snapshot(
    day: date,
    cash: Decimal,
    holdings: Iterable[Holding],
    closes: Mapping[str, Decimal],
    net_deposits: Decimal,
    maintenance_margin: Decimal = ZERO,
) -> EodSnapshot:
    """Mark every open holding at ``closes[symbol]``; a missing close raises ``MissingMark``."""
    long_mv = short_mv = basis = realized = ZERO
    for h in holdings:
        realized += h.state.realized_pl
        if h.state.qty == 0:
            continue
        symbol = h.instrument.symbol
        if symbol not in closes:
            raise MissingMark(symbol)
        mv = h.marked(closes[symbol]).market_value
        if mv >= 0:
            long_mv += mv
        else:
            short_mv += mv
        basis += h.cost_basis
    return EodSnapshot(
        day, cash, long_mv, short_mv, basis, realized, net_deposits, maintenance_margin
    )


@dataclass(frozen=True)
class WindowPnl:
    start: date  # first day in the window
    end: date  # last day in the window
    total: Decimal
    realized: Decimal
    unrealized_change: Decimal
    income: Decimal  # dividends − interest in the window


def pnl_for_window(before: EodSnapshot, after: EodSnapshot) -> WindowPnl:
    """P&L from the close of ``before.day`` to the close of ``after.day``."""
    if after.day < before.day:
        raise ValueError("the window ends before it starts")
    total = (after.equity - before.equity) - (after.net_deposits - before.net_deposits)
    realized = after.realized_pl - before.realized_pl
    unrealized = after.unrealized_pl - before.unrealized_pl
    return WindowPnl(
        start=before.day,
        end=after.day,
        total=total,
        realized=realized,
        unrealized_change=unrealized,
        income=total - realized - unrealized,
    )


@dataclass(frozen=True)
class HistoryPoint:
    day: date
    equity: Decimal
    profit_loss: Decimal
    profit_loss_pct: Decimal | None
    cashflow: Decimal  # deposits (−withdrawals) that day


@dataclass(frozen=True)
class PortfolioHistory:
    base_value: Decimal
    points: tuple[HistoryPoint, ...]


def portfolio_history(
    snapshots: Sequence[EodSnapshot], base: EodSnapshot | None = None
) -> PortfolioHistory:
    """Equity per day; P&L since ``base`` (default: the first snapshot) net of deposits."""
    ordered = sorted(snapshots, key=lambda s: s.day)
    if not ordered:
        return PortfolioHistory(base.equity if base else ZERO, ())
    ref = base if base is not None else ordered[0]
    points: list[HistoryPoint] = []
    prev_deposits = ref.net_deposits
    for s in ordered:
        pl = (s.equity - ref.equity) - (s.net_deposits - ref.net_deposits)
        pct = pl / ref.equity if ref.equity else None
        points.append(HistoryPoint(s.day, s.equity, pl, pct, s.net_deposits - prev_deposits))
        prev_deposits = s.net_deposits
    return PortfolioHistory(ref.equity, tuple(points))


def intraday_pl(
    qty: Decimal,
    avg_entry_price: Decimal,
    mark: Decimal,
    at_close: tuple[Decimal, Decimal, Decimal | None] | None,
    multiplier: int = 1,
) -> Decimal:
    """A position's unrealized P&L since the previous close. `at_close`: its qty, mark and
    average cost at the close. What is still held of that is counted from the close's mark,
    what was added since from what it cost (the cost now less the cost of what was kept, or,
    without the close's average, the position's average). Held on the other side at the
    close, or not at all: all of it from its cost."""
    if at_close is None or at_close[0] * qty <= 0:
        return qty * (mark - avg_entry_price) * multiplier
    held, last, avg_then = at_close
    kept = min(abs(held), abs(qty)) * (1 if qty > 0 else -1)
    added = qty - kept
    added_cost = (
        qty * avg_entry_price - kept * avg_then if avg_then is not None else added * avg_entry_price
    )
    return (kept * (mark - last) + added * mark - added_cost) * multiplier

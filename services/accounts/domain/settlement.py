"""Settled and unsettled cash (T+1), so a cash account never spends money it does not have yet.

US equities and listed options settle one trading day after the trade (T+1, since 2024-05-28 for
equities; options always have). A trade's cash is posted at once to the account's cash, as
Alpaca reports ``cash``, but stays *pending* until its settlement date:

- a sale's proceeds (positive) are not spendable by a cash account until they settle;
- a purchase's cost (negative) is committed at once: it reduces what can be spent immediately.

So a cash account's spendable cash on day ``d`` is
``settled(d) + Σ pending purchase costs − Σ holds``, where ``settled(d)`` counts every entry whose
settlement date is ``<= d``. Dividends, interest and cash in lieu post settled.

The calendar stays outside: ``next_trading_day(d)`` is the first trading day after ``d``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from services.accounts.domain.money import ZERO

__all__ = ["CashBalance", "NextTradingDay", "PendingSettlement", "settlement_date"]

NextTradingDay = Callable[[date], date]
SETTLEMENT_DAYS = 1


def settlement_date(trade_date: date, next_trading_day: NextTradingDay) -> date:
    """The trade's settlement date: ``SETTLEMENT_DAYS`` trading days after ``trade_date``."""
    d = trade_date
    for _ in range(SETTLEMENT_DAYS):
        d = next_trading_day(d)
    if d <= trade_date:
        raise ValueError(f"next_trading_day({trade_date}) returned {d}, not a later day")
    return d


@dataclass(frozen=True)
class PendingSettlement:
    amount: Decimal  # signed: + sale proceeds, − purchase cost
    settles_on: date


@dataclass(frozen=True)
class CashBalance:
    """Cash as settled money plus trades not yet settled. Immutable: operations return a new one."""

    settled: Decimal = ZERO
    pending: tuple[PendingSettlement, ...] = field(default=())

    @property
    def total(self) -> Decimal:
        """The account's cash as a broker reports it (settled or not)."""
        return self.settled + sum((p.amount for p in self.pending), ZERO)

    def settled_as_of(self, day: date) -> Decimal:
        """Settled cash on ``day``: entries settling on or before ``day`` count as settled."""
        due = sum((p.amount for p in self.pending if p.settles_on <= day), ZERO)
        return self.settled + due

    def unsettled_proceeds(self, day: date) -> Decimal:
        """Sale proceeds that have not settled by ``day`` (a cash account cannot spend them)."""
        return sum((p.amount for p in self.pending if p.settles_on > day and p.amount > 0), ZERO)

    def spendable(self, day: date) -> Decimal:
        """What a cash account may commit on ``day`` before holds: settled cash minus the cost
        of purchases that have not settled yet (those are already spent)."""
        return self.total - self.unsettled_proceeds(day)

    def post_trade(
        self, amount: Decimal, trade_date: date, next_trading_day: NextTradingDay
    ) -> CashBalance:
        """Post a trade's cash; it settles on the trade's settlement date."""
        if amount == 0:
            return self
        entry = PendingSettlement(amount, settlement_date(trade_date, next_trading_day))
        return CashBalance(self.settled, (*self.pending, entry))

    def post_settled(self, amount: Decimal) -> CashBalance:
        """Post cash that is settled at once (deposit, dividend, interest, cash in lieu)."""
        return CashBalance(self.settled + amount, self.pending)

    def settle(self, through: date) -> CashBalance:
        """Fold every entry settling on or before ``through`` into settled cash."""
        due = tuple(p for p in self.pending if p.settles_on <= through)
        if not due:
            return self
        rest = tuple(p for p in self.pending if p.settles_on > through)
        return CashBalance(self.settled + sum((p.amount for p in due), ZERO), rest)

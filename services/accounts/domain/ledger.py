"""Cash and position arithmetic: exact Decimal, average-cost basis (as Alpaca reports it).

Realized P&L uses the average entry price: selling q shares of a long position realizes
q × (price − avg_entry_price). A position that crosses zero starts a new basis at the fill price.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from services.accounts.domain.instruments import Instrument, MarkedPosition

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class PositionState:
    qty: Decimal = ZERO
    avg_entry_price: Decimal = ZERO
    realized_pl: Decimal = ZERO

    @property
    def cost_basis(self) -> Decimal:
        return self.qty * self.avg_entry_price


@dataclass(frozen=True)
class Holding:
    """A position with what it is in: ``cost_basis`` and values carry the contract multiplier."""

    instrument: Instrument
    state: PositionState

    @property
    def cost_basis(self) -> Decimal:
        return self.state.cost_basis * self.instrument.multiplier

    def marked(self, mark: Decimal) -> MarkedPosition:
        return MarkedPosition(self.instrument, self.state.qty, mark)


@dataclass(frozen=True)
class FillEffect:
    """What one fill does to the account: the cash change and the new position."""

    cash_delta: Decimal
    position: PositionState
    realized_pl: Decimal


def apply_fill(
    pos: PositionState, side: str, qty: Decimal, price: Decimal, multiplier: int = 1
) -> FillEffect:
    """Apply a buy or sell of `qty` at `price` (× contract multiplier) to a position."""
    if qty <= 0:
        raise ValueError("fill qty must be positive")
    signed = qty if side == "buy" else -qty
    notional = qty * price * multiplier
    cash_delta = -notional if side == "buy" else notional
    realized = ZERO
    new_qty = pos.qty + signed
    if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
        # opening or adding: weighted average entry price
        total_cost = pos.qty * pos.avg_entry_price + signed * price
        avg = total_cost / new_qty if new_qty != 0 else ZERO
    else:
        closing = min(abs(signed), abs(pos.qty))
        direction = 1 if pos.qty > 0 else -1
        realized = (price - pos.avg_entry_price) * closing * direction * multiplier
        if new_qty == 0:
            avg = ZERO
        elif (new_qty > 0) == (pos.qty > 0):
            avg = pos.avg_entry_price  # reducing keeps the basis
        else:
            avg = price  # crossed through zero: the remainder opened at this price
    new_pos = replace(pos, qty=new_qty, avg_entry_price=avg, realized_pl=pos.realized_pl + realized)
    return FillEffect(cash_delta=cash_delta, position=new_pos, realized_pl=realized)


def buying_power_cash_account(cash: Decimal, held: Decimal) -> Decimal:
    """A cash account spends only settled, unreserved cash."""
    return max(cash - held, ZERO)


def market_value(qty: Decimal, mark: Decimal | None, multiplier: int = 1) -> Decimal:
    return ZERO if mark is None else qty * mark * multiplier

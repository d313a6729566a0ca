"""Buying-power holds: what an accepted order reserves until it fills or is canceled.

A hold reserves ``amount`` of buying power (a cash account: dollars of cash; a margin account:
Reg-T buying-power dollars, see ``margin``) and, for a sell, ``qty`` of the position. A fill of q
shrinks the hold in proportion (amount x (qty − q) / qty) so what is left covers the rest of the
order; a done order (filled, canceled, expired) releases it all.

``cash_account_hold`` and ``margin_account_hold`` give the amount for a single-leg order at a price
(the limit, or the quote the market order is expected to pay, with any buffer the caller wants).
Only the part of an order that opens or adds to a position needs buying power: closing frees it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from services.accounts.domain.instruments import Instrument, OptionContract, OptionRight
from services.accounts.domain.margin import REG_T, MarginRates, hold_for_requirement
from services.accounts.domain.money import ZERO
from services.accounts.domain.option_margin import naked_option_requirement

__all__ = ["BuyingPowerHold", "cash_account_hold", "margin_account_hold", "opening_qty"]


@dataclass(frozen=True)
class BuyingPowerHold:
    order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal  # the order's unfilled quantity
    amount: Decimal  # buying power reserved

    def after_fill(self, filled: Decimal) -> BuyingPowerHold | None:
        """The hold left after ``filled`` of the order filled (None once nothing is left)."""
        remaining = self.qty - filled
        if remaining <= 0:
            return None
        return replace(self, qty=remaining, amount=self.amount * remaining / self.qty)


def opening_qty(side: str, qty: Decimal, position_qty: Decimal) -> Decimal:
    """The part of an order that opens or adds (a buy beyond a short, a sell beyond a long)."""
    closable = max(-position_qty, ZERO) if side == "buy" else max(position_qty, ZERO)
    return max(qty - closable, ZERO)


def cash_account_hold(
    instrument: Instrument, side: str, qty: Decimal, price: Decimal, position_qty: Decimal
) -> Decimal:
    """Cash a cash account reserves: a buy's cost; a put sold to open is secured by its strike."""
    if side == "buy":
        return qty * price * instrument.multiplier
    opening = opening_qty(side, qty, position_qty)
    if isinstance(instrument, OptionContract) and instrument.right is OptionRight.PUT:
        return instrument.strike * instrument.multiplier * opening
    return ZERO


def margin_account_hold(
    instrument: Instrument,
    side: str,
    qty: Decimal,
    price: Decimal,
    position_qty: Decimal,
    underlying_price: Decimal | None = None,
    rates: MarginRates = REG_T,
) -> Decimal:
    """Reg-T buying power an order reserves in a margin account.

    Equity, opening part: its notional (it adds initial-rate x notional of requirement). Option
    bought to open: premium / initial rate (options have no loan value). Option sold to open:
    the naked requirement less the premium it brings in, / initial rate; needs the underlying.
    """
    opening = opening_qty(side, qty, position_qty)
    if opening == 0:
        return ZERO
    notional = opening * price * instrument.multiplier
    if not isinstance(instrument, OptionContract):
        return notional
    if side == "buy":
        return hold_for_requirement(notional, rates)
    if underlying_price is None:
        raise ValueError(f"{instrument.symbol}: selling to open needs the underlying's price")
    req = naked_option_requirement(
        instrument.right, instrument.strike, underlying_price, price, opening, instrument.multiplier
    )
    return hold_for_requirement(max(req - notional, ZERO), rates)

"""The price increments (ticks) an order's limit and stop prices must be in.

US equities follow Reg NMS Rule 612, the sub-penny rule: at $1.00 or more a price is in whole
cents, below $1.00 in $0.0001. Alpaca refuses an order priced otherwise (422, "sub-penny
increment does not fulfill minimum pricing criteria"; research/alpaca.md §2), so MBT does too:
a strategy learns it on paper, not on its first live order. Option premiums (and a multi-leg
order's net price) are in whole cents: the exchanges' finest option tick is $0.01 (the penny
classes; others trade in $0.05 and $0.10, which MBT does not enforce).
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["CENT", "price_increment", "off_tick"]

CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")


def price_increment(price: Decimal, option: bool) -> Decimal:
    """The smallest step a price of this size may take (option: premium or net price)."""
    if option or abs(price) >= 1:
        return CENT
    return SUB_DOLLAR_TICK


def off_tick(price: Decimal, option: bool) -> Decimal | None:
    """The increment `price` breaks, or None when it is a whole number of ticks."""
    tick = price_increment(price, option)
    return None if price % tick == 0 else tick

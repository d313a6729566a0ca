"""Reg-T margin for equities and the account's buying power (BRIEF §4 rule 9).

Everything here is derived from the positions at their marks; nothing is stored.

- ``equity`` (as Alpaca reports it) = cash + long market value + short market value, where short
  market value is negative and options count at their marks.
- ``margin equity`` = cash + equity long market value + equity short market value: options count
  nothing (long options have no loan value; short options carry their value in their
  requirement, see ``option_margin``).
- ``initial margin`` = 50% x Σ |equity market value| + option requirement;
  ``maintenance margin`` = 25% x Σ |equity market value| + option requirement (FINRA 4210's 25%
  for longs, applied to shorts too; brokers' house rules may be higher).
- ``excess equity`` = margin equity − initial margin.
- Reg-T ``buying power`` = max(0, excess equity / 50% − held), i.e. 2x excess equity less the
  open orders' holds. Margin-account holds are in these buying-power dollars: an equity order
  holds its notional, an order for something not marginable (options) holds its requirement / 50%
  (``hold_for_requirement``).
- ``options buying power`` (non-marginable) = buying power x 50%: what an options order may pay.
- ``margin call`` = max(0, maintenance margin − margin equity).

A cash account: buying power = max(0, spendable cash − held − option collateral), where spendable
cash excludes unsettled sale proceeds (``settlement``) and option collateral is the cash securing
short puts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.accounts.domain.instruments import (
    Equity,
    MarkedPosition,
    OptionContract,
    OptionRight,
)
from services.accounts.domain.money import ZERO
from services.conventions.occ import is_occ_symbol, parse_occ

__all__ = [
    "MarginRates",
    "MarginSummary",
    "REG_T",
    "cash_account_buying_power",
    "hold_for_requirement",
    "margin_summary",
    "mark_positions",
    "stock_qty_by_symbol",
]


@dataclass(frozen=True)
class MarginRates:
    initial: Decimal = Decimal("0.50")
    maintenance: Decimal = Decimal("0.25")


REG_T = MarginRates()


@dataclass(frozen=True)
class MarginSummary:
    cash: Decimal
    long_market_value: Decimal
    short_market_value: Decimal  # negative, as Alpaca reports it
    margin_equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    held_for_orders: Decimal
    rates: MarginRates = REG_T

    @property
    def equity(self) -> Decimal:
        return self.cash + self.long_market_value + self.short_market_value

    @property
    def excess_equity(self) -> Decimal:
        return self.margin_equity - self.initial_margin

    @property
    def buying_power(self) -> Decimal:
        """Reg-T buying power: max(0, excess equity / initial rate − held)."""
        return max(self.excess_equity / self.rates.initial - self.held_for_orders, ZERO)

    @property
    def options_buying_power(self) -> Decimal:
        return self.buying_power * self.rates.initial

    @property
    def margin_call(self) -> Decimal:
        return max(self.maintenance_margin - self.margin_equity, ZERO)


def margin_summary(
    cash: Decimal,
    positions: Iterable[MarkedPosition],
    option_requirement: Decimal,
    held: Decimal,
    rates: MarginRates = REG_T,
) -> MarginSummary:
    """Derive the margin figures from cash, marked positions and the option requirement."""
    long_mv = short_mv = equity_gross = equity_net = ZERO
    for p in positions:
        mv = p.market_value
        if mv >= 0:
            long_mv += mv
        else:
            short_mv += mv
        if isinstance(p.instrument, Equity):
            equity_net += mv
            equity_gross += abs(mv)
    return MarginSummary(
        cash=cash,
        long_market_value=long_mv,
        short_market_value=short_mv,
        margin_equity=cash + equity_net,
        initial_margin=rates.initial * equity_gross + option_requirement,
        maintenance_margin=rates.maintenance * equity_gross + option_requirement,
        held_for_orders=held,
        rates=rates,
    )


def hold_for_requirement(requirement: Decimal, rates: MarginRates = REG_T) -> Decimal:
    """A margin-account hold, in buying-power dollars, for an order adding ``requirement``."""
    return requirement / rates.initial


def cash_account_buying_power(
    spendable: Decimal, held: Decimal, option_collateral: Decimal = ZERO
) -> Decimal:
    return max(spendable - held - option_collateral, ZERO)


def stock_qty_by_symbol(positions: Iterable[MarkedPosition]) -> Mapping[str, Decimal]:
    """Signed share counts per equity symbol (long shares cover short calls)."""
    out: dict[str, Decimal] = {}
    for p in positions:
        if isinstance(p.instrument, Equity):
            out[p.instrument.symbol] = out.get(p.instrument.symbol, ZERO) + p.qty
    return out


def mark_positions(rows: Iterable[Any], marks: Mapping[str, Decimal]) -> list[MarkedPosition]:
    """Positions (symbol, qty, avg_entry_price) marked at `marks`, else at average cost."""
    marked = []
    for r in rows:
        instrument: Equity | OptionContract
        if is_occ_symbol(r.symbol):
            c = parse_occ(r.symbol)
            instrument = OptionContract(
                r.symbol,
                c.root,
                OptionRight.CALL if c.is_call else OptionRight.PUT,
                c.strike,
                c.expiry,
            )
        else:
            instrument = Equity(r.symbol)
        mark = marks.get(r.symbol, Decimal(r.avg_entry_price))
        marked.append(MarkedPosition(instrument, Decimal(r.qty), mark))
    return marked

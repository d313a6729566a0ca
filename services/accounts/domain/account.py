"""The account aggregate: cash (settled or not), holdings, holds and the fills already applied.

One ``AccountLedger`` is loaded per command, changed by one method, and saved with the
``activities`` it appended (the rows the unit of work writes). It enforces:

- each fill is applied once (by execution id; the service also keeps a unique key);
- a cash account never shorts a stock, and spends only settled, unreserved cash (``settlement``);
- a hold is placed only when the account's buying power covers it (``margin``, ``holds``).

Fill cash is posted rounded to the cent (``money``) on the trade date and settles T+1; dividends,
cash in lieu and interest post settled. Nothing derived (equity, buying power, margin) is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from services.accounts.domain import actions
from services.accounts.domain.errors import (
    InsufficientBuyingPower,
    InsufficientQuantity,
    MissingMark,
)
from services.accounts.domain.holds import BuyingPowerHold, opening_qty
from services.accounts.domain.instruments import (
    Equity,
    Instrument,
    MarkedPosition,
    OptionContract,
    OptionRight,
)
from services.accounts.domain.interest import accrue_margin_interest
from services.accounts.domain.ledger import Holding, PositionState, apply_fill
from services.accounts.domain.margin import (
    REG_T,
    MarginRates,
    MarginSummary,
    cash_account_buying_power,
    margin_summary,
    stock_qty_by_symbol,
)
from services.accounts.domain.money import ZERO, round_cash
from services.accounts.domain.option_margin import option_requirement
from services.accounts.domain.settlement import CashBalance, NextTradingDay
from services.accounts.domain.valuation import EodSnapshot, eod_snapshot

__all__ = ["AccountLedger", "AccountType", "Activity", "ActivityType", "Fill"]


class AccountType(StrEnum):
    CASH = "cash"
    MARGIN = "margin"


class ActivityType(StrEnum):
    """Alpaca's activity codes, lower-cased as the accounts table stores them."""

    FILL = "fill"
    DEPOSIT = "csd"
    DIVIDEND = "div"
    SPLIT = "split"
    CASH_IN_LIEU = "cil"
    INTEREST = "int"


@dataclass(frozen=True)
class Activity:
    activity_type: ActivityType
    day: date
    amount: Decimal  # the cash posted (signed)
    description: str
    symbol: str | None = None
    qty: Decimal | None = None  # signed change of the position
    price: Decimal | None = None
    ref_id: str | None = None  # the execution id of a fill


@dataclass(frozen=True)
class Fill:
    execution_id: str
    order_id: str
    instrument: Instrument
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal
    trade_date: date
    order_done: bool = False  # the order is now filled/canceled/expired: release its hold
    explanation: str = ""


class AccountLedger:
    def __init__(
        self,
        account_type: AccountType,
        next_trading_day: NextTradingDay,
        *,
        cash: CashBalance | None = None,
        holdings: Iterable[Holding] = (),
        holds: Iterable[BuyingPowerHold] = (),
        applied_executions: Iterable[str] = (),
        net_deposits: Decimal = ZERO,
        interest_carry: Decimal = ZERO,
        rates: MarginRates = REG_T,
    ) -> None:
        self.account_type = account_type
        self.next_trading_day = next_trading_day
        self.cash = cash if cash is not None else CashBalance()
        self.holdings = {h.instrument.symbol: h for h in holdings}
        self.holds = {h.order_id: h for h in holds}
        self.applied_executions = set(applied_executions)
        self.net_deposits = net_deposits
        self.interest_carry = interest_carry
        self.rates = rates
        self.activities: list[Activity] = []

    # -- derived ---------------------------------------------------------------------------

    def position(self, symbol: str) -> PositionState:
        h = self.holdings.get(symbol)
        return h.state if h is not None else PositionState()

    @property
    def held_amount(self) -> Decimal:
        return sum((h.amount for h in self.holds.values()), ZERO)

    def held_qty(self, symbol: str) -> Decimal:
        """Shares (contracts) of ``symbol`` reserved by open sell orders."""
        return sum(
            (h.qty for h in self.holds.values() if h.symbol == symbol and h.side == "sell"), ZERO
        )

    def marked(self, marks: Mapping[str, Decimal]) -> list[MarkedPosition]:
        """Open positions at ``marks``; raises ``MissingMark`` for a position without one."""
        out = []
        for sym, h in self.holdings.items():
            if h.state.qty != 0:
                if sym not in marks:
                    raise MissingMark(sym)
                out.append(h.marked(marks[sym]))
        return out

    def margin(self, marks: Mapping[str, Decimal]) -> MarginSummary:
        """Reg-T figures at ``marks`` (which must price every position and naked underlying)."""
        marked = self.marked(marks)
        req = option_requirement(marked, marks, stock_qty_by_symbol(marked))
        return margin_summary(self.cash.total, marked, req, self.held_amount, self.rates)

    def option_collateral(self, marks: Mapping[str, Decimal] | None = None) -> Decimal:
        """Cash securing a cash account's short options (short puts: strike x 100)."""
        marks = marks or {}
        opts = [
            h.marked(marks.get(sym, h.state.avg_entry_price))
            for sym, h in self.holdings.items()
            if isinstance(h.instrument, OptionContract) and h.state.qty < 0
        ]
        if not opts:
            return ZERO
        stock = {
            s: h.state.qty for s, h in self.holdings.items() if isinstance(h.instrument, Equity)
        }
        return option_requirement(opts, marks, stock, cash_account=True)

    def buying_power(self, as_of: date, marks: Mapping[str, Decimal] | None = None) -> Decimal:
        """Cash account: spendable settled cash less holds and collateral. Margin: Reg-T."""
        if self.account_type is AccountType.CASH:
            spendable = self.cash.spendable(as_of)
            return cash_account_buying_power(
                spendable, self.held_amount, self.option_collateral(marks)
            )
        if marks is None:
            raise ValueError("a margin account's buying power needs marks")
        return self.margin(marks).buying_power

    def snapshot(self, day: date, closes: Mapping[str, Decimal]) -> EodSnapshot:
        maintenance = ZERO
        if self.account_type is AccountType.MARGIN:
            maintenance = self.margin(closes).maintenance_margin
        return eod_snapshot(
            day, self.cash.total, self.holdings.values(), closes, self.net_deposits, maintenance
        )

    # -- commands --------------------------------------------------------------------------

    def deposit(self, amount: Decimal, day: date, description: str = "Cash deposit") -> Activity:
        if amount <= 0:
            raise ValueError("a deposit is positive")
        amount = round_cash(amount)
        self.cash = self.cash.post_settled(amount)
        self.net_deposits += amount
        return self._record(Activity(ActivityType.DEPOSIT, day, amount, description))

    def place_hold(
        self,
        order_id: str,
        instrument: Instrument,
        side: str,
        qty: Decimal,
        amount: Decimal,
        *,
        as_of: date,
        marks: Mapping[str, Decimal] | None = None,
    ) -> BuyingPowerHold:
        """Reserve ``amount`` of buying power (and, for a sell, the position) for an order.

        Idempotent by ``order_id``. Raises ``InsufficientQuantity`` when a cash account would
        short a stock or write an uncovered call, ``InsufficientBuyingPower`` when ``amount``
        exceeds the buying power.
        """
        if order_id in self.holds:
            return self.holds[order_id]
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, not {side!r}")
        if qty <= 0 or amount < 0:
            raise ValueError("a hold needs a positive qty and a non-negative amount")
        symbol = instrument.symbol
        if self.account_type is AccountType.CASH and side == "sell":
            free = self.position(symbol).qty - self.held_qty(symbol)
            if isinstance(instrument, Equity):
                free -= self._shares_covering_calls(symbol)
            opening = opening_qty(side, qty, free)
            if opening > 0:
                self._check_cash_account_short(instrument, qty, free, opening)
        available = self.buying_power(as_of, marks)
        if amount > available:
            raise InsufficientBuyingPower(amount, available)
        hold = BuyingPowerHold(order_id, symbol, side, qty, amount)
        self.holds[order_id] = hold
        return hold

    def _check_cash_account_short(
        self, instrument: Instrument, qty: Decimal, free: Decimal, opening: Decimal
    ) -> None:
        if not isinstance(instrument, OptionContract):
            raise InsufficientQuantity(instrument.symbol, qty, free)
        if instrument.right is OptionRight.CALL:
            u = instrument.underlying
            shares = self.position(u).qty - self.held_qty(u)
            needed = self._shares_covering_calls(u) + opening * instrument.multiplier
            if shares < needed:
                raise InsufficientQuantity(instrument.symbol, qty, free)

    def _shares_covering_calls(self, underlying: str) -> Decimal:
        """Shares of ``underlying`` that cover the calls a cash account has written on it."""
        return sum(
            (
                -h.state.qty * h.instrument.multiplier
                for h in self.holdings.values()
                if isinstance(h.instrument, OptionContract)
                and h.instrument.underlying == underlying
                and h.instrument.right is OptionRight.CALL
                and h.state.qty < 0
            ),
            ZERO,
        )

    def release_hold(self, order_id: str) -> BuyingPowerHold | None:
        """Release an order's hold (canceled, expired, rejected). Idempotent: None if none."""
        return self.holds.pop(order_id, None)

    def apply_fill(self, fill: Fill) -> Activity | None:
        """Apply a fill once: position, cash (T+1), the order's hold. None for a replay."""
        if fill.execution_id in self.applied_executions:
            return None
        symbol = fill.instrument.symbol
        pos = self.position(symbol)
        mult = fill.instrument.multiplier
        effect = apply_fill(pos, fill.side, fill.qty, fill.price, mult)
        if (
            self.account_type is AccountType.CASH
            and isinstance(fill.instrument, Equity)
            and effect.position.qty < 0
        ):
            raise InsufficientQuantity(symbol, fill.qty, pos.qty)
        cash = round_cash(effect.cash_delta)
        self.cash = self.cash.post_trade(cash, fill.trade_date, self.next_trading_day)
        self.holdings[symbol] = Holding(fill.instrument, effect.position)
        self.applied_executions.add(fill.execution_id)
        hold = self.holds.get(fill.order_id)
        if hold is not None:
            left = None if fill.order_done else hold.after_fill(fill.qty)
            if left is None:
                del self.holds[fill.order_id]
            else:
                self.holds[fill.order_id] = left
        signed = fill.qty if fill.side == "buy" else -fill.qty
        text = fill.explanation or (
            f"{fill.side} {fill.qty.normalize():f} {symbol} at ${fill.price}"
        )
        return self._record(
            Activity(
                ActivityType.FILL,
                fill.trade_date,
                cash,
                text,
                symbol,
                signed,
                fill.price,
                fill.execution_id,
            )
        )

    def apply_cash_dividend(
        self, symbol: str, amount_per_share: Decimal, ex_date: date
    ) -> Activity | None:
        """Credit (or charge a short) the dividend on the position held into ``ex_date``."""
        h = self.holdings.get(symbol)
        if h is None or h.state.qty == 0 or not isinstance(h.instrument, Equity):
            return None  # options receive no dividends
        pos = h.state
        effect = actions.apply_cash_dividend(symbol, pos.qty, amount_per_share, ex_date)
        self.cash = self.cash.post_settled(effect.cash_delta)
        return self._record(
            Activity(
                ActivityType.DIVIDEND,
                ex_date,
                effect.cash_delta,
                effect.explanation,
                symbol,
                None,
                amount_per_share,
            )
        )

    def apply_split(
        self, symbol: str, ratio: Fraction, ex_date: date, pre_split_close: Decimal | None = None
    ) -> list[Activity]:
        """Split the position; a fractional share is paid as cash in lieu (see ``actions``)."""
        h = self.holdings.get(symbol)
        if h is None or h.state.qty == 0:
            return []
        if not isinstance(h.instrument, Equity):
            raise ValueError(f"{symbol}: only stock splits; the OCC adjusts option contracts")
        effect = actions.apply_split(symbol, h.state, ratio, ex_date, pre_split_close)
        self.holdings[symbol] = replace(h, state=effect.position)
        out = [
            self._record(
                Activity(
                    ActivityType.SPLIT, ex_date, ZERO, effect.explanation, symbol, effect.qty_delta
                )
            )
        ]
        if effect.fractional_qty:
            self.cash = self.cash.post_settled(effect.cash_in_lieu)
            frac = effect.fractional_qty
            label = actions.split_label(ratio)
            text = f"{symbol} cash in lieu of {frac} share after the {label} split"
            out.append(
                self._record(
                    Activity(ActivityType.CASH_IN_LIEU, ex_date, effect.cash_in_lieu, text, symbol)
                )
            )
        return out

    def accrue_interest(self, annual_rate: Decimal, start: date, end: date) -> Activity | None:
        """Margin interest on the settled debit balance at ``start`` for ``start``..``end − 1``."""
        if self.account_type is not AccountType.MARGIN:
            return None
        acc = accrue_margin_interest(
            self.cash.settled_as_of(start), annual_rate, start, end, self.interest_carry
        )
        self.interest_carry = acc.carry
        if acc.cash_delta == 0:
            return None
        self.cash = self.cash.post_settled(acc.cash_delta)
        return self._record(Activity(ActivityType.INTEREST, end, acc.cash_delta, acc.explanation))

    def settle(self, through: date) -> None:
        self.cash = self.cash.settle(through)

    def _record(self, activity: Activity) -> Activity:
        self.activities.append(activity)
        return activity

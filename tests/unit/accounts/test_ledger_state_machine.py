"""Random fills, holds, cancels, replays, dividends, splits (and, on margin, shorts, marks and
interest) against the account aggregate, checked against an exact ``Fraction`` reference model.

Invariants after every step:
- cash = deposits + Σ fill cash + Σ dividends + Σ cash in lieu + Σ interest, to the cent exactly
  (prices are whole cents and quantities whole, so each fill's cash is exact);
- cash + Σ cost basis − Σ realized P&L = deposits + dividends + interest (the fill ledger
  reconciles), to the cent;
- each position's qty, cost basis and realized P&L match the reference model;
- holds are never negative; a replayed execution id changes nothing;
- cash account: no short stock, sell holds never exceed the shares, and spendable cash minus
  holds minus put collateral is never negative (fills come in at or inside their limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction as F

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.accounts.domain.account import AccountLedger, AccountType, ActivityType, Fill
from services.accounts.domain.errors import InsufficientBuyingPower, InsufficientQuantity
from services.accounts.domain.holds import cash_account_hold, margin_account_hold
from services.accounts.domain.instruments import (
    Equity,
    Instrument,
    OptionContract,
    OptionRight,
)
from services.accounts.domain.money import ZERO, round_cash

EXPIRY = date(2030, 1, 18)
INSTRUMENTS: dict[str, Instrument] = {
    "AAPL": Equity("AAPL"),
    "IBM": Equity("IBM"),
    "SPY": Equity("SPY"),
    "SPYC": OptionContract("SPY300118C00050000", "SPY", OptionRight.CALL, D(50), EXPIRY),
    "SPYP": OptionContract("SPY300118P00040000", "SPY", OptionRight.PUT, D(40), EXPIRY),
}
SPLITTABLE = ["AAPL", "IBM"]  # options are on SPY, which never splits here
RATIOS = [F(2), F(3), F(7), F(1, 2), F(3, 2), F(1, 10), F(4, 3)]
TOLERANCE = D("1e-9")
START = date(2024, 1, 2)

cents = st.integers(min_value=1, max_value=30000).map(lambda c: D(c) / 100)
option_cents = st.integers(min_value=1, max_value=2000).map(lambda c: D(c) / 100)


def next_weekday(d: date) -> date:
    d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


@dataclass
class RefPosition:
    qty: F = F(0)
    cost: F = F(0)  # signed, × multiplier
    realized: F = F(0)


@dataclass
class Order:
    key: str
    side: str
    remaining: D
    limit: D


class LedgerMachine(RuleBasedStateMachine):
    account_type = AccountType.CASH

    @initialize(cash=st.integers(min_value=0, max_value=50000))
    def open(self, cash: int) -> None:
        self.day = START
        self.acct = AccountLedger(self.account_type, next_weekday)
        if cash:
            self.acct.deposit(D(cash), self.day)
        self.deposits = D(cash)
        self.ref: dict[str, RefPosition] = {k: RefPosition() for k in INSTRUMENTS}
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.fill_cash = self.dividends = self.in_lieu = self.interest = ZERO
        start_marks = {"AAPL": D(150), "IBM": D(120), "SPY": D(45), "SPYC": D(2), "SPYP": D(1)}
        self.marks = {INSTRUMENTS[k].symbol: p for k, p in start_marks.items()}
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _hold_amount(self, key: str, side: str, qty: D, limit: D) -> D:
        ins = INSTRUMENTS[key]
        pos_qty = self.acct.position(ins.symbol).qty
        if self.account_type is AccountType.CASH:
            return cash_account_hold(ins, side, qty, limit, pos_qty)
        return margin_account_hold(ins, side, qty, limit, pos_qty, self.marks["SPY"])

    # -- orders ----------------------------------------------------------------------------

    @rule(
        key=st.sampled_from(sorted(INSTRUMENTS)),
        side=st.sampled_from(["buy", "sell"]),
        qty=st.integers(min_value=1, max_value=40).map(D),
        data=st.data(),
    )
    def place(self, key: str, side: str, qty: D, data: st.DataObject) -> None:
        ins = INSTRUMENTS[key]
        limit = data.draw(option_cents if isinstance(ins, OptionContract) else cents)
        amount = self._hold_amount(key, side, qty, limit)
        marks = self.marks if self.account_type is AccountType.MARGIN else None
        before = self.acct.buying_power(self.day, marks)
        oid = self._id("o")
        try:
            hold = self.acct.place_hold(oid, ins, side, qty, amount, as_of=self.day, marks=marks)
        except InsufficientBuyingPower:
            assert amount > before
            event("hold refused: buying power")
            return
        except InsufficientQuantity:
            assert self.account_type is AccountType.CASH and side == "sell"
            event("hold refused: quantity")
            return
        assert amount <= before and hold.amount == amount
        self.orders[oid] = Order(key, side, qty, limit)

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data(), done=st.booleans())
    def fill(self, data: st.DataObject, done: bool) -> None:
        oid = data.draw(st.sampled_from(sorted(self.orders)))
        o = self.orders[oid]
        ins = INSTRUMENTS[o.key]
        qty = D(data.draw(st.integers(min_value=1, max_value=int(o.remaining))))
        step = data.draw(st.integers(min_value=0, max_value=300))
        # at or inside the limit: a buy at or below it, a sell at or above it
        price = (
            max(o.limit - D(step) / 100, D("0.01")) if o.side == "buy" else o.limit + D(step) / 100
        )
        done = done or qty == o.remaining
        fill = Fill(self._id("x"), oid, ins, o.side, qty, price, self.day, order_done=done)
        act = self.acct.apply_fill(fill)
        assert act is not None and act.activity_type is ActivityType.FILL
        signed = qty if o.side == "buy" else -qty
        notional = signed * price * ins.multiplier
        assert act.amount == -notional  # whole cents: nothing to round
        self.fill_cash -= notional
        self._ref_fill(o.key, F(signed), F(price) * ins.multiplier)
        self.fills.append(fill)
        if self.acct.position(ins.symbol).qty < 0:
            event(f"short {type(ins).__name__}")
        if done:
            del self.orders[oid]
            assert oid not in self.acct.holds
        else:
            o.remaining -= qty
            assert self.acct.holds[oid].qty == o.remaining

    def _ref_fill(self, key: str, signed: F, unit: F) -> None:
        r = self.ref[key]
        if r.qty == 0 or (r.qty > 0) == (signed > 0):
            r.qty += signed
            r.cost += signed * unit
            return
        avg = r.cost / r.qty
        closing = min(abs(signed), abs(r.qty))
        direction = 1 if r.qty > 0 else -1
        r.realized += closing * (unit - avg) * direction
        r.qty += signed
        if r.qty == 0:
            r.cost = F(0)
        elif (r.qty > 0) == (direction > 0):
            r.cost = r.qty * avg
        else:
            r.cost = r.qty * unit

    @precondition(lambda self: bool(self.fills))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        fill = data.draw(st.sampled_from(self.fills))
        state = (self.acct.cash, dict(self.acct.holdings), dict(self.acct.holds))
        assert self.acct.apply_fill(fill) is None
        assert state == (self.acct.cash, dict(self.acct.holdings), dict(self.acct.holds))

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(sorted(self.orders)))
        del self.orders[oid]
        assert self.acct.release_hold(oid) is not None
        assert self.acct.release_hold(oid) is None

    # -- time and corporate actions --------------------------------------------------------

    @rule()
    def next_day(self) -> None:
        self.day = next_weekday(self.day)

    @rule(key=st.sampled_from(["AAPL", "IBM", "SPY"]), amount=st.integers(1, 500))
    def dividend(self, key: str, amount: int) -> None:
        per_share = D(amount) / 100
        qty = self.acct.position(key).qty
        act = self.acct.apply_cash_dividend(key, per_share, self.day)
        if qty == 0:
            assert act is None
            return
        assert act is not None and act.amount == round_cash(qty * per_share) == qty * per_share
        self.dividends += act.amount

    @rule(key=st.sampled_from(SPLITTABLE), ratio=st.sampled_from(RATIOS), close=cents)
    def split(self, key: str, ratio: F, close: D) -> None:
        # the orders service cancels open orders in the symbol before its split
        for oid in [oid for oid, o in self.orders.items() if o.key == key]:
            del self.orders[oid]
            self.acct.release_hold(oid)
        acts = self.acct.apply_split(key, ratio, self.day, close)
        r = self.ref[key]
        if r.qty == 0:
            assert acts == []
            return
        exact = r.qty * ratio
        fraction = exact - int(exact)
        in_lieu = sum(
            (a.amount for a in acts if a.activity_type is ActivityType.CASH_IN_LIEU), ZERO
        )
        assert abs(F(in_lieu) - fraction * F(close) / ratio) <= F(1, 200)
        fraction_cost = r.cost * fraction / exact
        r.realized += F(in_lieu) - fraction_cost
        r.cost -= fraction_cost
        r.qty = F(int(exact))
        self.in_lieu += in_lieu
        event("split with cash in lieu" if fraction else "split")

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def cash_reconciles_with_the_fill_ledger(self) -> None:
        cash = self.acct.cash.total
        assert (
            cash == self.deposits + self.fill_cash + self.dividends + self.in_lieu + self.interest
        )
        basis = sum((h.cost_basis for h in self.acct.holdings.values()), ZERO)
        realized = sum((h.state.realized_pl for h in self.acct.holdings.values()), ZERO)
        lhs = cash + basis - realized
        assert abs(lhs - (self.deposits + self.dividends + self.interest)) < TOLERANCE
        assert round_cash(lhs) == round_cash(self.deposits + self.dividends + self.interest)

    @invariant()
    def positions_match_the_exact_model(self) -> None:
        for key, ins in INSTRUMENTS.items():
            h = self.acct.holdings.get(ins.symbol)
            r = self.ref[key]
            qty = h.state.qty if h else ZERO
            assert F(qty) == r.qty
            assert abs(F(h.cost_basis if h else ZERO) - r.cost) < TOLERANCE
            assert abs(F(h.state.realized_pl if h else ZERO) - r.realized) < TOLERANCE

    @invariant()
    def holds_are_never_negative(self) -> None:
        for h in self.acct.holds.values():
            assert h.amount >= 0 and h.qty > 0
        assert set(self.acct.holds) == set(self.orders)


class CashAccountMachine(LedgerMachine):
    account_type = AccountType.CASH

    @invariant()
    def no_short_stock_and_no_overdraft(self) -> None:
        for key in ("AAPL", "IBM", "SPY"):
            assert self.acct.position(key).qty >= 0
            assert self.acct.held_qty(key) <= self.acct.position(key).qty
        available = (
            self.acct.cash.spendable(self.day)
            - self.acct.held_amount
            - self.acct.option_collateral()
        )
        assert available >= 0


class MarginAccountMachine(LedgerMachine):
    account_type = AccountType.MARGIN

    @rule(key=st.sampled_from(["AAPL", "IBM", "SPY"]), price=cents)
    def move_stock(self, key: str, price: D) -> None:
        self.marks[key] = price

    @rule(key=st.sampled_from(["SPYC", "SPYP"]), price=option_cents)
    def move_option(self, key: str, price: D) -> None:
        self.marks[INSTRUMENTS[key].symbol] = price

    @rule(key=st.sampled_from(["AAPL", "IBM", "SPY"]))
    def borrow(self, key: str) -> None:
        """Buy as much as the buying power allows, at the mark: cash goes into debit."""
        price = self.marks[key]
        qty = (self.acct.buying_power(self.day, self.marks) / price).to_integral_value(
            rounding="ROUND_FLOOR"
        )
        if qty <= 0:
            return
        oid = self._id("o")
        self.acct.place_hold(
            oid, INSTRUMENTS[key], "buy", qty, qty * price, as_of=self.day, marks=self.marks
        )
        self.orders[oid] = Order(key, "buy", qty, price)
        fill = Fill(
            self._id("x"), oid, INSTRUMENTS[key], "buy", qty, price, self.day, order_done=True
        )
        self.acct.apply_fill(fill)
        del self.orders[oid]
        self.fills.append(fill)
        self.fill_cash -= qty * price
        self._ref_fill(key, F(qty), F(price))
        if self.acct.cash.total < 0:
            event("borrowed on margin")

    @rule(days=st.integers(min_value=1, max_value=3))
    def accrue_interest(self, days: int) -> None:
        end = self.day + timedelta(days=days)
        act = self.acct.accrue_interest(D("0.0825"), self.day, end)
        if act is not None:
            assert act.amount < 0
            self.interest += act.amount
            event("interest charged")
        self.day = next_weekday(end - timedelta(days=1))

    @invariant()
    def margin_figures_are_derived_consistently(self) -> None:
        s = self.acct.margin(self.marks)
        assert s.buying_power >= 0 and s.margin_call >= 0
        assert s.maintenance_margin <= s.initial_margin


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCashAccountLedger = CashAccountMachine.TestCase
TestCashAccountLedger.settings = SETTINGS
TestMarginAccountLedger = MarginAccountMachine.TestCase
TestMarginAccountLedger.settings = SETTINGS

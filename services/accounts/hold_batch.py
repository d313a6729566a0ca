"""Buying-power holds for a batch of orders: one transaction, few round trips, decided in order.

The batch's accounts are locked (in id order, so two batches cannot deadlock), everything else
the decisions need is read in one statement under those locks (existing holds, sellable
quantities, positions, unsettled sales; what is held is on the locked rows), each hold is
decided in request order against budgets that fall by what every hold before it reserved - the
same answer as deciding them one at a time from the tables - and the placed holds are inserted
before the commit.

asyncpg with prepared statements (`services.platform.hotpath`): this is the hot path of every
submit, and its statements are fixed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.accounts.domain.ledger import ZERO
from services.accounts.domain.margin import margin_summary, mark_positions
from services.accounts.ledger_batch import multiplier_of
from services.accounts.settlement import LOOKBACK, NEW_YORK, unsettled_of
from services.conventions.calendar import MarketCalendar
from services.platform.errors import (
    LEDGER_BEHIND,
    FailedPrecondition,
    MbtError,
    NotFound,
    Unavailable,
)
from services.platform.hotpath import Deadlock, HotPathPool

__all__ = ["HoldPlaced", "HoldRequest", "decide_holds", "place_holds"]

DEADLOCK_RETRIES = 3

LOCK_ACCOUNTS = (
    "SELECT * FROM accounts.accounts WHERE user_id = ANY(%(users)s::text[]) ORDER BY id FOR UPDATE"
)
# everything else the decisions read, in one statement (one round trip) once the accounts are
# locked: this batch's holds placed before, the accounts' positions, the shares their active
# sell holds reserve of the symbols the batch sells (and margin accounts' buy holds, of a short
# they cover, of the symbols it buys), and cash accounts' recent sale proceeds
# (which settle later); `kind` says which
READS = (
    "SELECT 'existing' AS kind, order_id AS key, NULL::text AS account_id, amount, "
    "NULL::numeric AS qty, NULL::numeric AS price, NULL::timestamptz AS at "
    "FROM accounts.holds WHERE order_id = ANY(%(orders)s::text[]) "
    "UNION ALL SELECT 'position', symbol, account_id, NULL, qty, avg_entry_price, NULL "
    "FROM accounts.positions WHERE account_id = ANY(%(accounts)s::text[]) AND qty <> 0 "
    "UNION ALL SELECT 'sell_held', symbol, account_id, NULL, sum(qty), NULL, NULL "
    "FROM accounts.holds WHERE account_id = ANY(%(accounts)s::text[]) "
    "AND symbol = ANY(%(symbols)s::text[]) AND side = 'sell' AND status = 'active' "
    "GROUP BY account_id, symbol "
    "UNION ALL SELECT 'buy_held', symbol, account_id, NULL, sum(qty), NULL, NULL "
    "FROM accounts.holds WHERE account_id = ANY(%(margin)s::text[]) "
    "AND symbol = ANY(%(buys)s::text[]) AND side = 'buy' AND status = 'active' "
    "GROUP BY account_id, symbol "
    "UNION ALL SELECT 'replaced', order_id, NULL, amount, qty, NULL, NULL "
    "FROM accounts.holds WHERE order_id = ANY(%(replaced)s::text[]) AND status = 'active' "
    "AND account_id = ANY(%(accounts)s::text[]) "
    "UNION ALL SELECT 'sale', NULL, account_id, amount, NULL, NULL, occurred_at "
    "FROM accounts.activities WHERE account_id = ANY(%(cash)s::text[]) "
    "AND activity_type = 'fill' AND amount > 0 AND occurred_at > %(since)s::timestamptz "
    "UNION ALL SELECT 'applied', event_id, NULL, NULL, NULL, NULL, NULL "
    "FROM accounts.applied_events WHERE event_id = ANY(%(after)s::text[])"
)
INSERT_HOLDS = (
    "INSERT INTO accounts.holds (order_id, account_id, symbol, side, amount, qty, status) "
    "SELECT o, a, s, d, m, q, 'active' FROM unnest(%(orders)s::text[], %(accounts)s::text[], "
    "%(symbols)s::text[], %(sides)s::text[], %(amounts)s::numeric[], %(qtys)s::numeric[]) "
    "AS h(o, a, s, d, m, q)"
)


Marks = Mapping[str, Mapping[str, Decimal]]  # user id -> symbol -> mark
# the marks of margin accounts, asked for only when the batch has some: user id -> the symbols
# (their positions' and their orders')
MarkSource = Callable[[dict[str, set[str]]], Awaitable[Marks]]


@dataclass(frozen=True)
class HoldRequest:
    user_id: str
    order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    qty: Decimal
    amount: Decimal  # cash to reserve (buys)
    as_of: datetime | None = None  # the market clock: sale proceeds settle T+1 from it
    # not decided until the ledger has applied this event (a message id; "" for none)
    after_event: str = ""
    # a multi-leg order's package (cash only, under the underlying's symbol: no shares)
    package: bool = False
    # the open order this one replaces: its hold's cash and shares count as available here
    replaces: str = ""


@dataclass(frozen=True)
class HoldPlaced:
    account_id: str
    amount: Decimal
    fill_preference: str


@dataclass
class Snapshot:
    """What a batch's decisions read, under its accounts' row locks."""

    accounts: dict[str, dict[str, Any]]  # by user id
    existing: dict[str, Decimal]  # order id -> cash held, for holds placed before
    held: dict[str, Decimal] = field(default_factory=dict)  # account id -> active cash held
    sell_held: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    # (account id, symbol) -> shares open buys would cover of a short (margin accounts)
    buy_held: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    # order id -> (cash, shares) its active hold reserves: the orders the batch replaces
    replaced: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    positions: dict[str, list[Any]] = field(default_factory=dict)  # account id -> rows
    sales: dict[str, list[tuple[Any, datetime]]] = field(default_factory=dict)
    # users whose holds wait: the ledger has not applied an event one of them waits for
    behind: set[str] = field(default_factory=set)


@dataclass
class _Budget:
    """One account's spendable cash (by settlement day) and sellable shares, as holds fall."""

    acct: dict[str, Any]
    held: Decimal
    marks: Mapping[str, Decimal]
    cash: dict[object, Decimal] = field(default_factory=dict)
    qty: dict[str, Decimal] = field(default_factory=dict)
    cover: dict[str, Decimal] = field(default_factory=dict)  # of a short, what buys may cover

    @property
    def id(self) -> str:
        return str(self.acct["id"])

    @property
    def margin(self) -> bool:
        return bool(self.acct["account_type"] == "margin")


def _require(amount: Decimal, available: Decimal) -> None:
    if amount > available:
        raise FailedPrecondition(
            f"insufficient buying power: order needs ${amount:.2f}, "
            f"available ${max(available, ZERO):.2f}",
            reason="INSUFFICIENT_BUYING_POWER",
            metadata={"required": f"{amount:.2f}", "available": f"{available:.2f}"},
        )


def _available(
    b: _Budget, snap: Snapshot, item: HoldRequest, calendar: MarketCalendar | None
) -> object:
    """The key of the cash budget this hold spends from (computed on first use)."""
    if b.margin:
        if "margin" not in b.cash:
            cash = Decimal(str(b.acct["cash"]))
            marked = mark_positions(snap.positions.get(b.id, []), b.marks)
            b.cash["margin"] = margin_summary(cash, marked, ZERO, b.held).buying_power
        return "margin"
    settling = item.as_of is not None and calendar is not None
    key = item.as_of.astimezone(NEW_YORK).date() if item.as_of is not None and settling else None
    if key not in b.cash:
        available = Decimal(str(b.acct["cash"])) - b.held
        if item.as_of is not None and calendar is not None:  # unsettled proceeds are not cash
            available -= unsettled_of(snap.sales.get(b.id, []), item.as_of, calendar)
        b.cash[key] = available
    return key


def _owned(b: _Budget, snap: Snapshot, symbol: str) -> Decimal:
    """The account's position in `symbol` (negative: short)."""
    return next((Decimal(p.qty) for p in snap.positions.get(b.id, []) if p.symbol == symbol), ZERO)


def _short_of_qty(item: HoldRequest, available: Decimal, why: str) -> FailedPrecondition:
    free = max(available, ZERO)
    return FailedPrecondition(
        f"insufficient qty available for order (requested: {item.qty.normalize():f}, "
        f"available: {free.normalize():f}): {why}",
        reason="INSUFFICIENT_QTY",
        metadata={"symbol": item.symbol, "available": str(free), "requested": str(item.qty)},
    )


def _decide(
    b: _Budget, snap: Snapshot, item: HoldRequest, calendar: MarketCalendar | None
) -> tuple[Decimal, Decimal]:
    """(cash held, shares held) for one order against the account's budget, or refuse.

    As at Alpaca, one order never turns a position from long to short or back: a sell while
    long may sell what open sells do not already hold, a buy while short may cover what open
    buys do not already cover; beyond that it is refused (403 "insufficient qty available").
    """
    key = _available(b, snap, item, calendar)
    # a replacement may use what the order it replaces holds (still held until it is released)
    credit_cash, credit_qty = snap.replaced.get(item.replaces, (ZERO, ZERO))
    available = b.cash[key] + credit_cash
    if item.side == "buy":
        hold_qty = ZERO
        owned = _owned(b, snap, item.symbol) if b.margin and not item.package else ZERO
        if owned < 0:
            cover = b.cover.setdefault(
                item.symbol, -owned - snap.buy_held.get((b.id, item.symbol), ZERO)
            )
            if item.qty > cover + credit_qty:
                raise _short_of_qty(
                    item,
                    cover + credit_qty,
                    f"you are short {item.symbol}; a buy may cover the short, not also open a "
                    "long position (cover it first, then buy)",
                )
            hold_qty = item.qty
        _require(item.amount, available)
        hold_amount = item.amount
        if hold_qty:
            b.cover[item.symbol] -= hold_qty
    else:
        owned = _owned(b, snap, item.symbol)
        if item.symbol not in b.qty:
            b.qty[item.symbol] = owned - snap.sell_held.get((b.id, item.symbol), ZERO)
        available_qty = b.qty[item.symbol] + credit_qty
        hold_amount, hold_qty = ZERO, item.qty
        if item.qty > available_qty:
            mark = b.marks.get(item.symbol)
            if not b.margin:
                raise _short_of_qty(item, available_qty, "cash accounts cannot sell short")
            if owned > 0:
                raise _short_of_qty(
                    item,
                    available_qty,
                    f"you hold {owned.normalize():f} {item.symbol} long (less what open sells "
                    "hold); a sell may close the position, not also open a short (close it "
                    "first, then sell short)",
                )
            if b.acct.get("no_shorting"):
                raise FailedPrecondition(
                    "account is not allowed to short (its configuration's no_shorting is "
                    f"true): selling {item.qty.normalize():f} {item.symbol} would open a short",
                    reason="SHORTING_DISABLED",
                    metadata={"symbol": item.symbol},
                )
            if mark is None:
                raise _short_of_qty(item, available_qty, f"no price for {item.symbol} to short at")
            # margin, flat or short: a short sale, held in buying power
            short_notional = item.qty * mark * multiplier_of(item.symbol)
            _require(short_notional, available)
            hold_amount, hold_qty = short_notional, ZERO
        b.qty[item.symbol] = available_qty - credit_qty - hold_qty
    # every budget of this account (each settlement day) falls by what this hold reserves
    b.held += hold_amount
    for k in b.cash:
        b.cash[k] -= hold_amount
    return hold_amount, hold_qty


def decide_holds(
    items: Sequence[HoldRequest],
    snap: Snapshot,
    marks: Mapping[str, Mapping[str, Decimal]] | None = None,
    calendar: MarketCalendar | None = None,
) -> tuple[list[HoldPlaced | MbtError], list[tuple[HoldRequest, str, Decimal, Decimal]]]:
    """Each hold in order: its result, and the holds to insert (item, account, cash, qty)."""
    results: list[HoldPlaced | MbtError] = []
    inserts: list[tuple[HoldRequest, str, Decimal, Decimal]] = []
    budgets: dict[str, _Budget] = {}
    existing = dict(snap.existing)
    for item in items:
        acct = snap.accounts.get(item.user_id)
        if acct is None:
            results.append(
                NotFound(
                    "no MBT account for this user; sign up with `mbt signup`",
                    reason="ACCOUNT_NOT_FOUND",
                )
            )
            continue
        account_id, preference = str(acct["id"]), str(acct["fill_preference"])
        if item.order_id in existing:  # placed before (or earlier in this batch): the same
            results.append(HoldPlaced(account_id, existing[item.order_id], preference))
            continue
        if item.user_id in snap.behind:  # with the ledger from before its newest event
            results.append(
                Unavailable(
                    f"the ledger has not applied event {item.after_event or 'before this'} yet",
                    reason=LEDGER_BEHIND,
                )
            )
            continue
        if acct["status"] != "active":
            results.append(
                FailedPrecondition(f"account is {acct['status']}", reason="ACCOUNT_NOT_ACTIVE")
            )
            continue
        if acct.get("suspend_trade"):
            results.append(
                FailedPrecondition(
                    "trading is suspended on this account by its configuration "
                    "(suspend_trade); set it to false to place orders",
                    reason="TRADE_SUSPENDED",
                )
            )
            continue
        b = budgets.get(account_id)
        if b is None:
            b = budgets[account_id] = _Budget(
                acct, snap.held.get(account_id, ZERO), (marks or {}).get(item.user_id, {})
            )
        try:
            amount, qty = _decide(b, snap, item, calendar)
        except MbtError as exc:
            results.append(exc)
            continue
        existing[item.order_id] = amount
        inserts.append((item, account_id, amount, qty))
        results.append(HoldPlaced(account_id, amount, preference))
    return results, inserts


async def place_holds(
    pool: HotPathPool,
    items: Sequence[HoldRequest],
    marks: Marks | MarkSource | None = None,
    calendar: MarketCalendar | None = None,
) -> list[HoldPlaced | MbtError]:
    """Decide and place the holds of a batch in one transaction (see the module doc).

    A deadlock with another transaction (PostgreSQL aborts one of the two) is retried.
    """
    if not items:
        return []
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return await _place(pool, items, marks, calendar)
        except Deadlock:
            if attempt == DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _margin_marks(source: MarkSource, items: Sequence[HoldRequest], snap: Snapshot) -> Marks:
    """Marks for the batch's margin accounts only (cash accounts need none)."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        acct = snap.accounts.get(item.user_id)
        if acct is not None and acct["account_type"] == "margin":
            held = {p.symbol for p in snap.positions.get(str(acct["id"]), [])}
            wanted.setdefault(item.user_id, held).add(item.symbol)
    return await source(wanted) if wanted else {}


async def _place(
    pool: HotPathPool,
    items: Sequence[HoldRequest],
    marks: Marks | MarkSource | None,
    calendar: MarketCalendar | None,
) -> list[HoldPlaced | MbtError]:
    users = sorted({i.user_id for i in items})
    sells = sorted({i.symbol for i in items if i.side == "sell"})
    clocks = [i.as_of for i in items if i.as_of is not None]
    since = min(clocks) - LOOKBACK if clocks else None
    # four round trips: BEGIN, the locking read, the other reads, the inserts (and COMMIT)
    async with pool.transaction() as tx:
        locked = await tx.fetch(LOCK_ACCOUNTS, {"users": users})
        snap = Snapshot(accounts={str(r["user_id"]): r for r in locked}, existing={})
        # what is held already: kept on the locked row (accounts.held_cash, by triggers)
        snap.held = {str(a["id"]): Decimal(a["held_cash"]) for a in locked}
        settling = since is not None and calendar is not None
        rows = await tx.fetch(
            READS,
            {
                "orders": [i.order_id for i in items],
                "accounts": [str(a["id"]) for a in locked],
                "symbols": sells,
                # what open buys cover of a short: margin accounts only (cash cannot be short)
                "margin": [str(a["id"]) for a in locked if a["account_type"] == "margin"],
                "buys": sorted({i.symbol for i in items if i.side == "buy" and not i.package}),
                "replaced": sorted({i.replaces for i in items if i.replaces}),
                "cash": [str(a["id"]) for a in locked if a["account_type"] == "cash"]
                if settling
                else [],
                "since": since,
                "after": sorted({i.after_event for i in items if i.after_event}),
            },
        )
        applied: set[str] = set()
        positions: dict[str, list[Any]] = defaultdict(list)
        sales: dict[str, list[tuple[Any, datetime]]] = defaultdict(list)
        for r in rows:
            kind = r["kind"]
            if kind == "existing":
                snap.existing[str(r["key"])] = Decimal(r["amount"])
            elif kind == "position":
                positions[str(r["account_id"])].append(_Row(r["key"], r["qty"], r["price"]))
            elif kind == "sell_held":
                snap.sell_held[str(r["account_id"]), str(r["key"])] = Decimal(r["qty"])
            elif kind == "replaced":
                snap.replaced[str(r["key"])] = (Decimal(r["amount"]), Decimal(r["qty"]))
            elif kind == "buy_held":
                snap.buy_held[str(r["account_id"]), str(r["key"])] = Decimal(r["qty"])
            elif kind == "applied":
                applied.add(str(r["key"]))
            else:
                sales[str(r["account_id"])].append((r["amount"], r["at"]))
        snap.positions = dict(positions)
        snap.sales = dict(sales)
        # a user's holds wait together (in their order) while one of them waits for the ledger
        snap.behind = {i.user_id for i in items if i.after_event and i.after_event not in applied}
        if callable(marks):
            marks = await _margin_marks(marks, items, snap)
        results, inserts = decide_holds(items, snap, marks, calendar)
        if inserts:
            await tx.fetch(
                INSERT_HOLDS,
                {
                    "orders": [i.order_id for i, _, _, _ in inserts],
                    "accounts": [a for _, a, _, _ in inserts],
                    "symbols": [i.symbol for i, _, _, _ in inserts],
                    "sides": [i.side for i, _, _, _ in inserts],
                    "amounts": [m for _, _, m, _ in inserts],
                    "qtys": [q for _, _, _, q in inserts],
                },
            )
    return results


class _Row:
    """A position row with attribute access (what `marked_positions` reads)."""

    __slots__ = ("avg_entry_price", "qty", "symbol")

    def __init__(self, symbol: str, qty: Any, avg_entry_price: Any) -> None:
        self.symbol = str(symbol)
        self.qty = qty
        self.avg_entry_price = avg_entry_price

"""Apply many fills in a handful of set-based statements (the ledger's hot path).

The arithmetic is the pure ledger's (`domain.ledger.apply_fill`), applied in event order in
Python over rows locked FOR UPDATE; the database sees one statement per table, not one per
fill. Each fill still applies exactly once: its event id enters the inbox in the same
transaction, and an id already there makes the fill a no-op ("duplicate").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.accounts.adapters.tables import (
    accounts,
    activities,
    applied_events,
    parked_events,
    positions,
)
from services.accounts.domain.ledger import ZERO, PositionState, apply_fill
from services.conventions.occ import is_occ_symbol

DONE = {"filled", "canceled", "expired"}


def multiplier_of(symbol: str) -> int:
    """Shares per unit: 100 for an OCC option contract, 1 for a share."""
    return 100 if is_occ_symbol(symbol) else 1


@dataclass(frozen=True)
class FillApplied:
    execution_id: str
    order_id: str
    user_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    filled_at: datetime
    order_status: str
    explanation: str


@dataclass
class _Pos:
    state: PositionState
    opened_at: datetime | None
    closed_at: datetime | None
    exists: bool


async def claim_events(conn: AsyncConnection, event_ids: list[str]) -> set[str]:
    """Insert event ids into the inbox; return those that were new (not yet applied)."""
    if not event_ids:
        return set()
    rows = await conn.execute(
        insert(applied_events)
        .from_select(["event_id"], select(text("unnest(CAST(:ids AS text[]))")))
        .on_conflict_do_nothing()
        .returning(applied_events.c.event_id),
        {"ids": event_ids},
    )
    return {r[0] for r in rows}


async def apply_fills(conn: AsyncConnection, items: list[tuple[str, FillApplied]]) -> list[str]:
    """Apply fills in order; returns "applied" / "duplicate" / "parked" per item."""
    outcomes = ["duplicate"] * len(items)
    seen: set[str] = set()
    firsts = []
    for i, (event_id, _) in enumerate(items):
        if event_id not in seen:  # the same event twice in one batch applies once
            seen.add(event_id)
            firsts.append(i)
    new = await claim_events(conn, [items[i][0] for i in firsts])
    todo = [i for i in firsts if items[i][0] in new]
    if not todo:
        return outcomes
    users = sorted({items[i][1].user_id for i in todo})
    acct_rows = (
        await conn.execute(
            select(accounts.c.id, accounts.c.user_id)
            .where(accounts.c.user_id.in_(users))
            .order_by(accounts.c.id)
            .with_for_update()
        )
    ).all()
    account_of = {r.user_id: str(r.id) for r in acct_rows}
    keys = sorted(
        {
            (account_of[f.user_id], f.symbol)
            for i in todo
            if (f := items[i][1]).user_id in account_of
        }
    )
    book: dict[tuple[str, str], _Pos] = {}
    if keys:
        rows = (
            (
                await conn.execute(
                    select(positions)
                    .where(
                        positions.c.account_id.in_({k[0] for k in keys}),
                        positions.c.symbol.in_({k[1] for k in keys}),
                    )
                    .order_by(positions.c.account_id, positions.c.symbol)
                    .with_for_update()
                )
            )
            .mappings()
            .all()
        )
        for r in rows:
            book[(r["account_id"], r["symbol"])] = _Pos(
                PositionState(
                    Decimal(r["qty"]), Decimal(r["avg_entry_price"]), Decimal(r["realized_pl"])
                ),
                r["opened_at"],
                r["closed_at"],
                True,
            )
    cash_delta: dict[str, Decimal] = defaultdict(Decimal)
    hold_amount: dict[str, Decimal] = defaultdict(Decimal)
    hold_qty: dict[str, Decimal] = defaultdict(Decimal)
    release: set[str] = set()
    acts: list[dict[str, Any]] = []
    parked: list[dict[str, Any]] = []
    for i in todo:
        event_id, f = items[i]
        account_id = account_of.get(f.user_id)
        if account_id is None:
            parked.append(
                {
                    "event_id": event_id,
                    "subject": "fill",
                    "reason": "unknown account for user",
                    "payload": f.execution_id,
                }
            )
            outcomes[i] = "parked"
            continue
        key = (account_id, f.symbol)
        pos = book.setdefault(key, _Pos(PositionState(), None, None, False))
        was_flat = pos.state.qty == 0
        effect = apply_fill(pos.state, f.side, f.qty, f.price, multiplier_of(f.symbol))
        pos.state = effect.position
        if was_flat:
            pos.opened_at = f.filled_at
        pos.closed_at = f.filled_at if pos.state.qty == 0 else None
        cash_delta[account_id] += effect.cash_delta
        if f.order_status in DONE:
            release.add(f.order_id)
        else:  # what is left open holds less: a buy's cash (and a cover's shares), a sell's shares
            if f.side == "buy":
                hold_amount[f.order_id] += f.qty * f.price * multiplier_of(f.symbol)
            hold_qty[f.order_id] += f.qty
        acts.append(
            {
                "id": f.execution_id,
                "account_id": account_id,
                "activity_type": "fill",
                "symbol": f.symbol,
                "amount": effect.cash_delta,
                "qty": f.qty if f.side == "buy" else -f.qty,
                "price": f.price,
                "realized_pl": effect.realized_pl,
                "ref_id": f.order_id,
                "description": f.explanation,
                "occurred_at": f.filled_at,
            }
        )
        outcomes[i] = "applied"
    await _write(conn, book, cash_delta, hold_amount, hold_qty, release, acts, parked)
    return outcomes


async def _write(
    conn: AsyncConnection,
    book: dict[tuple[str, str], _Pos],
    cash_delta: dict[str, Decimal],
    hold_amount: dict[str, Decimal],
    hold_qty: dict[str, Decimal],
    release: set[str],
    acts: list[dict[str, Any]],
    parked: list[dict[str, Any]],
) -> None:
    if book:
        keys = sorted(book)
        await conn.execute(
            text(
                "INSERT INTO accounts.positions (account_id, symbol, asset_class, qty, "
                "avg_entry_price, realized_pl, opened_at, closed_at) "
                "SELECT a, s, CASE WHEN s ~ '^[A-Z0-9]{1,6}[0-9]{6}[CP][0-9]{8}$' THEN 'option' "
                "ELSE 'equity' END, q, p, r, o, c FROM unnest(CAST(:a AS text[]), "
                "CAST(:s AS text[]), CAST(:q AS numeric[]), CAST(:p AS numeric[]), "
                "CAST(:r AS numeric[]), CAST(:o AS timestamptz[]), CAST(:c AS timestamptz[])) "
                "AS t(a, s, q, p, r, o, c) "
                "ON CONFLICT (account_id, symbol) DO UPDATE SET qty = excluded.qty, "
                "avg_entry_price = excluded.avg_entry_price, realized_pl = excluded.realized_pl, "
                "opened_at = excluded.opened_at, closed_at = excluded.closed_at"
            ),
            {
                "a": [k[0] for k in keys],
                "s": [k[1] for k in keys],
                "q": [book[k].state.qty for k in keys],
                "p": [book[k].state.avg_entry_price for k in keys],
                "r": [book[k].state.realized_pl for k in keys],
                "o": [book[k].opened_at for k in keys],
                "c": [book[k].closed_at for k in keys],
            },
        )
    if cash_delta:
        ids = sorted(cash_delta)
        await conn.execute(
            text(
                "UPDATE accounts.accounts a SET cash = a.cash + d.delta FROM unnest("
                "CAST(:ids AS text[]), CAST(:deltas AS numeric[])) AS d(id, delta) "
                "WHERE a.id = d.id"
            ),
            {"ids": ids, "deltas": [cash_delta[i] for i in ids]},
        )
    partial = sorted((set(hold_amount) | set(hold_qty)) - release)
    if partial:
        await conn.execute(
            text(
                "UPDATE accounts.holds h SET amount = greatest(h.amount - d.amt, 0), "
                "qty = greatest(h.qty - d.q, 0) FROM unnest(CAST(:ids AS text[]), "
                "CAST(:amts AS numeric[]), CAST(:qs AS numeric[])) AS d(id, amt, q) "
                "WHERE h.order_id = d.id AND h.status = 'active'"
            ),
            {
                "ids": partial,
                "amts": [hold_amount.get(o, ZERO) for o in partial],
                "qs": [hold_qty.get(o, ZERO) for o in partial],
            },
        )
    if release:
        await release_holds(conn, sorted(release))
    if acts:
        await conn.execute(activities.insert(), acts)
    if parked:
        await conn.execute(insert(parked_events).on_conflict_do_nothing(), parked)


async def release_holds(conn: AsyncConnection, order_ids: list[str]) -> int:
    """Release the orders' active holds. Their accounts' rows are locked first, in id order, as
    every transaction that touches holds does (a hold's change updates its account's held_cash
    by trigger): a release that locked the hold first deadlocked against the ledger applying a
    fill of the same account (accounts, then holds)."""
    await conn.execute(
        text(
            "SELECT id FROM accounts.accounts WHERE id IN (SELECT account_id FROM accounts.holds "
            "WHERE order_id = ANY(:ids) AND status = 'active') ORDER BY id FOR UPDATE"
        ).bindparams(bindparam("ids")),
        {"ids": order_ids},
    )
    res = await conn.execute(
        text(
            "UPDATE accounts.holds SET status = 'released', amount = 0, qty = 0 "
            "WHERE order_id = ANY(:ids) AND status = 'active'"
        ).bindparams(bindparam("ids")),
        {"ids": order_ids},
    )
    return int(res.rowcount or 0)

"""Scheduled, idempotent account jobs: EOD mark-to-market, corporate actions, retention purge.

Each runs as set-based SQL in one transaction, so 100,000 accounts take one statement, and a
re-run (a redelivered trigger) changes nothing: snapshots are unique per account and day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from services.accounts.adapters.tables import accounts, activities, positions
from services.accounts.domain.actions import apply_cash_dividend, apply_split
from services.accounts.domain.interest import accrue_margin_interest
from services.accounts.domain.ledger import CENT, ZERO, PositionState, apply_fill
from services.conventions.occ import parse_occ

# Free 90 days, Pro 3 years, Pro+ unlimited (BRIEF §5).
log = logging.getLogger("mbt.accounts.jobs")

RETENTION: dict[str, timedelta | None] = {
    "free": timedelta(days=90),
    "pro": timedelta(days=3 * 365),
    "pro_plus": None,
}

MARK_TO_MARKET_SQL = text(
    """
    WITH marks AS (
        SELECT * FROM unnest(CAST(:symbols AS text[]), CAST(:prices AS numeric[]))
            AS m(symbol, mark)
    ),
    valued AS (
        SELECT p.account_id, p.symbol, p.qty, p.avg_entry_price AS avg,
               coalesce(m.mark, p.avg_entry_price) AS mark,
               p.qty * coalesce(m.mark, p.avg_entry_price)
                 * (CASE WHEN p.asset_class = 'option' THEN 100 ELSE 1 END) AS value
        FROM accounts.positions p LEFT JOIN marks m ON m.symbol = p.symbol
        WHERE p.qty <> 0
    )
    INSERT INTO accounts.eod_snapshots
        (account_id, as_of_date, cash, long_market_value, short_market_value, equity, positions)
    SELECT a.id, :as_of, a.cash,
           coalesce(sum(v.value) FILTER (WHERE v.qty > 0), 0),
           coalesce(sum(v.value) FILTER (WHERE v.qty < 0), 0),
           a.cash + coalesce(sum(v.value), 0),
           coalesce(jsonb_agg(jsonb_build_object('symbol', v.symbol, 'qty', v.qty, 'mark', v.mark,
                                                 'avg', v.avg))
                    FILTER (WHERE v.symbol IS NOT NULL), '[]'::jsonb)
    FROM accounts.accounts a LEFT JOIN valued v ON v.account_id = a.id
    WHERE a.status <> 'closed'
    GROUP BY a.id, a.cash
    ON CONFLICT (account_id, as_of_date) DO NOTHING
    """
)


async def _record_once(conn: AsyncConnection, **values: object) -> bool:
    """Write an activity unless one with its id exists; True when this call wrote it. Jobs
    change cash or positions only when it did, which makes every job idempotent."""
    row = (
        await conn.execute(
            insert(activities).values(**values).on_conflict_do_nothing().returning(activities.c.id)
        )
    ).first()
    return row is not None


async def mark_to_market(engine: AsyncEngine, as_of: date, marks: dict[str, Decimal]) -> int:
    """Snapshot every account's cash, positions and equity at `as_of`'s close.

    `marks` are closing prices by symbol; a position without one is carried at its average
    entry price (stated in the snapshot's positions). Returns the number of new snapshots.
    """
    symbols = sorted(marks)
    async with engine.begin() as conn:
        res = await conn.execute(
            MARK_TO_MARKET_SQL,
            {"symbols": symbols, "prices": [marks[s] for s in symbols], "as_of": as_of},
        )
    return int(res.rowcount or 0)


async def purge_retention(engine: AsyncEngine, now: datetime) -> int:
    """Delete activities and snapshots older than each account's tier retention."""
    deleted = 0
    async with engine.begin() as conn:
        for tier, keep in RETENTION.items():
            if keep is None:
                continue
            cutoff = now - keep
            for table, column in (("activities", "occurred_at"), ("eod_snapshots", "as_of_date")):
                res = await conn.execute(
                    text(
                        f"DELETE FROM accounts.{table} t USING accounts.accounts a "
                        f"WHERE t.account_id = a.id AND a.tier = :tier AND t.{column} < :cutoff"
                    ),
                    {"tier": tier, "cutoff": cutoff if column == "occurred_at" else cutoff.date()},
                )
                deleted += int(res.rowcount or 0)
    return deleted


async def apply_corporate_actions(
    engine: AsyncEngine,
    actions: Sequence[md_pb.CorporateAction],
    closes: dict[str, Decimal],
) -> int:
    """Credit cash dividends and apply splits to every position held into the ex-date.

    ``actions`` are marketdata's messages as they came over gRPC (``type`` "split" or
    "cash_dividend").

    Idempotent per (action, account): the activity row's id is derived from both, and the
    cash and position change only when that row is new. `closes` (pre-split closes) price the
    cash in lieu of fractional shares. Returns the number of account adjustments made.
    """
    made = 0
    for action in actions:
        kind = "split" if action.type == "split" else "dividend"
        ex_date = date.fromisoformat(action.ex_date)
        async with engine.begin() as conn:
            held = (
                (
                    await conn.execute(
                        select(positions)
                        .where(positions.c.symbol == action.symbol, positions.c.qty != 0)
                        .order_by(positions.c.account_id)
                        .with_for_update()
                    )
                )
                .mappings()
                .all()
            )
            for row in held:
                account_id = str(row["account_id"])
                pos = PositionState(
                    Decimal(row["qty"]),
                    Decimal(row["avg_entry_price"]),
                    Decimal(row["realized_pl"]),
                )
                if kind == "dividend":
                    amount = Decimal(action.cash_amount)
                    div = apply_cash_dividend(action.symbol, pos.qty, amount, ex_date)
                    cash, qty_delta, text_ = div.cash_delta, ZERO, div.explanation
                    new_pos = pos
                else:
                    try:
                        sp = apply_split(
                            action.symbol,
                            pos,
                            Fraction(action.split_to, action.split_from),
                            ex_date,
                            closes.get(action.symbol),
                        )
                    except ValueError as exc:  # a fraction with no close to price it: retry later
                        log.warning(
                            "split of %s for %s deferred: %s", action.symbol, account_id, exc
                        )
                        continue
                    cash, qty_delta, text_, new_pos = (
                        sp.cash_in_lieu,
                        sp.qty_delta,
                        sp.explanation,
                        sp.position,
                    )
                if not await _record_once(
                    conn,
                    id=f"{kind}:{action.symbol}:{ex_date}:{account_id}",
                    account_id=account_id,
                    activity_type=kind,
                    symbol=action.symbol,
                    amount=cash,
                    qty=qty_delta,
                    ref_id=f"{kind}:{action.symbol}:{ex_date}",
                    description=text_,
                    occurred_at=datetime.combine(ex_date, time(13, 30), tzinfo=UTC),
                ):
                    continue  # already applied to this account
                if new_pos is not pos:
                    await conn.execute(
                        update(positions)
                        .where(
                            positions.c.account_id == account_id,
                            positions.c.symbol == action.symbol,
                        )
                        .values(
                            qty=new_pos.qty,
                            avg_entry_price=new_pos.avg_entry_price,
                            realized_pl=new_pos.realized_pl,
                        )
                    )
                if cash:
                    await conn.execute(
                        update(accounts)
                        .where(accounts.c.id == account_id)
                        .values(cash=accounts.c.cash + cash)
                    )
                made += 1
    return made


async def expire_options(engine: AsyncEngine, as_of: date, closes: dict[str, Decimal]) -> int:
    """Settle option positions expiring `as_of` against their underlying's close (rule 7).

    In the money by $0.01 or more: a long is exercised, a short assigned, with physical delivery
    of 100 shares per contract at the strike (the option's premium is realized, the shares are
    carried at the strike). Otherwise the contract expires worthless. Each settlement writes a
    distinct activity (exercised / assigned / expired) once per account and contract.
    """
    done = 0
    async with engine.begin() as conn:
        rows = (
            (
                await conn.execute(
                    select(positions)
                    .where(positions.c.asset_class == "option", positions.c.qty != 0)
                    .order_by(positions.c.account_id, positions.c.symbol)
                    .with_for_update()
                )
            )
            .mappings()
            .all()
        )
        for r in rows:
            contract = parse_occ(r["symbol"])
            if contract.expiry != as_of:
                continue
            underlying = contract.root
            close = closes.get(underlying)
            if close is None:
                log.warning("no close for %s: %s left unsettled", underlying, r["symbol"])
                continue
            account_id, qty = str(r["account_id"]), Decimal(r["qty"])
            opt = PositionState(qty, Decimal(r["avg_entry_price"]), Decimal(r["realized_pl"]))
            intrinsic = close - contract.strike if contract.is_call else contract.strike - close
            itm = intrinsic >= CENT
            kind = ("exercised" if qty > 0 else "assigned") if itm else "expired"
            # the contract leaves the book at zero: its premium is realized
            closing = apply_fill(opt, "sell" if qty > 0 else "buy", abs(qty), ZERO, 100)
            cash = ZERO
            text_ = (
                f"{r['symbol']} {kind} at expiration {as_of}: {underlying} closed at {close}, "
                f"strike {contract.strike}"
            )
            stock_side = None
            if itm:
                # long call / short put take delivery (buy); long put / short call deliver (sell)
                buys = contract.is_call == (qty > 0)
                stock_side = "buy" if buys else "sell"
                shares = abs(qty) * 100
                cash = -shares * contract.strike if buys else shares * contract.strike
                text_ += f"; {stock_side} {shares:f} {underlying} at {contract.strike}"
            if not await _record_once(
                conn,
                id=f"expiry:{r['symbol']}:{account_id}",
                account_id=account_id,
                activity_type=kind,
                symbol=r["symbol"],
                amount=cash,
                qty=-qty,
                price=contract.strike,
                realized_pl=closing.realized_pl,
                ref_id=f"expiry:{r['symbol']}",
                description=text_,
                occurred_at=datetime.combine(as_of, time(21, 0), tzinfo=UTC),
            ):
                continue
            await conn.execute(
                update(positions)
                .where(positions.c.account_id == account_id, positions.c.symbol == r["symbol"])
                .values(
                    qty=0,
                    avg_entry_price=0,
                    realized_pl=closing.position.realized_pl,
                    closed_at=datetime.combine(as_of, time(21, 0), tzinfo=UTC),
                )
            )
            if stock_side is not None:
                await _deliver(
                    conn, account_id, underlying, stock_side, abs(qty) * 100, contract.strike, as_of
                )
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id)
                    .values(cash=accounts.c.cash + cash)
                )
            done += 1
    return done


async def _deliver(
    conn: AsyncConnection,
    account_id: str,
    symbol: str,
    side: str,
    shares: Decimal,
    price: Decimal,
    as_of: date,
) -> None:
    row = (
        (
            await conn.execute(
                select(positions)
                .where(positions.c.account_id == account_id, positions.c.symbol == symbol)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    pos = (
        PositionState(
            Decimal(row["qty"]), Decimal(row["avg_entry_price"]), Decimal(row["realized_pl"])
        )
        if row
        else PositionState()
    )
    new = apply_fill(pos, side, shares, price).position
    at = datetime.combine(as_of, time(21, 0), tzinfo=UTC)
    await conn.execute(
        insert(positions)
        .values(
            account_id=account_id,
            symbol=symbol,
            asset_class="equity",
            qty=new.qty,
            avg_entry_price=new.avg_entry_price,
            realized_pl=new.realized_pl,
            opened_at=at,
        )
        .on_conflict_do_update(
            index_elements=[positions.c.account_id, positions.c.symbol],
            set_={
                "qty": new.qty,
                "avg_entry_price": new.avg_entry_price,
                "realized_pl": new.realized_pl,
                "closed_at": at if new.qty == 0 else None,
            },
        )
    )


async def accrue_interest(engine: AsyncEngine, as_of: date, annual_rate: Decimal) -> int:
    """Charge one day of margin interest (actual/360) on each margin account's debit balance.

    Written as an `interest` activity whose description explains the charge in plain words;
    once per account and day (the activity id), so a re-run changes nothing.
    """
    charged = 0
    async with engine.begin() as conn:
        debit_accounts = (
            await conn.execute(
                select(accounts.c.id, accounts.c.cash)
                .where(accounts.c.account_type == "margin", accounts.c.cash < 0)
                .order_by(accounts.c.id)
                .with_for_update()
            )
        ).all()
        for account_id, cash in debit_accounts:
            accrual = accrue_margin_interest(
                Decimal(cash), annual_rate, as_of, as_of + timedelta(days=1)
            )
            if accrual.cash_delta == 0:
                continue
            if not await _record_once(
                conn,
                id=f"interest:{account_id}:{as_of}",
                account_id=account_id,
                activity_type="interest",
                amount=accrual.cash_delta,
                description=accrual.explanation,
                occurred_at=datetime.combine(as_of, time(23, 0), tzinfo=UTC),
            ):
                continue
            await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(cash=accounts.c.cash + accrual.cash_delta)
            )
            charged += 1
    return charged

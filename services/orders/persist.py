"""Persistence of the matching engine's events: fills with their NBBO, order state, outbox.

One transaction per batch of events; a fill writes one row (and one ledger event) per
instrument traded, each with the quote it used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from raxx.mbt.v1 import events_pb2
from services.conventions.decimals import dec_to_wire
from services.orders import records
from services.orders.adapters.tables import fills, orders
from services.orders.convert import fill_to_pb, order_to_pb
from services.orders.domain.events import (
    Event,
    FillDeferred,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from services.orders.partitions import user_partition
from services.platform.db import UnitOfWork
from services.platform.metrics import FILLS
from services.platform.outbox import Outbox

__all__ = ["persist_events"]

_POSITION = text(
    "SELECT coalesce(sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END), 0) "
    "FROM orders.fills WHERE account_id = :a AND symbol = :s"
)


async def _position_after(conn: AsyncConnection, account_id: str, symbol: str) -> Decimal:
    """The signed position the account's fills add up to (trade updates' `position_qty`).

    From this context's own fills: corporate actions and option expiration, which the accounts
    ledger applies, are not in it.
    """
    return Decimal((await conn.execute(_POSITION, {"a": account_id, "s": symbol})).scalar_one())


async def persist_events(
    db: AsyncEngine,
    outbox: Outbox,
    events: list[Event],
    sim_at: datetime,
    actor: str = "system",
    fence: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> None:
    """Write the engine's events in one transaction: fills, order state, outbox, audit.

    Called under the engine lock, so rows reach the database in the order the engine made them.
    """
    async with UnitOfWork(db, outbox, fence) as uow:
        c = uow.conn
        for ev in events:
            now_wall = datetime.now(UTC)
            if isinstance(ev, OrderFilled):
                done = ev.remaining_qty == 0
                row = (
                    (
                        await c.execute(
                            update(orders)
                            .where(orders.c.id == ev.order_id)
                            .values(
                                filled_qty=ev.cumulative_qty,
                                filled_notional=orders.c.filled_notional + ev.qty * ev.price,
                                fill_count=orders.c.fill_count + 1,
                                status="filled" if done else "partially_filled",
                                filled_at=ev.ts if done else None,
                                status_reason="",
                                updated_at=now_wall,
                            )
                            .returning(*orders.c)
                        )
                    )
                    .mappings()
                    .one()
                )
                # one fill row (and ledger event) per instrument traded: the order's
                # symbol, or each leg of a spread, each with the quote it used
                parts = (
                    [(ev.execution_id, ev.symbol, ev.side, ev.qty, ev.price, ev.quote)]
                    if not ev.leg_fills
                    else [
                        (
                            f"{ev.execution_id}:{k}",
                            lf.symbol,
                            lf.side,
                            lf.qty,
                            lf.price,
                            lf.quote,
                        )
                        for k, lf in enumerate(ev.leg_fills, start=1)
                    ]
                )
                for exec_id, symbol, side, qty, price, quote in parts:
                    fill_row = {
                        "id": exec_id,
                        "order_id": ev.order_id,
                        "user_id": row["user_id"],
                        "account_id": row["account_id"],
                        "symbol": symbol,
                        "side": side.value,
                        "qty": qty,
                        "price": price,
                        "filled_at": ev.ts,
                        "quote_symbol": quote.symbol,
                        "nbbo_bid": quote.bid,
                        "nbbo_ask": quote.ask,
                        "nbbo_bid_size": quote.bid_size,
                        "nbbo_ask_size": quote.ask_size,
                        "quote_ts": quote.ts,
                        "explanation": ev.explanation,
                    }
                    await c.execute(fills.insert().values(**fill_row))
                    FILLS.inc()
                    fe = events_pb2.FillEvent(
                        fill=fill_to_pb(fill_row),
                        order=order_to_pb(row),
                        user_id=row["user_id"],
                        position_qty=dec_to_wire(
                            await _position_after(c, str(row["account_id"]), symbol)
                        ),
                    )
                    fe.recorded_at.FromDatetime(now_wall)
                    uow.publish(
                        f"mbt.fills.{row['account_id']}",
                        fe.SerializeToString(),
                        exec_id,
                        partition=user_partition(str(row["user_id"])),
                    )
                await records.audit(
                    uow,
                    sim_at,
                    "system",
                    "fill",
                    ev.order_id,
                    {
                        "execution_id": ev.execution_id,
                        "qty": str(ev.qty),
                        "price": str(ev.price),
                        "bid": str(ev.quote.bid),
                        "ask": str(ev.quote.ask),
                        "why": ev.explanation,
                    },
                )
            elif isinstance(ev, OrderCanceled | OrderExpired):
                status = "canceled" if isinstance(ev, OrderCanceled) else "expired"
                row = (
                    (
                        await c.execute(
                            update(orders)
                            .where(orders.c.id == ev.order_id)
                            .values(
                                status=status,
                                canceled_at=ev.ts,
                                status_reason=ev.reason,
                                updated_at=now_wall,
                            )
                            .returning(*orders.c)
                        )
                    )
                    .mappings()
                    .one()
                )
                records.emit_order(uow, status, row, row["user_id"])
                await records.audit(
                    uow,
                    sim_at,
                    actor if status == "canceled" else "system",
                    "cancel" if status == "canceled" else "expire",
                    ev.order_id,
                    {"reason": ev.reason},
                )
            elif isinstance(ev, FillDeferred):
                await c.execute(
                    update(orders).where(orders.c.id == ev.order_id).values(status_reason=ev.reason)
                )
            elif isinstance(ev, StopTriggered):
                await c.execute(
                    update(orders).where(orders.c.id == ev.order_id).values(triggered=True)
                )
                await records.audit(
                    uow,
                    sim_at,
                    "system",
                    "trigger",
                    ev.order_id,
                    {
                        "bid": str(ev.quote.bid),
                        "ask": str(ev.quote.ask),
                        "ts": ev.quote.ts.isoformat(),
                    },
                )

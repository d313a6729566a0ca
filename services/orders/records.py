"""Order rows outside the engine: lookups, row -> domain `Order`, order events, audit rows.

Every writer (commands, the accept pipeline, engine-event persistence, recovery) goes through
these, so an order event and an audit row look the same whoever writes them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import events_pb2
from services.orders.adapters.tables import LIVE_ORDER, audit_log, orders
from services.orders.convert import order_to_pb
from services.orders.domain.model import (
    FillPreference,
    Leg,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from services.orders.partitions import user_partition
from services.platform.bus import order_subject
from services.platform.db import UnitOfWork
from services.platform.errors import NotFound
from services.platform.wire import ts_to_wire

__all__ = [
    "OPEN_STATUSES",
    "audit",
    "domain_order",
    "emit_order",
    "order_event",
    "fetch",
    "fetch_by_client_id",
    "fetch_for_user",
    "open_order_ids",
]

OPEN_STATUSES = ("new", "accepted", "partially_filled")


async def fetch(db: AsyncEngine, order_id: str) -> dict[str, Any]:
    """The order row (it must exist)."""
    async with db.connect() as conn:
        row = (await conn.execute(select(orders).where(orders.c.id == order_id))).mappings().one()
    return dict(row)


async def fetch_for_user(db: AsyncEngine, user_id: str, order_id: str) -> dict[str, Any]:
    """The user's order; NOT_FOUND for a malformed id or another user's order (never FORBIDDEN)."""
    try:
        uuid.UUID(order_id)
    except ValueError:
        raise NotFound(f"order {order_id!r} not found", reason="ORDER_NOT_FOUND") from None
    async with db.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(
            f"order {order_id} not found",
            reason="ORDER_NOT_FOUND",
            metadata={"orderId": order_id},
        )
    return dict(row)


async def fetch_by_client_id(
    db: AsyncEngine, user_id: str, coid: str, placed: bool = False
) -> dict[str, Any] | None:
    """The user's order with this client_order_id: the one placed with it, else (unless
    `placed`) the newest attempt refused at submit (those do not use a client_order_id up)."""
    live = text(f"({LIVE_ORDER})")  # the partial unique index's own predicate: it is used
    q = select(orders).where(orders.c.user_id == user_id, orders.c.client_order_id == coid)
    async with db.connect() as conn:
        row = (await conn.execute(q.where(live))).mappings().first()
        if row is None and not placed:
            refused = q.order_by(orders.c.submitted_at.desc()).limit(1)
            row = (await conn.execute(refused)).mappings().first()
    return dict(row) if row else None


async def open_order_ids(db: AsyncEngine, user_id: str) -> list[str]:
    async with db.connect() as conn:
        ids = await conn.execute(
            select(orders.c.id).where(
                orders.c.user_id == user_id, orders.c.status.in_(OPEN_STATUSES)
            )
        )
        return [str(i) for i in ids.scalars()]


def domain_order(r: Any, rested: bool = False) -> Order:
    """The engine's view of an order row (``rested``: it has already seen a quote)."""
    return Order(
        id=r["id"],
        account_id=r["account_id"] or "",
        symbol=r["symbol"],
        side=Side(r["side"]),
        qty=Decimal(r["qty"]),
        order_type=OrderType(r["order_type"]),
        time_in_force=TimeInForce(r["time_in_force"]),
        accepted_at=r["accepted_at"],
        limit_price=Decimal(r["limit_price"]) if r["limit_price"] is not None else None,
        stop_price=Decimal(r["stop_price"]) if r["stop_price"] is not None else None,
        filled_qty=Decimal(r["filled_qty"]),
        filled_notional=Decimal(r["filled_notional"]),
        fill_count=int(r["fill_count"]),
        triggered=bool(r["triggered"]),
        status=OrderStatus(r["status"]),
        rested=rested,
        legs=tuple(
            Leg(symbol=x["symbol"], side=Side(x["side"]), ratio=int(x["ratio"]))
            for x in (r["legs"] or [])
        ),
        fill_preference=FillPreference(r["fill_preference"] or "aggressive"),
    )


def order_event(event: str, row: Any, user_id: str) -> tuple[str, bytes, str]:
    """An `OrderEvent` as an outbox row: (subject, payload, message id)."""
    msg = events_pb2.OrderEvent(
        event=event,
        order=order_to_pb(row),
        user_id=user_id,
        timestamp=ts_to_wire(datetime.now(UTC)),
    )
    return (
        order_subject(str(row["status"]), row["account_id"] or "none"),
        msg.SerializeToString(),
        f"{row['id']}:{event}:{uuid.uuid4().hex[:8]}",
    )


def emit_order(uow: UnitOfWork, event: str, row: Any, user_id: str) -> None:
    """Queue an `OrderEvent` in the unit of work's outbox (published after commit)."""
    uow.publish(*order_event(event, row, user_id), partition=user_partition(user_id))


async def audit(
    uow: UnitOfWork,
    sim_at: datetime,
    actor: str,
    action: str,
    order_id: str,
    detail: dict[str, Any],
) -> None:
    """Append one audit row in the unit of work's transaction."""
    await uow.conn.execute(
        audit_log.insert().values(
            actor=actor,
            action=action,
            order_id=order_id,
            sim_at=sim_at,
            detail=json.loads(json.dumps(detail, default=str)),
        )
    )

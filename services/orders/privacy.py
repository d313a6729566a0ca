"""GDPR for the orders schema: export, and erasure (orders, fills, outbox, bus, audit actor)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.orders.adapters.tables import audit_log, fills, orders, outbox
from services.platform.bus import TRADES_STREAM, Bus, trade_subjects
from services.platform.privacy import actor_hash, rows_to_json


async def export_user(engine: AsyncEngine, user_id: str) -> str:
    async with engine.connect() as conn:
        o = (await conn.execute(select(orders).where(orders.c.user_id == user_id))).mappings().all()
        f = (await conn.execute(select(fills).where(fills.c.user_id == user_id))).mappings().all()
        ids = [r["id"] for r in o]
        mirrored = (
            (
                await conn.execute(
                    text("SELECT * FROM orders.shadow_orders WHERE user_id = :u"), {"u": user_id}
                )
            )
            .mappings()
            .all()
        )
        a = (
            (
                await conn.execute(
                    select(audit_log).where(
                        or_(audit_log.c.actor == user_id, audit_log.c.order_id.in_(ids))
                    )
                )
            )
            .mappings()
            .all()
        )
    out: dict[str, list[dict[str, Any]]] = {
        "shadow_orders": [dict(r) for r in mirrored],
        "orders": [dict(r) for r in o],
        "fills": [dict(r) for r in f],
        "audit_log": [dict(r) for r in a],
    }
    return rows_to_json(out)


async def erase_user(engine: AsyncEngine, bus: Bus | None, secret: bytes, user_id: str) -> int:
    """Delete the user's orders, fills and outbox rows, purge their events from the bus, and
    keep audit rows with only a keyed hash of the actor. Idempotent."""
    n = 0
    async with engine.begin() as conn:
        account_ids = sorted(
            {
                a
                for a in (
                    await conn.execute(
                        select(orders.c.account_id).where(orders.c.user_id == user_id)
                    )
                ).scalars()
                if a
            }
        )
        order_ids = (
            (await conn.execute(select(orders.c.id).where(orders.c.user_id == user_id)))
            .scalars()
            .all()
        )
        n += (await conn.execute(delete(fills).where(fills.c.user_id == user_id))).rowcount or 0
        for acct in account_ids:
            n += (
                await conn.execute(delete(outbox).where(outbox.c.subject.in_(trade_subjects(acct))))
            ).rowcount or 0
        await conn.execute(
            update(audit_log)
            .where(or_(audit_log.c.actor == user_id, audit_log.c.order_id.in_(order_ids)))
            .values(actor=actor_hash(secret, user_id))
        )
        n += (await conn.execute(delete(orders).where(orders.c.user_id == user_id))).rowcount or 0
        shadow = text("DELETE FROM orders.shadow_orders WHERE user_id = :u")
        n += (await conn.execute(shadow, {"u": user_id})).rowcount or 0
    if bus is not None:
        stream = TRADES_STREAM.name or "MBT_TRADES"
        for acct in account_ids:
            for subject in trade_subjects(acct):
                await bus.js.purge_stream(stream, subject=subject)
    return n

"""GDPR for the accounts schema: export a user's rows, erase them on the erasure event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.adapters.tables import (
    accounts,
    activities,
    eod_snapshots,
    holds,
    imports,
    positions,
)
from services.platform.privacy import actor_hash, rows_to_json

OWNED = (activities, positions, holds, eod_snapshots, imports)


async def export_user(engine: AsyncEngine, user_id: str) -> str:
    async with engine.connect() as conn:
        acct = (
            (await conn.execute(select(accounts).where(accounts.c.user_id == user_id)))
            .mappings()
            .all()
        )
        out: dict[str, list[dict[str, Any]]] = {"accounts": [dict(r) for r in acct]}
        ids = [r["id"] for r in acct]
        for t in OWNED:
            rows = (await conn.execute(select(t).where(t.c.account_id.in_(ids)))).mappings().all()
            out[t.name] = [dict(r) for r in rows]
        audit = text("SELECT * FROM accounts.audit_log WHERE user_id = :u ORDER BY id")
        out["audit_log"] = [dict(r) for r in (await conn.execute(audit, {"u": user_id})).mappings()]
    return rows_to_json(out)


async def erase_user(engine: AsyncEngine, user_id: str, secret: bytes | None = None) -> int:
    """Hard-delete every accounts row about the user (idempotent). Returns rows deleted."""
    n = 0
    async with engine.begin() as conn:
        ids = (
            (await conn.execute(select(accounts.c.id).where(accounts.c.user_id == user_id)))
            .scalars()
            .all()
        )
        for t in OWNED:
            n += (await conn.execute(delete(t).where(t.c.account_id.in_(ids)))).rowcount or 0
        n += (await conn.execute(delete(accounts).where(accounts.c.id.in_(ids)))).rowcount or 0
        parity = text("DELETE FROM accounts.parity_reports WHERE user_id = :u")
        n += (await conn.execute(parity, {"u": user_id})).rowcount or 0
        # operator audit rows about the user keep only a keyed hash of who it was
        if secret is not None:
            await conn.execute(
                text("UPDATE accounts.audit_log SET user_id = :h WHERE user_id = :u"),
                {"h": actor_hash(secret, user_id), "u": user_id},
            )
    return n

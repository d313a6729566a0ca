"""GDPR in the sessions context: the export archive, erasure requests, and the erasure job.

Export: the user's own rows here plus each service's export (`ExportUserData`), zipped.
Erasure: requested now, carried out after a 30-day cooling-off by the `gdpr-erasure` job, which
publishes `mbt.sessions.erased` (every service deletes its own rows on it) and deletes the user,
their passkeys and sessions here; audit rows keep only a keyed hash of the actor.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import events_pb2
from services.platform.bus import Bus
from services.platform.credentials import CredentialRegistry
from services.platform.privacy import ERASURE_SUBJECT, actor_hash, rows_to_json
from services.sessions.adapters.tables import (
    api_keys,
    audit_log,
    ceremonies,
    credentials,
    erasures,
    sessions,
    users,
)

COOLING_OFF = timedelta(days=30)


async def export_own(engine: AsyncEngine, user_id: str) -> str:
    async with engine.connect() as conn:
        out: dict[str, list[dict[str, Any]]] = {}
        for name, t, col in (
            ("user", users, users.c.id),
            ("passkeys", credentials, credentials.c.user_id),
            ("sessions", sessions, sessions.c.user_id),
            ("api_keys", api_keys, api_keys.c.user_id),
            ("audit_log", audit_log, audit_log.c.actor),
            ("erasure_request", erasures, erasures.c.user_id),
        ):
            rows = (await conn.execute(select(t).where(col == user_id))).mappings().all()
            out[name] = [dict(r) for r in rows]
    for u in out["user"]:
        u.pop("user_handle", None)  # an opaque WebAuthn handle, not the user's data
    for k in out["api_keys"]:
        k.pop("secret_hash", None)  # keys are listed, never their secrets (nor hashes)
    return rows_to_json(out)


def zip_archive(parts: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in sorted(parts.items()):
            z.writestr(name, text)
    return buf.getvalue()


async def request_erasure(engine: AsyncEngine, user_id: str, now: datetime) -> datetime:
    erase_after = now + COOLING_OFF
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                insert(erasures)
                .values(user_id=user_id, erase_after=erase_after)
                .on_conflict_do_nothing()
                .returning(erasures.c.erase_after)
            )
        ).first()
        if row is None:  # already scheduled: keep the first date
            row = (
                await conn.execute(
                    select(erasures.c.erase_after).where(erasures.c.user_id == user_id)
                )
            ).one()
        await conn.execute(audit_log.insert().values(actor=user_id, action="erase_req", detail={}))
    return row.erase_after  # type: ignore[no-any-return]


async def cancel_erasure(engine: AsyncEngine, user_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(erasures).where(erasures.c.user_id == user_id))
        await conn.execute(
            audit_log.insert().values(actor=user_id, action="erase_cancel", detail={})
        )


async def erase_due(
    engine: AsyncEngine, bus: Bus, secret: bytes, now: datetime, registry: CredentialRegistry
) -> list[str]:
    """Carry out every erasure whose cooling-off has passed. Idempotent and restartable: the
    event is published (deduplicated by user) before the user's rows go."""
    async with engine.connect() as conn:
        due = (
            (await conn.execute(select(erasures.c.user_id).where(erasures.c.erase_after <= now)))
            .scalars()
            .all()
        )
    for user_id in due:
        ev = events_pb2.UserErasedEvent(user_id=user_id)
        ev.erased_at.FromDatetime(now.astimezone(UTC))
        await bus.js_publish(ERASURE_SUBJECT, ev.SerializeToString(), msg_id=f"erase:{user_id}")
        async with engine.connect() as conn:
            sids = (
                await conn.execute(select(sessions.c.id).where(sessions.c.user_id == user_id))
            ).scalars()
            kids = (
                await conn.execute(select(api_keys.c.key_id).where(api_keys.c.user_id == user_id))
            ).scalars()
            keys = [f"session.{sid}" for sid in sids] + [f"apikey.{kid}" for kid in kids]
        # the erased user's sessions and keys end everywhere, now (and leave the registry)
        for key in [*keys, f"user.{user_id}"]:
            await registry.delete(key)
        async with engine.begin() as conn:
            await conn.execute(
                update(audit_log)
                .where(audit_log.c.actor == user_id)
                .values(actor=actor_hash(secret, user_id))
            )
            email = (
                await conn.execute(select(users.c.email).where(users.c.id == user_id))
            ).scalar_one_or_none()
            if email is not None:
                await conn.execute(delete(ceremonies).where(ceremonies.c.email == email))
            await conn.execute(delete(users).where(users.c.id == user_id))  # cascades
            await conn.execute(
                audit_log.insert().values(
                    actor=actor_hash(secret, user_id), action="erased", detail={}
                )
            )
    return list(due)

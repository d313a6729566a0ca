"""API keys for programs (MQ-A strategies, alpaca-py): minted after a step-up, shown once.

A key is an id (``MK`` + 18 base-32 characters, like Alpaca's 20-character key ids) and a
256-bit secret. MBT keeps only the secret's keyed hash (`credentials.api_key_hash`), in its
table and in the credential registry every service checks; revoking a key updates both, so
every service refuses it at once.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.credentials import ApiKeyEntry, CredentialRegistry, api_key_hash
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound
from services.sessions.adapters.tables import api_keys, step_ups
from services.sessions.lifecycle import audit

__all__ = ["KEY_SCOPES", "ApiKeys", "MintedKey", "spend_step_up"]

KEY_SCOPES = ("trading", "data")
MAX_KEYS_PER_USER = 50


@dataclass(frozen=True)
class MintedKey:
    row: dict[str, Any]
    secret: str  # shown once, never stored


async def spend_step_up(
    conn: AsyncConnection,
    step_up_id: str,
    user_id: str,
    purpose: str,
    bound_to: str = "",
) -> dict[str, Any]:
    """Spend a step-up grant for ``purpose``: it must be the user's, unexpired, unused, and
    bound to exactly ``bound_to`` (a grant bound to some content approves only that content; an
    unbound one only actions that bind nothing). FAILED_PRECONDITION names what is wrong.
    Returns the grant's row (its bound digest and the passkey's assertion)."""
    try:
        uuid.UUID(step_up_id)
    except ValueError:
        raise FailedPrecondition(
            "a step-up is required: confirm with your passkey first", reason="STEP_UP_REQUIRED"
        ) from None
    now = datetime.now(UTC)
    row = (
        (
            await conn.execute(
                select(step_ups)
                .where(step_ups.c.id == step_up_id, step_ups.c.user_id == user_id)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise FailedPrecondition("unknown step-up; confirm again", reason="STEP_UP_REQUIRED")
    if row["used_at"] is not None:
        raise FailedPrecondition("this step-up was already used", reason="STEP_UP_USED")
    if row["expires_at"] <= now:
        raise FailedPrecondition(
            "the step-up has expired (5 minutes); confirm again", reason="STEP_UP_EXPIRED"
        )
    if row["bound_to"] != bound_to.lower():
        raise FailedPrecondition(
            "the step-up approves different content", reason="STEP_UP_MISMATCH"
        )
    await conn.execute(
        update(step_ups).where(step_ups.c.id == step_up_id).values(used_at=now, used_for=purpose)
    )
    return dict(row)


def _new_key_id() -> str:
    return "MK" + base64.b32encode(secrets.token_bytes(12)).decode()[:18]


def _check_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidArgument("name", "is required (a label such as 'bot')")
    if len(name) > 64 or not name.isprintable():
        raise InvalidArgument("name", "must be 1-64 printable characters")
    return name


def _check_scopes(raw: list[str]) -> list[str]:
    scopes = sorted({s.strip().lower() for s in raw if s.strip()}) or list(KEY_SCOPES)
    unknown = [s for s in scopes if s not in KEY_SCOPES]
    if unknown:
        raise InvalidArgument(
            "scopes", f"unknown scope {unknown[0]!r}; choose from {', '.join(KEY_SCOPES)}"
        )
    return scopes


class ApiKeys:
    def __init__(self, engine: AsyncEngine, secret: bytes, registry: CredentialRegistry) -> None:
        self.db = engine
        self.secret = secret
        self.registry = registry

    async def create(
        self, user_id: str, name: str, scopes: list[str], read_only: bool, step_up_id: str
    ) -> MintedKey:
        name, scope_list = _check_name(name), _check_scopes(scopes)
        secret = secrets.token_urlsafe(32)
        key_id = _new_key_id()
        digest = api_key_hash(self.secret, secret)
        async with self.db.begin() as conn:
            live = (
                await conn.execute(
                    select(api_keys.c.key_id).where(
                        api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None)
                    )
                )
            ).all()
            if len(live) >= MAX_KEYS_PER_USER:
                raise FailedPrecondition(
                    f"at most {MAX_KEYS_PER_USER} live keys; revoke one first",
                    reason="TOO_MANY_KEYS",
                )
            await spend_step_up(conn, step_up_id, user_id, "api_key")
            row = (
                (
                    await conn.execute(
                        api_keys.insert()
                        .values(
                            key_id=key_id,
                            user_id=user_id,
                            name=name,
                            secret_hash=digest,
                            scopes=scope_list,
                            read_only=read_only,
                            created_at=datetime.now(UTC),
                        )
                        .returning(*api_keys.c)
                    )
                )
                .mappings()
                .one()
            )
            await audit(
                conn, user_id, "key_mint", key_id=key_id, scopes=scope_list, read_only=read_only
            )
        await self.registry.put(
            f"apikey.{key_id}", ApiKeyEntry(user_id, digest, tuple(scope_list), read_only)
        )
        return MintedKey(dict(row), secret)

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(api_keys)
                .where(api_keys.c.user_id == user_id)
                .order_by(api_keys.c.created_at.desc())
            )
            return [dict(r) for r in rows.mappings()]

    async def revoke(self, user_id: str, key_id: str) -> dict[str, Any]:
        async with self.db.begin() as conn:
            row = (
                (
                    await conn.execute(
                        update(api_keys)
                        .where(api_keys.c.key_id == key_id[:32], api_keys.c.user_id == user_id)
                        .values(revoked_at=datetime.now(UTC))
                        .returning(*api_keys.c)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no API key {key_id!r}", reason="KEY_NOT_FOUND")
            await audit(conn, user_id, "key_revoke", key_id=key_id)
        await self.registry.put(
            f"apikey.{key_id}",
            ApiKeyEntry(
                user_id,
                str(row["secret_hash"]),
                tuple(row["scopes"]),
                bool(row["read_only"]),
                revoked=True,
            ),
        )
        return dict(row)

    async def project_all(self) -> int:
        async with self.db.connect() as conn:
            rows = (await conn.execute(select(api_keys))).mappings().all()
        for r in rows:
            await self.registry.put(
                f"apikey.{r['key_id']}",
                ApiKeyEntry(
                    str(r["user_id"]),
                    str(r["secret_hash"]),
                    tuple(r["scopes"]),
                    bool(r["read_only"]),
                    r["revoked_at"] is not None,
                ),
            )
        return len(rows)

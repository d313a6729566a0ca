"""Sessions from sign-in to sign-out: access tokens, rotating refresh tokens, revocation.

A session lives 30 days from its passkey sign-in (never extended). Within it the caller holds
a 15-minute access JWT and an opaque refresh token (stored only as SHA-256) that buys one new
pair and is then spent. Presenting a spent refresh token means two parties hold it — it was
stolen or replayed — so the whole session (the token family) is revoked everywhere (RFC 9700
§4.14). Every change is projected into the credential registry that all services check.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.credentials import CredentialRegistry, SessionEntry, UserEntry
from services.platform.errors import NotFound, Unauthenticated
from services.platform.tokens import SessionClaims, mint_session_token
from services.sessions.adapters.tables import audit_log, refresh_tokens, sessions, users

__all__ = ["ACCESS_TTL", "SESSION_TTL", "OpenedSession", "SessionLifecycle", "token_hash"]

ACCESS_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(days=30)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    user_id: str
    email: str
    tier: str
    token: str
    expires_at: datetime
    access_expires_at: datetime
    refresh_token: str
    created_at: datetime


async def audit(conn: AsyncConnection, actor: str, action: str, **detail: Any) -> None:
    await conn.execute(audit_log.insert().values(actor=actor, action=action, detail=detail))


class SessionLifecycle:
    def __init__(self, engine: AsyncEngine, secret: bytes, registry: CredentialRegistry) -> None:
        self.db = engine
        self.secret = secret
        self.registry = registry

    def _mint(
        self, user: Any, sid: str, now: datetime, session_end: datetime
    ) -> tuple[str, datetime]:
        access_end = min(now + ACCESS_TTL, session_end)
        token = mint_session_token(
            secret=self.secret,
            claims=SessionClaims(
                user_id=str(user["id"]),
                session_id=sid,
                tier=str(user["tier"]),
                issued_at=now,
                expires_at=access_end,
            ),
        )
        return token, access_end

    async def _issue_refresh(
        self, conn: AsyncConnection, sid: str, now: datetime, end: datetime, parent: str | None
    ) -> str:
        token = secrets.token_urlsafe(32)
        await conn.execute(
            refresh_tokens.insert().values(
                token_hash=token_hash(token),
                session_id=sid,
                parent_hash=parent,
                issued_at=now,
                expires_at=end,
            )
        )
        return token

    async def open(self, user_id: str) -> OpenedSession:
        """A new session after a passkey ceremony (a new id: no fixation)."""
        now = datetime.now(UTC).replace(microsecond=0)
        sid, end = str(uuid.uuid4()), now + SESSION_TTL
        async with self.db.begin() as conn:
            user = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().one()
            await conn.execute(
                sessions.insert().values(id=sid, user_id=user_id, created_at=now, expires_at=end)
            )
            refresh = await self._issue_refresh(conn, sid, now, end, None)
        # every service must know the session before anyone presents its token
        await self.registry.put(f"user.{user_id}", UserEntry(str(user["tier"])))
        await self.registry.put(f"session.{sid}", SessionEntry(user_id, int(end.timestamp())))
        token, access_end = self._mint(user, sid, now, end)
        return OpenedSession(
            sid,
            user_id,
            str(user["email"]),
            str(user["tier"]),
            token,
            end,
            access_end,
            refresh,
            now,
        )

    async def refresh(self, presented: str) -> OpenedSession:
        """Spend a refresh token for a new access token and refresh token."""
        if not presented or len(presented) > 256:
            raise Unauthenticated("a refresh token is required", reason="REFRESH_REJECTED")
        now = datetime.now(UTC).replace(microsecond=0)
        h = token_hash(presented)
        async with self.db.begin() as conn:
            spent = (
                await conn.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.token_hash == h, refresh_tokens.c.used_at.is_(None))
                    .values(used_at=now)
                    .returning(refresh_tokens.c.session_id, refresh_tokens.c.expires_at)
                )
            ).first()
            if spent is None:
                known = (
                    await conn.execute(
                        select(refresh_tokens.c.session_id).where(refresh_tokens.c.token_hash == h)
                    )
                ).first()
                if known is None:
                    raise Unauthenticated("unknown refresh token", reason="REFRESH_REJECTED")
                sid = str(known.session_id)
            else:
                sid = str(spent.session_id)
            row = (
                (
                    await conn.execute(
                        select(sessions, users.c.email, users.c.tier)
                        .join(users, users.c.id == sessions.c.user_id)
                        .where(sessions.c.id == sid)
                    )
                )
                .mappings()
                .one()
            )
            if spent is None:  # a spent token again: someone else has it
                await audit(conn, str(row["user_id"]), "refresh_reuse", session_id=sid)
            elif row["revoked_at"] is not None or row["expires_at"] <= now:
                raise Unauthenticated("session has ended; sign in again", reason="SESSION_REVOKED")
            else:
                await conn.execute(
                    update(sessions).where(sessions.c.id == sid).values(last_refreshed_at=now)
                )
                refresh = await self._issue_refresh(conn, sid, now, row["expires_at"], h)
                await audit(conn, str(row["user_id"]), "refresh", session_id=sid)
        if spent is None:
            await self.revoke(sid, "system", reason="refresh token reuse")
            raise Unauthenticated(
                "refresh token already used: the session is revoked everywhere; sign in again",
                reason="REFRESH_REUSED",
            )
        user = {"id": row["user_id"], "tier": row["tier"]}
        token, access_end = self._mint(user, sid, now, row["expires_at"])
        return OpenedSession(
            sid,
            str(row["user_id"]),
            str(row["email"]),
            str(row["tier"]),
            token,
            row["expires_at"],
            access_end,
            refresh,
            row["created_at"],
        )

    async def revoke(self, session_id: str, actor: str, *, reason: str = "logout") -> datetime:
        """End a session at once, everywhere (idempotent)."""
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id)
                    .values(revoked_at=datetime.now(UTC))
                    .returning(sessions.c.user_id, sessions.c.expires_at)
                )
            ).first()
            if row is None:
                raise NotFound("session not found", reason="SESSION_NOT_FOUND")
            await audit(
                conn,
                actor,
                "logout" if reason == "logout" else "revoke",
                reason=reason,
                session_id=session_id,
            )
        await self.registry.put(
            f"session.{session_id}",
            SessionEntry(str(row.user_id), int(row.expires_at.timestamp()), revoked=True),
        )
        return row.expires_at  # type: ignore[no-any-return]

    async def revoke_for_user(self, user_id: str, session_id: str, actor: str) -> datetime:
        """Revoke one of ``user_id``'s own sessions (another user's is "not found")."""
        try:
            uuid.UUID(session_id)
        except ValueError:
            raise NotFound("session not found", reason="SESSION_NOT_FOUND") from None
        async with self.db.connect() as conn:
            owner = (
                await conn.execute(select(sessions.c.user_id).where(sessions.c.id == session_id))
            ).scalar_one_or_none()
        if owner != user_id:
            raise NotFound("session not found", reason="SESSION_NOT_FOUND")
        return await self.revoke(session_id, actor, reason="revoked by user")

    async def list_for_user(self, user_id: str) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(sessions, users.c.email, users.c.tier)
                .join(users, users.c.id == sessions.c.user_id)
                .where(
                    sessions.c.user_id == user_id,
                    sessions.c.revoked_at.is_(None),
                    sessions.c.expires_at > now,
                )
                .order_by(sessions.c.created_at.desc())
            )
            return [dict(r) for r in rows.mappings()]

    async def project_all(self) -> int:
        """Write every live session and every user's tier into the registry (on start, so a
        crash between a commit and its projection heals)."""
        now = datetime.now(UTC)
        n = 0
        async with self.db.connect() as conn:
            for u in (await conn.execute(select(users.c.id, users.c.tier))).all():
                await self.registry.put(f"user.{u.id}", UserEntry(str(u.tier)))
            live = await conn.execute(
                select(
                    sessions.c.id, sessions.c.user_id, sessions.c.expires_at, sessions.c.revoked_at
                ).where(sessions.c.expires_at > now)
            )
            for s in live.all():
                await self.registry.put(
                    f"session.{s.id}",
                    SessionEntry(
                        str(s.user_id), int(s.expires_at.timestamp()), s.revoked_at is not None
                    ),
                )
                n += 1
        return n

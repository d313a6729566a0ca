"""Sessions service layer: passkey ceremonies, users, sessions and revocation."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from services.platform.tokens import SessionClaims, mint_session_token
from services.sessions.adapters.tables import audit_log, ceremonies, credentials, sessions, users
from services.sessions.domain import passkeys

CEREMONY_TTL = timedelta(minutes=5)
SESSION_TTL = timedelta(hours=12)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROFILES = ("trial", "income_builder", "diversifier")


@dataclass(frozen=True)
class Ceremony:
    id: str
    options_json: str
    expires_at: datetime


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    user_id: str
    email: str
    tier: str
    token: str
    expires_at: datetime
    profile: str


def check_email(raw: str) -> str:
    email = raw.strip().lower()
    if not email:
        raise InvalidArgument("email", "is required")
    if len(email) > 320 or not EMAIL_RE.match(email):
        raise InvalidArgument("email", f"not an email address: {raw!r}")
    return email


@dataclass
class SessionsConfig:
    rp_id: str
    rp_name: str
    origin: str
    secret: bytes


class SessionsHandlers:
    def __init__(self, engine: AsyncEngine, cfg: SessionsConfig) -> None:
        self.db = engine
        self.cfg = cfg

    async def begin_registration(
        self, raw_email: str, profile: str, account_type: str = ""
    ) -> Ceremony:
        email = check_email(raw_email)
        profile = (profile or "diversifier").strip().lower()
        account_type = (account_type or "cash").strip().lower()
        if account_type not in ("cash", "margin"):
            raise InvalidArgument("account_type", f"must be cash or margin; got {account_type!r}")
        if profile not in PROFILES:
            raise InvalidArgument(
                "profile", f"must be one of {', '.join(PROFILES)}; got {profile!r}"
            )
        async with self.db.begin() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.email == email))).first():
                raise AlreadyExists(
                    f"{email} is already registered; use `mbt login`", reason="EMAIL_TAKEN"
                )
            handle = os.urandom(64)
            options, challenge = passkeys.begin_registration(
                rp_id=self.cfg.rp_id,
                rp_name=self.cfg.rp_name,
                user_name=email,
                user_handle=handle,
                exclude_credential_ids=[],
            )
            cid = str(uuid.uuid4())
            expires = datetime.now(UTC) + CEREMONY_TTL
            await conn.execute(
                ceremonies.insert().values(
                    id=cid,
                    purpose="register",
                    email=email,
                    user_handle=handle,
                    challenge=challenge,
                    context={"profile": profile, "account_type": account_type},
                    expires_at=expires,
                )
            )
        return Ceremony(cid, options, expires)

    async def _consume(self, ceremony_id: str, purpose: str) -> dict[str, Any]:
        """Delete the ceremony before verifying, so a failed attempt also burns the challenge."""
        try:
            uuid.UUID(ceremony_id)
        except ValueError:
            raise InvalidArgument("ceremony_id", "not a ceremony id") from None
        async with self.db.begin() as conn:
            row = (
                (
                    await conn.execute(
                        delete(ceremonies)
                        .where(ceremonies.c.id == ceremony_id, ceremonies.c.purpose == purpose)
                        .returning(*ceremonies.c)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(
                "ceremony not found or already used; start again", reason="CEREMONY_NOT_FOUND"
            )
        if row["expires_at"] <= datetime.now(UTC):
            raise FailedPrecondition("ceremony expired; start again", reason="CEREMONY_EXPIRED")
        return dict(row)

    async def finish_registration(
        self,
        ceremony_id: str,
        credential_json: str,
        open_account: Callable[[str, str, str], Awaitable[None]],
    ) -> tuple[str, str, str]:
        """Verify the new passkey, open the account, then create the user (in that order, so a
        failure never leaves a user without an account). Returns (user_id, email, profile)."""
        if not credential_json:
            raise InvalidArgument("credential_json", "is required")
        c = await self._consume(ceremony_id, "register")
        try:
            reg = passkeys.finish_registration(
                credential_json=credential_json,
                challenge=bytes(c["challenge"]),
                rp_id=self.cfg.rp_id,
                origin=self.cfg.origin,
            )
        except passkeys.PasskeyRejected as exc:
            raise Unauthenticated(
                f"passkey rejected: {exc.reason}", reason="PASSKEY_REJECTED"
            ) from exc
        user_id = str(uuid.uuid4())
        email = str(c["email"])
        profile = str((c["context"] or {}).get("profile", "diversifier"))
        await open_account(user_id, profile, str(c["context"].get("account_type") or "cash"))
        async with self.db.begin() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.email == email))).first():
                raise AlreadyExists(f"{email} is already registered", reason="EMAIL_TAKEN")
            await conn.execute(
                users.insert().values(
                    id=user_id, email=email, user_handle=c["user_handle"], tier="free"
                )
            )
            await conn.execute(
                credentials.insert().values(
                    credential_id=reg.credential_id,
                    user_id=user_id,
                    public_key=reg.public_key,
                    sign_count=reg.sign_count,
                    transports=reg.transports,
                    aaguid=reg.aaguid,
                )
            )
            await conn.execute(
                audit_log.insert().values(
                    actor=user_id, action="register", detail={"aaguid": reg.aaguid}
                )
            )
        return user_id, email, profile

    async def begin_login(self, raw_email: str) -> Ceremony:
        email = check_email(raw_email)
        async with self.db.begin() as conn:
            user = (
                (await conn.execute(select(users).where(users.c.email == email))).mappings().first()
            )
            if user is None:
                raise NotFound(
                    f"no user {email}; sign up with `mbt signup`", reason="USER_NOT_FOUND"
                )
            cred_ids = [
                bytes(r.credential_id)
                for r in await conn.execute(
                    select(credentials.c.credential_id).where(credentials.c.user_id == user["id"])
                )
            ]
            options, challenge = passkeys.begin_login(
                rp_id=self.cfg.rp_id, allow_credential_ids=cred_ids
            )
            cid = str(uuid.uuid4())
            expires = datetime.now(UTC) + CEREMONY_TTL
            await conn.execute(
                ceremonies.insert().values(
                    id=cid,
                    purpose="login",
                    email=email,
                    user_handle=user["user_handle"],
                    challenge=challenge,
                    context={"user_id": user["id"]},
                    expires_at=expires,
                )
            )
        return Ceremony(cid, options, expires)

    async def finish_login(self, ceremony_id: str, credential_json: str) -> tuple[str, str, str]:
        if not credential_json:
            raise InvalidArgument("credential_json", "is required")
        c = await self._consume(ceremony_id, "login")
        expected_user = str((c["context"] or {}).get("user_id"))
        try:
            cred_id = passkeys.credential_id_of(credential_json)
        except passkeys.PasskeyRejected as exc:
            raise InvalidArgument("credential_json", exc.reason) from exc
        async with self.db.begin() as conn:
            row = (
                (
                    await conn.execute(
                        select(credentials).where(credentials.c.credential_id == cred_id)
                    )
                )
                .mappings()
                .first()
            )
            # the credential must belong to the user the ceremony was started for
            if row is None or row["user_id"] != expected_user:
                raise Unauthenticated(
                    "passkey rejected: unknown credential", reason="PASSKEY_REJECTED"
                )
            try:
                new_count = passkeys.finish_login(
                    credential_json=credential_json,
                    challenge=bytes(c["challenge"]),
                    rp_id=self.cfg.rp_id,
                    origin=self.cfg.origin,
                    public_key=bytes(row["public_key"]),
                    sign_count=int(row["sign_count"]),
                )
            except passkeys.PasskeyRejected as exc:
                await conn.execute(
                    audit_log.insert().values(
                        actor=expected_user, action="login_failed", detail={"reason": exc.reason}
                    )
                )
                raise Unauthenticated(
                    f"passkey rejected: {exc.reason}", reason="PASSKEY_REJECTED"
                ) from exc
            await conn.execute(
                update(credentials)
                .where(credentials.c.credential_id == cred_id)
                .values(sign_count=new_count, last_used_at=datetime.now(UTC))
            )
            user = (
                (await conn.execute(select(users).where(users.c.id == expected_user)))
                .mappings()
                .one()
            )
            await conn.execute(
                audit_log.insert().values(actor=expected_user, action="login", detail={})
            )
        return str(user["id"]), str(user["email"]), ""

    async def audit(self, actor: str, action: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(audit_log.insert().values(actor=actor, action=action, detail={}))

    async def open_session(self, user_id: str) -> OpenedSession:
        now = datetime.now(UTC).replace(microsecond=0)
        sid = str(uuid.uuid4())
        async with self.db.begin() as conn:
            user = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().one()
            await conn.execute(
                sessions.insert().values(
                    id=sid, user_id=user_id, created_at=now, expires_at=now + SESSION_TTL
                )
            )
        token = mint_session_token(
            secret=self.cfg.secret,
            claims=SessionClaims(
                user_id=user_id,
                session_id=sid,
                tier=str(user["tier"]),
                issued_at=now,
                expires_at=now + SESSION_TTL,
            ),
        )
        return OpenedSession(
            sid, user_id, str(user["email"]), str(user["tier"]), token, now + SESSION_TTL, ""
        )

    async def current(self, session_id: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(sessions, users.c.email, users.c.tier)
                        .join(users, users.c.id == sessions.c.user_id)
                        .where(sessions.c.id == session_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None or row["revoked_at"] is not None:
            raise Unauthenticated(
                "session has been revoked; sign in again", reason="SESSION_REVOKED"
            )
        return dict(row)

    async def revoke(self, session_id: str, actor: str) -> datetime:
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id)
                    .values(revoked_at=func_now())
                    .returning(sessions.c.expires_at)
                )
            ).first()
            await conn.execute(
                audit_log.insert().values(
                    actor=actor, action="logout", detail={"session_id": session_id}
                )
            )
        if row is None:
            raise NotFound("session not found", reason="SESSION_NOT_FOUND")
        return row.expires_at  # type: ignore[no-any-return]


def func_now() -> datetime:
    return datetime.now(UTC)

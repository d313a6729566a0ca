"""Sessions service layer: passkey ceremonies, users, sessions and revocation."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.sessions.adapters.tables import (
    audit_log,
    ceremonies,
    credentials,
    sessions,
    step_ups,
    users,
)
from services.sessions.domain import passkeys

CEREMONY_TTL = timedelta(minutes=5)
STEP_UP_TTL = timedelta(minutes=5)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROFILES = ("trial", "income_builder", "diversifier")


@dataclass(frozen=True)
class Ceremony:
    id: str
    options_json: str
    expires_at: datetime


@dataclass(frozen=True)
class StepUpGrant:
    id: str
    expires_at: datetime
    bound_sha256: str


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
            return await self._assertion_ceremony(conn, user, "login", {"user_id": user["id"]})

    async def _assertion_ceremony(
        self,
        conn: AsyncConnection,
        user: Any,
        purpose: str,
        context: dict[str, Any],
        challenge: bytes | None = None,
    ) -> Ceremony:
        """A WebAuthn assertion challenge for one of ``user``'s passkeys, kept for 5 minutes."""
        cred_ids = [
            bytes(r.credential_id)
            for r in await conn.execute(
                select(credentials.c.credential_id).where(credentials.c.user_id == user["id"])
            )
        ]
        options, challenge = passkeys.begin_login(
            rp_id=self.cfg.rp_id, allow_credential_ids=cred_ids, challenge=challenge
        )
        cid = str(uuid.uuid4())
        expires = datetime.now(UTC) + CEREMONY_TTL
        await conn.execute(
            ceremonies.insert().values(
                id=cid,
                purpose=purpose,
                email=user["email"],
                user_handle=user["user_handle"],
                challenge=challenge,
                context=context,
                expires_at=expires,
            )
        )
        return Ceremony(cid, options, expires)

    async def _verify_assertion(
        self, c: dict[str, Any], credential_json: str, action: str
    ) -> dict[str, Any]:
        """Check a passkey assertion (user verification required) for ceremony ``c``; return
        the user row. Failures are audited and refused as UNAUTHENTICATED."""
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
                        actor=expected_user,
                        action=f"{action}_failed",
                        detail={"reason": exc.reason},
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
        return dict(user)

    async def finish_login(self, ceremony_id: str, credential_json: str) -> tuple[str, str, str]:
        if not credential_json:
            raise InvalidArgument("credential_json", "is required")
        c = await self._consume(ceremony_id, "login")
        user = await self._verify_assertion(c, credential_json, "login")
        await self.audit(str(user["id"]), "login")
        return str(user["id"]), str(user["email"]), ""

    async def begin_step_up(self, user_id: str, session_id: str, bind_sha256: str) -> Ceremony:
        """A passkey challenge for a sensitive action by the signed-in user."""
        bind = bind_sha256.strip().lower()
        if bind and (len(bind) != 64 or any(ch not in "0123456789abcdef" for ch in bind)):
            raise InvalidArgument("bind_sha256", "must be 64 hex digits (a SHA-256)")
        async with self.db.begin() as conn:
            user = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().one()
            context = {"user_id": user_id, "session_id": session_id, "bind": bind}
            # bound to content, the challenge *is* the content's digest behind a fresh nonce: the
            # passkey's signature over clientDataJSON then covers exactly what it approves
            challenge = secrets.token_bytes(16) + bytes.fromhex(bind) if bind else None
            return await self._assertion_ceremony(conn, user, "step_up", context, challenge)

    async def finish_step_up(
        self, ceremony_id: str, credential_json: str, user_id: str, session_id: str
    ) -> StepUpGrant:
        """Verify the step-up assertion; the grant lives STEP_UP_TTL and is spent once."""
        if not credential_json:
            raise InvalidArgument("credential_json", "is required")
        c = await self._consume(ceremony_id, "step_up")
        ctx = c["context"] or {}
        if ctx.get("user_id") != user_id or ctx.get("session_id") != session_id:
            raise PermissionDenied(
                "this step-up was started by another session", reason="STEP_UP_MISMATCH"
            )
        await self._verify_assertion(c, credential_json, "step_up")
        now = datetime.now(UTC)
        grant = StepUpGrant(str(uuid.uuid4()), now + STEP_UP_TTL, str(ctx.get("bind") or ""))
        async with self.db.begin() as conn:
            await conn.execute(
                step_ups.insert().values(
                    id=grant.id,
                    user_id=user_id,
                    session_id=session_id,
                    bound_to=grant.bound_sha256,
                    assertion=credential_json,
                    created_at=now,
                    expires_at=grant.expires_at,
                )
            )
            await conn.execute(
                audit_log.insert().values(
                    actor=user_id,
                    action="step_up",
                    detail={"step_up_id": grant.id, "bound_to": grant.bound_sha256},
                )
            )
        return grant

    async def email_of(self, user_id: str) -> str:
        async with self.db.connect() as conn:
            return str(
                (await conn.execute(select(users.c.email).where(users.c.id == user_id))).scalar()
                or ""
            )

    async def audit(self, actor: str, action: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(audit_log.insert().values(actor=actor, action=action, detail={}))

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

    async def lookup(self, raw_email: str) -> tuple[str, str, str]:
        """A user's (id, email, tier) by email, or NOT_FOUND."""
        email = check_email(raw_email)
        async with self.db.connect() as conn:
            user = (
                (await conn.execute(select(users).where(users.c.email == email))).mappings().first()
            )
        if user is None:
            raise NotFound(f"no user {email}", reason="USER_NOT_FOUND")
        return str(user["id"]), str(user["email"]), str(user["tier"])

    async def set_tier(
        self, raw_email: str, tier: str, actor: str, reason: str
    ) -> tuple[str, str, str]:
        """Operator: change a user's tier (audited with who and why)."""
        email = check_email(raw_email)
        async with self.db.begin() as conn:
            user = (
                (await conn.execute(select(users).where(users.c.email == email).with_for_update()))
                .mappings()
                .first()
            )
            if user is None:
                raise NotFound(f"no user {email}", reason="USER_NOT_FOUND")
            await conn.execute(update(users).where(users.c.id == user["id"]).values(tier=tier))
            await conn.execute(
                audit_log.insert().values(
                    actor=actor[:80],
                    action="tier_change",
                    detail={
                        "user_id": user["id"],
                        "from": user["tier"],
                        "to": tier,
                        "reason": reason[:500],
                    },
                )
            )
        return str(user["id"]), email, str(user["tier"])

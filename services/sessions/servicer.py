"""SessionsService over gRPC: passkeys, sessions and refresh, step-up, API keys, tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
from raxx.mbt.v1 import handoff_service_pb2_grpc as handoff_grpc
from raxx.mbt.v1 import orders_service_pb2_grpc as orders_grpc
from raxx.mbt.v1 import sessions_service_pb2 as pb
from raxx.mbt.v1 import sessions_service_pb2_grpc as pb_grpc
from services.platform.auth import (
    current_principal,
    require_operator,
    require_passkey_session,
    require_service,
    require_user,
)
from services.platform.bus import Bus
from services.platform.clients import ServiceChannel
from services.platform.credentials import UserEntry
from services.platform.errors import InvalidArgument, PermissionDenied
from services.platform.flags import KILL_SWITCHES, PAPER_MODES, FlagValue, RuntimeFlags, flag_key
from services.platform.wire import ts_to_wire
from services.sessions import privacy
from services.sessions.api_keys import ApiKeys, spend_step_up
from services.sessions.handlers import Ceremony, SessionsHandlers
from services.sessions.lifecycle import OpenedSession, SessionLifecycle, audit

Ctx = grpc.aio.ServicerContext[Any, Any]
PUBLIC_METHODS = frozenset(
    {"BeginRegistration", "FinishRegistration", "BeginLogin", "FinishLogin", "RefreshSession"}
)
TIERS = ("free", "pro", "pro_plus")


def _ceremony(c: Ceremony) -> pb.CeremonyChallenge:
    return pb.CeremonyChallenge(
        ceremony_id=c.id, options_json=c.options_json, expires_at=ts_to_wire(c.expires_at)
    )


def _session(s: OpenedSession) -> pb.Session:
    return pb.Session(
        session_id=s.session_id,
        user_id=s.user_id,
        email=s.email,
        tier=s.tier,
        token=s.token,
        expires_at=ts_to_wire(s.expires_at),
        refresh_token=s.refresh_token,
        access_expires_at=ts_to_wire(s.access_expires_at),
        created_at=ts_to_wire(s.created_at),
    )


def _api_key(row: dict[str, Any], secret: str = "") -> pb.ApiKey:
    return pb.ApiKey(
        key_id=str(row["key_id"]),
        secret=secret,
        name=str(row["name"]),
        scopes=list(row["scopes"]),
        read_only=bool(row["read_only"]),
        created_at=ts_to_wire(row["created_at"]),
        revoked_at=ts_to_wire(row["revoked_at"]),
        last_used_at=ts_to_wire(row["last_used_at"]),
    )


def _flag(key: str, v: FlagValue, email: str) -> pb.RuntimeFlag:
    return pb.RuntimeFlag(
        key=key,
        value=v.value,
        set_by=v.by,
        reason=v.reason,
        set_at=v.at,
        source=v.source,
        email=email,
    )


class SessionsServicer(pb_grpc.SessionsServiceServicer):
    def __init__(
        self,
        handlers: SessionsHandlers,
        accounts: ServiceChannel,
        bus: Bus,
        orders: ServiceChannel,
        lifecycle: SessionLifecycle,
        keys: ApiKeys,
        handoff: ServiceChannel | None = None,
        flags: RuntimeFlags | None = None,
    ) -> None:
        self.flags = flags or RuntimeFlags()
        self.handoff = handoff
        self.handoff_stub = (
            handoff_grpc.HandoffServiceStub(handoff.channel) if handoff is not None else None
        )
        self.lifecycle = lifecycle
        self.keys = keys
        self.orders = orders
        self.orders_stub = orders_grpc.OrdersServiceStub(orders.channel)
        self.h = handlers
        self.accounts = accounts
        self.accounts_stub = acct_grpc.AccountsServiceStub(accounts.channel)
        self.bus = bus

    async def _ensure_account(self, user_id: str, profile: str, account_type: str = "") -> None:
        # idempotent: an existing account is left as it is
        await self.accounts.call(
            self.accounts_stub.OpenAccount,
            acct_pb.OpenAccountRequest(
                user_id=user_id,
                profile=profile or "diversifier",
                tier="free",
                account_type=account_type or "cash",
            ),
        )

    async def BeginRegistration(
        self, request: pb.BeginRegistrationRequest, context: Ctx
    ) -> pb.CeremonyChallenge:
        return _ceremony(
            await self.h.begin_registration(request.email, request.profile, request.account_type)
        )

    async def FinishRegistration(
        self, request: pb.FinishRegistrationRequest, context: Ctx
    ) -> pb.Session:
        user_id, _email, _profile = await self.h.finish_registration(
            request.ceremony_id, request.credential_json, self._ensure_account
        )
        return _session(await self.lifecycle.open(user_id))

    async def BeginLogin(self, request: pb.BeginLoginRequest, context: Ctx) -> pb.CeremonyChallenge:
        return _ceremony(await self.h.begin_login(request.email))

    async def FinishLogin(self, request: pb.FinishLoginRequest, context: Ctx) -> pb.Session:
        user_id, _email, _ = await self.h.finish_login(request.ceremony_id, request.credential_json)
        await self._ensure_account(user_id, "")
        return _session(await self.lifecycle.open(user_id))

    async def RefreshSession(self, request: pb.RefreshSessionRequest, context: Ctx) -> pb.Session:
        return _session(await self.lifecycle.refresh(request.refresh_token))

    async def BeginStepUp(
        self, request: pb.BeginStepUpRequest, context: Ctx
    ) -> pb.CeremonyChallenge:
        user = require_passkey_session()
        return _ceremony(
            await self.h.begin_step_up(user.user_id, user.session_id, request.bind_sha256)
        )

    async def FinishStepUp(self, request: pb.FinishStepUpRequest, context: Ctx) -> pb.StepUp:
        user = require_passkey_session()
        grant = await self.h.finish_step_up(
            request.ceremony_id, request.credential_json, user.user_id, user.session_id
        )
        return pb.StepUp(
            step_up_id=grant.id,
            expires_at=ts_to_wire(grant.expires_at),
            bound_sha256=grant.bound_sha256,
        )

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Ctx
    ) -> pb.ListSessionsResponse:
        user = require_passkey_session()
        rows = await self.lifecycle.list_for_user(user.user_id)
        return pb.ListSessionsResponse(
            sessions=[
                pb.Session(
                    session_id=str(r["id"]),
                    user_id=user.user_id,
                    email=str(r["email"]),
                    tier=str(r["tier"]),
                    expires_at=ts_to_wire(r["expires_at"]),
                    created_at=ts_to_wire(r["created_at"]),
                    current=str(r["id"]) == user.session_id,
                )
                for r in rows
            ]
        )

    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Ctx
    ) -> pb.RevokeCurrentSessionResponse:
        user = require_passkey_session()
        await self.lifecycle.revoke_for_user(user.user_id, request.session_id, user.user_id)
        return pb.RevokeCurrentSessionResponse(session_id=request.session_id)

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Ctx) -> pb.ApiKey:
        user = require_passkey_session()
        minted = await self.keys.create(
            user.user_id,
            request.name,
            list(request.scopes),
            request.read_only,
            request.step_up_id,
        )
        return _api_key(minted.row, minted.secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Ctx
    ) -> pb.ListApiKeysResponse:
        user = require_passkey_session()
        return pb.ListApiKeysResponse(
            keys=[_api_key(r) for r in await self.keys.list(user.user_id)]
        )

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Ctx) -> pb.ApiKey:
        user = require_passkey_session()
        return _api_key(await self.keys.revoke(user.user_id, request.key_id))

    async def SetUserTier(self, request: pb.SetUserTierRequest, context: Ctx) -> pb.UserTier:
        operator = require_operator()
        tier = request.tier.strip().lower()
        if tier not in TIERS:
            raise InvalidArgument(
                "tier", f"must be one of {', '.join(TIERS)}; got {request.tier!r}"
            )
        user_id, email, previous = await self.h.set_tier(
            request.email, tier, operator.user_id, request.reason
        )
        # accounts keeps the tier for retention; the registry for limits and market data
        await self.accounts.call(
            self.accounts_stub.SetAccountTier,
            acct_pb.SetAccountTierRequest(user_id=user_id, tier=tier),
        )
        await self.lifecycle.registry.put(f"user.{user_id}", UserEntry(tier))
        return pb.UserTier(user_id=user_id, email=email, tier=tier, previous_tier=previous)

    async def SpendStepUp(self, request: pb.SpendStepUpRequest, context: Ctx) -> pb.SpentStepUp:
        require_service()
        if not request.purpose:
            raise InvalidArgument("purpose", "is required")
        async with self.h.db.begin() as conn:
            row = await spend_step_up(
                conn, request.step_up_id, request.user_id, request.purpose, request.bound_sha256
            )
        return pb.SpentStepUp(
            bound_sha256=str(row["bound_to"]), assertion_json=str(row["assertion"] or "")
        )

    async def SetRuntimeFlag(
        self, request: pb.SetRuntimeFlagRequest, context: Ctx
    ) -> pb.RuntimeFlag:
        operator = require_operator()
        name, value = request.name.strip().lower(), request.value.strip().lower()
        if not request.reason.strip():
            raise InvalidArgument("reason", "is required: say why (it is kept in the audit log)")
        user_id = email = ""
        if name in ("flag_mbt_paper_trading", "paper"):
            if value not in (*PAPER_MODES, "default"):
                raise InvalidArgument("value", f"must be off, shadow, on or default; got {value!r}")
            if request.email:
                user_id, email, _ = await self.h.lookup(request.email)
            key = flag_key("paper", user_id)
            stored = value
        elif name in KILL_SWITCHES:
            if request.email:
                raise InvalidArgument("email", "kill switches are for everyone, not one user")
            if value not in ("on", "off", "default"):
                raise InvalidArgument("value", f"must be on, off or default; got {value!r}")
            key, stored = flag_key(name), "1" if value == "on" else "0"
        else:
            raise InvalidArgument(
                "name",
                f"must be one of {', '.join(KILL_SWITCHES)} or FLAG_MBT_PAPER_TRADING; "
                f"got {request.name!r}",
            )
        if value == "default":
            await self.flags.clear(self.bus, key)
            v = self.flags.get(key) if not user_id else FlagValue("", source="default")
        else:
            v = await self.flags.put(self.bus, key, stored, operator.user_id, request.reason)
        async with self.h.db.begin() as conn:
            await audit(
                conn,
                operator.user_id,
                "flag_change",
                key=key,
                value=value,
                user_id=user_id,
                reason=request.reason[:500],
            )
        return _flag(key, v, email)

    async def ListRuntimeFlags(
        self, request: pb.ListRuntimeFlagsRequest, context: Ctx
    ) -> pb.ListRuntimeFlagsResponse:
        require_operator()
        out = pb.ListRuntimeFlagsResponse()
        for key, v in self.flags.describe():
            email = ""
            if key.startswith("paper.user."):
                email = await self.h.email_of(key.removeprefix("paper.user."))
            out.flags.append(_flag(key, v, email))
        return out

    async def LookupUser(self, request: pb.LookupUserRequest, context: Ctx) -> pb.UserRef:
        p = current_principal()
        if p is None or not (p.is_service or p.is_operator):
            raise PermissionDenied("internal method: MBT services and operators only")
        user_id, email, tier = await self.h.lookup(request.email)
        return pb.UserRef(user_id=user_id, email=email, tier=tier)

    async def ExportMyData(self, request: pb.ExportMyDataRequest, context: Ctx) -> pb.DataExport:
        user = require_user()
        req = acct_pb.ExportUserDataRequest(user_id=user.user_id)
        parts = {
            "sessions.json": await privacy.export_own(self.h.db, user.user_id),
            "accounts.json": (
                await self.accounts.call(self.accounts_stub.ExportUserData, req)
            ).json,
            "orders.json": (await self.orders.call(self.orders_stub.ExportUserData, req)).json,
        }
        if self.handoff is not None and self.handoff_stub is not None:
            # live handoff: the connection (never the token), live orders and fills, audit
            parts["handoff.json"] = (
                await self.handoff.call(self.handoff_stub.ExportUserData, req)
            ).json
        await self.h.audit(user.user_id, "export")
        out = pb.DataExport(
            user_id=user.user_id, archive=privacy.zip_archive(parts), files=sorted(parts)
        )
        out.generated_at.FromDatetime(datetime.now(UTC))
        return out

    async def RequestErasure(
        self, request: pb.RequestErasureRequest, context: Ctx
    ) -> pb.ErasureStatus:
        user = require_user()
        when = await privacy.request_erasure(self.h.db, user.user_id, datetime.now(UTC))
        return pb.ErasureStatus(state="scheduled", erase_after=ts_to_wire(when))

    async def CancelErasure(
        self, request: pb.CancelErasureRequest, context: Ctx
    ) -> pb.ErasureStatus:
        user = require_user()
        await privacy.cancel_erasure(self.h.db, user.user_id)
        return pb.ErasureStatus(state="none")

    async def GetCurrentSession(
        self, request: pb.GetCurrentSessionRequest, context: Ctx
    ) -> pb.Session:
        user = require_user()
        if user.api_key_id:  # a program asking who it is
            return pb.Session(session_id=user.session_id, user_id=user.user_id, tier=user.tier)
        row = await self.h.current(user.session_id)
        return pb.Session(
            session_id=user.session_id,
            user_id=user.user_id,
            email=str(row["email"]),
            tier=user.tier,
            expires_at=ts_to_wire(row["expires_at"]),
            created_at=ts_to_wire(row["created_at"]),
            current=True,
        )

    async def RevokeCurrentSession(
        self, request: pb.RevokeCurrentSessionRequest, context: Ctx
    ) -> pb.RevokeCurrentSessionResponse:
        user = require_passkey_session()
        await self.lifecycle.revoke(user.session_id, user.user_id)
        return pb.RevokeCurrentSessionResponse(session_id=user.session_id)

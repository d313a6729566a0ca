"""SessionsService over gRPC: passkey registration and login, current session, logout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
from raxx.mbt.v1 import events_pb2
from raxx.mbt.v1 import orders_service_pb2_grpc as orders_grpc
from raxx.mbt.v1 import sessions_service_pb2 as pb
from raxx.mbt.v1 import sessions_service_pb2_grpc as pb_grpc
from services.platform.auth import require_user
from services.platform.bus import SESSION_REVOKED_SUBJECT, Bus
from services.platform.clients import ServiceChannel
from services.platform.wire import ts_to_wire
from services.sessions import privacy
from services.sessions.handlers import Ceremony, OpenedSession, SessionsHandlers

Ctx = grpc.aio.ServicerContext[Any, Any]
PUBLIC_METHODS = frozenset({"BeginRegistration", "FinishRegistration", "BeginLogin", "FinishLogin"})


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
    )


class SessionsServicer(pb_grpc.SessionsServiceServicer):
    def __init__(
        self,
        handlers: SessionsHandlers,
        accounts: ServiceChannel,
        bus: Bus,
        orders: ServiceChannel,
    ) -> None:
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
        return _session(await self.h.open_session(user_id))

    async def BeginLogin(self, request: pb.BeginLoginRequest, context: Ctx) -> pb.CeremonyChallenge:
        return _ceremony(await self.h.begin_login(request.email))

    async def FinishLogin(self, request: pb.FinishLoginRequest, context: Ctx) -> pb.Session:
        user_id, _email, _ = await self.h.finish_login(request.ceremony_id, request.credential_json)
        await self._ensure_account(user_id, "")
        return _session(await self.h.open_session(user_id))

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
        row = await self.h.current(user.session_id)
        return pb.Session(
            session_id=user.session_id,
            user_id=user.user_id,
            email=str(row["email"]),
            tier=str(row["tier"]),
            expires_at=ts_to_wire(row["expires_at"]),
        )

    async def RevokeCurrentSession(
        self, request: pb.RevokeCurrentSessionRequest, context: Ctx
    ) -> pb.RevokeCurrentSessionResponse:
        user = require_user()
        expires = await self.h.revoke(user.session_id, user.user_id)
        ev = events_pb2.SessionRevokedEvent(
            session_id=user.session_id, user_id=user.user_id, expires_at=ts_to_wire(expires)
        )
        # JetStream keeps it for services that start later; await the ack before answering
        await self.bus.js_publish(
            SESSION_REVOKED_SUBJECT, ev.SerializeToString(), msg_id=f"revoke:{user.session_id}"
        )
        return pb.RevokeCurrentSessionResponse(session_id=user.session_id)

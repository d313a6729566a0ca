"""HandoffService: the gRPC face of live handoff (services/handoff/app.py does the work)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import handoff_service_pb2 as pb
from raxx.mbt.v1 import handoff_service_pb2_grpc as pb_grpc
from services.handoff.app import HandoffApp
from services.platform.auth import (
    require_operator,
    require_passkey_session,
    require_service,
    require_user,
)
from services.platform.wire import ts_to_wire

Ctx = grpc.aio.ServicerContext[Any, Any]


def _qty(v: Any) -> str:
    if v is None:
        return ""
    d = Decimal(v).normalize()
    return format(d, "f")


def _price(v: Any) -> str:
    """A price at least to the cent (100.00, 185.1234)."""
    if v is None:
        return ""
    d = Decimal(v).normalize()
    return format(d.quantize(Decimal("0.01")) if d.as_tuple().exponent > -2 else d, "f")  # type: ignore[operator]


def live_order_pb(r: dict[str, Any]) -> pb.LiveOrder:
    return pb.LiveOrder(
        live_order_id=str(r["id"]),
        status=str(r["status"]),
        payload_json=str(r["payload"]),
        payload_sha256=str(r["payload_sha256"]),
        summary=str(r.get("summary", "")),
        alpaca_order_id=str(r.get("alpaca_order_id") or ""),
        filled_qty=_qty(r.get("filled_qty")),
        filled_avg_price=_price(r.get("filled_avg_price")),
        reason=str(r.get("reason") or ""),
        created_at=ts_to_wire(r.get("created_at")),
        sent_at=ts_to_wire(r.get("sent_at")),
        updated_at=ts_to_wire(r.get("updated_at")),
        expires_at=ts_to_wire(r.get("expires_at")),
        symbol=str(r["symbol"]),
        side=str(r["side"]),
        qty=_qty(r["qty"]),
    )


class HandoffServicer(pb_grpc.HandoffServiceServicer):
    def __init__(self, app: HandoffApp) -> None:
        self.app = app

    async def _status(self, user_id: str, tier: str) -> pb.HandoffStatus:
        e = await self.app.eligibility(user_id, tier)
        conn = await self.app.connection(user_id)
        reason = e.reason
        if not reason and conn is None:
            reason = "connect your Alpaca account with `mbt handoff connect`"
        return pb.HandoffStatus(
            eligible=e.eligible,
            enrolled=conn is not None,
            reason=reason,
            tier=tier or "free",
            graduation=pb.Graduation(
                cycles_required=e.required,
                consecutive_profitable=e.streak,
                overridden=e.override is not None,
                override_reason=e.override or "",
                cycles=e.cycles,
            ),
            account_number=str(conn["account_number"]) if conn else "",
            scope=str(conn["scope"]) if conn else "",
            connected_at=ts_to_wire(conn["connected_at"]) if conn else None,
            disabled=e.disabled,
        )

    async def GetHandoffStatus(
        self, request: pb.GetHandoffStatusRequest, context: Ctx
    ) -> pb.HandoffStatus:
        user = require_user()
        return await self._status(user.user_id, user.tier)

    async def StartConnect(self, request: pb.StartConnectRequest, context: Ctx) -> pb.ConnectStart:
        user = require_passkey_session()
        url, state, expires = await self.app.start_connect(user, request.step_up_id)
        return pb.ConnectStart(authorize_url=url, state=state, expires_at=ts_to_wire(expires))

    async def CompleteConnect(
        self, request: pb.CompleteConnectRequest, context: Ctx
    ) -> pb.HandoffStatus:
        user = require_passkey_session()
        await self.app.complete_connect(user, request.code, request.state, request.error)
        return await self._status(user.user_id, user.tier)

    async def Disconnect(self, request: pb.DisconnectRequest, context: Ctx) -> pb.HandoffStatus:
        user = require_passkey_session()
        await self.app.disconnect(user.user_id, user.user_id)
        return await self._status(user.user_id, user.tier)

    async def PrepareLiveOrder(
        self, request: pb.PrepareLiveOrderRequest, context: Ctx
    ) -> pb.LiveOrder:
        user = require_passkey_session()
        return live_order_pb(await self.app.prepare(user, request))

    async def SendLiveOrder(self, request: pb.SendLiveOrderRequest, context: Ctx) -> pb.LiveOrder:
        user = require_passkey_session()
        return live_order_pb(await self.app.send(user, request.live_order_id, request.step_up_id))

    async def ListLiveOrders(
        self, request: pb.ListLiveOrdersRequest, context: Ctx
    ) -> pb.ListLiveOrdersResponse:
        user = require_user()
        return pb.ListLiveOrdersResponse(
            orders=[live_order_pb(r) for r in await self.app.list(user.user_id)]
        )

    async def GetLiveOrder(self, request: pb.GetLiveOrderRequest, context: Ctx) -> pb.LiveOrder:
        user = require_user()
        return live_order_pb(await self.app.get(user.user_id, request.live_order_id))

    async def GraduateUser(self, request: pb.GraduateUserRequest, context: Ctx) -> pb.HandoffStatus:
        operator = require_operator()
        user_id, tier = await self.app.graduate(operator.user_id, request.email, request.reason)
        return await self._status(user_id, tier)

    async def RotateKek(self, request: pb.RotateKekRequest, context: Ctx) -> pb.RotateKekResponse:
        operator = require_operator()
        kid, done, left = await self.app.rotate_kek(operator.user_id)
        return pb.RotateKekResponse(active_kek_id=kid, rewrapped=done, remaining_on_old_keys=left)

    async def ExportUserData(
        self, request: acct_pb.ExportUserDataRequest, context: Ctx
    ) -> acct_pb.UserDataExport:
        require_service()
        return acct_pb.UserDataExport(json=await self.app.export_user(request.user_id))

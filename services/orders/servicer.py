"""OrdersService over gRPC: proto <-> the orders application."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from sqlalchemy import Select, or_, select

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import orders_service_pb2 as pb
from raxx.mbt.v1 import orders_service_pb2_grpc as pb_grpc
from services.conventions.calendar import MarketCalendar
from services.orders import privacy, records
from services.orders.adapters.tables import fills, orders
from services.orders.app import OrdersApp
from services.orders.backtest import run_replay
from services.orders.convert import fill_to_pb, order_to_pb
from services.orders.domain.model import OrderStatus, TimeInForce
from services.orders.order_entry import submit_stream
from services.orders.peers import Peers
from services.orders.records import OPEN_STATUSES
from services.orders.trade_updates import TradeUpdateSubscription
from services.orders.validation import check_submit
from services.platform.auth import require_service, require_user
from services.platform.bus import Bus
from services.platform.errors import InvalidArgument, NotFound, Unavailable
from services.platform.pagination import next_page_token, page_bounds
from services.platform.ratelimit import RateLimiter
from services.platform.wire import parse_decimal

Ctx = grpc.aio.ServicerContext[Any, Any]
STATUS_NAMES = {s.value for s in OrderStatus}


MAX_SYMBOLS = 100


def _filtered(q: Select[Any], request: pb.ListOrdersRequest) -> tuple[Select[Any], bool]:
    """ListOrders' filters (submission window, symbols, side) on `q`, and whether newest first."""
    direction = request.direction.strip().lower() or "desc"
    if direction not in ("asc", "desc"):
        raise InvalidArgument("direction", f"must be asc or desc; got {request.direction[:20]!r}")
    for name in ("after", "until"):
        if request.HasField(name):
            try:
                at = getattr(request, name).ToDatetime(tzinfo=UTC)
            except (ValueError, OverflowError):
                raise InvalidArgument(name, "not a time MBT can represent") from None
            column = orders.c.submitted_at
            q = q.where(column > at if name == "after" else column < at)
    symbols = sorted({s.strip().upper() for s in request.symbols if s.strip()})
    if len(symbols) > MAX_SYMBOLS:
        raise InvalidArgument("symbols", f"at most {MAX_SYMBOLS} symbols; got {len(symbols)}")
    if symbols:
        q = q.where(
            or_(
                orders.c.symbol.in_(symbols),
                *(orders.c.legs.contains([{"symbol": s}]) for s in symbols),
            )
        )
    side = request.side.strip().lower()
    if side:
        if side not in ("buy", "sell"):
            raise InvalidArgument("side", f"must be buy or sell; got {request.side[:20]!r}")
        q = q.where(orders.c.side == side)
    return q, direction == "desc"


def _alpaca_filters(request: pb.ListOrdersRequest) -> dict[str, str]:
    """ListOrders' filters as Alpaca's GET /v2/orders takes them (shadow mode reads there)."""
    out = {"direction": request.direction.strip().lower() or "desc"}
    for name in ("after", "until"):
        if request.HasField(name):
            out[name] = getattr(request, name).ToJsonString()
    if request.symbols:
        out["symbols"] = ",".join(s.strip().upper() for s in request.symbols if s.strip())
    if request.side.strip():
        out["side"] = request.side.strip().lower()
    return out


class OrdersServicer(pb_grpc.OrdersServiceServicer):
    def __init__(self, app: OrdersApp, calendar: MarketCalendar, bus: Bus | None = None) -> None:
        self.app = app
        self.calendar = calendar
        self.bus = bus
        self.peers = Peers(app.ownership, app.settings.jwt_secret)
        self.limiter: RateLimiter | None = None  # per order on a SubmitOrders stream

    async def StreamTradeUpdates(
        self, request: pb.StreamTradeUpdatesRequest, context: Ctx
    ) -> AsyncIterator[pb.TradeUpdate]:
        user = require_user()
        if self.bus is None:
            raise Unavailable("trade updates are not available here")
        acct = await self.app.accounts.call(
            self.app.accounts_stub.LookupAccount,
            acct_pb.LookupAccountRequest(user_id=user.user_id),
        )
        after = request.after_sequence if request.HasField("after_sequence") else None
        sub = TradeUpdateSubscription(self.bus, acct.id, after)
        await sub.open()
        try:
            # headers say the subscription is in place: nothing committed from now on is missed
            await context.send_initial_metadata((("x-mbt-stream", "listening"),))
            async for update in sub.updates():
                yield update
        finally:
            await sub.close()

    async def ExportUserData(
        self, request: acct_pb.ExportUserDataRequest, context: Ctx
    ) -> acct_pb.UserDataExport:
        require_service()
        return acct_pb.UserDataExport(json=await privacy.export_user(self.app.db, request.user_id))

    async def ImportOrders(
        self, request: pb.ImportOrdersRequest, context: Ctx
    ) -> pb.ImportOrdersResponse:
        require_service()
        from services.orders.importer import import_orders

        return await import_orders(self.app.db, request)

    async def ReplaceOrder(self, request: pb.ReplaceOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        if not self.peers.owns(context, user.user_id):
            return await self.peers.forward("ReplaceOrder", request, context, user.user_id)
        changes: dict[str, Any] = {}
        qty = parse_decimal("qty", request.qty, required=False, positive=True)
        if qty is not None:
            if qty != qty.to_integral_value():
                raise InvalidArgument("qty", f"must be a whole number of shares; got {request.qty}")
            changes["qty"] = qty
        for name in ("limit_price", "stop_price"):
            v = parse_decimal(name, getattr(request, name), required=False, positive=True)
            if v is not None:
                changes[name] = v
        if request.time_in_force:
            try:
                changes["time_in_force"] = TimeInForce(request.time_in_force.strip().lower())
            except ValueError:
                raise InvalidArgument(
                    "time_in_force", "must be one of day, gtc, ioc, fok"
                ) from None
        if not changes:
            raise InvalidArgument(
                "qty", "nothing to change: give qty, limit_price, stop_price or time_in_force"
            )
        coid = request.client_order_id.strip() or str(uuid.uuid4())
        return order_to_pb(await self.app.replace(user, request.order_id, changes, coid))

    async def CancelAllOrders(
        self, request: pb.CancelAllOrdersRequest, context: Ctx
    ) -> pb.CancelAllOrdersResponse:
        user = require_user()
        if not self.peers.owns(context, user.user_id):
            return await self.peers.forward("CancelAllOrders", request, context, user.user_id)
        return pb.CancelAllOrdersResponse(
            orders=[order_to_pb(r) for r in await self.app.cancel_all(user)]
        )

    async def ReplayOrders(
        self, request: pb.ReplayOrdersRequest, context: Ctx
    ) -> pb.ReplayOrdersResponse:
        require_user()
        self.app.check_new_orders()  # a replay is new orders too, if simulated ones
        return await run_replay(request, self.app.marketdata, self.calendar)

    async def SubmitOrder(self, request: pb.SubmitOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        if not self.peers.owns(context, user.user_id):
            return await self.peers.forward("SubmitOrder", request, context, user.user_id)
        intent = check_submit(request)
        return order_to_pb(await self.app.submit(user, intent))

    async def SubmitOrders(
        self, request_iterator: AsyncIterator[pb.SubmitOrderRequest], context: Ctx
    ) -> AsyncIterator[pb.SubmitOrderResult]:
        user = require_user()
        owner = self.app.ownership.owns(user.user_id)
        # at once (a client may wait for it before writing): the owner, with several instances
        await context.send_initial_metadata(self.peers.owner_metadata(user.user_id))

        async def submit(req: pb.SubmitOrderRequest) -> pb.Order:
            if not owner:  # opened on another instance: each order goes to the owner
                forwarded = await self.peers.forward("SubmitOrder", req, context, user.user_id)
                assert isinstance(forwarded, pb.Order)
                return forwarded
            return order_to_pb(await self.app.submit(user, check_submit(req)))

        async for result in submit_stream(request_iterator, user, self.limiter, submit):
            yield result

    async def GetOrder(self, request: pb.GetOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        if not request.order_id and request.client_order_id:
            row = await records.fetch_by_client_id(
                self.app.db, user.user_id, request.client_order_id[:128]
            )
            if row is None:
                raise NotFound(
                    f"no order with client_order_id {request.client_order_id[:128]!r}",
                    reason="ORDER_NOT_FOUND",
                )
            return order_to_pb(row)
        return order_to_pb(await self.app.get_for_user(user.user_id, request.order_id))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        if not self.peers.owns(context, user.user_id):
            return await self.peers.forward("CancelOrder", request, context, user.user_id)
        return order_to_pb(await self.app.cancel(user, request.order_id))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Ctx
    ) -> pb.ListOrdersResponse:
        user = require_user()
        size, offset = page_bounds(request.page_size, request.page_token)
        q = select(orders).where(orders.c.user_id == user.user_id)
        status = request.status.strip().lower() or "all"
        if status == "open":
            q = q.where(orders.c.status.in_(OPEN_STATUSES))
        elif status == "closed":
            q = q.where(orders.c.status.not_in(OPEN_STATUSES))
        elif status in STATUS_NAMES:
            q = q.where(orders.c.status == status)
        elif status != "all":
            raise InvalidArgument(
                "status", f"must be open, closed, all or a status name; got {request.status!r}"
            )
        q, newest_first = _filtered(q, request)  # checked here, also for shadow reads
        if self.app.flags.paper_mode(user.user_id) == "shadow":
            from services.orders.shadow import alpaca_orders
            from services.platform.shadow_credentials import ShadowCredentials

            if (creds := ShadowCredentials().of(user.user_id)) is not None:
                listed = await alpaca_orders(creds, status, _alpaca_filters(request))
                return pb.ListOrdersResponse(orders=listed[:size], source="alpaca_paper")
        by = (
            (orders.c.submitted_at.desc(), orders.c.id.desc())
            if newest_first
            else (orders.c.submitted_at.asc(), orders.c.id.asc())
        )
        q = q.order_by(*by).offset(offset).limit(size + 1)
        async with self.app.db.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return pb.ListOrdersResponse(
            orders=[order_to_pb(r) for r in rows[:size]],
            next_page_token=next_page_token(offset, size, len(rows)),
            source="mbt",
        )

    async def ListFills(self, request: pb.ListFillsRequest, context: Ctx) -> pb.ListFillsResponse:
        user = require_user()
        size, offset = page_bounds(request.page_size, request.page_token)
        q = select(fills).where(fills.c.user_id == user.user_id)
        if request.order_id:
            q = q.where(fills.c.order_id == request.order_id)
        q = q.order_by(fills.c.filled_at.desc(), fills.c.id).offset(offset).limit(size + 1)
        async with self.app.db.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return pb.ListFillsResponse(
            fills=[fill_to_pb(r) for r in rows[:size]],
            next_page_token=next_page_token(offset, size, len(rows)),
        )

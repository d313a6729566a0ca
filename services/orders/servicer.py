"""OrdersService over gRPC: proto <-> the orders application."""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy import select

from raxx.mbt.v1 import orders_service_pb2 as pb
from raxx.mbt.v1 import orders_service_pb2_grpc as pb_grpc
from services.orders.adapters.tables import fills, orders
from services.orders.app import OPEN_STATUSES, OrdersApp
from services.orders.convert import fill_to_pb, order_to_pb
from services.orders.domain.model import OrderStatus
from services.orders.validation import check_submit
from services.platform.auth import require_user
from services.platform.errors import InvalidArgument
from services.platform.pagination import next_page_token, page_bounds

Ctx = grpc.aio.ServicerContext[Any, Any]
STATUS_NAMES = {s.value for s in OrderStatus}


class OrdersServicer(pb_grpc.OrdersServiceServicer):
    def __init__(self, app: OrdersApp) -> None:
        self.app = app

    async def SubmitOrder(self, request: pb.SubmitOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        intent = check_submit(request)
        return order_to_pb(await self.app.submit(user, intent))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        return order_to_pb(await self.app.get_for_user(user.user_id, request.order_id))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Ctx) -> pb.Order:
        user = require_user()
        return order_to_pb(await self.app.cancel(user, request.order_id))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Ctx) -> pb.ListOrdersResponse:
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
            raise InvalidArgument("status", f"must be open, closed, all or a status name; got {request.status!r}")
        q = q.order_by(orders.c.submitted_at.desc(), orders.c.id).offset(offset).limit(size + 1)
        async with self.app.db.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return pb.ListOrdersResponse(
            orders=[order_to_pb(r) for r in rows[:size]],
            next_page_token=next_page_token(offset, size, len(rows)),
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

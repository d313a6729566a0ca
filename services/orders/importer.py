"""Order history imported from Alpaca paper: closed orders and their fills as MBT rows.

They are history, not live orders: written closed, never re-armed in the engine, never put on
the bus (accounts imports the cash and positions they produced). Ids derive from Alpaca's, so
a rerun writes nothing new.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.orders.adapters.tables import fills, orders
from services.platform.errors import InvalidArgument
from services.platform.wire import ts_from_wire

__all__ = ["ALPACA_NS", "import_orders", "imported_order_id"]

ALPACA_NS = uuid.UUID("8a1f2b0e-6b7c-5d3e-9f10-a1b2c3d4e5f6")
CLOSED = {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}


def imported_order_id(user_id: str, alpaca_order_id: str) -> str:
    """The MBT id of an imported order: the same on every rerun, distinct per user."""
    return str(uuid.uuid5(ALPACA_NS, f"order:{user_id}:{alpaca_order_id}"))


def _dec(v: str, name: str) -> Decimal | None:
    if not v:
        return None
    try:
        return Decimal(v)
    except ArithmeticError:
        raise InvalidArgument(name, f"must be a decimal number; got {v!r}") from None


def _ts(t: Timestamp) -> datetime | None:
    return ts_from_wire(t) if t.ByteSize() else None


async def import_orders(db: AsyncEngine, req: pb.ImportOrdersRequest) -> pb.ImportOrdersResponse:
    out = pb.ImportOrdersResponse()
    async with db.begin() as conn:
        for o in req.orders:
            if o.status not in CLOSED:
                raise InvalidArgument(
                    "orders.status", f"only closed orders are imported: {o.status}"
                )
            oid = imported_order_id(req.user_id, o.alpaca_order_id)
            submitted = _ts(o.submitted_at) or datetime.now(UTC)
            filled_qty = _dec(o.filled_qty, "filled_qty") or Decimal(0)
            avg = _dec(o.filled_avg_price, "filled_avg_price") or Decimal(0)
            added = (
                await conn.execute(
                    insert(orders)
                    .values(
                        id=oid,
                        user_id=req.user_id,
                        account_id=req.account_id,
                        client_order_id=o.client_order_id or oid,
                        symbol=o.symbol.upper(),
                        side=o.side,
                        qty=_dec(o.qty, "qty") or Decimal(0),
                        order_type=o.order_type or "market",
                        time_in_force=o.time_in_force or "day",
                        limit_price=_dec(o.limit_price, "limit_price"),
                        stop_price=_dec(o.stop_price, "stop_price"),
                        status=o.status,
                        status_reason=f"imported from Alpaca paper (order {o.alpaca_order_id})",
                        filled_qty=filled_qty,
                        filled_notional=filled_qty * avg,
                        fill_count=len(o.fills),
                        submitted_at=submitted,
                        accepted_at=submitted,
                        filled_at=_ts(o.filled_at),
                        canceled_at=_ts(o.canceled_at),
                        updated_at=_ts(o.filled_at) or _ts(o.canceled_at) or submitted,
                    )
                    .on_conflict_do_nothing()
                    .returning(orders.c.id)
                )
            ).first()
            if added is None:
                out.existing += 1
                continue
            out.added += 1
            for f in o.fills:
                at = _ts(f.filled_at) or submitted
                price = _dec(f.price, "fills.price") or Decimal(0)
                res = await conn.execute(
                    insert(fills)
                    .values(
                        id=f"alpaca:{oid[:8]}:{f.execution_id}"[:80],
                        order_id=oid,
                        user_id=req.user_id,
                        account_id=req.account_id,
                        symbol=o.symbol.upper(),
                        side=o.side,
                        qty=_dec(f.qty, "fills.qty") or Decimal(0),
                        price=price,
                        filled_at=at,
                        quote_symbol=o.symbol.upper(),
                        nbbo_bid=price,
                        nbbo_ask=price,
                        nbbo_bid_size=0,
                        nbbo_ask_size=0,
                        quote_ts=at,
                        explanation=(
                            f"imported from Alpaca paper: {o.side} {f.qty} at {price} "
                            "(Alpaca does not report the quote it filled against)"
                        ),
                    )
                    .on_conflict_do_nothing()
                    .returning(fills.c.id)
                )
                out.fills_added += 1 if res.first() is not None else 0
    return out

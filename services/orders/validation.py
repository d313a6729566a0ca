"""Turn a SubmitOrderRequest into a checked order intent; every problem names its field."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.orders.domain.model import OrderType, Side, TimeInForce
from services.platform.errors import InvalidArgument
from services.platform.wire import parse_decimal

MAX_CLIENT_ORDER_ID = 128


@dataclass(frozen=True)
class OrderIntent:
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None
    stop_price: Decimal | None
    client_order_id: str


def _choice(
    field: str,
    raw: str,
    enum: type[Side] | type[OrderType] | type[TimeInForce],
    default: str | None = None,
) -> str:
    value = (raw or "").strip().lower() or (default or "")
    if not value:
        raise InvalidArgument(field, "is required")
    allowed = [e.value for e in enum]
    if value not in allowed:
        raise InvalidArgument(field, f"must be one of {', '.join(allowed)}; got {raw!r}")
    return value


def check_submit(req: pb.SubmitOrderRequest) -> OrderIntent:
    symbol = req.symbol.strip().upper()
    if not symbol:
        raise InvalidArgument("symbol", "is required")
    if not symbol.isalnum() or len(symbol) > 32:
        raise InvalidArgument("symbol", f"not a valid symbol: {req.symbol!r}")
    side = Side(_choice("side", req.side, Side))
    qty = parse_decimal("qty", req.qty, positive=True)
    assert qty is not None
    if qty != qty.to_integral_value():
        raise InvalidArgument("qty", f"must be a whole number of shares; got {req.qty}")
    order_type = OrderType(_choice("order_type", req.order_type, OrderType, "market"))
    tif = TimeInForce(_choice("time_in_force", req.time_in_force, TimeInForce, "day"))
    limit = parse_decimal("limit_price", req.limit_price, required=False, positive=True)
    stop = parse_decimal("stop_price", req.stop_price, required=False, positive=True)
    needs_limit = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_limit and limit is None:
        raise InvalidArgument("limit_price", f"is required for {order_type.value} orders")
    if not needs_limit and limit is not None:
        raise InvalidArgument("limit_price", f"is not allowed for {order_type.value} orders")
    if needs_stop and stop is None:
        raise InvalidArgument("stop_price", f"is required for {order_type.value} orders")
    if not needs_stop and stop is not None:
        raise InvalidArgument("stop_price", f"is not allowed for {order_type.value} orders")
    for name, price in (("limit_price", limit), ("stop_price", stop)):
        if price is not None and price.as_tuple().exponent < -4:  # type: ignore[operator]
            raise InvalidArgument(name, f"at most 4 decimal places; got {price}")
    coid = req.client_order_id.strip()
    if len(coid) > MAX_CLIENT_ORDER_ID:
        raise InvalidArgument("client_order_id", f"at most {MAX_CLIENT_ORDER_ID} characters")
    return OrderIntent(symbol, side, qty, order_type, tif, limit, stop, coid)

"""Turn a SubmitOrderRequest into a checked order intent; every problem names its field.

Request-shape checks live here (required fields, enums, decimals); the rules of order types
and multi-leg structure are the domain's (`domain.validation.validate_order`), applied to the
intent before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.occ import is_occ_symbol, parse_occ
from services.conventions.ticks import off_tick
from services.orders.domain.errors import InvalidOrderError
from services.orders.domain.model import (
    FillPreference,
    Leg,
    Order,
    OrderType,
    Side,
    TimeInForce,
)
from services.orders.domain.validation import validate_order
from services.platform.errors import InvalidArgument
from services.platform.wire import parse_decimal

MAX_CLIENT_ORDER_ID = 128
SUB_PENNY_PRICE = "SUB_PENNY_PRICE"


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
    legs: tuple[Leg, ...] = field(default=())
    fill_preference: FillPreference | None = None

    @property
    def is_option(self) -> bool:
        return bool(self.legs) or is_occ_symbol(self.symbol)


def _choice(field_name: str, raw: str, enum: type[StrEnum], default: str | None = None) -> str:
    value = (raw or "").strip().lower() or (default or "")
    if not value:
        raise InvalidArgument(field_name, "is required")
    allowed = [str(e.value) for e in enum]
    if value not in allowed:
        raise InvalidArgument(field_name, f"must be one of {', '.join(allowed)}; got {raw!r}")
    return value


def _symbol(field_name: str, raw: str) -> str:
    symbol = raw.strip().upper()
    if not symbol:
        raise InvalidArgument(field_name, "is required")
    if not (symbol.isascii() and symbol.isalnum()) or len(symbol) > 32:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise InvalidArgument(field_name, f"not a valid symbol: {shown!r}")
    return symbol


def _legs(req: pb.SubmitOrderRequest) -> tuple[tuple[Leg, ...], str]:
    legs = []
    roots = set()
    for i, leg in enumerate(req.legs):
        symbol = _symbol(f"legs[{i}].symbol", leg.symbol)
        if not is_occ_symbol(symbol):
            raise InvalidArgument(f"legs[{i}].symbol", f"not an OCC option symbol: {leg.symbol!r}")
        roots.add(parse_occ(symbol).root)
        side = Side(_choice(f"legs[{i}].side", leg.side, Side))
        legs.append(Leg(symbol=symbol, side=side, ratio=leg.ratio or 1))
    if len(roots) > 1:
        raise InvalidArgument("legs", f"all legs must be on one underlying, got {sorted(roots)}")
    return tuple(legs), roots.pop()


def check_ticks(limit: Decimal | None, stop: Decimal | None, *, option: bool) -> None:
    """Limit and stop prices in the market's increments (`conventions.ticks`), as Alpaca checks
    them: a sub-penny price is refused, never rounded."""
    for name, price in (("limit_price", limit), ("stop_price", stop)):
        if price is None or (tick := off_tick(price, option)) is None:
            continue
        rule = (
            "an option's price is in whole cents"
            if option
            else "$1.00 or more: whole cents; below $1.00: $0.0001"
        )
        raise InvalidArgument(
            name,
            f"invalid {name} {price}. sub-penny increment does not fulfill minimum pricing "
            f"criteria (a multiple of {tick}: {rule})",
            reason=SUB_PENNY_PRICE,
        )


def check_submit(req: pb.SubmitOrderRequest) -> OrderIntent:
    legs: tuple[Leg, ...] = ()
    if req.legs:
        legs, root = _legs(req)
        symbol = _symbol("symbol", req.symbol) if req.symbol.strip() else root
        if symbol != root:
            raise InvalidArgument("symbol", f"the legs are on {root}, not {symbol}")
    else:
        symbol = _symbol("symbol", req.symbol)
    side = Side(_choice("side", req.side, Side, "buy" if legs else None))
    qty = parse_decimal("qty", req.qty, positive=True)
    assert qty is not None
    if qty != qty.to_integral_value():
        unit = "spreads" if legs else "contracts" if is_occ_symbol(symbol) else "shares"
        raise InvalidArgument("qty", f"must be a whole number of {unit}; got {req.qty}")
    order_type = OrderType(_choice("order_type", req.order_type, OrderType, "market"))
    tif = TimeInForce(_choice("time_in_force", req.time_in_force, TimeInForce, "day"))
    # a multi-leg net limit may be a credit (negative)
    limit = parse_decimal("limit_price", req.limit_price, required=False, positive=not legs)
    stop = parse_decimal("stop_price", req.stop_price, required=False, positive=True)
    needs_limit = order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    if needs_limit and limit is None:
        raise InvalidArgument("limit_price", f"is required for {order_type.value} orders")
    check_ticks(limit, stop, option=bool(legs) or is_occ_symbol(symbol))
    preference = None
    if req.fill_preference:
        preference = FillPreference(_choice("fill_preference", req.fill_preference, FillPreference))
    coid = req.client_order_id.strip()
    if len(coid) > MAX_CLIENT_ORDER_ID:
        raise InvalidArgument("client_order_id", f"at most {MAX_CLIENT_ORDER_ID} characters")
    if not (coid.isascii() and coid.isprintable()):
        raise InvalidArgument("client_order_id", "only printable ASCII characters are allowed")
    intent = OrderIntent(symbol, side, qty, order_type, tif, limit, stop, coid, legs, preference)
    try:  # the order-type and multi-leg rules, once, in the domain
        validate_order(to_order(intent, "check", "check", datetime(2000, 1, 3, tzinfo=UTC)))
    except InvalidOrderError as exc:
        raise InvalidArgument(exc.field, str(exc).split(": ", 1)[-1]) from exc
    return intent


def to_order(intent: OrderIntent, order_id: str, account_id: str, accepted_at: datetime) -> Order:
    return Order(
        id=order_id,
        account_id=account_id,
        symbol=intent.symbol,
        side=intent.side,
        qty=intent.qty,
        order_type=intent.order_type,
        time_in_force=intent.time_in_force,
        accepted_at=accepted_at,
        limit_price=intent.limit_price,
        stop_price=intent.stop_price,
        legs=intent.legs,
        fill_preference=intent.fill_preference or FillPreference.AGGRESSIVE,
    )

"""Rows of the orders schema <-> protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from raxx.mbt.v1 import common_pb2
from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.decimals import dec_to_wire
from services.conventions.quote import Quote
from services.platform.wire import ts_from_wire, ts_to_wire

Row = Mapping[Any, Any]


def _dec(v: Any) -> str:
    return dec_to_wire(Decimal(v)) if v is not None else ""


class BuiltRow(dict[str, Any]):
    """An order row with its `Order` message already built (the submit path builds it once,
    for the event and the reply); the row must not change after."""

    message: pb.Order


def built_row(r: Row) -> BuiltRow:
    out = BuiltRow(r)
    out.message = order_to_pb(r)
    return out


def order_to_pb(r: Row) -> pb.Order:
    if isinstance(r, BuiltRow):
        return r.message
    filled = Decimal(r["filled_qty"])
    avg = Decimal(r["filled_notional"]) / filled if filled else None
    return pb.Order(
        id=r["id"],
        client_order_id=r["client_order_id"],
        account_id=r["account_id"] or "",
        symbol=r["symbol"],
        side=r["side"],
        qty=_dec(r["qty"]),
        order_type=r["order_type"],
        time_in_force=r["time_in_force"],
        limit_price=_dec(r["limit_price"]),
        stop_price=_dec(r["stop_price"]),
        status=r["status"],
        filled_qty=dec_to_wire(filled),
        filled_avg_price=dec_to_wire(avg.quantize(Decimal("0.0001"))) if avg is not None else "",
        reject_reason=r["reject_reason"],
        status_reason=r["status_reason"],
        submitted_at=ts_to_wire(r["submitted_at"]),
        accepted_at=ts_to_wire(r["accepted_at"]),
        filled_at=ts_to_wire(r["filled_at"]),
        canceled_at=ts_to_wire(r["canceled_at"]),
        updated_at=ts_to_wire(r["updated_at"]),
        legs=[
            pb.OrderLeg(symbol=x["symbol"], side=x["side"], ratio=int(x["ratio"]))
            for x in (r.get("legs") or [])
        ],
        replaces=r.get("replaces") or "",
        replaced_by=r.get("replaced_by") or "",
    )


def fill_to_pb(r: Row) -> pb.Fill:
    return pb.Fill(
        id=r["id"],
        order_id=r["order_id"],
        account_id=r["account_id"] or "",
        symbol=r["symbol"],
        side=r["side"],
        qty=_dec(r["qty"]),
        price=_dec(r["price"]),
        filled_at=ts_to_wire(r["filled_at"]),
        quote=common_pb2.Quote(
            symbol=r["quote_symbol"],
            bid=_dec(r["nbbo_bid"]),
            ask=_dec(r["nbbo_ask"]),
            bid_size=int(r["nbbo_bid_size"]),
            ask_size=int(r["nbbo_ask_size"]),
            timestamp=ts_to_wire(r["quote_ts"]),
        ),
        explanation=r["explanation"],
    )


def quote_from_pb(q: common_pb2.Quote) -> Quote:
    """A wire Quote -> the domain Quote."""
    return Quote(
        symbol=q.symbol,
        ts=ts_from_wire(q.timestamp),
        bid=Decimal(q.bid),
        ask=Decimal(q.ask),
        bid_size=int(q.bid_size),
        ask_size=int(q.ask_size),
    )

"""ReplayOrders: the live engine's rules over a recorded quote range (the backtest entry point).

Quotes come from the market-data service's archive (the only place quotes enter MBT); the run
touches no account and no table, so the same request always returns the same events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from raxx.mbt.v1 import marketdata_service_pb2 as md_pb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as md_grpc
from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.calendar import MarketCalendar
from services.conventions.decimals import dec_to_wire
from services.orders.convert import quote_from_pb
from services.orders.domain.engine import EngineConfig, replay
from services.orders.domain.events import (
    FillDeferred,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from services.orders.domain.model import Order, Quote
from services.orders.validation import check_submit, to_order
from services.platform.clients import ServiceChannel
from services.platform.errors import InvalidArgument
from services.platform.wire import ts_from_wire, ts_to_wire

MAX_ORDERS = 1000


async def fetch_quotes(
    md: ServiceChannel, symbols: set[str], start: datetime, end: datetime
) -> list[Quote]:
    stub = md_grpc.MarketDataServiceStub(md.channel)
    quotes: list[Quote] = []
    for symbol in sorted(symbols):
        token = ""
        while True:
            req = md_pb.ListQuotesRequest(
                symbol=symbol, archive=True, page_size=500, page_token=token
            )
            req.start_time.CopyFrom(ts_to_wire(start))
            req.end_time.CopyFrom(ts_to_wire(end))
            page: Any = await md.call(stub.ListQuotes, req, timeout=30)
            quotes += [quote_from_pb(q) for q in page.quotes]
            token = page.next_page_token
            if not token:
                break
    quotes.sort(key=lambda q: (q.ts, q.symbol))
    return quotes


async def run_replay(
    request: pb.ReplayOrdersRequest, md: ServiceChannel, calendar: MarketCalendar
) -> pb.ReplayOrdersResponse:
    if not request.orders:
        raise InvalidArgument("orders", "at least one order is required")
    if len(request.orders) > MAX_ORDERS:
        raise InvalidArgument("orders", f"at most {MAX_ORDERS} orders per replay")
    if not request.HasField("start_time") or not request.HasField("end_time"):
        raise InvalidArgument("start_time", "start_time and end_time are required")
    start, end = ts_from_wire(request.start_time), ts_from_wire(request.end_time)
    if end <= start:
        raise InvalidArgument("end_time", "must be after start_time")
    orders: list[Order] = []
    for i, o in enumerate(request.orders):
        try:
            intent = check_submit(o)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"orders[{i}].{exc.field}", exc.message.split(": ", 1)[-1]
            ) from exc
        orders.append(to_order(intent, f"replay-{i}", "replay", start))
    symbols = {leg.symbol for o in orders for leg in o.legs} | {
        o.symbol for o in orders if not o.legs
    }
    quotes = await fetch_quotes(md, symbols, start, end)
    config = EngineConfig(cap_at_displayed_size=request.cap_at_displayed_size)
    out = pb.ReplayOrdersResponse(quotes_evaluated=len(quotes))
    for ev in replay(orders, quotes, calendar, config):
        index = int(ev.order_id.rsplit("-", 1)[1])
        if isinstance(ev, OrderFilled):
            q = ev.quote
            fill = pb.Fill(
                id=ev.execution_id,
                order_id=ev.order_id,
                symbol=ev.symbol,
                side=ev.side.value,
                qty=dec_to_wire(ev.qty),
                price=dec_to_wire(ev.price),
                filled_at=ts_to_wire(ev.ts),
                explanation=ev.explanation,
            )
            fill.quote.symbol, fill.quote.bid, fill.quote.ask = (
                q.symbol,
                dec_to_wire(q.bid),
                dec_to_wire(q.ask),
            )
            fill.quote.bid_size, fill.quote.ask_size = q.bid_size, q.ask_size
            fill.quote.timestamp.CopyFrom(ts_to_wire(q.ts))
            out.events.add(event="fill", order_index=index, fill=fill, timestamp=ts_to_wire(ev.ts))
        elif isinstance(ev, OrderCanceled | OrderExpired | FillDeferred):
            kind = {OrderCanceled: "canceled", OrderExpired: "expired", FillDeferred: "deferred"}[
                type(ev)
            ]
            out.events.add(
                event=kind, order_index=index, reason=ev.reason, timestamp=ts_to_wire(ev.ts)
            )
        elif isinstance(ev, StopTriggered):
            out.events.add(event="triggered", order_index=index, timestamp=ts_to_wire(ev.ts))
    return out

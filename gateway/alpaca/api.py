"""The Alpaca Trading API v2 on the gateway: `/v2/...` translated to MBT's gRPC services.

A translation layer only: every rule (validation, buying power, fills) is the services'; this
module maps Alpaca's requests to the protos, the replies through `shapes`, and errors to
Alpaca's body ``{"code": <int>, "message": <str>}`` with Alpaca's status codes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.alpaca import shapes
from gateway.sessions import CredentialRefused, credential_metadata
from gateway.transcode import error_from_rpc, retry_after_from_rpc
from raxx.mbt.v1 import accounts_service_pb2 as apb
from raxx.mbt.v1 import accounts_service_pb2_grpc as agrpc
from raxx.mbt.v1 import marketdata_service_pb2 as mpb
from raxx.mbt.v1 import marketdata_service_pb2_grpc as mgrpc
from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from services.platform.grpc_server import FOLLOW_UP_HEADER
from services.platform.owner_routes import OwnerRoutes

__all__ = ["AlpacaApi", "AlpacaError", "iso_date", "time_param", "timestamp_pb"]

ORDERS_SERVICE = opb.DESCRIPTOR.services_by_name["OrdersService"].full_name
COMMAND_REPLIES: dict[str, Any] = {
    "SubmitOrder": opb.Order,
    "CancelOrder": opb.Order,
    "ReplaceOrder": opb.Order,
    "CancelAllOrders": opb.CancelAllOrdersResponse,
}

TIMEOUT_S = 10.0
MAX_BODY = 64 * 1024

# Alpaca's error codes by HTTP status (its bodies are {"code": int, "message": str})
CODE_BY_STATUS = {
    400: 40010000,
    401: 40110000,
    403: 40310000,
    404: 40410000,
    405: 40510000,
    422: 40010001,
    429: 42910000,
    500: 50010000,
    503: 50310000,
}
# MBT reason -> Alpaca status, where Alpaca differs from the generic gRPC mapping
STATUS_BY_REASON = {
    "INSUFFICIENT_BUYING_POWER": 403,
    "INSUFFICIENT_QTY": 403,
    "SHORTING_DISABLED": 403,
    "TRADE_SUSPENDED": 403,
    "ORDER_NOT_OPEN": 422,
}
# MBT reason -> Alpaca's code, where it is not the status's (42210000: a business rule)
CODE_BY_REASON = {"SUB_PENNY_PRICE": 42210000}
SUPPORTED_TYPES = ("market", "limit", "stop", "stop_limit")
CREDENTIAL_KEYS = ("authorization", "apca-api-key-id", "apca-api-secret-key")


class AlpacaError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.code = code or CODE_BY_STATUS.get(status, status * 100000)

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"code": self.code, "message": self.message}, self.status, headers=self.headers
        )


def _from_rpc(err: grpc.aio.AioRpcError) -> AlpacaError:
    status, reason, message = error_from_rpc(err)
    if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
        status = 422
    status = STATUS_BY_REASON.get(reason, status)
    if status == 400:  # FAILED_PRECONDITION: Alpaca says 422 for what cannot be done now
        status = 422
    headers = {}
    if status == 429:
        headers["retry-after"] = str(retry_after_from_rpc(err) or 1)
    return AlpacaError(status, message, headers, CODE_BY_REASON.get(reason))


def _decimal_text(field: str, v: Any) -> str:
    """Alpaca accepts decimals as strings or JSON numbers (alpaca-py sends floats)."""
    if v is None or v == "":
        return ""
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise AlpacaError(422, f"{field} must be a number or a decimal string")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise AlpacaError(422, f"{field}: invalid decimal {v!r}") from None
    if not d.is_finite():
        raise AlpacaError(422, f"{field}: invalid decimal {v!r}")
    out = f"{d.normalize():f}"
    return out if "." not in out else out.rstrip("0").rstrip(".") or "0"


def time_param(q: Mapping[str, str], name: str) -> datetime | None:
    """A query time as Alpaca takes it: RFC 3339, or a date (its midnight); no zone: UTC."""
    raw = (q.get(name) or "").strip().replace(" ", "+")  # an unescaped '+' arrives as ' '
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw)
        # in UTC, and a day inside the calendar's range either side (so arithmetic on it and
        # the conversion to a Timestamp cannot overflow)
        dt = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
        if not date(1, 1, 2) <= dt.date() <= date(9999, 12, 30):
            raise ValueError(raw)
    except (ValueError, OverflowError):
        raise AlpacaError(422, f"{name}: not an RFC 3339 time: {raw[:40]!r}") from None
    return dt


def timestamp_pb(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def iso_date(field: str, raw: str) -> date:
    """A date (YYYY-MM-DD, or a time's first ten characters), with room for a few days' or a
    week's arithmetic either side."""
    try:
        day = date.fromisoformat(raw[:10])
    except ValueError:
        raise AlpacaError(422, f"{field}: not a date (YYYY-MM-DD): {raw[:40]!r}") from None
    if not date(1, 1, 2) <= day <= date(9999, 12, 1):
        raise AlpacaError(422, f"{field}: {day.isoformat()} is out of range")
    return day


class AlpacaApi:
    def __init__(
        self,
        channel: Callable[[str], grpc.aio.Channel],
        allowed_origins: tuple[str, ...],
        vouch_key: str,
        owners: OwnerRoutes | None = None,
    ) -> None:
        self._channel = channel
        self._origins = allowed_origins
        self._vouch = vouch_key
        self._owners = owners or OwnerRoutes()

    @property
    def orders(self) -> ogrpc.OrdersServiceStub:
        return ogrpc.OrdersServiceStub(self._channel("orders"))

    @property
    def accounts(self) -> agrpc.AccountsServiceStub:
        return agrpc.AccountsServiceStub(self._channel("accounts"))

    @property
    def marketdata(self) -> mgrpc.MarketDataServiceStub:
        return mgrpc.MarketDataServiceStub(self._channel("marketdata"))

    def metadata(self, request: Request) -> tuple[tuple[str, str], ...]:
        rid = uuid.uuid4().hex
        md = credential_metadata(request, self._origins, self._vouch, rid)
        if isinstance(md, CredentialRefused):
            raise AlpacaError(md.status, md.message)
        if not any(k in CREDENTIAL_KEYS for k, _ in md):  # as Alpaca: no key, no call
            raise AlpacaError(401, "request is not authorized")
        return tuple(md)

    def _call_metadata(self, request: Request) -> tuple[tuple[str, str], ...]:
        """The credentials; after this HTTP request's first RPC, marked a follow-up (the
        request's rate limit is spent on its first)."""
        md = self.metadata(request)
        if getattr(request.state, "mbt_rpcs", 0):
            md += ((FOLLOW_UP_HEADER, "1"),)
        request.state.mbt_rpcs = getattr(request.state, "mbt_rpcs", 0) + 1
        return md

    async def call(self, request: Request, method: Any, req: Message) -> Any:
        """One RPC for this HTTP request."""
        md = self._call_metadata(request)
        try:
            return await method(req, metadata=md, timeout=TIMEOUT_S, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            raise _from_rpc(err) from None

    async def command(self, request: Request, name: str, req: Message) -> Any:
        """An orders command (`COMMANDS`), sent to the instance that owns the caller's
        partition once one has named it (`OwnerRoutes`); until then round robin, and the
        instance reached forwards it."""
        md = self._call_metadata(request)
        try:
            reply, _ = await self._owners.unary(
                self._channel("orders"),
                f"/{ORDERS_SERVICE}/{name}",
                req,
                COMMAND_REPLIES[name],
                md,
                TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as err:
            raise _from_rpc(err) from None
        return reply

    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise AlpacaError(413, "request body too large")
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise AlpacaError(400, "malformed JSON body") from None
        if not isinstance(data, dict):
            raise AlpacaError(422, "the body must be a JSON object")
        return data

    # ---- account ---------------------------------------------------------------------------
    async def account(self, request: Request) -> Response:
        a = await self.call(request, self.accounts.GetAccount, apb.GetAccountRequest())
        return JSONResponse(shapes.account_json(a))

    async def configurations(self, request: Request) -> Response:
        """GET, or PATCH Alpaca's AccountConfiguration: no_shorting and suspend_trade change;
        a field MBT does not let change may be sent as it is (alpaca-py sends them all), any
        other value is a 422 naming it; null or absent: unchanged."""
        body = await self.body(request) if request.method == "PATCH" else {}
        a = await self.call(request, self.accounts.GetAccount, apb.GetAccountRequest())
        current = shapes.account_configuration(a)
        changes: dict[str, bool] = {}
        for name, value in body.items():
            if value is None:
                continue
            if name not in current:
                raise AlpacaError(422, f"{name[:40]!r} is not an account configuration")
            if name in shapes.CHANGEABLE_CONFIGURATION:
                if not isinstance(value, bool):
                    raise AlpacaError(422, f"{name} must be true or false")
                if value != current[name]:
                    changes[name] = value
            elif str(value).lower() != str(current[name]).lower():
                raise AlpacaError(422, f"{name} cannot be changed on MBT (it is {current[name]!r})")
        if changes:
            a = await self.call(
                request,
                self.accounts.UpdateAccountConfiguration,
                apb.UpdateAccountConfigurationRequest(**changes),
            )
        return JSONResponse(shapes.account_configuration(a))

    async def portfolio_history(self, request: Request) -> Response:
        """Daily equity from the end-of-day snapshots (Alpaca's timeframe 1D)."""
        q = request.query_params
        timeframe = q.get("timeframe") or "1D"
        if timeframe != "1D":
            # one session's equity per interval; accounts says which timeframes it keeps
            day = iso_date("end", q["end"]).isoformat() if q.get("end") else ""
            hist = await self.call(  # no day: the market clock's session
                request,
                self.accounts.GetPortfolioHistory,
                apb.GetPortfolioHistoryRequest(start_date=day, timeframe=timeframe),
            )
            return JSONResponse(shapes.portfolio_history_json(hist, timeframe))
        period = (q.get("period") or "1M").upper()
        days = {"D": 1, "W": 7, "M": 31, "A": 366}
        if not re.fullmatch(r"[0-9]{1,5}[DWMA]", period):
            raise AlpacaError(422, "period must be a number and D, W, M or A (e.g. 1M)")
        clock = await self.call(request, self.marketdata.GetClock, mpb.GetClockRequest())
        end = clock.timestamp.ToDatetime().date()
        if q.get("end"):
            end = iso_date("end", q["end"])
        try:
            start = end - timedelta(days=int(period[:-1]) * days[period[-1]])
        except OverflowError:
            raise AlpacaError(422, f"period {period[:20]} reaches before the year 1") from None
        if q.get("start"):
            start = iso_date("start", q["start"])
        hist = await self.call(
            request,
            self.accounts.GetPortfolioHistory,
            apb.GetPortfolioHistoryRequest(start_date=start.isoformat(), end_date=end.isoformat()),
        )
        return JSONResponse(shapes.portfolio_history_json(hist))

    # ---- orders ----------------------------------------------------------------------------
    def submit_request(self, b: dict[str, Any]) -> opb.SubmitOrderRequest:
        order_class = str(b.get("order_class") or "simple").lower()
        if order_class not in ("simple", "mleg", ""):
            raise AlpacaError(422, f"order_class {order_class!r} is not supported by MBT")
        if b.get("notional") not in (None, ""):
            raise AlpacaError(422, "notional orders are not supported by MBT; send qty")
        if b.get("extended_hours"):
            raise AlpacaError(422, "extended hours are not supported by MBT (regular session)")
        otype = str(b.get("type") or b.get("order_type") or "").lower()
        if otype not in SUPPORTED_TYPES:
            raise AlpacaError(422, f"type must be one of {', '.join(SUPPORTED_TYPES)}")
        req = opb.SubmitOrderRequest(
            symbol=str(b.get("symbol") or ""),
            side=str(b.get("side") or ("buy" if order_class == "mleg" else "")).lower(),
            qty=_decimal_text("qty", b.get("qty")),
            order_type=otype,
            time_in_force=str(b.get("time_in_force") or "day").lower(),
            limit_price=_decimal_text("limit_price", b.get("limit_price")),
            stop_price=_decimal_text("stop_price", b.get("stop_price")),
            client_order_id=str(b.get("client_order_id") or ""),
        )
        for i, leg in enumerate(b.get("legs") or [], start=1):
            if not isinstance(leg, dict):
                raise AlpacaError(422, f"legs[{i}] must be an object")
            ratio = _decimal_text(f"legs[{i}].ratio_qty", leg.get("ratio_qty", 1))
            if not ratio or Decimal(ratio) != Decimal(ratio).to_integral_value():
                raise AlpacaError(422, f"legs[{i}].ratio_qty must be a whole number")
            req.legs.add(
                symbol=str(leg.get("symbol") or ""),
                side=str(leg.get("side") or "").lower(),
                ratio=int(Decimal(ratio)),
            )
        return req

    async def orders_root(self, request: Request) -> Response:
        if request.method == "POST":
            req = self.submit_request(await self.body(request))
            o = await self.command(request, "SubmitOrder", req)
            return JSONResponse(shapes.order_json(o))
        if request.method == "DELETE":
            done = await self.command(request, "CancelAllOrders", opb.CancelAllOrdersRequest())
            body = [{"id": o.id, "status": 200, "body": shapes.order_json(o)} for o in done.orders]
            return JSONResponse(body, 207)
        return await self.list_orders(request)

    async def list_orders(self, request: Request) -> Response:
        """Alpaca's GET /v2/orders: the filters and the order are ListOrders' (so a page of
        more than 100 is the right one either way); `asset_class` is sorted out here."""
        q = request.query_params
        status = (q.get("status") or "open").lower()
        if status not in ("open", "closed", "all"):
            raise AlpacaError(422, "status must be open, closed or all")
        try:
            limit = min(500, max(1, int(q.get("limit") or 50)))
        except ValueError:
            raise AlpacaError(422, "limit must be an integer") from None
        direction = (q.get("direction") or "desc").lower()
        if direction not in ("asc", "desc"):
            raise AlpacaError(422, "direction must be asc or desc")
        side = (q.get("side") or "").lower()
        if side not in ("", "buy", "sell"):
            raise AlpacaError(422, "side must be buy or sell")
        classes = {c.strip().lower() for c in (q.get("asset_class") or "").split(",") if c.strip()}
        if unknown := classes - {"us_equity", "us_option"}:
            raise AlpacaError(422, f"asset_class {sorted(unknown)[0]!r} is not traded on MBT")
        req = opb.ListOrdersRequest(
            status=status,
            page_size=100,
            direction=direction,
            side=side,
            symbols=[s.strip() for s in (q.get("symbols") or "").split(",") if s.strip()],
        )
        for name in ("after", "until"):
            if (t := time_param(q, name)) is not None:
                getattr(req, name).CopyFrom(timestamp_pb(t))
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            page = await self.call(request, self.orders.ListOrders, req)
            for o in page.orders:
                shaped = shapes.order_json(o)
                kinds = {shaped["asset_class"]} | {
                    leg["asset_class"] for leg in shaped.get("legs") or []
                }
                if not classes or kinds & classes:
                    out.append(shaped)
            if not page.next_page_token:
                break
            req.page_token = page.next_page_token
        return JSONResponse(out[:limit])

    async def order_by_client_id(self, request: Request) -> Response:
        coid = request.query_params.get("client_order_id", "")
        if not coid:
            raise AlpacaError(422, "client_order_id is required")
        o = await self.call(
            request, self.orders.GetOrder, opb.GetOrderRequest(client_order_id=coid)
        )
        return JSONResponse(shapes.order_json(o))

    async def order(self, request: Request) -> Response:
        oid = request.path_params["order_id"]
        try:
            uuid.UUID(oid)
        except ValueError:
            raise AlpacaError(422, "order_id is missing or not a UUID") from None
        if request.method == "DELETE":
            o = await self.call(request, self.orders.GetOrder, opb.GetOrderRequest(order_id=oid))
            if o.status not in ("new", "accepted", "partially_filled"):
                raise AlpacaError(422, f"order is {o.status}: not cancelable")
            await self.command(request, "CancelOrder", opb.CancelOrderRequest(order_id=oid))
            return Response(status_code=204)
        if request.method == "PATCH":
            b = await self.body(request)
            req = opb.ReplaceOrderRequest(
                order_id=oid,
                qty=_decimal_text("qty", b.get("qty")),
                limit_price=_decimal_text("limit_price", b.get("limit_price")),
                stop_price=_decimal_text("stop_price", b.get("stop_price")),
                time_in_force=str(b.get("time_in_force") or "").lower(),
                client_order_id=str(b.get("client_order_id") or ""),
            )
            o = await self.command(request, "ReplaceOrder", req)
            return JSONResponse(shapes.order_json(o))
        o = await self.call(request, self.orders.GetOrder, opb.GetOrderRequest(order_id=oid))
        return JSONResponse(shapes.order_json(o))

    # ---- positions -------------------------------------------------------------------------
    async def positions(self, request: Request) -> Response:
        if request.method == "DELETE":
            if (request.query_params.get("cancel_orders") or "").lower() == "true":
                await self.command(request, "CancelAllOrders", opb.CancelAllOrdersRequest())
            held = await self.call(request, self.accounts.ListPositions, apb.ListPositionsRequest())
            results = []
            for p in held.positions:
                try:
                    o = await self.close(request, p, Decimal(p.qty).copy_abs())
                    results.append(
                        {"symbol": p.symbol, "status": 200, "body": shapes.order_json(o)}
                    )
                except AlpacaError as exc:
                    results.append(
                        {
                            "symbol": p.symbol,
                            "status": exc.status,
                            "body": {
                                "code": exc.code,
                                "message": exc.message,
                            },
                        }
                    )
            return JSONResponse(results, 207)
        held = await self.call(request, self.accounts.ListPositions, apb.ListPositionsRequest())
        return JSONResponse([shapes.position_json(p) for p in held.positions])

    async def close(self, request: Request, p: apb.Position, qty: Decimal) -> opb.Order:
        side = "sell" if Decimal(p.qty) > 0 else "buy"
        req = opb.SubmitOrderRequest(
            symbol=p.symbol,
            side=side,
            qty=f"{qty.normalize():f}",
            order_type="market",
            time_in_force="day",
        )
        o: opb.Order = await self.command(request, "SubmitOrder", req)
        return o

    async def position(self, request: Request) -> Response:
        symbol = request.path_params["symbol"].upper()
        try:
            p = await self.call(
                request, self.accounts.GetPosition, apb.GetPositionRequest(symbol=symbol)
            )
        except AlpacaError as exc:
            if exc.status == 404:
                raise AlpacaError(404, "position does not exist") from None
            raise
        if request.method != "DELETE":
            return JSONResponse(shapes.position_json(p))
        q = request.query_params
        held = Decimal(p.qty).copy_abs()
        if q.get("qty") and q.get("percentage"):
            raise AlpacaError(422, "send qty or percentage, not both")
        if q.get("percentage"):
            pct = Decimal(_decimal_text("percentage", q["percentage"]))
            if not 0 < pct <= 100:
                raise AlpacaError(422, "percentage must be in (0, 100]")
            qty = (held * pct / 100).to_integral_value(rounding="ROUND_DOWN")
        elif q.get("qty"):
            qty = Decimal(_decimal_text("qty", q["qty"]))
            if not 0 < qty <= held:
                raise AlpacaError(403, f"insufficient qty available for order (held {held})")
        else:
            qty = held
        if qty <= 0:
            raise AlpacaError(422, "the closing quantity rounds to zero")
        return JSONResponse(shapes.order_json(await self.close(request, p, qty)))

    # ---- market ----------------------------------------------------------------------------
    async def clock(self, request: Request) -> Response:
        c = await self.call(request, self.marketdata.GetClock, mpb.GetClockRequest())
        return JSONResponse(shapes.clock_json(c))

    async def calendar(self, request: Request) -> Response:
        q = request.query_params
        start, end = (q.get("start") or "")[:10], (q.get("end") or "")[:10]
        if not start or not end:
            c = await self.call(request, self.marketdata.GetClock, mpb.GetClockRequest())
            today = c.timestamp.ToDatetime().date()
            start = start or today.isoformat()
            end = end or (today + timedelta(days=365)).isoformat()
        last = iso_date("end", end)
        cal = await self.call(
            request,
            self.marketdata.ListCalendar,
            mpb.ListCalendarRequest(start_date=start, end_date=end),
        )
        if not cal.sessions:  # a weekend, a holiday
            return JSONResponse([])
        # and the session after the last: a day's trades settle on the next trading day (T+1)
        after = await self.call(
            request,
            self.marketdata.ListCalendar,
            mpb.ListCalendarRequest(
                start_date=(last + timedelta(days=1)).isoformat(),
                end_date=(last + timedelta(days=10)).isoformat(),
            ),
        )
        days = list(cal.sessions)
        nexts = [d.date for d in days[1:]] + [after.sessions[0].date if after.sessions else ""]
        return JSONResponse(
            [shapes.calendar_json(s, nxt) for s, nxt in zip(days, nexts, strict=True)]
        )

    async def assets(self, request: Request) -> Response:
        listed = await self.call(request, self.marketdata.ListSymbols, mpb.ListSymbolsRequest())
        symbol = request.path_params.get("symbol")
        if symbol is None:
            q = request.query_params
            status = (q.get("status") or "").lower()
            if status not in ("", "active", "inactive"):
                raise AlpacaError(422, "status must be active or inactive")
            classes = {c.strip().lower() for c in (q.get("asset_class") or "").split(",")} - {""}
            exchange = (q.get("exchange") or "").upper()
            attributes = {x.strip() for x in (q.get("attributes") or "").split(",")} - {""}
            out = []
            for a in (shapes.asset_json(s) for s in listed.symbols):
                if (
                    (status and a["status"] != status)
                    or (classes and a["class"] not in classes)
                    or (exchange and a["exchange"] != exchange)
                    or (attributes and not attributes & set(a["attributes"]))
                ):
                    continue
                out.append(a)
            return JSONResponse(out)
        if symbol.upper() not in listed.symbols and symbol not in {
            shapes.asset_id(s) for s in listed.symbols
        }:
            raise AlpacaError(404, f"asset not found for {symbol}")
        match = next(
            s for s in listed.symbols if s == symbol.upper() or shapes.asset_id(s) == symbol
        )
        return JSONResponse(shapes.asset_json(match))

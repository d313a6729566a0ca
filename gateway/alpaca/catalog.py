"""Alpaca's account activities, option contracts and option chain snapshots over MBT's services.

- `/v2/account/activities[/{type}]`: accounts' ledger activities. Fills are Alpaca's
  TradeActivity (with the order's cumulative and leaves quantity from orders); the rest are
  NonTradeActivity. MBT's lower-case codes map to Alpaca's by `ACTIVITY_CODES`; paging is
  Alpaca's (`page_token` = the last activity id seen, `direction` asc/desc).
- `/v2/options/contracts[/{symbol}]`: the recorded option chains (marketdata's GetOptionChain).
- `/v1beta1/options/snapshots/{underlying}` and `/v1beta1/options/snapshots?symbols=`: each
  contract's latest quote as the caller may see it (marketdata's GetQuote: the market clock,
  and the 15-minute delay of a Free user).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.alpaca import shapes
from gateway.alpaca.api import AlpacaApi, AlpacaError, iso_date, time_param, timestamp_pb
from gateway.alpaca.market_data import quote_json
from raxx.mbt.v1 import accounts_service_pb2 as apb
from raxx.mbt.v1 import marketdata_service_pb2 as mpb
from raxx.mbt.v1 import orders_service_pb2 as opb
from services.conventions.decimals import dec_to_wire
from services.conventions.occ import InvalidOccSymbol, parse_occ

__all__ = ["ACTIVITY_CODES", "CatalogApi", "activity_json", "contract_json"]

# MBT's activity codes (accounts' table) -> Alpaca's activity_type
ACTIVITY_CODES = {
    "fill": "FILL",
    "csd": "CSD",
    "div": "DIV",
    "dividend": "DIV",
    "split": "SPLIT",
    "cil": "CIL",
    "int": "INT",
    "interest": "INT",
    "exercised": "OPEXC",
    "assigned": "OPASN",
    "expired": "OPEXP",
}
ALPACA_TO_MBT: dict[str, list[str]] = {}
for _mbt, _alpaca in ACTIVITY_CODES.items():
    ALPACA_TO_MBT.setdefault(_alpaca, []).append(_mbt)
MAX_ACTIVITY_PAGE = 100
MAX_CONTRACTS = 10_000
DEFAULT_CONTRACTS = 100
MAX_SNAPSHOTS = 1000


def _abs_text(v: str) -> str:
    return v[1:] if v.startswith("-") else v


def activity_json(
    a: apb.Activity, order: opb.Order | None = None, cum_qty: Decimal | None = None
) -> dict[str, Any]:
    """One activity in Alpaca's shape (TradeActivity for fills, NonTradeActivity otherwise)."""
    code = ACTIVITY_CODES.get(a.activity_type, "MISC")
    when = a.occurred_at.ToDatetime(tzinfo=UTC)
    if code == "FILL":
        out: dict[str, Any] = {
            "id": a.id,
            "activity_type": "FILL",
            "transaction_time": a.occurred_at.ToJsonString(),
            "type": "fill",
            "price": a.price,
            "qty": _abs_text(a.qty),
            "side": "sell" if a.qty.startswith("-") else "buy",
            "symbol": a.symbol,
            "leaves_qty": None,
            "order_id": a.ref_id,
            "cum_qty": None,
            "order_status": None,
        }
        if order is not None and cum_qty is not None:
            leaves = max(Decimal(order.qty or "0") - cum_qty, Decimal(0))
            out["type"] = "partial_fill" if leaves > 0 else "fill"
            out["cum_qty"] = dec_to_wire(cum_qty)
            out["leaves_qty"] = dec_to_wire(leaves)
            out["order_status"] = order.status
        return out
    per_share = None
    if a.qty and a.amount and Decimal(a.qty) != 0 and code in ("DIV", "CIL"):
        per_share = dec_to_wire(abs(Decimal(a.amount) / Decimal(a.qty)))
    return {
        "id": a.id,
        "activity_type": code,
        "date": when.date().isoformat(),
        "net_amount": a.amount,
        "description": a.description,
        "status": "executed",
        "symbol": a.symbol or None,
        "qty": a.qty or None,
        "price": a.price or None,
        "per_share_amount": per_share,
    }


def contract_json(c: mpb.OptionContract, today: date) -> dict[str, Any]:
    occ = parse_occ(c.symbol)
    expiry = date.fromisoformat(c.expiry)
    active = expiry >= today
    strike = Decimal(c.strike)
    kind = "Call" if c.type == "call" else "Put"
    return {
        "id": shapes.asset_id(c.symbol),
        "symbol": c.symbol,
        "name": f"{occ.root} {expiry.strftime('%b %d %Y')} {dec_to_wire(strike)} {kind}",
        "status": "active" if active else "inactive",
        "tradable": active,
        "expiration_date": c.expiry,
        "root_symbol": occ.root,
        "underlying_symbol": c.underlying,
        "underlying_asset_id": shapes.asset_id(c.underlying),
        "type": c.type,
        "style": "american",
        "strike_price": dec_to_wire(strike),
        "size": str(c.multiplier or 100),
        "open_interest": None,
        "open_interest_date": None,
        "close_price": None,
        "close_price_date": None,
    }


def _date_param(q: Mapping[str, str], name: str) -> date | None:
    raw = q.get(name)
    return iso_date(name, raw) if raw else None


def _decimal_param(q: Mapping[str, str], name: str) -> Decimal | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        d = Decimal(raw)
    except InvalidOperation:
        raise AlpacaError(422, f"{name}: not a number: {raw[:40]!r}") from None
    if not d.is_finite():
        raise AlpacaError(422, f"{name}: not a number: {raw[:40]!r}")
    return d


def _int_param(q: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = q.get(name)
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= most:
        raise AlpacaError(422, f"{name} must be an integer from 1 to {most}")
    return int(raw)


def _offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _offset_from(token: str | None) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
        offset = json.loads(raw)["o"]
    except (ValueError, TypeError, KeyError):
        raise AlpacaError(422, "page_token is not one this server issued") from None
    if not isinstance(offset, int) or not 0 <= offset <= 10_000_000:
        raise AlpacaError(422, "page_token is not one this server issued")
    return offset


class CatalogApi:
    def __init__(self, api: AlpacaApi) -> None:
        self.api = api

    # ---- activities ------------------------------------------------------------------------
    async def activities(self, request: Request) -> Response:
        q = request.query_params
        kinds = [k.strip().upper() for k in q.get("activity_types", "").split(",") if k.strip()]
        if "activity_type" in request.path_params:
            kinds = [request.path_params["activity_type"].upper()]
        req = apb.ListActivitiesRequest()
        for k in kinds:
            if k in ALPACA_TO_MBT:
                req.activity_types.extend(ALPACA_TO_MBT[k])
            elif not (k.isalnum() and len(k) <= 8):
                raise AlpacaError(422, f"activity_types: unknown activity type {k[:20]!r}")
        if kinds and not req.activity_types:  # only types (TRANS, FEE, ...) MBT never records
            return JSONResponse([])
        direction = (q.get("direction") or "desc").lower()
        if direction not in ("asc", "desc"):
            raise AlpacaError(422, "direction must be asc or desc")
        req.ascending = direction == "asc"
        day = _date_param(q, "date")
        after, until = time_param(q, "after"), time_param(q, "until")
        if day is not None:
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            after, until = start, start + timedelta(days=1)
            req.start_time.CopyFrom(timestamp_pb(after))
        elif after is not None:
            req.start_time.CopyFrom(timestamp_pb(after + timedelta(microseconds=1)))
        if until is not None:
            req.end_time.CopyFrom(timestamp_pb(until))
        req.page_size = _int_param(q, "page_size", MAX_ACTIVITY_PAGE, MAX_ACTIVITY_PAGE)
        token = q.get("page_token")
        if token:
            if len(token) > 200 or not token.isprintable():
                raise AlpacaError(422, "page_token is not an activity id")
            req.after_id = token
        page = await self.api.call(request, self.api.accounts.ListActivities, req)
        fills = [a for a in page.activities if a.activity_type == "fill" and a.ref_id]
        orders, cums = await self._fill_context(request, fills)
        return JSONResponse(
            [activity_json(a, orders.get(a.ref_id), cums.get(a.id)) for a in page.activities]
        )

    async def _fill_context(
        self, request: Request, fills: list[apb.Activity]
    ) -> tuple[dict[str, opb.Order], dict[str, Decimal]]:
        """Each filled order (for leaves and status) and each fill's cumulative quantity."""
        orders: dict[str, opb.Order] = {}
        cums: dict[str, Decimal] = {}
        for order_id in dict.fromkeys(a.ref_id for a in fills):
            try:
                orders[order_id] = await self.api.call(
                    request, self.api.orders.GetOrder, opb.GetOrderRequest(order_id=order_id)
                )
                listed = await self.api.call(
                    request,
                    self.api.orders.ListFills,
                    opb.ListFillsRequest(order_id=order_id, page_size=1000),
                )
            except AlpacaError as exc:
                if exc.status != 404:
                    raise
                continue
            total = Decimal(0)
            # oldest first; a spread's legs (<execution>:<leg>) count once per execution
            seen: set[str] = set()
            for f in sorted(listed.fills, key=lambda f: (f.filled_at.ToNanoseconds(), f.id)):
                execution = f.id.split(":", 1)[0]
                if execution not in seen:
                    seen.add(execution)
                    total += Decimal(f.qty)
                cums[f.id] = total
        return orders, cums

    # ---- option contracts ------------------------------------------------------------------
    async def _today(self, request: Request) -> date:
        clock = await self.api.call(request, self.api.marketdata.GetClock, mpb.GetClockRequest())
        day: date = clock.timestamp.ToDatetime(tzinfo=UTC).date()
        return day

    async def _chain(self, request: Request, underlying: str, expiry: str = "") -> Any:
        return await self.api.call(
            request,
            self.api.marketdata.GetOptionChain,
            mpb.GetOptionChainRequest(underlying=underlying, expiry=expiry),
        )

    async def _contracts(
        self, request: Request, q: Mapping[str, str], today: date
    ) -> list[mpb.OptionContract]:
        """Every recorded contract that the query's filters keep, by expiry then strike."""
        underlyings = [s.strip().upper() for s in q.get("underlying_symbols", "").split(",")]
        underlyings = [s for s in dict.fromkeys(underlyings) if s]
        if not underlyings:
            underlyings = [r.strip().upper() for r in [q.get("root_symbol", "")] if r.strip()]
        if not underlyings:
            raise AlpacaError(422, "underlying_symbols is required (MBT lists recorded chains)")
        if len(underlyings) > 100:
            raise AlpacaError(422, "at most 100 underlying_symbols")
        exact = _date_param(q, "expiration_date")
        gte = _date_param(q, "expiration_date_gte")
        lte = _date_param(q, "expiration_date_lte")
        if exact is None and lte is None:  # Alpaca's default: through the next weekend
            lte = today + timedelta(days=6 - today.weekday())
        status = (q.get("status") or "active").lower()
        if status not in ("active", "inactive"):
            raise AlpacaError(422, "status must be active or inactive")
        kind = (q.get("type") or "").lower()
        if kind not in ("", "call", "put"):
            raise AlpacaError(422, "type must be call or put")
        if (q.get("style") or "american").lower() != "american":
            return []
        s_gte = _decimal_param(q, "strike_price_gte")
        s_lte = _decimal_param(q, "strike_price_lte")
        root = (q.get("root_symbol") or "").upper()
        out: list[mpb.OptionContract] = []
        for underlying in underlyings:
            try:
                first = await self._chain(request, underlying)
            except AlpacaError as exc:
                if exc.status == 404:
                    continue
                raise
            for expiry_text in first.expiries:
                expiry = date.fromisoformat(expiry_text)
                if exact is not None and expiry != exact:
                    continue
                if (gte is not None and expiry < gte) or (lte is not None and expiry > lte):
                    continue
                if (status == "active") != (expiry >= today):
                    continue
                chain = (
                    first
                    if expiry_text == first.expiry
                    else await self._chain(request, underlying, expiry_text)
                )
                for c in chain.contracts:
                    strike = Decimal(c.strike)
                    if kind and c.type != kind:
                        continue
                    if (s_gte is not None and strike < s_gte) or (
                        s_lte is not None and strike > s_lte
                    ):
                        continue
                    if root and parse_occ(c.symbol).root != root:
                        continue
                    out.append(c)
        return out

    async def option_contracts(self, request: Request) -> Response:
        q = request.query_params
        limit = _int_param(q, "limit", DEFAULT_CONTRACTS, MAX_CONTRACTS)
        offset = _offset_from(q.get("page_token"))
        today = await self._today(request)
        found = await self._contracts(request, q, today)
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        return JSONResponse(
            {
                "option_contracts": [contract_json(c, today) for c in page],
                "next_page_token": _offset_token(offset + limit) if more else None,
            }
        )

    async def option_contract(self, request: Request) -> Response:
        raw = request.path_params["symbol_or_id"].upper()
        try:
            occ = parse_occ(raw)
        except InvalidOccSymbol:
            raise AlpacaError(
                404, f"option contract not found: {raw[:40]!r} (look contracts up by OCC symbol)"
            ) from None
        today = await self._today(request)
        try:
            chain = await self._chain(request, occ.root, occ.expiry.isoformat())
        except AlpacaError as exc:
            if exc.status == 404:
                raise AlpacaError(404, f"option contract not found: {raw}") from None
            raise
        for c in chain.contracts:
            if c.symbol == raw:
                return JSONResponse(contract_json(c, today))
        raise AlpacaError(404, f"option contract not found: {raw}")

    # ---- option snapshots ------------------------------------------------------------------
    async def _snapshots(self, request: Request, symbols: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in symbols:
            try:
                quote = await self.api.call(
                    request, self.api.marketdata.GetQuote, mpb.GetQuoteRequest(symbol=s)
                )
            except AlpacaError as exc:
                if exc.status in (404, 422):  # no quote yet (or none the caller may see)
                    out[s] = {"latestQuote": None, "latestTrade": None}
                    continue
                raise
            out[s] = {"latestQuote": quote_json(quote), "latestTrade": None}
        return out

    async def option_chain_snapshots(self, request: Request) -> Response:
        """alpaca-py's `get_option_chain`: the underlying's contracts (the same filters as
        /v2/options/contracts) with each one's latest quote."""
        q = dict(request.query_params)
        limit = _int_param(q, "limit", MAX_SNAPSHOTS, MAX_SNAPSHOTS)
        offset = _offset_from(q.get("page_token"))
        underlying = request.path_params["underlying"].strip().upper()
        if not underlying or len(underlying) > 10 or not underlying.isalnum():
            raise AlpacaError(422, "underlying symbol: 1-10 letters or digits")
        q["underlying_symbols"] = underlying
        if not q.get("expiration_date") and not q.get("expiration_date_lte"):
            # a chain covers every recorded expiry unless the caller narrows it
            q["expiration_date_lte"] = date.max.isoformat()
        today = await self._today(request)
        found = await self._contracts(request, q, today)
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        return JSONResponse(
            {
                "snapshots": await self._snapshots(request, [c.symbol for c in page]),
                "next_page_token": _offset_token(offset + limit) if more else None,
            }
        )

    async def option_snapshots(self, request: Request) -> Response:
        raw = request.query_params.get("symbols", "")
        symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
        if not symbols:
            raise AlpacaError(422, "symbols is required")
        if len(symbols) > 100:
            raise AlpacaError(422, "at most 100 symbols")
        return JSONResponse(
            {"snapshots": await self._snapshots(request, symbols), "next_page_token": None}
        )

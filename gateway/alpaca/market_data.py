"""The subset of Alpaca's Market Data API that alpaca-py's data clients use, over MBT's quotes.

Stocks under `/v2/stocks/...`, options under `/v1beta1/options/...` (alpaca-py's paths);
responses keyed by symbol, paginated with `next_page_token`. Prices here are JSON numbers, as
Alpaca's data API sends them (its data models are floats); the delay of a Free user's quotes is
the market-data service's, exactly as on `/api/mbt`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.alpaca.api import AlpacaApi, AlpacaError
from raxx.mbt.v1 import common_pb2
from raxx.mbt.v1 import marketdata_service_pb2 as mpb

__all__ = ["MarketDataApi"]

MAX_SYMBOLS = 100
MAX_LIMIT = 10_000
TIMEFRAMES = {"1min": "1Min", "5min": "5Min", "15min": "15Min", "1hour": "1Hour", "1day": "1Day"}


def _num(v: str) -> float:
    return float(Decimal(v)) if v else 0.0


def quote_json(q: common_pb2.Quote) -> dict[str, Any]:
    return {
        "t": q.timestamp.ToJsonString(),
        "ax": "",
        "ap": _num(q.ask),
        "as": q.ask_size,
        "bx": "",
        "bp": _num(q.bid),
        "bs": q.bid_size,
        "c": [],
        "z": "",
    }


def bar_json(b: mpb.Bar) -> dict[str, Any]:
    return {
        "t": b.start.ToJsonString(),
        "o": _num(b.open),
        "h": _num(b.high),
        "l": _num(b.low),
        "c": _num(b.close),
        "v": 0,  # quote-mid bars: no traded volume in the recording
        "n": b.quotes,
        "vw": _num(b.close),
    }


def _symbols(request: Request) -> list[str]:
    raw = request.query_params.get("symbols", "")
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise AlpacaError(422, "symbols is required")
    if len(symbols) > MAX_SYMBOLS:
        raise AlpacaError(422, f"at most {MAX_SYMBOLS} symbols")
    return list(dict.fromkeys(symbols))


def _window(request: Request) -> tuple[Timestamp, Timestamp]:
    """start (required) and end (default: a day after start)."""
    start = _time(request, "start")
    if start is None:
        raise AlpacaError(422, "start is required")
    end = _time(request, "end")
    if end is None:
        end = Timestamp()
        end.FromDatetime(start.ToDatetime(tzinfo=UTC) + timedelta(days=1))
    return start, end


def _time(request: Request, name: str) -> Timestamp | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise AlpacaError(422, f"{name}: not an RFC 3339 time: {raw!r}") from None
    ts = Timestamp()
    ts.FromDatetime(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    return ts


def _limit(request: Request, default: int = 1000) -> int:
    try:
        return min(MAX_LIMIT, max(1, int(request.query_params.get("limit") or default)))
    except ValueError:
        raise AlpacaError(422, "limit must be an integer") from None


def _encode_token(index: int, inner: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([index, inner]).encode()).decode()


def _decode_token(token: str) -> tuple[int, str]:
    try:
        index, inner = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(index), str(inner)
    except (ValueError, TypeError):
        raise AlpacaError(422, "page_token is not one this server issued") from None


class MarketDataApi:
    def __init__(self, api: AlpacaApi) -> None:
        self.api = api

    async def history(self, request: Request, method: Any, req: Any) -> Any:
        """History from the recorded archive where the caller's tier has it (Pro+), else from
        what the feed has served (15 minutes late for Free): the service decides."""
        req.archive = True
        try:
            return await self.api.call(request, method, req)
        except AlpacaError as exc:
            if exc.status != 403:
                raise
        req.archive = False
        return await self.api.call(request, method, req)

    async def latest_quotes(self, request: Request) -> Response:
        md = self.api.marketdata
        out = {}
        for s in _symbols(request):
            q = await self.api.call(request, md.GetQuote, mpb.GetQuoteRequest(symbol=s))
            out[s] = quote_json(q)
        return JSONResponse({"quotes": out})

    async def quotes(self, request: Request) -> Response:
        symbols = _symbols(request)
        start, end = _window(request)
        limit = _limit(request)
        token = request.query_params.get("page_token")
        index, inner = _decode_token(token) if token else (0, "")
        out: dict[str, list[dict[str, Any]]] = {}
        taken = 0
        next_token = None
        while index < len(symbols) and taken < limit:
            req = mpb.ListQuotesRequest(
                symbol=symbols[index], page_size=min(1000, limit - taken), page_token=inner
            )
            req.start_time.CopyFrom(start)
            req.end_time.CopyFrom(end)
            page = await self.history(request, self.api.marketdata.ListQuotes, req)
            rows = [quote_json(q) for q in page.quotes]
            out.setdefault(symbols[index], []).extend(rows)
            taken += len(rows)
            if page.next_page_token:
                inner = page.next_page_token
            else:
                index, inner = index + 1, ""
        if index < len(symbols):
            next_token = _encode_token(index, inner)
        return JSONResponse({"quotes": out, "next_page_token": next_token})

    async def bars(self, request: Request) -> Response:
        symbols = _symbols(request)
        tf = TIMEFRAMES.get((request.query_params.get("timeframe") or "1Min").lower())
        if tf is None:
            raise AlpacaError(422, "timeframe must be 1Min, 5Min, 15Min, 1Hour or 1Day")
        start, end = _window(request)
        limit = _limit(request)
        out = {}
        for s in symbols:
            req = mpb.ListBarsRequest(symbol=s, timeframe=tf)
            req.start_time.CopyFrom(start)
            req.end_time.CopyFrom(end)
            resp = await self.history(request, self.api.marketdata.ListBars, req)
            out[s] = [bar_json(b) for b in resp.bars][:limit]
        return JSONResponse({"bars": out, "next_page_token": None})

    async def latest_bars(self, request: Request) -> Response:
        clock = await self.api.call(request, self.api.marketdata.GetClock, mpb.GetClockRequest())
        now = clock.timestamp.ToDatetime(tzinfo=UTC)
        out = {}
        for s in _symbols(request):
            req = mpb.ListBarsRequest(symbol=s, timeframe="1Min")
            req.start_time.FromDatetime(now - timedelta(minutes=30))
            req.end_time.FromDatetime(now + timedelta(minutes=1))
            resp = await self.api.call(request, self.api.marketdata.ListBars, req)
            if resp.bars:
                out[s] = bar_json(resp.bars[-1])
        return JSONResponse({"bars": out})

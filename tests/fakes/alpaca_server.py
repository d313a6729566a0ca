"""A local fake of Alpaca's market-data servers, speaking their wire protocol.

One Starlette app on 127.0.0.1 (a free port) serves both surfaces, so the real alpaca-py clients
run unchanged against it with ``url_override``:

* WebSocket ``/v2/{iex|sip}`` (stocks stream). Handshake as Alpaca does it: the server sends
  ``[{"T":"success","msg":"connected"}]``; the client sends ``{"action":"auth","key","secret"}``;
  the server answers ``[{"T":"success","msg":"authenticated"}]`` or
  ``[{"T":"error","code":402,"msg":"auth failed"}]`` (and closes); the client subscribes with
  ``{"action":"subscribe","quotes":[..]}`` and the server acks with the full subscription frame.
  Quotes are pushed as ``{"T":"q","S","bx","bp","bs","ax","ap","as","c","z","t"}``. Frames are
  msgpack (``t`` a msgpack timestamp extension) when the client sent
  ``Content-Type: application/msgpack``, as alpaca-py does; JSON text (``t`` RFC3339) otherwise.
  Like Alpaca, a key holds one authenticated connection at a time: a second one is refused with
  ``[{"T":"error","code":406,"msg":"connection limit exceeded"}]``.
* REST ``GET /v2/stocks/quotes`` (``{"quotes": {sym: [..]}, "next_page_token"}``),
  ``GET /v2/stocks/{symbol}/quotes`` (``{"symbol", "quotes": [..], "next_page_token"}``),
  ``GET /v2/stocks/quotes/latest`` (``{"quotes": {sym: {..}}}``) and
  ``GET /v1beta1/options/snapshots/{underlying}`` (``{"snapshots": {..}, "next_page_token"}``),
  authenticated by ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``; ``start`` and ``end`` are
  inclusive; pages hold at most ``max_page_size`` items.

Test controls: `add_quotes` / `add_option_quotes` (the REST store), `push` (live quotes to the
subscribed sessions), `drop_connections` (close every stream, to test reconnects), `wait_until`
and the counters (`connections`, `auth_failures`, `subscriptions`, `requests`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.conventions.quote import Quote

__all__ = ["FakeAlpacaMarketData", "RestRequest", "rfc3339"]

FEEDS = frozenset({"iex", "sip", "delayed_sip"})
# The channels Alpaca lists in every subscription ack.
CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "corrections",
    "cancelErrors",
)
UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}


def rfc3339(ts: datetime) -> str:
    """``ts`` as Alpaca writes it: UTC, ``Z``, fraction without trailing zeros (RFC3339Nano)."""
    ts = ts.astimezone(UTC)
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond:06d}".rstrip("0")
    return text + "Z"


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


@dataclass(frozen=True)
class RestRequest:
    """One REST call the fake answered (the secret header is not kept)."""

    path: str
    params: dict[str, str]
    key: str | None
    status: int


@dataclass(eq=False)  # hashed by identity: sessions live in a set
class _Session:
    ws: WebSocket
    feed: str
    msgpack: bool
    key: str | None = None
    quotes: set[str] = field(default_factory=set)
    closed: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wants(self, symbol: str) -> bool:
        return symbol in self.quotes or "*" in self.quotes

    async def send(self, msgs: list[dict[str, Any]]) -> None:
        async with self.send_lock:
            if self.closed:
                return
            if self.msgpack:
                await self.ws.send_bytes(msgpack.packb(msgs))
            else:
                await self.ws.send_text(json.dumps(msgs))

    async def close(self, code: int) -> None:
        async with self.send_lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(Exception):
                    await self.ws.close(code=code)


class _Server(uvicorn.Server):
    """uvicorn inside the test's event loop: leave the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FakeAlpacaMarketData:
    """Alpaca's market-data REST and stream servers, in process. Use as ``async with``."""

    def __init__(
        self,
        *,
        key: str = "PKFAKEKEY0000000",
        secret: str = "fake-secret-do-not-log",
        max_page_size: int = 10_000,
        exchange: str = "V",
        tape: str = "A",
        conditions: tuple[str, ...] = ("R",),
    ) -> None:
        self.credentials = {key: secret}
        self.max_page_size = max_page_size
        self.exchange, self.tape, self.conditions = exchange, tape, conditions
        self.stock_quotes: dict[str, list[Quote]] = {}
        self.option_quotes: dict[str, dict[str, Quote]] = {}  # underlying -> contract -> latest
        # counters and records the tests assert on
        self.connections = 0
        self.auth_failures = 0
        self.subscriptions: list[frozenset[str]] = []  # quote symbols of every ack, in order
        self.requests: list[RestRequest] = []
        self._sessions: set[_Session] = set()
        self._changed = asyncio.Event()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> FakeAlpacaMarketData:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_config=None,  # leave the process's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raise the startup error
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        for s in list(self._sessions):
            await s.close(1001)
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    @property
    def rest_url(self) -> str:
        """The ``url_override`` for alpaca-py's historical clients (no version, no slash)."""
        return f"http://127.0.0.1:{self.port}"

    def stream_url(self, feed: str = "iex") -> str:
        """The full stream endpoint (alpaca-py uses a stream ``url_override`` verbatim)."""
        return f"ws://127.0.0.1:{self.port}/v2/{feed}"

    # -- test controls -------------------------------------------------------------------------
    def add_quotes(self, quotes: Iterable[Quote]) -> None:
        """Serve ``quotes`` from the historical and latest endpoints (kept sorted by time)."""
        for q in quotes:
            self.stock_quotes.setdefault(q.symbol, []).append(q)
        for series in self.stock_quotes.values():
            series.sort(key=lambda q: q.ts)

    def add_option_quotes(self, underlying: str, quotes: Iterable[Quote]) -> None:
        """Serve the latest of ``quotes`` per contract in ``underlying``'s option chain."""
        chain = self.option_quotes.setdefault(underlying, {})
        for q in quotes:
            if q.symbol not in chain or chain[q.symbol].ts <= q.ts:
                chain[q.symbol] = q

    async def push(self, *quotes: Quote) -> int:
        """Send ``quotes`` (one frame per session) to every session subscribed to them.

        Returns how many quote messages went out in total.
        """
        sent = 0
        for s in list(self._sessions):
            msgs = [self._quote_msg(q, s.msgpack) for q in quotes if s.wants(q.symbol)]
            if msgs and not s.closed:
                await s.send(msgs)
                sent += len(msgs)
        return sent

    async def drop_connections(self, code: int = 1011) -> int:
        """Close every stream connection server-side; returns how many were open."""
        sessions = list(self._sessions)
        self._sessions.clear()
        for s in sessions:
            await s.close(code)
        self._notify()
        return len(sessions)

    @property
    def open_sessions(self) -> int:
        return sum(1 for s in self._sessions if s.key is not None and not s.closed)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (event driven, no polling) until ``predicate()`` holds after a state change."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- wire formats --------------------------------------------------------------------------
    def _quote_json(self, q: Quote) -> dict[str, Any]:
        # Alpaca sends prices and sizes as JSON numbers (float64 on the msgpack stream).
        return {
            "t": rfc3339(q.ts),
            "ax": self.exchange,
            "ap": float(q.ask),
            "as": q.ask_size,
            "bx": self.exchange,
            "bp": float(q.bid),
            "bs": q.bid_size,
            "c": list(self.conditions),
            "z": self.tape,
        }

    def _quote_msg(self, q: Quote, packed: bool) -> dict[str, Any]:
        msg: dict[str, Any] = {"T": "q", "S": q.symbol, **self._quote_json(q)}
        if packed:
            msg["t"] = msgpack.Timestamp.from_datetime(q.ts)
        return msg

    # -- the app -------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/stocks/quotes", self._stock_quotes),
                Route("/v2/stocks/quotes/latest", self._latest_quotes),
                Route("/v2/stocks/{symbol}/quotes", self._symbol_quotes),
                Route("/v1beta1/options/snapshots/{underlying}", self._option_chain),
                WebSocketRoute("/v2/{feed}", self._stream),
            ]
        )

    # -- stream --------------------------------------------------------------------------------
    async def _stream(self, ws: WebSocket) -> None:
        feed = ws.path_params["feed"]
        if feed not in FEEDS:
            await ws.close(code=1008)
            return
        await ws.accept()
        packed = ws.headers.get("content-type", "").startswith("application/msgpack")
        session = _Session(ws, feed, packed)
        self._sessions.add(session)
        self.connections += 1
        self._notify()
        try:
            await session.send([{"T": "success", "msg": "connected"}])
            while not session.closed:
                await self._handle(session, await self._receive(session))
        except WebSocketDisconnect:
            pass
        finally:
            session.closed = True
            self._sessions.discard(session)
            self._notify()

    async def _receive(self, session: _Session) -> dict[str, Any]:
        message = await session.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            data = msgpack.unpackb(message["bytes"])
        else:
            data = json.loads(message["text"])
        return data if isinstance(data, dict) else {}

    async def _handle(self, session: _Session, msg: dict[str, Any]) -> None:
        action = msg.get("action")
        if action == "auth":
            await self._auth(session, msg)
        elif session.key is None:
            await session.send([{"T": "error", "code": 401, "msg": "not authenticated"}])
        elif action in ("subscribe", "unsubscribe"):
            symbols = {str(s) for s in msg.get("quotes", [])}
            if action == "subscribe":
                session.quotes |= symbols
            else:
                session.quotes -= symbols
            ack: dict[str, Any] = {"T": "subscription", **{c: [] for c in CHANNELS}}
            ack["quotes"] = sorted(session.quotes)
            await session.send([ack])
            self.subscriptions.append(frozenset(session.quotes))
            self._notify()
        else:
            await session.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])

    async def _auth(self, session: _Session, msg: dict[str, Any]) -> None:
        if session.key is not None:
            await session.send([{"T": "error", "code": 403, "msg": "already authenticated"}])
            return
        key, secret = msg.get("key"), msg.get("secret")
        if not isinstance(key, str) or self.credentials.get(key) != secret:
            self.auth_failures += 1
            await session.send([{"T": "error", "code": 402, "msg": "auth failed"}])
            await session.close(1008)
            self._notify()
            return
        if any(s.key == key and not s.closed for s in self._sessions if s is not session):
            await session.send([{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
            await session.close(1008)
            return
        session.key = key
        await session.send([{"T": "success", "msg": "authenticated"}])
        self._notify()

    # -- REST ----------------------------------------------------------------------------------
    def _authorize(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("apca-api-key-id")
        ok = key is not None and self.credentials.get(key) == request.headers.get(
            "apca-api-secret-key"
        )
        status = 200 if ok else 401
        self.requests.append(RestRequest(request.url.path, dict(request.query_params), key, status))
        return None if ok else JSONResponse(UNAUTHORIZED, status_code=401)

    def _window(self, request: Request) -> tuple[datetime | None, datetime | None, int, int]:
        """(start, end, offset, page size) from the query; ValueError on a bad one."""
        q = request.query_params
        start = _parse_time(q["start"]) if q.get("start") else None
        end = _parse_time(q["end"]) if q.get("end") else None
        limit = int(q.get("limit") or 1000)
        if not 1 <= limit <= 10_000:
            raise ValueError("invalid limit")
        token = q.get("page_token")
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        feed = q.get("feed")
        if feed is not None and feed not in FEEDS:
            raise ValueError("invalid feed")
        return start, end, offset, min(limit, self.max_page_size)

    def _select(self, symbol: str, start: datetime | None, end: datetime | None) -> list[Quote]:
        return [
            q
            for q in self.stock_quotes.get(symbol, [])
            if (start is None or q.ts >= start) and (end is None or q.ts <= end)
        ]

    @staticmethod
    def _token(offset: int) -> str:
        return base64.urlsafe_b64encode(str(offset).encode()).decode()

    @staticmethod
    def _bad_request(exc: Exception) -> JSONResponse:
        return JSONResponse({"code": 40010001, "message": str(exc)}, status_code=400)

    async def _stock_quotes(self, request: Request) -> JSONResponse:
        if (denied := self._authorize(request)) is not None:
            return denied
        try:
            start, end, offset, size = self._window(request)
            symbols = sorted({s for s in request.query_params["symbols"].split(",") if s})
        except (KeyError, ValueError) as exc:
            return self._bad_request(exc)
        # Multi-symbol pages run through the symbols in order, each one's quotes by time.
        rows = [(s, q) for s in symbols for q in self._select(s, start, end)]
        page = rows[offset : offset + size]
        body: dict[str, list[dict[str, Any]]] = {}
        for s, q in page:
            body.setdefault(s, []).append(self._quote_json(q))
        more = offset + size < len(rows)
        return JSONResponse(
            {"quotes": body, "next_page_token": self._token(offset + size) if more else None}
        )

    async def _symbol_quotes(self, request: Request) -> JSONResponse:
        if (denied := self._authorize(request)) is not None:
            return denied
        symbol = request.path_params["symbol"]
        try:
            start, end, offset, size = self._window(request)
        except ValueError as exc:
            return self._bad_request(exc)
        rows = self._select(symbol, start, end)
        more = offset + size < len(rows)
        return JSONResponse(
            {
                "symbol": symbol,
                "quotes": [self._quote_json(q) for q in rows[offset : offset + size]],
                "next_page_token": self._token(offset + size) if more else None,
            }
        )

    async def _latest_quotes(self, request: Request) -> JSONResponse:
        if (denied := self._authorize(request)) is not None:
            return denied
        symbols = [s for s in request.query_params.get("symbols", "").split(",") if s]
        if not symbols:
            return self._bad_request(ValueError("missing symbols"))
        stored = self.stock_quotes
        body = {s: self._quote_json(stored[s][-1]) for s in symbols if stored.get(s)}
        return JSONResponse({"quotes": body})

    async def _option_chain(self, request: Request) -> JSONResponse:
        if (denied := self._authorize(request)) is not None:
            return denied
        try:
            _, _, offset, size = self._window(request)
        except ValueError as exc:
            return self._bad_request(exc)
        size = min(size, 1000)
        chain = self.option_quotes.get(request.path_params["underlying"], {})
        contracts = sorted(chain)
        page = contracts[offset : offset + size]
        more = offset + size < len(contracts)
        return JSONResponse(
            {
                "snapshots": {c: {"latestQuote": self._quote_json(chain[c])} for c in page},
                "next_page_token": self._token(offset + size) if more else None,
            }
        )

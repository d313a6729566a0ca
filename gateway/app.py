"""The HTTP gateway: a thin Starlette shim that transcodes /api/mbt/* to the gRPC services.

Envelope: success `{"data": ..., "meta": {"request_id": ...}}`; error
`{"error": {"code": REASON, "message": ..., "request_id": ...}}` with the grpc-gateway status.
Browsers authenticate with the `mbt_session` cookie (HttpOnly; Secure; SameSite=Strict) and
refresh with `mbt_refresh` (see `gateway.sessions`); programs send `Authorization: Bearer
<token>` or an API key as Alpaca's `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from gateway.alpaca import AlpacaError, TradeUpdatesSocket, alpaca_routes
from gateway.browser_stream import trade_updates_sse
from gateway.observability import RequestLog, metrics
from gateway.openapi import build_openapi
from gateway.routes import HttpRoute, build_routes
from gateway.security import SecurityHeaders, console_page, console_routes, docs_routes
from gateway.sessions import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    SESSION_OPENING_METHODS,
    CredentialRefused,
    ascii_header,
    clear_session_cookies,
    credential_metadata,
    set_session_cookies,
    take_tokens,
)
from gateway.transcode import (
    BadRequest,
    build_request,
    error_from_rpc,
    message_to_json,
    retry_after_from_rpc,
)
from services.platform.clients import CHANNEL_OPTIONS
from services.platform.owner_routes import COMMANDS, OwnerRoutes
from services.platform.settings import DEFAULT_PORTS, SERVICE_NAMES

DEFAULT_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 64 * 1024  # an order is well under 2 KB
ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def _rate_headers(md: Any) -> dict[str, str]:
    """X-RateLimit-* from the service's trailing metadata (it owns the limiter)."""
    return {RATE_HEADERS[k]: v for k, v in (md or ()) if k in RATE_HEADERS}


@dataclass
class GatewayConfig:
    service_addrs: dict[str, str]
    allowed_origins: tuple[str, ...] = ("http://localhost:8080", "http://127.0.0.1:8080")
    secure_cookie: bool = True
    vouch_key: str = field(default="", repr=False)
    """MBT_GATEWAY_VOUCH_KEY: lets the services trust the client address it forwards."""

    @classmethod
    def from_env(cls) -> GatewayConfig:
        addrs = {
            n: os.environ.get(f"MBT_{n.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[n]}")
            for n in SERVICE_NAMES
        }
        origins = tuple(
            o.strip()
            for o in os.environ.get("MBT_WEBAUTHN_ORIGINS", "http://localhost:8080").split(",")
            if o
        )
        extra = tuple(o.replace("localhost", "127.0.0.1") for o in origins)
        vouch = os.environ.get("MBT_GATEWAY_VOUCH_KEY", "")
        return cls(service_addrs=addrs, allowed_origins=origins + extra, vouch_key=vouch)


@dataclass
class Gateway:
    config: GatewayConfig
    routes: list[HttpRoute] = field(default_factory=build_routes)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    # orders commands go straight to the instance that owns the caller's partition, once an
    # instance has named it (services.platform.owner_routes)
    owners: OwnerRoutes = field(default_factory=OwnerRoutes)

    def channel(self, service: str) -> grpc.aio.Channel:
        ch = self.channels.get(service)
        if ch is None:
            ch = self.channels[service] = grpc.aio.insecure_channel(
                self.config.service_addrs[service], options=CHANNEL_OPTIONS
            )
        return ch

    def find(self, verb: str, path: str) -> tuple[HttpRoute | None, dict[str, str], list[str]]:
        allowed: list[str] = []
        for r in self.routes:
            params = r.match(verb, path)
            if params is not None:
                return r, params, []
            if r.regex.fullmatch(path):
                allowed.append(r.verb)
        return None, {}, allowed

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()
        await self.owners.close()


def error_response(
    status: int, code: str, message: str, rid: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "request_id": rid}},
        status_code=status,
        headers={"x-request-id": rid, **(headers or {})},
    )


RATE_HEADERS = {
    "x-ratelimit-limit": "X-RateLimit-Limit",
    "x-ratelimit-remaining": "X-RateLimit-Remaining",
    "x-ratelimit-reset": "X-RateLimit-Reset",
}


def create_app(config: GatewayConfig | None = None) -> Starlette:
    gw = Gateway(config or GatewayConfig.from_env())
    openapi_doc = build_openapi(gw.routes)
    vouch = gw.config.vouch_key
    secure = gw.config.secure_cookie

    async def api(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or ""
        if not rid or len(rid) > 64 or not ascii_header(rid):
            rid = uuid.uuid4().hex
        route, params, allowed = gw.find(request.method, request.url.path)
        request.state.mbt_rid = rid
        if route is not None:
            request.state.mbt_route = route.template
        if route is None:
            if allowed:
                return error_response(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not allowed on {request.url.path}",
                    rid,
                    {"allow": ", ".join(sorted(set(allowed)))},
                )
            return error_response(
                404, "NOT_FOUND", f"no route for {request.method} {request.url.path}", rid
            )
        metadata = credential_metadata(request, gw.config.allowed_origins, vouch, rid)
        if isinstance(metadata, CredentialRefused):
            headers = {"www-authenticate": 'Bearer realm="mbt"'} if metadata.status == 401 else None
            return error_response(metadata.status, metadata.code, metadata.message, rid, headers)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error_response(
                413, "PAYLOAD_TOO_LARGE", f"the body is over {MAX_BODY_BYTES // 1024} KB", rid
            )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body.strip() and ctype != "application/json":
            return error_response(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"send the body as application/json (got {ctype or 'no content type'})",
                rid,
            )
        name = route.method.name
        try:
            msg = build_request(route, params, list(request.query_params.multi_items()), body)
        except BadRequest as exc:
            return error_response(400, "INVALID_ARGUMENT", str(exc), rid)
        if name == "RefreshSession" and not getattr(msg, "refresh_token", ""):
            msg.refresh_token = request.cookies.get(REFRESH_COOKIE, "")  # type: ignore[attr-defined]
        channel = gw.channel(route.service)
        try:
            if route.service == "orders" and name in COMMANDS:  # to the owner, once named
                reply, trailing = await gw.owners.unary(
                    channel,
                    route.grpc_path,
                    msg,
                    route.response_cls,
                    tuple(metadata),
                    DEFAULT_TIMEOUT_S,
                )
            else:
                pending = channel.unary_unary(
                    route.grpc_path,
                    request_serializer=route.request_cls.SerializeToString,
                    response_deserializer=route.response_cls.FromString,
                )(msg, metadata=tuple(metadata), timeout=DEFAULT_TIMEOUT_S, wait_for_ready=True)
                reply = await pending
                trailing = await pending.trailing_metadata()
        except grpc.aio.AioRpcError as err:
            status, code, message = error_from_rpc(err)
            headers = _rate_headers(err.trailing_metadata())
            if status == 401:
                headers["www-authenticate"] = 'Bearer realm="mbt"'
            if status == 429:
                headers["retry-after"] = str(retry_after_from_rpc(err) or 1)
            resp = error_response(status, code, message, rid, headers)
            if status == 401 and (
                name == "RefreshSession"
                or (request.cookies.get(ACCESS_COOKIE) and "authorization" not in request.headers)
            ):
                clear_session_cookies(resp, secure, refresh_too=name == "RefreshSession")
            return resp
        headers = {"x-request-id": rid, **_rate_headers(trailing)}
        data: dict[str, Any] = message_to_json(reply)
        tokens = take_tokens(data) if name in SESSION_OPENING_METHODS else None
        resp = JSONResponse({"data": data, "meta": {"request_id": rid}}, headers=headers)
        if tokens is not None:
            set_session_cookies(resp, tokens, secure)
        elif name == "RevokeCurrentSession":
            clear_session_cookies(resp, secure)
        return resp

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_doc)

    async def health(request: Request) -> Response:
        return JSONResponse({"data": {"status": "ok"}, "meta": {}})

    async def index(request: Request) -> Response:
        # a browser gets the web console; programs get the JSON map of the surfaces
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(console_page())
        return JSONResponse(
            {
                "data": {
                    "service": "mbt-gateway",
                    "api": "/api/mbt",
                    "openapi": "/openapi.json",
                    "docs": "/docs",
                },
                "meta": {},
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gw.close()

    async def v2_not_found(request: Request) -> Response:
        return AlpacaError(
            404, f"endpoint not found: {request.method} {request.url.path}"
        ).response()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", health),
            Route("/openapi.json", openapi),
            Route("/metrics", metrics),
            *docs_routes(),
            *console_routes(),
            Route(
                "/api/mbt/stream/trade-updates",
                trade_updates_sse(gw.channel, gw.config.allowed_origins, vouch),
            ),
            Route("/api/{rest:path}", api, methods=ALL_METHODS),
            *alpaca_routes(gw.channel, gw.config.allowed_origins, vouch, gw.owners),
            Route(
                "/v2/{rest:path}", v2_not_found, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]
            ),
            WebSocketRoute("/stream", TradeUpdatesSocket(gw.channel).handle),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)
    return app

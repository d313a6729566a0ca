"""The HTTP gateway: a thin Starlette shim that transcodes /api/mbt/* to the gRPC services.

Envelope: success `{"data": ..., "meta": {"request_id": ...}}`; error
`{"error": {"code": REASON, "message": ..., "request_id": ...}}` with the grpc-gateway status.
Browsers authenticate with the `mbt_session` cookie (HttpOnly; Secure; SameSite=Strict);
programmatic clients send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.openapi import build_openapi
from gateway.routes import HttpRoute, build_routes
from gateway.transcode import BadRequest, build_request, error_from_rpc, message_to_json
from services.platform.clients import CHANNEL_OPTIONS
from services.platform.settings import DEFAULT_PORTS, SERVICE_NAMES

COOKIE = "mbt_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SESSION_METHODS = {"FinishRegistration", "FinishLogin"}
DEFAULT_TIMEOUT_S = 10.0


@dataclass
class GatewayConfig:
    service_addrs: dict[str, str]
    allowed_origins: tuple[str, ...] = ("http://localhost:8080", "http://127.0.0.1:8080")
    secure_cookie: bool = True

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
        return cls(service_addrs=addrs, allowed_origins=origins + extra)


@dataclass
class Gateway:
    config: GatewayConfig
    routes: list[HttpRoute] = field(default_factory=build_routes)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

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


def error_response(
    status: int, code: str, message: str, rid: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "request_id": rid}},
        status_code=status,
        headers={"x-request-id": rid, **(headers or {})},
    )


def _origin_ok(request: Request, allowed: Sequence[str]) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    return origin is None or origin in allowed


def create_app(config: GatewayConfig | None = None) -> Starlette:
    gw = Gateway(config or GatewayConfig.from_env())
    openapi_doc = build_openapi(gw.routes)

    async def api(request: Request) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        route, params, allowed = gw.find(request.method, request.url.path)
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
        metadata: list[tuple[str, str]] = [("x-request-id", rid)]
        auth = request.headers.get("authorization")
        cookie = request.cookies.get(COOKIE)
        if auth:
            metadata.append(("authorization", auth))
        elif cookie:
            if request.method not in SAFE_METHODS and not _origin_ok(
                request, gw.config.allowed_origins
            ):
                return error_response(
                    403, "CSRF_REJECTED", "cross-site request with a session cookie refused", rid
                )
            metadata.append(("authorization", f"Bearer {cookie}"))
        try:
            msg = build_request(
                route, params, list(request.query_params.multi_items()), await request.body()
            )
        except BadRequest as exc:
            return error_response(400, "INVALID_ARGUMENT", str(exc), rid)
        call = gw.channel(route.service).unary_unary(
            route.grpc_path,
            request_serializer=route.request_cls.SerializeToString,
            response_deserializer=route.response_cls.FromString,
        )
        try:
            reply = await call(
                msg, metadata=tuple(metadata), timeout=DEFAULT_TIMEOUT_S, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            status, code, message = error_from_rpc(err)
            headers = {"www-authenticate": 'Bearer realm="mbt"'} if status == 401 else None
            resp = error_response(status, code, message, rid, headers)
            if status == 401 and cookie and not auth:
                resp.delete_cookie(COOKIE, path="/")
            return resp
        data: dict[str, Any] = message_to_json(reply)
        resp = JSONResponse(
            {"data": data, "meta": {"request_id": rid}}, headers={"x-request-id": rid}
        )
        name = route.method.name
        if name in SESSION_METHODS:
            token = data.pop("token", "")
            resp = JSONResponse(
                {"data": data, "meta": {"request_id": rid}}, headers={"x-request-id": rid}
            )
            resp.set_cookie(
                COOKIE,
                token,
                max_age=12 * 3600,
                path="/",
                secure=gw.config.secure_cookie,
                httponly=True,
                samesite="strict",
            )
        elif name == "RevokeCurrentSession":
            resp.delete_cookie(
                COOKIE, path="/", secure=gw.config.secure_cookie, httponly=True, samesite="strict"
            )
        return resp

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_doc)

    async def health(request: Request) -> Response:
        return JSONResponse({"data": {"status": "ok"}, "meta": {}})

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "data": {"service": "mbt-gateway", "api": "/api/mbt", "openapi": "/openapi.json"},
                "meta": {},
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gw.close()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", health),
            Route("/openapi.json", openapi),
            Route("/api/{rest:path}", api, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ],
        lifespan=lifespan,
    )
    return app

"""The browser's trade-update stream: `GET /api/mbt/stream/trade-updates` as Server-Sent Events.

Authenticated like every `/api/mbt` route (the session cookie for Antlers), fed by
OrdersService.StreamTradeUpdates. Each event's `id:` is the update's sequence, so a browser's
EventSource that reconnects sends `Last-Event-ID` and resumes with exactly what it missed.
`?after=N` does the same explicitly. The data is the `/api/mbt` TradeUpdate JSON.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.sessions import CredentialRefused, credential_metadata
from gateway.transcode import message_to_json
from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from services.platform.errors import HTTP_STATUS_BY_CODE

__all__ = ["trade_updates_sse"]

KEEPALIVE_S = 15.0


def trade_updates_sse(
    channel: Callable[[str], grpc.aio.Channel], allowed_origins: tuple[str, ...], vouch: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rid = request.headers.get("x-request-id", "")[:64] or "sse"
        md = credential_metadata(request, allowed_origins, vouch, rid)
        if isinstance(md, CredentialRefused):
            return JSONResponse(
                {"error": {"code": md.code, "message": md.message, "request_id": rid}}, md.status
            )
        req = opb.StreamTradeUpdatesRequest()
        after = request.headers.get("last-event-id") or request.query_params.get("after")
        if after:
            if not (after.isascii() and after.isdigit()) or len(after) > 19:
                return JSONResponse(
                    {
                        "error": {
                            "code": "INVALID_ARGUMENT",
                            "message": "after: not a sequence",
                            "request_id": rid,
                        }
                    },
                    400,
                )
            req.after_sequence = int(after)
        call = ogrpc.OrdersServiceStub(channel("orders")).StreamTradeUpdates(
            req, metadata=tuple(md)
        )
        await call.initial_metadata()  # the subscription is in place, or the call has ended
        if call.done():
            code = await call.code()
            return JSONResponse(
                {
                    "error": {
                        "code": code.name,
                        "message": await call.details() or code.name,
                        "request_id": rid,
                    }
                },
                HTTP_STATUS_BY_CODE.get(code, 500),
            )

        async def events() -> AsyncIterator[str]:
            yield ": listening\n\n"
            try:
                async for u in call:
                    body = json.dumps(message_to_json(u), separators=(",", ":"))
                    yield f"id: {u.sequence}\nevent: {u.event}\ndata: {body}\n\n"
            except grpc.aio.AioRpcError:
                return
            finally:
                call.cancel()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return endpoint

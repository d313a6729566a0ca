"""Alpaca's `trade_updates` WebSocket at `/stream`, fed by OrdersService.StreamTradeUpdates.

Protocol (research/alpaca.md §5): the client authenticates first
(``{"action":"authenticate","data":{"key_id":…,"secret_key":…}}``, or ``oauth_token``: an MBT
access token), is answered ``authorized`` or ``unauthorized``, then sends
``{"action":"listen","data":{"streams":["trade_updates"]}}``; the ack follows once the
subscription is in place, then every update as ``{"stream":"trade_updates","data":{…}}``.
Replies use the frame type the client used (Alpaca itself answers in binary frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.alpaca.shapes import trade_update_json
from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from raxx.mbt.v1 import sessions_service_pb2 as spb
from raxx.mbt.v1 import sessions_service_pb2_grpc as sgrpc

__all__ = ["TradeUpdatesSocket"]

log = logging.getLogger("mbt.gateway.stream")
AUTH_TIMEOUT_S = 10.0
MAX_FRAME = 16 * 1024


class TradeUpdatesSocket:
    def __init__(self, channel: Callable[[str], grpc.aio.Channel]) -> None:
        self._channel = channel

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        binary = False

        async def send(obj: dict[str, Any]) -> None:
            text = json.dumps(obj, separators=(",", ":"))
            if binary:
                await ws.send_bytes(text.encode())
            else:
                await ws.send_text(text)

        async def receive() -> dict[str, Any] | None:
            nonlocal binary
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            raw = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text", "")
            binary = msg.get("bytes") is not None
            if raw is None or len(raw) > MAX_FRAME:
                return None
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                return None
            return data if isinstance(data, dict) else None

        updates: asyncio.Task[None] | None = None
        try:
            first = await asyncio.wait_for(receive(), AUTH_TIMEOUT_S)
            md = await self._authenticate(first)
            if md is None:
                await send(
                    {
                        "stream": "authorization",
                        "data": {"status": "unauthorized", "action": "authenticate"},
                    }
                )
                await ws.close(1008)
                return
            await send(
                {
                    "stream": "authorization",
                    "data": {"status": "authorized", "action": "authenticate"},
                }
            )
            while True:
                msg = await receive()
                if msg is None or msg.get("action") != "listen":
                    await send({"stream": "error", "data": {"error_message": "expected listen"}})
                    continue
                streams = (msg.get("data") or {}).get("streams") or []
                wanted = "trade_updates" in streams
                if updates is not None and not wanted:
                    updates.cancel()
                    updates = None
                if wanted and updates is None:
                    ready = asyncio.Event()
                    updates = asyncio.create_task(self._forward(md, send, ready))
                    done, _ = await asyncio.wait(
                        {updates, asyncio.create_task(ready.wait())},
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if updates in done:  # failed before listening
                        updates.result()
                await send(
                    {
                        "stream": "listening",
                        "data": {"streams": ["trade_updates"] if wanted else []},
                    }
                )
        except (WebSocketDisconnect, TimeoutError):
            pass
        finally:
            if updates is not None:
                updates.cancel()
                with contextlib.suppress(BaseException):
                    await updates
            with contextlib.suppress(Exception):
                await ws.close()

    async def _authenticate(self, msg: dict[str, Any] | None) -> tuple[tuple[str, str], ...] | None:
        if not msg or msg.get("action") not in ("authenticate", "auth"):
            return None
        data = msg.get("data") or {}
        key_id, secret = (
            data.get("key_id") or msg.get("key"),
            data.get("secret_key") or msg.get("secret"),
        )
        token = data.get("oauth_token")
        if isinstance(key_id, str) and isinstance(secret, str):
            md: tuple[tuple[str, str], ...] = (
                ("apca-api-key-id", key_id),
                ("apca-api-secret-key", secret),
            )
        elif isinstance(token, str):
            md = (("authorization", f"Bearer {token}"),)
        else:
            return None
        if any(len(v) > 4096 or not (v.isascii() and v.isprintable()) for _, v in md):
            return None
        try:  # ask the services who this is (also counts against the rate limit)
            await sgrpc.SessionsServiceStub(self._channel("sessions")).GetCurrentSession(
                spb.GetCurrentSessionRequest(), metadata=md, timeout=10
            )
        except grpc.aio.AioRpcError:
            return None
        return md

    async def _forward(
        self,
        md: tuple[tuple[str, str], ...],
        send: Callable[[dict[str, Any]], Any],
        ready: asyncio.Event,
    ) -> None:
        stub = ogrpc.OrdersServiceStub(self._channel("orders"))
        call = stub.StreamTradeUpdates(opb.StreamTradeUpdatesRequest(), metadata=md)
        try:
            await call.initial_metadata()
            ready.set()
            async for u in call:
                await send({"stream": "trade_updates", "data": trade_update_json(u)})
        except grpc.aio.AioRpcError as err:
            ready.set()
            log.info("trade updates ended: %s", err.code().name)
        finally:
            call.cancel()

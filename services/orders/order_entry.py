"""Order entry on one stream (`OrdersService.SubmitOrders`).

A strategy that sends many orders pays a unary call's fixed cost - a new HTTP/2 stream, its
metadata parsed, the caller authenticated, the call logged - once per order; on a stream it is
paid once, and each order costs what its message costs (`bench/submit.py --stream`). Each
request is still a SubmitOrder in every other way: validated the same, counted against the
caller's rate limit, accepted durably before its result is written, idempotent by
client_order_id. Results are written as each order is decided (they can overtake one another),
so each carries its client_order_id; one assigned when the request had none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.platform.auth import Principal
from services.platform.errors import MbtError
from services.platform.grpc_server import limit_principal, request_id_var
from services.platform.ratelimit import RateLimiter

__all__ = ["MAX_IN_FLIGHT", "submit_stream"]

log = logging.getLogger("mbt.orders.entry")

# orders of one stream being decided at once; the stream is not read further until one is done
MAX_IN_FLIGHT = 64

SubmitOne = Callable[[pb.SubmitOrderRequest], Awaitable[pb.Order]]


async def submit_stream(
    requests: AsyncIterator[pb.SubmitOrderRequest],
    principal: Principal,
    limiter: RateLimiter | None,
    submit: SubmitOne,
) -> AsyncIterator[pb.SubmitOrderResult]:
    """Each request's result, as it is decided; ends when the caller has sent its last request
    and every one of them is answered."""
    results: asyncio.Queue[pb.SubmitOrderResult | None] = asyncio.Queue()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(req: pb.SubmitOrderRequest) -> None:
        try:
            result = pb.SubmitOrderResult(client_order_id=req.client_order_id)
            try:
                await limit_principal(limiter, principal)
                result.order.CopyFrom(await submit(req))
            except MbtError as exc:
                result.error.CopyFrom(exc.to_status())
            except Exception:  # one order's failure is its own result, never the stream's
                rid = request_id_var.get()
                log.exception("unhandled error in a SubmitOrders request (request %s)", rid)
                result.error.code = 13  # INTERNAL
                result.error.message = f"internal error (request id {rid})"
            results.put_nowait(result)
        finally:
            slots.release()

    async def read() -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                async for req in requests:
                    if not req.client_order_id.strip():
                        req.client_order_id = str(uuid.uuid4())
                    await slots.acquire()
                    tg.create_task(one(req))
        finally:
            results.put_nowait(None)

    reader = asyncio.create_task(read())
    try:
        while (result := await results.get()) is not None:
            yield result
        await reader  # the caller's stream failed: so does this one
    finally:
        if not reader.done():
            reader.cancel()
            # the stream is over (the caller went away): orders being accepted still are (the
            # pipeline finishes what it was given), their results are not sent
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

"""Typed stubs for calling another MBT service, with a service token and a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from services.platform.auth import service_token
from services.platform.errors import error_from_rpc
from services.platform.grpc_server import request_id_var

DEFAULT_TIMEOUT_S = 5.0
UNARY_AFTER_UNIMPLEMENTED_S = 300.0
log = logging.getLogger("mbt.clients")
CHANNEL_OPTIONS = [("grpc.lb_policy_name", "round_robin")]


class ServiceChannel:
    """One channel to a service, and the credentials this service presents on it."""

    def __init__(self, addr: str, *, caller: str, secret: bytes) -> None:
        # round_robin spreads calls over every address a headless Service resolves to
        self.channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        self._token = service_token(secret, caller)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = [("authorization", f"Bearer {self._token}")]
        rid = request_id_var.get()
        if rid:
            md.append(("x-request-id", rid))
        return tuple(md)

    async def call(self, method: Any, request: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """Invoke a stub method; a downstream error comes back as the typed MbtError."""
        try:
            # wait_for_ready: ride out a restarting peer (reconnect backoff) within the deadline
            return await method(
                request, metadata=self.metadata(), timeout=timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            raise error_from_rpc(err) from err

    async def close(self) -> None:
        await self.channel.close()


class CallStream:
    """A unary method's calls as messages on one long-lived bidirectional stream, one request
    in flight at a time, each answered in order: what a caller that makes the same call all day
    long saves (a stream message costs both ends a fraction of a call, and is authenticated
    once).

    The methods must be idempotent, as a retry is: when the stream fails (the peer restarted,
    it did not answer within the deadline, it refused a request), that request is made again as
    the unary call, with its deadline and `wait_for_ready`, and the next one opens a new stream
    (so a failure costs at most one deadline more than the unary call would). A stream that
    ended while idle (the peer restarted between requests) is replaced before it is used. A
    peer without the stream method (UNIMPLEMENTED, an older version) is called unary for
    `UNARY_AFTER_UNIMPLEMENTED_S`, then the stream is tried again (a rolling upgrade ends).
    Not safe for concurrent use: one caller task at a time.
    """

    def __init__(
        self,
        channel: ServiceChannel,
        stream_method: Any,
        unary_method: Any,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._open = stream_method
        self._unary = unary_method
        self._name = name
        self._clock = clock
        self._call: Any = None
        self._unary_until = 0.0  # the peer said UNIMPLEMENTED: unary until then

    async def call(self, request: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """The reply to `request` (a downstream error comes back as the typed MbtError)."""
        if self._clock() >= self._unary_until:
            try:
                return await asyncio.wait_for(self._exchange(request), timeout)
            except _STREAM_FAILURES as exc:
                self._drop()
                if _code(exc) == grpc.StatusCode.UNIMPLEMENTED:
                    self._unary_until = self._clock() + UNARY_AFTER_UNIMPLEMENTED_S
                log.info("%s stream failed (%s); calling unary", self._name, _why(exc))
        return await self._channel.call(self._unary, request, timeout)

    async def _exchange(self, request: Any) -> Any:
        if self._call is not None and self._call.done():  # it ended while idle
            self._call = None
        if self._call is None:
            # no wait_for_ready: a peer that is down fails the stream at once, and the unary
            # call rides out its restart
            self._call = self._open(metadata=self._channel.metadata())
        await self._call.write(request)
        reply = await self._call.read()
        if reply is grpc.aio.EOF:
            raise EOFError("the stream ended")
        return reply

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def close(self) -> None:
        """End the stream cleanly (the peer sees its requests end, not a cancellation)."""
        call, self._call = self._call, None
        if call is not None:
            try:
                await asyncio.wait_for(call.done_writing(), 1)
                await asyncio.wait_for(call.read(), 1)  # EOF once the peer has ended it
            except _STREAM_FAILURES:
                call.cancel()


# how a stream call fails (a finished call raises InvalidStateError on write; the rest are
# grpc's and the deadline's); anything else is a bug and propagates
_STREAM_FAILURES = (
    grpc.aio.AioRpcError,
    grpc.aio.UsageError,
    asyncio.InvalidStateError,
    TimeoutError,
    EOFError,
)


def _code(exc: BaseException) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return "no answer in time" if isinstance(exc, TimeoutError) else str(exc)

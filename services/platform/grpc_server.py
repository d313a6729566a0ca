"""One server factory for every service: interceptors, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hmac
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.platform.auth import (
    KEY_ID_HEADER,
    KEY_SECRET_HEADER,
    OPERATOR_HEADER,
    Principal,
    authenticate,
    check_scope,
    gateway_vouch_key,
    set_principal,
)
from services.platform.credentials import CredentialRegistry
from services.platform.errors import MbtError, RateLimited
from services.platform.metrics import RPC_LATENCY, RPCS, serve_metrics
from services.platform.ratelimit import Decision, RateLimiter

log = logging.getLogger("mbt.grpc")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("mbt_request_id", default="")


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    md = details.invocation_metadata or ()
    return {k: v for k, v in md if isinstance(v, str)}


CLIENT_ADDR_HEADER = "x-mbt-client-addr"  # set by the gateway, with its vouch key
GATEWAY_VOUCH_HEADER = "x-mbt-gateway-vouch"
# set by the gateway, with its vouch key, on the second and later calls it makes for one HTTP
# request (an Alpaca listing that fans out): the request was counted once, on its first call
FOLLOW_UP_HEADER = "x-mbt-follow-up"


def _peer_ip(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' / 'ipv6:[::1]:5000' -> the address alone."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer or "unknown"


@functools.lru_cache(maxsize=65536)
def limiter_key(kind: str, ident: str) -> str:
    """A subject-safe limiter key ("u" + user id, or "ip" + address)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in ident)[:80]
    return f"{kind}_{safe}"


def rate_limited(d: Decision) -> RateLimited:
    """The refusal of a request over its limit."""
    return RateLimited(
        f"rate limit of {d.limit} requests per minute reached; retry in {d.retry_after_s} s",
        retry_after_s=d.retry_after_s,
        limit=d.limit,
    )


async def limit_principal(limiter: RateLimiter | None, principal: Principal) -> None:
    """Count one request of a user (as the interceptor counts each call) inside a call that
    carries several (a stream of orders); raises `RateLimited` over the limit. MBT services
    and operators are not limited."""
    if limiter is None or principal.is_service or principal.is_operator:
        return
    d = await limiter.hit(limiter_key("u", principal.user_id), limiter.limit_for(principal.tier))
    if not d.allowed:
        raise rate_limited(d)


class PlatformInterceptor(grpc.aio.ServerInterceptor):
    """Request id, authentication, scopes, rate limits and error mapping for every RPC.

    Users (sessions and API keys together) are limited per user at their tier's rate; calls
    with no credential (public methods: the login ceremony, the clock) per client address.
    MBT services and operators are not limited.
    """

    def __init__(
        self,
        secret: bytes,
        registry: CredentialRegistry,
        public_methods: frozenset[str],
        limiter: RateLimiter | None = None,
        operator_token: str = "",
    ) -> None:
        self._secret = secret
        self._registry = registry
        self._public = public_methods
        self._limiter = limiter
        self._operator_token = operator_token
        self._vouch_key = gateway_vouch_key(secret)

    async def _limit(
        self, ctx: grpc.aio.ServicerContext[Any, Any], key: str, limit: int, rid: str
    ) -> None:
        assert self._limiter is not None
        d = await self._limiter.hit(key, limit)
        ctx.set_trailing_metadata(
            (
                ("x-request-id", rid),
                ("x-ratelimit-limit", str(d.limit)),
                ("x-ratelimit-remaining", str(d.remaining)),
                ("x-ratelimit-reset", str(d.reset_s)),
            )
        )
        if not d.allowed:
            raise rate_limited(d)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith("/grpc."):
            return handler
        md = _metadata(details)
        rid = md.get("x-request-id") or uuid.uuid4().hex
        if len(rid) > 64 or not rid.isprintable():
            rid = uuid.uuid4().hex
        public = method.rsplit("/", 1)[-1] in self._public
        has_credential = any(
            k in md for k in ("authorization", KEY_ID_HEADER, KEY_SECRET_HEADER, OPERATOR_HEADER)
        )

        async def prepare(ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
            request_id_var.set(rid)
            set_principal(None)
            ctx.set_trailing_metadata((("x-request-id", rid),))
            principal = None
            if has_credential or not public:
                try:
                    principal = await authenticate(
                        md, self._secret, self._registry, self._operator_token
                    )
                except MbtError as exc:
                    if not public:
                        raise
                    log.debug("ignored bad credentials on public method: %s", exc.reason)
            if principal is not None:
                check_scope(principal, method)
                set_principal(principal)
            if self._limiter is None:
                return
            vouched = hmac.compare_digest(
                md.get(GATEWAY_VOUCH_HEADER, "").encode(), self._vouch_key.encode()
            ) and bool(self._vouch_key)
            if vouched and md.get(FOLLOW_UP_HEADER) == "1":
                return
            if principal is not None and not (principal.is_service or principal.is_operator):
                limit = self._limiter.limit_for(principal.tier)
                await self._limit(ctx, limiter_key("u", principal.user_id), limit, rid)
            elif principal is None:
                addr = _peer_ip(ctx.peer())
                if md.get(CLIENT_ADDR_HEADER) and vouched:
                    # the gateway forwards the client's address; only it may
                    addr = md[CLIENT_ADDR_HEADER][:64]
                await self._limit(ctx, limiter_key("ip", addr), self._limiter.address_limit, rid)

        async def fail(ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
            if isinstance(exc, MbtError):
                status = rpc_status.to_status(exc.to_status())
                # keep what prepare() set (request id, rate-limit state) beside the details
                kept = tuple(ctx.trailing_metadata() or ())
                await ctx.abort(status.code, status.details, tuple(status.trailing_metadata) + kept)
            log.exception("unhandled error in %s (request %s)", method, rid)
            await ctx.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")

        if handler.unary_unary:
            inner: Any = handler.unary_unary

            async def unary(req: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
                t0 = time.perf_counter()
                code = "OK"
                try:
                    await prepare(ctx)
                    return await inner(req, ctx)
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except grpc.aio.AbortError:
                    code = _code_name(ctx)
                    raise
                except Exception as exc:  # mapped to a status, never leaked as a traceback
                    code = exc.code.name if isinstance(exc, MbtError) else "INTERNAL"
                    await fail(ctx, exc)
                finally:
                    _observe(method, code, rid, time.perf_counter() - t0)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        async def served(
            ctx: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
        ) -> AsyncIterator[Any]:
            """A streaming method's replies, after `prepare` (once, when the stream opens);
            logged and counted once, when it ends, with its duration."""
            t0 = time.perf_counter()
            code = "OK"
            try:
                await prepare(ctx)
                async for item in items():
                    yield item
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _code_name(ctx)
                raise
            except Exception as exc:
                code = exc.code.name if isinstance(exc, MbtError) else "INTERNAL"
                await fail(ctx, exc)
            finally:
                _observe(method, code, rid, time.perf_counter() - t0)

        if handler.unary_stream:
            inner_s: Any = handler.unary_stream

            # async generator functions both (grpc.aio serves a handler as a stream only then)
            async def stream(
                req: Any, ctx: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                async for item in served(ctx, lambda: inner_s(req, ctx)):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            inner_b: Any = handler.stream_stream

            async def bidi(
                requests: AsyncIterator[Any], ctx: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                async for item in served(ctx, lambda: inner_b(requests, ctx)):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                bidi,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # a kind of method no service defines (client streaming): UNIMPLEMENTED, never served
        # without its credentials checked
        return None


def _code_name(ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    try:
        code = ctx.code()
    except Exception:  # noqa: BLE001 - older grpc: no code() on the context
        return "ABORTED"
    return code.name if isinstance(code, grpc.StatusCode) else "ABORTED"


LOG_REQUESTS = os.environ.get("MBT_LOG_REQUESTS", "1") != "0"
request_log = logging.getLogger("mbt.requests")


_SERIES: dict[tuple[str, str], tuple[Any, Any]] = {}


def _observe(method: str, code: str, rid: str, elapsed: float) -> None:
    """Metrics and one structured line per RPC (the method and request id, never its values)."""
    series = _SERIES.get((method, code))
    if series is None:  # the labelled children, looked up once per method and code
        series = _SERIES[method, code] = (RPCS.labels(method, code), RPC_LATENCY.labels(method))
    series[0].inc()
    series[1].observe(elapsed)
    if LOG_REQUESTS:
        ms = round(elapsed * 1000, 2)
        if rid.isalnum():  # our own ids (hex) and most clients': nothing to escape
            request_log.info(
                f'{{"request_id": "{rid}", "rpc": "{method}", "code": "{code}", "ms": {ms}}}'
            )
        else:
            request_log.info(json.dumps({"request_id": rid, "rpc": method, "code": code, "ms": ms}))


Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class ServiceHost:
    """A running gRPC server plus the background tasks of its service."""

    name: str
    port: int
    secret: bytes
    registrars: list[Registrar]
    service_names: list[str]
    public_methods: frozenset[str] = frozenset()
    registry: CredentialRegistry = field(default_factory=CredentialRegistry)
    limiter: RateLimiter | None = None
    operator_token: str = ""
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra_health: list[str] = field(default_factory=list)
    """Health-checked names beyond the services (e.g. the market-data feed)."""
    bound_port: int = 0
    host: str = "127.0.0.1"
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _health: Any = None

    async def set_serving(self, name: str, serving: bool) -> None:
        if self._health is not None:
            status = health_pb2.HealthCheckResponse
            await self._health.set(name, status.SERVING if serving else status.NOT_SERVING)

    async def run(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT (or `stop()`), then shut down gracefully."""
        server = grpc.aio.server(
            interceptors=[
                PlatformInterceptor(
                    self.secret,
                    self.registry,
                    self.public_methods,
                    self.limiter,
                    self.operator_token,
                )
            ],
            # oversize credentials reach the interceptor (and get UNAUTHENTICATED) instead of
            # being cut off by the transport as RESOURCE_EXHAUSTED
            options=[("grpc.so_reuseport", 0), ("grpc.max_metadata_size", 64 * 1024)],
        )
        for register in self.registrars:
            register(server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.bound_port = server.add_insecure_port(f"{self.host}:{self.port}")
        if self.bound_port == 0:
            raise SystemExit(f"{self.name}: cannot bind {self.host}:{self.port}")
        await server.start()
        self._health = health_servicer
        for svc in [*self.service_names, *self.extra_health]:
            await health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        serve_metrics()
        tasks = [asyncio.create_task(_supervised(self.name, job)) for job in self.background]
        log.info("%s listening on %s:%d", self.name, self.host, self.bound_port)
        if ready is not None:
            ready(self.bound_port)
        try:
            await self._stop.wait()
        finally:
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=3)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hook in self.on_shutdown:
                await hook()

    def stop(self) -> None:
        self._stop.set()


async def _supervised(name: str, job: Callable[[], Awaitable[None]]) -> None:
    """Run a background job; if it fails, the process exits so the supervisor restarts it.

    Fail-stop is deliberate: in-memory state (the order book) is rebuilt from the database on
    start, which is simpler and safer than guessing what a half-failed job left behind.
    """
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s: background job %s failed; exiting", name, getattr(job, "__name__", job))
        os._exit(70)


def configure_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )

"""One structured log line per HTTP request, and Prometheus metrics at `/metrics`.

The log line is JSON: request id, method, route (the route's template, never the raw path, so
no ids or symbols a user typed land in the log), status and latency. Metrics come from the
well-kept `prometheus-client`: requests by route, method and status, and their latency.
"""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUESTS", "RequestLog", "metrics"]

log = logging.getLogger("mbt.gateway.requests")

REQUESTS = Counter(
    "mbt_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "mbt_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def route_of(scope: Scope) -> str:
    """The template the request matched (`/api/mbt/orders/{order_id}`), or `unmatched`."""
    state = scope.get("state") or {}
    if state.get("mbt_route"):
        return str(state["mbt_route"])
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        rid = ""

        async def watch(message: Message) -> None:
            nonlocal status, rid
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    if k.lower() == b"x-request-id":
                        rid = v.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            elapsed = time.perf_counter() - t0
            route, method = route_of(scope), str(scope.get("method", ""))
            if route != "/metrics":
                REQUESTS.labels(route, method, str(status)).inc()
                LATENCY.labels(route, method).observe(elapsed)
            log.info(
                json.dumps(
                    {
                        "request_id": rid or (scope.get("state") or {}).get("mbt_rid", ""),
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    }
                )
            )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

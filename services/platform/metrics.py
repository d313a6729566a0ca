"""Prometheus metrics of a service (`prometheus-client`), served on `MBT_METRICS_PORT`.

Every service: RPCs by method and code with their latency. Orders adds orders accepted and
rejected, fills, and the outbox (published, and the backlog the relay last saw).
"""

from __future__ import annotations

import logging
import os

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "CONSUMER_LAG",
    "FEED_LAG",
    "FILLS",
    "ORDERS",
    "OUTBOX_BACKLOG",
    "OUTBOX_PUBLISHED",
    "RPCS",
    "RPC_LATENCY",
    "SUBMIT_STAGE",
    "serve_metrics",
]

log = logging.getLogger("mbt.metrics")

RPCS = Counter("mbt_grpc_requests_total", "RPCs answered", ["method", "code"])
RPC_LATENCY = Histogram(
    "mbt_grpc_request_duration_seconds",
    "RPC latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
# where a submit's time goes inside orders: waiting for a stage, and the stage itself (a batch's
# `PlaceHolds` call, its commit statement and the engine); one observation per batch
SUBMIT_STAGE = Histogram(
    "mbt_submit_stage_seconds",
    "time of a submit batch in each stage of the pipeline",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
# holds accounts could not decide yet, its ledger not having applied the user's newest fill or
# order end (deferred: asked again), and holds decided after waiting the longest (gave_up)
HOLD_LEDGER_WAITS = Counter(
    "mbt_hold_ledger_waits_total", "holds that waited for the accounts ledger", ["outcome"]
)
# reads of an account that waited for the ledger to apply its newest events from the stream
# (waited), read without them after the longest wait (gave_up), or could not ask (unknown)
LEDGER_READ_WAITS = Counter(
    "mbt_ledger_read_waits_total", "account reads that waited for the ledger", ["outcome"]
)
ORDERS = Counter("mbt_orders_total", "orders decided by the submit pipeline", ["outcome"])
FILLS = Counter("mbt_fills_total", "fills recorded")
OUTBOX_PUBLISHED = Counter("mbt_outbox_published_total", "outbox rows published to JetStream")
OUTBOX_BACKLOG = Gauge("mbt_outbox_backlog", "unpublished rows the relay saw in its last batch")
CONSUMER_LAG = Gauge(
    "mbt_consumer_lag_messages", "messages a durable consumer has yet to process", ["consumer"]
)
FEED_LAG = Gauge(
    "mbt_quote_feed_lag_seconds", "market clock minus the timestamp of the quote just published"
)


def serve_metrics(env: dict[str, str] | None = None) -> int | None:
    """Serve /metrics on `MBT_METRICS_PORT` (unset: not served); the port, or None."""
    raw = (env if env is not None else dict(os.environ)).get("MBT_METRICS_PORT", "")
    if not raw.isdigit():
        return None
    port = int(raw)
    try:
        start_http_server(port, addr=os.environ.get("MBT_METRICS_HOST", "0.0.0.0"))
    except OSError as exc:  # metrics are not worth failing the service for
        log.warning("metrics not served on :%d (%s)", port, exc)
        return None
    log.info("metrics on :%d/metrics", port)
    return port

"""Prometheus metrics from the gateway and every service (`endpoints.json` lists them)."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import RESTING_BUY, signup_http, wait_for

pytestmark = pytest.mark.e2e


def sample(page: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry `labels` (0 if none)."""
    return sum(
        x.value
        for family in text_string_to_metric_families(page)
        for x in family.samples
        if x.name == name and labels.items() <= x.labels.items()
    )


def test_every_process_serves_metrics_and_orders_counts_what_it_did(
    system: RunningSystem,
) -> None:
    token, _ = signup_http(system.url, "metrics@example.com")
    urls = json.loads((system.data_dir / "endpoints.json").read_text())["metrics"]
    # the system is shared with other tests: what this test changes is counted from here
    before = {name: httpx.get(urls[name]).text for name in ("orders", "accounts")}
    r = httpx.post(
        f"{system.url}/api/mbt/orders",
        headers={"authorization": f"Bearer {token}"},
        json=RESTING_BUY,
    )
    assert r.status_code == 200, r.text
    assert {"gateway", "orders", "accounts", "marketdata", "sessions", "handoff"} <= set(urls)
    for name, url in urls.items():
        page = httpx.get(url).text
        expected = "mbt_http_requests_total" if name == "gateway" else "mbt_grpc_requests_total"
        assert expected in page, name

    def counted() -> str | None:
        page = httpx.get(urls["orders"]).text
        return page if 'mbt_orders_total{outcome="accepted"}' in page else None

    orders = wait_for(counted, timeout=10)
    assert 'rpc="' not in orders  # labels are method names and codes, never request values
    import re

    submits = re.findall(r"mbt_grpc_requests_total\{([^}]*SubmitOrder[^}]*)\} ([0-9.]+)", orders)
    assert any('code="OK"' in labels and float(n) >= 1 for labels, n in submits), orders[-3000:]
    # where the submit's time went inside orders, by stage (one batch here)
    for stage in ("hold_wait", "hold", "commit_wait", "commit"):
        batches = sample(orders, "mbt_submit_stage_seconds_count", stage=stage)
        assert (
            batches - sample(before["orders"], "mbt_submit_stage_seconds_count", stage=stage) >= 1
        ), stage
    # its hold went to accounts on the pipeline's stream, not as a PlaceHolds call (a unary
    # call is counted when it ends, a stream when it ends: the stream is still open)
    calls = "mbt_grpc_requests_total"
    unary = {"method": "/raxx.mbt.v1.AccountsService/PlaceHolds"}
    assert sample(httpx.get(urls["accounts"]).text, calls, **unary) == sample(
        before["accounts"], calls, **unary
    )
    assert 'route="/api/mbt/orders"' in httpx.get(urls["gateway"]).text
    assert "mbt_quote_feed_lag_seconds" in httpx.get(urls["marketdata"]).text
    # the ledger's consumer reports what it has yet to apply once it has handled a batch: an
    # accepted order changes nothing in the ledger (its event is not sent there), a cancel
    # releases the order's hold
    order_id = r.json()["data"]["id"]
    c = httpx.delete(
        f"{system.url}/api/mbt/orders/{order_id}", headers={"authorization": f"Bearer {token}"}
    )
    assert c.status_code == 200 and c.json()["data"]["status"] == "canceled", c.text
    wait_for(
        lambda: "mbt_consumer_lag_messages{" in httpx.get(urls["accounts"]).text or None,
        timeout=20,
        what="consumer lag",
    )

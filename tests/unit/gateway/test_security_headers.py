"""Security headers on every response, no-store on account data, and the offline /docs page."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import GatewayConfig, create_app

pytestmark = pytest.mark.anyio


def _client() -> httpx.AsyncClient:
    # services are never reached here: every request below is answered by the gateway itself
    addrs = {n: "127.0.0.1:9" for n in ("accounts", "orders", "marketdata", "sessions", "handoff")}
    app = create_app(GatewayConfig(service_addrs=addrs, vouch_key=""))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_every_response_says_nosniff_no_referrer_and_no_framing() -> None:
    async with _client() as c:
        for path in ("/", "/healthz", "/openapi.json", "/api/mbt/nope", "/v2/nope"):
            r = await c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["referrer-policy"] == "no-referrer", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path


async def test_account_data_is_never_cached_but_the_spec_may_be() -> None:
    async with _client() as c:
        assert (await c.get("/api/mbt/nope")).headers["cache-control"] == "no-store"
        assert (await c.get("/v2/nope")).headers["cache-control"] == "no-store"
        assert "cache-control" not in (await c.get("/openapi.json")).headers


async def test_docs_render_the_openapi_from_local_assets() -> None:
    async with _client() as c:
        page = await c.get("/docs")
        assert page.status_code == 200 and "/openapi.json" in (await c.get("/docs/init.js")).text
        assert "https://" not in page.text  # no CDN: everything from this server
        assert (await c.get("/docs/static/swagger-ui-bundle.js")).status_code == 200
        assert (await c.get("/docs/static/swagger-ui.css")).status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_one_structured_log_line_per_request_and_prometheus_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="mbt.gateway.requests"):
        async with _client() as c:
            await c.get("/v2/orders/123e4567-e89b-12d3-a456-426614174000")
            page = (await c.get("/metrics")).text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mbt.gateway.requests"]
    first = lines[0]
    assert first["method"] == "GET" and first["status"] == 401  # no key: Alpaca's 401
    # the route's template, never the raw path (no ids a user sent)
    assert first["route"] == "/v2/orders/{order_id}" and "123e4567" not in json.dumps(lines)
    assert isinstance(first["ms"], float)
    assert 'mbt_http_requests_total{method="GET",route="/v2/orders/{order_id}"' in page

"""Routes, status mapping and OpenAPI all derive from the protos' google.api.http rules."""

from __future__ import annotations

import grpc
import pytest
from google.api import annotations_pb2
from google.rpc import code_pb2

from gateway.openapi import build_openapi
from gateway.routes import build_routes, compile_template, split_verb
from gateway.transcode import BadRequest, build_request
from raxx.mbt.v1 import orders_service_pb2
from services.platform.errors import HTTP_STATUS_BY_CODE


def test_every_annotated_rpc_becomes_a_route() -> None:
    routes = build_routes()
    got = {(r.verb, r.template) for r in routes}
    assert ("POST", "/api/mbt/orders") in got
    assert ("GET", "/api/mbt/orders/{order_id}") in got
    assert ("POST", "/api/mbt/sessions/logins/{ceremony_id}:finish") in got
    svc = orders_service_pb2.DESCRIPTOR.services_by_name["OrdersService"]
    annotated = {m.name for m in svc.methods if m.GetOptions().HasExtension(annotations_pb2.http)}
    assert {r.method.name for r in routes if r.service == "orders"} == annotated
    assert "ExportUserData" not in annotated  # internal methods have no HTTP route


def test_templates_compile_with_variables_and_custom_verbs() -> None:
    assert split_verb("/v1/{name=accounts/*/orders/*}:cancel") == (
        "/v1/{name=accounts/*/orders/*}",
        "cancel",
    )
    assert split_verb("/api/mbt/orders/{order_id}") == ("/api/mbt/orders/{order_id}", "")
    rx, fields = compile_template("/v1/{name=accounts/*/orders/*}:cancel")
    m = rx.fullmatch("/v1/accounts/a1/orders/o9:cancel")
    assert m is not None and {fields[k]: v for k, v in m.groupdict().items()} == {
        "name": "accounts/a1/orders/o9"
    }
    assert rx.fullmatch("/v1/accounts/a1/orders/o9") is None
    assert rx.fullmatch("/v1/accounts/a1:cancel") is None


def test_route_match_binds_path_and_body() -> None:
    r = next(r for r in build_routes() if r.template == "/api/mbt/orders" and r.verb == "POST")
    msg = build_request(
        r, {}, [], b'{"symbol": "IBM", "side": "buy", "qty": 10, "limit_price": 185.1}'
    )
    assert (msg.symbol, msg.side, msg.qty, msg.limit_price) == ("IBM", "buy", "10", "185.1")
    with pytest.raises(BadRequest, match="malformed JSON"):
        build_request(r, {}, [], b'{"symbol":')
    with pytest.raises(BadRequest, match="JSON object"):
        build_request(r, {}, [], b"[1, 2]")
    g = next(r for r in build_routes() if r.template == "/api/mbt/orders" and r.verb == "GET")
    lm = build_request(g, {}, [("status", "open"), ("page_size", "5")], b"")
    assert (lm.status, lm.page_size) == ("open", 5)
    with pytest.raises(BadRequest, match="page_size"):
        build_request(g, {}, [("page_size", "many")], b"")


def test_status_table_matches_grpc_gateway() -> None:
    # the grpc-gateway table (research/architecture.md §1.2), spelled out independently
    expected = {
        "OK": 200,
        "CANCELLED": 499,
        "UNKNOWN": 500,
        "INVALID_ARGUMENT": 400,
        "DEADLINE_EXCEEDED": 504,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "PERMISSION_DENIED": 403,
        "RESOURCE_EXHAUSTED": 429,
        "FAILED_PRECONDITION": 400,
        "ABORTED": 409,
        "OUT_OF_RANGE": 400,
        "UNIMPLEMENTED": 501,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
        "DATA_LOSS": 500,
        "UNAUTHENTICATED": 401,
    }
    assert {c.name: HTTP_STATUS_BY_CODE[c] for c in grpc.StatusCode} == expected
    # and every canonical code of google.rpc is covered
    assert set(code_pb2.Code.keys()) == set(expected)


def test_openapi_lists_every_route_with_schemas() -> None:
    routes = build_routes()
    doc = build_openapi(routes)
    for r in routes:
        assert r.verb.lower() in doc["paths"][r.template]
    order = doc["components"]["schemas"]["raxx.mbt.v1.Order"]
    submitted = order["properties"]["submitted_at"]
    assert (submitted["type"], submitted["format"]) == ("string", "date-time")
    assert "raxx.mbt.v1.SubmitOrderRequest" in doc["components"]["schemas"]


def test_timestamp_query_parameters_parse_rfc3339() -> None:
    r = next(r for r in build_routes() if r.template == "/api/mbt/quotes/{symbol}/history")
    m = build_request(
        r,
        {"symbol": "IBM"},
        [("start_time", "2013-10-07T13:30:00Z"), ("end_time", "2013-10-07T14:00:00.5Z")],
        b"",
    )
    assert (
        m.symbol == "IBM" and m.start_time.seconds == 1381152600 and m.end_time.nanos == 500_000_000
    )
    with pytest.raises(BadRequest, match="start_time"):
        build_request(r, {"symbol": "IBM"}, [("start_time", "yesterday")], b"")

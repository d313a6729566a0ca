"""Malformed input is a 400 naming the problem at the edge, never a 500 (issue: bad input)."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.routes import HttpRoute, build_routes
from gateway.transcode import BadRequest, build_request
from services.conventions.decimals import parse_decimal_text
from services.platform.errors import InvalidArgument
from services.platform.pagination import page_bounds


def _route(name: str) -> HttpRoute:
    return next(r for r in build_routes() if r.method.name == name)


def test_invalid_utf8_and_deep_json_are_bad_requests() -> None:
    submit = _route("SubmitOrder")
    with pytest.raises(BadRequest, match="not UTF-8"):
        build_request(submit, {}, [], b'{"symbol": "\xff\xfe"}')
    deep = ("[" * 1200 + "]" * 1200).encode()
    with pytest.raises(BadRequest, match="nested deeper"):
        build_request(submit, {}, [], b'{"legs": ' + deep + b"}")
    # brackets inside strings do not count
    msg = build_request(submit, {}, [], json.dumps({"client_order_id": "[[[[" * 20}).encode())
    assert msg.client_order_id.startswith("[[[[")  # type: ignore[attr-defined]


def test_unknown_body_fields_are_named() -> None:
    submit = _route("SubmitOrder")
    with pytest.raises(BadRequest) as e:
        build_request(submit, {}, [], json.dumps({"symbol": "IBM", "timeinforce": "gtc"}).encode())
    assert "timeinforce" in str(e.value)
    with pytest.raises(BadRequest) as e:  # Alpaca's name for order_type
        build_request(submit, {}, [], json.dumps({"symbol": "IBM", "type": "limit"}).encode())
    assert "'type'" in str(e.value)


def test_dotted_query_keys_are_unknown_fields_not_crashes() -> None:
    fills = _route("ListFills")
    with pytest.raises(BadRequest, match="unknown field"):
        build_request(fills, {}, [("x.y", "1")], b"")


def test_json_numbers_keep_plain_notation() -> None:
    submit = _route("SubmitOrder")
    msg = build_request(
        submit, {}, [], b'{"qty": 0.00001, "limit_price": 123456789012345678901234567890}'
    )
    assert msg.qty == "0.00001"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="12 digits"):
        parse_decimal_text(msg.limit_price)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "raw",
    ["1e30", "9" * 30, "1e999999999", "1_000", "１０", "٣", "NaN", "Infinity", "1.0000000001", ""],
)
def test_only_plain_bounded_ascii_decimals(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal_text(raw)


@pytest.mark.parametrize(
    "raw,value", [("10", "10"), ("185.10", "185.10"), ("-4.2", "-4.2"), (".5", "0.5")]
)
def test_plain_decimals_parse_exactly(raw: str, value: str) -> None:
    from decimal import Decimal

    assert parse_decimal_text(raw) == Decimal(value)


def test_forged_page_tokens_are_invalid_arguments() -> None:
    huge = base64.urlsafe_b64encode(str(10**30).encode()).decode()
    for token in (huge, "!!!", "x" * 500, base64.urlsafe_b64encode(b"-5").decode()):
        with pytest.raises(InvalidArgument) as e:
            page_bounds(10, token)
        assert e.value.field == "page_token"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/v2/orders", {"after": "9999-12-31T23:59:59-14:00"}, "after"),
        ("/v2/orders", {"until": "0001-01-01T00:00:00+14:00"}, "until"),
        ("/v2/orders", {"after": "2024-02-30"}, "after"),
        ("/v2/account/activities", {"date": "9999-12-31"}, "date"),
        ("/v2/account/activities", {"page_size": "\u00b2"}, "page_size"),
        ("/v2/account/portfolio/history", {"period": "\u0661M"}, "period"),
        ("/v2/account/portfolio/history", {"period": "9" * 5000 + "D"}, "period"),
    ],
)
async def test_alpaca_times_and_numbers_out_of_range_are_422s_naming_them(
    path: str, params: dict[str, str], named: str
) -> None:
    """Times at the calendar's ends, days past it, digits of other scripts: once 500s (an
    overflow, int() of a superscript); refused before any service is called (none here)."""
    import httpx

    from gateway.app import GatewayConfig, create_app

    addrs = {n: "127.0.0.1:9" for n in ("accounts", "orders", "marketdata", "sessions", "handoff")}
    app = create_app(GatewayConfig(service_addrs=addrs, vouch_key=""))
    h = {"APCA-API-KEY-ID": "AK" + "0" * 18, "APCA-API-SECRET-KEY": "s" * 40}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        r = await c.get(path, params=params, headers=h)
    assert r.status_code == 422, r.text
    assert named in r.json()["message"]

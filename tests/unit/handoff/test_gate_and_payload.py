"""The graduation gate's reasons and the exact body of a live order, from the request."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from raxx.mbt.v1 import handoff_service_pb2 as pb
from services.handoff.app import Eligibility, _payload
from services.platform.errors import InvalidArgument


def gate(
    tier: str = "pro_plus", streak: int = 0, override: str | None = None, off: bool = False
) -> Eligibility:
    return Eligibility(tier, 3, streak, override, [], off)


def test_the_gate_says_why() -> None:
    assert "Pro+ feature; your tier is pro" in gate("pro", streak=5).reason
    assert (
        "needs 3 consecutive profitable monthly paper cycles; you have 2" in gate(streak=2).reason
    )
    assert gate(streak=3).eligible and gate(override="funded program").eligible
    assert not gate("free", override="x").eligible  # an override does not lift the tier rule
    assert "switched off" in gate(streak=9, off=True).reason


def test_payload_is_exactly_what_alpaca_takes() -> None:
    req = pb.PrepareLiveOrderRequest(
        symbol=" aapl ", side="BUY", qty="3", type="limit", limit_price="185.1"
    )
    p = _payload("id-1", req)
    assert p == {
        "client_order_id": "id-1",
        "symbol": "AAPL",
        "qty": "3",
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "limit_price": "185.10",
    }
    assert Decimal(json.loads(json.dumps(p))["limit_price"]) == Decimal("185.10")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"symbol": "AAPL251219C00100000", "side": "buy", "qty": "1"}, "symbol"),
        ({"symbol": "AAPL", "side": "hold", "qty": "1"}, "side"),
        ({"symbol": "AAPL", "side": "buy", "qty": "1.5"}, "qty"),
        ({"symbol": "AAPL", "side": "buy", "qty": "0"}, "qty"),
        ({"symbol": "AAPL", "side": "buy", "qty": "NaN"}, "qty"),
        ({"symbol": "AAPL", "side": "buy", "qty": "1", "type": "limit"}, "limit_price"),
        (
            {"symbol": "AAPL", "side": "buy", "qty": "1", "type": "limit", "limit_price": "1.001"},
            "limit_price",
        ),
        (
            {"symbol": "AAPL", "side": "buy", "qty": "1", "type": "limit", "limit_price": "1e30"},
            "limit_price",
        ),
        (
            {"symbol": "AAPL", "side": "buy", "qty": "1", "type": "limit", "limit_price": "2e6"},
            "limit_price",
        ),
        ({"symbol": "AAPL", "side": "buy", "qty": "1", "limit_price": "10"}, "limit_price"),
        ({"symbol": "AAPL", "side": "buy", "qty": "1", "time_in_force": "ioc"}, "time_in_force"),
    ],
)
def test_bad_orders_name_the_field(fields: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        _payload("id", pb.PrepareLiveOrderRequest(**fields))
    assert named in str(err.value)

"""Limit and stop prices in the market's increments: a sub-penny price is refused, by name."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.ticks import off_tick, price_increment
from services.orders.validation import SUB_PENNY_PRICE, check_submit
from services.platform.errors import InvalidArgument

CALL = "GOOG151224C00600000"


@pytest.mark.parametrize(
    ("price", "option", "tick"),
    [
        (D("1.00"), False, D("0.01")),
        (D("290.12"), False, D("0.01")),
        (D("0.9999"), False, D("0.0001")),
        (D("0.05"), True, D("0.01")),
        (D("-0.50"), True, D("0.01")),  # a spread's net credit
    ],
)
def test_the_increment_follows_the_price_and_the_instrument(
    price: D, option: bool, tick: D
) -> None:
    assert price_increment(price, option) == tick
    assert off_tick(price, option) is None  # each example is on its tick
    assert off_tick(price + tick / 10, option) == tick


def _limit(symbol: str, price: str, **kw: str) -> pb.SubmitOrderRequest:
    return pb.SubmitOrderRequest(
        symbol=symbol, side="buy", qty="1", order_type="limit", limit_price=price, **kw
    )


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (_limit("IBM", "290.123"), "limit_price"),
        (_limit("IBM", "1.0001"), "limit_price"),
        (_limit("IBM", "0.00001"), "limit_price"),
        (_limit(CALL, "0.125"), "limit_price"),
        (
            pb.SubmitOrderRequest(
                symbol="IBM", side="sell", qty="1", order_type="stop", stop_price="150.005"
            ),
            "stop_price",
        ),
    ],
)
def test_a_sub_penny_price_is_refused_naming_its_field(
    req: pb.SubmitOrderRequest, field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_submit(req)
    assert err.value.field == field and err.value.reason == SUB_PENNY_PRICE
    assert "sub-penny increment" in err.value.message and getattr(req, field) in err.value.message


@pytest.mark.parametrize("price", ["290.12", "290.1", "0.9999", "0.0001", "1"])
def test_prices_on_their_tick_are_taken_exactly(price: str) -> None:
    assert check_submit(_limit("IBM", price)).limit_price == D(price)


def test_an_option_below_a_dollar_is_still_in_cents() -> None:
    assert check_submit(_limit(CALL, "0.35")).limit_price == D("0.35")
    with pytest.raises(InvalidArgument):
        check_submit(_limit(CALL, "0.3501"))  # an equity's sub-dollar tick, not an option's

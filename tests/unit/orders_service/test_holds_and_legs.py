"""Buying-power holds for options and spreads, and multi-leg request validation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from raxx.mbt.v1 import orders_service_pb2 as pb
from services.conventions.quote import Quote
from services.orders.holds import package_hold, single_hold
from services.orders.validation import check_submit
from services.platform.errors import InvalidArgument

C600, C610 = "GOOG151224C00600000", "GOOG151224C00610000"
P600, P590 = "GOOG151224P00600000", "GOOG151224P00590000"
T = datetime(2015, 12, 23, 15, tzinfo=UTC)


def q(symbol: str, bid: str, ask: str) -> Quote:
    return Quote(symbol, T, D(bid), D(ask), 10, 10)


def spread(*legs: tuple[str, str], **kw: str) -> pb.SubmitOrderRequest:
    return pb.SubmitOrderRequest(
        qty=kw.get("qty", "2"),
        order_type=kw.get("order_type", "limit"),
        limit_price=kw.get("limit_price", ""),
        legs=[pb.OrderLeg(symbol=s, side=side, ratio=1) for side, s in legs],
    )


def test_single_option_buy_holds_per_contract() -> None:
    intent = check_submit(
        pb.SubmitOrderRequest(
            symbol=C600.lower(), side="buy", qty="3", order_type="limit", limit_price="2.15"
        )
    )
    # 3 contracts × $2.15 × 100 = $645.00
    assert single_hold(intent, D("2.20")) == D("645.00")


def test_debit_spread_holds_its_net_debit() -> None:
    intent = check_submit(spread(("buy", C600), ("sell", C610), limit_price="4.50"))
    assert intent.symbol == "GOOG" and len(intent.legs) == 2
    quotes = {C600: q(C600, "9.80", "10.10"), C610: q(C610, "5.20", "5.40")}
    # 2 spreads × $4.50 × 100 = $900.00
    assert package_hold(intent, quotes) == D("900.00")


def test_credit_spread_holds_its_maximum_loss() -> None:
    intent = check_submit(spread(("sell", P600), ("buy", P590), limit_price="-3.00"))
    quotes = {P600: q(P600, "7.00", "7.20"), P590: q(P590, "3.90", "4.10")}
    # width 600 − 590 = $10, credit $3 → max loss $7 × 100 × 2 spreads = $1,400.00
    assert package_hold(intent, quotes) == D("1400.00")


def test_uncovered_short_legs_are_refused_in_a_cash_account() -> None:
    intent = check_submit(spread(("sell", C600), ("sell", P600), limit_price="-15"))
    with pytest.raises(InvalidArgument, match="defined-risk") as ei:
        package_hold(intent, {C600: q(C600, "9", "10"), P600: q(P600, "7", "8")})
    assert ei.value.reason == "UNDEFINED_RISK"


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (spread(("buy", C600), limit_price="1"), "legs"),  # one leg
        (spread(("buy", C600), ("sell", "IBM")), "legs[1].symbol"),  # not an option
        (spread(("buy", C600), ("sell", "AAPL151224C00100000")), "legs"),  # two underlyings
        (spread(("buy", C600), ("hold", C610)), "legs[1].side"),
        (spread(("buy", C600), ("sell", C610), order_type="market", qty="0"), "qty"),
        (spread(("buy", C600), ("sell", C610), qty="1.5"), "qty"),
    ],
)
def test_bad_spreads_name_the_field(req: pb.SubmitOrderRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        check_submit(req)
    assert ei.value.field == field

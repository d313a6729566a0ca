"""Alpaca shapes worked out by hand from MBT messages."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.alpaca.shapes import portfolio_history_json, trade_update_json
from raxx.mbt.v1 import accounts_service_pb2 as apb
from raxx.mbt.v1 import orders_service_pb2 as opb


def test_portfolio_history_is_cumulative_from_the_base() -> None:
    h = apb.PortfolioHistory(
        points=[
            apb.PortfolioPoint(date="2013-10-07", equity="100200.00", profit_loss="200.00"),
            apb.PortfolioPoint(date="2013-10-08", equity="100500.00", profit_loss="300.00"),
        ]
    )
    j = portfolio_history_json(h)
    # base = the equity before the first point: 100,200 - 200 = 100,000
    assert j["base_value"] == 100000.0
    assert j["profit_loss"] == [200.0, 500.0]
    assert j["profit_loss_pct"] == [0.002, 0.005]
    # each point at the 16:00 ET close (EDT in October: 20:00 UTC)
    assert j["timestamp"] == [
        int(datetime(2013, 10, 7, 20, tzinfo=UTC).timestamp()),
        int(datetime(2013, 10, 8, 20, tzinfo=UTC).timestamp()),
    ]


def test_fill_update_has_alpacas_fields_and_a_uuid_execution_id() -> None:
    import uuid

    u = opb.TradeUpdate(
        sequence=7,
        event="fill",
        order=opb.Order(id=str(uuid.uuid4()), symbol="IBM", status="filled", qty="2"),
        execution_id="abc:1",
        price="182.48",
        qty="2",
        position_qty="6",
    )
    d = trade_update_json(u)
    assert (d["event"], d["price"], d["qty"], d["position_qty"]) == ("fill", "182.48", "2", "6")
    uuid.UUID(d["execution_id"])  # alpaca-py requires a UUID
    assert d["execution_id"] == trade_update_json(u)["execution_id"]  # stable
    assert d["order"]["status"] == "filled" and d["order"]["order_class"] == "simple"

"""The real alpaca-py (0.44), unmodified, against MBT's `/v2` and `/stream` (url_override)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order, Position, TradeAccount
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)
from alpaca.trading.stream import TradingStream

from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import cli_json, run_cli, set_tier, wait_for

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def _key(system: RunningSystem, tmp: Path, email: str) -> dict[str, Any]:
    cfg = tmp / "cfg"
    run_cli(cfg, system.url, "signup", "--email", email)
    key: dict[str, Any] = cli_json(cfg, system.url, "keys", "create", "--name", "alpaca-py")
    return key


def _client(system: RunningSystem, key: dict[str, Any], raw: bool = False) -> TradingClient:
    return TradingClient(
        key["key_id"], key["secret"], paper=True, raw_data=raw, url_override=system.url
    )


def _filled(client: TradingClient, order_id: Any) -> Order:
    def done() -> Order | None:
        o = client.get_order_by_id(order_id)
        assert isinstance(o, Order)
        return o if o.status == OrderStatus.FILLED else None

    return wait_for(done, timeout=30, what="fill")


def test_trading_client_end_to_end(system: RunningSystem, tmp_path: Path) -> None:
    key = _key(system, tmp_path, "alpaca-py@example.com")
    c = _client(system, key)
    acct = c.get_account()
    assert isinstance(acct, TradeAccount)
    assert acct.cash == "100000.00" and acct.account_number.startswith("PA")
    conf = c.get_account_configurations()
    assert conf.no_shorting is True  # a cash account
    clock = c.get_clock()
    assert clock.next_close > clock.timestamp or not clock.is_open
    cal = c.get_calendar(GetCalendarRequest(start="2013-10-07", end="2013-10-11"))
    assert [d.date.isoformat() for d in cal][:1] == ["2013-10-07"]
    assert cal[0].open.strftime("%H:%M") == "09:30" and cal[0].close.strftime("%H:%M") == "16:00"
    assert c.get_asset("IBM").symbol == "IBM"
    # Friday 2013-10-11's trades settle Monday 10-14 (T+1, the next trading day)
    raw_cal = _client(system, key, raw=True).get_calendar(
        GetCalendarRequest(start="2013-10-10", end="2013-10-11")
    )
    assert [(d["date"], d["settlement_date"]) for d in raw_cal] == [  # type: ignore[index, union-attr]
        ("2013-10-10", "2013-10-11"),
        ("2013-10-11", "2013-10-14"),
    ]
    from alpaca.trading.enums import AssetClass
    from alpaca.trading.requests import GetAssetsRequest

    equities = c.get_all_assets(GetAssetsRequest(asset_class=AssetClass.US_EQUITY))
    options = c.get_all_assets(GetAssetsRequest(asset_class=AssetClass.US_OPTION))
    assert "IBM" in {a.symbol for a in equities}
    assert all(a.asset_class == AssetClass.US_EQUITY for a in equities)
    assert options == []  # contracts are listed at /v2/options/contracts, as at Alpaca
    assert not c.get_all_assets(GetAssetsRequest(status="inactive"))

    # market buy: fills at the ask of a later quote; the position follows
    buy = c.submit_order(
        MarketOrderRequest(symbol="IBM", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert isinstance(buy, Order) and buy.status in (OrderStatus.NEW, OrderStatus.FILLED)
    filled = _filled(c, buy.id)
    assert filled.filled_qty == "3" and Decimal(str(filled.filled_avg_price)) > 0
    # the ledger applies the fill from its event a moment later (accounts owns positions)
    pos = wait_for(
        lambda: next((p for p in c.get_all_positions() if p.symbol == "IBM"), None),
        timeout=10,
        what="position",
    )
    assert isinstance(pos, Position) and pos.qty == "3" and pos.side == "long"
    assert c.get_open_position("IBM").qty == "3"
    assert [p.symbol for p in c.get_all_positions()] == ["IBM"]

    # resting orders of every type, found by id and by client order id, listed, replaced
    coid = f"rest-{uuid.uuid4().hex[:8]}"
    lim = c.submit_order(
        LimitOrderRequest(
            symbol="IBM",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=1.00,
            client_order_id=coid,
        )
    )
    assert c.get_order_by_client_id(coid).id == lim.id
    stop = c.submit_order(
        StopOrderRequest(
            symbol="IBM", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, stop_price=1.0
        )
    )
    stop_limit = c.submit_order(
        StopLimitOrderRequest(
            symbol="IBM",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            stop_price=900,
            limit_price=901,
        )
    )
    open_ids = {o.id for o in c.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))}
    assert {lim.id, stop.id, stop_limit.id} <= open_ids
    # the resting stop sells 1 of the 3 held: 2 are left for another closing order, and a sell
    # of 3 now is refused (as at Alpaca), not turned into a short sale
    held = c.get_open_position("IBM")
    assert (held.qty, held.qty_available) == ("3", "2")
    with pytest.raises(APIError) as e:
        c.submit_order(
            MarketOrderRequest(
                symbol="IBM", qty=3, side=OrderSide.SELL, time_in_force=TimeInForce.DAY
            )
        )
    assert e.value.status_code == 403 and e.value.code == 40310000
    assert "insufficient qty available for order (requested: 3, available: 2)" in e.value.message
    new = c.replace_order_by_id(lim.id, ReplaceOrderRequest(limit_price=1.25))
    assert new.replaces == lim.id and new.limit_price == "1.25"
    assert c.get_order_by_id(lim.id).status == OrderStatus.REPLACED
    assert c.get_order_by_id(lim.id).replaced_by == new.id
    assert c.cancel_order_by_id(new.id) is None  # 204
    assert c.get_order_by_id(new.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as e:
        c.cancel_order_by_id(new.id)  # not cancelable any more
    assert e.value.status_code == 422
    cancelled = c.cancel_orders()  # 207: one entry per order
    assert {r.id for r in cancelled} == {stop.id, stop_limit.id}
    assert all(r.status == 200 for r in cancelled)

    # close by qty, then by percentage (of what is left), then everything
    closing = c.close_position("IBM", ClosePositionRequest(qty="1"))
    assert closing.side == OrderSide.SELL and closing.qty == "1"
    _filled(c, closing.id)
    wait_for(lambda: c.get_open_position("IBM").qty == "2", timeout=10, what="ledger")
    half = c.close_position("IBM", ClosePositionRequest(percentage="50"))
    assert half.qty == "1"  # 50% of 2
    _filled(c, half.id)
    # straight after the fill, as a strategy would: close-all sells what the fill left (the
    # position read waits for the ledger to apply the fill; it once read the old quantity, and
    # the sale was refused as short)
    closed = c.close_all_positions(cancel_orders=True)
    assert [r.symbol for r in closed] == ["IBM"] and closed[0].status == 200

    # errors: Alpaca's status codes and a JSON body alpaca-py can read
    with pytest.raises(APIError) as e:
        c.get_order_by_id(str(uuid.uuid4()))
    assert e.value.status_code == 404 and e.value.code == 40410000
    with pytest.raises(APIError) as e:
        c.submit_order(
            MarketOrderRequest(
                symbol="IBM", qty=100000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
    assert e.value.status_code == 403 and e.value.code == 40310000
    assert "buying power" in e.value.message
    with pytest.raises(APIError) as e:
        c.submit_order(
            MarketOrderRequest(
                symbol="NOPE", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
    assert e.value.status_code in (404, 422) and isinstance(e.value.code, int)
    # a sub-penny price: refused as Alpaca refuses it (a business rule, 42210000), on submit
    # and on replace, and nothing is placed
    open_before = c.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    with pytest.raises(APIError) as e:
        c.submit_order(
            LimitOrderRequest(
                symbol="IBM",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=1.005,
            )
        )
    assert e.value.status_code == 422 and e.value.code == 42210000
    assert "sub-penny" in e.value.message and "1.005" in e.value.message
    resting = c.submit_order(
        LimitOrderRequest(
            symbol="IBM", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=1.01
        )
    )
    with pytest.raises(APIError) as e:
        c.replace_order_by_id(resting.id, ReplaceOrderRequest(limit_price=1.015))
    assert e.value.status_code == 422 and e.value.code == 42210000
    assert c.get_order_by_id(resting.id).status == OrderStatus.NEW  # left as it was, working
    c.cancel_order_by_id(resting.id)
    assert c.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == open_before


def test_raw_data_is_alpacas_json(system: RunningSystem, tmp_path: Path) -> None:
    key = _key(system, tmp_path, "alpaca-raw@example.com")
    raw = _client(system, key, raw=True)
    acct = raw.get_account()
    assert isinstance(acct, dict)
    for money in ("cash", "buying_power", "equity", "portfolio_value"):
        assert isinstance(acct[money], str) and Decimal(acct[money]) >= 0
    o = raw.submit_order(
        LimitOrderRequest(
            symbol="IBM", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=1.5
        )
    )
    assert isinstance(o, dict)
    assert o["qty"] == "2" and o["limit_price"] == "1.5" and o["type"] == "limit"
    assert o["order_class"] == "simple" and o["asset_class"] == "us_equity"
    assert o["status"] == "new"  # resting on the book: working, Alpaca's `new`
    uuid.UUID(o["id"]), uuid.UUID(o["asset_id"])
    for ts in ("created_at", "updated_at", "submitted_at"):
        assert o[ts] and o[ts].endswith("Z")
    listed = raw.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [x["id"] for x in listed] == [o["id"]]


def test_trading_stream_hears_new_and_fill_with_position_qty(
    system: RunningSystem, tmp_path: Path
) -> None:
    key = _key(system, tmp_path, "alpaca-stream@example.com")
    stream = TradingStream(
        key["key_id"],
        key["secret"],
        paper=True,
        url_override=system.url.replace("http", "ws") + "/stream",
    )
    got: list[Any] = []

    async def on_update(data: Any) -> None:
        got.append(data)
        if sum(u.event == "fill" for u in got) == 2:
            await stream.stop_ws()  # (stop() from inside the loop would wait on itself)

    stream.subscribe_trade_updates(on_update)
    c = _client(system, key)

    def trade() -> None:
        time.sleep(3)  # the stream is listening
        for qty in (2, 3):
            o = c.submit_order(
                MarketOrderRequest(
                    symbol="IBM", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
                )
            )
            _filled(c, o.id)

    threading.Thread(target=trade, daemon=True).start()
    timer = threading.Timer(60, stream.stop)
    timer.start()
    stream.run()
    timer.cancel()
    events = [(u.event, u.order.qty) for u in got]
    assert events == [("new", "2"), ("fill", "2"), ("new", "3"), ("fill", "3")]
    assert [u.order.status for u in got if u.event == "new"] == [OrderStatus.NEW] * 2
    fills = [u for u in got if u.event == "fill"]
    assert [u.position_qty for u in fills] == [2.0, 5.0]  # the signed position after each
    assert all(u.price is not None and u.price > 0 and u.execution_id for u in fills)


def test_the_readme_example_runs_verbatim(system: RunningSystem, tmp_path: Path) -> None:
    text = README.read_text()
    m = re.search(r"<!-- alpaca-py example -->\s*```python\n(.*?)```", text, re.S)
    assert m is not None, "README has no alpaca-py example"
    code = m.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10  # ten lines of code
    key = _key(system, tmp_path, "readme-example@example.com")
    env = {
        **os.environ,
        "MBT_URL": system.url,
        "APCA_API_KEY_ID": key["key_id"],
        "APCA_API_SECRET_KEY": key["secret"],
    }
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert "filled" in p.stdout.lower()


def test_stock_data_client_latest_quote_quotes_and_bars(
    system: RunningSystem, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest, StockQuotesRequest
    from alpaca.data.timeframe import TimeFrame

    from services.marketdata.domain.recorded import RecordedArchive

    key = _key(system, tmp_path, "alpaca-data@example.com")
    # the quote archive is a Pro+ entitlement (Free sees the feed 15 minutes late)
    set_tier(system.data_dir, "alpaca-data@example.com", "pro_plus")
    data = StockHistoricalDataClient(key["key_id"], key["secret"], url_override=system.url)
    latest = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["IBM", "SPY"]))
    assert set(latest) == {"IBM", "SPY"}
    assert latest["IBM"].ask_price >= latest["IBM"].bid_price > 0
    # history comes from the recording: the first 10:00 quotes of 2013-10-07, paged (limit 250
    # over pages of the server's choosing), equal to the archive's own
    start = datetime(2013, 10, 7, 14, 0, tzinfo=UTC)
    end = datetime(2013, 10, 7, 14, 5, tzinfo=UTC)
    got = data.get_stock_quotes(
        StockQuotesRequest(symbol_or_symbols="IBM", start=start, end=end, limit=250)
    )
    recorded = [q for q in RecordedArchive().load("IBM", start.date()) if start <= q.ts < end]
    ibm = got.data["IBM"]
    assert len(ibm) == min(250, len(recorded))
    assert [(q.timestamp, q.bid_price, q.ask_price) for q in ibm] == [
        (q.ts, float(q.bid), float(q.ask)) for q in recorded[: len(ibm)]
    ]
    bars = data.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="IBM", timeframe=TimeFrame.Minute, start=start, end=end)
    )
    minutes = bars.data["IBM"]
    assert [b.timestamp.minute for b in minutes] == [0, 1, 2, 3, 4]
    assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in minutes)


def test_portfolio_history_daily(system: RunningSystem, tmp_path: Path) -> None:
    from alpaca.trading.models import PortfolioHistory
    from alpaca.trading.requests import GetPortfolioHistoryRequest

    key = _key(system, tmp_path, "alpaca-history@example.com")
    c = _client(system, key)
    h = c.get_portfolio_history(GetPortfolioHistoryRequest(period="1M", timeframe="1D"))
    assert isinstance(h, PortfolioHistory) and h.timeframe == "1D"
    assert len(h.timestamp) == len(h.equity) == len(h.profit_loss) == len(h.profit_loss_pct)
    with pytest.raises(APIError) as e:
        c.get_portfolio_history(GetPortfolioHistoryRequest(period="1D", timeframe="2Min"))
    assert e.value.status_code == 422 and "5Min" in e.value.message

    # intraday: equity at the end of every 5 minutes of today's session, up to the clock
    buy = c.submit_order(
        MarketOrderRequest(symbol="IBM", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    _filled(c, buy.id)
    wait_for(lambda: c.get_all_positions() or None, timeout=15, what="position")
    day = c.get_portfolio_history(GetPortfolioHistoryRequest(period="1D", timeframe="5Min"))
    assert day.timeframe == "5Min" and len(day.timestamp) >= 2
    steps = [b - a for a, b in zip(day.timestamp, day.timestamp[1:], strict=False)]
    assert all(0 < s <= 300 for s in steps) and all(s == 300 for s in steps[:-1])
    clock = c.get_clock()
    assert day.timestamp[-1] <= clock.timestamp.timestamp() + 1
    assert day.equity[0] == 100000.0  # before the first fill: all cash
    raw = _client(system, key, raw=True).get_portfolio_history(
        GetPortfolioHistoryRequest(period="1D", timeframe="5Min")
    )
    assert isinstance(raw, dict) and raw["timeframe"] == "5Min"


def test_account_activities_as_alpaca_lists_them(system: RunningSystem, tmp_path: Path) -> None:
    """Raw HTTP (alpaca-py's TradingClient has no activities method): fills as TradeActivity,
    newest first, Alpaca's paging (page_token = the last id seen) and type filters."""
    import httpx

    key = _key(system, tmp_path, "alpaca-activities@example.com")
    c = _client(system, key)
    h = {"APCA-API-KEY-ID": key["key_id"], "APCA-API-SECRET-KEY": key["secret"]}
    orders = []
    for qty in (2, 1):
        o = c.submit_order(
            MarketOrderRequest(
                symbol="IBM", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )
        orders.append(_filled(c, o.id))
    url = f"{system.url}/v2/account/activities"

    def both() -> list[dict[str, Any]] | None:
        r = httpx.get(url, headers=h)
        assert r.status_code == 200, r.text
        body: list[dict[str, Any]] = r.json()
        return body if len(body) == 2 else None

    acts = wait_for(both, timeout=15, what="fill activities")
    # newest first: the second order's fill, then the first's
    assert [a["order_id"] for a in acts] == [str(orders[1].id), str(orders[0].id)]
    for a, o in zip(acts, reversed(orders), strict=True):
        assert a["activity_type"] == "FILL" and a["type"] == "fill" and a["side"] == "buy"
        assert a["symbol"] == "IBM" and a["qty"] == o.filled_qty
        assert Decimal(a["price"]) == Decimal(str(o.filled_avg_price))
        assert (a["cum_qty"], a["leaves_qty"], a["order_status"]) == (o.filled_qty, "0", "filled")
    asc = httpx.get(url, headers=h, params={"direction": "asc"}).json()
    assert [a["id"] for a in asc] == [a["id"] for a in reversed(acts)]
    first = httpx.get(url, headers=h, params={"page_size": 1}).json()
    rest = httpx.get(url, headers=h, params={"page_size": 1, "page_token": first[0]["id"]})
    assert [first[0]["id"], rest.json()[0]["id"]] == [a["id"] for a in acts]
    assert httpx.get(f"{url}/FILL", headers=h).json() == acts
    assert httpx.get(url, headers=h, params={"activity_types": "DIV,INT"}).json() == []
    bad = httpx.get(url, headers=h, params={"activity_types": "no such!"})
    assert bad.status_code == 422 and "activity type" in bad.json()["message"]
    bad = httpx.get(url, headers=h, params={"page_token": "not-an-activity"})
    assert bad.status_code == 422 and "after_id" in bad.json()["message"]


def test_listing_orders_filters_and_pages_as_alpaca(system: RunningSystem, tmp_path: Path) -> None:
    """GET /v2/orders with more orders than one internal page (100): each direction's first
    page is that direction's, and after/until/symbols/side/asset_class select on the server."""
    import httpx

    email = "alpaca-list@example.com"
    key = _key(system, tmp_path, email)
    set_tier(system.data_dir, email, "pro_plus")  # 105 submits inside a minute
    c = _client(system, key)
    placed: list[Order] = []
    for i in range(105):
        o = c.submit_order(
            LimitOrderRequest(
                symbol="SPY" if i % 35 == 0 else "IBM",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=1.00,
            )
        )
        assert isinstance(o, Order)
        placed.append(o)
    ids = [o.id for o in placed]

    def listed(**params: Any) -> list[Any]:
        got = c.get_orders(GetOrdersRequest(**params))
        assert isinstance(got, list)
        return [o.id for o in got]

    assert listed(status=QueryOrderStatus.ALL, limit=500, direction="asc") == ids
    assert listed(status=QueryOrderStatus.OPEN, limit=500) == ids[::-1]
    assert listed(status=QueryOrderStatus.ALL) == ids[::-1][:50]  # Alpaca's default limit 50
    assert listed(status=QueryOrderStatus.ALL, limit=10, direction="asc") == ids[:10]
    cut = placed[49].submitted_at
    assert listed(status=QueryOrderStatus.ALL, limit=500, after=cut, direction="asc") == ids[50:]
    assert listed(status=QueryOrderStatus.ALL, limit=500, until=cut) == ids[:49][::-1]
    assert listed(
        status=QueryOrderStatus.ALL, after=placed[2].submitted_at, until=placed[6].submitted_at
    ) == [ids[5], ids[4], ids[3]]
    spy = [o.id for o in placed if o.symbol == "SPY"]
    assert len(spy) == 3 and listed(status=QueryOrderStatus.ALL, symbols=["SPY"]) == spy[::-1]
    assert listed(status=QueryOrderStatus.ALL, side=OrderSide.SELL) == []
    assert listed(status=QueryOrderStatus.CLOSED, limit=500) == []

    h = {"APCA-API-KEY-ID": key["key_id"], "APCA-API-SECRET-KEY": key["secret"]}
    url = f"{system.url}/v2/orders"
    options = httpx.get(url, headers=h, params={"status": "all", "asset_class": "us_option"})
    assert options.status_code == 200 and options.json() == []
    equities = httpx.get(url, headers=h, params={"asset_class": "us_equity", "limit": 3})
    assert [o["id"] for o in equities.json()] == [str(i) for i in ids[::-1][:3]]
    for params, word in (
        ({"direction": "sideways"}, "direction"),
        ({"after": "yesterday"}, "after"),
        ({"side": "short"}, "side"),
        ({"asset_class": "crypto"}, "asset_class"),
    ):
        bad = httpx.get(url, headers=h, params=params)
        assert bad.status_code == 422 and word in bad.json()["message"], (params, bad.text)


def test_a_refused_submit_does_not_use_up_its_client_order_id(
    system: RunningSystem, tmp_path: Path
) -> None:
    """At Alpaca a 403 leaves no order, so a strategy retries with the same client_order_id;
    on MBT the refusal is recorded (rejected, with its reason) but the id stays free: the retry
    is a new attempt, and once an order is placed with it the id is that order's for good."""
    key = _key(system, tmp_path, "alpaca-coid@example.com")
    c = _client(system, key)
    coid = f"retry-{uuid.uuid4().hex[:8]}"

    def buy(qty: int) -> Any:
        return c.submit_order(
            LimitOrderRequest(
                symbol="IBM",
                qty=qty,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=100.00,
                client_order_id=coid,
            )
        )

    for _ in range(2):  # $100,000 of cash: 1,001 × $100 is refused, the retry too
        with pytest.raises(APIError) as e:
            buy(1001)
        assert e.value.status_code == 403 and "buying power" in e.value.message
    placed = buy(10)  # the same client_order_id, now an order that fits
    assert isinstance(placed, Order) and placed.status == OrderStatus.NEW
    again = buy(10)  # a repeat: the same order, nothing new
    assert isinstance(again, Order) and again.id == placed.id
    with pytest.raises(APIError) as e:
        buy(11)  # taken now: a different order under it is a conflict
    assert e.value.status_code == 422 and "qty" in e.value.message
    assert c.get_order_by_client_id(coid).id == placed.id
    listed = c.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.status for o in listed if o.client_order_id == coid] == [
        OrderStatus.NEW,
        OrderStatus.REJECTED,
        OrderStatus.REJECTED,
    ]
    c.cancel_order_by_id(placed.id)


def test_account_configuration_changes_what_the_account_may_do(
    system: RunningSystem, tmp_path: Path
) -> None:
    """PATCH /v2/account/configurations through alpaca-py: suspend_trade refuses new orders
    until it is switched off; no_shorting cannot be turned off on a cash account; what MBT
    does not let change is refused by name, yet alpaca-py's full echo of it is fine."""
    from alpaca.trading.models import AccountConfiguration

    key = _key(system, tmp_path, "alpaca-config@example.com")
    c = _client(system, key)
    conf = c.get_account_configurations()
    assert isinstance(conf, AccountConfiguration)
    assert (conf.no_shorting, conf.suspend_trade) == (True, False)
    assert c.set_account_configurations(conf) == conf  # everything sent back as it was

    order = LimitOrderRequest(
        symbol="IBM", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=1.00
    )
    resting = c.submit_order(order)
    suspended = c.set_account_configurations(conf.model_copy(update={"suspend_trade": True}))
    assert suspended.suspend_trade is True and c.get_account_configurations().suspend_trade
    assert c.get_account().trade_suspended_by_user is True
    with pytest.raises(APIError) as e:
        c.submit_order(order)
    assert e.value.status_code == 403 and "suspend_trade" in e.value.message
    with pytest.raises(APIError) as e:  # a replace too, and the order stays as it was
        c.replace_order_by_id(resting.id, ReplaceOrderRequest(limit_price=1.05))
    assert e.value.status_code == 403 and "suspend_trade" in e.value.message
    kept = c.get_order_by_id(resting.id)
    assert (kept.status, kept.limit_price) == (OrderStatus.NEW, "1")
    assert c.cancel_order_by_id(resting.id) is None  # cancels still work
    resumed = c.set_account_configurations(conf.model_copy(update={"suspend_trade": False}))
    assert resumed.suspend_trade is False
    placed = c.submit_order(order)
    assert isinstance(placed, Order) and placed.status == OrderStatus.NEW
    c.cancel_order_by_id(placed.id)

    for change, word in (
        ({"no_shorting": False}, "cash account"),
        ({"max_margin_multiplier": "4"}, "max_margin_multiplier"),
        ({"fractional_trading": True}, "fractional_trading"),
    ):
        with pytest.raises(APIError) as e:
            c.set_account_configurations(conf.model_copy(update=change))
        assert e.value.status_code == 422 and word in e.value.message, (change, e.value.message)
    assert c.get_account_configurations() == conf


def test_last_equity_and_lastday_price_are_the_previous_close(
    system: RunningSystem, tmp_path: Path
) -> None:
    """last_equity is the equity of the newest end-of-day snapshot before the market clock's
    day (equity now, before the account has one), a position's lastday_price its mark there:
    equity - last_equity is today's P&L, change_today and unrealized_intraday_pl follow."""
    import json
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    import psycopg

    from tests.e2e.test_privacy import pg_url

    key = _key(system, tmp_path, "alpaca-last-equity@example.com")
    c = _client(system, key)
    fresh = c.get_account()
    assert fresh.last_equity == fresh.equity == "100000.00"
    buy = c.submit_order(
        MarketOrderRequest(symbol="IBM", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    _filled(c, buy.id)
    held = wait_for(lambda: c.get_all_positions() or None, timeout=15, what="position")[0]
    assert held.lastday_price == held.current_price and held.change_today == "0"  # bought today
    assert held.unrealized_intraday_pl == held.unrealized_pl

    today = c.get_clock().timestamp.astimezone(ZoneInfo("America/New_York")).date()
    ibm = json.dumps([{"symbol": "IBM", "qty": "2", "mark": "150.25"}])
    rows = [
        (today - timedelta(days=10), "99000.00", "[]"),
        (today - timedelta(days=1), "98000.00", ibm),
    ]
    rows.append((today, "97000.00", "[]"))  # today's own close (once past): not the previous one
    with psycopg.connect(pg_url(system)) as conn:
        for day, equity, marks in rows:
            conn.execute(
                "INSERT INTO accounts.eod_snapshots (account_id, as_of_date, cash, "
                "long_market_value, short_market_value, equity, positions) "
                "VALUES (%s, %s, 100000, 0, 0, %s, %s::jsonb)",
                (str(fresh.id), day, equity, marks),
            )
    acct = c.get_account()
    assert acct.last_equity == "98000.00"
    assert Decimal(acct.equity) == Decimal(acct.cash) + Decimal(acct.long_market_value)
    p = c.get_open_position("IBM")
    now, last = Decimal(p.current_price), Decimal("150.25")
    assert Decimal(p.lastday_price) == last
    assert Decimal(p.change_today) == (now - last) / last
    assert Decimal(p.unrealized_intraday_pl) == (2 * (now - last)).quantize(Decimal("0.01"))


def test_a_refused_replace_leaves_the_order_working(system: RunningSystem, tmp_path: Path) -> None:
    """The replacement's hold may use what the old order holds (so it never needs buying
    power for both), and a replacement that is refused leaves the old order as it was."""
    key = _key(system, tmp_path, "alpaca-replace@example.com")
    c = _client(system, key)
    resting = c.submit_order(
        LimitOrderRequest(
            symbol="IBM",
            qty=500,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=100.00,
        )
    )  # $50,000 of the $100,000 held
    # 900 x $100 = $90,000: more than is free ($50,000), within it with the old order's hold
    bigger = c.replace_order_by_id(resting.id, ReplaceOrderRequest(qty=900))
    assert bigger.qty == "900" and bigger.replaces == resting.id
    assert c.get_order_by_id(resting.id).status == OrderStatus.REPLACED
    # both held until the old order is replaced, then its hold released: one hold, $90,000
    wait_for(
        lambda: Decimal(c.get_account().buying_power) == Decimal("10000") or None,
        timeout=10,
        what="the old order's hold released",
    )

    with pytest.raises(APIError) as e:  # 1,001 x $100: more than the account has
        c.replace_order_by_id(bigger.id, ReplaceOrderRequest(qty=1001))
    assert e.value.status_code == 403 and "buying power" in e.value.message
    kept = c.get_order_by_id(bigger.id)
    assert (kept.status, kept.qty, kept.replaced_by) == (OrderStatus.NEW, "900", None)
    assert Decimal(c.get_account().buying_power) == Decimal("10000")  # its hold as it was
    c.cancel_order_by_id(bigger.id)
    assert Decimal(c.get_account().buying_power) == Decimal("100000")

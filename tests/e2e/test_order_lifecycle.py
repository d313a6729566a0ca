"""Replace, cancel-all, duplicate submits and replay through the running system."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, date, datetime
from decimal import Decimal

import grpc
import httpx
import pytest

from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from services.marketdata.domain.recorded import RecordedArchive
from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import signup_http

pytestmark = pytest.mark.e2e


def resting_buy(url: str, h: dict[str, str], limit: str, qty: str = "10") -> dict[str, str]:
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={
            "symbol": "IBM",
            "side": "buy",
            "qty": qty,
            "order_type": "limit",
            "limit_price": limit,
            "time_in_force": "gtc",
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_replace_links_both_ways_and_moves_the_hold(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "replace@example.com")
    h = {"authorization": f"Bearer {token}"}
    old = resting_buy(url, h, "100.00")
    assert (
        httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]["held_for_orders"]
        == "1000.00"
    )
    r = httpx.patch(f"{url}/api/mbt/orders/{old['id']}", headers=h, json={"limit_price": "101.50"})
    assert r.status_code == 200, r.text
    new = r.json()["data"]
    assert (
        new["replaces"] == old["id"]
        and new["limit_price"] == "101.5"
        and new["status"] == "accepted"
    )
    old_now = httpx.get(f"{url}/api/mbt/orders/{old['id']}", headers=h).json()["data"]
    assert old_now["status"] == "replaced" and old_now["replaced_by"] == new["id"]
    # 10 × 101.50 held, the old 10 × 100 released
    assert (
        httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]["held_for_orders"]
        == "1015.00"
    )
    again = httpx.patch(f"{url}/api/mbt/orders/{old['id']}", headers=h, json={"limit_price": "99"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "ORDER_NOT_OPEN"
    empty = httpx.patch(f"{url}/api/mbt/orders/{new['id']}", headers=h, json={})
    assert empty.status_code == 400 and "nothing to change" in empty.json()["error"]["message"]


def test_cancel_all_releases_every_hold(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "cancel-all@example.com")
    h = {"authorization": f"Bearer {token}"}
    a, b = resting_buy(url, h, "50"), resting_buy(url, h, "60")
    r = httpx.delete(f"{url}/api/mbt/orders", headers=h)
    assert r.status_code == 200
    assert {o["id"]: o["status"] for o in r.json()["data"]["orders"]} == {
        a["id"]: "canceled",
        b["id"]: "canceled",
    }
    assert (
        httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]["held_for_orders"] == "0.00"
    )
    # cancel is idempotent: a canceled order comes back as it is
    again = httpx.delete(f"{url}/api/mbt/orders/{a['id']}", headers=h)
    assert again.status_code == 200 and again.json()["data"]["status"] == "canceled"


def test_fifty_concurrent_duplicates_make_one_order(system: RunningSystem) -> None:
    token, _ = signup_http(system.url, "dupes@example.com")
    md = (("authorization", f"Bearer {token}"),)
    req = opb.SubmitOrderRequest(
        symbol="IBM",
        side="buy",
        qty="1",
        order_type="limit",
        limit_price="10",
        time_in_force="gtc",
        client_order_id="same-key",
    )
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            ids = list(pool.map(lambda _: stub.SubmitOrder(req, metadata=md).id, range(50)))
        assert len(set(ids)) == 1
        listed = stub.ListOrders(opb.ListOrdersRequest(status="all"), metadata=md).orders
        assert [o.id for o in listed] == ids[:1]


def test_a_reused_client_order_id_with_another_payload_is_a_conflict(
    system: RunningSystem,
) -> None:
    """BRIEF §4 rule 8: the same payload again returns the original; a different one is 422
    (HTTP) / ALREADY_EXISTS (gRPC) naming the fields that differ, and no second order exists."""
    token, _ = signup_http(system.url, "coid-conflict@example.com")
    h = {"authorization": f"Bearer {token}"}
    body = {
        "symbol": "IBM",
        "side": "buy",
        "qty": "2",
        "order_type": "limit",
        "limit_price": "10.00",
        "time_in_force": "gtc",
        "client_order_id": "strategy-42",
    }
    first = httpx.post(f"{system.url}/api/mbt/orders", headers=h, json=body)
    assert first.status_code == 200, first.text
    again = httpx.post(f"{system.url}/api/mbt/orders", headers=h, json={**body, "qty": "2.0"})
    assert again.status_code == 200 and again.json()["data"]["id"] == first.json()["data"]["id"]
    other = httpx.post(
        f"{system.url}/api/mbt/orders", headers=h, json={**body, "qty": "3", "limit_price": "11"}
    )
    assert other.status_code == 422, other.text
    err = other.json()["error"]
    assert err["code"] == "CLIENT_ORDER_ID_CONFLICT"
    assert "qty" in err["message"] and "limit_price" in err["message"]
    assert "side" not in err["message"]
    md = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.SubmitOrder(
                opb.SubmitOrderRequest(
                    symbol="IBM",
                    side="sell",
                    qty="2",
                    order_type="limit",
                    limit_price="10",
                    time_in_force="gtc",
                    client_order_id="strategy-42",
                ),
                metadata=md,
            )
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "side" in (e.value.details() or "")
        listed = stub.ListOrders(opb.ListOrdersRequest(status="all"), metadata=md).orders
    assert len(listed) == 1


def test_replay_matches_the_recording_and_is_deterministic(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "replay@example.com")
    h = {"authorization": f"Bearer {token}"}
    start, end = "2013-10-07T15:00:00Z", "2013-10-07T15:30:00Z"
    body = {
        "start_time": start,
        "end_time": end,
        "orders": [
            {"symbol": "IBM", "side": "buy", "qty": "5", "order_type": "market"},
            {
                "symbol": "IBM",
                "side": "sell",
                "qty": "5",
                "order_type": "limit",
                "limit_price": "999",
                "time_in_force": "day",
            },
        ],
    }
    r1 = httpx.post(f"{url}/api/mbt/replays", headers=h, json=body)
    assert r1.status_code == 200, r1.text
    r2 = httpx.post(f"{url}/api/mbt/replays", headers=h, json=body)
    assert r1.json()["data"] == r2.json()["data"]
    events = r1.json()["data"]["events"]
    fills = [e for e in events if e["event"] == "fill"]
    assert [f["order_index"] for f in fills] == [0]
    # from the recording: the first valid IBM quote strictly after 15:00:00Z, at its ask
    t0 = datetime(2013, 10, 7, 15, 0, tzinfo=UTC)
    first = next(
        q
        for q in RecordedArchive().load("IBM", date(2013, 10, 7))
        if q.ts > t0 and 0 < q.ask and q.bid <= q.ask
    )
    assert Decimal(fills[0]["fill"]["price"]) == first.ask
    assert fills[0]["fill"]["quote"]["timestamp"].startswith(first.ts.strftime("%Y-%m-%dT%H:%M:%S"))
    bad = httpx.post(
        f"{url}/api/mbt/replays",
        headers=h,
        json={**body, "orders": [{"symbol": "IBM", "side": "buy", "qty": "0"}]},
    )
    assert bad.status_code == 400 and "orders[0].qty" in bad.json()["error"]["message"]

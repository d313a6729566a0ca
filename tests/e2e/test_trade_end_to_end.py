"""One real trade end to end, through the CLI, HTTP and gRPC, against `mbt up`.

Expected fill prices are worked out from the recorded IBM quotes shipped with the package and
the fill rules (BRIEF §4): a market buy fills at the ask of the first quote strictly after the
order's acceptance time.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import pytest

from raxx.mbt.v1 import orders_service_pb2 as opb
from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc
from raxx.mbt.v1 import sessions_service_pb2 as spb
from raxx.mbt.v1 import sessions_service_pb2_grpc as sgrpc
from services.marketdata.domain.recorded import RecordedArchive
from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import RESTING_BUY, cli_json, run_cli, signup_http, ts, wait_for

pytestmark = pytest.mark.e2e


def expected_market_fill(symbol: str, accepted_at: str, side: str) -> tuple[str, Decimal]:
    """(quote time, price) of the first recorded quote strictly after acceptance: ask for buys."""
    from datetime import date

    t0 = ts(accepted_at)
    quotes = RecordedArchive().load(symbol, date(2013, 10, 7)) + RecordedArchive().load(
        symbol, date(2013, 10, 8)
    )
    for q in quotes:
        if q.ts > t0 and q.ask > 0 and q.bid <= q.ask:
            return q.ts.isoformat(), q.ask if side == "buy" else q.bid
    raise AssertionError("no quote after acceptance in the recording")


def test_cli_signup_trade_and_views(system: RunningSystem, tmp_path: Path) -> None:
    cfg, url = tmp_path / "cfg", system.url
    run_cli(cfg, url, "signup", "--email", "pat@example.com")
    acct = cli_json(cfg, url, "account")
    assert acct["cash"] == "100000.00" and acct["profile"] == "diversifier"
    quote = cli_json(cfg, url, "quote", "IBM")
    assert Decimal(quote["ask"]) >= Decimal(quote["bid"]) > 0

    order = cli_json(cfg, url, "buy", "IBM", "10")
    assert order["status"] in ("accepted", "filled")
    filled = wait_for(
        lambda: next(
            (
                o
                for o in cli_json(cfg, url, "orders")["orders"]
                if o["id"] == order["id"] and o["status"] == "filled"
            ),
            None,
        ),
        what="the market buy to fill",
    )
    fills = cli_json(cfg, url, "fills")["fills"]
    fill = next(f for f in fills if f["order_id"] == order["id"])
    # worked out from the recording: the first IBM quote after acceptance, at its ask
    exp_ts, exp_price = expected_market_fill("IBM", filled["accepted_at"], "buy")
    assert ts(fill["quote"]["timestamp"]).isoformat() == exp_ts
    assert Decimal(fill["price"]) == exp_price == Decimal(fill["quote"]["ask"])
    assert ts(fill["filled_at"]) > ts(filled["accepted_at"])

    # the ledger applies the fill exactly once: cash = 100,000 − 10 × fill price
    acct = wait_for(
        lambda: (a := cli_json(cfg, url, "account"))["cash"] != "100000.00" and a,
        what="the fill to reach the ledger",
    )
    assert Decimal(acct["cash"]) == Decimal("100000") - 10 * exp_price
    pos = cli_json(cfg, url, "positions")["positions"]
    assert [(p["symbol"], p["qty"], Decimal(p["avg_entry_price"])) for p in pos] == [
        ("IBM", "10", exp_price)
    ]

    # a resting gtc sell limit well above the market: accepted, holds 5 shares, not filled
    sell = cli_json(cfg, url, "sell", "IBM", "5", "--limit", "185.10", "--tif", "gtc")
    assert sell["status"] == "accepted" and sell["limit_price"] == "185.1"
    over = run_cli(cfg, url, "sell", "IBM", "6", ok=False)  # only 5 of 10 left unreserved
    assert over.returncode == 1 and "INSUFFICIENT_QTY" in over.stderr
    assert over.stderr.count("\n") == 1  # one clear line
    # cancel by the short id `mbt orders` prints; the shares are free again
    canceled = cli_json(cfg, url, "cancel", sell["id"][:8])
    assert canceled["id"] == sell["id"] and canceled["status"] == "canceled"
    assert cli_json(cfg, url, "sell", "IBM", "6")["status"] in ("accepted", "filled")


def test_cli_errors_are_one_line(system: RunningSystem, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    p = run_cli(cfg, system.url, "account", ok=False)
    assert p.returncode != 0 and p.stderr.startswith("error: not signed in")
    p = run_cli(cfg, "http://127.0.0.1:1", "clock", ok=False)
    assert p.returncode == 2 and "cannot reach MBT" in p.stderr


def test_http_trade_with_cookie_and_bad_input(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "http-user@example.com")
    r = httpx.post(f"{url}/api/mbt/sessions/registrations", json={"email": "other@example.com"})
    fin = httpx.post(
        f"{url}/api/mbt/sessions/registrations/{r.json()['data']['ceremony_id']}:finish",
        json={"credential_json": "{}"},
    )
    assert fin.status_code in (400, 401) and "error" in fin.json()

    from mbt.client import origin_for

    h = {"cookie": f"mbt_session={token}", "origin": origin_for(url)}
    r = httpx.get(f"{url}/api/mbt/account", headers=h)
    assert r.status_code == 200 and r.json()["data"]["cash"] == "100000.00"
    assert r.json()["meta"]["request_id"]

    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={"symbol": "IBM", "side": "buy", "qty": "3", "order_type": "market"},
    )
    assert r.status_code == 200, r.text
    oid = r.json()["data"]["id"]
    got = wait_for(
        lambda: (
            (o := httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h).json()["data"])["status"]
            == "filled"
            and o
        ),
        what="HTTP order fill",
    )
    exp_ts, exp_price = expected_market_fill("IBM", got["accepted_at"], "buy")
    assert Decimal(got["filled_avg_price"]) == exp_price

    def err(resp: httpx.Response) -> tuple[int, str, str]:
        e = resp.json()["error"]
        assert e["request_id"]
        return resp.status_code, e["code"], e["message"]

    def post(body: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/api/mbt/orders", headers=h, json=body)

    assert err(post({"symbol": "NOPE", "side": "buy", "qty": "1"}))[:2] == (404, "UNKNOWN_SYMBOL")
    s, c, m = err(post({"symbol": "IBM", "side": "buy", "qty": "-5"}))
    assert (s, c) == (400, "INVALID_ARGUMENT") and "qty" in m
    s, c, m = err(post({"symbol": "IBM", "side": "buy", "qty": "0"}))
    assert (s, c) == (400, "INVALID_ARGUMENT") and "qty" in m
    s, c, m = err(post({"side": "buy", "qty": "1"}))
    assert s == 400 and "symbol" in m
    s, c, m = err(post({"symbol": "IBM", "qty": "1"}))
    assert s == 400 and "side" in m
    s, c, m = err(post({"symbol": "IBM", "side": "buy", "qty": "1", "order_type": "limit"}))
    assert s == 400 and "limit_price" in m
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers={**h, "content-type": "application/json"},
        content=b'{"symbol": "IBM",',
    )
    s, c, m = err(r)
    assert s == 400 and "malformed JSON" in m
    # nothing half-written: only the one good order exists for this user
    orders = httpx.get(f"{url}/api/mbt/orders", headers=h).json()["data"]["orders"]
    assert [o["id"] for o in orders if o["status"] != "rejected"] == [oid]

    # a tampered or missing session is 401, never a 500
    bad = {"cookie": f"mbt_session={token[:-3]}xyz"}
    assert err(httpx.get(f"{url}/api/mbt/account", headers=bad))[0] == 401
    assert err(httpx.get(f"{url}/api/mbt/account"))[0] == 401
    # a cross-site cookie POST is refused
    xs = {"cookie": f"mbt_session={token}", "origin": "https://evil.example"}
    assert err(httpx.post(f"{url}/api/mbt/orders", headers=xs, json={"symbol": "IBM"}))[:2] == (
        403,
        "CSRF_REJECTED",
    )

    # logout revokes the session at once
    r = httpx.delete(f"{url}/api/mbt/sessions/current", headers=h)
    assert r.status_code == 200
    wait_for(
        lambda: httpx.get(f"{url}/api/mbt/account", headers=h).status_code == 401,
        timeout=10,
        what="revocation",
    )


def test_cookie_attributes(system: RunningSystem) -> None:
    from mbt.client import origin_for
    from mbt.passkey import SoftPasskey

    url = system.url
    key = SoftPasskey.generate()
    d = httpx.post(
        f"{url}/api/mbt/sessions/registrations", json={"email": "cookie@example.com"}
    ).json()["data"]
    r = httpx.post(
        f"{url}/api/mbt/sessions/registrations/{d['ceremony_id']}:finish",
        json={"credential_json": key.create(d["options_json"], origin_for(url))},
    )
    c = r.headers["set-cookie"].lower()
    assert "httponly" in c and "secure" in c and "samesite=strict" in c
    assert "token" not in r.json()["data"]  # the token lives only in the HttpOnly cookie


def test_native_grpc_trade(system: RunningSystem) -> None:
    from mbt.client import origin_for
    from mbt.passkey import SoftPasskey

    key = SoftPasskey.generate()
    with grpc.insecure_channel(system.grpc_addr("sessions")) as ch:
        sessions = sgrpc.SessionsServiceStub(ch)
        c = sessions.BeginRegistration(spb.BeginRegistrationRequest(email="algo@example.com"))
        s = sessions.FinishRegistration(
            spb.FinishRegistrationRequest(
                ceremony_id=c.ceremony_id,
                credential_json=key.create(c.options_json, origin_for(system.url)),
            )
        )
    md = (("authorization", f"Bearer {s.token}"),)
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        orders = ogrpc.OrdersServiceStub(ch)
        o = orders.SubmitOrder(
            opb.SubmitOrderRequest(
                symbol="IBM", side="buy", qty="2", order_type="market", client_order_id="algo-1"
            ),
            metadata=md,
        )
        again = orders.SubmitOrder(
            opb.SubmitOrderRequest(symbol="IBM", side="buy", qty="2", client_order_id="algo-1"),
            metadata=md,
        )
        assert again.id == o.id  # duplicate client_order_id returns the original
        got = wait_for(
            lambda: (
                (x := orders.GetOrder(opb.GetOrderRequest(order_id=o.id), metadata=md)).status
                == "filled"
                and x
            ),
            what="gRPC fill",
        )
        _, price = expected_market_fill("IBM", ts_pb(got.accepted_at), "buy")
        assert Decimal(got.filled_avg_price) == price
        with pytest.raises(grpc.RpcError) as ei:
            orders.SubmitOrder(
                opb.SubmitOrderRequest(symbol="IBM", side="buy", qty="1.5"), metadata=md
            )
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "qty" in ei.value.details()
        with pytest.raises(grpc.RpcError) as ei:
            orders.ListOrders(opb.ListOrdersRequest())
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


def ts_pb(t: object) -> str:
    from datetime import UTC

    return t.ToDatetime(tzinfo=UTC).isoformat()  # type: ignore[attr-defined]


def test_users_cannot_see_each_other(system: RunningSystem) -> None:
    url = system.url
    a, _ = signup_http(url, "alice@example.com")
    b, _ = signup_http(url, "bob@example.com")
    ha, hb = {"authorization": f"Bearer {a}"}, {"authorization": f"Bearer {b}"}
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=ha,
        json=RESTING_BUY,
    )
    oid = r.json()["data"]["id"]
    assert httpx.get(f"{url}/api/mbt/orders/{oid}", headers=hb).status_code == 404
    assert httpx.delete(f"{url}/api/mbt/orders/{oid}", headers=hb).status_code == 404
    assert (
        httpx.get(f"{url}/api/mbt/orders/{oid}", headers=ha).json()["data"]["status"] == "accepted"
    )
    assert httpx.get(f"{url}/api/mbt/orders", headers=hb).json()["data"]["orders"] == []


def test_eod_job_writes_the_portfolio_history(system: RunningSystem, tmp_path: Path) -> None:
    """`python -m mbt.jobs mark-to-market` → accounts snapshots every account at the close."""
    import os
    import re
    import subprocess
    import sys

    url = system.url
    token, _ = signup_http(url, "eod@example.com")
    h = {"authorization": f"Bearer {token}"}
    nats_url = re.search(r"nats\s+(nats://\S+)", system.log.read_text())
    assert nats_url is not None
    env = {**os.environ, "NATS_URL": nats_url.group(1)}
    p = subprocess.run(
        [sys.executable, "-m", "mbt.jobs", "mark-to-market", "--as-of", "2013-10-07"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    points = wait_for(
        lambda: httpx.get(f"{url}/api/mbt/account/history", headers=h).json()["data"]["points"],
        what="the EOD snapshot",
    )
    # a new account with no positions: equity = cash = $100,000 (Diversifier)
    assert points == [
        {
            "date": "2013-10-07",
            "equity": "100000.00",
            "cash": "100000.00",
            "long_market_value": "0.00",
            "short_market_value": "0.00",
            "profit_loss": "0.00",
        }
    ]

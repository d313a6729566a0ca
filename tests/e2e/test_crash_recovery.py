"""Kill -9 one service while trading: accepted orders and fills survive, applied exactly once."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import httpx
import psutil
import pytest

from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import RESTING_BUY, signup_http, wait_for

pytestmark = pytest.mark.e2e


def pid_listening_on(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if (
            conn.laddr
            and conn.laddr.port == port
            and conn.status == psutil.CONN_LISTEN
            and conn.pid
        ):
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def kill_service(system: RunningSystem, name: str) -> int:
    pid = pid_listening_on(system.grpc_ports[name])
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        what=f"{name} to die",
    )
    # the launcher restarts it on the same port
    wait_for(
        lambda: _listening_pid(system.grpc_ports[name]) not in (None, pid),
        timeout=60,
        what=f"{name} to be restarted",
    )
    return pid


def _listening_pid(port: int) -> int | None:
    try:
        return pid_listening_on(port)
    except AssertionError:
        return None


def test_orders_service_crash_keeps_resting_orders(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "crash-orders@example.com")
    h = {"authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={
            "symbol": "IBM",
            "side": "buy",
            "qty": "2",
            "order_type": "limit",
            "limit_price": "1.00",
            "time_in_force": "gtc",
        },
    )
    assert r.status_code == 200, r.text
    oid = r.json()["data"]["id"]
    kill_service(system, "orders")
    log = system.data_dir / "logs" / "orders.log"
    wait_for(lambda: log.read_text().count("re-armed") >= 2, timeout=30, what="orders re-arm")
    o = wait_for(
        lambda: (
            (x := httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h)).status_code == 200
            and x.json()["data"]
        ),
        what="orders back",
    )
    assert o["status"] == "accepted"
    # the restarted service still trades: a market buy fills
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={"symbol": "IBM", "side": "buy", "qty": "1", "order_type": "market"},
    )
    oid2 = r.json()["data"]["id"]
    wait_for(
        lambda: (
            httpx.get(f"{url}/api/mbt/orders/{oid2}", headers=h).json()["data"]["status"]
            == "filled"
        ),
        what="fill after restart",
    )


def test_accounts_crash_applies_each_fill_once(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "crash-accounts@example.com")
    h = {"authorization": f"Bearer {token}"}
    ids = []
    for _ in range(3):
        r = httpx.post(
            f"{url}/api/mbt/orders",
            headers=h,
            json={"symbol": "IBM", "side": "buy", "qty": "1", "order_type": "market"},
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["data"]["id"])
    kill_service(system, "accounts")  # fills are in flight on the bus meanwhile

    def all_filled() -> list[dict[str, str]] | None:
        orders = [httpx.get(f"{url}/api/mbt/orders/{i}", headers=h).json()["data"] for i in ids]
        return orders if all(o["status"] == "filled" for o in orders) else None

    orders = wait_for(all_filled, timeout=60, what="fills")
    spent = sum(Decimal(o["filled_avg_price"]) * Decimal(o["filled_qty"]) for o in orders)

    def ledger_caught_up() -> dict[str, str] | None:
        r = httpx.get(f"{url}/api/mbt/positions", headers=h)
        if r.status_code != 200:
            return None
        pos = r.json()["data"]["positions"]
        return pos[0] if pos and pos[0]["qty"] == "3" else None

    wait_for(ledger_caught_up, timeout=60, what="ledger to apply the fills")
    acct = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    # 100,000 − Σ qty × price: each fill applied exactly once, none lost, none doubled
    assert Decimal(acct["cash"]) == Decimal("100000") - spent
    assert acct["held_for_orders"] == "0.00"


def _submit_market_buys(system: RunningSystem, token: str, n: int) -> list[str]:
    import concurrent.futures

    import grpc

    from raxx.mbt.v1 import orders_service_pb2 as opb
    from raxx.mbt.v1 import orders_service_pb2_grpc as ogrpc

    md = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(system.grpc_addr("orders")) as ch:
        stub = ogrpc.OrdersServiceStub(ch)

        def one(i: int) -> str:
            req = opb.SubmitOrderRequest(symbol="IBM", side="buy", qty="1", order_type="market")
            return str(stub.SubmitOrder(req, metadata=md, timeout=30).id)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, range(n)))


def _ledger_matches_fills(url: str, h: dict[str, str], n: int) -> None:
    def filled_orders() -> list[dict[str, str]] | None:
        got = httpx.get(
            f"{url}/api/mbt/orders", headers=h, params={"status": "filled", "page_size": 500}
        )
        orders = got.json()["data"]["orders"] if got.status_code == 200 else []
        return orders if len(orders) == n else None

    orders = wait_for(filled_orders, timeout=90, what=f"{n} fills")
    spent = sum(Decimal(o["filled_avg_price"]) * Decimal(o["filled_qty"]) for o in orders)

    def caught_up() -> dict[str, str] | None:
        r = httpx.get(f"{url}/api/mbt/positions", headers=h)
        pos = r.json()["data"]["positions"] if r.status_code == 200 else []
        return pos[0] if pos and pos[0]["qty"] == str(n) else None

    wait_for(caught_up, timeout=90, what="the ledger to apply every fill")
    acct = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    assert Decimal(acct["cash"]) == Decimal("100000") - spent  # none lost, none doubled
    assert acct["held_for_orders"] == "0.00"
    acts = httpx.get(f"{url}/api/mbt/activities", headers=h, params={"page_size": 500}).json()[
        "data"
    ]
    assert len(acts["activities"]) == n  # one activity per execution


def test_accounts_killed_with_500_fills_in_flight(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "crash-500@example.com")
    _submit_market_buys(system, token, 500)
    kill_service(system, "accounts")  # the fills are on the bus, or about to be
    _ledger_matches_fills(url, {"authorization": f"Bearer {token}"}, 500)


def test_nats_killed_during_trading_loses_nothing(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "crash-nats@example.com")
    nats_pid = next(
        p.pid
        for p in psutil.Process(system.process.pid).children(recursive=True)
        if "nats-server" in " ".join(p.cmdline())
    )
    first = _submit_market_buys(system, token, 20)
    os.kill(nats_pid, signal.SIGKILL)
    during = _submit_market_buys(system, token, 20)  # accepted while the bus is down
    assert len(set(first + during)) == 40
    wait_for(lambda: "nats exited" in system.log.read_text(), timeout=30, what="nats restart")
    _ledger_matches_fills(url, {"authorization": f"Bearer {token}"}, 40)


def test_nats_stopped_for_ten_seconds_loses_nothing(system: RunningSystem) -> None:
    """SIGSTOP nats-server for 10 s while orders keep arriving, then SIGCONT: every order
    fills once the bus is back, and the ledger applies each fill exactly once."""
    import time

    url = system.url
    token, _ = signup_http(url, "nats-pause@example.com")
    nats = next(
        p
        for p in psutil.Process(system.process.pid).children(recursive=True)
        if "nats-server" in " ".join(p.cmdline())
    )
    before = _submit_market_buys(system, token, 10)
    nats.suspend()
    try:
        during = _submit_market_buys(system, token, 10)  # accepted while the bus is frozen
        time.sleep(10)
    finally:
        nats.resume()
    assert len(set(before + during)) == 20
    _ledger_matches_fills(url, {"authorization": f"Bearer {token}"}, 20)


def test_a_hold_whose_order_was_never_written_is_released_after_a_crash(
    system: RunningSystem,
) -> None:
    """The submit pipeline places holds, then writes the orders: a crash in between leaves a
    hold with no order. The restarted orders instance releases it (and leaves real ones)."""
    import asyncio
    import uuid

    from mbt.client import origin_for
    from mbt.launcher import load_secret
    from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
    from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
    from services.platform.clients import ServiceChannel

    url = system.url
    token, _ = signup_http(url, "orphan-hold@example.com")
    h = {"cookie": f"mbt_session={token}", "origin": origin_for(url)}
    before = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    # a real resting order keeps its hold
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={
            "symbol": "IBM",
            "side": "buy",
            "qty": "10",
            "order_type": "limit",
            "limit_price": "1.00",
            "time_in_force": "gtc",
        },
    )
    assert r.status_code == 200, r.text
    real_hold = Decimal(r.json()["data"]["qty"]) * Decimal("1.00")

    async def orphan() -> None:  # what the pipeline asks of accounts before a crash
        ch = ServiceChannel(
            f"127.0.0.1:{system.grpc_ports['accounts']}",
            caller="orders",
            secret=bytes.fromhex(load_secret(system.data_dir)),
        )
        try:
            stub = acct_grpc.AccountsServiceStub(ch.channel)
            req = acct_pb.PlaceHoldsRequest()
            req.holds.add(
                user_id=before["user_id"],
                order_id=str(uuid.uuid4()),
                symbol="IBM",
                side="buy",
                qty="5",
                amount="5000.00",
            )
            reply = await ch.call(stub.PlaceHolds, req)
            assert not reply.results[0].HasField("error"), reply
        finally:
            await ch.close()

    asyncio.run(orphan())
    held = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    bp0 = Decimal(before["buying_power"])
    assert Decimal(held["buying_power"]) == bp0 - real_hold - Decimal("5000.00")

    kill_service(system, "orders")
    after = wait_for(
        lambda: (
            (a := httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"])
            and Decimal(a["buying_power"]) == bp0 - real_hold
            and a
        ),
        timeout=60,
        what="the orphan hold released",
    )
    assert Decimal(after["held_for_orders"]) == real_hold
    log = (system.data_dir / "logs" / "orders.log").read_text()
    assert "which was never written" in log


def test_an_order_an_earlier_version_left_new_is_finished_on_start(system: RunningSystem) -> None:
    """Earlier versions recorded an order `new` before its hold; one a crash left there is held
    and accepted by the restarted orders instance (once: its audit keeps a single submit)."""
    import uuid

    import psycopg

    from mbt.client import origin_for

    url = system.url
    token, _ = signup_http(url, "left-new@example.com")
    h = {"cookie": f"mbt_session={token}", "origin": origin_for(url)}
    acct = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    oid = str(uuid.uuid4())
    dsn = f"postgresql://postgres:@/postgres?host={system.data_dir / 'postgres'}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO orders.orders (id, user_id, client_order_id, symbol, side, qty, "
            "order_type, time_in_force, limit_price, status, submitted_at, updated_at) VALUES "
            "(%s, %s, 'left-new-1', 'IBM', 'buy', 7, 'limit', 'gtc', 1.00, 'new', now(), now())",
            (oid, acct["user_id"]),
        )
        c.execute(
            "INSERT INTO orders.audit_log (actor, action, order_id, detail) "
            "VALUES (%s, 'submit', %s, '{}')",
            (acct["user_id"], oid),
        )
    kill_service(system, "orders")
    o = wait_for(
        lambda: (
            (x := httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h)).status_code == 200
            and x.json()["data"]["status"] == "accepted"
            and x.json()["data"]
        ),
        timeout=60,
        what="the order left new accepted",
    )
    assert o["client_order_id"] == "left-new-1"
    after = wait_for(
        lambda: (
            (a := httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"])
            and Decimal(a["held_for_orders"]) == Decimal("7.00")
            and a
        ),
        what="its hold",
    )
    assert Decimal(after["buying_power"]) == Decimal(acct["buying_power"]) - Decimal("7.00")
    with psycopg.connect(dsn, autocommit=True) as c:
        actions = [
            r[0]
            for r in c.execute(
                "SELECT action FROM orders.audit_log WHERE order_id = %s ORDER BY id", (oid,)
            )
        ]
    assert actions == ["submit", "accept"]
    # one accepted event on the bus (JetStream keeps what the relay published)
    assert wait_for(lambda: _accepted_events(system, o["account_id"], oid) == 1 or None) is True


def _accepted_events(system: RunningSystem, account_id: str, order_id: str) -> int:
    import asyncio
    import re

    import nats

    from raxx.mbt.v1 import events_pb2

    url = re.findall(r"nats\s+(nats://\S+)", system.log.read_text())[-1]

    async def run() -> int:
        nc = await nats.connect(url)
        try:
            sub = await nc.jetstream().subscribe(
                f"mbt.*.{account_id}", stream="MBT_TRADES", ordered_consumer=True
            )
            n = 0
            while True:
                try:
                    msg = await sub.next_msg(timeout=1)
                except nats.errors.TimeoutError:
                    return n
                ev = events_pb2.OrderEvent.FromString(msg.data)
                n += ev.order.id == order_id and ev.event == "accepted"
        finally:
            await nc.close()

    return asyncio.run(run())


def test_orders_rides_out_an_accounts_restart_between_its_orders(system: RunningSystem) -> None:
    """Orders sends its holds on one stream to accounts; accounts dying while that stream is
    idle must cost the next order nothing but a new stream (it once stopped orders: writing to
    the ended stream raised an error the hold stage did not expect)."""
    url = system.url
    token, _ = signup_http(url, "accounts-restart@example.com")
    h = {"authorization": f"Bearer {token}"}
    r = httpx.post(f"{url}/api/mbt/orders", headers=h, json=RESTING_BUY)
    assert r.status_code == 200 and r.json()["data"]["status"] == "accepted", r.text
    orders_pid = pid_listening_on(system.grpc_ports["orders"])
    kill_service(system, "accounts")  # restarted by the launcher; orders' stream has ended
    for _ in range(3):
        r = httpx.post(f"{url}/api/mbt/orders", headers=h, json=RESTING_BUY, timeout=30)
        assert r.status_code == 200 and r.json()["data"]["status"] == "accepted", r.text
    assert pid_listening_on(system.grpc_ports["orders"]) == orders_pid  # never restarted


def test_a_replacement_left_half_done_by_a_crash_is_finished_on_restart(
    system: RunningSystem,
) -> None:
    """A replacement is committed, then the old order is marked `replaced` in a second
    transaction; a crash in between (made here: the new order's row written as the first
    transaction writes it, and orders killed) must not leave both working. On the restart
    the old order is replaced and off the book, and the new one trades."""
    import uuid

    import psycopg

    from tests.e2e.test_privacy import pg_url

    url = system.url
    token, _ = signup_http(url, "crash-replace@example.com")
    h = {"authorization": f"Bearer {token}"}
    r = httpx.post(f"{url}/api/mbt/orders", headers=h, json=RESTING_BUY)
    assert r.status_code == 200, r.text
    old = r.json()["data"]
    new_id = str(uuid.uuid4())
    with psycopg.connect(pg_url(system)) as conn:  # the replacement, committed
        conn.execute(
            "INSERT INTO orders.orders (id, user_id, account_id, client_order_id, symbol, side, "
            "qty, order_type, time_in_force, limit_price, status, hold_amount, replaces, "
            "submitted_at, accepted_at, updated_at) SELECT %s, user_id, account_id, %s, "
            "symbol, side, qty, order_type, time_in_force, limit_price + 0.01, 'accepted', "
            "hold_amount, id, now(), accepted_at, now() FROM orders.orders WHERE id = %s",
            (new_id, f"replacement-{new_id[:8]}", old["id"]),
        )
    kill_service(system, "orders")
    log = system.data_dir / "logs" / "orders.log"
    wait_for(lambda: "finished 1 replacements" in log.read_text(), timeout=60, what="restart")

    def order(oid: str) -> dict[str, object] | None:
        x = httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h)
        return x.json()["data"] if x.status_code == 200 else None

    replaced = wait_for(lambda: order(old["id"]), what="orders back")
    assert (replaced["status"], replaced["replaced_by"]) == ("replaced", new_id)
    assert wait_for(lambda: order(new_id), what="the new order")["status"] == "accepted"
    opened = httpx.get(f"{url}/api/mbt/orders", headers=h, params={"status": "open"})
    assert [o["id"] for o in opened.json()["data"]["orders"]] == [new_id]  # one, not both

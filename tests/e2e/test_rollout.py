"""Rollout from Alpaca paper (seeds §10): `mbt admin import-alpaca` pulls a populated paper
account from the sandbox broker through alpaca-py and reproduces it in MBT, and a rerun
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.helpers import RESTING_BUY, run_admin, signup_http

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    with running_system("--speed", "1", "--live-sandbox") as s:
        yield s


def sandbox(system: RunningSystem) -> str:
    return str(json.loads((system.data_dir / "endpoints.json").read_text())["alpaca_sandbox"])


def day(d: str) -> int:
    return int(datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp())


PAPER = {
    "key_id": "PKIMPORTTEST0001",
    "secret_key": "import-secret-0001",
    "cash": "75432.10",
    "positions": [
        {"symbol": "AAPL", "qty": "10", "avg_entry_price": "150.25"},
        {"symbol": "MSFT", "qty": "5", "avg_entry_price": "300.10"},
    ],
    "prices": {"AAPL": "151.00", "MSFT": "301.00"},
    "orders": [
        {
            "id": "a-1",
            "client_order_id": "c-1",
            "symbol": "AAPL",
            "qty": "10",
            "side": "buy",
            "type": "market",
            "status": "filled",
            "filled_qty": "10",
            "filled_avg_price": "150.25",
            "submitted_at": "2024-03-04T15:00:00Z",
            "filled_at": "2024-03-04T15:00:01Z",
        },
        {
            "id": "a-2",
            "client_order_id": "c-2",
            "symbol": "MSFT",
            "qty": "5",
            "side": "buy",
            "type": "limit",
            "limit_price": "300.10",
            "status": "filled",
            "filled_qty": "5",
            "filled_avg_price": "300.10",
            "submitted_at": "2024-03-05T15:00:00Z",
            "filled_at": "2024-03-05T15:30:00Z",
        },
        {
            "id": "a-3",
            "client_order_id": "c-3",
            "symbol": "TSLA",
            "qty": "1",
            "side": "buy",
            "type": "limit",
            "limit_price": "1.00",
            "status": "canceled",
            "filled_qty": "0",
            "submitted_at": "2024-03-05T16:00:00Z",
            "canceled_at": "2024-03-05T17:00:00Z",
        },
        {
            "id": "a-4",
            "client_order_id": "c-4",
            "symbol": "AAPL",
            "qty": "1",
            "side": "sell",
            "type": "limit",
            "limit_price": "999.00",
            "status": "new",
            "filled_qty": "0",
            "submitted_at": "2024-03-06T15:00:00Z",
        },
    ],
    "activities": [
        {
            "id": "20240304150001000::f1",
            "activity_type": "FILL",
            "order_id": "a-1",
            "symbol": "AAPL",
            "side": "buy",
            "qty": "10",
            "price": "150.25",
            "type": "fill",
            "transaction_time": "2024-03-04T15:00:01Z",
        },
        {
            "id": "20240305153000000::f2",
            "activity_type": "FILL",
            "order_id": "a-2",
            "symbol": "MSFT",
            "side": "buy",
            "qty": "5",
            "price": "300.10",
            "type": "fill",
            "transaction_time": "2024-03-05T15:30:00Z",
        },
        {
            "id": "20240306000000000::d1",
            "activity_type": "DIV",
            "symbol": "AAPL",
            "net_amount": "2.40",
            "qty": "10",
            "per_share_amount": "0.24",
            "date": "2024-03-06",
            "description": "Cash DIV @ 0.24",
        },
    ],
    "history": {
        "timestamp": [day("2024-03-04"), day("2024-03-05"), day("2024-03-06")],
        "equity": [100000.0, 99990.5, 100002.4],
        "profit_loss": [0, -9.5, 11.9],
        "profit_loss_pct": [0, -0.0001, 0.0001],
        "base_value": 100000,
    },
}


def import_alpaca(system: RunningSystem, tmp_path: Path, email: str) -> Any:
    secret = tmp_path / "alpaca-secret"
    secret.write_text(str(PAPER["secret_key"]) + "\n")
    p = run_admin(
        system.data_dir,
        "import-alpaca",
        email,
        "--key-id",
        str(PAPER["key_id"]),
        "--secret-file",
        str(secret),
        "--alpaca-url",
        sandbox(system),
        "--json",
    )
    assert str(PAPER["secret_key"]) not in p.stdout + p.stderr
    return json.loads(p.stdout)


def state(url: str, token: str) -> dict[str, Any]:
    h = {"authorization": f"Bearer {token}"}

    def get(path: str, **params: str) -> Any:
        r = httpx.get(f"{url}{path}", headers=h, params=params)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    return {
        "account": get("/api/mbt/account")["cash"],
        # what is owned, not its moving marks (current price, market value)
        "positions": [
            {k: p[k] for k in ("symbol", "asset_class", "qty", "avg_entry_price")}
            for p in get("/api/mbt/positions")["positions"]
        ],
        "activities": get("/api/mbt/activities")["activities"],
        "history": get("/api/mbt/account/history")["points"],
        "orders": get("/api/mbt/orders", status="all")["orders"],
        "fills": get("/api/mbt/fills")["fills"],
    }


def test_import_reproduces_the_paper_account_exactly_and_twice_changes_nothing(
    system: RunningSystem, tmp_path: Path
) -> None:
    r = httpx.post(f"{sandbox(system)}/sandbox/paper-accounts", json=PAPER)
    assert r.status_code == 200, r.text
    number = r.json()["account_number"]
    token, _ = signup_http(system.url, "migrating@example.com")

    first = import_alpaca(system, tmp_path, "migrating@example.com")
    assert first["alpaca_account_number"] == number
    assert first["steps_done"] == ["account", "positions", "activities", "history", "orders"]
    assert first["open_orders_skipped"] == 1  # the resting sell is not carried over
    s = state(system.url, token)
    assert Decimal(s["account"]) == Decimal(PAPER["cash"])  # type: ignore[arg-type]
    held = {p["symbol"]: (Decimal(p["qty"]), Decimal(p["avg_entry_price"])) for p in s["positions"]}
    assert held == {
        p["symbol"]: (Decimal(p["qty"]), Decimal(p["avg_entry_price"]))
        for p in PAPER["positions"]  # type: ignore[attr-defined]
    }
    kinds = sorted(a["activity_type"] for a in s["activities"])
    assert kinds == ["dividend", "fill", "fill"]
    div = next(a for a in s["activities"] if a["activity_type"] == "dividend")
    assert Decimal(div["amount"]) == Decimal("2.40")
    fill_amounts = sorted(
        Decimal(a["amount"]) for a in s["activities"] if a["activity_type"] == "fill"
    )
    assert fill_amounts == [Decimal("-1502.50"), Decimal("-1500.50")]  # 5 x 300.10, 10 x 150.25
    equity = [Decimal(p["equity"]) for p in s["history"]]
    assert [p["date"] for p in s["history"]] == ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert equity == [Decimal("100000.00"), Decimal("99990.50"), Decimal("100002.40")]
    closed = {o["client_order_id"]: o for o in s["orders"]}
    assert set(closed) == {"c-1", "c-2", "c-3"}
    assert closed["c-1"]["status"] == "filled" and Decimal(closed["c-1"]["filled_qty"]) == 10
    assert closed["c-3"]["status"] == "canceled"
    assert sorted(Decimal(f["price"]) for f in s["fills"]) == [Decimal("150.25"), Decimal("300.10")]

    export = httpx.get(
        f"{system.url}/api/mbt/me/export", headers={"authorization": f"Bearer {token}"}
    )
    import base64
    import io
    import zipfile

    z = zipfile.ZipFile(io.BytesIO(base64.b64decode(export.json()["data"]["archive"])))
    audit = json.loads(z.read("accounts.json"))["audit_log"]
    assert [(a["action"], a["actor"]) for a in audit] == [("import_alpaca", "op:ci")]
    assert str(PAPER["secret_key"]) not in z.read("accounts.json").decode()
    second = import_alpaca(system, tmp_path, "migrating@example.com")
    assert second["steps_done"] == [] and second["steps_already_done"] == first["steps_done"]
    assert state(system.url, token) == s  # a rerun changes nothing

    # another Alpaca account into the same MBT account is refused, naming both
    other = {**PAPER, "key_id": "PKIMPORTTEST0002"}
    httpx.post(f"{sandbox(system)}/sandbox/paper-accounts", json=other)
    secret = tmp_path / "alpaca-secret"
    p = run_admin(
        system.data_dir,
        "import-alpaca",
        "migrating@example.com",
        "--key-id",
        "PKIMPORTTEST0002",
        "--secret-file",
        str(secret),
        "--alpaca-url",
        sandbox(system),
        ok=False,
    )
    assert p.returncode != 0 and number in p.stderr


def test_an_import_that_stops_half_way_resumes_where_it_stopped(
    system: RunningSystem, tmp_path: Path
) -> None:
    """The orders step fails (Alpaca hands back an order MBT refuses); the steps before it are
    kept; once the data is right, a rerun does only what is left."""
    broken_order = {**PAPER["orders"][0], "filled_avg_price": "not-a-price"}  # type: ignore[index]
    paper = {**PAPER, "key_id": "PKRESUME0001", "orders": [broken_order]}
    httpx.post(f"{sandbox(system)}/sandbox/paper-accounts", json=paper)
    token, _ = signup_http(system.url, "resume@example.com")
    secret = tmp_path / "alpaca-secret"
    secret.write_text(str(PAPER["secret_key"]))
    args = (
        "import-alpaca",
        "resume@example.com",
        "--key-id",
        "PKRESUME0001",
        "--secret-file",
        str(secret),
        "--alpaca-url",
        sandbox(system),
    )
    failed = run_admin(system.data_dir, *args, ok=False)
    assert failed.returncode != 0 and "filled_avg_price" in failed.stderr
    half = state(system.url, token)
    assert Decimal(half["account"]) == Decimal(str(PAPER["cash"])) and half["orders"] == []

    httpx.post(
        f"{sandbox(system)}/sandbox/paper-accounts", json={**paper, "orders": PAPER["orders"]}
    )
    done = json.loads(run_admin(system.data_dir, *args, "--json").stdout)
    assert done["steps_done"] == ["orders"]
    assert done["steps_already_done"] == ["account", "positions", "activities", "history"]
    after = state(system.url, token)
    assert {o["client_order_id"] for o in after["orders"]} == {"c-1", "c-2", "c-3"}
    assert after["activities"] == half["activities"]  # nothing applied twice


def test_import_with_bad_credentials_is_refused_and_writes_nothing(
    system: RunningSystem, tmp_path: Path
) -> None:
    token, _ = signup_http(system.url, "wrong-key@example.com")
    before = state(system.url, token)
    secret = tmp_path / "bad"
    secret.write_text("not-the-secret")
    p = run_admin(
        system.data_dir,
        "import-alpaca",
        "wrong-key@example.com",
        "--key-id",
        "PKNOSUCHKEY",
        "--secret-file",
        str(secret),
        "--alpaca-url",
        sandbox(system),
        ok=False,
    )
    assert p.returncode != 0 and "Alpaca refused" in p.stderr and "not-the-secret" not in p.stderr
    assert state(system.url, token) == before


def admin(system: RunningSystem, *args: str) -> str:
    return run_admin(system.data_dir, *args, operator="sre-pat").stdout


def test_a_shadow_day_mirrors_orders_and_parity_catches_a_divergence(
    system: RunningSystem, tmp_path: Path
) -> None:
    from tests.e2e.helpers import set_tier, wait_for

    paper = {"key_id": "PKSHADOW0001", "secret_key": "shadow-secret-0001", "cash": "100000"}
    httpx.post(f"{sandbox(system)}/sandbox/paper-accounts", json=paper)
    email = "shadow@example.com"
    token, _ = signup_http(system.url, email)
    set_tier(system.data_dir, email, "pro")  # real-time quotes, as the mirror prices them
    h = {"authorization": f"Bearer {token}"}
    secret = tmp_path / "shadow-secret"
    secret.write_text(paper["secret_key"])
    admin(
        system,
        "shadow-credentials",
        "set",
        email,
        "--key-id",
        paper["key_id"],
        "--secret-file",
        str(secret),
        "--alpaca-url",
        sandbox(system),
    )
    admin(
        system,
        "flag",
        "set",
        "FLAG_MBT_PAPER_TRADING",
        "shadow",
        "--user",
        email,
        "--reason",
        "e2e: shadow day",
    )

    q = httpx.get(f"{system.url}/api/mbt/quotes/IBM", headers=h).json()["data"]
    httpx.post(f"{sandbox(system)}/sandbox/prices", json={"IBM": q["ask"]})
    buy = httpx.post(
        f"{system.url}/api/mbt/orders",
        headers=h,
        json={"symbol": "IBM", "side": "buy", "qty": "10", "order_type": "market"},
    ).json()["data"]
    rest = httpx.post(
        f"{system.url}/api/mbt/orders",
        headers=h,
        json=RESTING_BUY,
    ).json()["data"]

    def at_alpaca(oid: str) -> dict[str, Any] | None:
        orders = httpx.get(f"{sandbox(system)}/sandbox/orders").json()["orders"]
        return next((o for o in orders if o["client_order_id"] == oid), None)

    mirrored = wait_for(lambda: at_alpaca(buy["id"]), timeout=30, what="the mirrored buy")
    assert mirrored["symbol"] == "IBM" and mirrored["qty"] == "10" and mirrored["side"] == "buy"
    wait_for(lambda: (a := at_alpaca(buy["id"])) and a["status"] == "filled", timeout=30)
    wait_for(lambda: at_alpaca(rest["id"]), timeout=30, what="the mirrored limit")
    httpx.delete(f"{system.url}/api/mbt/orders/{rest['id']}", headers=h)
    wait_for(
        lambda: (a := at_alpaca(rest["id"])) and a["status"] == "canceled",
        timeout=30,
        what="the cancel mirrored",
    )
    wait_for(
        lambda: httpx.get(f"{system.url}/api/mbt/fills", headers=h).json()["data"]["fills"],
        timeout=30,
        what="MBT's own fill",
    )

    def parity_ok() -> Any:  # once MBT's ledger has applied its fill, the books agree
        r = json.loads(admin(system, "parity", "--json"))
        return r if r["users"] and r["users"][0]["ok"] else None

    report = wait_for(parity_ok, timeout=30, what="parity")
    me = [u for u in report["users"] if u["mbt_cash"] and u["alpaca_cash"]]
    assert len(me) == 1 and me[0]["ok"], report
    assert Decimal(me[0]["divergence_pct"]) < Decimal("0.1") and not me[0]["position_diffs"]
    assert me[0]["orders_compared"] >= 2 and "criterion needs 10,000" in report["criterion"]

    httpx.post(
        f"{sandbox(system)}/sandbox/adjust", json={"key_id": paper["key_id"], "cash_delta": "-500"}
    )
    report = json.loads(admin(system, "parity", "--json"))
    bad = report["users"][0]
    assert not bad["ok"] and Decimal(bad["divergence_pct"]) >= Decimal("0.5"), report
    assert report["criterion"].startswith("not met") and report["diverging"] == 1
    assert "DIVERGES" in admin(system, "parity")

    # while in shadow, the user's reads come from Alpaca paper (their source of truth)
    alp = httpx.get(
        f"{sandbox(system)}/v2/account",
        headers={"APCA-API-KEY-ID": paper["key_id"], "APCA-API-SECRET-KEY": paper["secret_key"]},
    ).json()
    acct = httpx.get(f"{system.url}/api/mbt/account", headers=h).json()["data"]
    assert acct["source"] == "alpaca_paper" and Decimal(acct["cash"]) == Decimal(alp["cash"])
    pos = httpx.get(f"{system.url}/api/mbt/positions", headers=h).json()["data"]
    assert pos["source"] == "alpaca_paper" and [p["qty"] for p in pos["positions"]] == ["10"]
    listed = httpx.get(f"{system.url}/api/mbt/orders", headers=h, params={"status": "all"})
    shown = listed.json()["data"]
    assert shown["source"] == "alpaca_paper" and buy["id"] in [o["id"] for o in shown["orders"]]

    # cutover: MBT is the source; a rollback to shadow and back loses nothing (MBT kept writing)
    admin(system, "flag", "set", "FLAG_MBT_PAPER_TRADING", "on", "--user", email, "--reason", "go")

    def ledger() -> dict[str, Any]:  # what the user owns, without the moving marks
        s = state(system.url, token)
        return {
            "cash": s["account"],
            "positions": [(p["symbol"], p["qty"], p["avg_entry_price"]) for p in s["positions"]],
            "orders": sorted((o["id"], o["status"]) for o in s["orders"]),
            "fills": sorted(f["id"] for f in s["fills"]),
            "activities": sorted(a["id"] for a in s["activities"]),
        }

    from tests.e2e.helpers import wait_for as wait

    wait(
        lambda: (
            httpx.get(f"{system.url}/api/mbt/account", headers=h).json()["data"]["source"] == "mbt"
        ),
        timeout=5,
        what="reads from MBT after cutover",
    )
    before = ledger()
    assert before["positions"] == [("IBM", "10", before["positions"][0][2])]
    assert Decimal(before["cash"]) != Decimal(alp["cash"])  # MBT's own books, not Alpaca's
    admin(
        system,
        "flag",
        "set",
        "FLAG_MBT_PAPER_TRADING",
        "shadow",
        "--user",
        email,
        "--reason",
        "e2e: rollback",
    )
    wait(
        lambda: (
            httpx.get(f"{system.url}/api/mbt/account", headers=h).json()["data"]["source"]
            == "alpaca_paper"
        ),
        timeout=5,
        what="reads from Alpaca in shadow",
    )
    admin(system, "flag", "set", "FLAG_MBT_PAPER_TRADING", "on", "--user", email, "--reason", "go")
    wait(lambda: ledger() == before, timeout=5, what="the same MBT state after the rollback")

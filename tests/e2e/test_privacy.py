"""GDPR through the running system: one export archive; erasure after the cooling-off period
removes the user from every service's tables and from the bus, keeping only hashed audit rows."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from base64 import b64decode
from datetime import UTC, datetime, timedelta

import httpx
import nats
import psycopg
import pytest

from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import signup_http, wait_for

pytestmark = pytest.mark.e2e


def nats_url(system: RunningSystem) -> str:
    m = re.findall(r"nats\s+(nats://\S+)", system.log.read_text())
    assert m
    return str(m[-1])


def pg_url(system: RunningSystem) -> str:
    return f"postgresql://postgres:@/postgres?host={system.data_dir / 'postgres'}"


def count_trade_events(url: str, account_id: str) -> int:
    async def run() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(
                "MBT_TRADES", subjects_filter=f"mbt.*.{account_id}"
            )
            return sum((info.state.subjects or {}).values())
        finally:
            await nc.close()

    return asyncio.run(run())


def test_export_then_erase_after_cooling_off(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "forget-me@example.com")
    h = {"authorization": f"Bearer {token}"}
    acct = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={"symbol": "IBM", "side": "buy", "qty": "1", "order_type": "market"},
    )
    oid = r.json()["data"]["id"]
    wait_for(
        lambda: httpx.get(f"{url}/api/mbt/positions", headers=h).json()["data"]["positions"],
        what="the fill in the ledger",
    )

    export = httpx.get(f"{url}/api/mbt/me/export", headers=h)
    assert export.status_code == 200, export.text
    data = export.json()["data"]
    with zipfile.ZipFile(io.BytesIO(b64decode(data["archive"]))) as z:
        files = {n: json.loads(z.read(n)) for n in z.namelist()}
    assert sorted(files) == ["accounts.json", "handoff.json", "orders.json", "sessions.json"]
    assert files["sessions.json"]["user"][0]["email"] == "forget-me@example.com"
    assert files["accounts.json"]["accounts"][0]["id"] == acct["id"]
    assert [o["id"] for o in files["orders.json"]["orders"]] == [oid]
    assert len(files["orders.json"]["fills"]) == 1 and files["accounts.json"]["positions"]
    assert count_trade_events(nats_url(system), acct["id"]) >= 2  # accepted + fill on the bus

    r = httpx.post(f"{url}/api/mbt/me:erase", headers=h, json={})
    status = r.json()["data"]
    assert status["state"] == "scheduled"
    erase_after = datetime.fromisoformat(status["erase_after"].replace("Z", "+00:00"))
    assert timedelta(days=29, hours=23) < erase_after - datetime.now(UTC) <= timedelta(days=30)

    def run_job(now: datetime) -> None:
        env = {**os.environ, "NATS_URL": nats_url(system)}
        p = subprocess.run(
            [sys.executable, "-m", "mbt.jobs", "gdpr-erasure", "--now", now.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr

    user_id = httpx.get(f"{url}/api/mbt/sessions/current", headers=h).json()["data"]["user_id"]
    run_job(datetime.now(UTC) + timedelta(days=1))  # still cooling off: nothing happens
    with psycopg.connect(pg_url(system)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM sessions.users WHERE id = %s", (user_id,)
        ).fetchone() == (1,)

    run_job(erase_after + timedelta(minutes=1))

    def gone() -> bool:
        with psycopg.connect(pg_url(system)) as conn:
            q = lambda sql: conn.execute(sql, (user_id,)).fetchone()[0]  # noqa: E731
            return (
                q("SELECT count(*) FROM sessions.users WHERE id = %s") == 0
                and q("SELECT count(*) FROM accounts.accounts WHERE user_id = %s") == 0
                and q("SELECT count(*) FROM orders.orders WHERE user_id = %s") == 0
                and q("SELECT count(*) FROM orders.fills WHERE user_id = %s") == 0
            )

    wait_for(gone, timeout=30, what="erasure in every service")
    with psycopg.connect(pg_url(system)) as conn:
        for table, col in (
            ("accounts.positions", "account_id"),
            ("accounts.activities", "account_id"),
            ("accounts.holds", "account_id"),
        ):
            assert conn.execute(
                f"SELECT count(*) FROM {table} WHERE {col} = %s", (acct["id"],)
            ).fetchone() == (0,)
        for schema in ("orders", "sessions"):
            assert conn.execute(
                f"SELECT count(*) FROM {schema}.audit_log WHERE actor = %s", (user_id,)
            ).fetchone() == (0,)
            hashed = conn.execute(
                f"SELECT count(*) FROM {schema}.audit_log WHERE actor LIKE 'erased:%%'"
            ).fetchone()
            assert hashed is not None and hashed[0] > 0
        assert conn.execute(
            "SELECT count(*) FROM orders.outbox WHERE subject LIKE %s", (f"%{acct['id']}",)
        ).fetchone() == (0,)
    assert count_trade_events(nats_url(system), acct["id"]) == 0
    # the erased user's sessions were revoked too
    wait_for(
        lambda: httpx.get(f"{url}/api/mbt/account", headers=h).status_code == 401,
        timeout=10,
        what="session revocation",
    )

"""Accounts at scale: EOD mark-to-market over 100,000 accounts, and fills applied from NATS.

Starts a real embedded PostgreSQL and nats-server. (1) Loads 100,000 accounts with 10 positions
each (COPY), then times the mark-to-market job that snapshots all of them. (2) Publishes fill
events to JetStream as the orders outbox does and times the accounts consumer applying them
exactly once (inbox, cash, position, hold, activity, all committed before the ack).

    python bench/eod.py [--accounts N] [--fills N]

Prints one line per phase and, last, one JSON object:
{"seconds_100k_accounts": ..., "fills_per_s": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from mbt.infra import start_nats, start_postgres  # noqa: E402
from raxx.mbt.v1 import events_pb2, orders_service_pb2  # noqa: E402
from services.accounts import jobs  # noqa: E402
from services.accounts.adapters.tables import MIGRATIONS  # noqa: E402
from services.accounts.consumer import TradeEventConsumer  # noqa: E402
from services.platform.bus import TRADES_STREAM, Bus  # noqa: E402
from services.platform.db import make_engine, migrate  # noqa: E402
from services.platform.settings import sqlalchemy_url  # noqa: E402
from services.platform.wire import ts_to_wire  # noqa: E402

SYMBOLS = [f"S{i:03d}" for i in range(50)]


def load_accounts(pg_url: str, n: int) -> list[str]:
    users = [str(uuid.uuid4()) for _ in range(n)]
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY accounts.accounts (id, user_id, account_type, status, profile, tier, "
            "fill_preference, cash) FROM STDIN"
        ) as cp:
            for i, u in enumerate(users):
                cp.write_row(
                    (f"a-{i}", u, "cash", "active", "diversifier", "free", "aggressive", "100000")
                )
        with cur.copy(
            "COPY accounts.positions (account_id, symbol, asset_class, qty, avg_entry_price, "
            "realized_pl) FROM STDIN"
        ) as cp:
            for i in range(n):
                for k in range(10):
                    cp.write_row(
                        (
                            f"a-{i}",
                            SYMBOLS[(i + k * 7) % len(SYMBOLS)],
                            "equity",
                            str(1 + (i + k) % 50),
                            "100.00",
                            "0",
                        )
                    )
        conn.commit()
    return users


async def bench_eod(url: str, n: int) -> float:
    engine = make_engine(url)
    marks = {s: Decimal("101.25") + i for i, s in enumerate(SYMBOLS)}
    t0 = time.perf_counter()
    made = await jobs.mark_to_market(engine, date(2013, 10, 7), marks)
    elapsed = time.perf_counter() - t0
    assert made == n, (made, n)
    await engine.dispose()
    return elapsed


async def bench_fills(url: str, nats_url: str, users: list[str], n: int) -> float:
    engine = make_engine(url)
    bus = await Bus.connect(nats_url, name="bench-eod")
    await bus.ensure_stream(TRADES_STREAM)
    for i in range(n):
        user = users[i % len(users)]
        fill = orders_service_pb2.Fill(
            id=f"x-{i}:1",
            order_id=f"o-{i}",
            account_id=f"a-{i % len(users)}",
            symbol="S001",
            side="buy",
            qty="1",
            price="10.00",
            filled_at=ts_to_wire(datetime(2013, 10, 7, 15, tzinfo=UTC)),
            explanation="bench",
        )
        ev = events_pb2.FillEvent(
            fill=fill, order=orders_service_pb2.Order(id=f"o-{i}", status="filled"), user_id=user
        )
        await bus.js.publish(
            f"mbt.fills.a-{i % len(users)}",
            ev.SerializeToString(),
            headers={"Nats-Msg-Id": f"x-{i}:1"},
        )
    consumer = TradeEventConsumer(engine)
    t0 = time.perf_counter()
    task = asyncio.create_task(
        bus.consume_batches(
            "mbt.>",
            "bench-ledger",
            consumer.handle_batch,
            stream=TRADES_STREAM.name or "MBT_TRADES",
        )
    )
    while consumer.applied < n:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - t0
    task.cancel()
    await bus.close()
    await engine.dispose()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--fills", type=int, default=5_000)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mbt-bench-eod-"))
    tmp.chmod(0o755)
    pg, nats_srv = start_postgres(tmp), start_nats(tmp)
    try:
        url = sqlalchemy_url(pg.url)

        async def setup() -> None:
            e = make_engine(url)
            await migrate(e, MIGRATIONS)
            await e.dispose()

        asyncio.run(setup())
        t0 = time.perf_counter()
        users = load_accounts(pg.url, ns.accounts)
        print(
            json.dumps(
                {
                    "phase": "load",
                    "accounts": ns.accounts,
                    "positions": ns.accounts * 10,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            ),
            flush=True,
        )
        eod_s = asyncio.run(bench_eod(url, ns.accounts))
        print(json.dumps({"phase": "mark-to-market", "seconds": round(eod_s, 2)}), flush=True)
        fills_s = asyncio.run(bench_fills(url, nats_srv.url, users, ns.fills))
        rate = ns.fills / fills_s
        print(
            json.dumps({"phase": "fills", "fills": ns.fills, "seconds": round(fills_s, 2)}),
            flush=True,
        )
        scale = 100_000 / ns.accounts
        print(
            json.dumps(
                {
                    "seconds_100k_accounts": round(eod_s * scale, 2),
                    "fills_per_s": round(rate, 1),
                    "accounts": ns.accounts,
                    "positions_per_account": 10,
                }
            )
        )
    finally:
        nats_srv.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

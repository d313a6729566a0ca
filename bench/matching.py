"""Throughput of the pure matching engine on a real tick day.

Replays IBM 2013-10-07 (every NBBO change, ~46k quotes, pre-market to after-hours) through
`MatchingEngine.on_quote` with 1,000 and with 100,000 resting GTC orders spread over 100
symbols (half on IBM). Almost all rest far from the market, so most quotes reach nothing; a
few dozen sit near it and fill during the day. The CSV is parsed and the orders are accepted
and rested before the clock starts: only the quote loop is timed. A last run rests 100,000
orders inside the day's range, so that every one fills (the fill path's cost).

    python bench/matching.py [--repeat N]

Prints one line per run and, last, one JSON object:
{"ticks_per_s_1k": ..., "ticks_per_s_100k": ..., ...}
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.conventions.calendar import MarketCalendar  # noqa: E402
from services.orders.domain import (  # noqa: E402
    MatchingEngine,
    Order,
    OrderFilled,
    OrderType,
    Quote,
    Side,
    TimeInForce,
)

DATA = ROOT / "services" / "marketdata" / "data" / "quotes" / "IBM" / "2013-10-07" / "IBM.csv.gz"
# Orders are accepted on the previous trading day and rested by one in-session quote, so they
# are resting (not awaiting a first quote) when the replay starts.
ACCEPTED = datetime.fromisoformat("2013-10-04T18:59:00Z")
PRIME_TS = datetime.fromisoformat("2013-10-04T19:00:00Z")
NEAR_MARKET = 40  # orders that do fill during the day


def load_ticks() -> list[Quote]:
    with gzip.open(DATA, "rt") as fh:
        lines = fh.read().splitlines()
    out = []
    for line in lines[1:]:
        t, bp, bs, ap, asz = line.split(",")
        out.append(
            Quote("IBM", datetime.fromisoformat(t), Decimal(bp), Decimal(ap), int(bs), int(asz))
        )
    return out


def make_orders(n: int) -> list[Order]:
    """``n`` GTC orders: limits and stops far from IBM's 181-184 range, and a few near it."""
    orders: list[Order] = []
    kinds = (
        (Side.BUY, OrderType.LIMIT),
        (Side.SELL, OrderType.LIMIT),
        (Side.BUY, OrderType.STOP),
        (Side.SELL, OrderType.STOP),
    )
    for i in range(n):
        symbol = "IBM" if i % 2 == 0 else f"S{i % 99:02d}"
        side, kind = kinds[i % 4]
        below = Decimal(100) + Decimal(i % 7000) / 100  # 100.00 .. 169.99
        above = Decimal(195) + Decimal(i % 6500) / 100  # 195.00 .. 259.99
        far = below if (side is Side.BUY) == (kind is OrderType.LIMIT) else above
        orders.append(
            Order(
                id=f"b{i}",
                account_id=f"acct{i % 1000}",
                symbol=symbol,
                side=side,
                qty=Decimal(100),
                order_type=kind,
                time_in_force=TimeInForce.GTC,
                accepted_at=ACCEPTED,
                limit_price=far if kind is OrderType.LIMIT else None,
                stop_price=far if kind is OrderType.STOP else None,
            )
        )
    for j in range(NEAR_MARKET):
        # Buy limits at 181.91..182.30 (the ask dips to 181.90 at the open) and sell limits
        # at 183.00..183.19 (the bid reaches 183.30 mid-morning).
        buy = j % 2 == 0
        price = (
            Decimal("181.91") + Decimal(j) / 100 if buy else Decimal("183.00") + Decimal(j) / 200
        )
        orders.append(
            Order(
                id=f"near{j}",
                account_id="near",
                symbol="IBM",
                side=Side.BUY if buy else Side.SELL,
                qty=Decimal(100),
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                accepted_at=ACCEPTED,
                limit_price=price,
            )
        )
    return orders


def make_filling_orders(n: int) -> list[Order]:
    """``n`` IBM limits inside the day's range: every one of them fills during the replay."""
    orders = []
    for i in range(n):
        buy = i % 2 == 0
        step = Decimal(i % 60) / 100
        orders.append(
            Order(
                id=f"f{i}",
                account_id=f"acct{i % 1000}",
                symbol="IBM",
                side=Side.BUY if buy else Side.SELL,
                qty=Decimal(100),
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                accepted_at=ACCEPTED,
                # buys 181.95..182.54 (the ask opens at 181.90); sells 182.70..183.29 (the
                # bid reaches 183.30)
                limit_price=Decimal("181.95") + step if buy else Decimal("182.70") + step,
            )
        )
    return orders


def prepared_engine(
    calendar: MarketCalendar, n: int, filling: bool = False
) -> tuple[MatchingEngine, float]:
    engine = MatchingEngine(calendar)
    orders = make_filling_orders(n) if filling else make_orders(n)
    t0 = time.perf_counter()
    for o in orders:
        engine.accept(o)
    # Between the near-market buys (<= 182.29) and sells (>= 183.00): everything rests.
    engine.on_quote(Quote("IBM", PRIME_TS, Decimal("182.60"), Decimal("182.65"), 100, 100))
    return engine, len(orders) / (time.perf_counter() - t0)


def run(
    calendar: MarketCalendar, ticks: list[Quote], n: int, filling: bool = False
) -> tuple[float, int, float]:
    engine, accept_rate = prepared_engine(calendar, n, filling)
    on_quote = engine.on_quote
    fills = 0
    t0 = time.perf_counter()
    for q in ticks:
        events = on_quote(q)
        if events:
            fills += sum(isinstance(e, OrderFilled) for e in events)
    elapsed = time.perf_counter() - t0
    return len(ticks) / elapsed, fills, accept_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    calendar = MarketCalendar()
    ticks = load_ticks()
    print(f"setup: calendar + {len(ticks)} ticks parsed in {time.perf_counter() - t0:.2f} s")
    result: dict[str, object] = {"ticks": len(ticks)}
    for n, label in ((1_000, "1k"), (100_000, "100k")):
        rates, accepts = [], []
        for _ in range(args.repeat):
            rate, fills, accept_rate = run(calendar, ticks, n)
            rates.append(rate)
            accepts.append(accept_rate)
            print(f"{label:>4} resting: {rate:,.0f} ticks/s, {fills} fills")
        result[f"ticks_per_s_{label}"] = round(statistics.median(rates))
        result[f"accept_and_rest_per_s_{label}"] = round(statistics.median(accepts))
    # Worst case for the quote loop: 100k resting orders that all fill during the day.
    rate, fills, _ = run(calendar, ticks, 100_000, filling=True)
    print(f"100k resting, all filling: {rate:,.0f} ticks/s, {fills} fills")
    result["ticks_per_s_100k_all_filling"] = round(rate)
    result["python"] = platform.python_version()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

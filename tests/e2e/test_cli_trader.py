"""The trader's follow-up commands through the running system: status, replace, cancel-all,
activities, history, pnl, chain — as a user types them (global options first, too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import cli_json, run_cli, wait_for

pytestmark = pytest.mark.e2e


def test_status_replace_cancel_all_and_the_views(system: RunningSystem, tmp_path: Path) -> None:
    cfg, url = tmp_path / "cfg", system.url
    run_cli(cfg, url, "--url", url, "signup", "--email", "trader-cli@example.com")
    status = cli_json(cfg, url, "status")
    assert status["session"]["email"] == "trader-cli@example.com"
    assert status["feed"]["provider"] and "timestamp" in status["clock"]
    human = run_cli(cfg, url, "status").stdout
    assert "gateway" in human and "trader-cli@example.com" in human

    acct = run_cli(cfg, url, "account").stdout
    assert "$100,000.00" in acct  # the README's $100,000, as money is shown

    resting = cli_json(cfg, url, "buy", "IBM", "2", "--limit", "1.00", "--tif", "gtc")
    table = run_cli(cfg, url, "orders").stdout
    assert "resting: limit 1.00, ask " in table and " ET" in table  # why it is waiting
    quote = run_cli(cfg, url, "quote", "IBM").stdout
    assert " ET" in quote and "15 min delayed · Free" in quote
    new = cli_json(cfg, url, "replace", resting["id"][:8], "--limit", "1.25")
    assert new["replaces"] == resting["id"] and new["limit_price"] == "1.25"
    cli_json(cfg, url, "buy", "IBM", "1", "--limit", "1.10", "--tif", "gtc")
    done = cli_json(cfg, url, "cancel-all")
    assert len(done["orders"]) == 2 and all(o["status"] == "canceled" for o in done["orders"])
    with pytest.raises(AssertionError):  # nothing to change: a clear error, not a traceback
        run_cli(cfg, url, "replace", new["id"])

    # a fill shows up in activities (the ledger applies it a moment later)
    cli_json(cfg, url, "buy", "IBM", "1")
    acts = wait_for(
        lambda: (a := cli_json(cfg, url, "activities", "--type", "fill"))["activities"] and a,
        timeout=60,
        what="a fill activity",
    )
    assert acts["activities"][0]["activity_type"] == "fill"
    table = run_cli(cfg, url, "activities").stdout
    assert "fill" in table and "IBM" in table
    fills = run_cli(cfg, url, "fills").stdout
    assert "market time" in fills and " ET" in fills and "T1" not in fills  # not raw UTC
    filled = cli_json(cfg, url, "fills")["fills"][0]["order_id"]
    detail = run_cli(cfg, url, "order", filled[:8]).stdout
    assert "(wall clock)" in detail and "(market time" in detail  # both clocks, each named
    assert "points" in cli_json(cfg, url, "history")
    intraday = cli_json(cfg, url, "history", "--timeframe", "15Min")["points"]
    assert intraday and all(p["timestamp"] for p in intraday)
    assert " ET" in run_cli(cfg, url, "history", "--timeframe", "15Min").stdout
    import json

    pnl = run_cli(cfg, url, "pnl", "--json", ok=False)
    answer = json.loads(pnl.stdout)
    # before the first close there is no end-of-day snapshot: a clear JSON error, else figures
    assert {"total", "realized", "income"} <= set(answer) or answer["error"]["message"], answer
    assert run_cli(cfg, url, "orders", "--status", "all").stdout.count("canceled") >= 2


def test_replay_any_recorded_day_and_symbol(system: RunningSystem, tmp_path: Path) -> None:
    """AAPL is recorded (2014-06-05) but not in the default feed: a backtest still runs, and a
    market buy fills at the first valid ask after its acceptance."""
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from services.marketdata.domain.recorded import RecordedArchive

    cfg, url = tmp_path / "cfg", system.url
    run_cli(cfg, url, "signup", "--email", "replayer@example.com")
    at = "2014-06-05T14:00:00Z"
    d = cli_json(cfg, url, "replay", "2014-06-05", "buy", "AAPL", "3", "--at", at)
    fills = [e for e in d["events"] if e["event"] == "fill"]
    start = datetime(2014, 6, 5, 14, 0, tzinfo=UTC)
    first = next(
        q
        for q in RecordedArchive().load("AAPL", date(2014, 6, 5))
        if q.ts > start and q.ask > 0 and 0 <= q.bid <= q.ask
    )
    assert len(fills) == 1 and Decimal(fills[0]["fill"]["price"]) == first.ask
    table = run_cli(cfg, url, "replay", "2014-06-05", "buy", "AAPL", "3", "--at", at).stdout
    assert "fill" in table and " ET" in table
    bad = run_cli(cfg, url, "replay", "2014-06-07", "buy", "AAPL", "3", ok=False)  # a Saturday
    assert bad.returncode != 0 and "not a trading day" in bad.stderr

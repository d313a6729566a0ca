"""Options through the running system on the recorded GOOG chain (2015-12-23): a single
contract and a vertical spread, with expected prices worked out from the recorded quotes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from services.conventions.occ import parse_occ
from services.marketdata.domain.options import option_chain, option_expiries
from services.marketdata.domain.recorded import RecordedArchive
from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.helpers import cli_json, run_cli, signup_http, ts, wait_for

pytestmark = pytest.mark.e2e
DAY = date(2015, 12, 23)


@pytest.fixture(scope="module")
def options_system() -> Iterator[RunningSystem]:
    with running_system("--replay-days", DAY.isoformat(), "--speed", "20") as s:
        yield s


def liquid_calls(contracts: list[dict[str, str]]) -> list[str]:
    """Calls ordered by how many quotes they have in the session (most first)."""
    archive = RecordedArchive()
    calls = [c["symbol"] for c in contracts if c["type"] == "call"]
    return sorted(calls, key=lambda s: -len(archive.load(s, DAY)))


def first_valid_after(symbol: str, accepted_at: str) -> tuple[str, Decimal, Decimal]:
    t0 = ts(accepted_at)
    for q in RecordedArchive().load(symbol, DAY):
        if q.ts > t0 and q.ask > 0 and 0 <= q.bid <= q.ask:
            return q.ts.isoformat(), q.bid, q.ask
    raise AssertionError(f"no quote for {symbol} after {accepted_at}")


def test_single_contract_and_a_vertical_spread(options_system: RunningSystem) -> None:
    url = options_system.url
    token, _ = signup_http(url, "options@example.com")
    h = {"authorization": f"Bearer {token}"}
    chain = httpx.get(
        f"{url}/api/mbt/options/GOOG/chain",
        headers=h,
        params={"as_of": DAY.isoformat(), "expiry": "2015-12-24"},
    )
    assert chain.status_code == 200, chain.text
    calls = liquid_calls(chain.json()["data"]["contracts"])
    single, long_leg, short_leg = calls[0], *sorted(calls[1:3])  # long the lower strike

    # one contract at market: the ask of the contract's first valid quote after acceptance
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={"symbol": single, "side": "buy", "qty": "1", "order_type": "market"},
    )
    assert r.status_code == 200, r.text
    oid = r.json()["data"]["id"]
    o = wait_for(
        lambda: (
            (x := httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h).json()["data"])["status"]
            == "filled"
            and x
        ),
        timeout=60,
        what="option fill",
    )
    _, _, ask = first_valid_after(single, o["accepted_at"])
    assert Decimal(o["filled_avg_price"]) == ask

    # a bull call spread at market
    r = httpx.post(
        f"{url}/api/mbt/orders",
        headers=h,
        json={
            "qty": "1",
            "order_type": "market",
            "legs": [
                {"symbol": long_leg, "side": "buy", "ratio": 1},
                {"symbol": short_leg, "side": "sell", "ratio": 1},
            ],
        },
    )
    assert r.status_code == 200, r.text
    sid = r.json()["data"]["id"]
    assert r.json()["data"]["symbol"] == "GOOG"
    spread = wait_for(
        lambda: (
            (x := httpx.get(f"{url}/api/mbt/orders/{sid}", headers=h).json()["data"])["status"]
            == "filled"
            and x
        ),
        timeout=90,
        what="spread fill",
    )
    fills = [
        f
        for f in httpx.get(f"{url}/api/mbt/fills", headers=h).json()["data"]["fills"]
        if f["order_id"] == sid
    ]
    legs = {f["symbol"]: f for f in fills}
    assert set(legs) == {long_leg, short_leg}
    # the leg prices sum exactly to the net, and each sits inside its own quote
    net = Decimal(legs[long_leg]["price"]) - Decimal(legs[short_leg]["price"])
    assert Decimal(spread["filled_avg_price"]) == net
    for f in fills:
        assert Decimal(f["quote"]["bid"]) <= Decimal(f["price"]) <= Decimal(f["quote"]["ask"])
        assert ts(f["quote"]["timestamp"]) > ts(spread["accepted_at"])

    # the ledger: contracts × 100, cash = 100,000 − 100 × (single ask + spread net)
    def caught_up() -> list[dict[str, str]] | None:
        pos = httpx.get(f"{url}/api/mbt/positions", headers=h).json()["data"]["positions"]
        return pos if len(pos) == 3 else None

    pos = {p["symbol"]: p for p in wait_for(caught_up, timeout=30, what="positions")}
    assert (pos[single]["qty"], pos[long_leg]["qty"], pos[short_leg]["qty"]) == ("1", "1", "-1")
    assert all(p["asset_class"] == "option" for p in pos.values())
    cash = Decimal(httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]["cash"])
    assert cash == Decimal("100000") - 100 * ask - 100 * net


def test_alpaca_py_option_contracts_and_chain_snapshot(
    options_system: RunningSystem, tmp_path: Path
) -> None:
    """alpaca-py's get_option_contracts / get_option_contract and the data client's
    get_option_chain, against the contracts recorded for the replayed day."""
    from alpaca.data.historical.option import OptionHistoricalDataClient
    from alpaca.data.requests import OptionChainRequest
    from alpaca.trading.client import TradingClient
    from alpaca.trading.models import OptionContract
    from alpaca.trading.requests import GetOptionContractsRequest

    url = options_system.url
    cfg = tmp_path / "cfg"
    run_cli(cfg, url, "signup", "--email", "alpaca-options@example.com")
    key = cli_json(cfg, url, "keys", "create", "--name", "options-bot")
    archive = RecordedArchive()
    expiries = option_expiries(archive, "GOOG", DAY)
    expiry = expiries[0]
    expected = [c.symbol for c in option_chain(archive, "GOOG", expiry, DAY)]
    assert expected, "the shipped data records a GOOG chain on the replay day"

    tc = TradingClient(key["key_id"], key["secret"], url_override=url)
    got = tc.get_option_contracts(
        GetOptionContractsRequest(underlying_symbols=["GOOG"], expiration_date=expiry, limit=10)
    )
    assert [c.symbol for c in got.option_contracts] == expected[:10]
    pages = [c.symbol for c in got.option_contracts]
    while got.next_page_token:
        got = tc.get_option_contracts(
            GetOptionContractsRequest(
                underlying_symbols=["GOOG"],
                expiration_date=expiry,
                limit=10,
                page_token=got.next_page_token,
            )
        )
        pages += [c.symbol for c in got.option_contracts]
    assert pages == expected
    one = tc.get_option_contract(expected[0])
    assert isinstance(one, OptionContract)
    occ = parse_occ(expected[0])
    assert one.expiration_date == expiry and one.underlying_symbol == "GOOG"
    assert Decimal(str(one.strike_price)) == occ.strike and one.size == "100"
    assert one.type.value == ("call" if occ.is_call else "put")
    calls = tc.get_option_contracts(
        GetOptionContractsRequest(
            underlying_symbols=["GOOG"], expiration_date=expiry, type="call", limit=1000
        )
    )
    assert [c.symbol for c in calls.option_contracts] == [
        s for s in expected if parse_occ(s).is_call
    ]

    # the chain snapshot: each contract's quote as of the market clock, never a later one
    dc = OptionHistoricalDataClient(key["key_id"], key["secret"], url_override=url)
    snap = dc.get_option_chain(OptionChainRequest(underlying_symbol="GOOG", expiration_date=expiry))
    assert sorted(snap) == sorted(expected)
    clock = tc.get_clock().timestamp
    quoted = 0
    for symbol, s in snap.items():
        if s.latest_quote is None:
            continue
        quoted += 1
        assert s.latest_quote.timestamp <= clock
        recorded = {(q.ts, q.bid, q.ask) for q in archive.load(symbol, DAY)}
        seen = s.latest_quote
        assert (seen.timestamp, Decimal(str(seen.bid_price)), Decimal(str(seen.ask_price))) in {
            (t, b, a) for t, b, a in recorded
        }
    assert quoted > 0

    # the CLI shows a spread's legs in `mbt orders`
    calls = [s for s in expected if parse_occ(s).is_call][:2]
    run_cli(
        cfg,
        url,
        "spread",
        "--leg",
        f"buy:{calls[0]}",
        "--leg",
        f"sell:{calls[1]}",
        "--limit",
        "0.01",
        "--tif",
        "gtc",
    )
    table = run_cli(cfg, url, "orders").stdout
    assert f"buy 1x {calls[0]} / sell 1x {calls[1]}" in table

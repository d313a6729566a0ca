"""Reads during shadow mode (seeds §10): while a user's FLAG_MBT_PAPER_TRADING is ``shadow``,
Alpaca paper is their source of truth, so their account and positions are answered from their
Alpaca paper account (alpaca-py) in MBT's shapes, marked ``source: alpaca_paper``. MBT keeps
its own books meanwhile (orders are mirrored both ways); the parity report compares the two,
and cutover (``on``) makes MBT's the answer again, losing nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from raxx.mbt.v1 import accounts_service_pb2 as pb
from services.conventions.decimals import money
from services.platform.shadow_credentials import AlpacaPaperCredentials, read_paper

__all__ = ["SOURCE", "alpaca_account", "alpaca_positions"]

SOURCE = "alpaca_paper"


def _m(v: Any) -> str:
    return money(Decimal(str(v or "0")))


async def alpaca_account(creds: AlpacaPaperCredentials, mbt: pb.Account) -> pb.Account:
    """MBT's account message with Alpaca's figures (identity and settings stay MBT's)."""
    a = dict(await read_paper(creds, lambda c: c.get_account()))
    out = pb.Account()
    out.CopyFrom(mbt)
    out.cash = _m(a.get("cash"))
    out.buying_power = _m(a.get("buying_power"))
    out.equity = _m(a.get("equity") or a.get("portfolio_value"))
    out.last_equity = _m(a.get("last_equity") or a.get("equity") or a.get("portfolio_value"))
    out.long_market_value = _m(a.get("long_market_value"))
    out.short_market_value = _m(a.get("short_market_value"))
    out.held_for_orders = money(Decimal(0))
    out.source = SOURCE
    return out


async def alpaca_positions(creds: AlpacaPaperCredentials) -> list[pb.Position]:
    return [
        pb.Position(
            symbol=str(p["symbol"]),
            asset_class="option" if p.get("asset_class") == "us_option" else "equity",
            qty=str(p.get("qty", "0")),
            qty_available=str(p.get("qty_available") or p.get("qty", "0")),
            avg_entry_price=str(p.get("avg_entry_price", "")),
            cost_basis=_m(p.get("cost_basis")),
            current_price=str(p.get("current_price", "")),
            market_value=_m(p.get("market_value")),
            unrealized_pl=_m(p.get("unrealized_pl")),
            realized_pl=money(Decimal(0)),
        )
        for p in await read_paper(creds, lambda c: c.get_all_positions())
    ]

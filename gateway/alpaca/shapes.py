"""MBT's protobuf messages in Alpaca's Trading API v2 JSON shapes (research/alpaca.md §1, §5).

One mapping per resource. Decimals stay strings (alpaca-py's models refuse JSON numbers in
money fields); times are RFC 3339; enums use Alpaca's exact values (alpaca-py's enums are
strict). Fields MBT has no notion of carry Alpaca's neutral value (null, "0", false).
"""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from raxx.mbt.v1 import accounts_service_pb2 as apb
from raxx.mbt.v1 import marketdata_service_pb2 as mpb
from raxx.mbt.v1 import orders_service_pb2 as opb
from services.conventions.occ import is_occ_symbol

__all__ = [
    "account_configuration",
    "account_json",
    "asset_id",
    "asset_json",
    "calendar_json",
    "clock_json",
    "order_json",
    "portfolio_history_json",
    "position_json",
    "trade_update_json",
]

_ASSET_NS = uuid.UUID("5b1f3c2e-6d0a-4b8e-9c7f-0a1b2c3d4e5f")
_EXECUTION_NS = uuid.UUID("8d3e1f40-2b6c-4a1e-9d05-7c6b5a493827")


def asset_id(symbol: str) -> str:
    """A stable asset id per symbol (Alpaca's ids are UUIDs; MBT has no asset master)."""
    return str(uuid.uuid5(_ASSET_NS, symbol))


def _ts(t: Timestamp, present: bool = True) -> str | None:
    if not present or (t.seconds == 0 and t.nanos == 0):
        return None
    return t.ToJsonString()


def _dec(v: str) -> str | None:
    return v if v else None


def asset_class(symbol: str) -> str:
    return "us_option" if is_occ_symbol(symbol) else "us_equity"


# MBT's order status -> Alpaca's: an accepted order is on MBT's book, working, which Alpaca
# calls `new` (its trade_updates event for it is `new` too); MBT's `new` is an order recorded
# whose acceptance (the buying-power hold) is not decided yet, Alpaca's `pending_new`
ALPACA_STATUS = {"accepted": "new", "new": "pending_new"}


def order_json(o: opb.Order) -> dict[str, Any]:
    """An Order as Alpaca returns it (a spread is order_class "mleg" with its legs)."""
    status = ALPACA_STATUS.get(o.status, o.status)
    created = _ts(o.submitted_at) or _ts(o.updated_at)
    updated = _ts(o.updated_at) or created
    ended = _ts(o.canceled_at)
    legs = None
    if o.legs:
        legs = [
            {
                "id": str(uuid.uuid5(uuid.UUID(o.id), f"leg{i}")),
                "client_order_id": f"{o.client_order_id}-{i}",
                "created_at": created,
                "updated_at": updated,
                "submitted_at": created,
                "filled_at": _ts(o.filled_at),
                "expired_at": None,
                "canceled_at": ended if o.status == "canceled" else None,
                "failed_at": None,
                "replaced_at": None,
                "replaced_by": None,
                "replaces": None,
                "asset_id": asset_id(leg.symbol),
                "symbol": leg.symbol,
                "asset_class": "us_option",
                "notional": None,
                "qty": None,
                "filled_qty": "0" if o.status != "filled" else o.filled_qty,
                "filled_avg_price": None,
                "order_class": "mleg",
                "order_type": "",
                "type": "",
                "side": leg.side,
                "position_intent": None,
                "time_in_force": o.time_in_force,
                "limit_price": None,
                "stop_price": None,
                "status": status,
                "extended_hours": False,
                "legs": None,
                "ratio_qty": str(leg.ratio),
                "trail_percent": None,
                "trail_price": None,
                "hwm": None,
            }
            for i, leg in enumerate(o.legs, start=1)
        ]
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": created,
        "updated_at": updated,
        "submitted_at": created,
        "filled_at": _ts(o.filled_at),
        "expired_at": ended if o.status == "expired" else None,
        "canceled_at": ended if o.status == "canceled" else None,
        "failed_at": updated if o.status == "rejected" else None,
        "replaced_at": ended if o.status == "replaced" else None,
        "replaced_by": o.replaced_by or None,
        "replaces": o.replaces or None,
        "asset_id": asset_id(o.symbol) if not o.legs else None,
        "symbol": o.symbol if not o.legs else "",
        "asset_class": asset_class(o.symbol) if not o.legs else "",
        "notional": None,
        "qty": o.qty,
        "filled_qty": o.filled_qty or "0",
        "filled_avg_price": _dec(o.filled_avg_price),
        "order_class": "mleg" if o.legs else "simple",
        "order_type": o.order_type,
        "type": o.order_type,
        "side": o.side if not o.legs else "",
        "position_intent": None,
        "time_in_force": o.time_in_force,
        "limit_price": _dec(o.limit_price),
        "stop_price": _dec(o.stop_price),
        "status": status,
        "extended_hours": False,
        "legs": legs,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "expires_at": None,
    }


def account_json(a: apb.Account) -> dict[str, Any]:
    margin = a.account_type == "margin"
    return {
        "id": a.id,
        "account_number": "PA" + a.id.replace("-", "")[:10].upper(),
        "status": "ACTIVE" if a.status in ("", "active") else a.status.upper(),
        "crypto_status": None,
        "options_approved_level": 3,
        "options_trading_level": 3,
        "currency": a.currency or "USD",
        "buying_power": a.buying_power,
        "regt_buying_power": a.buying_power,
        "daytrading_buying_power": "0",
        "effective_buying_power": a.buying_power,
        "non_marginable_buying_power": a.buying_power if not margin else a.cash,
        "options_buying_power": a.buying_power,
        "bod_dtbp": "0",
        "cash": a.cash,
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "portfolio_value": a.equity,
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "created_at": _ts(a.created_at),
        "trade_suspended_by_user": a.suspend_trade,
        "multiplier": "2" if margin else "1",
        "shorting_enabled": margin and not a.no_shorting,
        "equity": a.equity,
        "last_equity": a.last_equity or a.equity,
        "long_market_value": a.long_market_value,
        "short_market_value": a.short_market_value,
        "position_market_value": a.long_market_value,
        "initial_margin": a.initial_margin or "0",
        "maintenance_margin": a.maintenance_margin or "0",
        "last_maintenance_margin": a.maintenance_margin or "0",
        "sma": "0",
        "daytrade_count": 0,
        "balance_asof": None,
        "crypto_tier": None,
        "admin_configurations": {},
        "user_configurations": None,
    }


def account_configuration(a: apb.Account) -> dict[str, Any]:
    """The account's configuration in Alpaca's terms: no_shorting and suspend_trade are the
    owner's to change; the rest state MBT's fixed rules."""
    margin = a.account_type == "margin"
    return {
        "dtbp_check": "entry",
        "trade_confirm_email": "none",
        "suspend_trade": a.suspend_trade,
        "no_shorting": a.no_shorting or not margin,
        "fractional_trading": False,
        "max_margin_multiplier": "2" if margin else "1",
        "max_options_trading_level": 3,
        "pdt_check": "entry",
        "ptp_no_exception_entry": False,
    }


# what PATCH /v2/account/configurations may change on MBT
CHANGEABLE_CONFIGURATION = ("no_shorting", "suspend_trade")


def position_json(p: apb.Position) -> dict[str, Any]:
    from decimal import Decimal

    qty = Decimal(p.qty or "0")
    cost = Decimal(p.cost_basis or "0")
    upl = Decimal(p.unrealized_pl or "0")
    plpc = (upl / abs(cost)) if cost else Decimal(0)
    # today: since the previous close (its mark) if held then, else since it was bought
    current = Decimal(p.current_price) if p.current_price else None
    last = Decimal(p.lastday_price) if p.lastday_price else current
    intraday = Decimal(p.unrealized_intraday_pl) if p.unrealized_intraday_pl else upl
    intraday_pc = plpc
    if p.lastday_price:  # held at the close: relative to its value then
        base = abs(qty * Decimal(p.lastday_price) * (100 if is_occ_symbol(p.symbol) else 1))
        intraday_pc = intraday / base if base else Decimal(0)
    change = (current - last) / last if current is not None and last else Decimal(0)
    return {
        "asset_id": asset_id(p.symbol),
        "symbol": p.symbol,
        "exchange": "" if is_occ_symbol(p.symbol) else "NYSE",
        "asset_class": asset_class(p.symbol),
        "asset_marginable": not is_occ_symbol(p.symbol),
        "qty": p.qty,
        "qty_available": p.qty_available or p.qty,  # an older accounts: the whole position
        "avg_entry_price": p.avg_entry_price,
        "side": "short" if qty < 0 else "long",
        "market_value": p.market_value,
        "cost_basis": p.cost_basis,
        "unrealized_pl": p.unrealized_pl,
        "unrealized_plpc": f"{plpc:f}",
        "unrealized_intraday_pl": p.unrealized_intraday_pl or p.unrealized_pl,
        "unrealized_intraday_plpc": f"{intraday_pc:f}",
        "current_price": p.current_price,
        "lastday_price": p.lastday_price or p.current_price,
        "change_today": f"{change:f}",
    }


def clock_json(c: mpb.Clock) -> dict[str, Any]:
    return {
        "timestamp": _ts(c.timestamp),
        "is_open": c.is_open,
        "next_open": _ts(c.next_open),
        "next_close": _ts(c.next_close),
    }


def calendar_json(s: mpb.TradingSession, settles: str = "") -> dict[str, Any]:
    """One trading day; `settles`: the next trading day's date (T+1)."""
    from zoneinfo import ZoneInfo

    et = ZoneInfo("America/New_York")
    o = s.open.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(et)
    c = s.close.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(et)
    return {
        "date": s.date,
        "open": o.strftime("%H:%M"),
        "close": c.strftime("%H:%M"),
        "session_open": "0400",
        "session_close": "2000",
        "settlement_date": settles or s.date,
    }


def asset_json(symbol: str, tradable: bool = True) -> dict[str, Any]:
    option = is_occ_symbol(symbol)
    return {
        "id": asset_id(symbol),
        "class": asset_class(symbol),
        "exchange": "" if option else "NYSE",
        "symbol": symbol,
        "name": symbol,
        "status": "active",
        "tradable": tradable,
        "marginable": not option,
        "shortable": not option,
        "easy_to_borrow": not option,
        "fractionable": False,
        "min_order_size": "1",
        "min_trade_increment": "1",
        "price_increment": "0.01",
        "maintenance_margin_requirement": 25.0 if not option else 100.0,
        "attributes": ["options_enabled"] if not option else [],
    }


def trade_update_json(u: opb.TradeUpdate) -> dict[str, Any]:
    """One trade_updates message's `data` (Alpaca's TradeUpdate)."""
    data: dict[str, Any] = {
        "event": u.event,
        "order": order_json(u.order),
        "timestamp": _ts(u.timestamp),
        # MBT's addition (Alpaca clients ignore unknown fields): when orders recorded it, wall
        # clock, so a client can see its delivery latency
        "recorded_at": _ts(u.recorded_at),
    }
    if u.event in ("fill", "partial_fill"):
        data.update(
            # Alpaca's execution ids are UUIDs; ours ("<order>:<n>") map to one, stably
            execution_id=str(uuid.uuid5(_EXECUTION_NS, u.execution_id)),
            price=u.price,
            qty=u.qty,
            position_qty=u.position_qty,
        )
    return data


def portfolio_history_json(h: apb.PortfolioHistory, timeframe: str = "1D") -> dict[str, Any]:
    """Alpaca's PortfolioHistory from MBT's points: end-of-day (16:00 ET closes) or intraday
    (each point's own instant), as epoch seconds."""
    from datetime import datetime
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    et = ZoneInfo("America/New_York")
    stamps, equity, pl, plpc = [], [], [], []
    base = Decimal(h.points[0].equity) - Decimal(h.points[0].profit_loss or "0") if h.points else 0
    for p in h.points:
        if p.HasField("timestamp"):
            stamps.append(int(p.timestamp.seconds))
        else:
            close = datetime.fromisoformat(p.date).replace(hour=16, tzinfo=et)
            stamps.append(int(close.timestamp()))
        e = Decimal(p.equity)
        equity.append(float(e))
        change = e - Decimal(base)
        pl.append(float(change))
        plpc.append(float(change / Decimal(base)) if base else None)
    return {
        "timestamp": stamps,
        "equity": equity,
        "profit_loss": pl,
        "profit_loss_pct": plpc,
        "base_value": float(base),
        "timeframe": timeframe,
        "cashflow": {},
    }

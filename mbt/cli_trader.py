"""The commands a trader reaches for after the first order: history, pnl, activities, chain,
replace, cancel-all and status."""

from __future__ import annotations

import argparse
from typing import Any

from mbt.cli import (
    _api,
    _order_id,
    _print,
    _short,
    _table,
    _url,
    et,
    money,
    order_body,
    price,
)
from mbt.client import Api, CliError


def cmd_history(ns: argparse.Namespace) -> None:
    params = {
        k: v
        for k, v in (("start_date", ns.start), ("end_date", ns.end), ("timeframe", ns.timeframe))
        if v
    }
    d, _ = _api(ns).call("GET", "/api/mbt/account/history", params=params)
    intraday = bool(ns.timeframe and ns.timeframe != "1D")
    rows = [
        [
            et(p["timestamp"], with_date=True) if intraday else p["date"],
            money(p["equity"]),
            money(p["cash"]),
            money(p["profit_loss"], signed=True),
        ]
        for p in d["points"]
    ]
    table = _table(rows, ["at" if intraday else "date", "equity", "cash", "P&L"])
    if not rows:
        table = (
            "(no points yet: the session has not begun)"
            if intraday
            else "(no end-of-day points yet: the first is taken at the market's close)"
        )
    _print(ns, d, table)


def cmd_pnl(ns: argparse.Namespace) -> None:
    api = _api(ns)
    start, end = ns.start, ns.end
    if not (start and end):  # default: the market clock's trading day
        clock, _ = api.call("GET", "/api/mbt/clock")
        today = str(clock["timestamp"])[:10]
        start, end = start or end or today, end or today
    p, _ = api.call("GET", "/api/mbt/pnl", params={"from_date": start, "to_date": end})
    _print(
        ns,
        p,
        "\n".join(
            [
                f"{p['from_date']} to {p['to_date']}",
                f"equity       {money(p['starting_equity'])} -> {money(p['ending_equity'])}",
                f"total        {money(p['total'], signed=True)}",
                f"realized     {money(p['realized'], signed=True)}",
                f"unrealized   {money(p['unrealized_change'], signed=True)} (change)",
                f"income       {money(p['income'], signed=True)} (dividends, interest)",
            ]
        ),
    )


def cmd_activities(ns: argparse.Namespace) -> None:
    params = {"activity_type": ns.type} if ns.type else {}
    d, _ = _api(ns).call("GET", "/api/mbt/activities", params=params)
    rows = [
        [
            a["occurred_at"],
            a["activity_type"],
            a["symbol"] or "-",
            a["qty"] or "-",
            price(a["price"]),
            money(a["amount"], signed=True),
            _short(a["description"]),
        ]
        for a in d["activities"]
    ]
    _print(ns, d, _table(rows, ["when", "type", "symbol", "qty", "price", "cash", "what"]))


def cmd_chain(ns: argparse.Namespace) -> None:
    params = {k: v for k, v in (("expiry", ns.expiry), ("as_of", ns.as_of)) if v}
    c, _ = _api(ns).call("GET", f"/api/mbt/options/{ns.underlying}/chain", params=params)
    rows = []
    for k in c["contracts"]:
        q = k.get("quote") or {}
        rows.append(
            [k["symbol"], k["type"], price(k["strike"]), price(q.get("bid")), price(q.get("ask"))]
        )
    head = f"{c['underlying']} expiring {c['expiry']} (expiries: {', '.join(c['expiries'])})"
    _print(ns, c, head + "\n" + _table(rows, ["contract", "type", "strike", "bid", "ask"]))


def cmd_replace(ns: argparse.Namespace) -> None:
    api = _api(ns)
    body = {
        k: v for k, v in (("qty", ns.qty), ("limit_price", ns.limit), ("stop_price", ns.stop)) if v
    }
    if not body:
        raise CliError("say what changes: --qty, --limit or --stop")
    o, _ = api.call("PATCH", f"/api/mbt/orders/{_order_id(api, ns.order_id)}", json_body=body)
    _print(ns, o, f"order {o['id']} {o['status']} replaces {o['replaces']}")


def cmd_cancel_all(ns: argparse.Namespace) -> None:
    d, _ = _api(ns).call("DELETE", "/api/mbt/orders")
    orders = d.get("orders") or []
    _print(ns, d, f"{len(orders)} open order(s) canceled")


def cmd_replay(ns: argparse.Namespace) -> None:
    """Backtest one order over a recorded session (any shipped day and symbol): what the engine
    would have done, fill by fill, from the recorded quotes. Nothing touches your account."""
    api = _api(ns)
    cal, _ = api.call("GET", "/api/mbt/calendar", params={"start_date": ns.day, "end_date": ns.day})
    sessions = cal.get("sessions") or []
    if not sessions:
        raise CliError(f"{ns.day} is not a trading day")
    order = order_body(ns, ns.side)
    start = ns.at or sessions[0]["open"]
    body = {"orders": [order], "start_time": start, "end_time": sessions[0]["close"]}
    d, _ = api.call("POST", "/api/mbt/replays", json_body=body)
    rows = []
    for e in d["events"]:
        f = e.get("fill") or {}
        rows.append(
            [
                et(e["timestamp"], with_date=True),
                e["event"],
                f.get("qty") or "-",
                price(f.get("price")),
                _short(f.get("explanation") or e.get("reason") or ""),
            ]
        )
    head = f"{ns.side} {ns.qty} {ns.symbol} from {et(start, with_date=True)}"
    _print(ns, d, head + "\n" + _table(rows, ["when", "event", "qty", "price", "why"]))


def cmd_status(ns: argparse.Namespace) -> None:
    """Is everything up: the gateway, each service (through a call it answers), the feed, the
    clock, and who you are signed in as."""
    url = _url(ns)
    public = Api(url)
    out: dict[str, Any] = {"gateway": url}
    try:
        health, _ = public.call("GET", "/healthz")
        out["gateway_status"] = health.get("status", "ok")
        clock, _ = public.call("GET", "/api/mbt/clock")
        out["clock"] = clock
        feed, _ = public.call("GET", "/api/mbt/marketdata/status")
        out["feed"] = feed
    except CliError as exc:
        raise CliError(f"MBT at {url} is not answering: {exc}") from None
    try:
        me, _ = _api(ns).call("GET", "/api/mbt/sessions/current")
        out["session"] = {k: me.get(k) for k in ("email", "tier", "expires_at")}
    except CliError as exc:
        out["session"] = {"error": str(exc)}
    lines = [
        f"gateway   {url}  {out['gateway_status']}",
        f"market    {out['clock']['timestamp']}  "
        f"{'open' if out['clock']['is_open'] else 'closed'} (source {out['clock']['source']})",
        f"feed      {out['feed']['provider']}, {out['feed']['quotes_published']} quotes, "
        + ("STALE: " + out["feed"]["stale_reason"] if out["feed"]["stale"] else "fresh"),
    ]
    s = out["session"]
    lines.append(
        f"you       {s['email']} ({s['tier']})" if "email" in s else f"you       {s['error']}"
    )
    _print(ns, out, "\n".join(lines))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    h = sub.add_parser("history", parents=[common], help="equity per trading day")
    h.add_argument("--start", help="YYYY-MM-DD")
    h.add_argument("--end", help="YYYY-MM-DD")
    h.add_argument(
        "--timeframe", help="1D (default) or intraday 1Min, 5Min, 15Min, 1H (one session)"
    )
    h.set_defaults(func=cmd_history)
    p = sub.add_parser("pnl", parents=[common], help="realized and unrealized P&L over days")
    p.add_argument("--start", help="YYYY-MM-DD (from; default: the market's current day)")
    p.add_argument("--end", help="YYYY-MM-DD (to; default: the market's current day)")
    p.set_defaults(func=cmd_pnl)
    a = sub.add_parser("activities", parents=[common], help="fills, dividends, expirations")
    a.add_argument("--type", help="fill, div, split, int, expired, exercised, assigned")
    a.set_defaults(func=cmd_activities)
    c = sub.add_parser("chain", parents=[common], help="an option chain with its quotes")
    c.add_argument("underlying")
    c.add_argument("--expiry", help="YYYY-MM-DD (default: the nearest)")
    c.add_argument("--as-of", help="a recorded day to read, YYYY-MM-DD")
    c.set_defaults(func=cmd_chain)
    r = sub.add_parser(
        "replace",
        parents=[common],
        help="change an open order (a new one replaces it; refused, it stays)",
    )
    r.add_argument("order_id")
    r.add_argument("--qty")
    r.add_argument("--limit")
    r.add_argument("--stop")
    r.set_defaults(func=cmd_replace)
    sub.add_parser("cancel-all", parents=[common], help="cancel every open order").set_defaults(
        func=cmd_cancel_all
    )
    sub.add_parser(
        "status", parents=[common], help="is MBT up: gateway, services, feed, clock, you"
    ).set_defaults(func=cmd_status)
    rp = sub.add_parser(
        "replay", parents=[common], help="backtest an order over a recorded day (any symbol)"
    )
    rp.add_argument("day", help="a recorded trading day, YYYY-MM-DD")
    rp.add_argument("side", choices=["buy", "sell"])
    rp.add_argument("symbol")
    rp.add_argument("qty")
    rp.add_argument("--limit")
    rp.add_argument("--stop")
    rp.add_argument("--tif", default="day", choices=["day", "gtc", "ioc", "fok"])
    rp.add_argument("--at", help="accept it at this time (RFC 3339; default: the open)")
    rp.set_defaults(func=cmd_replay)

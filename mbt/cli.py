"""`mbt`: start the system, sign in with a passkey, and trade from the terminal.

Every command takes --json for scripts; errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mbt.client import Api, CliError, SavedSession, origin_for, passkey_path, session_tokens

DEFAULT_URL_ENV = "MBT_URL"


def _url(ns: argparse.Namespace) -> str:
    import os

    from mbt.client import DEFAULT_URL

    return str(ns.url or os.environ.get(DEFAULT_URL_ENV) or DEFAULT_URL)


def _api(ns: argparse.Namespace) -> Api:
    s = SavedSession.load()
    if s is None:
        raise CliError("not signed in: run `mbt signup --email you@example.com` or `mbt login`")
    return Api(ns.url or s.url, s.token, session=s)


def money(v: Any, signed: bool = False) -> str:
    """$1,234.50 (two decimals, thousands separators); signed: +$12.00 / -$3.10 for P&L."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return str(v)
    text = f"${abs(d):,.2f}"
    if d < 0:
        return f"-{text}"
    return f"+{text}" if signed and d > 0 else text


def price(v: Any) -> str:
    """A price at its tick: 185.10, not 185.1; sub-penny (options under $1) keeps 4 places."""
    from decimal import Decimal, InvalidOperation

    if v in (None, ""):
        return "-"
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return str(v)
    places = 2 if d == d.quantize(Decimal("0.01")) else 4
    return f"{d:,.{places}f}"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print(ns: argparse.Namespace, data: Any, human: str) -> None:
    if ns.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(human)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(r: list[str]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=False))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *[line(r) for r in rows]])


# ---- sessions -------------------------------------------------------------------------------
def cmd_signup(ns: argparse.Namespace) -> None:
    from mbt.passkey import SoftPasskey

    url = _url(ns)
    api = Api(url)
    body = {
        "email": ns.email,
        "profile": ns.profile,
        "account_type": "margin" if ns.margin else "cash",
    }
    data, _ = api.call("POST", "/api/mbt/sessions/registrations", json_body=body)
    key = SoftPasskey.generate()
    key.email = ns.email.strip().lower()
    credential = key.create(data["options_json"], origin_for(url))
    done, resp = api.call(
        "POST",
        f"/api/mbt/sessions/registrations/{data['ceremony_id']}:finish",
        json_body={"credential_json": credential},
    )
    key.save(passkey_path(key.email))
    access, refresh = session_tokens(resp)
    SavedSession(url=url, email=key.email, token=access, refresh_token=refresh).save()
    _print(ns, done, f"signed up {done['email']}; passkey saved to {passkey_path(key.email)}")


def cmd_login(ns: argparse.Namespace) -> None:
    from mbt.passkey import SoftPasskey

    url = _url(ns)
    email = ns.email
    if not email:
        saved = SavedSession.load()
        keys = sorted((passkey_path("x").parent).glob("*.json"))
        if saved is not None:
            email = saved.email
        elif len(keys) == 1:
            email = SoftPasskey.load(keys[0]).email
        else:
            raise CliError("which account? pass --email")
    path = passkey_path(email)
    if not path.exists():
        raise CliError(f"no passkey for {email} on this machine; run `mbt signup --email {email}`")
    key = SoftPasskey.load(path)
    api = Api(url)
    data, _ = api.call("POST", "/api/mbt/sessions/logins", json_body={"email": email})
    assertion = key.get(data["options_json"], origin_for(url))
    key.save(path)  # the sign count moved
    done, resp = api.call(
        "POST",
        f"/api/mbt/sessions/logins/{data['ceremony_id']}:finish",
        json_body={"credential_json": assertion},
    )
    access, refresh = session_tokens(resp)
    SavedSession(url=url, email=email, token=access, refresh_token=refresh).save()
    _print(ns, done, f"logged in as {done['email']}")


def cmd_logout(ns: argparse.Namespace) -> None:
    api = _api(ns)
    data, _ = api.call("DELETE", "/api/mbt/sessions/current")
    SavedSession.clear()
    _print(ns, data, "logged out; the session is revoked")


# ---- account and market -----------------------------------------------------------------------
def cmd_account(ns: argparse.Namespace) -> None:
    a, _ = _api(ns).call("GET", "/api/mbt/account")
    _print(
        ns,
        a,
        "\n".join(
            [
                f"account      {a['id']} ({a['account_type']}, {a['status']})",
                f"profile      {a['profile']}   tier {a['tier']}",
                f"cash         {money(a['cash'])}",
                f"buying power {money(a['buying_power'])}   "
                f"(held for orders {money(a['held_for_orders'])})",
                f"equity       {money(a['equity'])}   "
                f"(long market value {money(a['long_market_value'])})",
            ]
            + (
                ["source       Alpaca paper (shadow mode: MBT keeps its own books too)"]
                if a.get("source") == "alpaca_paper"
                else []
            )
        ),
    )


def et(ts: str, with_date: bool = False) -> str:
    """An RFC 3339 time as New York market time, with the zone: 10:14:03 ET."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(
            ZoneInfo("America/New_York")
        )
    except (ValueError, AttributeError):
        return str(ts)
    return t.strftime("%Y-%m-%d %H:%M:%S ET" if with_date else "%H:%M:%S ET")


def _delay_note(api: Api) -> str:
    """Free users see quotes 15 minutes late: say so beside them."""
    try:
        me, _ = api.call("GET", "/api/mbt/sessions/current")
    except CliError:
        return ""
    return "   (15 min delayed · Free)" if me.get("tier", "free") == "free" else ""


def cmd_quote(ns: argparse.Namespace) -> None:
    api = _api(ns)
    q, _ = api.call("GET", f"/api/mbt/quotes/{ns.symbol}")
    _print(
        ns,
        q,
        f"{q['symbol']}  bid {price(q['bid'])} x {q['bid_size']}   "
        f"ask {price(q['ask'])} x {q['ask_size']}   "
        f"at {et(q['timestamp'], with_date=True)}" + ("" if ns.json else _delay_note(api)),
    )


def cmd_clock(ns: argparse.Namespace) -> None:
    c, _ = Api(_url(ns)).call("GET", "/api/mbt/clock")
    _print(
        ns,
        c,
        f"{c['timestamp']}  market {'open' if c['is_open'] else 'closed'}  "
        f"(next close {c['next_close']}, source {c['source']})",
    )


def _order_line(o: dict[str, Any]) -> list[str]:
    shown = (
        price(o["limit_price"] or o["stop_price"])
        if (o["limit_price"] or o["stop_price"])
        else "mkt"
    )
    return [
        o["id"][:8],
        et(o.get("accepted_at") or o.get("submitted_at") or ""),
        o["side"],
        o["qty"],
        o["symbol"],
        o["order_type"],
        shown,
        o["time_in_force"],
        o["status"],
        o["filled_qty"],
        price(o["filled_avg_price"]),
        o["status_reason"] or o["reject_reason"],
    ]


ORDER_HEADERS = [
    "id",
    "accepted (market)",
    "side",
    "qty",
    "symbol",
    "type",
    "price",
    "tif",
    "status",
    "filled",
    "avg",
    "note",
]


def order_body(ns: argparse.Namespace, side: str) -> dict[str, str]:
    """An order from the command line: market, or limit / stop / stop_limit by the prices given."""
    body: dict[str, str] = {
        "symbol": ns.symbol,
        "side": side,
        "qty": ns.qty,
        "time_in_force": ns.tif,
    }
    if ns.limit and ns.stop:
        body |= {"order_type": "stop_limit", "limit_price": ns.limit, "stop_price": ns.stop}
    elif ns.limit:
        body |= {"order_type": "limit", "limit_price": ns.limit}
    elif ns.stop:
        body |= {"order_type": "stop", "stop_price": ns.stop}
    else:
        body["order_type"] = "market"
    return body


def _submit(ns: argparse.Namespace, side: str) -> None:
    body = order_body(ns, side)
    if ns.client_order_id:
        body["client_order_id"] = ns.client_order_id
    o, _ = _api(ns).call("POST", "/api/mbt/orders", json_body=body)
    _print(
        ns,
        o,
        f"order {o['id']} {o['status']}: {side} {o['qty']} {o['symbol']} {o['order_type']}"
        + (f" {price(o['limit_price'])}" if o["limit_price"] else ""),
    )


def cmd_spread(ns: argparse.Namespace) -> None:
    legs = []
    for raw in ns.leg:
        side, _, rest = raw.partition(":")
        symbol, _, ratio = rest.partition("x")
        if side not in ("buy", "sell") or not symbol:
            raise CliError(
                f"--leg {raw!r}: use side:SYMBOL or side:SYMBOLxRATIO "
                "(e.g. buy:GOOG151224C00600000)"
            )
        legs.append({"symbol": symbol, "side": side, "ratio": int(ratio or 1)})
    body: dict[str, Any] = {
        "qty": ns.qty,
        "legs": legs,
        "time_in_force": ns.tif,
        "order_type": "limit" if ns.limit else "market",
    }
    if ns.limit:
        body["limit_price"] = ns.limit
    if ns.preference:
        body["fill_preference"] = ns.preference
    o, _ = _api(ns).call("POST", "/api/mbt/orders", json_body=body)
    _print(
        ns,
        o,
        f"spread {o['id']} {o['status']}: {o['qty']} × "
        + " / ".join(f"{x['side']} {x['symbol']}" for x in o["legs"]),
    )


def cmd_buy(ns: argparse.Namespace) -> None:
    _submit(ns, "buy")


def cmd_sell(ns: argparse.Namespace) -> None:
    _submit(ns, "sell")


def _waiting(api: Api, o: dict[str, Any], quotes: dict[str, Any]) -> str:
    """Why an open order has not filled, from its type and the current quote."""
    if o["status"] not in ("accepted", "partially_filled", "new") or o["legs"]:
        return ""
    if o["symbol"] not in quotes:
        try:
            quotes[o["symbol"]], _ = api.call("GET", f"/api/mbt/quotes/{o['symbol']}")
        except CliError:
            quotes[o["symbol"]] = None
    q = quotes[o["symbol"]]
    if q is None:
        return "waiting for a quote"
    when = et(q["timestamp"])
    touch = f"ask {price(q['ask'])}" if o["side"] == "buy" else f"bid {price(q['bid'])}"
    if o["order_type"] == "market":
        return f"waiting for the next quote after acceptance ({touch} at {when})"
    if o["order_type"] == "limit":
        return f"resting: limit {price(o['limit_price'])}, {touch} at {when}"
    return f"waiting for the stop {price(o['stop_price'])}: {touch} at {when}"


def cmd_orders(ns: argparse.Namespace) -> None:
    api = _api(ns)
    d, _ = api.call("GET", "/api/mbt/orders", params={"status": ns.status})
    quotes: dict[str, Any] = {}
    rows = []
    for o in d["orders"]:
        line = _order_line(o)
        if o["legs"]:  # a spread shows its legs
            legs = " / ".join(f"{x['side']} {x['ratio']}x {x['symbol']}" for x in o["legs"])
            line[-1] = f"{legs}; {line[-1]}" if line[-1] else legs
        elif not line[-1] and not ns.json:
            line[-1] = _waiting(api, o, quotes)
        rows.append(line)
    _print(ns, d, _table(rows, ORDER_HEADERS))


def _order_id(api: Api, given: str) -> str:
    """A full order id, or the unique order whose id starts with `given` (as `mbt orders` shows)."""
    if len(given) >= 36:
        return given
    d, _ = api.call("GET", "/api/mbt/orders", params={"status": "all", "page_size": "500"})
    found = [o["id"] for o in d["orders"] if o["id"].startswith(given)]
    if len(found) != 1:
        raise CliError(f"{len(found)} of your orders start with {given!r}; give more of the id")
    return str(found[0])


def _order_times(o: dict[str, Any]) -> str:
    """An order's clocks, each said for what it is: MBT received it at a wall-clock time, and
    accepted and filled it at market times (the replayed day's, in replay mode)."""
    lines = []
    if o.get("submitted_at"):
        lines.append(f"submitted  {et(o['submitted_at'], with_date=True)}  (wall clock)")
    if o.get("accepted_at"):
        lines.append(
            f"accepted   {et(o['accepted_at'], with_date=True)}  "
            "(market time: it fills only on quotes after this)"
        )
    if o.get("filled_at"):
        lines.append(f"filled     {et(o['filled_at'], with_date=True)}  (market time)")
    return "\n".join(lines)


def cmd_order(ns: argparse.Namespace) -> None:
    api = _api(ns)
    o, _ = api.call("GET", f"/api/mbt/orders/{_order_id(api, ns.order_id)}")
    times = _order_times(o)
    _print(ns, o, _table([_order_line(o)], ORDER_HEADERS) + (f"\n\n{times}" if times else ""))


def cmd_cancel(ns: argparse.Namespace) -> None:
    api = _api(ns)
    o, _ = api.call("DELETE", f"/api/mbt/orders/{_order_id(api, ns.order_id)}")
    _print(ns, o, f"order {o['id']} {o['status']}")


def cmd_positions(ns: argparse.Namespace) -> None:
    d, _ = _api(ns).call("GET", "/api/mbt/positions")
    rows = [
        [
            p["symbol"],
            p["qty"],
            price(p["avg_entry_price"]),
            price(p["current_price"]),
            money(p["market_value"]),
            money(p["unrealized_pl"], signed=True),
            money(p["realized_pl"], signed=True),
        ]
        for p in d["positions"]
    ]
    _print(
        ns,
        d,
        _table(
            rows, ["symbol", "qty", "avg entry", "price", "market value", "unrealized", "realized"]
        ),
    )


def cmd_fills(ns: argparse.Namespace) -> None:
    d, _ = _api(ns).call("GET", "/api/mbt/fills")
    rows = [
        [
            et(f["filled_at"], with_date=True),
            f["side"],
            f["qty"],
            f["symbol"],
            price(f["price"]),
            f"{price(f['quote']['bid'])} / {price(f['quote']['ask'])}",
            _short(f["explanation"]),
        ]
        for f in d["fills"]
    ]
    _print(
        ns, d, _table(rows, ["market time", "side", "qty", "symbol", "price", "bid / ask", "why"])
    )


def cmd_up(ns: argparse.Namespace) -> None:
    import platformdirs

    from mbt.launcher import UpOptions, run_up
    from services.platform.settings import DEFAULT_PORTS

    data_dir = Path(ns.data_dir or platformdirs.user_data_dir("mbt"))
    ports = (
        {name: ns.grpc_port_base + i for i, name in enumerate(DEFAULT_PORTS)}
        if ns.grpc_port_base
        else dict(DEFAULT_PORTS)
    )
    speed = float("inf") if ns.speed == "max" else float(ns.speed)
    code = run_up(
        UpOptions(
            data_dir=data_dir,
            gateway_port=ns.port,
            grpc_ports=ports,
            replay_speed=0 if speed == float("inf") else speed,
            replay_days=ns.replay_days,
            orders_instances=max(1, ns.orders_instances),
            live_sandbox=ns.live_sandbox,
        )
    )
    raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mbt", description="MBT, the Raxx paper-trading engine")
    p.add_argument("--version", action="version", version=f"mbt {_version()}")
    # --json and --url work before the command (`mbt --url URL signup`) and after it; the
    # command's copy defaults to SUPPRESS so it never overwrites the one given first
    p.add_argument("--json", action="store_true", default=False, help="print JSON for scripts")
    p.add_argument(
        "--url",
        default=None,
        help=f"gateway URL (default ${DEFAULT_URL_ENV} or http://127.0.0.1:8080)",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"gateway URL (default ${DEFAULT_URL_ENV} or http://127.0.0.1:8080)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole system (Ctrl-C stops it)")
    up.add_argument(
        "--data-dir", help="where PostgreSQL, NATS and logs live (default: user data dir)"
    )
    up.add_argument("--port", type=int, default=8080, help="HTTP gateway port (default 8080)")
    up.add_argument(
        "--grpc-port-base", type=int, default=0, help="first of 5 gRPC ports (default 50051)"
    )
    up.add_argument("--speed", default="1", help="replay speed: 1 = real time, 10, or max")
    up.add_argument(
        "--replay-days", default="", help="recorded days to loop, e.g. 2013-10-07,2013-10-08"
    )
    up.add_argument(
        "--orders-instances",
        type=int,
        default=1,
        help="orders processes, each owning a share of the accounts' partitions (default 1)",
    )
    up.add_argument(
        "--live-sandbox",
        action="store_true",
        help="also run a local broker speaking Alpaca's OAuth and Trading API, to try live "
        "handoff with no Alpaca account",
    )
    up.set_defaults(func=cmd_up)

    s = sub.add_parser("signup", parents=[common], help="register a passkey and open a session")
    s.add_argument("--email", required=True)
    s.add_argument(
        "--profile", default="diversifier", choices=["trial", "income_builder", "diversifier"]
    )
    s.add_argument(
        "--margin",
        action="store_true",
        help="a margin account (Reg-T 50%% initial, 25%% maintenance; shorting)",
    )
    s.set_defaults(func=cmd_signup)
    s = sub.add_parser("login", parents=[common], help="log in with your saved passkey")
    s.add_argument("--email")
    s.set_defaults(func=cmd_login)
    sub.add_parser("logout", parents=[common], help="revoke this session").set_defaults(
        func=cmd_logout
    )
    sub.add_parser("account", parents=[common], help="cash, buying power, equity").set_defaults(
        func=cmd_account
    )
    sub.add_parser("clock", parents=[common], help="the market clock").set_defaults(func=cmd_clock)
    s = sub.add_parser("quote", parents=[common], help="the current NBBO of a symbol")
    s.add_argument("symbol")
    s.set_defaults(func=cmd_quote)
    for side, fn in (("buy", cmd_buy), ("sell", cmd_sell)):
        s = sub.add_parser(
            side, parents=[common], help=f"{side} shares (market unless --limit/--stop)"
        )
        s.add_argument("symbol")
        s.add_argument("qty")
        s.add_argument("--limit", help="limit price")
        s.add_argument("--stop", help="stop price (with --limit: stop-limit)")
        s.add_argument("--tif", default="day", choices=["day", "gtc", "ioc", "fok"])
        s.add_argument("--client-order-id")
        s.set_defaults(func=fn)
    s = sub.add_parser("spread", parents=[common], help="a multi-leg option order (2-4 legs)")
    s.add_argument(
        "--leg",
        action="append",
        required=True,
        help="side:OCC_SYMBOL[xRATIO], e.g. buy:GOOG151224C00600000 (repeat)",
    )
    s.add_argument("--qty", default="1", help="number of spreads")
    s.add_argument("--limit", help="net price per spread: debit positive, credit negative")
    s.add_argument("--preference", choices=["conservative", "mid", "aggressive"])
    s.add_argument("--tif", default="day", choices=["day", "gtc", "ioc", "fok"])
    s.set_defaults(func=cmd_spread)
    s = sub.add_parser("orders", parents=[common], help="your orders")
    s.add_argument("--status", default="all", help="open, closed, all or a status name")
    s.set_defaults(func=cmd_orders)
    s = sub.add_parser("order", parents=[common], help="one order")
    s.add_argument("order_id")
    s.set_defaults(func=cmd_order)
    s = sub.add_parser("cancel", parents=[common], help="cancel an open order")
    s.add_argument("order_id")
    s.set_defaults(func=cmd_cancel)
    sub.add_parser("positions", parents=[common], help="open positions").set_defaults(
        func=cmd_positions
    )
    sub.add_parser(
        "fills", parents=[common], help="fills, with the bid/ask each used"
    ).set_defaults(func=cmd_fills)
    from mbt import cli_admin, cli_handoff, cli_keys, cli_trader

    cli_keys.register(sub, common)
    cli_handoff.register(sub, common)
    cli_admin.register(sub, common)
    cli_trader.register(sub, common)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mbt")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    try:
        ns.func(ns)
    except BrokenPipeError:  # `mbt orders | head`: the reader left; no traceback
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None
    except CliError as exc:
        if getattr(ns, "json", False):  # under --json, errors are JSON too
            print(json.dumps({"error": {"message": str(exc), "exit_code": exc.exit_code}}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # one clear line, never a traceback, for the user
        from mbt.passkey import SoftPasskeyError

        if isinstance(exc, SoftPasskeyError):
            print(f"error: passkey: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        raise


if __name__ == "__main__":
    main()

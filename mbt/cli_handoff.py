"""`mbt handoff` and `mbt live`: graduate to a live Alpaca account and send signed live orders.

Every live order is shown first exactly as it will be sent; the CLI checks that the digest it
is asked to sign is the digest of what it showed, and signs it with the saved passkey (a
step-up bound to that content).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from mbt.cli_keys import _api, step_up
from mbt.client import Api, CliError

__all__ = ["register"]


def _out(ns: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if ns.json else human)


def _status_text(st: dict[str, Any]) -> str:
    g = st.get("graduation") or {}
    lines = [
        f"tier          {st.get('tier', 'free')}",
        f"eligible      {'yes' if st.get('eligible') else 'no'}"
        + (f" — {st['reason']}" if st.get("reason") else ""),
        f"graduation    {g.get('consecutive_profitable', 0)} of {g.get('cycles_required', 3)} "
        "consecutive profitable monthly paper cycles"
        + (f" (override: {g['override_reason']})" if g.get("overridden") else ""),
    ]
    if st.get("enrolled"):
        lines.append(
            f"connected     Alpaca account {st.get('account_number', '')} "
            f"(scope {st.get('scope', '')})"
        )
    else:
        lines.append("connected     no")
    if st.get("disabled"):
        lines.append("live handoff is switched off by the operators")
    return "\n".join(lines)


def cmd_status(ns: argparse.Namespace) -> None:
    api, _ = _api(ns)
    st, _ = api.call("GET", "/api/mbt/handoff")
    _out(ns, st, _status_text(st))


def _sandbox_consent(authorize_url: str) -> str:
    """On the local sandbox broker, approve as its user would and return where it redirects."""
    parts = urlsplit(authorize_url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}"
    with httpx.Client(base_url=base, timeout=10.0) as http:
        page = http.get(parts.path, params=params)
        if page.status_code != 200:
            raise CliError(f"the sandbox refused the authorization: {page.text[:200]}")
        r = http.post(parts.path, data={**params, "decision": "approve"})
    if r.status_code != 302:
        raise CliError(f"the sandbox did not redirect back ({r.status_code})")
    return str(r.headers["location"])


def cmd_connect(ns: argparse.Namespace) -> None:
    api, session = _api(ns)
    grant = step_up(api, session)  # enrollment needs a fresh passkey confirmation
    start, _ = api.call("POST", "/api/mbt/handoff/connect", json_body={"step_up_id": grant})
    url = str(start["authorize_url"])
    host = urlsplit(url).hostname
    if host in ("127.0.0.1", "localhost") and not ns.manual:
        if not ns.json:
            print("local sandbox broker: approving the authorization as its user would")
        landed = _sandbox_consent(url)
    else:
        print("Open this address in your browser and approve MBT at Alpaca:\n\n  " + url)
        landed = input("\nThen paste the address your browser lands on: ").strip()
    q = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
    st, _ = api.call(
        "GET",
        "/api/mbt/handoff/callback",
        params={
            "code": q.get("code", ""),
            "state": q.get("state", ""),
            "error": q.get("error", ""),
        },
    )
    _out(ns, st, "connected.\n" + _status_text(st))


def cmd_disconnect(ns: argparse.Namespace) -> None:
    api, _ = _api(ns)
    st, _ = api.call("DELETE", "/api/mbt/handoff")
    _out(ns, st, "disconnected: the token is revoked at Alpaca and deleted.\n" + _status_text(st))


def _live_line(o: dict[str, Any]) -> list[str]:
    return [
        o["live_order_id"][:8],
        o.get("side", ""),
        o.get("qty", ""),
        o.get("symbol", ""),
        o["status"],
        o.get("filled_qty") or "0",
        o.get("filled_avg_price") or "",
        o.get("alpaca_order_id", "")[:8],
        o.get("reason", ""),
    ]


LIVE_HEADERS = ["id", "side", "qty", "symbol", "status", "filled", "avg", "alpaca id", "note"]


def _wait_settled(api: Api, oid: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        o, _ = api.call("GET", f"/api/mbt/live/orders/{oid}")
        if o["status"] in ("filled", "canceled", "rejected", "expired") or (
            time.monotonic() > deadline
        ):
            return dict(o)
        time.sleep(0.3)


def cmd_live_order(ns: argparse.Namespace) -> None:
    from mbt.cli import _table

    api, session = _api(ns)
    body = {"symbol": ns.symbol, "side": ns.side, "qty": ns.qty, "time_in_force": ns.tif}
    if ns.limit:
        body.update(type="limit", limit_price=ns.limit)
    preview, _ = api.call("POST", "/api/mbt/live/orders", json_body=body)
    payload = str(preview["payload_json"])
    digest = hashlib.sha256(payload.encode()).hexdigest()
    if digest != preview["payload_sha256"]:
        raise CliError("the order's digest does not match what was shown: not signing")
    if not ns.json:
        print(preview["summary"])
        print(f"sent exactly as: {payload}\nsha256 {digest}")
    if not ns.yes:
        if input("Type yes to sign it with your passkey and send it: ").strip().lower() != "yes":
            raise CliError("not sent")
    grant = step_up(api, session, bind_sha256=digest)
    oid = preview["live_order_id"]
    o, _ = api.call("POST", f"/api/mbt/live/orders/{oid}:send", json_body={"step_up_id": grant})
    if ns.wait:
        o = _wait_settled(api, oid, ns.wait)
    _out(ns, o, _table([_live_line(o)], LIVE_HEADERS))


def cmd_live_orders(ns: argparse.Namespace) -> None:
    from mbt.cli import _table

    api, _ = _api(ns)
    d, _ = api.call("GET", "/api/mbt/live/orders")
    _out(ns, d, _table([_live_line(o) for o in d.get("orders", [])], LIVE_HEADERS))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    h = sub.add_parser("handoff", help="live handoff to your own Alpaca account (Pro+)")
    hs = h.add_subparsers(dest="handoff_command", required=True)
    hs.add_parser("status", parents=[common], help="eligibility and connection").set_defaults(
        func=cmd_status
    )
    c = hs.add_parser("connect", parents=[common], help="connect Alpaca (OAuth; passkey step-up)")
    c.add_argument(
        "--manual", action="store_true", help="always open the URL yourself (no sandbox shortcut)"
    )
    c.set_defaults(func=cmd_connect)
    hs.add_parser(
        "disconnect", parents=[common], help="revoke at Alpaca and delete the token"
    ).set_defaults(func=cmd_disconnect)

    live = sub.add_parser("live", help="live orders at your connected Alpaca account")
    ls = live.add_subparsers(dest="live_command", required=True)
    for side in ("buy", "sell"):
        p = ls.add_parser(side, parents=[common], help=f"{side} on your live account (signed)")
        p.add_argument("symbol")
        p.add_argument("qty")
        p.add_argument("--limit", help="limit price (default: market)")
        p.add_argument("--tif", default="day", choices=["day", "gtc"])
        p.add_argument("--yes", action="store_true", help="do not ask before signing")
        p.add_argument("--wait", type=float, default=0, help="wait up to N s for it to settle")
        p.set_defaults(func=cmd_live_order, side=side)
    ls.add_parser("orders", parents=[common], help="your live orders").set_defaults(
        func=cmd_live_orders
    )

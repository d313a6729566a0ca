"""A local sandbox broker that speaks Alpaca's OAuth and Trading API, for trying live handoff
with no Alpaca account (`mbt up --live-sandbox`) and for the tests.

It is the outside world MBT cannot reach here, built to Alpaca's documented wire protocol
(research/alpaca.md §6, research/security.md §5) so that the real clients run against it
unchanged: Authlib's OAuth client, alpaca-py's ``TradingClient(oauth_token=…)`` and alpaca-py's
``TradingStream`` protocol.

* OAuth 2.0 authorization code with PKCE (RFC 6749, RFC 7636): ``GET /oauth/authorize`` shows a
  consent page (registered ``client_id`` and exact ``redirect_uri`` only; ``code_challenge`` with
  ``S256`` required); ``POST /oauth/authorize`` approves or denies and redirects with ``code`` (one
  use, 60 s) or ``error=access_denied``, echoing ``state``. ``POST /oauth/token`` (form;
  client_secret_post or HTTP Basic) checks the code, its client, its redirect_uri and the
  ``code_verifier``; a reused code is ``invalid_grant`` and revokes the token it produced.
  Answers ``{"access_token", "token_type": "bearer", "scope"}`` (no expiry, no refresh, as
  Alpaca). ``POST /oauth/revoke`` (RFC 7009) revokes a token.
* Trading API with ``Authorization: Bearer``: ``GET /v2/account``, ``POST /v2/orders``
  (``client_order_id`` unique per account: a repeat is 422 ``client_order_id must be unique``),
  ``GET /v2/orders``, ``GET /v2/orders/{id}``, ``GET /v2/orders:by_client_order_id``,
  ``DELETE /v2/orders/{id}``. A bad or revoked token is 401 ``request is not authorized``.
* ``/stream`` WebSocket: ``{"action":"authenticate","data":{"oauth_token":…}}`` (or
  ``key_id``/``secret_key``) → ``authorization`` frame; ``{"action":"listen",…}`` →
  ``listening``; then ``trade_updates`` frames (``new``, ``fill``, ``canceled``).

Fills: a market order fills in full at the sandbox's price for its symbol shortly after it is
accepted; a limit order fills at its limit when the price is at or through it, else rests.
Prices are set with ``POST /sandbox/prices`` (default 100.00). ``POST /sandbox/faults`` delays
the answer to order submits (to let tests kill a caller mid-request), and ``GET /sandbox/orders``
lists every order the sandbox received (what the tests count).

Run: ``python -m mbt.alpaca_sandbox --port 8090 --client-id ID --client-secret S
--redirect-uri URI``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import html
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["SandboxBroker", "build_app", "main"]

CODE_TTL_S = 60.0
DEFAULT_PRICE = Decimal("100.00")
SCOPES = ("account:write", "trading", "data")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the only form OAuth uses)."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str
    expires: float
    used: bool = False
    token: str = ""


@dataclass
class Account:
    id: str
    number: str
    cash: Decimal = Decimal("100000")
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by order id
    by_client_id: dict[str, str] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    cost_basis: dict[str, Decimal] = field(default_factory=dict)  # avg entry price by symbol
    activities: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)  # portfolio history, as Alpaca's


class SandboxBroker:
    """The sandbox's state: one registered OAuth client, its grants, tokens and accounts."""

    def __init__(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = set(redirect_uris)
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (account id, scope)
        self.api_keys: dict[str, tuple[str, str]] = {}  # key id -> (account id, secret)
        self.accounts: dict[str, Account] = {}
        self.prices: dict[str, Decimal] = {}
        self.order_delay_s = 0.0
        self.record_before_delay = True
        self.fill_delay_s = 0.05
        self.counters = {"token_exchanges": 0, "revocations": 0, "order_posts": 0}

    # ---- OAuth ------------------------------------------------------------------------------
    def _client_ok(self, client_id: str, client_secret: str) -> bool:
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            client_secret, self.client_secret
        )

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        """client_secret_post (form fields) or client_secret_basic (RFC 6749 §2.3.1)."""
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
        return self._client_ok(client_id, client_secret)

    async def authorize_page(self, request: Request) -> Response:
        q = request.query_params
        problem = self._authorize_problem(dict(q))
        if problem:
            return HTMLResponse(f"<h1>Authorization error</h1><p>{html.escape(problem)}</p>", 400)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items()
        )
        page = (
            "<!doctype html><title>Alpaca sandbox: authorize</title>"
            "<h1>Alpaca sandbox</h1>"
            f"<p>MBT asks to <b>{html.escape(q.get('scope', ''))}</b> on your sandbox account."
            '</p><form method="post" action="/oauth/authorize">'
            f'{hidden}<button name="decision" value="approve">Approve</button> '
            '<button name="decision" value="deny">Deny</button></form>'
        )
        return HTMLResponse(page)

    def _authorize_problem(self, q: dict[str, str]) -> str:
        if q.get("response_type") != "code":
            return "response_type must be code"
        if q.get("client_id") != self.client_id:
            return "unknown client_id"
        if q.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri is not registered for this client"
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return "PKCE is required: code_challenge with code_challenge_method=S256"
        scopes = q.get("scope", "").split()
        if not scopes or any(s not in SCOPES for s in scopes):
            return f"scope must be some of {', '.join(SCOPES)}"
        return ""

    async def authorize_decision(self, request: Request) -> Response:
        form = await _form(request)
        problem = self._authorize_problem(form)
        if problem:
            return HTMLResponse(f"<h1>Authorization error</h1><p>{html.escape(problem)}</p>", 400)
        redirect, state = form["redirect_uri"], form.get("state", "")
        if form.get("decision") != "approve":
            qs = urlencode({"error": "access_denied", "state": state})
            return RedirectResponse(f"{redirect}?{qs}", status_code=302)
        # the user may grant less than was asked for (a "scope downgrade")
        scope = form.get("granted_scope") or form.get("scope", "")
        code = secrets.token_urlsafe(24)
        loop = asyncio.get_running_loop()
        self.grants[code] = Grant(
            self.client_id, redirect, scope, form["code_challenge"], loop.time() + CODE_TTL_S
        )
        return RedirectResponse(f"{redirect}?{urlencode({'code': code, 'state': state})}", 302)

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        if not self._client_authenticated(request, form):
            return _oauth_error("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        grant = self.grants.get(form.get("code", ""))
        loop = asyncio.get_running_loop()
        if grant is None or grant.expires < loop.time():
            return _oauth_error("invalid_grant", "unknown or expired code")
        if grant.used:  # RFC 6749 §4.1.2: a reused code revokes what it produced
            self.tokens.pop(grant.token, None)
            return _oauth_error("invalid_grant", "code already used")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        expected = digest.rstrip(b"=").decode()
        if not verifier or not secrets.compare_digest(expected, grant.challenge):
            return _oauth_error("invalid_grant", "code_verifier does not match code_challenge")
        grant.used = True
        token = secrets.token_urlsafe(32)
        grant.token = token
        acct = Account(str(uuid.uuid4()), "LA" + secrets.token_hex(5).upper())
        self.accounts[acct.id] = acct
        self.tokens[token] = (acct.id, grant.scope)
        self.counters["token_exchanges"] += 1
        return JSONResponse({"access_token": token, "token_type": "bearer", "scope": grant.scope})

    async def revoke(self, request: Request) -> Response:
        form = await _form(request)
        if not self._client_authenticated(request, form):
            return _oauth_error("invalid_client", "client authentication failed", 401)
        if self.tokens.pop(form.get("token", ""), None) is not None:
            self.counters["revocations"] += 1
        return JSONResponse({})  # RFC 7009: 200 whether or not the token was valid

    # ---- Trading API ------------------------------------------------------------------------
    def _account_of(self, request: Request, scope: str = "") -> Account | None:
        auth = request.headers.get("authorization", "")
        key_id = request.headers.get("apca-api-key-id", "")
        if key_id:  # a paper account's API key (the importer's and shadow mode's credentials)
            found_key = self.api_keys.get(key_id)
            secret = request.headers.get("apca-api-secret-key", "")
            if found_key is None or not secrets.compare_digest(found_key[1], secret):
                return None
            return self.accounts[found_key[0]]
        if not auth.startswith("Bearer "):
            return None
        found = self.tokens.get(auth[7:])
        if found is None or (scope and scope not in found[1].split()):
            return None
        return self.accounts[found[0]]

    async def account(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        value = acct.cash + sum(
            (q * self.prices.get(s, DEFAULT_PRICE) for s, q in acct.positions.items()), Decimal(0)
        )
        return JSONResponse(_account_json(acct, value))

    async def submit(self, request: Request) -> Response:
        acct = self._account_of(request, "trading")
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        self.counters["order_posts"] += 1
        try:
            body = json.loads(await request.body())
            order = self._new_order(body)
        except (ValueError, KeyError, InvalidOperation, TypeError) as exc:
            return _error(422, 40010001, f"invalid order: {exc}")
        if order["client_order_id"] in acct.by_client_id:
            return _error(422, 40010001, "client_order_id must be unique")
        record_first, delay = self.record_before_delay, self.order_delay_s  # as of this request
        if record_first:
            self._accept(acct, order)
        if delay:
            await asyncio.sleep(delay)
        if not record_first:
            if order["client_order_id"] in acct.by_client_id:
                return _error(422, 40010001, "client_order_id must be unique")
            self._accept(acct, order)
        return JSONResponse(order)

    def _new_order(self, body: dict[str, Any]) -> dict[str, Any]:
        symbol = str(body["symbol"]).upper()
        qty = Decimal(str(body["qty"]))
        if qty <= 0:
            raise ValueError("qty must be positive")
        side, kind = str(body["side"]), str(body.get("type", "market"))
        if side not in ("buy", "sell") or kind not in ("market", "limit"):
            raise ValueError("side must be buy|sell and type market|limit")
        limit = Decimal(str(body["limit_price"])) if kind == "limit" else None
        now = _now()
        return {
            "id": str(uuid.uuid4()),
            "client_order_id": str(body.get("client_order_id") or uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{symbol}")),
            "symbol": symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": str(qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "simple",
            "order_type": kind,
            "type": kind,
            "side": side,
            "position_intent": None,
            "time_in_force": str(body.get("time_in_force", "day")),
            "limit_price": str(limit) if limit is not None else None,
            "stop_price": None,
            "status": "new",
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": None,
        }

    def _accept(self, acct: Account, order: dict[str, Any]) -> None:
        acct.orders[order["id"]] = order
        acct.by_client_id[order["client_order_id"]] = order["id"]
        self._publish(acct, "new", order)
        asyncio.get_running_loop().call_later(
            self.fill_delay_s, self._try_fill, acct.id, order["id"]
        )

    def _try_fill(self, account_id: str, order_id: str) -> None:
        acct = self.accounts[account_id]
        o = acct.orders[order_id]
        if o["status"] not in ("new", "accepted"):
            return
        price = self.prices.get(o["symbol"], DEFAULT_PRICE)
        if o["type"] == "limit":
            limit = Decimal(o["limit_price"])
            if (o["side"] == "buy" and price > limit) or (o["side"] == "sell" and price < limit):
                return  # rests until the price reaches it (set_price retries)
            price = limit
        qty = Decimal(o["qty"])
        sign = 1 if o["side"] == "buy" else -1
        acct.cash -= sign * qty * price
        acct.positions[o["symbol"]] = acct.positions.get(o["symbol"], Decimal(0)) + sign * qty
        now = _now()
        o.update(
            status="filled",
            filled_qty=str(qty),
            filled_avg_price=str(price),
            filled_at=now,
            updated_at=now,
        )
        self._publish(
            acct,
            "fill",
            o,
            execution_id=str(uuid.uuid4()),
            price=str(price),
            qty=str(qty),
            position_qty=str(acct.positions[o["symbol"]]),
        )

    def set_prices(self, prices: dict[str, Decimal]) -> None:
        self.prices.update(prices)
        for acct in self.accounts.values():
            for oid in list(acct.orders):
                self._try_fill(acct.id, oid)

    def _publish(self, acct: Account, event: str, order: dict[str, Any], **extra: str) -> None:
        frame = {
            "stream": "trade_updates",
            "data": {"event": event, "timestamp": _now(), "order": dict(order), **extra},
        }
        for q in list(acct.listeners):
            q.put_nowait(frame)

    async def list_orders(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        status = request.query_params.get("status", "open")
        orders = list(acct.orders.values())
        if status == "open":
            orders = [o for o in orders if o["status"] in ("new", "accepted", "partially_filled")]
        elif status == "closed":
            orders = [o for o in orders if o["status"] in ("filled", "canceled", "rejected")]
        orders.sort(
            key=lambda o: o["submitted_at"], reverse=request.query_params.get("direction") != "asc"
        )
        return JSONResponse(orders)

    async def get_order(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        o = acct.orders.get(request.path_params["order_id"])
        if o is None:
            return _error(404, 40410000, "order not found")
        if request.method == "DELETE":
            if o["status"] in ("filled", "canceled"):
                return _error(422, 42210000, f'order is already in "{o["status"]}" state')
            o.update(status="canceled", canceled_at=_now(), updated_at=_now())
            self._publish(acct, "canceled", o)
            return Response(status_code=204)
        return JSONResponse(o)

    async def by_client_id(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        oid = acct.by_client_id.get(request.query_params.get("client_order_id", ""))
        if oid is None:
            return _error(404, 40410000, "order not found")
        return JSONResponse(acct.orders[oid])

    async def positions(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        out = []
        for sym, qty in sorted(acct.positions.items()):
            if qty == 0:
                continue
            price = self.prices.get(sym, DEFAULT_PRICE)
            basis = acct.cost_basis.get(sym, price)
            out.append(
                {
                    "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{sym}")),
                    "symbol": sym,
                    "exchange": "NASDAQ",
                    "asset_class": "us_option" if len(sym) > 12 else "us_equity",
                    "avg_entry_price": str(basis),
                    "qty": str(qty),
                    "qty_available": str(qty),
                    "side": "long" if qty > 0 else "short",
                    "market_value": str(qty * price),
                    "cost_basis": str(qty * basis),
                    "unrealized_pl": str(qty * (price - basis)),
                    "current_price": str(price),
                    "asset_marginable": True,
                }
            )
        return JSONResponse(out)

    async def account_activities(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        q = request.query_params
        rows = sorted(acct.activities, key=lambda a: a["id"], reverse=q.get("direction") != "asc")
        if q.get("page_token"):
            token = q["page_token"]
            rows = [
                a
                for a in rows
                if (a["id"] < token if q.get("direction") != "asc" else a["id"] > token)
            ]
        return JSONResponse(rows[: int(q.get("page_size", "100"))])

    async def portfolio_history(self, request: Request) -> Response:
        acct = self._account_of(request)
        if acct is None:
            return _error(401, 40110000, "request is not authorized")
        h = acct.history or {
            "timestamp": [],
            "equity": [],
            "profit_loss": [],
            "profit_loss_pct": [],
        }
        return JSONResponse({"base_value": h.get("base_value", 0), "timeframe": "1D", **h})

    async def control_paper_account(self, request: Request) -> Response:
        """Pre-populate a paper account reachable with an API key (what the importer reads);
        posting again with the same key replaces that account's contents (same number)."""
        body = await request.json()
        known = self.api_keys.get(str(body["key_id"]))
        number = self.accounts[known[0]].number if known else "PA" + secrets.token_hex(5).upper()
        acct = Account(known[0] if known else str(uuid.uuid4()), number)
        acct.cash = Decimal(str(body.get("cash", "100000")))
        for p in body.get("positions", []):
            acct.positions[p["symbol"]] = Decimal(str(p["qty"]))
            acct.cost_basis[p["symbol"]] = Decimal(str(p["avg_entry_price"]))
        for o in body.get("orders", []):
            order = {**self._new_order(o), **{k: v for k, v in o.items() if k != "qty"}}
            acct.orders[order["id"]] = order
            acct.by_client_id[order["client_order_id"]] = order["id"]
        acct.activities = list(body.get("activities", []))
        acct.history = dict(body.get("history", {}))
        self.prices.update({k: Decimal(str(v)) for k, v in body.get("prices", {}).items()})
        self.accounts[acct.id] = acct
        self.api_keys[str(body["key_id"])] = (acct.id, str(body["secret_key"]))
        return JSONResponse({"account_id": acct.id, "account_number": acct.number})

    async def control_revoke_account(self, request: Request) -> Response:
        """The user revokes MBT's access in Alpaca's dashboard: every token of that account dies."""
        number = str((await request.json()).get("account_number", ""))
        dead = [t for t, (aid, _) in self.tokens.items() if self.accounts[aid].number == number]
        for t in dead:
            del self.tokens[t]
        return JSONResponse({"revoked": len(dead)})

    async def control_adjust(self, request: Request) -> Response:
        """Move a paper account's cash (to inject a divergence the parity report must catch)."""
        body = await request.json()
        found = self.api_keys.get(str(body.get("key_id", "")))
        if found is None:
            return _error(404, 40410000, "no paper account with that key")
        acct = self.accounts[found[0]]
        acct.cash += Decimal(str(body.get("cash_delta", "0")))
        return JSONResponse({"cash": str(acct.cash)})

    # ---- the trade_updates stream -----------------------------------------------------------
    async def stream(self, ws: WebSocket) -> None:
        await ws.accept()
        acct: Account | None = None
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        try:
            msg = json.loads(await ws.receive_text())
            data = msg.get("data") or {}
            found = self.tokens.get(str(data.get("oauth_token", "")))
            if msg.get("action") == "authenticate" and found is not None:
                acct = self.accounts[found[0]]
            status = "authorized" if acct else "unauthorized"
            answer = {"action": "authenticate", "status": status}
            await ws.send_text(json.dumps({"stream": "authorization", "data": answer}))
            if acct is None:
                await ws.close(code=1008)
                return
            listen = json.loads(await ws.receive_text())
            streams = (listen.get("data") or {}).get("streams") or []
            await ws.send_text(json.dumps({"stream": "listening", "data": {"streams": streams}}))
            if "trade_updates" not in streams:
                return
            acct.listeners.add(queue)
            while True:
                await ws.send_text(json.dumps(await queue.get()))
        except (WebSocketDisconnect, ValueError, RuntimeError):
            return
        finally:
            if acct is not None:
                acct.listeners.discard(queue)

    # ---- sandbox controls -------------------------------------------------------------------
    async def control_prices(self, request: Request) -> Response:
        body = await request.json()
        self.set_prices({str(k).upper(): Decimal(str(v)) for k, v in body.items()})
        return JSONResponse({k: str(v) for k, v in self.prices.items()})

    async def control_faults(self, request: Request) -> Response:
        body = await request.json()
        self.order_delay_s = float(body.get("order_delay_s", 0))
        self.record_before_delay = bool(body.get("record_before_delay", True))
        return JSONResponse(
            {"order_delay_s": self.order_delay_s, "record_before_delay": self.record_before_delay}
        )

    async def control_orders(self, request: Request) -> Response:
        return JSONResponse(
            {
                "orders": [o for a in self.accounts.values() for o in a.orders.values()],
                "tokens": len(self.tokens),
                **self.counters,
            }
        )


def _account_json(acct: Account, equity: Decimal) -> dict[str, Any]:
    cash, value = str(acct.cash), str(equity)
    return {
        "id": acct.id,
        "account_number": acct.number,
        "status": "ACTIVE",
        "crypto_status": None,
        "currency": "USD",
        "buying_power": cash,
        "regt_buying_power": cash,
        "daytrading_buying_power": "0",
        "non_marginable_buying_power": cash,
        "cash": cash,
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "portfolio_value": value,
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "created_at": _now(),
        "trade_suspended_by_user": False,
        "multiplier": "1",
        "shorting_enabled": False,
        "equity": value,
        "last_equity": value,
        "long_market_value": str(equity - acct.cash),
        "short_market_value": "0",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "daytrade_count": 0,
    }


def build_app(broker: SandboxBroker) -> Starlette:
    return Starlette(
        routes=[
            Route("/oauth/authorize", broker.authorize_page, methods=["GET"]),
            Route("/oauth/authorize", broker.authorize_decision, methods=["POST"]),
            Route("/oauth/token", broker.token, methods=["POST"]),
            Route("/oauth/revoke", broker.revoke, methods=["POST"]),
            Route("/v2/account", broker.account, methods=["GET"]),
            Route("/v2/positions", broker.positions, methods=["GET"]),
            Route("/v2/account/activities", broker.account_activities, methods=["GET"]),
            Route("/v2/account/portfolio/history", broker.portfolio_history, methods=["GET"]),
            Route("/v2/orders", broker.submit, methods=["POST"]),
            Route("/v2/orders", broker.list_orders, methods=["GET"]),
            Route("/v2/orders:by_client_order_id", broker.by_client_id, methods=["GET"]),
            Route("/v2/orders/{order_id}", broker.get_order, methods=["GET", "DELETE"]),
            WebSocketRoute("/stream", broker.stream),
            Route("/sandbox/prices", broker.control_prices, methods=["POST"]),
            Route("/sandbox/faults", broker.control_faults, methods=["POST"]),
            Route("/sandbox/orders", broker.control_orders, methods=["GET"]),
            Route("/sandbox/paper-accounts", broker.control_paper_account, methods=["POST"]),
            Route("/sandbox/adjust", broker.control_adjust, methods=["POST"]),
            Route("/sandbox/revoke-account", broker.control_revoke_account, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m mbt.alpaca_sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret-file", required=True, help="a file holding the secret")
    p.add_argument("--redirect-uri", action="append", required=True)
    ns = p.parse_args(argv)
    with open(ns.client_secret_file) as f:
        secret = f.read().strip()
    broker = SandboxBroker(ns.client_id, secret, ns.redirect_uri)
    uvicorn.run(build_app(broker), host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()

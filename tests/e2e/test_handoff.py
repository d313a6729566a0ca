"""Live handoff end to end through `mbt up --live-sandbox`: the graduation gate, Alpaca OAuth
with PKCE against the sandbox broker, live orders signed by a content-bound step-up, their fills
from the sandbox's trade_updates stream, crash safety, KEK rotation and disconnect."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mbt.client import origin_for
from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.helpers import cli_json, run_cli, set_tier, signup_http, wait_for
from tests.e2e.test_crash_recovery import kill_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live() -> Iterator[RunningSystem]:
    with running_system("--speed", "1", "--live-sandbox") as s:
        yield s


def sandbox(system: RunningSystem) -> str:
    return str(json.loads((system.data_dir / "endpoints.json").read_text())["alpaca_sandbox"])


def sandbox_orders(system: RunningSystem) -> dict[str, Any]:
    return dict(httpx.get(f"{sandbox(system)}/sandbox/orders").json())


def admin(system: RunningSystem, cfg: Path, *args: str) -> Any:
    return cli_json(cfg, system.url, "admin", *args, "--data-dir", str(system.data_dir))


class User:
    """A signed-up user driven over HTTP, with their passkey for step-ups."""

    def __init__(self, system: RunningSystem, email: str) -> None:
        self.url, self.email = system.url, email
        self.token, self.key = signup_http(system.url, email)
        self.http = httpx.Client(
            base_url=system.url, headers={"authorization": f"Bearer {self.token}"}, timeout=30
        )

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def assertion(self, bind: str = "") -> tuple[str, str]:
        """A step-up ceremony's id and the passkey's signed assertion over its challenge."""
        c = self.ok("POST", "/api/sessions/step-up/challenge", json={"bind_sha256": bind})
        return c["ceremony_id"], self.key.get(c["options_json"], origin_for(self.url))

    def step_up(self, bind: str = "") -> str:
        cid, cred = self.assertion(bind)
        grant = self.ok(
            "POST", "/api/sessions/step-up", json={"ceremony_id": cid, "credential_json": cred}
        )
        return str(grant["step_up_id"])

    def connect(self, **consent: str) -> Any:
        landed = self.authorize(**consent)
        return self.ok("GET", "/api/mbt/handoff/callback", params=dict(landed.params))

    def authorize(self, **consent: str) -> httpx.URL:
        """Start connecting and approve at the sandbox; where the broker sends the browser."""
        start = self.ok("POST", "/api/mbt/handoff/connect", json={"step_up_id": self.step_up()})
        url = httpx.URL(start["authorize_url"])
        params = dict(url.params)
        assert params["code_challenge_method"] == "S256" and params["state"] == start["state"]
        with httpx.Client() as h:  # the user approves at the sandbox broker
            page = h.get(url)
            assert page.status_code == 200 and "Approve" in page.text
            form = {**params, "decision": "approve", **consent}
            back = h.post(url.copy_with(query=None), data=form)
        assert back.status_code == 302
        landed = httpx.URL(back.headers["location"])
        assert landed.path == "/console/handoff.html"  # the console page finishes it
        return landed

    def prepare(self, symbol: str = "AAPL", qty: str = "1", **extra: str) -> Any:
        body = {"symbol": symbol, "side": "buy", "qty": qty, **extra}
        return self.ok("POST", "/api/mbt/live/orders", json=body)

    def send(self, order: Any, grant: str) -> httpx.Response:
        return self.call(
            "POST",
            f"/api/mbt/live/orders/{order['live_order_id']}:send",
            json={"step_up_id": grant},
        )

    def paper(self) -> tuple[Any, ...]:
        acct = self.ok("GET", "/api/mbt/account")
        return (
            acct["cash"],
            acct["buying_power"],
            self.ok("GET", "/api/mbt/positions")["positions"],
            self.ok("GET", "/api/mbt/orders", params={"status": "all"})["orders"],
            self.ok("GET", "/api/mbt/fills")["fills"],
        )

    def export(self) -> dict[str, Any]:
        r = self.call("GET", "/api/mbt/me/export")
        assert r.status_code == 200, r.text[:300]
        body = r.json()["data"]
        z = zipfile.ZipFile(io.BytesIO(base64.b64decode(body["archive"])))
        return {n: json.loads(z.read(n)) for n in z.namelist()}


def graduated(system: RunningSystem, tmp_path: Path, email: str) -> User:
    u = User(system, email)
    set_tier(system.data_dir, email, "pro_plus")
    admin(system, tmp_path / "ops", "graduate", email, "--reason", "e2e: funded program")
    return u


def wait_status(u: User, oid: str, status: str) -> Any:
    return wait_for(
        lambda: (o := u.ok("GET", f"/api/mbt/live/orders/{oid}"))["status"] == status and o,
        timeout=30,
        what=f"live order {status}",
    )


def test_the_gate_then_connect_and_a_signed_live_order_fills_apart_from_paper(
    live: RunningSystem, tmp_path: Path
) -> None:
    u = User(live, "graduate@example.com")
    st = u.ok("GET", "/api/mbt/handoff")
    assert not st["eligible"] and "Pro+" in st["reason"] and st["tier"] == "free"
    r = u.call("POST", "/api/mbt/live/orders", json={"symbol": "AAPL", "side": "buy", "qty": "1"})
    assert r.status_code == 400 and "Pro+" in r.json()["error"]["message"]

    set_tier(live.data_dir, u.email, "pro_plus")
    st = u.ok("GET", "/api/mbt/handoff")
    assert not st["eligible"] and "graduation needs 3 consecutive profitable" in st["reason"]
    r = u.call("POST", "/api/mbt/handoff/connect", json={"step_up_id": u.step_up()})
    assert r.status_code == 400, r.text  # not graduated: no enrollment either

    done = admin(live, tmp_path / "ops", "graduate", u.email, "--reason", "e2e: funded program")
    assert done["eligible"] and done["graduation"]["overridden"]
    r = u.call("POST", "/api/mbt/handoff/connect", json={"step_up_id": ""})
    assert r.status_code == 400 and "step-up" in r.json()["error"]["message"]  # needs step-up

    before = u.paper()
    exchanges = sandbox_orders(live)["token_exchanges"]
    st = u.connect()
    assert st["enrolled"] and st["scope"] == "trading" and st["account_number"]
    assert sandbox_orders(live)["token_exchanges"] == exchanges + 1

    price = "187.25"
    httpx.post(f"{sandbox(live)}/sandbox/prices", json={"AAPL": price})
    order = u.prepare(qty="3")
    payload = order["payload_json"]
    assert hashlib.sha256(payload.encode()).hexdigest() == order["payload_sha256"]
    assert json.loads(payload) == {
        "client_order_id": order["live_order_id"],
        "symbol": "AAPL",
        "qty": "3",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
    }
    assert "LIVE ORDER" in order["summary"] and st["account_number"] in order["summary"]
    sent = u.send(order, u.step_up(order["payload_sha256"]))
    assert sent.status_code == 200, sent.text
    filled = wait_status(u, order["live_order_id"], "filled")
    assert filled["filled_qty"] == "3" and filled["filled_avg_price"] == price
    at_broker = [
        o for o in sandbox_orders(live)["orders"] if o["client_order_id"] == order["live_order_id"]
    ]
    assert len(at_broker) == 1 and json.loads(payload)["qty"] == at_broker[0]["qty"]

    assert u.paper() == before  # no live fill touches the paper account
    listed = u.ok("GET", "/api/mbt/live/orders")["orders"]
    assert [o["live_order_id"] for o in listed] == [order["live_order_id"]]

    files = u.export()
    h = files["handoff.json"]
    assert [o["id"] for o in h["live_orders"]] == [order["live_order_id"]]
    assert len(h["live_fills"]) == 1 and h["live_fills"][0]["price"].startswith(price)
    assert h["connections"] and not {"ciphertext", "wrapped_dek", "nonce"} & set(
        h["connections"][0]
    )
    actions = [a["action"] for a in h["audit_log"]]
    for step in ("enroll_start", "enroll", "live_prepare", "live_sign", "live_sent", "live_fill"):
        assert step in actions, actions
    sign = next(a for a in h["audit_log"] if a["action"] == "live_sign")
    assert sign["detail"]["shown"] == payload and sign["detail"]["signature"]
    # the signature is the passkey's over a challenge that carries the payload's digest
    client_data = json.loads(
        base64.urlsafe_b64decode(
            (c := json.loads(sign["detail"]["signature"])["response"]["clientDataJSON"])
            + "=" * (-len(c) % 4)
        )
    )
    raw = client_data["challenge"]
    challenge = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    assert challenge[16:].hex() == order["payload_sha256"]


def test_oauth_state_scope_and_session_are_checked(live: RunningSystem, tmp_path: Path) -> None:
    u = graduated(live, tmp_path, "oauth@example.com")
    # a grant without trading (the user unticked it) is refused and nothing is kept
    landed = u.authorize(granted_scope="data")
    r = u.call("GET", "/api/mbt/handoff/callback", params=dict(landed.params))
    assert r.status_code == 400 and "without trading" in r.json()["error"]["message"]
    assert not u.ok("GET", "/api/mbt/handoff")["enrolled"]
    # the callback is single use: replaying it (same state and code) is refused
    r = u.call("GET", "/api/mbt/handoff/callback", params=dict(landed.params))
    assert r.status_code == 400 and "state" in r.json()["error"]["message"]
    # another session of the same user may not complete this session's authorization
    landed = u.authorize()
    cid = u.ok("POST", "/api/mbt/sessions/logins", json={"email": u.email})
    cred = u.key.get(cid["options_json"], origin_for(u.url))
    fin = httpx.post(
        f"{u.url}/api/mbt/sessions/logins/{cid['ceremony_id']}:finish",
        json={"credential_json": cred},
    )
    assert fin.status_code == 200, fin.text
    second = fin.headers["set-cookie"].split("mbt_session=", 1)[1].split(";", 1)[0]
    r = httpx.get(
        f"{u.url}/api/mbt/handoff/callback",
        params=dict(landed.params),
        headers={"authorization": f"Bearer {second}"},
    )
    assert r.status_code == 403 and "another session" in r.json()["error"]["message"]
    # a declined authorization says so
    start = u.ok("POST", "/api/mbt/handoff/connect", json={"step_up_id": u.step_up()})
    r = u.call(
        "GET",
        "/api/mbt/handoff/callback",
        params={"state": start["state"], "error": "access_denied"},
    )
    assert r.status_code == 400 and "access_denied" in r.json()["error"]["message"]
    assert not u.ok("GET", "/api/mbt/handoff")["enrolled"]


def test_tampered_or_replayed_step_ups_are_refused(live: RunningSystem, tmp_path: Path) -> None:
    u = graduated(live, tmp_path, "tamper@example.com")
    u.connect()
    order = u.prepare()
    other = hashlib.sha256(b'{"qty":"1000"}').hexdigest()
    r = u.send(order, u.step_up(other))  # signed something else
    assert r.status_code == 400 and "different content" in r.json()["error"]["message"]
    r = u.send(order, u.step_up())  # an unbound step-up approves no live order
    assert r.status_code == 400 and "different content" in r.json()["error"]["message"]

    cid, cred = u.assertion(order["payload_sha256"])
    body = json.loads(cred)
    sig = bytearray(base64.urlsafe_b64decode(body["response"]["signature"] + "=="))
    sig[-1] ^= 0x01
    body["response"]["signature"] = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    r = u.call(
        "POST",
        "/api/sessions/step-up",
        json={"ceremony_id": cid, "credential_json": json.dumps(body)},
    )
    assert r.status_code == 401, r.text  # a tampered signature is no step-up

    cid, cred = u.assertion(order["payload_sha256"])
    grant = u.ok(
        "POST", "/api/sessions/step-up", json={"ceremony_id": cid, "credential_json": cred}
    )
    r = u.call("POST", "/api/sessions/step-up", json={"ceremony_id": cid, "credential_json": cred})
    assert r.status_code in (400, 401, 404), r.text  # the same assertion replayed
    cid2, _ = u.assertion(order["payload_sha256"])
    r = u.call("POST", "/api/sessions/step-up", json={"ceremony_id": cid2, "credential_json": cred})
    assert r.status_code == 401, r.text  # an old assertion does not answer a new challenge

    assert u.send(order, grant["step_up_id"]).status_code == 200
    second = u.prepare()
    r = u.send(second, grant["step_up_id"])  # a spent grant
    assert r.status_code == 400 and "already used" in r.json()["error"]["message"]
    # a retried send of the first order never sends it again
    again = u.send(order, grant["step_up_id"])
    assert again.status_code == 200
    count = [
        o for o in sandbox_orders(live)["orders"] if o["client_order_id"] == order["live_order_id"]
    ]
    assert len(count) == 1


@pytest.mark.parametrize("record_before_delay", [True, False])
def test_killing_handoff_between_recorded_and_sent_never_double_sends(
    live: RunningSystem, tmp_path: Path, record_before_delay: bool
) -> None:
    u = graduated(live, tmp_path, f"crash-{record_before_delay}@example.com".lower())
    u.connect()
    order = u.prepare(qty="2")
    oid = order["live_order_id"]
    grant = u.step_up(order["payload_sha256"])
    faults = {"order_delay_s": 4, "record_before_delay": record_before_delay}
    httpx.post(f"{sandbox(live)}/sandbox/faults", json=faults)
    posts = sandbox_orders(live)["order_posts"]
    answer: list[httpx.Response] = []
    t = threading.Thread(target=lambda: answer.append(u.send(order, grant)))
    t.start()
    try:
        # the order is recorded as sending and its POST is at the broker, unanswered
        wait_for(lambda: sandbox_orders(live)["order_posts"] > posts, what="the POST at Alpaca")
        kill_service(live, "handoff")
    finally:
        httpx.post(f"{sandbox(live)}/sandbox/faults", json={"order_delay_s": 0})
        t.join(60)
    assert answer and answer[0].status_code >= 500  # the caller saw the crash
    try:
        filled = wait_status(u, oid, "filled")
    except AssertionError:
        print("DEBUG", u.ok("GET", f"/api/mbt/live/orders/{oid}"), sandbox_orders(live))
        print((live.data_dir / "logs" / "handoff.log").read_text()[-5000:])
        raise
    assert filled["filled_qty"] == "2"
    at_broker = [o for o in sandbox_orders(live)["orders"] if o["client_order_id"] == oid]
    assert len(at_broker) == 1, at_broker


def test_kek_rotation_keeps_tokens_usable_and_disconnect_leaves_no_token(
    live: RunningSystem, tmp_path: Path
) -> None:
    u = graduated(live, tmp_path, "rotate@example.com")
    u.connect()
    keyring = live.data_dir / "handoff-keks.json"
    before = set(json.loads(keyring.read_text())["keys"])
    rotated = admin(live, tmp_path / "ops", "rotate-kek")
    assert rotated["rewrapped"] >= 1 and rotated["remaining_on_old_keys"] == 0
    doc = json.loads(keyring.read_text())
    assert doc["active"] == rotated["active_kek_id"] and set(doc["keys"]) == before | {
        doc["active"]
    }
    order = u.prepare()
    assert u.send(order, u.step_up(order["payload_sha256"])).status_code == 200
    wait_status(u, order["live_order_id"], "filled")  # the re-wrapped token still opens

    tokens = sandbox_orders(live)["tokens"]
    st = u.ok("DELETE", "/api/mbt/handoff")
    assert not st["enrolled"]
    assert sandbox_orders(live)["tokens"] == tokens - 1  # revoked at the broker
    assert u.export()["handoff.json"]["connections"] == []
    r = u.call("POST", "/api/mbt/live/orders", json={"symbol": "AAPL", "side": "buy", "qty": "1"})
    assert r.status_code == 400 and "no live account connected" in r.json()["error"]["message"]
    audit = [a["action"] for a in u.export()["handoff.json"]["audit_log"]]
    assert "disconnect" in audit


def test_the_cli_walkthrough(live: RunningSystem, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    run_cli(cfg, live.url, "signup", "--email", "cli-live@example.com")
    refused = run_cli(cfg, live.url, "live", "buy", "AAPL", "1", "--yes", ok=False)
    assert refused.returncode != 0 and "Pro+" in refused.stderr
    set_tier(live.data_dir, "cli-live@example.com", "pro_plus")
    admin(live, tmp_path / "ops", "graduate", "cli-live@example.com", "--reason", "e2e")
    assert "connected" in run_cli(cfg, live.url, "handoff", "connect").stdout
    o = cli_json(cfg, live.url, "live", "buy", "AAPL", "1", "--yes", "--wait", "20")
    assert o["status"] == "filled"
    table = run_cli(cfg, live.url, "live", "orders").stdout
    assert o["live_order_id"][:8] in table and "filled" in table
    assert "disconnected" in run_cli(cfg, live.url, "handoff", "disconnect").stdout


def test_the_live_handoff_kill_switch_flips_at_run_time(
    live: RunningSystem, tmp_path: Path
) -> None:
    u = graduated(live, tmp_path, "switch@example.com")
    u.connect()
    admin(live, tmp_path / "ops", "kill", "live-handoff", "on", "--reason", "e2e: broker incident")
    st = wait_for(
        lambda: (s := u.ok("GET", "/api/mbt/handoff"))["disabled"] and s, timeout=5, what="off"
    )
    assert not st["eligible"] and "switched off" in st["reason"]
    r = u.call("POST", "/api/mbt/live/orders", json={"symbol": "AAPL", "side": "buy", "qty": "1"})
    assert r.status_code == 400 and "switched off" in r.json()["error"]["message"]
    admin(live, tmp_path / "ops", "kill", "live-handoff", "off", "--reason", "e2e: resolved")
    wait_for(lambda: u.ok("GET", "/api/mbt/handoff")["eligible"], timeout=5, what="back on")
    order = u.prepare()
    assert u.send(order, u.step_up(order["payload_sha256"])).status_code == 200


def test_a_token_revoked_at_alpaca_is_dropped_and_said(live: RunningSystem, tmp_path: Path) -> None:
    u = graduated(live, tmp_path, "revoked@example.com")
    st = u.connect()
    httpx.post(
        f"{sandbox(live)}/sandbox/revoke-account", json={"account_number": st["account_number"]}
    )
    order = u.prepare()
    sent = u.send(order, u.step_up(order["payload_sha256"]))
    assert sent.status_code == 200, sent.text
    o = sent.json()["data"]
    assert o["status"] == "rejected" and "revoked at Alpaca" in o["reason"]
    st = u.ok("GET", "/api/mbt/handoff")
    assert not st["enrolled"] and "connect" in st["reason"]  # no useless token kept
    audit = [a["action"] for a in u.export()["handoff.json"]["audit_log"]]
    assert "token_revoked_at_alpaca" in audit

"""What a user reads and does right after a fill sees that fill, even while the ledger lags.

The accounts ledger applies fills from JetStream a moment after orders commits them. A strategy
that sells what it just bought (on its fill, or on seeing the order filled) must not be refused
as a short sale because the ledger had not caught up; nor may a read of its positions show the
quantity from before the fill. The ledger's consumer is paused here (JetStream's consumer pause)
to make that moment seconds long.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.orders.accept import LEDGER_WAIT_S
from tests.e2e.conftest import RunningSystem
from tests.e2e.helpers import RESTING_BUY, signup_http, wait_for

pytestmark = pytest.mark.e2e

LEDGER_CONSUMER = ("MBT_TRADES", "accounts-ledger")
LAG_S = 1.0  # how long the ledger stays behind once the fill is seen


def _ledger(system: RunningSystem, pause_s: float | None) -> None:
    """Pause the ledger's consumer for ``pause_s`` seconds, or resume it (None)."""
    import nats

    url = re.findall(r"nats\s+(nats://\S+)", system.log.read_text())[-1]

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            if pause_s is None:
                await js.resume_consumer(*LEDGER_CONSUMER)
            else:
                until = datetime.now(UTC) + timedelta(seconds=pause_s)
                await js.pause_consumer(*LEDGER_CONSUMER, until.isoformat())
        finally:
            await nc.close()

    asyncio.run(run())


def _order(url: str, h: dict[str, str], side: str, qty: str) -> httpx.Response:
    body = {"symbol": "IBM", "side": side, "qty": qty, "order_type": "market"}
    return httpx.post(f"{url}/api/mbt/orders", headers=h, json=body, timeout=30)


def _accepted(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["id"])


def _filled(url: str, h: dict[str, str], oid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        o: dict[str, Any] = httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h).json()["data"]
        return o if o["status"] == "filled" else None

    return wait_for(done, timeout=30, what="fill")


@contextlib.contextmanager
def _ledger_behind(system: RunningSystem) -> Iterator[None]:
    """The ledger's consumer paused inside the block (resumed on the way out, in any case)."""
    _ledger(system, 60)
    try:
        yield
    finally:
        _ledger(system, None)


def _once_the_ledger_resumes(system: RunningSystem, call: Callable[[], Any]) -> Any:
    """Run ``call`` while the paused ledger stays behind for LAG_S, then resume the ledger:
    ``call`` must not have been answered before that. Its answer."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call)
        time.sleep(LAG_S)
        assert not pending.done(), f"answered on the ledger from before: {pending.result()}"
        _ledger(system, None)
        return pending.result()


def test_selling_what_was_just_bought_waits_for_the_ledger(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "sell-on-fill@example.com")
    h = {"authorization": f"Bearer {token}"}
    with _ledger_behind(system):
        _filled(url, h, _accepted(_order(url, h, "buy", "2")))
        # the ledger has not seen the fill: there, a cash account holds no IBM yet
        sell = _once_the_ledger_resumes(system, lambda: _order(url, h, "sell", "2"))
    # refused as a short sale (400 here, 403 on /v2) before the fix
    _filled(url, h, _accepted(sell))


def test_buying_with_what_an_ioc_left_unspent_waits_for_the_ledger(system: RunningSystem) -> None:
    """An immediate-or-cancel buy that does not fill is canceled by the engine; only the
    ledger releases its hold (a user's own cancel releases it at once). Buying again with that
    cash right away must wait for the ledger, not be refused for buying power it still holds."""
    url = system.url
    token, _ = signup_http(url, "rebuy-after-ioc@example.com")
    h = {"authorization": f"Bearer {token}"}
    cash = Decimal(httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]["cash"])
    # 90% of the cash at $1.00 (IBM trades near $180: it cannot fill): a second fits only once
    # the first is released
    body = {**RESTING_BUY, "qty": str((cash * Decimal("0.9")).to_integral_value())}
    with _ledger_behind(system):
        ioc = httpx.post(f"{url}/api/mbt/orders", headers=h, json={**body, "time_in_force": "ioc"})
        assert ioc.status_code == 200, ioc.text
        oid = ioc.json()["data"]["id"]
        wait_for(
            lambda: (
                httpx.get(f"{url}/api/mbt/orders/{oid}", headers=h).json()["data"]["status"]
                == "canceled"
                or None
            ),
            what="the engine to cancel the IOC",
        )
        second = _once_the_ledger_resumes(
            system, lambda: httpx.post(f"{url}/api/mbt/orders", headers=h, json=body)
        )
    # refused for the buying power the IOC still held in the ledger, before the fix
    assert second.status_code == 200, second.text
    account = httpx.get(f"{url}/api/mbt/account", headers=h).json()["data"]
    assert Decimal(account["held_for_orders"]) == Decimal(body["qty"]) * Decimal("1.00")


def test_positions_and_activities_read_right_after_a_fill_show_it(system: RunningSystem) -> None:
    url = system.url
    token, _ = signup_http(url, "read-after-fill@example.com")
    h = {"authorization": f"Bearer {token}"}

    def get(path: str) -> httpx.Response:
        r = httpx.get(f"{url}/api/mbt/{path}", headers=h, timeout=30)
        assert r.status_code == 200, r.text
        return r

    with _ledger_behind(system):
        oid = _accepted(_order(url, h, "buy", "3"))
        _filled(url, h, oid)
        # each read waits for the ledger (each was answered at once, without the fill, before)
        activities, positions = _once_the_ledger_resumes(
            system, lambda: (get("activities"), get("positions"))
        )
    fills = [x for x in activities.json()["data"]["activities"] if x["activity_type"] == "fill"]
    assert [(x["symbol"], x["qty"]) for x in fills] == [("IBM", "3")], fills
    assert [(p["symbol"], p["qty"]) for p in positions.json()["data"]["positions"]] == [
        ("IBM", "3")
    ]


def test_a_cancel_or_replace_does_not_wait_for_the_ledger(system: RunningSystem) -> None:
    """A user's cancel and replace release the hold themselves: the next order (the
    replacement, or a new one) is decided at once, even while the ledger is behind."""
    url = system.url
    token, _ = signup_http(url, "amend-while-behind@example.com")
    h = {"authorization": f"Bearer {token}"}
    with _ledger_behind(system):
        first = _accepted(httpx.post(f"{url}/api/mbt/orders", headers=h, json=RESTING_BUY))
        started = time.monotonic()
        r = httpx.patch(f"{url}/api/mbt/orders/{first}", headers=h, json={"limit_price": "1.10"})
        replacement = _accepted(r)
        c = httpx.delete(f"{url}/api/mbt/orders/{replacement}", headers=h)
        assert c.status_code == 200 and c.json()["data"]["status"] == "canceled", c.text
        _accepted(httpx.post(f"{url}/api/mbt/orders", headers=h, json=RESTING_BUY))
        took = time.monotonic() - started
    # each would wait out the ledger (2 s) if it waited for the replace or the cancel
    assert took < LEDGER_WAIT_S, took

"""The submit pipeline's hold stage while the accounts ledger is behind one user.

Accounts answers LEDGER_BEHIND for a user whose newest fill or order end its ledger has not
applied; here a scripted stand-in for that one RPC answers so. The user's orders must then be
decided in the order they came, other users' orders must not wait, and a hold must stop
waiting after LEDGER_WAIT_S.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from services.orders import accept
from services.orders.accept import PendingSubmit, SubmitPipeline
from services.orders.domain.model import OrderType, Side, TimeInForce
from services.orders.ledger_marks import LedgerMarks
from services.orders.validation import OrderIntent
from services.platform.errors import LEDGER_BEHIND, Unavailable

pytestmark = pytest.mark.anyio


class Accounts:
    """PlaceHolds as accounts answers it: LEDGER_BEHIND for the users in `behind` whose hold
    names an event to wait for, else placed. Records each request's order ids."""

    def __init__(self) -> None:
        self.behind: set[str] = set()
        self.asked: list[list[str]] = []

    async def call(self, request: acct_pb.PlaceHoldsRequest) -> acct_pb.PlaceHoldsResponse:
        self.asked.append([h.order_id for h in request.holds])
        out = acct_pb.PlaceHoldsResponse()
        for h in request.holds:
            if h.user_id in self.behind and h.after_event:
                out.results.add().error.CopyFrom(
                    Unavailable("ledger behind", reason=LEDGER_BEHIND).to_status()
                )
            else:
                out.results.add().hold.account_id = f"acct-{h.user_id}"
        return out


def _pipeline(accounts: Accounts, marks: LedgerMarks) -> SubmitPipeline:
    pipeline = SubmitPipeline.__new__(SubmitPipeline)
    pipeline.app = SimpleNamespace(  # type: ignore[assignment]
        holds=accounts, ledger_marks=marks, sim_now=datetime(2024, 1, 2, 15, tzinfo=UTC)
    )
    pipeline._hold_q = asyncio.Queue()
    pipeline._ledger_waits = {}
    pipeline._side_tasks = set()
    return pipeline


def _order(user: str, name: str) -> PendingSubmit:
    intent = OrderIntent(
        "IBM", Side.SELL, Decimal(1), OrderType.MARKET, TimeInForce.DAY, None, None, name
    )
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    return PendingSubmit(name, user, name, intent, Decimal(0), None, datetime.now(UTC), done)


def _marks_with_a_fill(user: str) -> LedgerMarks:
    from raxx.mbt.v1 import events_pb2

    marks = LedgerMarks()
    fill = events_pb2.FillEvent(user_id=user).SerializeToString()
    marks.committed([(f"mbt.fills.acct-{user}", fill, f"{uuid.uuid4()}:1", 0)])
    return marks


async def _drain(q: asyncio.Queue[PendingSubmit]) -> list[str]:
    out = []
    while not q.empty():
        out.append(q.get_nowait().order_id)
    return out


async def test_a_users_orders_wait_in_order_and_others_go_on() -> None:
    accounts = Accounts()
    pipeline = _pipeline(accounts, _marks_with_a_fill("u"))
    accounts.behind = {"u"}
    passed = await pipeline._hold([_order("u", "a")])
    assert passed == [] and accounts.asked == [["a"]]
    # the ledger catches up while "a" waits: "b" (same user) must not overtake it
    accounts.behind = set()
    passed = await pipeline._hold([_order("u", "b"), _order("v", "c")])
    assert [p.order_id for p in passed] == ["c"] and accounts.asked[-1] == ["c"]
    await asyncio.sleep(accounts_retry_s() * 3)
    assert await _drain(pipeline._hold_q) == ["a", "b"]


async def test_a_hold_stops_waiting_after_the_longest_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accept, "LEDGER_WAIT_S", 0.05)
    accounts = Accounts()
    marks = _marks_with_a_fill("u")
    pipeline = _pipeline(accounts, marks)
    accounts.behind = {"u"}  # and never catches up
    waiting = [_order("u", "a"), _order("u", "b")]
    rounds = 0
    while waiting:
        rounds += 1
        assert rounds < 100, "never decided"
        await pipeline._hold(waiting)
        await asyncio.sleep(accounts_retry_s() * 3)
        q = pipeline._hold_q
        waiting = [q.get_nowait() for _ in range(q.qsize())]
    # both decided together in order, without the event; the next order does not wait for it
    assert accounts.asked[-1] == ["a", "b"]
    assert marks.after("u") == ""


def accounts_retry_s() -> float:
    return accept.LEDGER_RETRY_S[1]

"""One attempt per client_order_id in the submit pipeline at a time, whatever its caller does.

A strategy whose submit timed out retries with the same client_order_id while the first
attempt may still be deciding. The retry must wait for that attempt and answer with its order
(or, if it was refused, be a new attempt), never run beside it: two attempts in one batch
could both be decided, the second refused for the buying power the first took.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from services.orders import records
from services.orders.accept import SubmitPipeline
from services.orders.domain.model import OrderType, Side, TimeInForce
from services.orders.validation import OrderIntent

pytestmark = pytest.mark.anyio
INTENT = OrderIntent(
    "IBM", Side.BUY, Decimal(1), OrderType.LIMIT, TimeInForce.GTC, Decimal(1), None, "coid-1"
)


def _pipeline(placed: dict[str, dict[str, Any]]) -> SubmitPipeline:
    pipeline = SubmitPipeline.__new__(SubmitPipeline)
    pipeline.app = SimpleNamespace(db=None)  # type: ignore[assignment]
    pipeline._hold_q = asyncio.Queue()
    pipeline._in_flight = {}

    async def repeat(user_id: str, coid: str, intent: OrderIntent) -> dict[str, Any]:
        return placed[coid]

    pipeline.repeat = repeat  # type: ignore[method-assign]
    return pipeline


async def _submit(pipeline: SubmitPipeline, order_id: str) -> dict[str, Any]:
    return await pipeline.submit(
        order_id, "u1", "coid-1", INTENT, Decimal(1), None, datetime.now(UTC)
    )


async def test_a_retry_waits_for_the_attempt_whose_caller_gave_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    by_coid: dict[str, dict[str, Any]] = {}

    async def fetch(db: Any, user_id: str, coid: str, placed: bool = False) -> Any:
        return by_coid.get(coid)

    monkeypatch.setattr(records, "fetch_by_client_id", fetch)
    pipeline = _pipeline(by_coid)
    first = asyncio.create_task(_submit(pipeline, "order-a"))
    await asyncio.sleep(0)
    assert pipeline._hold_q.qsize() == 1
    first.cancel()  # the caller's deadline passed; the attempt stays in the pipeline
    await asyncio.sleep(0)
    retry = asyncio.create_task(_submit(pipeline, "order-b"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert pipeline._hold_q.qsize() == 1 and not retry.done()  # waits, not beside it

    attempt = pipeline._hold_q.get_nowait()
    row = {"id": attempt.order_id, "client_order_id": "coid-1", "status": "accepted"}
    by_coid["coid-1"] = row
    attempt.done.set_result(row)  # the first attempt is accepted
    assert await asyncio.wait_for(retry, 1) == row  # the retry answers with that order
    assert pipeline._in_flight == {}


async def test_after_a_refused_attempt_the_retry_is_a_new_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fetch(db: Any, user_id: str, coid: str, placed: bool = False) -> Any:
        return None  # refused attempts do not hold the id

    monkeypatch.setattr(records, "fetch_by_client_id", fetch)
    pipeline = _pipeline({})
    first = asyncio.create_task(_submit(pipeline, "order-a"))
    await asyncio.sleep(0)
    retry = asyncio.create_task(_submit(pipeline, "order-b"))
    await asyncio.sleep(0)
    attempt = pipeline._hold_q.get_nowait()
    attempt.done.set_exception(RuntimeError("insufficient buying power"))
    with pytest.raises(RuntimeError):
        await first
    for _ in range(5):
        await asyncio.sleep(0)
    again = pipeline._hold_q.get_nowait()  # the retry went in, as its own order
    assert again.order_id == "order-b" and not retry.done()
    again.done.set_result({"id": "order-b"})
    assert (await retry)["id"] == "order-b"

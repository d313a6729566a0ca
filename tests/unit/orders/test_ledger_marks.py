"""Orders remembers the newest ledger event per user, for that user's next hold to wait for."""

from __future__ import annotations

import time

from raxx.mbt.v1 import events_pb2
from services.orders.ledger_marks import LedgerMarks


def _fill(user: str) -> bytes:
    return events_pb2.FillEvent(user_id=user).SerializeToString()


def _order(user: str) -> bytes:
    return events_pb2.OrderEvent(user_id=user).SerializeToString()


def test_the_newest_fill_or_order_end_of_each_user_is_what_a_hold_waits_for() -> None:
    marks = LedgerMarks()
    marks.committed(
        [
            ("mbt.fills.acct-a", _fill("a"), "exec-1", 3),
            ("mbt.fills.acct-a", _fill("a"), "exec-2", 3),
            ("mbt.orders.acct-b", _order("b"), "ord-1:canceled:x", 5),
            # the ledger does not act on updates (accepted, working): nothing to wait for
            ("mbt.updates.acct-c", _order("c"), "ord-2:accepted:y", 1),
        ]
    )
    assert (marks.after("a"), marks.after("b"), marks.after("c")) == (
        "exec-2",
        "ord-1:canceled:x",
        "",
    )
    marks.committed([("mbt.orders.acct-a", _order("a"), "ord-3:canceled:z", None)])
    assert marks.after("a") == "ord-3:canceled:z"


def test_an_old_event_is_not_waited_for() -> None:
    marks = LedgerMarks(keep_s=0.05)
    marks.committed([("mbt.fills.acct-a", _fill("a"), "exec-1", 0)])
    assert marks.after("a") == "exec-1"
    time.sleep(0.06)
    assert marks.after("a") == ""
    marks.committed([("mbt.fills.acct-b", _fill("b"), "exec-2", 0)])  # prunes "a"
    assert marks.after("b") == "exec-2" and "a" not in marks._marks


def test_an_order_whose_hold_orders_released_itself_is_not_waited_for() -> None:
    """A user's cancel or replace releases the hold at once: the next hold waits for the fill
    before it, not for the ledger to apply the cancel."""
    marks = LedgerMarks()
    marks.committed([("mbt.fills.acct-a", _fill("a"), "exec-1", 0)])
    marks.committed([("mbt.orders.acct-a", _order("a"), "ord-9:canceled:x", 0)])
    assert marks.after("a") == "ord-9:canceled:x"
    marks.released("a", "ord-9")
    assert marks.after("a") == "exec-1"
    marks.released("a", "ord-1")  # not this user's newest: nothing changes
    assert marks.after("a") == "exec-1"
    marks.committed([("mbt.orders.acct-b", _order("b"), "ord-7:replaced:y", 0)])
    marks.released("b", "ord-7")
    assert marks.after("b") == ""

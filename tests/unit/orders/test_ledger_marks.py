"""Orders remembers the newest ledger event per user, for that user's next hold to wait for.

Message ids are shaped as orders makes them: a fill's is its execution id, `<order id>:<n>`;
an order event's is `<order id>:<event>:<random>` (`services.orders.records.order_event`).
"""

from __future__ import annotations

import time

from raxx.mbt.v1 import events_pb2
from services.orders.ledger_marks import LedgerMarks


def _fill(user: str) -> bytes:
    return events_pb2.FillEvent(user_id=user).SerializeToString()


def _end(user: str, order_id: str) -> bytes:
    ev = events_pb2.OrderEvent(user_id=user)
    ev.order.id = order_id
    return ev.SerializeToString()


def test_the_newest_fill_or_order_end_of_each_user_is_what_a_hold_waits_for() -> None:
    marks = LedgerMarks()
    marks.committed(
        [
            ("mbt.fills.acct-a", _fill("a"), "o1:1", 3),
            ("mbt.fills.acct-a", _fill("a"), "o1:2", 3),
            ("mbt.orders.acct-b", _end("b", "o2"), "o2:canceled:x", 5),
            # the ledger does not act on updates (accepted, working): nothing to wait for
            ("mbt.updates.acct-c", _end("c", "o3"), "o3:accepted:y", 1),
        ]
    )
    assert (marks.after("a"), marks.after("b"), marks.after("c")) == ("o1:2", "o2:canceled:x", "")
    marks.committed([("mbt.orders.acct-a", _end("a", "o4"), "o4:expired:z", None)])
    assert marks.after("a") == "o4:expired:z"


def test_an_old_event_is_not_waited_for() -> None:
    marks = LedgerMarks(keep_s=0.05)
    marks.committed([("mbt.fills.acct-a", _fill("a"), "o1:1", 0)])
    assert marks.after("a") == "o1:1"
    time.sleep(0.06)
    assert marks.after("a") == ""
    marks.committed([("mbt.fills.acct-b", _fill("b"), "o2:1", 0)])  # prunes "a"
    assert marks.after("b") == "o2:1" and "a" not in marks._marks


def test_a_cancel_orders_released_itself_is_not_waited_for_but_the_fills_before_it_are() -> None:
    """A user's cancel or replace releases the hold at once: the next hold waits for the
    order's fills (their ids start with the order id too), not for the cancel."""
    marks = LedgerMarks()
    marks.committed([("mbt.fills.acct-a", _fill("a"), "o9:1", 0)])  # a partial fill of o9
    marks.committed([("mbt.orders.acct-a", _end("a", "o9"), "o9:canceled:x", 0)])
    assert marks.after("a") == "o9:canceled:x"
    marks.released("a", "o9")
    assert marks.after("a") == "o9:1"
    marks.released("a", "o1")  # another order: nothing changes
    assert marks.after("a") == "o9:1"
    marks.committed([("mbt.orders.acct-b", _end("b", "o7"), "o7:replaced:y", 0)])
    marks.released("b", "o7")
    assert marks.after("b") == ""


def test_many_cancels_do_not_push_out_the_fill_before_them() -> None:
    marks = LedgerMarks()
    marks.committed([("mbt.fills.acct-a", _fill("a"), "o0:1", 0)])
    ends = [(f"o{k}", f"o{k}:canceled:x") for k in range(1, 21)]
    marks.committed([("mbt.orders.acct-a", _end("a", o), m, 0) for o, m in ends])
    for o, _ in ends:
        marks.released("a", o)
    assert marks.after("a") == "o0:1"


def test_an_event_waited_for_in_vain_is_not_waited_for_again() -> None:
    marks = LedgerMarks()
    marks.committed([("mbt.fills.acct-a", _fill("a"), "o1:1", 0)])
    marks.gave_up("a", "o1:1")
    assert marks.after("a") == ""
    marks.committed([("mbt.fills.acct-a", _fill("a"), "o1:2", 0)])  # a newer one is
    assert marks.after("a") == "o1:2"

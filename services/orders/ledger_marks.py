"""The newest ledger event orders committed for each user, so a hold can wait for the ledger.

Accounts decides a hold from its ledger, which applies fills (and orders' ends, which release
holds) from JetStream a moment after orders commits them. A strategy that sells what it has just
seen filled, or buys with what a cancel has just freed, would be decided on the ledger from
before that event and refused. So each hold carries the message id of the newest such event
this process committed for the user, and accounts waits until its ledger has applied it
(`applied_events`, its inbox). Only recent events count: after `KEEP_S` the ledger has long
applied them (or is down, and waiting would not help).

Per process and in memory: after a restart, events committed by the process before it are not
waited for (the ledger has had the restart's seconds to apply them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from raxx.mbt.v1 import events_pb2
from services.platform.bus import FILLS_SUBJECT, ORDERS_SUBJECT
from services.platform.outbox import OutboxRow

KEEP_S = 60.0
RECENT = 8  # events remembered per user (newest last), so a released order's end can be dropped
_FILLS, _ORDERS = f"{FILLS_SUBJECT}.", f"{ORDERS_SUBJECT}."


class LedgerMarks:
    def __init__(self, keep_s: float = KEEP_S) -> None:
        self.keep_s = keep_s
        self._marks: dict[str, list[tuple[str, float]]] = {}  # user id -> [(message id, when)]
        self._pruned = time.monotonic()

    def committed(self, rows: Sequence[OutboxRow]) -> None:
        """Note the ledger's events among a unit of work's committed outbox rows (every fill,
        and every order event on the ledger's subjects: the ledger applies each of those)."""
        now = time.monotonic()
        for subject, payload, msg_id, _ in rows:
            if subject.startswith(_FILLS):
                user = events_pb2.FillEvent.FromString(payload).user_id
            elif subject.startswith(_ORDERS):
                user = events_pb2.OrderEvent.FromString(payload).user_id
            else:
                continue
            recent = self._marks.setdefault(user, [])
            recent.append((msg_id, now))
            del recent[:-RECENT]
        if now - self._pruned > self.keep_s:
            self._pruned = now
            self._marks = {u: m for u, m in self._marks.items() if now - m[-1][1] <= self.keep_s}

    def released(self, user_id: str, order_id: str) -> None:
        """Orders released the order's hold itself (a user's cancel or replace): the ledger's
        applying its end frees nothing, so it is not waited for (what came before it still is).
        An order event's message id starts with the order id."""
        recent = self._marks.get(user_id)
        if recent is None:
            return
        recent[:] = [m for m in recent if not m[0].startswith(f"{order_id}:")]
        if not recent:
            del self._marks[user_id]

    def after(self, user_id: str) -> str:
        """The message id the user's next hold waits for the ledger to apply; "" for none."""
        recent = self._marks.get(user_id)
        if not recent or time.monotonic() - recent[-1][1] > self.keep_s:
            return ""
        return recent[-1][0]

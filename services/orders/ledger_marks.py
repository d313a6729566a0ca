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
from dataclasses import dataclass, field

from raxx.mbt.v1 import events_pb2
from services.platform.bus import FILLS_SUBJECT, ORDERS_SUBJECT
from services.platform.outbox import OutboxRow

KEEP_S = 60.0
RECENT_ENDS = 8  # order ends remembered per user after their newest fill
_FILLS, _ORDERS = f"{FILLS_SUBJECT}.", f"{ORDERS_SUBJECT}."


@dataclass
class _Marks:
    """A user's newest fill and the order ends after it (oldest first): the ledger applies an
    account's events in order, so the newest of them is the one to wait for."""

    fill: str = ""
    ends: list[tuple[str, str]] = field(default_factory=list)  # (order id, message id)
    at: float = 0.0  # when the newest was committed (monotonic)
    given_up: str = ""  # the event a hold waited for in vain: not waited for again

    @property
    def newest(self) -> str:
        return self.ends[-1][1] if self.ends else self.fill


class LedgerMarks:
    def __init__(self, keep_s: float = KEEP_S) -> None:
        self.keep_s = keep_s
        self._marks: dict[str, _Marks] = {}
        self._pruned = time.monotonic()

    def committed(self, rows: Sequence[OutboxRow]) -> None:
        """Note the ledger's events among a unit of work's committed outbox rows (every fill,
        and every order event on the ledger's subjects: the ledger applies each of those)."""
        now = time.monotonic()
        for subject, payload, msg_id, _ in rows:
            if subject.startswith(_FILLS):
                user = events_pb2.FillEvent.FromString(payload).user_id
                m = self._marks.setdefault(user, _Marks())
                m.fill, m.ends = msg_id, []  # what came before it is applied before it
            elif subject.startswith(_ORDERS):
                order = events_pb2.OrderEvent.FromString(payload)
                m = self._marks.setdefault(order.user_id, _Marks())
                m.ends.append((order.order.id, msg_id))
                del m.ends[:-RECENT_ENDS]
            else:
                continue
            m.at = now
        if now - self._pruned > self.keep_s:
            self._pruned = now
            self._marks = {u: m for u, m in self._marks.items() if now - m.at <= self.keep_s}

    def released(self, user_id: str, order_id: str) -> None:
        """Orders released the order's hold itself (a user's cancel or replace): the ledger's
        applying the order's end frees nothing more, so it is not waited for (the fills before
        it still are)."""
        m = self._marks.get(user_id)
        if m is not None:
            m.ends = [e for e in m.ends if e[0] != order_id]

    def gave_up(self, user_id: str, msg_id: str) -> None:
        """A hold waited for ``msg_id`` as long as it may: the next ones do not wait for it."""
        m = self._marks.get(user_id)
        if m is not None:
            m.given_up = msg_id

    def after(self, user_id: str) -> str:
        """The message id the user's next hold waits for the ledger to apply; "" for none."""
        m = self._marks.get(user_id)
        if m is None or time.monotonic() - m.at > self.keep_s or m.newest == m.given_up:
            return ""
        return m.newest

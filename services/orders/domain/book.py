"""Per-symbol books of waiting orders, indexed so that a quote which fills nothing costs O(1).

Each book holds:
- ``arriving``: single-leg orders that have not yet seen a usable quote after acceptance (and
  market orders still waiting for a bid or for size), in acceptance order;
- four binary heaps of resting orders, each keyed so that the orders a quote reaches are
  exactly those with ``key <= bound`` and the most urgent sits on top:

  =========== ======= ===================== =====
  heap        key     reached when (touch)  bound
  =========== ======= ===================== =====
  buy_limits  -limit  ask <= limit          -ask
  sell_limits limit   bid >= limit          bid
  buy_stops   stop    ask >= stop           ask
  sell_stops  -stop   bid <= stop           -bid
  =========== ======= ===================== =====

  Entries are ``(key, acceptance sequence, order)``: price priority, then time priority, and the
  order itself is never compared. A canceled or expired order is left in place ("lazy
  deletion") and skipped when it surfaces; `compact` drops such entries once they are many.
- ``multileg``: multi-leg orders having a leg on this symbol (re-priced on each of its quotes);
- ``told``: per heap, how far a deferral reason has been broadcast (see the engine).
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from services.orders.domain.model import Order, Side

__all__ = [
    "BUY_LIMITS",
    "BUY_STOPS",
    "HeapEntry",
    "SELL_LIMITS",
    "SELL_STOPS",
    "SymbolBook",
    "reached",
]

HeapEntry = tuple[Decimal, int, Order]
BUY_LIMITS, SELL_LIMITS, BUY_STOPS, SELL_STOPS = range(4)


def reached(heap: list[HeapEntry], bound: Decimal, strict: bool) -> list[Order]:
    """Open orders in ``heap`` with key <= bound (< when strict), without popping them.

    A depth-first walk that stops at the first key past the bound on every path: O(k) for k hits.
    """
    out: list[Order] = []
    stack = [0] if heap else []
    n = len(heap)
    while stack:
        i = stack.pop()
        key, _, order = heap[i]
        if key < bound or (key == bound and not strict):
            if order.is_open:
                out.append(order)
            for child in (2 * i + 1, 2 * i + 2):
                if child < n:
                    stack.append(child)
    return out


class SymbolBook:
    __slots__ = (
        "symbol",
        "arriving",
        "arriving_reason",
        "buy_limits",
        "sell_limits",
        "buy_stops",
        "sell_stops",
        "multileg",
        "dead",
        "told",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.arriving: dict[str, Order] = {}
        # The deferral reason every arriving order was last told, or None if they may differ.
        self.arriving_reason: str | None = None
        self.buy_limits: list[HeapEntry] = []
        self.sell_limits: list[HeapEntry] = []
        self.buy_stops: list[HeapEntry] = []
        self.sell_stops: list[HeapEntry] = []
        self.multileg: dict[str, Order] = {}
        self.dead = 0  # lazily deleted heap entries
        # Per heap (BUY_LIMITS..SELL_STOPS): (reason, bound) of the last deferral broadcast;
        # every order then in the heap with key <= bound has been told that reason.
        self.told: list[tuple[str, Decimal] | None] = [None, None, None, None]

    def add_arriving(self, order: Order) -> None:
        self.arriving[order.id] = order
        self.arriving_reason = None

    def rest_limit(self, order: Order, seq: int) -> None:
        limit = order.limit_price
        assert limit is not None
        if order.side is Side.BUY:
            heapq.heappush(self.buy_limits, (-limit, seq, order))
            self.told[BUY_LIMITS] = None
        else:
            heapq.heappush(self.sell_limits, (limit, seq, order))
            self.told[SELL_LIMITS] = None

    def rest_stop(self, order: Order, seq: int) -> None:
        stop = order.stop_price
        assert stop is not None
        if order.side is Side.BUY:
            heapq.heappush(self.buy_stops, (stop, seq, order))
            self.told[BUY_STOPS] = None
        else:
            heapq.heappush(self.sell_stops, (-stop, seq, order))
            self.told[SELL_STOPS] = None

    @property
    def resting_count(self) -> int:
        return (
            len(self.buy_limits)
            + len(self.sell_limits)
            + len(self.buy_stops)
            + len(self.sell_stops)
            - self.dead
        )

    def note_removed(self) -> None:
        """A resting order left the book (canceled/expired); compact when half is dead."""
        self.dead += 1
        if self.dead > 64 and self.dead * 2 > self.resting_count + self.dead:
            self.compact()

    def forget_told(self) -> None:
        self.told = [None, None, None, None]

    def heaps(self) -> tuple[list[HeapEntry], ...]:
        """The four heaps, indexed by BUY_LIMITS, SELL_LIMITS, BUY_STOPS, SELL_STOPS."""
        return (self.buy_limits, self.sell_limits, self.buy_stops, self.sell_stops)

    def compact(self) -> None:
        for heap in (self.buy_limits, self.sell_limits, self.buy_stops, self.sell_stops):
            live = [entry for entry in heap if entry[2].is_open]
            heapq.heapify(live)
            heap[:] = live
        self.dead = 0

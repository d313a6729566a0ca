"""Monthly paper cycles, the graduation record, worked out from end-of-day equity."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.accounts.domain.cycles import (
    consecutive_profitable,
    last_session_of_month,
    monthly_cycles,
)


def weekday(d: date) -> bool:  # sessions on weekdays (holidays do not matter here)
    return d.weekday() < 5


def test_last_session_of_month_skips_the_weekend() -> None:
    assert last_session_of_month(2024, 8, weekday) == date(2024, 8, 30)  # the 31st is a Saturday
    assert last_session_of_month(2024, 12, weekday) == date(2024, 12, 31)


def test_cycles_chain_month_ends_and_the_open_month_is_incomplete() -> None:
    pts = [
        (date(2024, 5, 15), Decimal("101000")),
        (date(2024, 5, 31), Decimal("102000")),  # May: 100,000 -> 102,000
        (date(2024, 6, 28), Decimal("101500")),  # June: loss
        (date(2024, 7, 31), Decimal("103000")),  # July: gain
        (date(2024, 8, 30), Decimal("104000")),  # August: gain
        (date(2024, 9, 10), Decimal("109000")),  # September is still open
    ]
    cycles = monthly_cycles(pts, Decimal("100000"), weekday)
    assert [c.month for c in cycles] == ["2024-05", "2024-06", "2024-07", "2024-08", "2024-09"]
    assert [c.complete for c in cycles] == [True, True, True, True, False]
    assert cycles[0].start_equity == Decimal("100000") and cycles[0].profit_loss == 2000
    assert cycles[1].start_equity == Decimal("102000") and not cycles[1].profitable
    # the open month's gain does not count; June's loss breaks the earlier streak
    assert consecutive_profitable(cycles) == 2


def test_no_snapshots_no_cycles() -> None:
    assert consecutive_profitable(monthly_cycles([], Decimal("100000"), weekday)) == 0

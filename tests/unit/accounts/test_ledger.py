"""Average-cost ledger arithmetic, worked by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.accounts.domain.ledger import PositionState, apply_fill
from services.accounts.domain.profiles import ProfileError, Tier, starting_cash


def test_buy_then_add_averages_the_entry_price() -> None:
    e1 = apply_fill(PositionState(), "buy", D(10), D("182.35"))
    assert e1.cash_delta == D("-1823.50") and e1.position.qty == 10
    # 10 @ 182.35 + 5 @ 183.05 = 1823.50 + 915.25 = 2738.75 over 15 shares = 182.5833...
    e2 = apply_fill(e1.position, "buy", D(5), D("183.05"))
    assert e2.position.avg_entry_price == D("2738.75") / 15
    assert e2.realized_pl == 0


def test_sell_realizes_against_average_cost_and_keeps_basis() -> None:
    pos = PositionState(qty=D(10), avg_entry_price=D("182.35"))
    e = apply_fill(pos, "sell", D(4), D("185.10"))
    # (185.10 - 182.35) x 4 = 11.00
    assert e.realized_pl == D("11.00") and e.cash_delta == D("740.40")
    assert e.position.qty == 6 and e.position.avg_entry_price == D("182.35")
    closed = apply_fill(e.position, "sell", D(6), D("180.00"))
    assert closed.position.qty == 0 and closed.realized_pl == D("-14.10")
    assert closed.position.realized_pl == D("-3.10")


def test_crossing_zero_opens_at_the_fill_price() -> None:
    e = apply_fill(PositionState(qty=D(2), avg_entry_price=D(100)), "sell", D(5), D(110))
    assert e.realized_pl == D(20) and e.position.qty == -3 and e.position.avg_entry_price == D(110)


def test_options_use_the_contract_multiplier() -> None:
    e = apply_fill(PositionState(), "buy", D(1), D("2.15"), multiplier=100)
    assert e.cash_delta == D("-215.00")


def test_starting_cash_by_profile_and_cap() -> None:
    assert starting_cash("trial", Tier.FREE, None) == D(10000)
    assert starting_cash("income_builder", Tier.FREE, None) == D(50000)
    assert starting_cash("diversifier", Tier.FREE, None) == D(100000)
    assert starting_cash("trial", Tier.PRO, D(250000)) == D(250000)
    with pytest.raises(ProfileError, match="cap"):
        starting_cash("trial", Tier.FREE, D(1_000_000))
    with pytest.raises(ProfileError, match="unknown profile"):
        starting_cash("yolo", Tier.FREE, None)

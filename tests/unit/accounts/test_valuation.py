"""EOD snapshots, window P&L and portfolio history, worked by hand through the AAPL split."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction

import pytest

from services.accounts.domain.account import AccountLedger, AccountType, Fill
from services.accounts.domain.errors import MissingMark
from services.accounts.domain.instruments import Equity
from services.accounts.domain.money import round_cash
from services.accounts.domain.valuation import pnl_for_window, portfolio_history

AAPL = Equity("AAPL")
THU, FRI, MON, TUE = date(2014, 6, 5), date(2014, 6, 6), date(2014, 6, 9), date(2014, 6, 10)


def nxt(d: date) -> date:
    d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def test_snapshots_through_the_split_and_a_sale() -> None:
    acct = AccountLedger(AccountType.CASH, nxt)
    acct.deposit(D(10000), THU)
    s_thu = acct.snapshot(THU, {})
    assert s_thu.equity == 10000 and s_thu.unrealized_pl == 0
    # Fri: buy 10 AAPL @ 645.57 (the 2014-06-06 close in the factor file) = 6,455.70
    acct.apply_fill(Fill("x1", "o1", AAPL, "buy", D(10), D("645.57"), FRI, order_done=True))
    s_fri = acct.snapshot(FRI, {"AAPL": D("645.57")})
    assert s_fri.cash == D("3544.30") and s_fri.equity == 10000
    # Mon: 7-for-1 -> 70 @ 92.2242857...; close 93.70: mv 6,559.00, unrealized 103.30
    acct.apply_split("AAPL", Fraction(7), MON)
    s_mon = acct.snapshot(MON, {"AAPL": D("93.70")})
    assert s_mon.long_market_value == D("6559.00")
    assert round_cash(s_mon.cost_basis) == D("6455.70")
    assert round_cash(s_mon.unrealized_pl) == D("103.30") and s_mon.equity == D("10103.30")
    # Tue: sell 30 @ 94.25: realized 30 x (94.25 - 92.2242857) = 60.77; cash 6,371.80
    # 40 left, basis 3,688.97, close 94.25 -> mv 3,770.00, unrealized 81.03; equity 10,141.80
    acct.apply_fill(Fill("x2", "o2", AAPL, "sell", D(30), D("94.25"), TUE, order_done=True))
    s_tue = acct.snapshot(TUE, {"AAPL": D("94.25")})
    assert s_tue.cash == D("6371.80") and s_tue.equity == D("10141.80")
    assert round_cash(s_tue.realized_pl) == D("60.77")
    assert round_cash(s_tue.unrealized_pl) == D("81.03")
    # the P&L from Friday's close to Tuesday's: 141.80 = 60.77 realized + 81.03 unrealized
    w = pnl_for_window(s_fri, s_tue)
    assert w.total == D("141.80") and (w.start, w.end) == (FRI, TUE)
    assert round_cash(w.realized) == D("60.77") and round_cash(w.unrealized_change) == D("81.03")
    assert abs(w.income) < D("1e-20")
    # history since Thursday: the deposit is not profit
    h = portfolio_history([s_tue, s_fri, s_mon, s_thu])
    assert h.base_value == 10000
    assert [p.day for p in h.points] == [THU, FRI, MON, TUE]
    assert [p.equity for p in h.points] == [10000, 10000, D("10103.30"), D("10141.80")]
    assert [p.profit_loss for p in h.points] == [0, 0, D("103.30"), D("141.80")]
    assert h.points[-1].profit_loss_pct == D("0.01418")


def test_dividends_show_as_income_and_deposits_as_cashflow() -> None:
    acct = AccountLedger(AccountType.CASH, nxt)
    acct.deposit(D(50000), date(2013, 5, 7))
    acct.apply_fill(Fill("x1", "o1", AAPL, "buy", D(100), D("460.00"), date(2013, 5, 7)))
    before = acct.snapshot(date(2013, 5, 8), {"AAPL": D("463.84")})
    # ex-date 2013-05-09: 100 x 3.05 = 305.00; the price falls by about the dividend
    acct.apply_cash_dividend("AAPL", D("3.05"), date(2013, 5, 9))
    acct.deposit(D(1000), date(2013, 5, 9))
    after = acct.snapshot(date(2013, 5, 9), {"AAPL": D("460.79")})
    # equity 4,000 + 305 + 1,000 + 46,079 = 51,384.00; minus the 1,000 deposit -> +305 - 305
    w = pnl_for_window(before, after)
    assert after.equity == D("51384.00")
    assert w.income == D("305.00") and w.unrealized_change == D("-305.00") and w.total == 0
    h = portfolio_history([after], base=before)
    assert h.points[0].cashflow == 1000 and h.points[0].profit_loss == 0
    assert after.income == D("305.00")


def test_missing_close_and_empty_history() -> None:
    acct = AccountLedger(AccountType.CASH, nxt)
    acct.deposit(D(1000), FRI)
    acct.apply_fill(Fill("x1", "o1", AAPL, "buy", D(1), D(600), FRI))
    with pytest.raises(MissingMark, match="AAPL"):
        acct.snapshot(FRI, {})
    assert portfolio_history([]).points == ()
    s = acct.snapshot(FRI, {"AAPL": D(600)})
    with pytest.raises(ValueError):
        pnl_for_window(s, acct.snapshot(THU, {"AAPL": D(600)}))


@pytest.mark.parametrize(
    ("qty", "avg", "mark", "at_close", "expected"),
    [
        # held 2 at the close ($150 mark, $140 cost), marked $156 now: 2 x 6
        (D(2), D(140), D(156), (D(2), D(150), D(140)), D(12)),
        # and 8 more bought today at $155 (average (2 x 140 + 8 x 155) / 10 = 152): the 2 from
        # the close (+12), the 8 from what they cost (8 x (156 - 155) = +8)
        (D(10), D(152), D(156), (D(2), D(150), D(140)), D(20)),
        # the same from a snapshot without the average: the 8 from the position's average
        (D(10), D(152), D(156), (D(2), D(150), None), D(12) + D(32)),
        # held 10 at the close, 6 sold today: the 4 kept, from the close
        (D(4), D(140), D(156), (D(10), D(150), D(140)), D(24)),
        # short 5 at the close ($150), now $147: +15; 3 more shorted today at $149: +6 more
        (D(-5), D(160), D(147), (D(-5), D(150), D(160)), D(15)),
        (D(-8), D("155.875"), D(147), (D(-5), D(150), D(160)), D(15) + D(6)),
        # long 3 at the close, short 2 now (flipped today at $149): all from the cost
        (D(-2), D(149), D(147), (D(3), D(150), D(140)), D(4)),
        # opened today: from the cost
        (D(2), D(155), D(156), None, D(2)),
    ],
)
def test_intraday_pl_counts_what_was_held_at_the_close_from_the_close(
    qty: D, avg: D, mark: D, at_close: tuple[D, D, D | None] | None, expected: D
) -> None:
    from services.accounts.domain.valuation import intraday_pl

    assert intraday_pl(qty, avg, mark, at_close) == expected


def test_intraday_pl_of_option_contracts_is_per_100() -> None:
    from services.accounts.domain.valuation import intraday_pl

    assert intraday_pl(D(1), D("2.00"), D("2.50"), (D(1), D("2.10"), D("2.00")), 100) == D(40)

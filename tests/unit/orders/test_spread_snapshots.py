"""BRIEF §4 rule 6: a spread is priced on true snapshots — the latest quote of every leg as of
one instant, evaluated once after every quote of that instant is applied.

On the shipped GOOG option minutes (2015-12-23), where the legs' quotes share timestamps, the
expected fills are worked out here from the recorded quotes and the rule, independently of the
engine; and no fill depends on the order of the legs, of the quotes within an instant, or on
the legs' symbols.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.conventions.calendar import MarketCalendar
from services.marketdata.domain.recorded import RecordedArchive
from services.orders.domain import (
    FillPreference,
    Leg,
    Order,
    OrderFilled,
    Quote,
    Side,
)
from services.orders.domain.engine import EngineConfig, replay
from tests.unit.orders.matching_support import order

DAY = date(2015, 12, 23)
LONG, SHORT = "GOOG151224C00742500", "GOOG151224C00745000"  # the two most quoted calls
ACCEPTED = datetime(2015, 12, 23, 14, 45, 0, 500000, tzinfo=UTC)  # 09:45:00.5 ET
MAX_AGE = EngineConfig().max_quote_age
OPEN, CLOSE = datetime(2015, 12, 23, 14, 30, tzinfo=UTC), datetime(2015, 12, 23, 21, tzinfo=UTC)
CENT = Decimal("0.01")


def recorded(symbols: Iterable[str]) -> list[Quote]:
    """The legs' recorded quotes as the feed publishes them: by time, then symbol."""
    archive = RecordedArchive()
    quotes = [q for s in symbols for q in archive.load(s, DAY)]
    return sorted(quotes, key=lambda q: (q.ts, q.symbol))


def snapshots(
    quotes: Sequence[Quote], legs: Sequence[str], accepted: datetime
) -> Iterable[tuple[datetime, dict[str, Quote]]]:
    """Each instant after acceptance at which every leg has a usable quote: (instant, the
    latest quote of each leg as of it), from the rule, not from the engine."""
    latest: dict[str, Quote] = {}
    instants = sorted({q.ts for q in quotes})
    i = 0
    for t in instants:
        while i < len(quotes) and quotes[i].ts <= t:
            latest[quotes[i].symbol] = quotes[i]
            i += 1
        if not (OPEN <= t < CLOSE) or t <= accepted:
            continue
        snap = {s: latest[s] for s in legs if s in latest}
        usable = len(snap) == len(legs) and all(
            q.ts > accepted and t - q.ts <= MAX_AGE and 0 <= q.bid <= q.ask and q.ask > 0
            for q in snap.values()
        )
        if usable:
            yield t, snap


def vertical(limit: str | None, pref: FillPreference, legs: tuple[Leg, ...]) -> Order:
    o = order(
        "buy",
        "market" if limit is None else "limit",
        qty=1,
        limit=limit,
        symbol="GOOG",
        legs=legs,
        fill_preference=pref,
        tif="day",
    )
    return replace(o, accepted_at=ACCEPTED)


BULL_CALL = (Leg(LONG, Side.BUY, 1), Leg(SHORT, Side.SELL, 1))


def fills_of(orders: list[Order], quotes: list[Quote]) -> list[OrderFilled]:
    return [e for e in replay(orders, quotes, MarketCalendar()) if isinstance(e, OrderFilled)]


def test_legs_share_timestamps_in_the_shipped_minutes() -> None:
    quotes = recorded([LONG, SHORT])
    by_leg = {s: {q.ts for q in quotes if q.symbol == s} for s in (LONG, SHORT)}
    assert len(by_leg[LONG] & by_leg[SHORT]) > 300  # minute data: the same stamps on both


def test_a_market_spread_fills_on_the_first_true_snapshot() -> None:
    quotes = recorded([LONG, SHORT])
    t, snap = next(iter(snapshots(quotes, [LONG, SHORT], ACCEPTED)))
    natural = snap[LONG].ask - snap[SHORT].bid  # conservative buy: the natural debit
    mid = (snap[LONG].bid + snap[LONG].ask) / 2 - (snap[SHORT].bid + snap[SHORT].ask) / 2
    expected = max(natural, mid)
    [fill] = fills_of([vertical(None, FillPreference.CONSERVATIVE, BULL_CALL)], quotes)
    assert fill.ts == t and fill.price == expected
    assert [lf.quote for lf in fill.leg_fills] == [snap[LONG], snap[SHORT]]


def test_a_resting_aggressive_limit_fills_only_when_a_true_snapshot_reaches_it() -> None:
    """The limit is set just at the lowest mid any true snapshot reaches after the first one:
    it must fill at the first instant whose snapshot mid reaches it, never earlier on a leg's
    new quote paired with the other leg's previous one."""
    quotes = recorded([LONG, SHORT])
    snaps = list(snapshots(quotes, [LONG, SHORT], ACCEPTED))

    def mid(s: dict[str, Quote]) -> Decimal:
        return (s[LONG].bid + s[LONG].ask) / 2 - (s[SHORT].bid + s[SHORT].ask) / 2

    first_mid = mid(snaps[0][1])
    lowest = min(mid(s) for _, s in snaps[1:])
    assert lowest < first_mid  # the data gives the order something to wait for
    limit = lowest.quantize(CENT)
    if limit < lowest:
        limit += CENT
    t, snap = next((t, s) for t, s in snaps[1:] if mid(s) <= limit)
    natural = snap[LONG].ask - snap[SHORT].bid
    [fill] = fills_of([vertical(str(limit), FillPreference.AGGRESSIVE, BULL_CALL)], quotes)
    assert (fill.ts, fill.price) == (t, min(limit, natural))
    assert [lf.quote for lf in fill.leg_fills] == [snap[LONG], snap[SHORT]]


def test_leg_order_and_quote_order_within_an_instant_change_no_fill() -> None:
    quotes = recorded([LONG, SHORT])
    short_first = sorted(quotes, key=lambda q: (q.ts, q.symbol != SHORT))
    flipped = (BULL_CALL[1], BULL_CALL[0])
    mids = [
        (s[LONG].bid + s[LONG].ask) / 2 - (s[SHORT].bid + s[SHORT].ask) / 2
        for _, s in snapshots(quotes, [LONG, SHORT], ACCEPTED)
    ]
    resting = str(min(mids[1:]).quantize(CENT) + CENT)
    filled = set()
    for pref in FillPreference:
        for limit in (None, resting):
            a = fills_of([vertical(limit, pref, BULL_CALL)], quotes)
            b = fills_of([vertical(limit, pref, flipped)], short_first)
            if a:
                filled.add((pref, limit))
            assert [(f.ts, f.price) for f in a] == [(f.ts, f.price) for f in b]
            assert [{lf.symbol: lf.price for lf in f.leg_fills} for f in a] == [
                {lf.symbol: lf.price for lf in f.leg_fills} for f in b
            ]
    # nothing compared vacuously: every market order and the mid-reaching limits filled
    assert {(p, None) for p in FillPreference} | {
        (FillPreference.MID, resting),
        (FillPreference.AGGRESSIVE, resting),
    } <= filled


prices = st.integers(min_value=5, max_value=500).map(lambda c: Decimal(c) / 100)


@st.composite
def minute_quotes(draw: st.DrawFn) -> list[tuple[int, str, Decimal, Decimal]]:
    """Quotes for legs A, B, C on shared minutes: (minute, leg, bid, ask)."""
    rows = []
    for minute in range(1, draw(st.integers(min_value=2, max_value=8)) + 1):
        for leg in ("A", "B", "C"):
            if draw(st.booleans()) or minute == 1:
                bid = draw(prices)
                rows.append((minute, leg, bid, bid + draw(prices)))
    return rows


@settings(max_examples=60, deadline=None)
@given(
    rows=minute_quotes(),
    perm=st.permutations([0, 1, 2]),
    names=st.permutations(["ZETA", "ALPHA", "MU"]),
    limit=st.integers(min_value=-300, max_value=600),
    pref=st.sampled_from(list(FillPreference)),
)
def test_permuting_legs_and_renaming_symbols_changes_no_fill(
    rows: list[tuple[int, str, Decimal, Decimal]],
    perm: list[int],
    names: list[str],
    limit: int,
    pref: FillPreference,
) -> None:
    start = datetime(2013, 10, 7, 14, 0, tzinfo=UTC)
    # legs told apart by side and ratio (identical legs may share the residual either way)
    legs = (Leg("A", Side.BUY, 1), Leg("B", Side.SELL, 2), Leg("C", Side.SELL, 1))
    rename = dict(zip(("A", "B", "C"), names, strict=True))

    def run(leg_order: Sequence[int], mapping: dict[str, str], reverse: bool) -> list[object]:
        qs = [Quote(mapping[s], start + timedelta(minutes=m), b, a, 10, 10) for m, s, b, a in rows]
        # the feed's order: by time, then symbol; or each instant's quotes the other way round
        qs.sort(key=lambda q: (q.ts, q.symbol), reverse=reverse)
        qs.sort(key=lambda q: q.ts)  # stable: keeps the order within each instant
        my_legs = tuple(replace(legs[i], symbol=mapping[legs[i].symbol]) for i in leg_order)
        o = order(
            "buy",
            "limit",
            qty=1,
            limit=str(Decimal(limit) / 100),
            symbol="X",
            legs=my_legs,
            fill_preference=pref,
            at="2013-10-07T14:00:30",
        )
        back = {v: k for k, v in mapping.items()}
        return [
            (f.ts, f.price, sorted((back[lf.symbol], lf.price, lf.qty) for lf in f.leg_fills))
            for f in fills_of([o], qs)
        ]

    identity = {s: s for s in ("A", "B", "C")}
    assert run([0, 1, 2], identity, False) == run(perm, rename, True)

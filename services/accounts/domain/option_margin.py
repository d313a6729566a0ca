"""Options strategy requirements (BRIEF §4 rule 9; research/simulators.md §5).

Every figure is dollars: per-share amounts x multiplier (100) x contracts. The requirement is what
must be covered by the account's margin equity, which counts no option value (long options have
no loan value, and a short option's liability is carried inside its requirement), so:

- long call/put: the premium, paid in full when bought; nothing further once held;
- cash-secured put: strike x 100; the premium received is already in cash, so the order's
  buying-power effect is strike x 100 − premium (tastytrade: 6 x 11 x 100 − 450 = 6,150);
- vertical: a credit spread requires its strike width; a debit spread nothing beyond the debit
  paid (its most it can lose); the credit received again leaves an effect of width − credit;
- iron condor: the width of one side, the wider one (only one side can finish in the money);
- naked call: premium + max(20% x underlying − OTM amount, 10% x underlying);
  naked put: premium + max(20% x underlying − OTM amount, 10% x strike);
  "premium" is the option's current value (its mark), so a rising option raises the requirement;
- covered call (100 shares per contract held long): nothing beyond the stock's own margin.

``option_requirement`` groups an account's option positions by underlying and expiry, pairs shorts
with longs of the same right into verticals (sorted strikes matched in order, the cheapest pairing
for this convex cost), pairs call and put credit spreads into iron condors (widest with widest),
covers the remaining short calls with long stock and margins what is left as naked (or, in a cash
account, short puts as cash-secured). A broker's optimizer may find a cheaper grouping; this one
never asks for less than the positions can lose at expiry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from services.accounts.domain.errors import MissingMark
from services.accounts.domain.instruments import MarkedPosition, OptionContract, OptionRight
from services.accounts.domain.money import ZERO

__all__ = [
    "NAKED_MINIMUM_RATE",
    "NAKED_UNDERLYING_RATE",
    "cash_secured_put_requirement",
    "iron_condor_requirement",
    "long_option_requirement",
    "naked_option_requirement",
    "option_requirement",
    "vertical_spread_requirement",
]

NAKED_UNDERLYING_RATE = Decimal("0.20")
NAKED_MINIMUM_RATE = Decimal("0.10")
_HUNDRED = 100


def long_option_requirement(
    premium: Decimal, contracts: Decimal, multiplier: int = _HUNDRED
) -> Decimal:
    return premium * multiplier * contracts


def cash_secured_put_requirement(
    strike: Decimal, contracts: Decimal, multiplier: int = _HUNDRED
) -> Decimal:
    return strike * multiplier * contracts


def vertical_spread_requirement(
    right: OptionRight,
    short_strike: Decimal,
    long_strike: Decimal,
    contracts: Decimal,
    multiplier: int = _HUNDRED,
) -> Decimal:
    """Credit spread: strike width; debit spread: nothing (its debit was paid in cash)."""
    width = long_strike - short_strike if right is OptionRight.CALL else short_strike - long_strike
    return max(width, ZERO) * multiplier * contracts


def iron_condor_requirement(
    put_width: Decimal, call_width: Decimal, contracts: Decimal, multiplier: int = _HUNDRED
) -> Decimal:
    return max(put_width, call_width) * multiplier * contracts


def naked_option_requirement(
    right: OptionRight,
    strike: Decimal,
    underlying_price: Decimal,
    premium: Decimal,
    contracts: Decimal,
    multiplier: int = _HUNDRED,
) -> Decimal:
    if right is OptionRight.CALL:
        otm = max(strike - underlying_price, ZERO)
        floor = NAKED_MINIMUM_RATE * underlying_price
    else:
        otm = max(underlying_price - strike, ZERO)
        floor = NAKED_MINIMUM_RATE * strike
    per_share = premium + max(NAKED_UNDERLYING_RATE * underlying_price - otm, floor)
    return per_share * multiplier * contracts


# (per-contract width, contracts)
_Spreads = list[tuple[Decimal, Decimal]]
# (contract, mark, contracts)
_Legs = list[tuple[OptionContract, Decimal, Decimal]]


def option_requirement(
    positions: Iterable[MarkedPosition],
    underlying_prices: Mapping[str, Decimal],
    stock_qty: Mapping[str, Decimal],
    *,
    cash_account: bool = False,
) -> Decimal:
    """The requirement of every option position in ``positions`` (equities are ignored).

    ``underlying_prices`` must price every underlying with a naked short; ``stock_qty`` is the
    signed share count per underlying (long shares cover short calls).
    """
    groups: dict[tuple[str, date], dict[tuple[OptionRight, bool], _Legs]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in positions:
        c = p.instrument
        if isinstance(c, OptionContract) and p.qty != 0:
            groups[(c.underlying, c.expiry)][(c.right, p.qty > 0)].append((c, p.mark, abs(p.qty)))
    covering = {u: max(q, ZERO) for u, q in stock_qty.items()}
    total = ZERO
    for (underlying, _), legs in sorted(groups.items()):
        call_spreads, naked_calls = _pair(OptionRight.CALL, legs)
        put_spreads, naked_puts = _pair(OptionRight.PUT, legs)
        total += _condors(call_spreads, put_spreads)
        for c, mark, n in naked_calls:
            shares = covering.get(underlying, ZERO)
            covered = min(n, (shares / c.multiplier).to_integral_value(rounding=ROUND_FLOOR))
            covering[underlying] = shares - covered * c.multiplier
            if n > covered:
                total += _naked(c, mark, n - covered, underlying_prices)
        for c, mark, n in naked_puts:
            if cash_account:
                total += cash_secured_put_requirement(c.strike, n, c.multiplier)
            else:
                total += _naked(c, mark, n, underlying_prices)
    return total


def _naked(c: OptionContract, mark: Decimal, n: Decimal, prices: Mapping[str, Decimal]) -> Decimal:
    if c.underlying not in prices:
        raise MissingMark(c.underlying)
    return naked_option_requirement(c.right, c.strike, prices[c.underlying], mark, n, c.multiplier)


def _pair(
    right: OptionRight, legs: Mapping[tuple[OptionRight, bool], _Legs]
) -> tuple[_Spreads, _Legs]:
    """Match shorts with longs of one right in strike order; return spreads and unmatched shorts."""
    ascending = right is OptionRight.CALL  # calls: lowest longs cover best; puts: highest
    shorts = sorted(legs.get((right, False), []), key=lambda x: x[0].strike, reverse=not ascending)
    longs = sorted(legs.get((right, True), []), key=lambda x: x[0].strike, reverse=not ascending)
    spreads: _Spreads = []
    naked: _Legs = []
    li, long_left = 0, longs[0][2] if longs else ZERO
    for c, mark, n in shorts:
        while n > 0 and li < len(longs):
            k = min(n, long_left)
            req = vertical_spread_requirement(right, c.strike, longs[li][0].strike, Decimal(1), 1)
            spreads.append((req * c.multiplier, k))
            n -= k
            long_left -= k
            if long_left == 0:
                li += 1
                long_left = longs[li][2] if li < len(longs) else ZERO
        if n > 0:
            naked.append((c, mark, n))
    return spreads, naked


def _condors(calls: _Spreads, puts: _Spreads) -> Decimal:
    """Pair call and put spreads widest with widest; each pair needs only the wider side."""
    calls = sorted(calls, reverse=True)
    puts = sorted(puts, reverse=True)
    total = ZERO
    ci = pi = 0
    while ci < len(calls) and pi < len(puts):
        (cw, cn), (pw, pn) = calls[ci], puts[pi]
        k = min(cn, pn)
        total += max(cw, pw) * k
        calls[ci], puts[pi] = (cw, cn - k), (pw, pn - k)
        ci += calls[ci][1] == 0
        pi += puts[pi][1] == 0
    total += sum((w * n for w, n in calls[ci:]), ZERO)
    total += sum((w * n for w, n in puts[pi:]), ZERO)
    return total

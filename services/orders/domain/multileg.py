"""Multi-leg pricing (BRIEF §4 rule 6): the spread's quote, the fill preference, the leg split.

Prices are "as written": a leg the spread buys counts +ratio x price, a leg it sells -ratio x
price, so a debit is positive and a credit negative. On one snapshot (one quote per leg):

- spread **ask** (the natural debit): buy legs at their asks, sell legs at their bids;
- spread **bid**: buy legs at their bids, sell legs at their asks;
- spread **mid** = Σ sign x ratio x leg mid = (bid + ask) / 2; always bid <= mid <= ask.

A BUY order pays the net and its limit is a maximum; a SELL order (every leg on the opposite side)
receives it and its limit is a minimum. For a BUY (a SELL mirrors: bid for ask, >= for <=):

- ``CONSERVATIVE`` — "worse of mid and offer": the price is max(mid, ask), i.e. the natural; it
  fills when that is within the limit.
- ``MID`` — the price is the mid; it fills when the mid is within the limit, on any snapshot.
- ``AGGRESSIVE`` — "mid, then touch": on its first usable snapshot it fills at the mid if the mid
  is within the limit (price improvement to the mid, as an arriving single-leg limit improves to
  the ask). Otherwise it rests, and later fills *at its limit* on the first snapshot whose mid
  touches it (mid <= limit), as a resting single-leg limit does (§4 rule 3) — except that the
  price is never worse than the natural: min(limit, ask).

A market multi-leg (no limit) fills on its first usable snapshot at the natural (conservative) or
the mid (mid, aggressive).

Leg prices sum exactly to the net (`allocate_leg_prices`): at the mid each leg is at its mid, at
the natural each leg at its natural side. In between, each leg moves the same fraction of the way
from its mid toward its side, rounded to $0.0001 (half-even); the rounding remainder goes to the
first leg with ratio 1 (with no ratio-1 leg, it is spread by integer Bezout coefficients of the
ratios, which exist since their GCD is 1), so the sum is exact in Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from services.orders.domain.model import FillPreference, Leg, Quote, Side

__all__ = [
    "SpreadPrice",
    "SpreadQuote",
    "allocate_leg_prices",
    "leg_sign",
    "spread_capacity",
    "spread_price",
    "spread_quote",
]

_TWO = Decimal(2)
_STEP = Decimal("0.0001")


def leg_sign(leg: Leg) -> int:
    return 1 if leg.side is Side.BUY else -1


@dataclass(frozen=True, slots=True)
class SpreadQuote:
    bid: Decimal
    ask: Decimal
    mid: Decimal


@dataclass(frozen=True, slots=True)
class SpreadPrice:
    """A fill decision: the net price and which rule produced it ("mid", "natural", "limit")."""

    price: Decimal
    basis: str


def spread_quote(legs: Sequence[Leg], quotes: Sequence[Quote]) -> SpreadQuote:
    bid = ask = Decimal(0)
    for leg, q in zip(legs, quotes, strict=True):
        if leg.side is Side.BUY:
            bid += leg.ratio * q.bid
            ask += leg.ratio * q.ask
        else:
            bid -= leg.ratio * q.ask
            ask -= leg.ratio * q.bid
    return SpreadQuote(bid, ask, (bid + ask) / _TWO)


def spread_price(
    side: Side,
    preference: FillPreference,
    limit: Decimal | None,
    sq: SpreadQuote,
    rested: bool,
) -> SpreadPrice | None:
    """The net this snapshot fills the order at, or None if it does not fill (see module doc)."""
    buy = side is Side.BUY

    def within(price: Decimal) -> bool:
        return limit is None or (price <= limit if buy else price >= limit)

    if preference is FillPreference.CONSERVATIVE:
        natural = max(sq.mid, sq.ask) if buy else min(sq.mid, sq.bid)
        return SpreadPrice(natural, "natural") if within(natural) else None
    if not within(sq.mid):
        return None
    if preference is FillPreference.MID or not rested or limit is None:
        return SpreadPrice(sq.mid, "mid")
    # AGGRESSIVE, rested, mid touches the limit: the limit, never worse than the natural.
    if buy:
        return SpreadPrice(limit, "limit") if limit <= sq.ask else SpreadPrice(sq.ask, "natural")
    return SpreadPrice(limit, "limit") if limit >= sq.bid else SpreadPrice(sq.bid, "natural")


def spread_capacity(legs: Sequence[Leg], quotes: Sequence[Quote], side: Side) -> int:
    """Whole spreads the displayed sizes allow: min over legs of size on its side // ratio."""
    spreads: int | None = None
    for leg, q in zip(legs, quotes, strict=True):
        takes_ask = (leg.side is Side.BUY) == (side is Side.BUY)
        n = (q.ask_size if takes_ask else q.bid_size) // leg.ratio
        spreads = n if spreads is None else min(spreads, n)
    return spreads or 0


def allocate_leg_prices(
    legs: Sequence[Leg], quotes: Sequence[Quote], net: Decimal
) -> tuple[Decimal, ...]:
    """Per-leg prices with Σ sign x ratio x price == net exactly (see module doc)."""
    mids = [(q.bid + q.ask) / _TWO for q in quotes]
    mid = sum(
        (leg_sign(leg) * leg.ratio * m for leg, m in zip(legs, mids, strict=True)), Decimal(0)
    )
    # The endpoint on the net's side of the mid: the spread ask (hi) or the spread bid (lo).
    up = net >= mid
    ends = [
        (q.ask if (leg.side is Side.BUY) == up else q.bid)
        for leg, q in zip(legs, quotes, strict=True)
    ]
    end = sum(
        (leg_sign(leg) * leg.ratio * e for leg, e in zip(legs, ends, strict=True)), Decimal(0)
    )
    if net == mid:
        prices = list(mids)
    elif net == end:
        prices = list(ends)
    else:
        frac = (net - mid) / (end - mid) if end != mid else Decimal(0)
        prices = [
            (m + frac * (e - m)).quantize(_STEP, rounding=ROUND_HALF_EVEN)
            for m, e in zip(mids, ends, strict=True)
        ]
    total = sum(
        (leg_sign(leg) * leg.ratio * p for leg, p in zip(legs, prices, strict=True)), Decimal(0)
    )
    residual = net - total
    if residual:
        # which leg absorbs the sub-step residual must not depend on the order the legs were
        # written in (nor their symbols): decide it over the legs in a canonical order
        canon = sorted(
            range(len(legs)),
            key=lambda i: (legs[i].ratio, legs[i].side.value, quotes[i].bid, quotes[i].ask),
        )
        by_canon = _bezout([legs[i].ratio for i in canon])
        coeffs = [0] * len(legs)
        for i, c in zip(canon, by_canon, strict=True):
            coeffs[i] = c
        prices = [
            p + leg_sign(leg) * c * residual for leg, p, c in zip(legs, prices, coeffs, strict=True)
        ]
    return tuple(prices)


def _bezout(ratios: Sequence[int]) -> list[int]:
    """Integers x with Σ ratio_i x x_i == 1; just a 1 on the first ratio-1 leg if there is one."""
    for i, r in enumerate(ratios):
        if r == 1:
            return [1 if j == i else 0 for j in range(len(ratios))]
    g, coeffs = ratios[0], [1] + [0] * (len(ratios) - 1)
    for i in range(1, len(ratios)):
        g, a, b = _ext_gcd(g, ratios[i])
        coeffs = [c * a for c in coeffs]
        coeffs[i] = b
    if g != 1:
        raise ValueError(f"leg ratios {list(ratios)} must have GCD 1")
    return coeffs


def _ext_gcd(a: int, b: int) -> tuple[int, int, int]:
    """(g, x, y) with a*x + b*y == g == gcd(a, b)."""
    x0, y0, x1, y1 = 1, 0, 0, 1
    while b:
        q, a, b = a // b, b, a % b
        x0, x1 = x1, x0 - q * x1
        y0, y1 = y1, y0 - q * y1
    return a, x0, y0

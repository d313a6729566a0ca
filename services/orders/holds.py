"""How much buying power an order reserves while it is open (cash accounts).

- Equity buy: qty × limit (limit, stop-limit), or qty × current ask (stop: the higher of stop
  and ask) × a 2% collar for orders that fill at a later quote.
- Option buy: the same per contract × 100.
- Sells reserve the shares or contracts themselves (the accounts service checks them).
- Multi-leg (defined risk only): a debit reserves the net debit per spread (the limit, or the
  natural price with the collar); a credit reserves its maximum loss, the widest strike spread
  among legs of one right minus the credit, × 100 per spread.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_UP, Decimal

from services.conventions.occ import parse_occ
from services.orders.domain.model import Quote, Side
from services.orders.validation import OrderIntent
from services.platform.errors import InvalidArgument

MARKET_COLLAR = Decimal("1.02")
CONTRACT = 100
CENT = Decimal("0.01")


def _up(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_UP)


def single_hold(intent: OrderIntent, ask: Decimal) -> Decimal:
    if intent.side is Side.SELL:
        return Decimal(0)
    from services.orders.domain.model import OrderType

    if intent.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert intent.limit_price is not None
        price = intent.limit_price
    elif intent.order_type is OrderType.STOP:
        assert intent.stop_price is not None
        price = max(intent.stop_price, ask) * MARKET_COLLAR
    else:
        price = ask * MARKET_COLLAR
    return _up(intent.qty * price * (CONTRACT if intent.is_option else 1))


def leg_sides(intent: OrderIntent) -> list[tuple[str, Side, int]]:
    """(symbol, side actually traded, ratio): a SELL spread trades every leg reversed."""
    flip = intent.side is Side.SELL
    return [
        (leg.symbol, (leg.side.opposite if flip else leg.side), leg.ratio) for leg in intent.legs
    ]


def check_defined_risk(intent: OrderIntent) -> None:
    """Cash accounts trade spreads whose short legs are covered by long legs of the same right."""
    longs: dict[str, int] = defaultdict(int)
    shorts: dict[str, int] = defaultdict(int)
    for symbol, side, ratio in leg_sides(intent):
        right = parse_occ(symbol).right.value
        (longs if side is Side.BUY else shorts)[right] += ratio
    for right, short in shorts.items():
        if short > longs[right]:
            raise InvalidArgument(
                "legs",
                f"uncovered short {'calls' if right == 'C' else 'puts'}: cash accounts trade "
                "defined-risk spreads only",
                reason="UNDEFINED_RISK",
            )


def package_hold(intent: OrderIntent, quotes: dict[str, Quote]) -> Decimal:
    """The cash a multi-leg order reserves (see the module doc)."""
    check_defined_risk(intent)
    natural = Decimal(0)
    for symbol, side, ratio in leg_sides(intent):
        q = quotes[symbol]
        natural += ratio * (q.ask if side is Side.BUY else -q.bid)
    net = intent.limit_price if intent.limit_price is not None else natural * MARKET_COLLAR
    if intent.side is Side.SELL and intent.limit_price is not None:
        net = -intent.limit_price  # a sell's limit is the least credit it accepts
    if net > 0:
        return _up(net * CONTRACT * intent.qty)
    strikes: dict[str, list[Decimal]] = defaultdict(list)
    for symbol, _side, _ratio in leg_sides(intent):
        c = parse_occ(symbol)
        strikes[c.right.value].append(c.strike)
    width = max((max(v) - min(v) for v in strikes.values()), default=Decimal(0))
    return _up(max(width + net, Decimal(0)) * CONTRACT * intent.qty)

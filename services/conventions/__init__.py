"""The shared kernel: market conventions every bounded context legitimately shares.

It belongs to no context and imports none (nor grpc, sqlalchemy or nats): the exchange
calendar and session clock (`calendar`), OCC option symbology (`occ`), the NBBO quote value
(`quote`) and exact decimal parsing and wire formatting (`decimals`). Anything else one context
needs from another comes over gRPC or NATS. The import contracts in pyproject.toml enforce it.
"""

from services.conventions.calendar import MarketCalendar, SessionWindow
from services.conventions.decimals import dec_to_wire, money, parse_decimal_text
from services.conventions.occ import (
    InvalidOccSymbol,
    OptionContract,
    OptionRight,
    format_occ,
    is_occ_symbol,
    parse_occ,
)
from services.conventions.quote import Quote

__all__ = [
    "InvalidOccSymbol",
    "MarketCalendar",
    "OptionContract",
    "OptionRight",
    "Quote",
    "SessionWindow",
    "dec_to_wire",
    "format_occ",
    "is_occ_symbol",
    "money",
    "parse_decimal_text",
    "parse_occ",
]

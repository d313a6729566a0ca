"""Live market-data providers: vendor APIs behind one shape the service consumes.

A provider streams `Quote`s into an async callback (``await provider.run(on_quote)``, until
cancelled) and answers history (``await provider.history(symbol, start, end)``).
"""

from __future__ import annotations

from services.marketdata.providers.alpaca import (
    AlpacaQuoteProvider,
    AlpacaSettings,
    OnQuote,
    Secret,
    StreamCounters,
    price_from_wire,
    quote_from_alpaca,
)
from services.marketdata.providers.backoff import ReconnectBackoff
from services.marketdata.providers.errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderStreamError,
)

__all__ = [
    "AlpacaQuoteProvider",
    "AlpacaSettings",
    "OnQuote",
    "ProviderAuthError",
    "ProviderConfigError",
    "ProviderError",
    "ProviderStreamError",
    "ReconnectBackoff",
    "Secret",
    "StreamCounters",
    "price_from_wire",
    "quote_from_alpaca",
]

"""The Alpaca-compatible surface: Trading API v2 under `/v2` and `trade_updates` at `/stream`."""

from gateway.alpaca.api import AlpacaError
from gateway.alpaca.routes import alpaca_routes
from gateway.alpaca.stream import TradeUpdatesSocket

__all__ = ["AlpacaError", "TradeUpdatesSocket", "alpaca_routes"]

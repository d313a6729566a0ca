"""The `/v2` (and `/v1beta1` market-data) route table: one line per Alpaca endpoint."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.alpaca.api import AlpacaApi, AlpacaError
from gateway.alpaca.catalog import CatalogApi
from gateway.alpaca.market_data import MarketDataApi
from services.platform.owner_routes import OwnerRoutes

__all__ = ["alpaca_routes"]

log = logging.getLogger("mbt.gateway.alpaca")


Handler = Callable[[Request], Awaitable[Response]]


def _guard(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except AlpacaError as exc:
            return exc.response()
        except Exception:  # a bug: still Alpaca's JSON body, so clients can read it
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return AlpacaError(500, "internal error").response()

    return run


def alpaca_routes(
    channel: Callable[[str], grpc.aio.Channel],
    allowed_origins: tuple[str, ...],
    vouch_key: str,
    owners: OwnerRoutes | None = None,
) -> list[Route]:
    api = AlpacaApi(channel, allowed_origins, vouch_key, owners)
    md = MarketDataApi(api)
    cat = CatalogApi(api)
    table: list[tuple[str, Handler, list[str]]] = [
        ("/v2/account", api.account, ["GET"]),
        ("/v2/account/configurations", api.configurations, ["GET", "PATCH"]),
        ("/v2/account/portfolio/history", api.portfolio_history, ["GET"]),
        ("/v2/account/activities", cat.activities, ["GET"]),
        ("/v2/account/activities/{activity_type}", cat.activities, ["GET"]),
        ("/v2/orders", api.orders_root, ["GET", "POST", "DELETE"]),
        ("/v2/orders:by_client_order_id", api.order_by_client_id, ["GET"]),
        ("/v2/orders/{order_id}", api.order, ["GET", "PATCH", "DELETE"]),
        ("/v2/positions", api.positions, ["GET", "DELETE"]),
        ("/v2/positions/{symbol}", api.position, ["GET", "DELETE"]),
        ("/v2/clock", api.clock, ["GET"]),
        ("/v2/calendar", api.calendar, ["GET"]),
        ("/v2/assets", api.assets, ["GET"]),
        ("/v2/assets/{symbol}", api.assets, ["GET"]),
        ("/v2/options/contracts", cat.option_contracts, ["GET"]),
        ("/v2/options/contracts/{symbol_or_id}", cat.option_contract, ["GET"]),
        # market data (alpaca-py's StockHistoricalDataClient / OptionHistoricalDataClient)
        ("/v2/stocks/quotes/latest", md.latest_quotes, ["GET"]),
        ("/v2/stocks/quotes", md.quotes, ["GET"]),
        ("/v2/stocks/bars/latest", md.latest_bars, ["GET"]),
        ("/v2/stocks/bars", md.bars, ["GET"]),
        ("/v1beta1/options/quotes/latest", md.latest_quotes, ["GET"]),
        ("/v1beta1/options/bars", md.bars, ["GET"]),
        ("/v1beta1/options/snapshots", cat.option_snapshots, ["GET"]),
        ("/v1beta1/options/snapshots/{underlying}", cat.option_chain_snapshots, ["GET"]),
    ]
    return [Route(path, _guard(h), methods=methods) for path, h, methods in table]

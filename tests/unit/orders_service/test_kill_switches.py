"""Submits are refused, with a clear reason, by the kill switches and while market data is stale.

These checks come before any I/O, so the application is built without its adapters.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.orders.app import OrdersApp
from services.orders.domain.model import OrderType, Side, TimeInForce
from services.orders.validation import OrderIntent
from services.platform.auth import Principal
from services.platform.errors import FailedPrecondition, Unavailable
from services.platform.flags import FlagValue, RuntimeFlags
from services.platform.settings import Settings

pytestmark = pytest.mark.anyio
USER = Principal(user_id="u1", session_id="s1", tier="free")
INTENT = OrderIntent("IBM", Side.BUY, Decimal(1), OrderType.MARKET, TimeInForce.DAY, None, None, "")


def app(**flags: Any) -> OrdersApp:
    settings = Settings(database_url="", nats_url="", jwt_secret=b"x" * 32, **flags)
    a = OrdersApp.__new__(OrdersApp)
    a.settings = settings
    a.flags = RuntimeFlags.from_settings(settings)  # the environment's start-up defaults
    a.feed_stale_reason = ""
    return a


async def test_trading_disabled_refuses_submits() -> None:
    with pytest.raises(Unavailable, match="read-only") as ei:
        await app(trading_disabled=True).submit(USER, INTENT)
    assert ei.value.reason == "TRADING_DISABLED"


async def test_new_orders_disabled_refuses_submits() -> None:
    with pytest.raises(Unavailable, match="new orders are disabled") as ei:
        await app(new_orders_disabled=True).submit(USER, INTENT)
    assert ei.value.reason == "NEW_ORDERS_DISABLED"


async def test_stale_market_data_pauses_new_orders() -> None:
    a = app()
    a.feed_stale_reason = "no quotes for 12 s while the market is open"
    with pytest.raises(Unavailable, match="market data is stale") as ei:
        await a.submit(USER, INTENT)
    assert ei.value.reason == "MARKET_DATA_STALE"


async def test_a_runtime_flip_wins_over_the_environment_and_flips_back() -> None:
    a = app()
    a.flags.values["kill.new-orders"] = FlagValue("1", by="operator:pat")  # as the watch applies
    with pytest.raises(Unavailable, match="new orders are disabled"):
        await a.submit(USER, INTENT)
    a.flags.values["kill.new-orders"] = FlagValue("0", by="operator:pat")
    a.flags.values["paper.user.u1"] = FlagValue("off")
    with pytest.raises(FailedPrecondition) as ei:  # this user is not on MBT yet
        await a.submit(USER, INTENT)
    assert ei.value.reason == "PAPER_TRADING_OFF"

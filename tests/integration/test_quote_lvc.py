"""The quote last-value cache on real JetStream: a late subscriber gets the newest NBBO."""

from __future__ import annotations

import pytest

from raxx.mbt.v1 import events_pb2
from services.conventions.quote import Quote
from services.marketdata.servicer import quote_to_pb
from services.orders.feed import quote_from_event
from services.platform.bus import QUOTES_LVC_STREAM, Bus

pytestmark = pytest.mark.anyio


async def test_latest_quote_per_symbol_survives_for_late_consumers(nats_server) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    from decimal import Decimal

    bus = await Bus.connect(nats_server.url, name="lvc-test")
    try:
        await bus.ensure_stream(QUOTES_LVC_STREAM)
        t = datetime(2013, 10, 7, 14, tzinfo=UTC)
        for i, bid in enumerate(("180.00", "180.10", "180.20")):
            q = Quote("LVC1", t.replace(second=i), Decimal(bid), Decimal(bid) + 1, 100, 200)
            await bus.nc.publish(
                "mbt.quotes.LVC1", events_pb2.QuoteEvent(quote=quote_to_pb(q)).SerializeToString()
            )
        await bus.nc.flush()
        late = await Bus.connect(nats_server.url, name="late")  # a consumer that starts now
        data = await late.last_quote("LVC1")
        assert data is not None and quote_from_event(data).bid == Decimal("180.2")
        assert await late.last_quote("NOPE") is None
        info = await bus.js.stream_info(QUOTES_LVC_STREAM.name or "")
        assert info.state.messages >= 1 and (info.config.max_msgs_per_subject or 0) == 1
        await late.close()
    finally:
        await bus.close()

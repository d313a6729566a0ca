"""The Alpaca provider end to end through the real alpaca-py clients, against a local fake of
Alpaca's market-data servers that speaks the wire protocol (tests/fakes/alpaca_server.py).

The quotes are the recorded IBM session of 2013-10-07; expected values come from the archive.
Nothing leaves 127.0.0.1. Waits are event driven and bounded; reconnect backoff is milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import msgpack
import pytest
from alpaca.data.models import Quote as AlpacaQuote
from websockets.asyncio.client import connect

from services.conventions.quote import Quote
from services.marketdata.domain.recorded import RecordedArchive
from services.marketdata.providers import (
    AlpacaQuoteProvider,
    AlpacaSettings,
    ProviderAuthError,
    ProviderConfigError,
    ReconnectBackoff,
    Secret,
    price_from_wire,
    quote_from_alpaca,
)
from tests.fakes.alpaca_server import FakeAlpacaMarketData

pytestmark = pytest.mark.anyio

KEY = "PKTESTKEY0000001"
SECRET = "s3cr3t-Alpaca-VALUE-42"
IBM_DAY = date(2013, 10, 7)
WAIT = 5.0  # seconds; every wait is bounded so a failure never hangs the suite


@pytest.fixture(autouse=True)
def _no_real_alpaca(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: any attempt to resolve a real Alpaca host fails the test."""
    real = socket.getaddrinfo

    def guarded(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and "alpaca.markets" in host:
            raise AssertionError(f"test tried to reach {host}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture(scope="module")
def ibm() -> list[Quote]:
    return RecordedArchive().load("IBM", IBM_DAY)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpacaMarketData]:
    async with FakeAlpacaMarketData(key=KEY, secret=SECRET) as server:
        yield server


def settings_for(fake: FakeAlpacaMarketData, secret: str = SECRET) -> AlpacaSettings:
    return AlpacaSettings(
        key=KEY, secret=Secret(secret), data_url=fake.rest_url, stream_url=fake.stream_url()
    )


def fast_backoff() -> ReconnectBackoff:
    return ReconnectBackoff(initial=0.01, cap=0.05, rng=random.Random(7))


class Collector:
    """An ``on_quote`` callback that remembers what it got and can be waited on."""

    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self._grew = asyncio.Event()

    async def __call__(self, q: Quote) -> None:
        self.quotes.append(q)
        self._grew.set()

    async def wait_for(self, n: int) -> list[Quote]:
        async with asyncio.timeout(WAIT):
            while len(self.quotes) < n:
                self._grew.clear()
                await self._grew.wait()
        return self.quotes


def subscribed(fake: FakeAlpacaMarketData, times: int) -> Callable[[], bool]:
    return lambda: len(fake.subscriptions) >= times


@contextlib.asynccontextmanager
async def streaming(
    provider: AlpacaQuoteProvider, on_quote: Collector
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(provider.run(on_quote))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- settings ------------------------------------------------------------------------------------
def test_settings_from_env_defaults_to_iex_and_alpaca_endpoints() -> None:
    s = AlpacaSettings.from_env(
        {"ALPACA_MARKET_DATA_KEY": KEY, "ALPACA_MARKET_DATA_SECRET": SECRET}
    )
    assert (s.key, s.secret.reveal(), s.feed.value) == (KEY, SECRET, "iex")
    assert s.rest_endpoint is None and s.stream_endpoint is None


def test_settings_overrides() -> None:
    s = AlpacaSettings.from_env(
        {
            "ALPACA_MARKET_DATA_KEY": KEY,
            "ALPACA_MARKET_DATA_SECRET": SECRET,
            "ALPACA_DATA_FEED": "SIP",
            "ALPACA_DATA_URL": "http://127.0.0.1:9000/",
            "ALPACA_STREAM_URL": "ws://127.0.0.1:9001",
        }
    )
    assert s.feed.value == "sip"
    assert s.rest_endpoint == "http://127.0.0.1:9000"  # alpaca-py appends /v2/...
    assert s.stream_endpoint == "ws://127.0.0.1:9001/v2/sip"  # a bare host gets the feed path
    full = AlpacaSettings(KEY, Secret(SECRET), stream_url="wss://proxy.example/alpaca/v2/iex")
    assert full.stream_endpoint == "wss://proxy.example/alpaca/v2/iex"  # a path is verbatim


FULL_ENV = {"ALPACA_MARKET_DATA_KEY": KEY, "ALPACA_MARKET_DATA_SECRET": SECRET}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set ALPACA_MARKET_DATA_KEY and ALPACA_MARKET_DATA_SECRET for"),
        ({"ALPACA_MARKET_DATA_KEY": KEY}, "set ALPACA_MARKET_DATA_SECRET for"),
        ({**FULL_ENV, "ALPACA_DATA_FEED": "otc"}, "ALPACA_DATA_FEED must be iex or sip"),
        ({**FULL_ENV, "ALPACA_DATA_URL": "ftp://x"}, "ALPACA_DATA_URL must be a http/https"),
        ({**FULL_ENV, "ALPACA_STREAM_URL": "http://x"}, "ALPACA_STREAM_URL must be a ws/wss"),
        ({**FULL_ENV, "ALPACA_DATA_URL": "https://u:pw@x"}, "must not carry credentials"),
    ],
)
def test_settings_reject_bad_env_without_echoing_secrets(env: dict[str, str], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message) as err:
        AlpacaSettings.from_env(env)
    assert SECRET not in str(err.value) and "pw" not in str(err.value)


def test_secret_hidden_in_repr_and_str() -> None:
    s = AlpacaSettings(KEY, Secret(SECRET))
    provider = AlpacaQuoteProvider(s, ["IBM"])
    for text in (repr(s), str(s), f"{s}", repr(s.secret), str(s.secret), repr(provider)):
        assert SECRET not in text
    assert KEY in repr(s)


# -- backoff -------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_to_the_cap_within_the_jitter_band() -> None:
    b = ReconnectBackoff(initial=1.0, cap=30.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    assert [b.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30  # no overflow on a long outage
    for n in range(1, 50):
        assert b.ceiling(n) / 2 <= b.delay(n) <= b.ceiling(n)
    a, c = ReconnectBackoff(rng=random.Random(3)), ReconnectBackoff(rng=random.Random(3))
    assert [a.delay(n) for n in range(1, 6)] == [c.delay(n) for n in range(1, 6)]


# -- conversion ----------------------------------------------------------------------------------
def test_alpaca_quote_becomes_exact_decimal_quote() -> None:
    raw = {"t": "2013-10-07T13:30:00.241Z", "bp": 186.57, "bs": 300, "ap": 0.1, "as": 2.0}
    q = quote_from_alpaca(AlpacaQuote("IBM", raw))
    ts = datetime(2013, 10, 7, 13, 30, 0, 241000, UTC)
    assert q == Quote("IBM", ts, Decimal("186.57"), Decimal("0.1"), 300, 2)
    assert (str(q.bid), str(q.ask), q.ts.tzinfo) == ("186.57", "0.1", UTC)
    assert isinstance(q.bid_size, int) and isinstance(q.ask_size, int)


@pytest.mark.parametrize(
    ("wire", "text"),
    [(182.0, "182"), (182.01, "182.01"), (0.0001, "0.0001"), (1e-05, "0.00001"), (0.1, "0.1")],
)
def test_price_from_wire_keeps_the_digits_sent(wire: float, text: str) -> None:
    assert str(price_from_wire(wire)) == text


# -- live stream ---------------------------------------------------------------------------------
async def test_pushed_quotes_arrive_through_alpaca_py_with_exact_decimals(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM", "AAPL"], backoff=fast_backoff())
    got = Collector()
    sent = ibm[:300]
    async with streaming(provider, got):
        await fake.wait_until(lambda: len(fake.subscriptions) == 1, WAIT)
        assert fake.subscriptions == [frozenset({"IBM", "AAPL"})]
        for i in range(0, len(sent), 100):  # Alpaca batches several messages per frame
            await fake.push(*sent[i : i + 100])
        received = await got.wait_for(len(sent))
    assert received == sent
    assert [(str(q.bid), str(q.ask)) for q in received] == [(str(q.bid), str(q.ask)) for q in sent]
    assert all(type(q.bid) is Decimal and type(q.ask) is Decimal for q in received)
    assert all(q.ts.tzinfo is UTC for q in received)
    assert (provider.counters.connects, provider.counters.reconnects) == (1, 0)
    assert provider.counters.quotes_received == len(sent)


async def test_cancelling_run_closes_the_socket(fake: FakeAlpacaMarketData) -> None:
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"], backoff=fast_backoff())
    async with streaming(provider, Collector()):
        await fake.wait_until(subscribed(fake, 1), WAIT)
        assert fake.open_sessions == 1
    await fake.wait_until(lambda: fake.open_sessions == 0, WAIT)
    # and the provider can run again (a fresh connection for the same key)
    async with streaming(provider, Collector()):
        await fake.wait_until(subscribed(fake, 2), WAIT)
    assert provider.counters.connects == 2


async def test_wrong_key_fails_auth_with_a_clear_error(fake: FakeAlpacaMarketData) -> None:
    wrong = "wrong-" + SECRET
    provider = AlpacaQuoteProvider(settings_for(fake, wrong), ["IBM"], backoff=fast_backoff())
    with pytest.raises(ProviderAuthError) as err:
        async with asyncio.timeout(WAIT):
            await provider.run(Collector())
    message = str(err.value)
    assert "auth failed" in message and KEY in message
    assert wrong not in message and SECRET not in message
    assert fake.auth_failures == 1  # given up at once, not retried
    assert provider.counters.connects == 0


async def test_dropped_connection_reconnects_and_quotes_resume(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"], backoff=fast_backoff())
    got = Collector()
    batches = [ibm[0:50], ibm[50:120], ibm[120:200]]
    async with streaming(provider, got) as task:
        for n, batch in enumerate(batches, start=1):
            await fake.wait_until(subscribed(fake, n), WAIT)
            await fake.push(*batch)
            await got.wait_for(sum(len(b) for b in batches[:n]))
            if n < len(batches):
                assert await fake.drop_connections() == 1
        assert not task.done()
    assert got.quotes == ibm[:200]
    assert provider.counters.connects == 3
    assert provider.counters.reconnects == 2
    assert provider.counters.quotes_received == 200
    assert fake.connections == 3


async def test_connection_limit_is_retried_until_the_old_socket_goes(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    """Alpaca allows one stream per key; a stale one (say, of a crashed process) must not be
    taken for a bad key: the provider keeps retrying and gets in once it is gone."""
    async with connect(fake.stream_url()) as holder:
        await holder.recv()  # connected
        await holder.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
        await holder.recv()  # authenticated
        provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"], backoff=fast_backoff())
        got = Collector()
        async with streaming(provider, got) as task:
            await fake.wait_until(lambda: fake.connections >= 4, WAIT)  # holder + 3 refused
            assert provider.counters.connects == 0 and not task.done()
            await holder.close()
            await fake.wait_until(subscribed(fake, 1), WAIT)
            await fake.push(ibm[0])
            assert await got.wait_for(1) == [ibm[0]]
    assert provider.counters.connects == 1


async def test_a_failing_handler_is_counted_and_the_stream_goes_on(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"], backoff=fast_backoff())
    got = Collector()

    calls = 0

    async def flaky(q: Quote) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("publish failed")
        await got(q)

    task = asyncio.create_task(provider.run(flaky))
    try:
        await fake.wait_until(lambda: len(fake.subscriptions) == 1, WAIT)
        await fake.push(*ibm[:3])
        await got.wait_for(2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert got.quotes == ibm[1:3]
    assert provider.counters.handler_errors == 1
    assert provider.counters.quotes_received == 3


# -- REST ----------------------------------------------------------------------------------------
async def test_history_pages_through_rest_and_matches_the_recording(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    fake.add_quotes(ibm)
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"])
    start = datetime(2013, 10, 7, 8, 0, tzinfo=UTC)  # the whole recorded day, 04:00-20:00 ET
    end = ibm[-1].ts  # half-open like RecordedArchive.quotes_between: the last one is left out

    got = await provider.history("IBM", start, end)

    expected = RecordedArchive().quotes_between("IBM", start, end)
    assert expected == ibm[:-1]
    assert got == expected
    # the very digits of the recording, not just equal numbers
    assert [(str(a.bid), str(a.ask)) for a in got] == [(str(e.bid), str(e.ask)) for e in expected]
    pages = [r for r in fake.requests if r.path == "/v2/stocks/quotes"]
    assert len(pages) == -(-len(ibm) // 10_000)  # alpaca-py asks for 10,000 a page
    assert "page_token" not in pages[0].params
    assert all("page_token" in p.params for p in pages[1:])
    assert {p.params["feed"] for p in pages} == {"iex"}
    assert {p.params["symbols"] for p in pages} == {"IBM"}


async def test_history_follows_smaller_server_pages(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    fake.max_page_size = 100
    fake.add_quotes(ibm)
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"])
    start, end = ibm[1000].ts, ibm[1500].ts
    got = await provider.history("IBM", start, end)
    assert got == [q for q in ibm if start <= q.ts < end]
    served = [q for q in ibm if start <= q.ts <= end]  # Alpaca's end is inclusive
    assert len(fake.requests) == -(-len(served) // 100)


async def test_latest_quotes_and_option_chain(fake: FakeAlpacaMarketData, ibm: list[Quote]) -> None:
    archive = RecordedArchive()
    goog_day = date(2015, 12, 23)
    contracts = archive.symbols(goog_day, "GOOG")[:5]
    fake.add_quotes(ibm[:10])
    fake.add_option_quotes("GOOG", [q for c in contracts for q in archive.load(c, goog_day)])
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"])

    assert await provider.latest_quotes(["IBM", "MSFT"]) == {"IBM": ibm[9]}
    chain = await provider.option_chain("GOOG")
    assert chain == {c: archive.load(c, goog_day)[-1] for c in contracts}


async def test_rest_with_a_wrong_secret_is_an_auth_error(fake: FakeAlpacaMarketData) -> None:
    provider = AlpacaQuoteProvider(settings_for(fake, "nope-" + SECRET), ["IBM"])
    with pytest.raises(ProviderAuthError, match=KEY) as err:
        await provider.latest_quotes(["IBM"])
    assert SECRET not in str(err.value)


async def test_fake_single_symbol_endpoint_pages_like_alpaca(
    fake: FakeAlpacaMarketData, ibm: list[Quote]
) -> None:
    """The per-symbol route alpaca-py does not use, in Alpaca's JSON shape."""
    fake.add_quotes(ibm[:25])
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    rows: list[dict[str, object]] = []
    params: dict[str, str | int] = {"limit": 10}
    async with httpx.AsyncClient(base_url=fake.rest_url, headers=headers) as http:
        while True:
            body = (await http.get("/v2/stocks/IBM/quotes", params=params)).json()
            assert body["symbol"] == "IBM"
            rows += body["quotes"]
            if body["next_page_token"] is None:
                break
            params["page_token"] = body["next_page_token"]
        denied = await http.get("/v2/stocks/IBM/quotes", headers={"APCA-API-SECRET-KEY": "x"})
    assert len(rows) == 25 and len(fake.requests) == 4
    assert rows[0] == {
        "t": "2013-10-07T08:00:00.241Z",
        "ax": "V",
        "ap": 183.63,
        "as": 100,
        "bx": "V",
        "bp": 180.01,
        "bs": 300,
        "c": ["R"],
        "z": "A",
    }
    assert denied.status_code == 401


# -- no secret in logs ---------------------------------------------------------------------------
def _leaks(text: str, secret: str) -> list[str]:
    """The secret, or any 4-byte run of it as a hex dump (how websockets logs frames)."""
    raw = secret.encode()
    pieces = [secret] + [raw[i : i + 4].hex(" ") for i in range(len(raw) - 3)]
    return [p for p in pieces if p in text]


async def test_secret_never_appears_in_logs(
    fake: FakeAlpacaMarketData, ibm: list[Quote], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_quotes(ibm[:20])
    provider = AlpacaQuoteProvider(settings_for(fake), ["IBM"], backoff=fast_backoff())
    got = Collector()
    async with streaming(provider, got):
        await fake.wait_until(lambda: len(fake.subscriptions) == 1, WAIT)
        await fake.push(*ibm[:5])
        await got.wait_for(5)
        await fake.drop_connections()
        await fake.wait_until(lambda: len(fake.subscriptions) == 2, WAIT)
    await provider.history("IBM", ibm[0].ts, ibm[19].ts)
    bad = AlpacaQuoteProvider(settings_for(fake, "x" + SECRET), ["IBM"], backoff=fast_backoff())
    with pytest.raises(ProviderAuthError):
        await bad.run(got)

    assert any("reconnected" in r.getMessage() for r in caplog.records)  # logs were captured
    assert any(r.name == "mbt.marketdata.alpaca.wire" for r in caplog.records)
    assert _leaks(caplog.text, SECRET) == []
    assert _leaks(caplog.text, "x" + SECRET) == []


def test_missing_symbols_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one symbol"):
        AlpacaQuoteProvider(AlpacaSettings(KEY, Secret(SECRET)), [])

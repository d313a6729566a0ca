"""The NATS connection and the JetStream streams MBT uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from services.platform.metrics import CONSUMER_LAG

log = logging.getLogger("mbt.bus")

# Trade events, per account (the last token is the account id), in one stream so an account's
# events keep one order whatever their subject:
# - mbt.fills.<account>: fills;
# - mbt.orders.<account>: order events that end an order without (more) fills - canceled,
#   expired, rejected, replaced - on which the ledger releases the order's hold;
# - mbt.updates.<account>: every other order event (accepted, partially filled, filled, ...),
#   which change nothing in the ledger: only trade-update streams read them, so the ledger's
#   consumer is not sent one event per order it would only acknowledge.
FILLS_SUBJECT = "mbt.fills"
ORDERS_SUBJECT = "mbt.orders"
UPDATES_SUBJECT = "mbt.updates"
LEDGER_SUBJECTS = (f"{FILLS_SUBJECT}.>", f"{ORDERS_SUBJECT}.>")
ENDS_WITHOUT_FILL = frozenset({"canceled", "expired", "rejected", "replaced"})


def order_subject(status: str, account_id: str) -> str:
    """The subject of an order event by the order's status (see above)."""
    prefix = ORDERS_SUBJECT if status in ENDS_WITHOUT_FILL else UPDATES_SUBJECT
    return f"{prefix}.{account_id}"


def trade_subjects(account_id: str) -> tuple[str, ...]:
    """Every trade-event subject of one account."""
    return tuple(f"{p}.{account_id}" for p in (FILLS_SUBJECT, ORDERS_SUBJECT, UPDATES_SUBJECT))


# Streams, declared idempotently by their owning service.
TRADES_STREAM = StreamConfig(
    name="MBT_TRADES",
    subjects=[*LEDGER_SUBJECTS, f"{UPDATES_SUBJECT}.>"],
    duplicate_window=600.0,
    max_age=30 * 24 * 3600.0,
)
SESSIONS_STREAM = StreamConfig(
    name="MBT_SESSIONS",
    subjects=["mbt.sessions.>"],
    duplicate_window=600.0,
    max_age=24 * 3600.0,
)

# Scheduled job triggers: a work queue, one durable consumer per owning service.
JOBS_STREAM = StreamConfig(
    name="MBT_JOBS",
    subjects=["mbt.jobs.>"],
    retention=RetentionPolicy.WORK_QUEUE,
    duplicate_window=3600.0,
    max_age=7 * 24 * 3600.0,
)

# Last-value cache: the newest quote of every symbol, kept in memory by JetStream, so a
# consumer that (re)starts gets each symbol's latest NBBO at once (`Bus.last_quote`).
QUOTES_LVC_STREAM = StreamConfig(
    name="MBT_QUOTES_LAST",
    subjects=["mbt.quotes.>"],
    storage=StorageType.MEMORY,
    max_msgs_per_subject=1,
    discard=DiscardPolicy.OLD,
)

QUOTES_SUBJECT = "mbt.quotes"
CLOCK_SUBJECT = "mbt.clock"
FEED_STATUS_SUBJECT = "mbt.marketdata.status"


def subject_token(value: str) -> str:
    """Validate a value used as one subject token (no dots, wildcards or spaces)."""
    if not value or any(c in value for c in ".*> \t\r\n"):
        raise ValueError(f"not a valid subject token: {value!r}")
    return value


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext

    @classmethod
    async def connect(cls, url: str, name: str) -> Bus:
        nc = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        return cls(nc=nc, js=nc.jetstream())

    async def ensure_stream(self, config: StreamConfig) -> None:
        assert config.name is not None
        try:
            await self.js.stream_info(config.name)
            await self.js.update_stream(config)
        except NotFoundError:
            await self.js.add_stream(config)

    async def wait_for_stream(self, name: str, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.js.stream_info(name)
                return
            except NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def js_publish(self, subject: str, payload: bytes, *, msg_id: str) -> None:
        ack = await self.js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        if ack.duplicate:
            log.debug("duplicate suppressed by JetStream: %s", msg_id)

    async def js_publish_many(
        self, messages: Sequence[tuple[str, bytes, str]], timeout: float = 5.0
    ) -> None:
        """Publish (subject, payload, msg id) messages in order and wait for every PubAck
        together: nats.py's `publish_async` (one future per message, one shared reply
        subscription) instead of a request, a task and a timer per message. Raises if any
        message was not stored (its error, or TimeoutError)."""
        futures = [
            await self.js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
            for subject, payload, msg_id in messages
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        for ack, (_, _, msg_id) in zip(acks, messages, strict=True):
            if ack.duplicate:
                log.debug("duplicate suppressed by JetStream: %s", msg_id)

    async def consume(
        self,
        subject: str,
        durable: str,
        handler: Callable[[Msg], Awaitable[None]],
        *,
        stream: str,
        batch: int = 100,
    ) -> None:
        """Pull messages from a durable consumer forever; the handler acks after its commit."""

        async def each(msgs: list[Msg]) -> None:
            for msg in msgs:
                await handler(msg)

        await self.consume_batches(subject, durable, each, stream=stream, batch=batch)

    async def consume_batches(
        self,
        subject: str | Sequence[str],
        durable: str,
        handler: Callable[[list[Msg]], Awaitable[None]],
        *,
        stream: str,
        batch: int = 200,
    ) -> None:
        """Pull from a durable consumer of `subject` (one filter or several) forever, handing
        each fetched batch to the handler (which acks after its commit); ride out disconnects,
        the client reconnects itself. A durable that exists with other filters gets these, in
        place: it keeps its position (what it acknowledged stays acknowledged)."""
        filters = [subject] if isinstance(subject, str) else list(subject)
        await self.wait_for_stream(stream)
        config = ConsumerConfig(ack_wait=30, max_deliver=-1, max_ack_pending=10_000)
        if len(filters) > 1:
            config.filter_subjects = filters
        await self._refilter(stream, durable, filters)
        sub = await self.js.pull_subscribe(
            filters[0], durable=durable, stream=stream, config=config
        )
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:  # disconnected: the client reconnects by itself
                log.warning("fetch from %s failed (%s); retrying", durable, exc)
                await asyncio.sleep(0.5)
                continue
            await handler(msgs)
            if msgs:  # what the stream still holds for this consumer after the batch
                CONSUMER_LAG.labels(durable).set(msgs[-1].metadata.num_pending)

    async def _refilter(self, stream: str, durable: str, filters: list[str]) -> None:
        """Give an existing durable consumer `filters` if it has others (nats-server updates
        a consumer's filter in place; nats.py's pull_subscribe binds to the consumer as it
        is)."""
        try:
            info = await self.js.consumer_info(stream, durable)
        except NotFoundError:
            return
        cfg = info.config
        have = list(cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else []))
        if sorted(have) == sorted(filters):
            return
        if len(filters) > 1:
            cfg.filter_subject, cfg.filter_subjects = None, filters
        else:
            cfg.filter_subject, cfg.filter_subjects = filters[0], None
        await self.js.add_consumer(stream, cfg)
        log.info("consumer %s now filters %s (was %s)", durable, filters, have)

    async def last_quote(self, symbol: str) -> bytes | None:
        """The newest QuoteEvent payload of `symbol` from the last-value cache, if any."""
        try:
            msg = await self.js.get_last_msg(
                QUOTES_LVC_STREAM.name or "MBT_QUOTES_LAST", f"{QUOTES_SUBJECT}.{symbol}"
            )
        except NotFoundError:
            return None
        return msg.data

    async def close(self, drain_s: float = 1.0) -> None:
        """Drain briefly, then close: anything not acked by then is redelivered (JetStream) and
        a plain subscription's backlog is live data nobody needs after shutdown. (nats.py's own
        drain waits up to 30 s while the quote feed keeps arriving.)"""
        try:
            await asyncio.wait_for(self.nc.drain(), drain_s)
        except Exception:  # noqa: BLE001 - closing anyway (TimeoutError included)
            log.debug("drain did not finish; closing", exc_info=True)
        if not self.nc.is_closed:
            try:
                await self.nc.close()
            except Exception:  # noqa: BLE001
                log.debug("close failed", exc_info=True)

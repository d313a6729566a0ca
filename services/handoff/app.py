"""Live handoff: who may hand off, the Alpaca connection, and live orders signed by step-ups.

The order of a live order's life, each step audited:

1. ``prepare``: MBT builds the exact JSON body it will POST to Alpaca (with the live order id as
   ``client_order_id``) and its SHA-256; the row is ``prepared`` for 5 minutes.
2. The user signs with a step-up whose WebAuthn challenge carries that digest (sessions).
3. ``send``: the grant is spent (bound to the digest), the row becomes ``sending`` and is
   committed *before* anything leaves MBT; then alpaca-py posts it.
4. Alpaca's answer moves it to Alpaca's status; trade updates bring its fills into the live
   ledger (``live_fills``, one row per execution id), never into a paper account.

A crash or a lost answer between 3 and 4 leaves the row ``sending``; recovery asks Alpaca for the
order by its ``client_order_id`` and adopts it, or sends it (Alpaca refuses a repeat of the
``client_order_id``), so it is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from raxx.mbt.v1 import accounts_service_pb2 as acct_pb
from raxx.mbt.v1 import accounts_service_pb2_grpc as acct_grpc
from raxx.mbt.v1 import sessions_service_pb2 as sess_pb
from raxx.mbt.v1 import sessions_service_pb2_grpc as sess_grpc
from services.conventions.ticks import off_tick, price_increment
from services.conventions.timestamps import parse_rfc3339
from services.handoff.adapters.tables import (
    audit_log,
    connections,
    graduations,
    live_fills,
    live_orders,
    oauth_states,
)
from services.handoff.alpaca import (
    AlpacaConfig,
    AlpacaOAuth,
    AlpacaTrading,
    BrokerRejected,
    BrokerUnreachable,
    OAuthError,
    OAuthTradeUpdates,
)
from services.handoff.crypto import Keyring, Sealed, SecretToken, open_sealed, rewrap, seal
from services.platform.auth import Principal
from services.platform.clients import ServiceChannel
from services.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    MbtError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.platform.flags import RuntimeFlags
from services.platform.privacy import actor_hash, rows_to_json

__all__ = ["Eligibility", "HandoffApp"]

log = logging.getLogger("mbt.handoff")

STATE_TTL = timedelta(minutes=10)
PREPARED_TTL = timedelta(minutes=5)
RECOVERY_INTERVAL_S = 5.0
OPEN_STATUSES = ("sending", "sent", "new", "accepted", "pending_new", "partially_filled")
SYMBOL = re.compile(r"^[A-Z][A-Z.]{0,9}$")
# a live limit price above this is a typo, not an order (and a decimal this large breaks %)
MAX_LIVE_PRICE = Decimal(1_000_000)
ALPACA_STATUSES = {
    "new",
    "accepted",
    "pending_new",
    "partially_filled",
    "filled",
    "canceled",
    "expired",
    "rejected",
    "done_for_day",
    "replaced",
    "pending_cancel",
}


@dataclass(frozen=True)
class Eligibility:
    """The graduation gate's answer for one user."""

    tier: str
    required: int
    streak: int
    override: str | None
    cycles: list[acct_pb.MonthlyCycle]
    disabled: bool

    @property
    def reason(self) -> str:
        if self.disabled:
            return "live handoff is switched off by the operators for now"
        if self.tier != "pro_plus":
            return f"live handoff is a Pro+ feature; your tier is {self.tier or 'free'}"
        if self.override is None and self.streak < self.required:
            return (
                f"graduation needs {self.required} consecutive profitable monthly paper cycles; "
                f"you have {self.streak}"
            )
        return ""

    @property
    def eligible(self) -> bool:
        return not self.reason


class HandoffApp:
    def __init__(
        self,
        db: AsyncEngine,
        keyring: Keyring,
        cfg: AlpacaConfig,
        accounts: ServiceChannel,
        sessions: ServiceChannel,
        secret: bytes,
        cycles_required: int = 3,
        flags: RuntimeFlags | None = None,
    ) -> None:
        self.flags = flags or RuntimeFlags()
        self.db, self.keyring, self.cfg = db, keyring, cfg
        self.accounts, self.sessions = accounts, sessions
        self.accounts_stub = acct_grpc.AccountsServiceStub(accounts.channel)
        self.sessions_stub = sess_grpc.SessionsServiceStub(sessions.channel)
        self.secret = secret
        self.cycles_required = cycles_required
        self.oauth = AlpacaOAuth(cfg)
        self.trading = AlpacaTrading(cfg)
        self.streams: dict[str, tuple[OAuthTradeUpdates, asyncio.Task[None]]] = {}
        self._in_flight: set[str] = set()

    def disabled(self) -> bool:
        """The live-handoff kill switch, as operators set it now."""
        return self.flags.killed("live-handoff")

    # ---- eligibility ------------------------------------------------------------------------
    async def eligibility(self, user_id: str, tier: str) -> Eligibility:
        try:
            reply = await self.accounts.call(
                self.accounts_stub.ListMonthlyCycles,
                acct_pb.ListMonthlyCyclesRequest(user_id=user_id),
            )
            cycles, streak = list(reply.cycles), int(reply.consecutive_profitable)
        except NotFound:  # no paper account yet: no record
            cycles, streak = [], 0
        async with self.db.connect() as conn:
            override = (
                await conn.execute(
                    select(graduations.c.reason).where(graduations.c.user_id == user_id)
                )
            ).scalar()
        return Eligibility(tier, self.cycles_required, streak, override, cycles, self.disabled())

    async def connection(self, user_id: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (
                (await conn.execute(select(connections).where(connections.c.user_id == user_id)))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    async def _require_eligible(self, user: Principal) -> None:
        e = await self.eligibility(user.user_id, user.tier)
        if not e.eligible:
            raise FailedPrecondition(e.reason, reason="HANDOFF_NOT_ELIGIBLE")

    async def _require_ready(self, user: Principal) -> dict[str, Any]:
        """Eligible and connected: the user's connection row."""
        await self._require_eligible(user)
        conn = await self.connection(user.user_id)
        if conn is None:
            raise FailedPrecondition(
                "no live account connected: run `mbt handoff connect` first",
                reason="HANDOFF_NOT_CONNECTED",
            )
        return conn

    # ---- audit ------------------------------------------------------------------------------
    @staticmethod
    async def _audit(
        conn: AsyncConnection,
        actor: str,
        user_id: str,
        action: str,
        detail: dict[str, Any],
        live_order_id: str | None = None,
    ) -> None:
        await conn.execute(
            insert(audit_log).values(
                actor=actor[:80],
                user_id=user_id,
                action=action,
                live_order_id=live_order_id,
                detail=detail,
            )
        )

    async def audit(
        self, actor: str, user_id: str, action: str, detail: dict[str, Any], oid: str | None = None
    ) -> None:
        async with self.db.begin() as conn:
            await self._audit(conn, actor, user_id, action, detail, oid)

    # ---- graduation override ----------------------------------------------------------------
    async def graduate(self, operator: str, email: str, reason: str) -> tuple[str, str]:
        if not reason.strip():
            raise InvalidArgument("reason", "is required: say why this user may skip graduation")
        ref = await self.sessions.call(
            self.sessions_stub.LookupUser, sess_pb.LookupUserRequest(email=email)
        )
        async with self.db.begin() as conn:
            await conn.execute(
                pg_insert(graduations)
                .values(user_id=ref.user_id, reason=reason.strip()[:500], operator=operator[:80])
                .on_conflict_do_update(
                    index_elements=[graduations.c.user_id],
                    set_={"reason": reason.strip()[:500], "operator": operator[:80]},
                )
            )
            await self._audit(
                conn, operator, ref.user_id, "graduation_override", {"reason": reason[:500]}
            )
        return ref.user_id, ref.tier

    # ---- enrollment -------------------------------------------------------------------------
    async def _spend_step_up(
        self, user: Principal, step_up_id: str, purpose: str, bound: str
    ) -> str:
        reply = await self.sessions.call(
            self.sessions_stub.SpendStepUp,
            sess_pb.SpendStepUpRequest(
                user_id=user.user_id, step_up_id=step_up_id, purpose=purpose, bound_sha256=bound
            ),
        )
        return str(reply.assertion_json)

    async def start_connect(self, user: Principal, step_up_id: str) -> tuple[str, str, datetime]:
        await self._require_eligible(user)
        if not self.cfg.configured:
            raise FailedPrecondition(
                "live handoff has no Alpaca OAuth client configured (MBT_ALPACA_CLIENT_ID); "
                "try it with `mbt up --live-sandbox`",
                reason="HANDOFF_NOT_CONFIGURED",
            )
        await self._spend_step_up(user, step_up_id, "handoff_enroll", "")
        url, state, verifier = self.oauth.authorization()
        expires = datetime.now(UTC) + STATE_TTL
        async with self.db.begin() as conn:
            await conn.execute(
                insert(oauth_states).values(
                    state=state,
                    user_id=user.user_id,
                    session_id=user.session_id,
                    code_verifier=verifier,
                    expires_at=expires,
                )
            )
            await self._audit(conn, user.user_id, user.user_id, "enroll_start", {})
        return url, state, expires

    async def complete_connect(
        self, user: Principal, code: str, state: str, error: str
    ) -> dict[str, Any]:
        async with self.db.begin() as conn:  # the state is spent whatever happens next
            row = (
                (
                    await conn.execute(
                        delete(oauth_states)
                        .where(oauth_states.c.state == state)
                        .returning(*oauth_states.c)
                    )
                )
                .mappings()
                .first()
            )
        if row is None or row["expires_at"] <= datetime.now(UTC):
            raise FailedPrecondition(
                "unknown, used or expired authorization state: start again with "
                "`mbt handoff connect`",
                reason="OAUTH_STATE_INVALID",
            )
        if row["user_id"] != user.user_id or row["session_id"] != user.session_id:
            await self.audit(user.user_id, str(row["user_id"]), "enroll_state_mismatch", {})
            raise PermissionDenied(
                "this authorization was started by another session", reason="OAUTH_STATE_MISMATCH"
            )
        if error:
            await self.audit(user.user_id, user.user_id, "enroll_declined", {"error": error[:100]})
            raise FailedPrecondition(
                f"Alpaca did not authorize MBT ({error[:100]})", reason="OAUTH_DECLINED"
            )
        if not code:
            raise InvalidArgument("code", "is required (the code Alpaca returned)")
        try:
            token, scope = await self.oauth.exchange(code, str(row["code_verifier"]))
        except OAuthError as err:
            await self.audit(user.user_id, user.user_id, "enroll_failed", {"error": err.error})
            raise FailedPrecondition(
                f"Alpaca refused the authorization code ({err.error})", reason="OAUTH_REFUSED"
            ) from None
        except OSError as err:
            raise Unavailable(
                f"cannot reach Alpaca's OAuth server ({type(err).__name__})"
            ) from None
        if "trading" not in scope.split():
            with contextlib.suppress(Exception):
                await self.oauth.revoke(token)
            await self.audit(user.user_id, user.user_id, "enroll_refused", {"scope": scope})
            raise FailedPrecondition(
                f"Alpaca granted {scope!r} without trading; approve trading to hand off",
                reason="OAUTH_SCOPE",
            )
        try:
            account = await self.trading.account(token)
        except (BrokerRejected, BrokerUnreachable) as err:
            raise Unavailable(f"Alpaca did not confirm the account: {err}") from None
        sealed = seal(self.keyring, user.user_id, token)
        values = {
            "kek_id": sealed.kek_id,
            "wrapped_dek": sealed.wrapped_dek,
            "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext,
            "scope": scope,
            "account_number": str(account.get("account_number", ""))[:40],
            "connected_at": datetime.now(UTC),
        }
        async with self.db.begin() as conn:
            await conn.execute(
                pg_insert(connections)
                .values(user_id=user.user_id, **values)
                .on_conflict_do_update(index_elements=[connections.c.user_id], set_=values)
            )
            await self._audit(
                conn,
                user.user_id,
                user.user_id,
                "enroll",
                {
                    "account_number": values["account_number"],
                    "scope": scope,
                    "kek_id": sealed.kek_id,
                },
            )
        await self._follow(user.user_id, token)
        return values

    def token_of(self, row: dict[str, Any]) -> SecretToken:
        sealed = Sealed(
            row["kek_id"], bytes(row["wrapped_dek"]), bytes(row["nonce"]), bytes(row["ciphertext"])
        )
        return open_sealed(self.keyring, str(row["user_id"]), sealed)

    async def forget_token(self, user_id: str, why: str) -> None:
        """Delete a connection whose token Alpaca refuses (401/403), and say so in the audit."""
        await self._unfollow(user_id)
        async with self.db.begin() as conn:
            gone = (
                await conn.execute(delete(connections).where(connections.c.user_id == user_id))
            ).rowcount
            if gone:
                await self._audit(conn, "alpaca", user_id, why, {})

    async def disconnect(self, actor: str, user_id: str) -> bool:
        """Revoke at Alpaca, stop following, delete the token. Idempotent; True if one existed."""
        row = await self.connection(user_id)
        if row is None:
            return False
        revoked = False
        try:
            revoked = await self.oauth.revoke(self.token_of(row))
        except Exception as exc:  # the token is deleted even if Alpaca cannot be reached
            log.warning("revoking at Alpaca failed: %s", type(exc).__name__)
        await self._unfollow(user_id)
        async with self.db.begin() as conn:
            await conn.execute(delete(connections).where(connections.c.user_id == user_id))
            await self._audit(
                conn,
                actor,
                user_id,
                "disconnect",
                {"revoked_at_alpaca": revoked, "account_number": row["account_number"]},
            )
        return True

    # ---- live orders ------------------------------------------------------------------------
    async def prepare(self, user: Principal, req: Any) -> dict[str, Any]:
        conn_row = await self._require_ready(user)
        payload = _payload(str(uuid.uuid4()), req)
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "id": payload["client_order_id"],
            "user_id": user.user_id,
            "symbol": payload["symbol"],
            "side": payload["side"],
            "qty": Decimal(payload["qty"]),
            "payload": body,
            "payload_sha256": digest,
            "status": "prepared",
            "created_at": now,
            "updated_at": now,
            "expires_at": now + PREPARED_TTL,
        }
        async with self.db.begin() as conn:
            await conn.execute(insert(live_orders).values(**row))
            await self._audit(
                conn,
                user.user_id,
                user.user_id,
                "live_prepare",
                {"payload": body, "payload_sha256": digest},
                payload["client_order_id"],
            )
        row["summary"] = _summary(payload, str(conn_row["account_number"]))
        return row

    async def get(self, user_id: str, live_order_id: str) -> dict[str, Any]:
        try:
            uuid.UUID(live_order_id)
        except ValueError:
            raise InvalidArgument("live_order_id", "must be a live order id (a UUID)") from None
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(live_orders).where(
                            live_orders.c.id == live_order_id, live_orders.c.user_id == user_id
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no live order {live_order_id}", reason="LIVE_ORDER_NOT_FOUND")
        return dict(row)

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(live_orders)
                    .where(live_orders.c.user_id == user_id)
                    .order_by(live_orders.c.created_at.desc())
                    .limit(500)
                )
            ).mappings()
            return [dict(r) for r in rows]

    async def send(self, user: Principal, live_order_id: str, step_up_id: str) -> dict[str, Any]:
        row = await self.get(user.user_id, live_order_id)
        if row["status"] != "prepared":
            return row  # already sent (or failed): a retry never sends again
        if row["expires_at"] <= datetime.now(UTC):
            raise FailedPrecondition(
                "this live order was prepared more than 5 minutes ago: prepare it again",
                reason="LIVE_ORDER_EXPIRED",
            )
        await self._require_ready(user)
        assertion = await self._spend_step_up(
            user, step_up_id, "live_order", str(row["payload_sha256"])
        )
        now = datetime.now(UTC)
        async with self.db.begin() as conn:
            moved = (
                await conn.execute(
                    update(live_orders)
                    .where(live_orders.c.id == live_order_id, live_orders.c.status == "prepared")
                    .values(status="sending", updated_at=now)
                )
            ).rowcount
            if moved:
                await self._audit(
                    conn,
                    user.user_id,
                    user.user_id,
                    "live_sign",
                    {
                        "shown": row["payload"],
                        "payload_sha256": row["payload_sha256"],
                        "step_up_id": step_up_id,
                        "signature": assertion,
                    },
                    live_order_id,
                )
        if not moved:
            return await self.get(user.user_id, live_order_id)
        return await self.deliver(await self.get(user.user_id, live_order_id))

    async def deliver(self, row: dict[str, Any]) -> dict[str, Any]:
        """Get a ``sending`` order to Alpaca exactly once: adopt what Alpaca already has under its
        client_order_id, else post it."""
        oid, user_id = str(row["id"]), str(row["user_id"])
        conn_row = await self.connection(user_id)
        if conn_row is None:
            await self._finish(oid, user_id, "rejected", reason="the live account was disconnected")
            return await self.get(user_id, oid)
        token = self.token_of(conn_row)
        self._in_flight.add(oid)
        try:
            try:
                answer = await self.trading.submit(token, json.loads(row["payload"]))
            except BrokerRejected as err:
                if err.status == 422 and "client_order_id" in str(err):
                    found = await self.trading.by_client_order_id(token, oid)
                    if found is None:
                        raise
                    answer = found
                else:
                    raise
        except BrokerRejected as err:
            revoked = err.status in (401, 403)
            await self._finish(
                oid,
                user_id,
                "rejected",
                reason=(
                    "Alpaca no longer accepts MBT's authorization (revoked at Alpaca): "
                    "connect again with `mbt handoff connect`"
                    if revoked
                    else f"Alpaca: {err}"[:500]
                ),
                detail={"status": err.status, "message": str(err)[:500]},
            )
            if revoked:  # the token is dead: drop it rather than keep a useless credential
                await self.forget_token(user_id, "token_revoked_at_alpaca")
            return await self.get(user_id, oid)
        except BrokerUnreachable as err:
            await self.audit("handoff", user_id, "live_send_unknown", {"error": str(err)}, oid)
            return await self.get(user_id, oid)  # still sending: recovery resolves it
        finally:
            self._in_flight.discard(oid)
        await self._adopt(oid, user_id, answer)
        return await self.get(user_id, oid)

    async def _adopt(self, oid: str, user_id: str, answer: dict[str, Any]) -> None:
        """Record Alpaca's answer: the order is sent (once, audited), and its status moves on
        unless a trade update already moved it further."""
        status = str(answer.get("status", "new"))
        status = status if status in ALPACA_STATUSES else "sent"
        now = datetime.now(UTC)
        async with self.db.begin() as conn:
            first = (
                await conn.execute(
                    update(live_orders)
                    .where(live_orders.c.id == oid, live_orders.c.sent_at.is_(None))
                    .values(
                        alpaca_order_id=str(answer.get("id", ""))[:64], sent_at=now, updated_at=now
                    )
                )
            ).rowcount
            await conn.execute(
                update(live_orders)
                .where(live_orders.c.id == oid, live_orders.c.status == "sending")
                .values(
                    status=status,
                    filled_qty=Decimal(str(answer.get("filled_qty") or "0")),
                    filled_avg_price=_dec(answer.get("filled_avg_price")),
                )
            )
            if first:
                await self._audit(
                    conn,
                    "handoff",
                    user_id,
                    "live_sent",
                    {
                        "alpaca_order_id": answer.get("id"),
                        "status": answer.get("status"),
                        "client_order_id": answer.get("client_order_id"),
                    },
                    oid,
                )

    async def _finish(
        self,
        oid: str,
        user_id: str,
        status: str,
        *,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(live_orders)
                .where(live_orders.c.id == oid)
                .values(status=status, reason=reason, updated_at=datetime.now(UTC))
            )
            await self._audit(
                conn,
                "handoff",
                user_id,
                f"live_{status}",
                {"reason": reason, **(detail or {})},
                oid,
            )

    # ---- trade updates and recovery ---------------------------------------------------------
    async def on_update(self, user_id: str, data: dict[str, Any]) -> None:
        order = data.get("order") or {}
        oid = str(order.get("client_order_id", ""))
        event = str(data.get("event", ""))
        status = str(order.get("status", ""))
        if status not in ALPACA_STATUSES:
            return
        async with self.db.begin() as conn:
            if event in ("fill", "partial_fill") and data.get("execution_id"):
                added = (
                    await conn.execute(
                        pg_insert(live_fills)
                        .values(
                            execution_id=str(data["execution_id"])[:80],
                            live_order_id=oid,
                            user_id=user_id,
                            qty=Decimal(str(data.get("qty") or "0")),
                            price=Decimal(str(data.get("price") or "0")),
                            at=parse_rfc3339(data.get("timestamp")) or datetime.now(UTC),
                        )
                        .on_conflict_do_nothing()
                        .returning(live_fills.c.execution_id)
                    )
                ).first()
                if added is None:
                    return  # this execution is already in the live ledger
                await self._audit(
                    conn,
                    "alpaca",
                    user_id,
                    "live_fill",
                    {
                        "execution_id": data["execution_id"],
                        "qty": data.get("qty"),
                        "price": data.get("price"),
                    },
                    oid,
                )
            await conn.execute(
                update(live_orders)
                .where(
                    live_orders.c.id == oid,
                    live_orders.c.user_id == user_id,
                    live_orders.c.status.notin_(["prepared"]),
                )
                .values(
                    status=status,
                    alpaca_order_id=str(order.get("id", ""))[:64] or None,
                    filled_qty=Decimal(str(order.get("filled_qty") or "0")),
                    filled_avg_price=_dec(order.get("filled_avg_price")),
                    updated_at=datetime.now(UTC),
                )
            )

    async def _follow(self, user_id: str, token: SecretToken) -> None:
        await self._unfollow(user_id)
        stream = OAuthTradeUpdates(token, self.cfg.stream_url)

        async def handle(data: dict[str, Any]) -> None:
            try:
                await self.on_update(user_id, data)
            except Exception:
                log.exception("a live trade update could not be applied")

        self.streams[user_id] = (stream, stream.listen(handle))

    async def _unfollow(self, user_id: str) -> None:
        found = self.streams.pop(user_id, None)
        if found is None:
            return
        stream, task = found
        with contextlib.suppress(Exception):
            await stream.stop_ws()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def follow_all(self) -> None:
        """At start: follow the trade updates of every connected account."""
        async with self.db.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(select(connections))).mappings()]
        for row in rows:
            try:
                await self._follow(str(row["user_id"]), self.token_of(row))
            except Exception:
                log.exception("cannot follow a live account's trade updates")

    async def recover_once(self) -> int:
        """Resolve every unsettled live order with Alpaca: ``sending`` ones are adopted or sent;
        open ones are refreshed (covers trade updates missed while disconnected)."""
        async with self.db.connect() as conn:
            rows = [
                dict(r)
                for r in (
                    await conn.execute(
                        select(live_orders).where(live_orders.c.status.in_(OPEN_STATUSES))
                    )
                ).mappings()
            ]
        n = 0
        for row in rows:
            oid, user_id = str(row["id"]), str(row["user_id"])
            if oid in self._in_flight:
                continue
            conn_row = await self.connection(user_id)
            if conn_row is None:
                continue
            try:
                found = await self.trading.by_client_order_id(self.token_of(conn_row), oid)
            except (BrokerRejected, BrokerUnreachable):
                continue
            if row["status"] == "sending":
                if found is not None:
                    await self._adopt(oid, user_id, found)
                else:
                    await self.deliver(row)
                n += 1
            elif found is not None:
                await self.on_update(user_id, {"event": "refresh", "order": found})
        return n

    async def recover_forever(self) -> None:
        await self.follow_all()
        while True:
            try:
                await self.recover_once()
            except MbtError as err:
                log.warning("live order recovery: %s", err)
            except Exception:
                log.exception("live order recovery failed; retrying")
            await asyncio.sleep(RECOVERY_INTERVAL_S)

    async def close(self) -> None:
        for user_id in list(self.streams):
            await self._unfollow(user_id)

    # ---- keys, privacy ----------------------------------------------------------------------
    async def rotate_kek(self, operator: str) -> tuple[str, int, int]:
        kid = self.keyring.add_key()
        done = 0
        while True:
            async with self.db.begin() as conn:
                rows = (
                    (
                        await conn.execute(
                            select(connections)
                            .where(connections.c.kek_id != kid)
                            .limit(100)
                            .with_for_update(skip_locked=True)
                        )
                    )
                    .mappings()
                    .all()
                )
                for r in rows:
                    s = rewrap(
                        self.keyring,
                        str(r["user_id"]),
                        Sealed(
                            r["kek_id"],
                            bytes(r["wrapped_dek"]),
                            bytes(r["nonce"]),
                            bytes(r["ciphertext"]),
                        ),
                    )
                    await conn.execute(
                        update(connections)
                        .where(connections.c.user_id == r["user_id"])
                        .values(kek_id=s.kek_id, wrapped_dek=s.wrapped_dek)
                    )
                done += len(rows)
            if not rows:
                break
        async with self.db.begin() as conn:
            left = len(
                (
                    await conn.execute(
                        select(connections.c.user_id).where(connections.c.kek_id != kid)
                    )
                ).all()
            )
            await self._audit(
                conn, operator, "-", "kek_rotate", {"active": kid, "rewrapped": done, "left": left}
            )
        return kid, done, left

    async def export_user(self, user_id: str) -> str:
        async with self.db.connect() as conn:

            def q(t: Any, col: Any) -> Any:
                return conn.execute(select(t).where(col == user_id))

            conn_rows = (await q(connections, connections.c.user_id)).mappings().all()
            out: dict[str, list[dict[str, Any]]] = {
                # the connection without its key material (never exported)
                "connections": [
                    {k: v for k, v in r.items() if k not in ("wrapped_dek", "nonce", "ciphertext")}
                    for r in conn_rows
                ],
                "graduations": [
                    dict(r) for r in (await q(graduations, graduations.c.user_id)).mappings()
                ],
                "live_orders": [
                    dict(r) for r in (await q(live_orders, live_orders.c.user_id)).mappings()
                ],
                "live_fills": [
                    dict(r) for r in (await q(live_fills, live_fills.c.user_id)).mappings()
                ],
                "audit_log": [
                    dict(r) for r in (await q(audit_log, audit_log.c.user_id)).mappings()
                ],
            }
        return rows_to_json(out)

    async def erase_user(self, user_id: str) -> None:
        await self.disconnect("erasure", user_id)
        hashed = actor_hash(self.secret, user_id)
        async with self.db.begin() as conn:
            for t, col in (
                (oauth_states, oauth_states.c.user_id),
                (live_fills, live_fills.c.user_id),
                (live_orders, live_orders.c.user_id),
                (graduations, graduations.c.user_id),
            ):
                await conn.execute(delete(t).where(col == user_id))
            await conn.execute(
                update(audit_log).where(audit_log.c.user_id == user_id).values(user_id=hashed)
            )
            await conn.execute(
                update(audit_log).where(audit_log.c.actor == user_id).values(actor=hashed)
            )


def _dec(v: Any) -> Decimal | None:
    if v in (None, ""):
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def _payload(live_order_id: str, req: Any) -> dict[str, str]:
    """The exact body of Alpaca's POST /v2/orders, validated; strings as Alpaca's API takes them."""
    symbol = req.symbol.strip().upper()
    if not SYMBOL.match(symbol):
        raise InvalidArgument(
            "symbol", f"must be an equity symbol such as AAPL; got {req.symbol!r}"
        )
    side = req.side.strip().lower()
    if side not in ("buy", "sell"):
        raise InvalidArgument("side", f"must be buy or sell; got {req.side!r}")
    try:
        qty = Decimal(req.qty)
    except InvalidOperation:
        raise InvalidArgument("qty", f"must be a number of shares; got {req.qty!r}") from None
    if not qty.is_finite() or qty <= 0 or qty != qty.to_integral_value() or qty > 1_000_000:
        raise InvalidArgument("qty", "must be a whole number of shares from 1 to 1,000,000")
    kind = (req.type or "market").strip().lower()
    if kind not in ("market", "limit"):
        raise InvalidArgument("type", f"must be market or limit; got {req.type!r}")
    tif = (req.time_in_force or "day").strip().lower()
    if tif not in ("day", "gtc"):
        raise InvalidArgument("time_in_force", f"must be day or gtc; got {req.time_in_force!r}")
    out = {
        "client_order_id": live_order_id,
        "symbol": symbol,
        "qty": str(int(qty)),
        "side": side,
        "type": kind,
        "time_in_force": tif,
    }
    if kind == "limit":
        try:
            limit = Decimal(req.limit_price)
        except InvalidOperation:
            raise InvalidArgument("limit_price", "is required for a limit order") from None
        if (
            not limit.is_finite()
            or not 0 < limit < MAX_LIVE_PRICE
            or off_tick(limit, option=False) is not None
        ):
            raise InvalidArgument(
                "limit_price",
                "must be a positive price in cents (e.g. 185.10), or in $0.0001 below $1",
            )
        out["limit_price"] = str(limit.quantize(price_increment(limit, option=False)))
    elif req.limit_price:
        raise InvalidArgument("limit_price", "is only for limit orders")
    return out


def _summary(p: dict[str, str], account_number: str) -> str:
    how = f"limit {p['limit_price']}" if p["type"] == "limit" else "market"
    return (
        f"LIVE ORDER to Alpaca account {account_number or '(connected)'}: {p['side']} {p['qty']} "
        f"{p['symbol']} {how}, time in force {p['time_in_force']}. Real money; MBT sends it once."
    )

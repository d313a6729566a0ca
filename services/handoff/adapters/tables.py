"""The handoff schema: graduation overrides, OAuth states, the encrypted token, live orders and
their fills (a live ledger apart from paper), and the audit log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.platform.db import SchemaMigrations, create_tables

SCHEMA = "handoff"
metadata = MetaData(schema=SCHEMA)

graduations = Table(
    "graduations",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("operator", String(80), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# one row per authorization in flight: single use, bound to the user and session that began it
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(64), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("session_id", String(36), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# the token, envelope-encrypted (services/handoff/crypto.py); never in plaintext anywhere
connections = Table(
    "connections",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("kek_id", String(40), nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("scope", Text, nullable=False),
    Column("account_number", String(40), nullable=False, server_default=""),
    Column("connected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("connections_by_kek", "kek_id"),
)

live_orders = Table(
    "live_orders",
    metadata,
    Column("id", String(36), primary_key=True),  # also the client_order_id at Alpaca
    Column("user_id", String(36), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", Numeric(20, 6), nullable=False),
    Column("payload", Text, nullable=False),  # the exact body sent
    Column("payload_sha256", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("alpaca_order_id", String(64)),
    Column("filled_qty", Numeric(20, 6), nullable=False, server_default="0"),
    Column("filled_avg_price", Numeric(20, 6)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("live_orders_by_user", "user_id", "created_at"),
    Index(
        "live_orders_unsettled",
        "status",
        postgresql_where="status IN ('sending','sent','new','accepted','partially_filled')",
    ),
)

live_fills = Table(
    "live_fills",
    metadata,
    Column("execution_id", String(80), primary_key=True),  # Alpaca's: applied once
    Column("live_order_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("qty", Numeric(20, 6), nullable=False),
    Column("price", Numeric(20, 6), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(80), nullable=False),
    Column("user_id", String(80), nullable=False),
    Column("action", String(30), nullable=False),
    Column("live_order_id", String(36)),
    Column("detail", JSONB, nullable=False),
)

MIGRATIONS = SchemaMigrations(schema=SCHEMA, steps=[create_tables(metadata)])

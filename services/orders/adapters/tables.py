"""The orders schema: orders, fills (with their NBBO), the audit log and the outbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.platform.db import SchemaMigrations, create_tables, sql
from services.platform.outbox import outbox_table

# the shadow relay's table, in DDL (the relay reads and writes it with plain SQL)
SHADOW_DDL = (
    "CREATE TABLE IF NOT EXISTS orders.shadow_orders (order_id varchar(36) PRIMARY KEY, "
    "user_id varchar(36) NOT NULL, status text NOT NULL, alpaca_order_id text, "
    "error text NOT NULL DEFAULT '', sent_at timestamptz NOT NULL DEFAULT now(), "
    "canceled_at timestamptz)"
)

SCHEMA = "orders"
metadata = MetaData(schema=SCHEMA)
PRICE = Numeric(20, 6)
QTY = Numeric(20, 6)

# an order that holds its client_order_id: any but one refused at submit
LIVE_ORDER = "status <> 'rejected' OR accepted_at IS NOT NULL"

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("account_id", String(36)),
    Column("client_order_id", String(128), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", QTY, nullable=False),
    Column("order_type", String(10), nullable=False),
    Column("time_in_force", String(3), nullable=False),
    Column("limit_price", PRICE),
    Column("stop_price", PRICE),
    Column("status", String(20), nullable=False),
    Column("status_reason", Text, nullable=False, server_default=""),
    Column("reject_reason", Text, nullable=False, server_default=""),
    Column("filled_qty", QTY, nullable=False, server_default="0"),
    Column("filled_notional", PRICE, nullable=False, server_default="0"),
    Column("fill_count", Integer, nullable=False, server_default="0"),
    Column("triggered", Boolean, nullable=False, server_default="false"),
    Column("hold_amount", PRICE, nullable=False, server_default="0"),
    Column("legs", JSONB),
    Column("fill_preference", String(14)),
    Column("replaces", String(36)),
    Column("replaced_by", String(36)),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True)),
    Column("filled_at", DateTime(timezone=True)),
    Column("canceled_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # client_order_id is unique per account (one account per user in v1) among the orders it
    # placed: an order refused at submit (rejected, never accepted) does not use it up, so a
    # retry with the same client_order_id is a new attempt (as at Alpaca, where a refused
    # submit leaves no order)
    Index(
        "orders_client_order_id_live",
        "user_id",
        "client_order_id",
        unique=True,
        postgresql_where=text(LIVE_ORDER),
    ),
    Index("orders_by_user", "user_id", "submitted_at"),
    # replacements by the order they replace (a restart finishes any left half done)
    Index("orders_by_replaced", "replaces", postgresql_where=text("replaces IS NOT NULL")),
    Index(
        "orders_open",
        "status",
        postgresql_where="status IN ('new','accepted','partially_filled')",
    ),
)

fills = Table(
    "fills",
    metadata,
    Column("id", String(80), primary_key=True),  # execution id: applied exactly once
    Column("order_id", String(36), ForeignKey(orders.c.id), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("account_id", String(36)),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("qty", QTY, nullable=False),
    Column("price", PRICE, nullable=False),
    Column("filled_at", DateTime(timezone=True), nullable=False),
    Column("quote_symbol", String(32), nullable=False),
    Column("nbbo_bid", PRICE, nullable=False),
    Column("nbbo_ask", PRICE, nullable=False),
    Column("nbbo_bid_size", BigInteger, nullable=False),
    Column("nbbo_ask_size", BigInteger, nullable=False),
    Column("quote_ts", DateTime(timezone=True), nullable=False),
    Column("explanation", Text, nullable=False),
    Index("fills_by_user", "user_id", "filled_at"),
    Index("fills_by_account_symbol", "account_id", "symbol"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sim_at", DateTime(timezone=True)),
    Column("actor", String(80), nullable=False),
    Column("action", String(20), nullable=False),
    Column("order_id", String(36)),
    Column("detail", JSONB, nullable=False),
)

outbox = outbox_table(metadata)

MIGRATIONS = SchemaMigrations(
    schema=SCHEMA,
    steps=[
        create_tables(metadata),
        sql(
            "ALTER TABLE orders.orders ADD COLUMN IF NOT EXISTS replaces varchar(36)",
            "ALTER TABLE orders.orders ADD COLUMN IF NOT EXISTS replaced_by varchar(36)",
        ),
        sql("ALTER TABLE orders.orders ADD COLUMN IF NOT EXISTS fill_preference varchar(14)"),
        sql(
            "CREATE INDEX IF NOT EXISTS fills_by_account_symbol "
            "ON orders.fills (account_id, symbol)"
        ),
        # partitions (services/orders/partitions.py): who owns each, with a fencing epoch, and
        # the partition of each outbox row (each owner relays its own)
        sql(
            "CREATE TABLE IF NOT EXISTS orders.partition_owners (partition integer PRIMARY KEY, "
            "epoch bigint NOT NULL, owner text NOT NULL, claimed_at timestamptz)",
            "ALTER TABLE orders.outbox ADD COLUMN IF NOT EXISTS partition smallint",
        ),
        # shadow mode (services/orders/shadow.py): what was mirrored to Alpaca paper
        sql(SHADOW_DDL),
        # an order refused at submit no longer uses up its client_order_id
        sql(
            "ALTER TABLE orders.orders DROP CONSTRAINT IF EXISTS orders_client_order_id_per_user",
            "CREATE UNIQUE INDEX IF NOT EXISTS orders_client_order_id_live ON orders.orders "
            f"(user_id, client_order_id) WHERE {LIVE_ORDER}",
        ),
        # replacements by the order they replace (a restart finishes any left half done)
        sql(
            "CREATE INDEX IF NOT EXISTS orders_by_replaced ON orders.orders (replaces) "
            "WHERE replaces IS NOT NULL"
        ),
    ],
)

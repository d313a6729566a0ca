"""The accounts schema: only this service reads or writes these tables."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.platform.db import SchemaMigrations, create_tables, sql
from services.platform.outbox import outbox_table

SCHEMA = "accounts"
metadata = MetaData(schema=SCHEMA)
MONEY = Numeric(20, 6)
QTY = Numeric(20, 6)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False, unique=True),  # one account per user in v1
    Column("account_type", String(10), nullable=False),
    Column("status", String(12), nullable=False),
    Column("profile", String(20), nullable=False),
    Column("tier", String(10), nullable=False),
    Column("fill_preference", String(14), nullable=False),
    Column("cash", MONEY, nullable=False),
    # the cash its active holds reserve, kept by triggers on holds (HELD_CASH_DDL)
    Column("held_cash", MONEY, nullable=False, server_default="0"),
    # the owner's configuration (Alpaca's names): refuse short sales / every new order
    Column("no_shorting", Boolean, nullable=False, server_default="false"),
    Column("suspend_trade", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

positions = Table(
    "positions",
    metadata,
    Column("account_id", String(36), ForeignKey(accounts.c.id), primary_key=True),
    Column("symbol", String(32), primary_key=True),
    Column("asset_class", String(10), nullable=False),
    Column("qty", QTY, nullable=False),
    Column("avg_entry_price", Numeric(30, 12), nullable=False),
    Column("realized_pl", MONEY, nullable=False),
    Column("opened_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
)

holds = Table(
    "holds",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey(accounts.c.id), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("amount", MONEY, nullable=False),  # cash reserved (buys)
    Column("qty", QTY, nullable=False),  # shares reserved (sells; buys covering a short)
    Column("status", String(10), nullable=False),  # active | released
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("holds_active", "account_id", postgresql_where="status = 'active'"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(36), ForeignKey(accounts.c.id), nullable=False),
    Column("activity_type", String(16), nullable=False),
    Column("symbol", String(32)),
    Column("amount", MONEY, nullable=False),
    Column("qty", QTY),
    Column("price", MONEY),
    Column("ref_id", String(64)),
    Column("realized_pl", MONEY),  # closing fills: realized P&L at average cost
    Column("description", Text, nullable=False, server_default=""),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("activities_by_account", "account_id", "occurred_at"),
)

# Inbox: each bus event is applied exactly once (by its Nats-Msg-Id).
applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", String(80), primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Events that reference an unknown account: parked and reported, never lost.
parked_events = Table(
    "parked_events",
    metadata,
    Column("event_id", String(80), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("event_id"),
)

# One row per account per trading day, marked at the close (the EOD mark-to-market job).
eod_snapshots = Table(
    "eod_snapshots",
    metadata,
    Column("account_id", String(36), ForeignKey(accounts.c.id), primary_key=True),
    Column("as_of_date", Date, primary_key=True),
    Column("cash", MONEY, nullable=False),
    Column("long_market_value", MONEY, nullable=False),
    Column("short_market_value", MONEY, nullable=False),
    Column("equity", MONEY, nullable=False),
    Column("positions", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

outbox = outbox_table(metadata)

# One row per account imported from Alpaca paper: which source account, and the steps done
# (services/accounts/alpaca_import.py); a rerun skips them, a crashed run resumes after them.
imports = Table(
    "imports",
    metadata,
    Column("account_id", String(36), ForeignKey(accounts.c.id), primary_key=True),
    Column("source_account", Text, nullable=False),
    Column("steps", JSONB, nullable=False, server_default="[]"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
)
# shadow parity (services/accounts/parity.py): one row per day and shadow user
PARITY_DDL = (
    "CREATE TABLE IF NOT EXISTS accounts.parity_reports (report_date date NOT NULL, "
    "user_id varchar(36) NOT NULL, ok boolean NOT NULL, detail jsonb NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (report_date, user_id))"
)
# operator actions on accounts (imports from Alpaca, parity runs): who, what, about whom
AUDIT_DDL = (
    "CREATE TABLE IF NOT EXISTS accounts.audit_log (id bigserial PRIMARY KEY, at timestamptz "
    "NOT NULL DEFAULT now(), actor varchar(80) NOT NULL, action varchar(30) NOT NULL, "
    "user_id varchar(80), detail jsonb NOT NULL)"
)
IMPORTS_DDL = (
    "CREATE TABLE IF NOT EXISTS accounts.imports (account_id varchar(36) PRIMARY KEY "
    "REFERENCES accounts.accounts (id), source_account text NOT NULL, steps jsonb NOT NULL "
    "DEFAULT '[]', started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)"
)

EOD_SNAPSHOTS_DDL = """
CREATE TABLE IF NOT EXISTS accounts.eod_snapshots (
    account_id varchar(36) NOT NULL REFERENCES accounts.accounts (id),
    as_of_date date NOT NULL,
    cash numeric(20, 6) NOT NULL,
    long_market_value numeric(20, 6) NOT NULL,
    short_market_value numeric(20, 6) NOT NULL,
    equity numeric(20, 6) NOT NULL,
    positions jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, as_of_date)
)"""

# accounts.held_cash = the sum of the account's active holds, kept by statement triggers on
# holds (whatever writes them: placing, fills using them up, releases), so buying power is read
# from one row instead of summed over every open order
HELD_CASH_DDL = [
    "ALTER TABLE accounts.accounts ADD COLUMN IF NOT EXISTS held_cash numeric(20, 6) "
    "NOT NULL DEFAULT 0",
    "UPDATE accounts.accounts a SET held_cash = coalesce((SELECT sum(h.amount) FROM "
    "accounts.holds h WHERE h.account_id = a.id AND h.status = 'active'), 0)",
    """CREATE OR REPLACE FUNCTION accounts.holds_keep_held_cash() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        UPDATE accounts.accounts a SET held_cash = a.held_cash + d.amount
        FROM (SELECT account_id, sum(amount) AS amount FROM new_rows WHERE status = 'active'
              GROUP BY account_id) d WHERE a.id = d.account_id AND d.amount <> 0;
      ELSIF TG_OP = 'UPDATE' THEN
        UPDATE accounts.accounts a SET held_cash = a.held_cash + d.amount
        FROM (SELECT account_id, sum(amount) AS amount FROM (
                SELECT account_id, amount FROM new_rows WHERE status = 'active'
                UNION ALL
                SELECT account_id, -amount FROM old_rows WHERE status = 'active') x
              GROUP BY account_id) d WHERE a.id = d.account_id AND d.amount <> 0;
      ELSE
        UPDATE accounts.accounts a SET held_cash = a.held_cash - d.amount
        FROM (SELECT account_id, sum(amount) AS amount FROM old_rows WHERE status = 'active'
              GROUP BY account_id) d WHERE a.id = d.account_id AND d.amount <> 0;
      END IF;
      RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS holds_held_cash_insert ON accounts.holds",
    "CREATE TRIGGER holds_held_cash_insert AFTER INSERT ON accounts.holds "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION accounts.holds_keep_held_cash()",
    "DROP TRIGGER IF EXISTS holds_held_cash_update ON accounts.holds",
    "CREATE TRIGGER holds_held_cash_update AFTER UPDATE ON accounts.holds "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION accounts.holds_keep_held_cash()",
    "DROP TRIGGER IF EXISTS holds_held_cash_delete ON accounts.holds",
    "CREATE TRIGGER holds_held_cash_delete AFTER DELETE ON accounts.holds "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION accounts.holds_keep_held_cash()",
]

MIGRATIONS = SchemaMigrations(
    schema=SCHEMA,
    steps=[
        create_tables(metadata),
        sql(EOD_SNAPSHOTS_DDL),
        # exact average prices after splits and averaging (cost basis to well under a cent)
        sql("ALTER TABLE accounts.positions ALTER COLUMN avg_entry_price TYPE numeric(30, 12)"),
        sql("ALTER TABLE accounts.activities ADD COLUMN IF NOT EXISTS realized_pl numeric(20, 6)"),
        sql(*HELD_CASH_DDL),
        sql("ALTER TABLE accounts.outbox ADD COLUMN IF NOT EXISTS partition smallint"),
        sql(IMPORTS_DDL),
        sql(PARITY_DDL),
        sql(AUDIT_DDL),
        sql(
            "ALTER TABLE accounts.accounts ADD COLUMN IF NOT EXISTS no_shorting boolean "
            "NOT NULL DEFAULT false",
            "ALTER TABLE accounts.accounts ADD COLUMN IF NOT EXISTS suspend_trade boolean "
            "NOT NULL DEFAULT false",
        ),
    ],
)

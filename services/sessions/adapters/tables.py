"""The sessions schema: users, their passkeys, pending ceremonies and sessions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from services.platform.db import SchemaMigrations, create_tables, sql

SCHEMA = "sessions"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("user_handle", LargeBinary, nullable=False, unique=True),  # random, never the id
    Column("tier", String(10), nullable=False, server_default="free"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

credentials = Table(
    "webauthn_credentials",
    metadata,
    Column("credential_id", LargeBinary, primary_key=True),
    Column("user_id", String(36), ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("transports", ARRAY(String)),
    Column("aaguid", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True)),
)

ceremonies = Table(
    "ceremonies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("purpose", String(20), nullable=False),  # register | login
    Column("email", String(320), nullable=False),
    Column("user_handle", LargeBinary),
    Column("challenge", LargeBinary, nullable=False),
    Column("context", JSONB, nullable=False, server_default="{}"),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(80), nullable=False),
    Column("action", String(20), nullable=False),
    Column("detail", JSONB, nullable=False),
)

# GDPR erasure requests in their 30-day cooling-off period.
erasures = Table(
    "erasures",
    metadata,
    Column("user_id", String(36), ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("erase_after", DateTime(timezone=True), nullable=False),
)

ERASURES_DDL = """
CREATE TABLE IF NOT EXISTS sessions.erasures (
    user_id varchar(36) PRIMARY KEY REFERENCES sessions.users (id) ON DELETE CASCADE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    erase_after timestamptz NOT NULL
)"""

MIGRATIONS = SchemaMigrations(schema=SCHEMA, steps=[create_tables(metadata), sql(ERASURES_DDL)])

"""The sessions schema: users, passkeys, ceremonies, sessions, refresh tokens, step-ups, keys."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
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
    Column("last_refreshed_at", DateTime(timezone=True)),
)

# One row per refresh token ever issued (stored as SHA-256, never in the clear). A token is
# used once; presenting a used one again revokes its family (the session) everywhere.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("session_id", String(36), ForeignKey(sessions.c.id, ondelete="CASCADE"), nullable=False),
    Column("parent_hash", String(64)),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# A fresh passkey assertion with user verification: valid for 5 minutes, used at most once,
# optionally bound to the SHA-256 of the content it approves (a live order).
step_ups = Table(
    "step_ups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("session_id", String(36), nullable=False),
    Column("bound_to", String(64), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("used_for", String(40)),
    # the passkey's assertion (public: a signature, not a secret), kept as the proof that the
    # user approved the bound content (a live order's audit row carries it)
    Column("assertion", Text),
)

# Programmatic credentials: the secret is kept only as a keyed hash (HMAC-SHA256).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("user_id", String(36), ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", ARRAY(String), nullable=False),
    Column("read_only", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
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

MIGRATIONS = SchemaMigrations(
    schema=SCHEMA,
    steps=[
        create_tables(metadata),
        sql(ERASURES_DDL),
        # v3: refresh tokens, step-ups and API keys (create_all adds only missing tables)
        create_tables(metadata),
        sql("ALTER TABLE sessions.sessions ADD COLUMN IF NOT EXISTS last_refreshed_at timestamptz"),
        sql("ALTER TABLE sessions.step_ups ADD COLUMN IF NOT EXISTS assertion text"),
    ],
)

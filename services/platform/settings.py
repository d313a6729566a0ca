"""Settings from the environment, one explicit object, read when a process starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SERVICE_NAMES = ("accounts", "orders", "marketdata", "sessions", "handoff")
DEFAULT_PORTS = {
    "accounts": 50051,
    "orders": 50052,
    "marketdata": 50053,
    "sessions": 50054,
    "handoff": 50055,
}


def _flag(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything a service needs to know about its surroundings."""

    database_url: str
    """SQLAlchemy URL (postgresql+psycopg://...)."""
    nats_url: str
    jwt_secret: bytes
    """HS256 key for session and service tokens (MBT_JWT_SECRET, hex)."""
    service_addrs: dict[str, str] = field(default_factory=dict)
    """host:port of each gRPC service (MBT_<NAME>_ADDR)."""
    trading_disabled: bool = False
    """MBT_TRADING_DISABLED=1: read-only; submits answer UNAVAILABLE (503)."""
    new_orders_disabled: bool = False
    """MBT_NEW_ORDERS_DISABLED=1: views and cancels work, new submits refused."""
    live_handoff_disabled: bool = False
    """MBT_LIVE_HANDOFF_DISABLED=1: live enrollment and live orders refused."""
    paper_trading: str = "on"
    """FLAG_MBT_PAPER_TRADING: off | shadow | on. These four are start-up defaults; operators
    change them at run time (services/platform/flags.py)."""
    rp_id: str = "localhost"
    origins: tuple[str, ...] = ("http://localhost:8080",)
    replay_speed: float = 1.0
    replay_days: str = ""
    data_dir: str = ""
    grpc_host: str = "127.0.0.1"
    """Interface the gRPC servers bind (MBT_GRPC_HOST; 0.0.0.0 in a pod)."""
    operator_token: str = field(default="", repr=False)
    """The operator credential (from the file MBT_OPERATOR_TOKEN_FILE; a Secret in k8s)."""
    rate_limits: bool = True
    """Per-tier request limits (MBT_RATE_LIMITS=0 turns them off, e.g. for a baseline bench)."""
    tier_limits: dict[str, int] = field(default_factory=dict)
    """Requests per minute per tier (BRIEF: 60/600/3000) and per address; MBT_TIER_RATE_LIMITS."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        secret_hex = e.get("MBT_JWT_SECRET", "")
        if not secret_hex:
            raise SystemExit("MBT_JWT_SECRET is not set (hex); `mbt up` sets it for its services")
        addrs = {
            name: e.get(f"MBT_{name.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[name]}")
            for name in SERVICE_NAMES
        }
        return cls(
            database_url=sqlalchemy_url(e.get("DATABASE_URL", "")),
            nats_url=e.get("NATS_URL", "nats://127.0.0.1:4222"),
            jwt_secret=bytes.fromhex(secret_hex),
            service_addrs=addrs,
            trading_disabled=_flag(e, "MBT_TRADING_DISABLED"),
            new_orders_disabled=_flag(e, "MBT_NEW_ORDERS_DISABLED"),
            live_handoff_disabled=_flag(e, "MBT_LIVE_HANDOFF_DISABLED"),
            paper_trading=e.get("FLAG_MBT_PAPER_TRADING", "on").strip().lower(),
            rp_id=e.get("MBT_RP_ID", "localhost"),
            origins=tuple(
                o.strip()
                for o in e.get("MBT_WEBAUTHN_ORIGINS", "http://localhost:8080").split(",")
                if o.strip()
            ),
            replay_speed=float(e.get("MBT_REPLAY_SPEED", "1")),
            replay_days=e.get("MBT_REPLAY_DAYS", ""),
            data_dir=e.get("MBT_DATA_DIR", ""),
            grpc_host=e.get("MBT_GRPC_HOST", "127.0.0.1"),
            operator_token=read_secret_file(e.get("MBT_OPERATOR_TOKEN_FILE", "")),
            rate_limits=e.get("MBT_RATE_LIMITS", "1").strip().lower() not in {"0", "false", "off"},
            tier_limits=_tier_limits(e.get("MBT_TIER_RATE_LIMITS", "")),
        )

    def port_of(self, service: str) -> int:
        return int(self.service_addrs[service].rsplit(":", 1)[1])


def _tier_limits(raw: str) -> dict[str, int]:
    from services.platform.ratelimit import parse_tier_limits

    try:
        return parse_tier_limits(raw)
    except ValueError as exc:
        raise SystemExit(f"MBT_TIER_RATE_LIMITS: {exc}") from None


def read_secret_file(path: str) -> str:
    """A secret kept in a file (mode 0600 locally, a mounted Secret in Kubernetes); "" if unset."""
    if not path:
        return ""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as exc:
        raise SystemExit(f"cannot read the secret file {path}: {exc}") from exc


def sqlalchemy_url(url: str) -> str:
    """postgresql://... (libpq form) -> postgresql+psycopg://... (SQLAlchemy + psycopg 3)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url

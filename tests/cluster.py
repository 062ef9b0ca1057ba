"""A Tollgate deployment of several processes on one machine: a throwaway PostgreSQL, ONE shared demo-model
process, N `tollgate serve` app processes on one database, auth secret and workspaces dir, and haproxy in
front with cookie stickiness (README "Past one machine"). `make cluster` runs `main`; tests/e2e/test_cluster.py
and bench/ reuse the pieces.

    .venv/bin/python -m tests.cluster [--apps 2] [--port 8000] [--dir data/cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import ROOT, Server, free_port, start_server, stop_server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL binaries are missing: run `make postgres` (apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster (fsync off: for tests and demos only)."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tollgate-pg-")))  # postgres can reach
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def libpq(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> Postgres:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        data, pg = self.base / "pgdata", _pg_bin()
        if not (data / "PG_VERSION").exists():
            subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                         "--no-sync"]), check=True, capture_output=True)
        subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-l", str(self.base / "log"), "-w",
                                     "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} "
                                           "-c fsync=off -c max_connections=300", "start"]),
                       check=True, capture_output=True)
        return self

    def stop(self, *, remove: bool = False) -> None:
        subprocess.run(_as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(self.base / "pgdata"), "-m", "fast",
                                     "stop"]), capture_output=True)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class ModelProcess:
    proc: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls, log: Path) -> ModelProcess:
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.cluster", "serve-model"], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # the process prints its address once it accepts connections
        if not url.startswith("http"):
            raise RuntimeError(f"demo model did not start: {log.read_text()[-2000:]}")
        return cls(proc, url)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve_model() -> None:
    from fakeclaude import DemoModelServer, DemoSettings

    server = DemoModelServer(settings=DemoSettings.from_env())
    print(server.start(), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


HAPROXY_CFG = """global
    maxconn 4000
    # what haproxy thinks of each server (UP/DOWN), for tests waiting on a restarted one
    stats socket {stats_socket} mode 600 level user
defaults
    mode http
    timeout connect 5s
    # A busy process is not a dead one: a check may take 5 s, and three must fail (kill -9 refuses at once).
    timeout check 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    option redispatch
    retries 3
frontend web
    bind 127.0.0.1:{port}
    default_backend tollgate
backend tollgate
    balance roundrobin
    cookie TGSRV insert indirect nocache httponly
    option httpchk GET /
{servers}
"""


@dataclass
class Haproxy:
    proc: subprocess.Popen[bytes]
    url: str
    stats_socket: Path

    @classmethod
    def start(cls, base: Path, port: int, apps: dict[str, int]) -> Haproxy:
        servers = "\n".join(f"    server {name} 127.0.0.1:{p} check inter 1s fall 3 rise 2 cookie {name}"
                            for name, p in apps.items())
        cfg = base / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers, stats_socket=base / "haproxy.sock"))
        with (base / "haproxy.log").open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/", proc)
        proxy = cls(proc, url, base / "haproxy.sock")
        for name in apps:
            proxy.wait_up(name)
        return proxy

    def server_status(self, name: str) -> str:
        """haproxy's own view of a server ("UP", "DOWN", "UP 1/2", ...), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b"".join(iter(lambda: s.recv(65536), b""))
        header, *rows = data.decode().splitlines()
        fields = header.lstrip("# ").split(",")
        for row in rows:
            values = dict(zip(fields, row.split(","), strict=False))
            if values.get("pxname") == "tollgate" and values.get("svname") == name:
                return values["status"]
        raise KeyError(name)

    def wait_up(self, name: str, timeout_s: float = 60) -> None:
        """A restarted app answers before haproxy's checks (rise 2) mark it UP; until then haproxy redispatches
        a browser pinned to it to another process and rewrites its cookie."""
        deadline = time.monotonic() + timeout_s
        while (status := self.server_status(name)) != "UP":
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy still sees {name} as {status}")
            time.sleep(0.1)  # poll interval of the probe, not a wait for state

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:  # readiness is an observable event: the first 200
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.1)  # poll interval of the probe, not a wait for state


@dataclass
class Cluster:
    base: Path
    pg: Postgres
    model: ModelProcess | None
    model_url: str
    apps: dict[str, Server]
    proxy: Haproxy | None
    env: dict[str, str]

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def cli(self, *args: str, stdin: str = "") -> str:
        return next(s for s in self.apps.values() if s.proc.poll() is None).cli(*args, stdin=stdin)

    def port_of(self, name: str) -> int:
        return int(self.apps[name].url.rsplit(":", 1)[1])

    def workspace(self, user: str) -> Path:
        return self.base / "workspaces" / user

    def start_app(self, name: str, extra_env: dict[str, str] | None = None, port: int | None = None) -> Server:
        self.apps[name] = start_server(self.base / f"app-{name}", {**self.env, **(extra_env or {})}, port=port,
                                       ready_timeout_s=300)  # several start together on a shared machine
        if self.proxy is not None:  # a restart: ready only once haproxy sends it traffic again
            self.proxy.wait_up(name)
        return self.apps[name]

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for app in self.apps.values():
            if app.proc.poll() is None:
                stop_server(app)
        if self.model is not None:
            self.model.stop()
        self.pg.stop(remove=not self.pg.base.is_relative_to(self.base))


@contextlib.contextmanager
def running(base: Path, *, apps: int = 2, port: int | None = None, model_url: str | None = None,
            extra_env: dict[str, str] | None = None, keep_pg: bool = False) -> Iterator[Cluster]:
    """PostgreSQL (kept in base/pg with `keep_pg`, else a throwaway one), the shared model (unless `model_url`
    names one), `apps` app processes, haproxy."""
    base.mkdir(parents=True, exist_ok=True)
    pg = (Postgres(base / "pg") if keep_pg else Postgres()).start()
    cluster = Cluster(base=base, pg=pg, model=None, model_url="", apps={}, proxy=None, env={})
    try:
        if model_url is None:
            cluster.model = ModelProcess.start(base / "model.log")
            model_url = cluster.model.url
        cluster.model_url = model_url
        proxy_port = port or free_port()
        secret_file = base / "auth_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48))
        (base / "workspaces").mkdir(exist_ok=True)
        cluster.env = {"TOLLGATE_DATABASE_URL": pg.url, "CHAINLIT_AUTH_SECRET": secret_file.read_text(),
                       "TOLLGATE_WORKSPACES": str(base / "workspaces"), "ANTHROPIC_API_KEY": "demo-key",
                       "ANTHROPIC_BASE_URL": model_url, "TOLLGATE_ALLOWED_ORIGINS": f"http://127.0.0.1:{proxy_port}",
                       **(extra_env or {})}
        for i in range(apps):  # one after the other: the first creates the schema
            cluster.start_app("ab"[i] if i < 2 else f"app{i}")
        cluster.proxy = Haproxy.start(base, proxy_port, {n: int(s.url.rsplit(":", 1)[1]) for n, s in
                                                          cluster.apps.items()})
        yield cluster
    finally:
        cluster.stop()


def race(url: str, user: str, sessions: int, amount: int, cap: int) -> None:
    """One process of a budget race: `sessions` concurrent reservations of `amount` against a daily `cap`,
    started when a line arrives on stdin (so two processes start together); prints how many were admitted."""
    import asyncio

    from store import usage as usage_store
    from store.db import Database
    from store.usage import LimitReached, SpendLimit

    async def run() -> int:
        db = Database(url)
        limits = [SpendLimit("daily", "user_day", cap)]

        async def one(i: int) -> bool:
            try:
                await usage_store.reserve(db, user=user, thread_id=None, turn_id=f"race-{os.getpid()}-{i}",
                                          model="m", purpose="chat", amount_nanousd=amount, tokens=1, limits=limits)
                return True
            except LimitReached:
                return False

        async with db.read() as conn:  # connections open before the start: the race is the reservations
            await conn.exec_driver_sql("SELECT 1")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        admitted = sum(await asyncio.gather(*(one(i) for i in range(sessions))))
        await db.close()
        return admitted

    print(asyncio.run(run()), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["serve-model"]:
        serve_model()
        return
    if sys.argv[1:2] == ["race"]:
        url, user, *numbers = sys.argv[2:]
        race(url, user, *(int(n) for n in numbers))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--apps", type=int, default=2)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--dir", type=Path, default=None, help="kept between runs (default: a temporary dir)")
    args = ap.parse_args()
    base = args.dir.resolve() if args.dir else Path(tempfile.mkdtemp(prefix="tollgate-cluster-"))
    with running(base, apps=args.apps, port=args.port, keep_pg=args.dir is not None) as cluster:
        cluster.cli("users", "ensure-demo")
        print(f"Tollgate on {cluster.url} (haproxy) -> " + ", ".join(f"{n}: {s.url}" for n, s in cluster.apps.items()),
              f"\nPostgreSQL {cluster.pg.libpq}; demo model {cluster.model_url}; state in {base}"
              f"\nMCP servers: {os.environ.get('TOLLGATE_MCP_CONFIG') or 'none (TOLLGATE_MCP_CONFIG unset)'}"
              "\nCtrl-C stops all.",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()

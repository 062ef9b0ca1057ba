"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp dir, started on a free port with
its unix socket in that dir, fsync off, stopped and removed at the end. No service on the machine is used.

initdb and pg_ctl refuse to run as root: as root they run as the `postgres` user (runuser), which Debian's
`postgresql` package creates (`make postgres` installs it when the binaries are missing).

    with PgCluster.started() as pg:
        pg.create_database("t1")
        url = pg.url("t1")   # postgresql+psycopg://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

SUPERUSER = "postgres"


class PostgresMissing(RuntimeError):
    pass


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise PostgresMissing("no /usr/lib/postgresql/*/bin/initdb: run `make postgres` (installs Debian's postgresql)")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *args] if os.geteuid() == 0 else args


@dataclass
class PgCluster:
    root: Path  # temp dir: data/, log, the unix socket
    port: int
    binaries: Path
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """An autocommit admin connection (CREATE/DROP DATABASE cannot run in a transaction)."""
        return psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname=database, autocommit=True)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        with self.connect() as conn:
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            conn.execute(sql.encode())

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.root / "data"), *args]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        try:
            self._pg_ctl("-m", "immediate", "stop")  # throwaway data: no checkpoint needed
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def start(cls, *, port: int | None = None) -> PgCluster:
        binaries = bin_dir()
        root = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, SUPERUSER, SUPERUSER)
        cluster = cls(root=root, port=port or free_port(), binaries=binaries)
        try:
            subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(root / "data"), "-A", "trust",
                                      "-U", SUPERUSER, "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            options = (f"-c listen_addresses={cluster.host} -p {cluster.port} -k {root} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
            cluster._pg_ctl("-l", str(root / "log"), "-w", "-o", options, "start")
        except subprocess.CalledProcessError as e:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"PostgreSQL did not start: {e.stderr.decode(errors='replace')}\n{log}") from e
        return cluster

    @classmethod
    @contextmanager
    def started(cls, *, port: int | None = None) -> Iterator[PgCluster]:
        cluster = cls.start(port=port)
        try:
            yield cluster
        finally:
            cluster.stop()

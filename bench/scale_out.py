"""Benchmark: Tollgate past one process (issue #18) — the same load against different deployments, alternating.

Configurations (`--configs`, the FIRST is the baseline every ratio is taken against):
  sqlite  one app process (`python -m ui.web`) on SQLite, reached directly
  pg      one app process on PostgreSQL (throwaway cluster, fsync off), reached directly
  pg1h    one app process on PostgreSQL behind haproxy (tests/cluster.py's configuration)
  pg2h    two app processes on one PostgreSQL behind haproxy (round robin; each websocket stays on its process)
  floor   bench/floor_app.py: bare Chainlit + SDK, same visible turn, no persistence, reached directly
  floorthink  the floor also showing the model's summarized thinking in a step, as Tollgate does since #14
  X@REV   configuration X running the app of git revision REV (`git archive REV`, same venv): before/after
Every run starts fresh processes (a new data dir or PostgreSQL database); ONE demo-model process serves every
app process of the whole benchmark (bench/concurrency_server.py's tagged DemoBrain: first token 300 ms, unpaced).
The load is bench/concurrency_server.py's client: N browserless socket.io sessions over 10 users, 5 messages
"[t:<tag>] list my files" each (a read-only tool step, 2 model calls per turn), after an optional think time.
`--quota C`: each app process runs in its own cgroup (v1 `cpu` controller) limited to C CPUs, applied once it
is ready. CPU per turn is summed per role over the play phase from /proc: app processes, PostgreSQL (postmaster,
its live backends and the reaped ones), haproxy, and (reported apart) the shared model and this client.
Rounds alternate the configurations (A B A B ...); the summary gives medians, min–max, and per-round ratios.

    .venv/bin/python bench/scale_out.py --configs pg1h,pg2h --sessions 40 --quota 0.5 --rounds 3
    .venv/bin/python bench/scale_out.py --configs floor,sqlite --sessions 10,50 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, machine, median, pct, table
from bench.concurrency_server import LIMITS, PASSWORD, Model, Session, cpu_s, login
from tests.cluster import Haproxy, Postgres
from tests.e2e.conftest import Server, free_port, start_server, stop_server

USERS, MESSAGES = 10, 5
CGROUP = Path("/sys/fs/cgroup/cpu")
APPS = {"sqlite": 1, "pg": 1, "pg1h": 1, "pg2h": 2, "floor": 1, "floorthink": 1}


class Quota:
    """One cgroup-v1 cpu group per app process: `cpus` CPUs per 100 ms period."""

    def __init__(self, name: str, cpus: float) -> None:
        self.path = CGROUP / f"tollgate-bench-{os.getpid()}-{name}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text("100000")
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cpus * 100_000)))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_s(self) -> float:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["throttled_time"]) / 1e9

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            (CGROUP / "cgroup.procs").write_text(pid)
        self.path.rmdir()


def pg_cpu_s(postmaster: int) -> float:
    """The postmaster with its reaped children, plus every live backend."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Deployment:
    """The processes of one run: app process(es), maybe PostgreSQL's database and haproxy."""

    def __init__(self, config: str, work: Path, pg: Postgres | None, model_url: str, quota: float) -> None:
        self.config, rev = config.split("@", 1) if "@" in config else (config, "")
        self.tree = tree_of(rev, work.parent) if rev else ROOT
        self.work, self.pg, self.model_url, self.quota = work, pg, model_url, quota
        self.apps: list[Server] = []
        self.quotas: list[Quota] = []
        self.proxy: Haproxy | None = None
        self.db_url = ""

    async def start(self) -> str:
        env = {**LIMITS, "ANTHROPIC_API_KEY": "demo-key", "ANTHROPIC_BASE_URL": self.model_url,
               "CHAINLIT_AUTH_SECRET": secrets.token_urlsafe(48), "TOLLGATE_WORKSPACES": str(self.work / "ws")}
        proxy_port = free_port()
        env["TOLLGATE_ALLOWED_ORIGINS"] = f"http://127.0.0.1:{proxy_port}"
        # Tollgate as that revision serves it (`python -m ui.web`, its own tree on sys.path; a revision from before
        # ui/web.py is served by `chainlit run app.py`); the floor is a plain chainlit app.
        chainlit_bin = str(Path(sys.executable).parent / "chainlit")
        command = ([sys.executable, "-m", "ui.web"] if (self.tree / "ui" / "web.py").exists()
                   else [chainlit_bin, "run", "app.py", "--headless"])
        if self.config.startswith("floor"):
            command = [chainlit_bin, "run", str(self.tree / "bench" / "floor_app.py"), "--headless"]
            env["BENCH_FLOOR_WORKSPACES"] = str(self.work / "ws")
            env["BENCH_FLOOR_THINKING"] = "1" if self.config == "floorthink" else "0"
        elif self.config == "sqlite":
            await add_users(self.work / "app-0" / "data", None)
        else:
            assert self.pg is not None
            name = f"b{self.work.name}"
            import psycopg

            with psycopg.connect(self.pg.libpq, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}".encode())
            self.db_url = env["TOLLGATE_DATABASE_URL"] = self.pg.url.rsplit("/", 1)[0] + "/" + name
            await add_users(None, self.db_url)
        for i in range(APPS[self.config]):
            self.apps.append(start_server(self.work / f"app-{i}" / "data", env, command=command, cwd=self.tree,
                                          ready_timeout_s=300))
        if self.quota:
            for i, app in enumerate(self.apps):
                self.quotas.append(Quota(f"{self.work.name}-{i}", self.quota))
                self.quotas[-1].add(app.proc.pid)
        if self.config.endswith("h"):
            self.proxy = Haproxy.start(self.work, proxy_port, {f"s{i}": int(a.url.rsplit(":", 1)[1])
                                                               for i, a in enumerate(self.apps)})
            return self.proxy.url
        return self.apps[0].url

    def counters(self) -> dict[str, float]:
        out = {"app": sum(cpu_s(a.proc.pid) for a in self.apps),
               "haproxy": cpu_s(self.proxy.proc.pid) if self.proxy else 0.0,
               "throttled": sum(q.throttled_s() for q in self.quotas), "pg": 0.0}
        if self.db_url and self.pg is not None:
            out["pg"] = pg_cpu_s(int((self.pg.base / "pgdata" / "postmaster.pid").read_text().split()[0]))
        return out

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for app in self.apps:
            stop_server(app)
        for q in self.quotas:
            q.remove()


def tree_of(rev: str, tmp: Path) -> Path:
    """The files of a git revision, extracted once per benchmark (chainlit imports the app from its entry's dir)."""
    tree = tmp / f"tree-{rev}"
    if not tree.exists():
        tree.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


async def add_users(data_dir: Path | None, url: str | None) -> None:
    from store import users as user_store
    from store.db import Database

    db = Database.for_data_dir(data_dir) if data_dir is not None else Database(str(url))
    await db.upgrade_schema()
    for i in range(USERS):
        await user_store.add_user(db, name=f"u{i}", password=PASSWORD)
    await db.close()


async def run(config: str, n: int, think: float, run_id: str, tmp: Path, pg: Postgres | None, model: Model,
              quota: float) -> dict[str, Any]:
    work = tmp / run_id
    work.mkdir()
    dep = Deployment(config, work, pg, model.url, quota)
    sessions: list[Session] = []
    try:
        url = await dep.start()
        token = {f"u{i}": await login(url, f"u{i}") for i in range(USERS)}
        for i, app in enumerate(dep.apps):  # warm every process: imports, connections, first-use caches
            warm = Session(app.url, "u0", token["u0"])
            await warm.connect()
            await warm.turn(f"[t:{run_id}w{i}] list my files")
            await warm.sio.disconnect()
        sessions = [Session(url, f"u{i % USERS}", token[f"u{i % USERS}"]) for i in range(n)]
        await asyncio.gather(*(s.connect() for s in sessions))

        async def play(i: int, s: Session) -> list[tuple[str, float]]:
            out, rng = [], random.Random(i)
            for k in range(MESSAGES):
                if think:
                    await asyncio.sleep(rng.expovariate(1 / think))
                tag = f"{run_id}s{i}m{k}"
                try:
                    out.append((tag, await s.turn(f"[t:{tag}] list my files")))
                except TimeoutError:
                    break
            return out

        c0, m0, t0 = dep.counters(), cpu_s(model.proc.pid), time.perf_counter()
        played = await asyncio.gather(*(play(i, s) for i, s in enumerate(sessions)))
        wall = time.perf_counter() - t0
        used = {k: v - c0[k] for k, v in dep.counters().items()}
        model_cpu = cpu_s(model.proc.pid) - m0
    finally:
        await asyncio.gather(*(s.sio.disconnect() for s in sessions), return_exceptions=True)
        dep.stop()
    own = model.own_times()
    turns = [(tag, w) for p in played for tag, w in p]
    added = [w - own.get(tag, [0, 0.0])[1] for tag, w in turns]
    k = max(len(turns), 1)
    return {"config": config, "n": n, "turns": len(turns), "failed": n * MESSAGES - len(turns), "wall": wall,
            "tps": len(turns) / wall, "p50": pct(added, 50) * 1e3, "p99": pct(added, 99) * 1e3,
            "app": used["app"] / k * 1e3, "pg": used["pg"] / k * 1e3, "haproxy": used["haproxy"] / k * 1e3,
            "sum": (used["app"] + used["pg"] + used["haproxy"]) / k * 1e3, "model": model_cpu / k * 1e3,
            "throttled": used["throttled"], "load": os.getloadavg()[0]}


KEYS = [("tps", "turns/s"), ("p50", "added p50 ms"), ("p99", "added p99 ms"), ("app", "app CPU ms/turn"),
        ("pg", "PostgreSQL CPU ms/turn"), ("haproxy", "haproxy CPU ms/turn"), ("sum", "app+PG+haproxy CPU ms/turn"),
        ("model", "model CPU ms/turn")]


def spread(values: list[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f})" if values else "—"


def report(results: list[dict[str, Any]], configs: list[str], levels: list[int], args: argparse.Namespace) -> None:
    print(f"Machine: {machine()}\n")
    print(f"{MESSAGES} messages per session (list_files tool step, 2 model calls per turn), {USERS} users, think time "
          f"{f'exponential, mean {args.think:g} s' if args.think else '0'}; CPU quota per app process: "
          f"{args.quota or 'none'}; {args.rounds} rounds alternating {' / '.join(configs)}.\n")
    print(table(["round", "config", "sessions", "turns", "failed", "turns/s", "added p50 ms", "added p99 ms",
                 "app ms/turn", "PG ms/turn", "haproxy ms/turn", "sum ms/turn", "model ms/turn", "throttled s",
                 "load"],
                [[r["round"], r["config"], r["n"], r["turns"], r["failed"], r["tps"], r["p50"], r["p99"], r["app"],
                  r["pg"], r["haproxy"], r["sum"], r["model"], r["throttled"], r["load"]] for r in results]))
    print("\nMedians (min–max) over the rounds:\n")
    rows = []
    for n in levels:
        for c in configs:
            rs = [r for r in results if r["config"] == c and r["n"] == n]
            rows.append([n, c, *(spread([r[k] for r in rs]) for k, _ in KEYS)])
    print(table(["sessions", "config", *(label for _, label in KEYS)], rows))
    base = configs[0]
    print(f"\nRatios to {base}, per round (same round = adjacent runs), then the median:\n")
    rows = []
    for n in levels:
        for c in configs[1:]:
            pairs = [(a, b) for a in results for b in results if a["round"] == b["round"] and a["n"] == b["n"] == n
                     and a["config"] == base and b["config"] == c]
            tps = [b["tps"] / a["tps"] for a, b in pairs]
            eff = [x / (APPS[c.split("@")[0]] / APPS[base.split("@")[0]]) for x in tps]
            app = [b["app"] / a["app"] for a, b in pairs if a["app"]]
            tot = [b["sum"] / a["sum"] for a, b in pairs if a["sum"]]
            p99 = [b["p99"] - a["p99"] for a, b in pairs]
            rows.append([n, f"{c} / {base}", spread(tps), spread(eff), spread(app), spread(tot), spread(p99)])
    print(table(["sessions", "ratio", "turns/s", "efficiency X / (apps·X base)", "app CPU/turn",
                 "app+PG+haproxy CPU/turn", "added p99 Δ ms"], rows))


async def main() -> None:
    global MESSAGES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="pg1h,pg2h")
    ap.add_argument("--sessions", default="40")
    ap.add_argument("--think", type=float, default=0.0, help="mean think time s before each message (0: none)")
    ap.add_argument("--quota", type=float, default=0.0, help="CPUs per app process (cgroup); 0: no quota")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--messages", type=int, default=MESSAGES, help="messages per session")
    args = ap.parse_args()
    MESSAGES = args.messages
    configs, levels = args.configs.split(","), [int(x) for x in args.sessions.split(",")]
    unknown = {c.split("@")[0] for c in configs} - set(APPS)
    if unknown:
        ap.error(f"unknown configs {sorted(unknown)}; known: {sorted(APPS)}")
    needs_pg = any(c.startswith("pg") for c in configs)
    model, results = Model(), []
    pg = Postgres().start() if needs_pg else None
    try:
        with tempfile.TemporaryDirectory(prefix="tollgate-scale-") as tmp:
            for rnd in range(args.rounds):
                for n in levels:
                    for c in configs:
                        rid = f"r{rnd}{c.replace('@', '_')}n{n}".lower()
                        r = await run(c, n, args.think, rid, Path(tmp), pg, model, args.quota)
                        results.append({**r, "round": rnd})
                        print(f"  {rid}: {r['turns']} turns, {r['tps']:.2f}/s, app {r['app']:.1f} ms/turn, "
                              f"sum {r['sum']:.1f}, p99 {r['p99']:.0f} ms, load {r['load']:.1f}",
                              file=sys.stderr, flush=True)
    finally:
        model.close()
        if pg is not None:
            pg.stop(remove=True)
    report(results, configs, levels, args)


if __name__ == "__main__":
    asyncio.run(main())

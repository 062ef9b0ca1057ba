"""Benchmark 3: `tollgate serve` launch → first HTTP 200 on / (as tests/e2e/conftest.py does, temp data
dir, demo model), median of 3; plus `python -X importtime` of building the app (ui/web.py: it loads app.py),
top 5 of the heavy modules.
Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, machine, median, table
from tests.e2e.conftest import free_port

BIN = Path(sys.executable).parent
RUNS = 3


def cache_env(env: dict[str, str], prefix: Path | None) -> dict[str, str]:
    """prefix=None: the environment as given (here PYTHONDONTWRITEBYTECODE=1 and no __pycache__ in the venv,
    so every module is compiled from source at each start). A prefix: bytecode cached under /tmp
    (PYTHONPYCACHEPREFIX), i.e. what a deployment with compiled .pyc files sees."""
    if prefix is not None:
        env = {**env, "PYTHONPYCACHEPREFIX": str(prefix)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def one_start(tmp: Path, prefix: Path | None = None) -> float:
    port = free_port()
    data = tmp / f"data-{port}"
    data.mkdir(parents=True)
    env = {**os.environ, "TOLLGATE_DATA_DIR": str(data), "CHAINLIT_HOST": "127.0.0.1", "CHAINLIT_PORT": str(port)}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("CHAINLIT_AUTH_SECRET", None)
    env = cache_env(env, prefix)
    log = (tmp / f"server-{port}.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "tollgate"), "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / f"server-{port}.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > 90:
                raise RuntimeError("no 200 within 90 s")
            time.sleep(0.02)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def importtime(tmp: Path, prefix: Path | None = None) -> tuple[float, list[tuple[float, str]]]:
    env = cache_env({**os.environ, "TOLLGATE_DATA_DIR": str(tmp / "imp")}, prefix)
    env.pop("ANTHROPIC_API_KEY", None)
    build = "from ui import web; web.build_app()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", build], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    rows: list[tuple[float, str, int]] = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)) / 1e6, m.group(4), len(m.group(3))))
    total = sum(c for c, _, depth in rows if depth == 1)
    top_level = {}  # cumulative time per top-level package (first component), counting only its outermost import
    for cum, name, _depth in rows:
        pkg = name.split(".")[0]
        top_level[pkg] = max(top_level.get(pkg, 0.0), cum)
    top = sorted(((v, k) for k, v in top_level.items()), reverse=True)[:5]
    return total, top


def main() -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cold = [one_start(tmp) for _ in range(RUNS)]
        total, top = importtime(tmp)
        prefix = tmp / "pycache"
        importtime(tmp, prefix)  # populates the bytecode cache
        total_w, top_w = importtime(tmp, prefix)
        warm = [one_start(tmp, prefix) for _ in range(RUNS)]
    print(f"Machine: {machine()}\n")
    print(table(["measure", "as configured (PYTHONDONTWRITEBYTECODE=1, no .pyc)", "with cached bytecode"],
                [["launch → first 200 on /, median of 3 (s)", median(cold), median(warm)],
                 ["runs (s)", ", ".join(f"{x:.2f}" for x in cold), ", ".join(f"{x:.2f}" for x in warm)],
                 ["building the app (s, -X importtime, sum of top-level imports)", total, total_w]]))
    print(f"\nratio with cached bytecode / as configured: start {median(warm) / median(cold):.2f}×, "
          f"import {total_w / total:.2f}×")
    print("\nHeaviest top-level packages imported building the app (cumulative s, -X importtime; nested packages "
          "overlap):\n")
    print(table(["package", "as configured", "package", "with cached bytecode"],
                [[k, v, k2, v2] for (v, k), (v2, k2) in zip(top, top_w, strict=False)]))


if __name__ == "__main__":
    main()

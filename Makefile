# Two commands: `make run` serves the app (no key needed), `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
UV_VERSION := 0.13.9

.PHONY: run test lint typecheck bench browser haproxy postgres cluster clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(BIN)/uv: $(BIN)/python
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

# Installs exactly what requirements.lock pins (runtime only, hash-checked), then the project itself
# (editable, no deps). `make run` needs nothing more; `make test` adds the dev lock on top.
$(VENV)/.installed: requirements.lock pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --quiet --require-hashes --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@# The environment may set PYTHONDONTWRITEBYTECODE: compile once here, or every start recompiles (~3x slower).
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib agent tools store ui app.py cli.py >/dev/null || true
	touch $@

# Test and lint tools, pinned with hashes; the runtime pins above are its constraints, so nothing shifts.
$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.lock
	$(BIN)/uv pip install --quiet --require-hashes --python $(BIN)/python -r requirements-dev.lock
	touch $@

# Debian's chromium for the browser tests: Playwright drives it; it never downloads a browser of its own.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi; }

# Debian's haproxy for `make cluster` and the multi-process tests, installed when missing.
haproxy:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq haproxy >/dev/null; fi; }

# Debian's PostgreSQL binaries for the tests on PostgreSQL: tests/pg_cluster.py starts a throwaway cluster
# with them (no service is enabled or used). Only installed when no /usr/lib/postgresql/*/bin/initdb exists.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq postgresql >/dev/null; fi; }

# Several processes on one machine (README "Past one machine"): a PostgreSQL cluster kept in data/cluster,
# one shared demo model, 2 app processes and haproxy on $(PORT) with cookie stickiness. Ctrl-C stops all.
cluster: $(VENV)/.dev-installed haproxy postgres  # the launcher lives in tests/ (tests/cluster.py)
	TOLLGATE_MCP_CONFIG=$(TOLLGATE_MCP_CONFIG) $(BIN)/python -m tests.cluster --apps 2 --port $(PORT) --dir data/cluster

# The bundled MCP example (a SQLite task list, examples/mcp.toml) starts with the app; override or set it empty.
TOLLGATE_MCP_CONFIG ?= examples/mcp.toml

run: $(VENV)/.installed
	CHAINLIT_HOST=$(HOST) $(BIN)/tollgate users ensure-demo
	TOLLGATE_MCP_CONFIG=$(TOLLGATE_MCP_CONFIG) CHAINLIT_HOST=$(HOST) CHAINLIT_PORT=$(PORT) $(BIN)/tollgate serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed browser haproxy postgres
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# Two locks with hashes: the runtime (what `make run` installs) and the dev tools constrained by it.
lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes --extra dev -c requirements.lock \
	  pyproject.toml -o requirements-dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

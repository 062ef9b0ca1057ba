"""The operator's MCP server list (TOML at TOLLGATE_MCP_CONFIG), checked strictly: a bad file names the key.

    [servers.tasks]                      # the model sees tasks__<tool>
    command = ["python", "-m", "x"]      # stdio: a process on this machine
    env = { TASKS_DB = "data/t.sqlite" } # literal, non-secret settings for the process
    env_from = { API_TOKEN = "TASKS_TOKEN" }  # secrets: copied from the named variable of our environment
    cwd = "."
    read_only = ["list_tasks"]           # the only tools that run without a card
    timeout_s = 30                       # per call (default: TOLLGATE_TOOL_TIMEOUT_S)

    [servers.tickets]
    url = "http://127.0.0.1:9000/mcp"    # Streamable HTTP
    headers = { Authorization = "TICKETS_AUTH" }  # values NAME environment variables; never secrets here
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SERVER_NAME = re.compile(r"[a-z][a-z0-9]{0,19}(?:[-_][a-z0-9]+){0,4}")  # no "__": it separates server and tool
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STDIO_KEYS = {"command", "env", "env_from", "cwd", "read_only", "timeout_s"}
_HTTP_KEYS = {"url", "headers", "read_only", "timeout_s"}


class McpConfigError(ValueError):
    """The MCP config file is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> environment variable name
    read_only: frozenset[str] = frozenset()
    timeout_s: float | None = None

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise McpConfigError(f"{where}: must be a list of non-empty strings")
    return tuple(value)


def _table(where: str, value: Any, *, names_env: bool) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise McpConfigError(f"{where}: must be a table of strings")
    if names_env:
        for key, var in value.items():
            if not _ENV_NAME.fullmatch(var):
                raise McpConfigError(f"{where}.{key}: must name an environment variable, not hold a value")
    return dict(value)


def _from_env(where: str, table: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for key, var in table.items():
        if var not in environ:
            raise McpConfigError(f"{where}.{key}: environment variable {var} is not set")
        out[key] = environ[var]
    return out


def parse_server(name: str, raw: Any, *, where: str, environ: Mapping[str, str]) -> ServerConfig:
    at = f"{where}: servers.{name}"
    if not SERVER_NAME.fullmatch(name):
        raise McpConfigError(f"{at}: a server name is lower-case letters and digits, single - or _ between, "
                             "at most 20 characters before the first separator (it prefixes every tool name)")
    if not isinstance(raw, dict):
        raise McpConfigError(f"{at}: must be a table")
    if ("command" in raw) == ("url" in raw):
        raise McpConfigError(f"{at}: needs exactly one of command (stdio) or url (Streamable HTTP)")
    allowed = _STDIO_KEYS if "command" in raw else _HTTP_KEYS
    for key in raw:
        if key not in allowed:
            raise McpConfigError(f"{at}.{key}: unknown key here (allowed: {', '.join(sorted(allowed))})")
    read_only = frozenset(_strings(f"{at}.read_only", raw.get("read_only", [])) if "read_only" in raw else ())
    timeout = raw.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise McpConfigError(f"{at}.timeout_s: must be a positive number of seconds")
    if "url" in raw:
        url = raw["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise McpConfigError(f"{at}.url: must be an http:// or https:// URL")
        headers = _from_env(f"{at}.headers", _table(f"{at}.headers", raw.get("headers", {}), names_env=True),
                            environ)
        return ServerConfig(name=name, url=url, headers=headers, read_only=read_only,
                            timeout_s=float(timeout) if timeout else None)
    command = _strings(f"{at}.command", raw["command"])
    if not command:
        raise McpConfigError(f"{at}.command: must not be empty")
    env = _table(f"{at}.env", raw.get("env", {}), names_env=False)
    env |= _from_env(f"{at}.env_from", _table(f"{at}.env_from", raw.get("env_from", {}), names_env=True), environ)
    cwd = raw.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd):
        raise McpConfigError(f"{at}.cwd: must be a path")
    return ServerConfig(name=name, command=command, env=env, cwd=cwd, read_only=read_only,
                        timeout_s=float(timeout) if timeout else None)


def parse_config(text: str, *, where: str = "MCP config", environ: Mapping[str, str] | None = None
                 ) -> list[ServerConfig]:
    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise McpConfigError(f"{where}: not valid TOML: {e}") from None
    for key in data:
        if key != "servers":
            raise McpConfigError(f"{where}: {key}: unknown top-level key (expected [servers.NAME] tables)")
    servers = data.get("servers", {})
    if not isinstance(servers, dict):
        raise McpConfigError(f"{where}: servers: must be a table of [servers.NAME] tables")
    # Sorted: the order of tools never depends on how the file is written.
    return [parse_server(name, servers[name], where=where, environ=environ) for name in sorted(servers)]


def load_config(path: Path | None = None) -> list[ServerConfig]:
    """The configured servers; [] when TOLLGATE_MCP_CONFIG is unset."""
    if path is None:
        setting = os.environ.get("TOLLGATE_MCP_CONFIG", "").strip()
        if not setting:
            return []
        path = Path(setting)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise McpConfigError(f"TOLLGATE_MCP_CONFIG: cannot read {path}: {e.strerror}") from None
    return parse_config(text, where=str(path))

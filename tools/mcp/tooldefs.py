"""An MCP server's tool as a Tollgate Tool: name NAME__tool, schema checked, asks unless the operator said not.

Everything a server says about its tools (description, schema, annotations) is untrusted: descriptions are
cleaned and capped, annotations become hints shown on the card and usable by policy rules, never a reason
to skip a card. Only the operator's `read_only` list makes a tool run without one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from mcp import types
from pydantic import BaseModel, ConfigDict

from tools.errors import ToolArgumentError
from tools.registry import Tool, ToolContext, make_tool

SEPARATOR = "__"
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DESCRIPTION_MAX = 1_000
# The spec's defaults stand for a hint the server leaves out: a tool that says nothing may destroy and reach out.
HINT_DEFAULTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+")


class _AnyArgs(BaseModel):
    model_config = ConfigDict(extra="allow")


def clean_text(text: str | None, limit: int = DESCRIPTION_MAX) -> str:
    """Server text as one plain line: no control or bidi characters, whitespace collapsed, capped."""
    one = " ".join(_CONTROL.sub(" ", text or "").split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


@dataclass(frozen=True)
class McpTool(Tool):
    server: str = field(default="", kw_only=True)
    remote_name: str = field(default="", kw_only=True)
    validator: Any = field(default=None, kw_only=True, repr=False, compare=False)

    def validate(self, raw: object) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ToolArgumentError(f"arguments: must be a JSON object, not {type(raw).__name__}")
        errors = sorted(self.validator.iter_errors(raw), key=lambda e: list(e.absolute_path))[:5]
        if errors:
            raise ToolArgumentError("; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {clean_text(e.message, 200)}"
                for e in errors))
        return dict(raw)


def hint_text(hints: dict[str, bool]) -> str:
    if not hints:
        return "none"
    return ", ".join(f"{k}={'true' if v else 'false'}" for k, v in sorted(hints.items()))


def build_tool(server: str, spec: types.Tool, *, read_only: bool, timeout_s: float,
               call: Callable[[ToolContext, str, dict[str, Any]], Awaitable[str]]) -> McpTool:
    """Raises ValueError when the server's tool cannot be offered (bad name or schema)."""
    if not TOOL_NAME.fullmatch(spec.name) or len(server) + len(SEPARATOR) + len(spec.name) > 64:
        raise ValueError(f"tool name {clean_text(spec.name, 80)!r} is not usable (letters, digits, _ and -; "
                         "64 characters with the server prefix)")
    schema = spec.inputSchema if isinstance(spec.inputSchema, dict) else {}
    if schema.get("type") != "object":
        raise ValueError(f"tool {spec.name}: inputSchema must be an object schema")
    try:
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ValueError(f"tool {spec.name}: invalid inputSchema: {clean_text(e.message, 200)}") from None
    annotations = spec.annotations.model_dump() if spec.annotations else {}
    hints = {k: annotations[k] if isinstance(annotations.get(k), bool) else v for k, v in HINT_DEFAULTS.items()}
    description = clean_text(spec.description) or f"{spec.name} (no description given by the server)"
    remote = spec.name

    async def run(ctx: ToolContext, **args: Any) -> str:
        return await call(ctx, remote, args)

    risk = "" if read_only else (
        f"MCP server {server}, tool {remote}: {clean_text(description, 300)} "
        f"— runs outside Tollgate and may change or send anything. "
        f"Server's own hints (unverified): {hint_text(hints)}.")
    return make_tool(
        McpTool,
        name=f"{server}{SEPARATOR}{remote}",
        description=f"[MCP server {server}] {description}",
        schema=schema,
        side_effect=not read_only,
        risk=risk,
        timeout_s=timeout_s,
        hints=hints,
        fn=run,
        args_model=_AnyArgs,
        server=server,
        remote_name=remote,
        validator=validator_cls(schema),
    )

"""The minimal request validation the real Messages API applies and that the app must not violate.

The error texts follow the real API's wording where it is known, so a failure in a test reads the same
as one in production. Each function returns an error message, or None when the body is acceptable.
"""

from __future__ import annotations

from typing import Any

from .accounting import MAX_BREAKPOINTS, TTL_SECONDS

__all__ = ["validate_request"]


def _blocks(content: Any) -> list[Any]:
    return content if isinstance(content, list) else []


def _check_cache_controls(body: dict[str, Any]) -> str | None:
    carriers: list[Any] = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    carriers += _blocks(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            carriers += _blocks(message.get("content"))
    controls = [b["cache_control"] for b in carriers if isinstance(b, dict) and "cache_control" in b]
    if len(controls) > MAX_BREAKPOINTS:
        found = len(controls)
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
    for control in controls:
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            return "cache_control.type: Input should be 'ephemeral'"
        if control.get("ttl", "5m") not in TTL_SECONDS:
            return "cache_control.ttl: Input should be '5m' or '1h'"
    return None


def _check_system_and_tools(body: dict[str, Any]) -> str | None:
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            return "system: Input should be a valid string or a list of text blocks"
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                return f"system.{i}: Input should be a text block"
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
    return None


def _tool_use_ids(content: Any) -> list[str]:
    return [str(b.get("id")) for b in _blocks(content) if isinstance(b, dict) and b.get("type") == "tool_use"]


def _tool_result_ids(content: Any) -> list[str]:
    return [
        str(b.get("tool_use_id")) for b in _blocks(content) if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, (str, list)):
            return f"messages.{i}.content: Input should be a valid string or list"
        for j, block in enumerate(_blocks(content)):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return f"messages.{i}.content.{j}.type: Field required"
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            if i == 0:
                return 'messages: first message must use the "user" role'
            return 'messages: roles must alternate between "user" and "assistant"'
    for i, message in enumerate(messages):
        uses = _tool_use_ids(message["content"]) if message["role"] == "assistant" else []
        following = messages[i + 1]["content"] if i + 1 < len(messages) else None
        missing = [u for u in uses if u not in _tool_result_ids(following)]
        if missing:
            return (
                f"messages.{i + 1 if following is not None else i}: `tool_use` ids were found without "
                f"`tool_result` blocks immediately after: {', '.join(missing)}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
        if message["role"] == "user":
            previous = messages[i - 1]["content"] if i > 0 else None
            unexpected = [r for r in _tool_result_ids(message["content"]) if r not in _tool_use_ids(previous)]
            if unexpected:
                return (
                    f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
    return None


def validate_request(body: Any, *, require_max_tokens: bool = True) -> str | None:
    """Why the real API would answer 400 invalid_request_error, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if require_max_tokens:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return "max_tokens: Field required (an integer >= 1)"
    return _check_system_and_tools(body) or _check_messages(body.get("messages")) or _check_cache_controls(body)

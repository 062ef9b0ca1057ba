"""One model client over `anthropic.AsyncAnthropic().messages.stream`, with errors made plain.

Retries of 408/409/429/5xx/529 and connection errors are the SDK's (max_retries); what reaches us
is final. An SSE `error` event after a 200 arrives as APIStatusError(status_code=200) and is not
retried by the SDK: it is reported with the text received so far, which the loop keeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic

from store.usage import TokenUsage


@dataclass(frozen=True)
class ModelResult:
    content: list[dict[str, Any]]  # content blocks exactly as the API returned them
    stop_reason: str
    usage: TokenUsage
    ttft_ms: float | None
    latency_ms: float
    retries: int = 0  # attempts the SDK retried before this one succeeded
    refusal_category: str | None = None  # stop_details.category of a refusal
    thinking_tokens: int = 0  # the part of usage.output_tokens spent thinking


@dataclass
class StreamProgress:
    """What a call has delivered so far; readable by the caller if the call is cancelled mid-stream."""

    text: list[str] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)


@dataclass
class ModelError(Exception):
    kind: str  # auth | invalid_request | rate_limit | overloaded | api_error | connection | stream_cut
    message: str
    partial_text: str = ""
    partial_usage: TokenUsage = field(default_factory=TokenUsage)
    latency_ms: float = 0.0

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.kind not in ("auth", "invalid_request")


def usage_from(u: Any) -> TokenUsage:
    if u is None:
        return TokenUsage()
    cc = getattr(u, "cache_creation", None)
    created = getattr(u, "cache_creation_input_tokens", 0) or 0
    one_hour = (getattr(cc, "ephemeral_1h_input_tokens", 0) or 0) if cc is not None else 0
    return TokenUsage(input_tokens=getattr(u, "input_tokens", 0) or 0,
                      output_tokens=getattr(u, "output_tokens", 0) or 0,
                      cache_write_5m_tokens=max(created - one_hour, 0), cache_write_1h_tokens=one_hour,
                      cache_read_tokens=getattr(u, "cache_read_input_tokens", 0) or 0)


def _thinking_tokens(u: Any) -> int:
    details = getattr(u, "output_tokens_details", None)
    return int(getattr(details, "thinking_tokens", 0) or 0)


def _explain(e: Exception) -> tuple[str, str]:
    if isinstance(e, anthropic.AuthenticationError):
        return "auth", "The model API refused the key (401): ANTHROPIC_API_KEY is missing or invalid."
    if isinstance(e, anthropic.PermissionDeniedError):
        return "auth", "The API key is not allowed to use this model (403)."
    if isinstance(e, anthropic.BadRequestError | anthropic.NotFoundError | anthropic.UnprocessableEntityError):
        return "invalid_request", f"The model API rejected the request: {_api_message(e)}"
    if isinstance(e, anthropic.RateLimitError):
        return "rate_limit", "The model API is rate limiting us (429) even after retries. Try again shortly."
    if isinstance(e, anthropic.APIStatusError):
        kind = _error_type(e)
        if kind == "overloaded_error" or e.status_code == 529:
            return "overloaded", "The model is overloaded right now (529). Try again in a moment."
        where = "mid-stream" if e.status_code == 200 else f"({e.status_code})"
        return "api_error", f"The model API failed {where}: {_api_message(e)}"
    if isinstance(e, anthropic.APITimeoutError):
        return "connection", "The model API timed out."
    if isinstance(e, anthropic.APIConnectionError):
        return "connection", "Could not reach the model API (connection failed or was cut)."
    return "stream_cut", f"The model's answer was cut off ({type(e).__name__})."


def _error_type(e: anthropic.APIStatusError) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    return str(err.get("type", "")) if isinstance(err, dict) else ""


def _api_message(e: anthropic.APIStatusError) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    msg = err.get("message") if isinstance(err, dict) else None
    return str(msg or e.message)[:300]


@dataclass(frozen=True)
class TokenCount:
    tokens: int | None  # None: not counted (failed, refused or too slow)
    refusal: str = ""  # the API's message when it refused the request (400): the real call would fail too


class ModelClient:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client
        self._counter = client.with_options(max_retries=0)  # a count that fails falls back at once

    async def count_tokens(self, *, model: str, system: list[dict[str, Any]], tools: list[dict[str, Any]],
                           messages: list[dict[str, Any]], thinking: dict[str, Any] | None = None,
                           effort: str | None = None, timeout_s: float = 1.0) -> TokenCount:
        """The API's own count of this prompt (the endpoint is free and rate-limited apart from messages, and
        runs the same checks). No count when it fails, refuses or takes longer than `timeout_s`."""
        kwargs: dict[str, Any] = {"model": model, "system": system, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if thinking is not None:
            kwargs["thinking"] = thinking
        if effort is not None:
            kwargs["output_config"] = {"effort": effort}
        try:
            counted = await asyncio.wait_for(self._counter.messages.count_tokens(**kwargs, timeout=timeout_s),
                                             timeout_s)
        except anthropic.BadRequestError as e:
            return TokenCount(None, _api_message(e))
        except (anthropic.APIError, TimeoutError, ValueError):
            return TokenCount(None)
        tokens = getattr(counted, "input_tokens", None)
        return TokenCount(tokens if isinstance(tokens, int) and tokens >= 0 else None)

    async def stream(self, *, model: str, max_tokens: int, system: list[dict[str, Any]],
                     tools: list[dict[str, Any]], messages: list[dict[str, Any]],
                     on_text: Callable[[str], Awaitable[None]] | None = None,
                     progress: StreamProgress | None = None, thinking: dict[str, Any] | None = None,
                     effort: str | None = None,
                     on_thinking: Callable[[int, str], Awaitable[None]] | None = None) -> ModelResult:
        """`on_thinking(index, delta)`: called with "" when a thinking block starts (nothing else may
        stream for a while: the UI shows "thinking…"), then with each piece of visible thinking."""
        started = time.perf_counter()
        ttft: float | None = None
        seen = progress if progress is not None else StreamProgress()
        text_parts = seen.text
        try:
            kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "system": system,
                                      "messages": messages}
            if tools:
                kwargs["tools"] = tools
            if thinking is not None:
                kwargs["thinking"] = thinking
            if effort is not None:
                kwargs["output_config"] = {"effort": effort}
            async with self.client.messages.stream(**kwargs) as stream:
                async for event in stream:
                    if event.type == "message_start":
                        seen.usage = usage_from(event.message.usage)
                    elif event.type == "content_block_start" and event.content_block.type == "thinking":
                        if on_thinking is not None:
                            await on_thinking(event.index, "")
                    elif event.type == "thinking":
                        if on_thinking is not None:
                            await on_thinking(len(stream.current_message_snapshot.content) - 1, event.thinking)
                    elif event.type == "text":
                        if ttft is None:
                            ttft = (time.perf_counter() - started) * 1000
                        text_parts.append(event.text)
                        if on_text is not None:
                            await on_text(event.text)
                final = await stream.get_final_message()
                retries = int(stream.response.request.headers.get("x-stainless-retry-count", "0") or 0)
        except Exception as e:  # every failure becomes one plain, typed error carrying what arrived
            kind, message = _explain(e)
            raise ModelError(kind=kind, message=message, partial_text="".join(text_parts), partial_usage=seen.usage,
                             latency_ms=(time.perf_counter() - started) * 1000) from e
        content = [b.model_dump(mode="json", exclude_none=True) for b in final.content]
        details = final.stop_details
        return ModelResult(content=content, stop_reason=final.stop_reason or "end_turn",
                           usage=usage_from(final.usage), ttft_ms=ttft,
                           latency_ms=(time.perf_counter() - started) * 1000, retries=retries,
                           refusal_category=details.category if details is not None else None,
                           thinking_tokens=_thinking_tokens(final.usage))

"""Prompt-cache accounting that follows Anthropic's documented caching rules (see README.md).

Cost benchmarks compare caching strategies against this, so it must not flatter them: a prefix is read
only where an earlier request wrote it at a breakpoint, within the 20-block lookback, before its TTL ran
out, and only when it clears the model's minimum cacheable length.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .thinking import plan_for
from .tokens import PromptBlock, prompt_blocks

__all__ = [
    "LOOKBACK_BLOCKS",
    "MAX_BREAKPOINTS",
    "TTL_SECONDS",
    "CacheUsage",
    "PromptCache",
    "default_min_cacheable_tokens",
]

TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20  # positions checked per breakpoint, the breakpoint itself included


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


def default_min_cacheable_tokens(model: str) -> int:
    """Documented minimum cacheable prefix per model; 2048 for ids we do not know (conservative)."""
    m = model.lower()
    if "-5-5" in m or "fable-5" in m:
        return 512  # Sonnet / Opus / Haiku 5.5 and Fable 5.x
    if "haiku" in m or "opus-4-5" in m or "opus-4-6" in m:
        return 4096
    if "sonnet-4-6" in m:
        return 2048
    if "sonnet-4-5" in m or "opus-4-1" in m or "opus-4-0" in m or "opus-4-2025" in m:
        return 1024
    return 2048


@dataclass
class _Entry:
    ttl: str
    expires_at: float


def _prefix_hashes(model: str, blocks: list[PromptBlock], thinking_mode: str = "") -> list[str]:
    # Chained so position i identifies the whole prefix 0..i; the model is part of it because caches
    # are per model. cache_control is not in block.text, so moving a breakpoint keeps identities.
    # Message blocks also carry the thinking type and effort: changing either invalidates message-level
    # entries (tools and system entries survive).
    digest = hashlib.sha256(model.encode()).hexdigest()
    out = []
    for block in blocks:
        mode = thinking_mode if block.section in ("user", "assistant") else ""
        digest = hashlib.sha256(f"{digest}\x00{block.section}{mode}\x00{block.text}".encode()).hexdigest()
        out.append(digest)
    return out


class PromptCache:
    """The server's cache: maps prefix hashes written at breakpoints to their expiry. Thread-safe."""

    def __init__(
        self,
        *,
        min_cacheable_tokens: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_tokens = min_cacheable_tokens or default_min_cacheable_tokens
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Number of live entries (expired ones are dropped lazily)."""
        with self._lock:
            self._purge(self._clock())
            return len(self._entries)

    def account(self, request: dict[str, Any]) -> CacheUsage:
        """Work out (and apply) the cache reads and writes for one /v1/messages body."""
        blocks = prompt_blocks(request)
        cumulative: list[int] = []
        running = 0
        for block in blocks:
            running += block.tokens
            cumulative.append(running)
        breakpoints = [i for i, b in enumerate(blocks) if b.cache_ttl is not None]
        if len(breakpoints) > MAX_BREAKPOINTS:
            raise ValueError(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided.")
        for i in breakpoints:
            if blocks[i].cache_ttl not in TTL_SECONDS:
                raise ValueError(f"cache_control.ttl must be '5m' or '1h', got {blocks[i].cache_ttl!r}")
        if not breakpoints:
            return CacheUsage(running, 0, 0, 0, 0)
        model = str(request.get("model", ""))
        minimum = self._min_tokens(model)
        plan = plan_for(request)
        hashes = _prefix_hashes(model, blocks, f"/{plan.type}/{plan.effort}")

        with self._lock:
            now = self._clock()
            self._purge(now)
            read_end = self._longest_hit(breakpoints, hashes)
            read = cumulative[read_end] if read_end >= 0 else 0
            if read_end >= 0:
                hit = self._entries[hashes[read_end]]
                hit.expires_at = now + TTL_SECONDS[hit.ttl]  # a hit refreshes the TTL

            last = breakpoints[-1]
            writes = {"5m": 0, "1h": 0}
            if read_end < last and cumulative[last] >= minimum:
                start = read
                for i in breakpoints:
                    if i > read_end:
                        # Each segment is billed at the TTL of the breakpoint that ends it.
                        writes[str(blocks[i].cache_ttl)] += cumulative[i] - start
                        start = cumulative[i]
            for i in breakpoints:
                if cumulative[i] >= minimum:
                    self._store(hashes[i], str(blocks[i].cache_ttl), now)

        creation = writes["5m"] + writes["1h"]
        return CacheUsage(running - read - creation, creation, read, writes["5m"], writes["1h"])

    def _longest_hit(self, breakpoints: list[int], hashes: list[str]) -> int:
        """Index of the last block of the longest live cached prefix reachable by some breakpoint."""
        best = -1
        for bp in breakpoints:
            for i in range(bp, max(bp - LOOKBACK_BLOCKS, -1), -1):
                if i <= best:
                    break
                if hashes[i] in self._entries:
                    best = i
                    break
        return best

    def _store(self, key: str, ttl: str, now: float) -> None:
        expires = now + TTL_SECONDS[ttl]
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(ttl, expires)
            return
        if TTL_SECONDS[ttl] > TTL_SECONDS[entry.ttl]:
            entry.ttl = ttl
        entry.expires_at = max(entry.expires_at, expires)

    def _purge(self, now: float) -> None:
        expired = [k for k, e in self._entries.items() if e.expires_at <= now]
        for key in expired:
            del self._entries[key]

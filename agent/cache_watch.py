"""Watching the prompt cache: is the prefix cacheable at all, and did a call lose what was cached?

A cache break is a call that reads less than the previous call of the same thread had cached (its
read + write): that prefix had to be paid for again at the write rate. A compression rewrites the
context on purpose; the drop right after it is counted as a rewrite, not a break. State is per
process and per thread, so the first call after a restart is never judged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import model_facts
from agent.context import ModelRequest, block_tokens
from store.usage import TokenUsage

log = logging.getLogger("tollgate.cache")

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_MAX_THREADS = 2_000  # per-thread state kept for the most recently active threads only


def min_cacheable_tokens(model: str) -> int:
    """The documented minimum cacheable prefix per model (agent/model_facts.py)."""
    return model_facts.min_cacheable_tokens(model)


def prefix_tokens(request: ModelRequest) -> int:
    return sum(block_tokens(b) for b in [*request.tools, *request.system])


def check_prefix_cacheable(request: ModelRequest, model: str) -> bool:
    """Logged at start-up: a prefix below the minimum is silently never cached by the API."""
    tokens, minimum = prefix_tokens(request), min_cacheable_tokens(model)
    if tokens < minimum:
        log.warning("prompt caching cannot apply: tools + system prompt are about %d tokens, below the "
                    "%d-token minimum cacheable prefix of %s; every call pays full input price",
                    tokens, minimum, model)
        return False
    log.info("tools + system prompt: about %d tokens (minimum cacheable for %s: %d)", tokens, model, minimum)
    return True


@dataclass(frozen=True)
class CacheEvent:
    thread_id: str
    kind: str  # "break" | "rewrite"
    read: int
    expected: int  # what the previous call had cached
    reason: str


@dataclass
class _Last:
    cached: int  # read + write of the previous call
    prefix_digest: str
    blocks: int  # message blocks the previous request had
    blocks_digest: str
    at: float


def _digest(items: list[Any]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _message_blocks(request: ModelRequest) -> list[Any]:
    # Role and block without cache_control: moving a breakpoint does not change what is cached.
    return [(m["role"], {k: v for k, v in b.items() if k != "cache_control"})
            for m in request.messages for b in m["content"]]


class CacheWatch:
    def __init__(self, ttl: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = TTL_SECONDS[ttl]
        self.clock = clock
        self.breaks = 0
        self.rewrites = 0
        self.events: list[CacheEvent] = []  # most recent last; bounded
        self._last: OrderedDict[str, _Last] = OrderedDict()
        self._rewritten: set[str] = set()

    def context_rewritten(self, thread_id: str) -> None:
        """Compression changed the model's view of this thread: the next drop is expected."""
        self._rewritten.add(thread_id)

    def observe(self, thread_id: str, request: ModelRequest, usage: TokenUsage) -> CacheEvent | None:
        """Record a settled chat call; returns the break or rewrite it shows, if any."""
        blocks = _message_blocks(request)
        now = self.clock()
        prefix = hashlib.sha256(request.prefix_bytes()).hexdigest()
        last = self._last.pop(thread_id, None)
        rewritten = thread_id in self._rewritten
        self._rewritten.discard(thread_id)
        event = None
        if last is not None and usage.cache_read_tokens < last.cached:
            if rewritten:
                event = CacheEvent(thread_id, "rewrite", usage.cache_read_tokens, last.cached,
                                   "compression rewrote the context")
                self.rewrites += 1
                log.info("cache rewritten by compression in thread %s: read %d of %d previously cached tokens",
                         thread_id, usage.cache_read_tokens, last.cached)
            else:
                event = CacheEvent(thread_id, "break", usage.cache_read_tokens, last.cached,
                                   self._reason(last, prefix, blocks, now))
                self.breaks += 1
                log.warning("prompt cache break in thread %s: read %d tokens, the previous call had cached %d "
                            "(%s)", thread_id, usage.cache_read_tokens, last.cached, event.reason)
            self.events = [*self.events[-99:], event]
        self._last[thread_id] = _Last(cached=usage.cache_read_tokens + usage.cache_write_5m_tokens
                                      + usage.cache_write_1h_tokens, prefix_digest=prefix, blocks=len(blocks),
                                      blocks_digest=_digest(blocks), at=now)
        while len(self._last) > _MAX_THREADS:
            self._last.popitem(last=False)
        return event

    def _reason(self, last: _Last, prefix: str, blocks: list[Any], now: float) -> str:
        if prefix != last.prefix_digest:
            return "prefix changed: tools or system prompt differ from the previous call"
        if len(blocks) < last.blocks or _digest(blocks[:last.blocks]) != last.blocks_digest:
            return "earlier messages changed since the previous call"
        idle = now - last.at
        if idle >= self.ttl_s:
            return f"TTL expired: {idle:.0f} s since the previous call, TTL {self.ttl_s:.0f} s"
        return "unknown: same prefix within the TTL (evicted by the server?)"

"""Hand-worked examples of the demo server's prompt-cache accounting (rules in fakeclaude/README.md).

Every text block below is built to cost exactly 10 estimated tokens: its canonical JSON
'{"text":"<15 chars>","type":"text"}' is 40 characters, and the estimator is ceil(chars / 4).
"""

from __future__ import annotations

from typing import Any

import pytest

from fakeclaude import CacheUsage, PromptCache, default_min_cacheable_tokens, estimate_tokens
from fakeclaude.tokens import canonical_json, request_prompt_tokens

EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ten(label: str, cache: dict[str, str] | None = None) -> dict[str, Any]:
    """A text block worth exactly 10 tokens; `label` makes it distinct (padded to 15 characters)."""
    block: dict[str, Any] = {"type": "text", "text": label.ljust(15, ".")[:15]}
    if cache is not None:
        block["cache_control"] = cache
    return block


def request(
    system: list[dict[str, Any]], messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-test", "max_tokens": 100, "system": system, "messages": messages}
    if tools is not None:
        body["tools"] = tools
    return body


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> PromptCache:
    return PromptCache(min_cacheable_tokens=lambda model: 10, clock=clock)


def test_estimator_is_ceil_of_chars_over_four() -> None:
    assert [estimate_tokens(s) for s in ["", "a", "abcd", "abcde", "x" * 40]] == [0, 1, 1, 2, 10]
    assert canonical_json(ten("a")) != canonical_json(ten("a", EPHEMERAL))
    assert estimate_tokens(canonical_json({k: v for k, v in ten("a", EPHEMERAL).items() if k != "cache_control"})) == 10


def test_plain_string_content_counts_as_one_text_block() -> None:
    body = request([], [{"role": "user", "content": "x" * 15}])
    assert request_prompt_tokens(body) == 10


def test_no_breakpoint_means_everything_is_plain_input(cache: PromptCache) -> None:
    usage = cache.account(request([ten("sys")], [user(ten("u1"))]))
    assert usage == CacheUsage(20, 0, 0, 0, 0)
    assert len(cache) == 0


def test_first_call_writes_and_identical_second_call_reads_everything(cache: PromptCache) -> None:
    body = request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))])
    # Breakpoints at positions 0 (10 tokens) and 1 (20 tokens): both segments written at 5m.
    assert cache.account(body) == CacheUsage(0, 20, 0, 20, 0)
    assert cache.account(body) == CacheUsage(0, 0, 20, 0, 0)


def test_growing_conversation_reads_old_prefix_and_writes_only_the_new_part(cache: PromptCache) -> None:
    first = request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))])
    cache.account(first)
    # Next turn: the breakpoint moved from u1 to u2. Removing cache_control from u1 does not change u1's
    # identity, so the lookback from u2 (position 3) finds the entry written at position 1.
    second = request([ten("sys", EPHEMERAL)], [user(ten("u1")), assistant(ten("a1")), user(ten("u2", EPHEMERAL))])
    assert cache.account(second) == CacheUsage(0, 20, 20, 20, 0)
    third = request(
        [ten("sys", EPHEMERAL)],
        [
            user(ten("u1")),
            assistant(ten("a1")),
            user(ten("u2")),
            assistant(ten("a2")),
            user(ten("u3", EPHEMERAL)),
        ],
    )
    assert cache.account(third) == CacheUsage(0, 20, 40, 20, 0)


def test_changing_the_system_prompt_invalidates_everything_after_it(cache: PromptCache) -> None:
    tools = [{"name": "t", "description": "d" * 18, "input_schema": {"type": "object"}}]  # 80 chars = 20 tokens
    cache.account(request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))], tools=tools))
    changed = request([ten("SYS", EPHEMERAL)], [user(ten("u1", EPHEMERAL))], tools=tools)
    # Tools are not behind a breakpoint of their own, so nothing before the changed system is readable.
    assert cache.account(changed) == CacheUsage(0, 40, 0, 40, 0)


def test_changing_a_tool_invalidates_everything(cache: PromptCache) -> None:
    tool = {
        "name": "t",
        "description": "d" * 18,
        "input_schema": {"type": "object"},
        "cache_control": EPHEMERAL,
    }
    cache.account(request([ten("sys", EPHEMERAL)], [user(ten("u1"))], tools=[tool]))
    other = {**tool, "description": "e" * 18}
    assert cache.account(request([ten("sys", EPHEMERAL)], [user(ten("u1"))], tools=[other])) == CacheUsage(
        10, 30, 0, 30, 0
    )


def test_a_change_late_in_the_conversation_keeps_the_earlier_prefix(cache: PromptCache) -> None:
    cache.account(request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))]))
    edited = request([ten("sys", EPHEMERAL)], [user(ten("u1-edited", EPHEMERAL))])
    assert cache.account(edited) == CacheUsage(0, 10, 10, 10, 0)


def test_entries_expire_after_five_minutes_and_hits_refresh_them(cache: PromptCache, clock: FakeClock) -> None:
    body = request([ten("sys")], [user(ten("u1", EPHEMERAL))])
    assert cache.account(body).cache_creation_input_tokens == 20
    clock.now = 299.0
    assert cache.account(body).cache_read_input_tokens == 20  # refreshed: now lives until 599
    clock.now = 598.0
    assert cache.account(body).cache_read_input_tokens == 20  # only alive because of the refresh
    clock.now = 598.0 + 300.0
    assert cache.account(body) == CacheUsage(0, 20, 0, 20, 0)


def test_a_hit_found_by_lookback_refreshes_that_entry(cache: PromptCache, clock: FakeClock) -> None:
    short = request([ten("sys")], [user(ten("u1", EPHEMERAL))])
    cache.account(short)  # entry at position 1, alive until 300
    clock.now = 299.0
    # The breakpoint is now at position 3; position 1 is read through the lookback and refreshed to 599.
    grown = request([ten("sys")], [user(ten("u1")), assistant(ten("a1")), user(ten("u2", EPHEMERAL))])
    assert cache.account(grown) == CacheUsage(0, 20, 20, 20, 0)
    clock.now = 598.0
    assert cache.account(short).cache_read_input_tokens == 20


def test_one_hour_entries_outlive_five_minute_ones(cache: PromptCache, clock: FakeClock) -> None:
    short = request([ten("a")], [user(ten("u1", EPHEMERAL))])
    long = request([ten("b")], [user(ten("u1", ONE_HOUR))])
    assert cache.account(short) == CacheUsage(0, 20, 0, 20, 0)
    assert cache.account(long) == CacheUsage(0, 20, 0, 0, 20)
    clock.now = 3000.0
    assert cache.account(short).cache_read_input_tokens == 0
    assert cache.account(long).cache_read_input_tokens == 20


def test_writes_are_split_by_the_ttl_of_the_breakpoint_ending_each_segment(cache: PromptCache) -> None:
    tools = [{"name": "t", "description": "d" * 18, "input_schema": {"type": "object"}, "cache_control": ONE_HOUR}]
    body = request([ten("sys")], [user(ten("u1")), assistant(ten("a1")), user(ten("u2", EPHEMERAL))], tools=tools)
    # tools (20 tokens) end at a 1h breakpoint; system + 3 message blocks (40 tokens) end at a 5m one.
    assert cache.account(body) == CacheUsage(0, 60, 0, 40, 20)
    # Next turn reads the whole previous prefix and writes only the new 20 tokens, at 5m.
    grown = request(
        [ten("sys")],
        [
            user(ten("u1")),
            assistant(ten("a1")),
            user(ten("u2")),
            assistant(ten("a2")),
            user(ten("u3", EPHEMERAL)),
        ],
        tools=tools,
    )
    assert cache.account(grown) == CacheUsage(0, 20, 60, 20, 0)


def _grown(extra_blocks: int) -> list[dict[str, Any]]:
    # assistant (1 block) + user (extra_blocks - 1 blocks, the last with the breakpoint)
    tail = [ten(f"x{i}") for i in range(extra_blocks - 2)] + [ten("last", EPHEMERAL)]
    return [user(ten("u1")), assistant(ten("a1")), user(*tail)]


@pytest.mark.parametrize(("grown_by", "read"), [(19, 20), (20, 0)])
def test_lookback_is_twenty_blocks_including_the_breakpoint(cache: PromptCache, grown_by: int, read: int) -> None:
    cache.account(request([ten("sys")], [user(ten("u1", EPHEMERAL))]))  # entry at position 1
    body = request([ten("sys")], _grown(grown_by))  # breakpoint at position 1 + grown_by
    total = 20 + 10 * grown_by
    assert request_prompt_tokens(body) == total
    assert cache.account(body) == CacheUsage(0, total - read, read, total - read, 0)


def test_a_system_breakpoint_still_reads_when_the_conversation_outgrew_the_lookback(
    cache: PromptCache,
) -> None:
    cache.account(request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))]))
    body = request([ten("sys", EPHEMERAL)], _grown(25))
    total = 20 + 250
    assert cache.account(body) == CacheUsage(0, total - 10, 10, total - 10, 0)


def test_a_prefix_below_the_minimum_is_neither_written_nor_read(clock: FakeClock) -> None:
    cache = PromptCache(min_cacheable_tokens=lambda model: 15, clock=clock)
    body = request([ten("sys", EPHEMERAL)], [user(ten("u1"))])
    assert cache.account(body) == CacheUsage(20, 0, 0, 0, 0)  # the breakpoint prefix is 10 < 15
    assert cache.account(body) == CacheUsage(20, 0, 0, 0, 0)
    # With a second breakpoint at 20 tokens, everything up to it is written, but only position 1 is stored:
    both = request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))])
    assert cache.account(both) == CacheUsage(0, 20, 0, 20, 0)
    other_user = request([ten("sys", EPHEMERAL)], [user(ten("u2", EPHEMERAL))])
    assert cache.account(other_user).cache_read_input_tokens == 0  # nothing was stored for the system alone
    assert len(cache) == 2  # the two 20-token prefixes


def test_default_minimum_is_conservative_for_unknown_models() -> None:
    assert default_min_cacheable_tokens("claude-haiku-4-5") == 4096
    assert default_min_cacheable_tokens("claude-opus-4-6") == 4096
    assert default_min_cacheable_tokens("claude-sonnet-4-6") == 2048
    assert default_min_cacheable_tokens("claude-sonnet-4-5") == 1024
    for model in ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5"):
        assert default_min_cacheable_tokens(model) == 512  # the 5.5 models' documented minimum
    assert default_min_cacheable_tokens("claude-demo") == 2048
    small = request([ten("sys", EPHEMERAL)], [user(ten("u1", EPHEMERAL))])
    assert PromptCache().account(small) == CacheUsage(20, 0, 0, 0, 0)


def test_caches_are_per_model(cache: PromptCache) -> None:
    body = request([ten("sys")], [user(ten("u1", EPHEMERAL))])
    cache.account(body)
    assert cache.account({**body, "model": "another-model"}).cache_read_input_tokens == 0


def test_more_than_four_breakpoints_is_an_error(cache: PromptCache) -> None:
    body = request([ten(f"s{i}", EPHEMERAL) for i in range(5)], [user(ten("u1"))])
    with pytest.raises(ValueError, match="maximum of 4"):
        cache.account(body)


def test_usage_always_adds_up_to_the_prompt_total(cache: PromptCache, clock: FakeClock) -> None:
    bodies = [request([ten("sys", EPHEMERAL)], _grown(n)) for n in (2, 5, 30, 3)]
    for body in bodies:
        usage = cache.account(body)
        parts = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        assert parts == request_prompt_tokens(body)
        assert usage.ephemeral_5m_input_tokens + usage.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
        clock.now += 10

"""Model facts the product relies on, kept in the product (the fake model has its own copy, checked equal
by tests/test_model_facts.py). Prices are agent/prices.toml."""

from __future__ import annotations


def min_cacheable_tokens(model: str) -> int:
    """The documented minimum cacheable prefix per model (anthropic-economics.md); 2048 for ids we do
    not know (conservative: a warning at start-up rather than a silent miss)."""
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

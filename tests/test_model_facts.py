"""Model facts live in the product (agent/model_facts.py); the fake model keeps its own copy. They agree."""

from __future__ import annotations

import pytest

from agent import model_facts
from agent.cache_watch import min_cacheable_tokens
from agent.pricing import PriceTable
from fakeclaude.accounting import default_min_cacheable_tokens

KNOWN = ["claude-opus-4-0", "claude-opus-4-1", "claude-opus-4-20250514", "claude-opus-4-5", "claude-opus-4-6",
         "claude-sonnet-4-5", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-5-5", "claude-sonnet-5-5",
         "claude-haiku-5-5", "claude-fable-5", "claude-fable-5-1", "some-future-model", ""]


@pytest.mark.parametrize("model", KNOWN + PriceTable.load().models())
def test_the_fake_and_the_product_agree_on_the_minimum_cacheable_prefix(model: str) -> None:
    assert default_min_cacheable_tokens(model) == model_facts.min_cacheable_tokens(model) == min_cacheable_tokens(model)


def test_the_product_never_imports_the_fake() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [root / "app.py", root / "cli.py", *root.glob("agent/**/*.py"), *root.glob("ui/**/*.py"),
                 *root.glob("tools/**/*.py"), *root.glob("store/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "fakeclaude" or n.startswith("fakeclaude.") for n in names), path

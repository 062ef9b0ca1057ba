"""Cost math against hand-computed figures (USD per million tokens, from agent/prices.toml)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.pricing import PriceTable, UnknownPrice, fmt_usd, from_nano, to_nano
from fakeclaude import Reply, TextBlock
from store.models import MODEL_CALLS
from store.usage import TokenUsage
from tests.conftest import APPROVE_ALL, Recorder, deciding

DAY = date(2026, 11, 1)
EVERY_FIELD = TokenUsage(input_tokens=1_000, output_tokens=2_000, cache_write_5m_tokens=3_000,
                         cache_write_1h_tokens=4_000, cache_read_tokens=5_000)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def close(a: Decimal, b: str) -> bool:
    return abs(a - Decimal(b)) <= Decimal("0.000001")


@pytest.mark.parametrize(("model", "expected"), [
    # 1000*4 + 2000*20 + 3000*5 + 4000*8 + 5000*0.20 = 92,000 per million
    ("claude-opus-5-5", "0.092"),
    # 1000*2 + 2000*10 + 3000*2.5 + 4000*4 + 5000*0.10 (read price after 2026-10-07) = 46,000
    ("claude-sonnet-5-5", "0.046"),
    # 1000*5 + 2000*25 + 3000*6.25 + 4000*10 + 5000*0.5 = 116,250
    ("claude-opus-4-6", "0.11625"),
    # 1000*3 + 2000*15 + 3000*3.75 + 4000*6 + 5000*0.3 = 69,750
    ("claude-sonnet-4-6", "0.06975"),
    # 1000*1 + 2000*5 + 3000*1.25 + 4000*2 + 5000*0.1 = 23,250
    ("claude-haiku-4-5", "0.02325"),
    ("claude-haiku-4-5-20251001", "0.02325"),
    # 1000*0.10 + 2000*0.50 + 3000*0.125 + 4000*0.20 + 5000*0.01 = 2,325
    ("claude-haiku-5-5", "0.002325"),
])
def test_every_price_field_is_charged_at_its_own_rate(table, model, expected):
    cost = table.cost_usd(model, EVERY_FIELD, DAY)
    assert close(cost, expected), cost
    assert cost == Decimal(expected)  # exact, not just within 1e-6


def test_one_hour_writes_are_not_charged_at_the_five_minute_rate(table):
    five = table.cost_usd("claude-sonnet-5-5", TokenUsage(cache_write_5m_tokens=1_000_000), DAY)
    hour = table.cost_usd("claude-sonnet-5-5", TokenUsage(cache_write_1h_tokens=1_000_000), DAY)
    assert (five, hour) == (Decimal("2.5"), Decimal("4"))


def test_long_prompt_tier_applies_to_the_whole_call_above_100k_prompt_tokens(table):
    at_limit = TokenUsage(input_tokens=10_000, output_tokens=1_000, cache_write_5m_tokens=20_000,
                          cache_write_1h_tokens=30_000, cache_read_tokens=40_000)
    assert at_limit.prompt_tokens == 100_000
    # 10000*0.10 + 1000*0.50 + 20000*0.125 + 30000*0.20 + 40000*0.01 = 10,400 per million
    assert table.cost_usd("claude-haiku-5-5", at_limit, DAY) == Decimal("0.0104")
    above = TokenUsage(input_tokens=10_001, output_tokens=1_000, cache_write_5m_tokens=20_000,
                       cache_write_1h_tokens=30_000, cache_read_tokens=40_000)
    # 10001*0.50 + 1000*2.50 + 20000*0.625 + 30000*1.00 + 40000*0.05 = 52,000.5 per million
    cost = table.cost_usd("claude-haiku-5-5", above, DAY)
    assert close(cost, "0.0520005") and to_nano(cost) == 52_000_500


def test_cache_read_price_is_dated(table):
    read = TokenUsage(cache_read_tokens=1_000_000)
    assert table.cost_usd("claude-sonnet-5-5", read, date(2026, 10, 6)) == Decimal("0.20")
    assert table.cost_usd("claude-sonnet-5-5", read, date(2026, 10, 7)) == Decimal("0.10")
    assert table.cost_usd("claude-sonnet-5-5", read, date(2027, 1, 1)) == Decimal("0.10")


def test_unknown_model_or_a_day_before_any_price_is_refused_never_free(table):
    with pytest.raises(UnknownPrice, match="claude-nonesuch"):
        table.cost_usd("claude-nonesuch", EVERY_FIELD, DAY)
    with pytest.raises(UnknownPrice, match="TOLLGATE_PRICES_FILE"):
        table.require("claude-nonesuch", DAY)
    with pytest.raises(UnknownPrice):
        table.price("claude-sonnet-5-5", date(2025, 12, 31))
    with pytest.raises(UnknownPrice):
        table.worst_case_usd("claude-nonesuch", prompt_tokens=1, max_output_tokens=1, on=DAY)


def test_worst_case_is_the_prompt_at_the_dearest_prompt_rate_plus_full_output(table):
    # 1000 tokens at the 1h write rate (4) + 500 at the output rate (10) = 9,000 per million
    assert table.worst_case_usd("claude-sonnet-5-5", prompt_tokens=1_000, max_output_tokens=500,
                                on=DAY) == Decimal("0.009")
    # 200k prompt: long tier, 1h write 1.00 and output 2.50 -> 200,000 + 2,500
    assert table.worst_case_usd("claude-haiku-5-5", prompt_tokens=200_000, max_output_tokens=1_000,
                                on=DAY) == Decimal("0.2025")
    # Never below the cost of any usage with that prompt size and output.
    worst = table.worst_case_usd("claude-opus-5-5", prompt_tokens=15_000, max_output_tokens=2_000, on=DAY)
    assert worst >= table.cost_usd("claude-opus-5-5", EVERY_FIELD, DAY)


def test_nano_usd_rounding_and_the_override_file(tmp_path: Path, monkeypatch):
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "m"\neffective = "2026-01-01"\ninput = "0.0005"\noutput = "0.0004"\n'
                      'cache_write_5m = "0.0015"\ncache_write_1h = "1"\ncache_read = "0"\n')
    monkeypatch.setenv("TOLLGATE_PRICES_FILE", str(prices))
    table = PriceTable.load()
    assert table.models() == ["m"]
    # 0.5 nano-USD rounds half up to 1; 0.4 rounds down to 0; 1.5 rounds up to 2.
    assert to_nano(table.cost_usd("m", TokenUsage(input_tokens=1), DAY)) == 1
    assert to_nano(table.cost_usd("m", TokenUsage(output_tokens=1), DAY)) == 0
    assert to_nano(table.cost_usd("m", TokenUsage(cache_write_5m_tokens=1), DAY)) == 2
    # Published prices (<= 3 decimals per million) are whole nano-USD per token: no rounding at all.
    assert to_nano(PriceTable.load(Path("agent/prices.toml")).cost_usd(
        "claude-haiku-5-5", TokenUsage(cache_read_tokens=1), DAY)) == 10
    assert from_nano(1) == Decimal("1E-9")
    assert (fmt_usd(123_456_789), fmt_usd(2_345_000_000)) == ("$0.1235", "$2.35")


@pytest.mark.parametrize(("entry", "error"), [
    ('input = 0.1', "must be a string"),
    ('input = "abc"', "not a number"),
    ('input = "-1"', ">= 0"),
    ('long_input = "1"', "long_prompt_above"),
])
def test_malformed_price_files_fail_loudly(tmp_path: Path, entry, error):
    fields = {"input": '"1"', "output": '"1"', "cache_write_5m": '"1"', "cache_write_1h": '"1"', "cache_read": '"1"'}
    key = entry.split(" = ")[0]
    fields.pop(key, None)
    body = "\n".join(f"{k} = {v}" for k, v in fields.items())
    path = tmp_path / "p.toml"
    path.write_text(f'[[price]]\nmodel = "m"\neffective = "2026-01-01"\n{body}\n{entry}\n')
    with pytest.raises(ValueError, match=error):
        PriceTable.load(path)


def test_missing_field_and_duplicate_dates_fail_loudly(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text('[[price]]\nmodel = "m"\neffective = "2026-01-01"\ninput = "1"\n')
    with pytest.raises(ValueError, match="price entry 1 \\(m\\): output must be a string"):
        PriceTable.load(path)
    path.write_text('[[price]]\neffective = "2026-01-01"\n')
    with pytest.raises(ValueError, match="missing 'model'"):
        PriceTable.load(path)
    entry = ('[[price]]\nmodel = "m"\neffective = "2026-01-01"\ninput = "1"\noutput = "1"\ncache_write_5m = "1"\n'
             'cache_write_1h = "1"\ncache_read = "1"\n')
    path.write_text(entry + entry)
    with pytest.raises(ValueError, match="two prices for m"):
        PriceTable.load(path)


async def test_a_real_call_is_stored_at_its_exact_cost_in_nano_usd(make_harness):
    """Usage as the API reports it (cache_creation split into 5m and 1h), through the SDK, to the row."""
    h = make_harness([Reply(blocks=(TextBlock("ok"),), usage_override={
        "input_tokens": 100, "output_tokens": 2_000, "cache_creation_input_tokens": 500,
        "ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300, "cache_read_input_tokens": 400,
    })], model="claude-opus-5-5", max_tokens=4_096)
    tid = await h.thread()
    await h.agent.run_turn(owner="alice", thread_id=tid, text="hi", emit=deciding(h.agent, Recorder(), APPROVE_ALL))
    async with h.db.read() as conn:
        row = (await conn.execute(select(MODEL_CALLS).where(MODEL_CALLS.c.thread_id == tid))).one()
    assert (row.input_tokens, row.output_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens,
            row.cache_read_tokens) == (100, 2_000, 200, 300, 400)
    # 100*4 + 2000*20 + 200*5 + 300*8 + 400*0.20 = 43,880 per million = $0.04388
    assert row.status == "settled" and row.cost_nanousd == 43_880_000
    assert row.reserved_nanousd >= row.cost_nanousd

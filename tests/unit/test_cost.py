"""Prices from PRICING_FILE: lookup rules, the arithmetic, unknown models and bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from app.accounting import cost
from app.accounting.cost import Price, PriceTable
from app.config.settings import ConfigError
from app.formats.canonical import Usage
from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def shipped() -> PriceTable:
    return PriceTable.load(str(ROOT / "config" / "pricing.yaml"))


def write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "pricing.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_model_routed_by_default_has_a_price(shipped: PriceTable, caplog) -> None:
    routed = yaml.safe_load((ROOT / "config" / "models.yaml").read_text())["models"]
    names = {spec.get("model") or name for name, spec in routed.items()}
    names |= {fb for spec in routed.values() for fb in spec.get("fallbacks", [])}
    for name in sorted(names):
        provider = "anthropic" if name.startswith("claude") else "openai"
        assert shipped.price(provider, name) is not None, name
        assert shipped.cost_cents(provider, name, Usage(1000, 1000)) > 0, name


def test_cents_from_input_cached_and_output_tokens(shipped: PriceTable) -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=200)
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
    expected_dollars = (800 * 2.50 + 200 * 1.25 + 500 * 10.00) / 1_000_000
    assert shipped.cost_cents("openai", "gpt-4o", usage) == pytest.approx(expected_dollars * 100)
    # claude-sonnet-4: $3 input, $0.30 cache hits, $15 output.
    assert shipped.cost_cents("anthropic", "claude-sonnet-4-20250514", usage) == pytest.approx(
        (800 * 3.0 + 200 * 0.30 + 500 * 15.0) / 1_000_000 * 100)


def test_cache_heavy_anthropic_conversation_costs_its_bill(shipped: PriceTable) -> None:
    """A claude-sonnet-4-5 answer (https://docs.anthropic.com/en/docs/about-claude/pricing): 50 plain input
    tokens at $3, 2,000 cache reads at $0.30, 500 5-minute cache writes at $3.75 and 1,000 1-hour ones at $6,
    300 output tokens (120 of them thinking) at $15, and 2 web searches at $10 per 1,000."""
    usage = Usage(input_tokens=3550, output_tokens=300, cache_read_tokens=2000, cache_write_tokens=1500,
                  cache_write_1h_tokens=1000, reasoning_tokens=120, web_search_requests=2)
    bill_dollars = (50 * 3 + 2000 * 0.30 + 500 * 3.75 + 1000 * 6 + 300 * 15) / 1_000_000 + 2 * 10 / 1000
    assert bill_dollars == pytest.approx(0.033125)
    assert shipped.cost_cents("anthropic", "claude-sonnet-4-5-20250929", usage) == pytest.approx(3.3125)
    # what Anthropic's prompt cache saved: 2,000 reads at $3 - $0.30
    assert shipped.prompt_cache_savings_cents("anthropic", "claude-sonnet-4-5", usage) == pytest.approx(0.54)


def test_cached_openai_reasoning_answer_costs_its_bill(shipped: PriceTable) -> None:
    """An o3 answer (https://platform.openai.com/docs/pricing): 1,117 prompt tokens of which 1,024 cached
    ($2 and $0.50), 46 completion tokens of which 32 reasoning, all at the $8 output price."""
    usage = Usage(input_tokens=1117, output_tokens=46, cache_read_tokens=1024, reasoning_tokens=32)
    assert shipped.cost_cents("openai", "o3-2025-04-16", usage) == pytest.approx(
        (93 * 2.0 + 1024 * 0.50 + 46 * 8.0) / 1_000_000 * 100)
    assert shipped.prompt_cache_savings_cents("openai", "o3", usage) == pytest.approx(1024 * 1.5 / 1e6 * 100)


def test_cache_write_prices_default_to_input_then_to_the_5m_price(tmp_path) -> None:
    table = PriceTable.load(write(tmp_path, {"models": {
        "plain": {"input": 2, "output": 0},
        "five": {"input": 2, "output": 0, "cache_write": 2.5}}}))
    usage = Usage(input_tokens=1_000_000, cache_write_tokens=1_000_000, cache_write_1h_tokens=400_000)
    assert table.cost_cents("p", "plain", usage) == pytest.approx(200.0)  # OpenAI: writes billed as input
    assert table.cost_cents("p", "five", usage) == pytest.approx(250.0)  # 1h writes at the 5m price
    assert table.prompt_cache_savings_cents("p", "unpriced", usage) == 0.0


def test_cache_counts_beyond_the_prompt_are_clamped() -> None:
    price = Price(input=1.0, output=0.0, cached_input=0.1, cache_write=1.25, cache_write_1h=2.0)
    # 10 prompt tokens can hold at most 10 cache reads and writes together
    assert price.cents(Usage(10, cache_read_tokens=8, cache_write_tokens=5, cache_write_1h_tokens=9)) == pytest.approx(
        (8 * 0.1 + 2 * 2.0) / 1e6 * 100)


def test_cached_tokens_never_exceed_input_tokens() -> None:
    price = Price(input=1.0, output=0.0, cached_input=0.5)
    assert price.cents(Usage(input_tokens=10, cache_read_tokens=50)) == pytest.approx(10 * 0.5 / 1e6 * 100)


def test_dated_and_latest_names_cost_like_the_bare_name(shipped: PriceTable) -> None:
    usage = Usage(1_000_000, 1_000_000)
    bare = shipped.cost_cents("openai", "gpt-4o-mini", usage)
    assert shipped.cost_cents("openai", "gpt-4o-mini-2024-07-18", usage) == bare == pytest.approx(75.0)
    assert shipped.cost_cents("anthropic", "claude-3-5-haiku-20241022", usage) == pytest.approx(480.0)
    assert shipped.cost_cents("anthropic", "claude-3-5-haiku-latest", usage) == pytest.approx(480.0)
    assert shipped.cost_cents("openai", "gpt-4.1-2025-04-14", usage) == pytest.approx(1000.0)


def test_no_guessing_from_a_prefix(shipped: PriceTable) -> None:
    assert shipped.price("openai", "gpt-4o-audio-preview") is None
    assert shipped.price("anthropic", "claude-opus-4-9") is None


def test_provider_default_prices_every_model_of_that_provider(shipped: PriceTable, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_edge.cost"):
        assert shipped.cost_cents("local", "llama3.1:8b", Usage(5000, 5000)) == 0.0
    assert not caplog.records


def test_unknown_model_costs_zero_and_warns_once_per_model(tmp_path, caplog) -> None:
    table = PriceTable.load(write(tmp_path, {"models": {"gpt-4o": {"input": 1, "output": 2}}}))
    with caplog.at_level(logging.WARNING, logger="llm_edge.cost"):
        for _ in range(3):
            assert table.cost_cents("openai", "gpt-9", Usage(100, 100)) == 0.0
        assert table.cost_cents("anthropic", "claude-9", Usage(100, 100)) == 0.0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "'gpt-9'" in warnings[0] and "'claude-9'" in warnings[1]


def test_client_chosen_names_do_not_grow_memory_without_bound(tmp_path, caplog) -> None:
    table = PriceTable.load(write(tmp_path, {"models": {}}))
    with caplog.at_level(logging.WARNING, logger="llm_edge.cost"):
        for i in range(3000):
            table.cost_cents("openai", f"gpt-junk-{i}", Usage(1, 1))
    assert len(table._memo) <= cost._MEMO_LIMIT
    assert len(table._warned) <= cost._MEMO_LIMIT
    assert len(caplog.records) <= cost._MEMO_LIMIT


def test_cached_input_defaults_to_the_input_price_and_aliases_share_it(tmp_path) -> None:
    table = PriceTable.load(write(tmp_path, {"models": {"m": {"input": 4, "output": 8, "aliases": ["m-alias"]}}}))
    assert table.price("x", "m") == Price(4.0, 8.0, 4.0)
    assert table.price("x", "m-alias") == Price(4.0, 8.0, 4.0)


@pytest.mark.parametrize(("data", "message"), [
    ({"models": {"m": {"input": 1}}}, "models.m.output is missing"),
    ({"models": {"m": {"input": -1, "output": 1}}}, "models.m.input must be a number"),
    ({"models": {"m": {"input": "cheap", "output": 1}}}, "models.m.input must be a number"),
    ({"models": {"m": {"input": True, "output": 1}}}, "models.m.input must be a number"),
    ({"models": {"m": 3}}, "models.m must be a mapping"),
    ({"models": {"m": {"input": 1, "output": 1, "aliases": "x"}}}, "models.m.aliases must be a list"),
    ({"providers": {"local": {"output": 1}}}, "providers.local.input is missing"),
    ({"models": {"m": {"input": 1, "output": 1, "cache_write_1hr": 2}}}, "models.m.cache_write_1hr is not a price"),
    ({"models": {"m": {"input": 1, "output": 1, "web_search": -10}}}, "models.m.web_search must be a number"),
])
def test_bad_entries_stop_start_up_naming_the_field(tmp_path, data, message) -> None:
    with pytest.raises(ConfigError, match="PRICING_FILE: " + message.replace(".", r"\.")):
        PriceTable.load(write(tmp_path, data))


def test_unparsable_file_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="PRICING_FILE"):
        PriceTable.load(str(path))


def test_missing_file_prices_nothing_and_says_so(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_edge.cost"):
        table = PriceTable.load(str(tmp_path / "absent.yaml"))
    assert "every request counts as costing 0" in caplog.text
    assert table.cost_cents("openai", "gpt-4o", Usage(10, 10)) == 0.0

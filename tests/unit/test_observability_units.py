"""Small pieces of observability: bounded model labels, JSON log lines, prompt text, accounting."""

from __future__ import annotations

import logging
import time

import orjson
import pytest

from app.accounting.cost import Price, PriceTable
from app.accounting.spend import SpendLedger
from app.accounting.usage import Accounting
from app.context import RequestContext
from app.formats.canonical import ChatRequest, Message, TextBlock, ToolResultBlock, Usage
from app.observability import metrics
from app.observability.access import PROMPT_LOG_LIMIT, prompt_text
from app.observability.logging import JsonFormatter, logconfig_dict
from app.resilience.redis_guard import RedisGuard

pytestmark = pytest.mark.timeout(30)


def test_label_guard_passes_known_values_admits_a_few_and_folds_the_rest() -> None:
    guard = metrics.LabelGuard(limit=2)
    guard.allow(["gpt-4o", "fast"])
    assert guard("gpt-4o") == "gpt-4o"
    assert guard(None) == "none"
    assert guard("gpt-unknown") == "other"  # never answered upstream: not admitted
    assert guard.admit("gpt-new-1") == "gpt-new-1"
    assert guard.admit("gpt-new-2") == "gpt-new-2"
    assert guard.admit("gpt-new-3") == "other"
    assert guard("gpt-new-1") == "gpt-new-1"
    assert guard.admit("gpt-4o") == "gpt-4o"  # known values never use up the allowance


def record(msg: str, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("llm_edge.test", logging.WARNING, __file__, 1, msg, (), None)
    if fields:
        rec.fields = fields  # type: ignore[attr-defined]
    return rec


def test_json_lines_carry_fields_and_never_a_key() -> None:
    line = JsonFormatter().format(record("using sk-abcdefghijklmnop and Bearer tok123", request_id="r1", n=2))
    entry = orjson.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "llm_edge.test"
    assert entry["request_id"] == "r1" and entry["n"] == 2 and isinstance(entry["pid"], int)
    assert "sk-abcdefghijklmnop" not in line and "tok123" not in line
    assert entry["ts"].endswith("Z")


def test_timestamps_are_exact_across_seconds() -> None:
    """The seconds part is cached per second: each line must still carry its own second and milliseconds."""
    formatter = JsonFormatter()
    for created in (1_700_000_000.123, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.5, 1_700_000_001.042):
        rec = record("tick")
        rec.created, rec.msecs = created, (created - int(created)) * 1000
        ts = orjson.loads(formatter.format(rec))["ts"]
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(created))) + f".{int(rec.msecs):03d}Z"
        assert ts == expected


def test_exceptions_are_inside_the_json_line() -> None:
    try:
        raise RuntimeError("upstream said sk-abcdefghijklmnopq")
    except RuntimeError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "RuntimeError" in orjson.loads(line)["exc"] and "sk-abcdefghijklmnopq" not in line


def test_one_shared_handler_for_app_and_gunicorn_logs(tmp_path) -> None:
    stderr = logconfig_dict("INFO")
    assert stderr["handlers"]["main"]["class"] == "app.observability.log_handlers.LineStreamHandler"
    to_file = logconfig_dict("DEBUG", str(tmp_path / "gw.log"))
    assert to_file["handlers"]["main"]["class"] == "app.observability.log_handlers.LineFileHandler"
    assert to_file["handlers"]["main"]["filename"] == str(tmp_path / "gw.log")
    for name in ("gunicorn.error", "gunicorn.access"):
        assert to_file["loggers"][name]["handlers"] == ["main"]
    assert to_file["root"] == {"level": "DEBUG", "handlers": ["main"]}


def test_prompt_text_is_role_prefixed_redacted_and_capped() -> None:
    req = ChatRequest(
        model="m", system=(TextBlock("be brief"),),
        messages=(Message("user", (TextBlock("my key is sk-abcdefghijklmnopqrs"),)),
                  Message("user", (ToolResultBlock("t1", (TextBlock("72F"),)),))))
    text = prompt_text(req)
    assert text == "system: be brief\nuser: my key is [redacted]\ntool: 72F"
    long = ChatRequest(model="m", messages=(Message("user", (TextBlock("x" * 50_000),)),))
    assert len(prompt_text(long)) == PROMPT_LOG_LIMIT


def sample(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_accounting_counts_tokens_cost_and_spend_once() -> None:
    prices = PriceTable({"acct-model": Price(1.0, 2.0, 0.5)})
    metrics.MODEL_LABELS.allow(["acct-model"])
    spend = SpendLedger(RedisGuard(None))
    accounting = Accounting(prices, spend)
    ctx = RequestContext("r", "/v1/chat/completions", "openai", client_id="acme")
    before = sample("llm_edge_cost_total_cents", {"provider": "p", "model": "acct-model"})
    cents = accounting.upstream(ctx, "p", "acct-model", Usage(1_000_000, 500_000))
    assert cents == pytest.approx(200.0) and ctx.cost_cents == cents
    assert ctx.usage == Usage(1_000_000, 500_000)
    assert sample("llm_edge_cost_total_cents", {"provider": "p", "model": "acct-model"}) - before == \
        pytest.approx(200.0)
    assert sample("llm_edge_tokens_total", {"provider": "p", "model": "acct-model", "type": "completion"}) >= 500_000
    assert spend.spent("acme") == pytest.approx(200.0)

    saved = accounting.cache_hit(ctx, "p", "acct-model", Usage(1_000_000, 0))
    assert saved == pytest.approx(100.0)
    assert sample("llm_edge_cache_savings_total_cents", {"provider": "p", "model": "acct-model"}) >= 100.0
    assert spend.spent("acme") == pytest.approx(200.0)  # a hit costs the client nothing


def test_a_cached_answer_served_again_saves_its_price_each_time() -> None:
    """The saving of one cached usage is remembered per provider and model, and counted at every hit."""
    prices = PriceTable({"memo-a": Price(1.0, 2.0, 0.5), "memo-b": Price(3.0, 4.0, 3.0)})
    metrics.MODEL_LABELS.allow(["memo-a", "memo-b"])
    accounting = Accounting(prices)
    ctx = RequestContext("r", "/v1/chat/completions", "openai")
    usage = Usage(1_000_000, 1_000_000)
    labels = {"provider": "p", "model": "memo-a"}
    before = sample("llm_edge_cache_savings_total_cents", labels)
    assert [accounting.cache_hit(ctx, "p", "memo-a", usage) for _ in range(3)] == [pytest.approx(300.0)] * 3
    assert sample("llm_edge_cache_savings_total_cents", labels) - before == pytest.approx(900.0)
    assert accounting.cache_hit(ctx, "p", "memo-b", usage) == pytest.approx(700.0)  # same usage, another model
    assert accounting.cache_hit(ctx, "p", "memo-a", Usage(2_000_000, 0)) == pytest.approx(200.0)
    assert ctx.usage == Usage(2_000_000, 0)


def test_every_metric_is_documented() -> None:
    """README and docs/ list every metric the gateway defines."""
    from prometheus_client.metrics import MetricWrapperBase

    from tests.support.processes import ROOT

    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    defined = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    assert len(defined) >= 12
    for metric in defined:
        name = metric._name + ("_total" if metric._type == "counter" else "")
        assert f"`{name}`" in text, f"{name} is not in docs/observability.md's metrics table"


def test_child_is_the_labelled_metric_remembered() -> None:
    first = metrics.child(metrics.REQUESTS, "/v1/models", "none", "none", "200")
    assert first is metrics.child(metrics.REQUESTS, "/v1/models", "none", "none", "200")
    assert first is metrics.REQUESTS.labels("/v1/models", "none", "none", "200")
    assert first is not metrics.child(metrics.REQUESTS, "/v1/models", "none", "none", "404")
    before = sample("llm_edge_requests_total", {"endpoint": "/v1/models", "provider": "none", "model": "none",
                                                "status": "200"})
    first.inc()
    assert sample("llm_edge_requests_total", {"endpoint": "/v1/models", "provider": "none", "model": "none",
                                              "status": "200"}) == before + 1


@pytest.mark.parametrize("path,label", [
    ("/v1/models/gpt-4o", "/v1/models/{id}"),
    ("/v1/models/openai/gpt-4o", "/v1/models/{id}"),
    ("/v1/responses/resp_123", "/v1/responses/{id}"),
    ("/v1/responses/resp_123/input_items", "/v1/responses/{id}"),
    ("/v1/unknown", "other"),
    ("/v1/embeddingsx", "other"),
])
def test_the_endpoint_label_of_a_path_outside_the_fixed_set_is_its_template_or_other(path, label) -> None:
    from app.http.middleware import endpoint_of

    assert endpoint_of(path) == label


def test_the_direct_metric_calls_count_what_prometheus_client_counts() -> None:
    """metrics.observer / adder / counter_step: the same samples as observe / inc on a twin metric."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    ours = Histogram("direct_h", "h", ["k"], buckets=(0.1, 1.0, 5.0), registry=registry)
    theirs = Histogram("stock_h", "h", ["k"], buckets=(0.1, 1.0, 5.0), registry=registry)
    for amount in (0.0, 0.1, 0.10000001, 1.0, 4.99, 5.0, 7.0, float("inf"), -1.0, float("nan")):
        metrics.observer(ours, "a")(amount)
        theirs.labels("a").observe(amount)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        found = [(s.name.replace(name, ""), s.labels, s.value) for m in registry.collect() if m.name == name
                 for s in m.samples if not s.name.endswith("_created")]
        return [(n, labels, "nan" if v != v else v) for n, labels, v in found]  # type: ignore[misc]

    assert samples("direct_h") == samples("stock_h")
    counter = Counter("direct_c", "c", ["k"], registry=registry)
    metrics.adder(counter, "a")(2.5)
    metrics.counter_step(counter, "a")()
    assert counter.labels("a")._value.get() == 3.5
    with pytest.raises(ValueError):
        metrics.adder(counter, "a")(-1)
    with pytest.raises(ValueError):
        metrics.counter_step(counter, "a", step=-1.0)
    gauge = Gauge("direct_g", "g", registry=registry)
    metrics.counter_step(gauge)()
    metrics.counter_step(gauge, step=-1.0)()
    metrics.adder(gauge)(-2.0)
    assert gauge._value.get() == -2.0

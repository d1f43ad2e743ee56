"""Live metrics of a real 2-worker gunicorn gateway: sums over workers, worker deaths, promtool,
a real Prometheus server with the shipped rules, and the names the rules and dashboards use."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import openai
import pytest
import redis
import urllib3
import yaml

from app.accounting.cost import PriceTable
from app.accounting.spend import period_bucket
from app.formats.canonical import Usage
from tests.conftest import Fault, provider_env
from tests.support.metrics import scrape, settled
from tests.support.processes import ROOT, GatewayProcess, wait_until
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.timeout(120)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=20))
CHAT = "/v1/chat/completions"
RULES = ROOT / "docker" / "prometheus" / "rules.yml"
DASHBOARDS = ROOT / "docker" / "grafana" / "dashboards"
PRICES = PriceTable.load(str(ROOT / "config" / "pricing.yaml"))


@pytest.fixture(scope="module")
def gw(emulator):
    # RETRY_ATTEMPTS=1: the tests count one failed attempt per injected fault.
    gateway = GatewayProcess({**provider_env(emulator), "REQUEST_TIMEOUT": "20", "RETRY_ATTEMPTS": "1"}).start()
    yield gateway
    gateway.stop()


def chat(gw: GatewayProcess, content: str = "hello there", model: str = "gpt-4o-mini", **headers: str):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return http.request("POST", gw.url + CHAT, body=json.dumps(body).encode(),
                        headers={"content-type": "application/json", "connection": "close", **headers})


def stream_line(gw: GatewayProcess, model: str) -> dict | None:
    """The last access line of a stream answered by ``model``."""
    return next((e for e in reversed(access_lines(gw)) if e["model"] == model and e["stream"]), None)


def access_lines(gw: GatewayProcess) -> list[dict]:
    lines = [json.loads(line) for line in gw.logs().splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry["logger"] == "llm_edge.access"]


def test_counts_tokens_and_cost_are_summed_across_both_workers(gw, upstream):
    before = scrape(gw.metrics_url)
    usages: list[Usage] = []
    pids: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        deadline = time.monotonic() + 40  # until both workers have served some (a slow machine boots late)
        batch = 0
        while len(pids) < 2 and time.monotonic() < deadline:
            batch += 1
            contents = [f"batch {batch} request {i}" for i in range(8)]
            for resp in pool.map(lambda content: chat(gw, content), contents):
                assert resp.status == 200
                usage = json.loads(resp.data)["usage"]
                usages.append(Usage(usage["prompt_tokens"], usage["completion_tokens"]))
            pids = {e["pid"] for e in access_lines(gw) if e["endpoint"] == CHAT}
    assert len(pids) == 2, "every request went to one worker"
    after = settled(gw.metrics_url)

    labels = {"endpoint": CHAT, "provider": "openai", "model": "gpt-4o-mini", "status": "200"}
    assert after.total("llm_edge_requests_total", **labels) - before.total("llm_edge_requests_total", **labels) \
        == len(usages)
    for kind, counted in (("prompt", sum(u.input_tokens for u in usages)),
                          ("completion", sum(u.output_tokens for u in usages))):
        delta = (after.total("llm_edge_tokens_total", provider="openai", model="gpt-4o-mini", type=kind)
                 - before.total("llm_edge_tokens_total", provider="openai", model="gpt-4o-mini", type=kind))
        assert delta == counted
    expected_cents = sum(PRICES.cost_cents("openai", "gpt-4o-mini", u) for u in usages)
    cost = (after.total("llm_edge_cost_total_cents", provider="openai", model="gpt-4o-mini")
            - before.total("llm_edge_cost_total_cents", provider="openai", model="gpt-4o-mini"))
    assert expected_cents > 0 and cost == pytest.approx(expected_cents)
    duration = (after.total("llm_edge_request_duration_seconds_count", endpoint=CHAT, provider="openai")
                - before.total("llm_edge_request_duration_seconds_count", endpoint=CHAT, provider="openai"))
    assert duration == len(usages)
    assert after.total("llm_edge_provider_duration_seconds_count", provider="openai") - before.total(
        "llm_edge_provider_duration_seconds_count", provider="openai") == len(usages)


def stream_recorded(gw: GatewayProcess, before, provider: str) -> bool:
    ttft = "llm_edge_time_to_first_token_seconds_count"
    return scrape(gw.metrics_url).total(ttft, provider=provider) - before.total(ttft, provider=provider) >= 1


def test_streams_are_accounted_with_cost_and_time_to_first_token(gw, upstream):
    before = scrape(gw.metrics_url)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=10)
    for model, provider in (("gpt-4o-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic")):
        chunks = list(client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "one two three four"}]))
        usage = chunks[-1].usage
        expected = PRICES.cost_cents(provider, model, Usage(usage.prompt_tokens, usage.completion_tokens))
        # The stream's last bytes reach the client before the server's generator has run its
        # ``finally`` (where the request is recorded): wait, bounded, for that record.
        wait_until(partial(stream_recorded, gw, before, provider), timeout=10, what="stream recorded")
        after = scrape(gw.metrics_url)
        cost = (after.total("llm_edge_cost_total_cents", provider=provider, model=model)
                - before.total("llm_edge_cost_total_cents", provider=provider, model=model))
        assert expected > 0 and cost == pytest.approx(expected)
        assert after.total("llm_edge_time_to_first_token_seconds_count", provider=provider) - before.total(
            "llm_edge_time_to_first_token_seconds_count", provider=provider) == 1
        # Like that record, the access line is written after the stream's last byte: wait for it too.
        wait_until(partial(stream_line, gw, model), timeout=5, what="the stream's access line")
        line = stream_line(gw, model)
        assert line is not None
        assert line["completion_tokens"] == usage.completion_tokens
        assert line["cost_cents"] == pytest.approx(expected, abs=1e-6)


def test_provider_errors_are_counted_by_kind(gw, upstream):
    before = scrape(gw.metrics_url)
    upstream.push_faults(Fault(status=500), path="/v1/chat/completions")
    assert chat(gw, f"fails {uuid.uuid4()}").status == 502
    after = settled(gw.metrics_url)
    assert after.total("llm_edge_provider_errors_total", provider="openai", error_type="http_5xx") - before.total(
        "llm_edge_provider_errors_total", provider="openai", error_type="http_5xx") == 1
    assert after.total("llm_edge_requests_total", endpoint=CHAT, status="502") - before.total(
        "llm_edge_requests_total", endpoint=CHAT, status="502") == 1


def test_client_chosen_model_names_do_not_become_labels(gw, upstream):
    assert chat(gw, model="no-such-model-xyz").status == 404
    upstream.push_faults(Fault(status=500), path="/v1/chat/completions")
    assert chat(gw, model="gpt-made-up-by-a-client").status == 502  # routed by prefix, never answered
    text = scrape(gw.metrics_url).text
    assert "no-such-model-xyz" not in text and "gpt-made-up-by-a-client" not in text
    assert 'model="other"' in text


def live_values(gw: GatewayProcess, *, in_flight_allowed: bool = False) -> dict[tuple[str, tuple], float]:
    """Every counter-like sample (what must survive worker deaths), once nothing is in flight unless allowed."""
    s = scrape(gw.metrics_url) if in_flight_allowed else settled(gw.metrics_url)
    keep = {}
    for name, labels, value in s.samples:
        if name == "llm_edge_in_flight_requests" or name.startswith("llm_edge_circuit_breaker"):
            continue
        if name.startswith("llm_edge_requests_total") and labels.get("endpoint", "").startswith("/health"):
            continue  # the readiness polling below adds to these
        keep[(name, tuple(sorted(labels.items())))] = value
    return keep


def test_counters_survive_killed_workers_and_their_in_flight_requests_leave_the_gauge(gw, upstream):
    for i in range(6):
        assert chat(gw, f"warm {i}").status == 200
    upstream.set_default_fault(Fault(hang=True), path="/v1/chat/completions")
    pool = ThreadPoolExecutor(2)
    hanging = [pool.submit(chat, gw, f"hang {i}") for i in range(2)]
    # Exactly two: the hanging ones, and every warm request recorded (that ends with leaving the gauge).
    wait_until(lambda: scrape(gw.metrics_url).total("llm_edge_in_flight_requests") == 2, timeout=10,
               what="two requests in flight")
    before = live_values(gw, in_flight_allowed=True)
    old = set(gw.worker_pids())
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(set(gw.worker_pids()) - old) == 2, timeout=30, what="two new workers")
    for f in hanging:
        with pytest.raises(Exception):  # noqa: B017 (their worker died: the connection drops)
            f.result(timeout=10)
    pool.shutdown()
    upstream.clear_faults()
    wait_until(lambda: http.request("GET", gw.url + "/health/ready").status == 200, timeout=30, what="ready")
    after_kill = settled(gw.metrics_url)  # waits for the readiness probe's record; fails after 5 s
    assert after_kill.total("llm_edge_in_flight_requests") == 0  # livesum: dead workers' gauges are gone
    after = live_values(gw)
    for key, value in before.items():
        assert after.get(key, 0.0) >= value, key
    chat_key = ("llm_edge_requests_total", tuple(sorted({"endpoint": CHAT, "provider": "openai",
                                                         "model": "gpt-4o-mini", "status": "200"}.items())))
    assert after[chat_key] == before[chat_key]
    for i in range(3):
        assert chat(gw, f"after {i}").status == 200
    assert live_values(gw)[chat_key] == before[chat_key] + 3


def exercise(gw: GatewayProcess, upstream) -> None:
    """A plain answer, a stream and a provider failure: every kind of series gets a sample."""
    assert chat(gw).status == 200
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=10)
    assert list(client.chat.completions.create(model="claude-3-5-haiku-latest", stream=True,
                                               messages=[{"role": "user", "content": "a b"}]))
    upstream.push_faults(Fault(status=503), path="/v1/chat/completions")
    assert chat(gw, f"fails {uuid.uuid4()}").status == 502


def test_promtool_check_metrics_accepts_the_live_output(gw, upstream):
    exercise(gw, upstream)
    text = scrape(gw.metrics_url).text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_gauge_says_how_workers_combine():
    from app.observability import metrics

    gauges = [m for m in vars(metrics).values() if type(m).__name__ == "Gauge"]
    assert gauges
    for gauge in gauges:
        assert gauge._multiprocess_mode in {"livesum", "livemax", "sum", "max", "liveall", "mostrecent"}, gauge


def _expr_names(expr: str) -> set[str]:
    return set(re.findall(r"\bllm_edge_[a-z0-9_]+\b", expr))


def referenced_names() -> tuple[dict[str, set[str]], set[str]]:
    """Metric names used by the rules and dashboards (by where), and the names the rules record."""
    where: dict[str, set[str]] = {}
    rules = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in _expr_names(rule["expr"]):
                where.setdefault(name, set()).add(f"rules.yml:{rule.get('record') or rule.get('alert')}")

    def walk(node, source):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query") and isinstance(value, str):
                    for name in _expr_names(value):
                        where.setdefault(name, set()).add(source)
                else:
                    walk(value, source)
        elif isinstance(node, list):
            for item in node:
                walk(item, source)

    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert len(dashboards) >= 4
    for path in dashboards:
        walk(json.loads(path.read_text()), path.name)
    return where, recorded


def test_every_metric_in_rules_and_dashboards_is_exported(gw, upstream):
    exercise(gw, upstream)
    where, recorded = referenced_names()
    assert "llm_edge_cache_hit_rate" in recorded and len(where) >= 10
    live = scrape(gw.metrics_url)
    missing = {name: sorted(src) for name, src in where.items() if name not in recorded and name not in live.names}
    assert not missing, f"named in rules/dashboards but not exported: {missing}"
    for name in where:  # histograms are read through their series, never by the bare family name
        if live.types.get(name) == "histogram":
            pytest.fail(f"{name} is a histogram: query {name}_bucket/_sum/_count ({sorted(where[name])})")


def cache_lookups(gw: GatewayProcess) -> tuple[float, float]:
    s = scrape(gw.metrics_url)
    return s.total("llm_edge_cache_hits_total"), s.total("llm_edge_cache_misses_total")


def test_a_real_prometheus_scrapes_the_gateway_and_evaluates_the_shipped_rules(start_gateway, upstream):
    # A fresh gateway: its cache counters are 0 at Prometheus's first scrape, so rate() extrapolates the
    # hit and miss series alike and the recorded ratio is exactly the ratio of the increases.
    gw = start_gateway()
    prometheus = PrometheusServer([f"127.0.0.1:{gw.metrics_port}"], [RULES]).start()
    try:
        wait_until(lambda: prometheus.query('count_over_time(up{job="llm-edge-agent"}[1m]) >= 2'), timeout=20,
                   what="two scrapes of the gateway")

        def rules() -> list[dict]:
            return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]

        assert {r["name"] for r in rules()} >= {"llm_edge_cache_hit_rate", "LLMEdgeGatewayDown"}
        wait_until(lambda: all(r["health"] != "unknown" for r in rules()), timeout=20, what="rules evaluated")
        assert [(r["name"], r.get("lastError")) for r in rules() if r["health"] != "ok"] == []

        # Misses, then hits: each question asked four times on one keep-alive connection (one worker).
        hits0, misses0 = cache_lookups(gw)
        one_worker = urllib3.HTTPConnectionPool("127.0.0.1", gw.port, maxsize=1, block=True, retries=False,
                                                timeout=urllib3.Timeout(connect=2, read=20))
        for question in range(3):
            body = json.dumps({"model": "gpt-4o-mini",
                               "messages": [{"role": "user", "content": f"hit rate {question} {uuid.uuid4()}"}]})
            for _ in range(4):
                resp = one_worker.request("POST", CHAT, body=body, headers={"content-type": "application/json"})
                assert resp.status == 200
        hits1, misses1 = cache_lookups(gw)
        hits, misses = hits1 - hits0, misses1 - misses0
        assert hits >= 9 and misses >= 3
        expected = hits / (hits + misses)

        def recorded() -> float | None:
            result = prometheus.query("llm_edge_cache_hit_rate")
            return float(result[0]["value"][1]) if result else None

        # The recording rule, evaluated by Prometheus over what it scraped, equals the gateway's own counts.
        wait_until(lambda: recorded() is not None and abs(recorded() - expected) < 1e-6, timeout=20,
                   what=f"llm_edge_cache_hit_rate == {expected:.4f}")
        requests = prometheus.query(f'sum(llm_edge_requests_total{{endpoint="{CHAT}"}})')
        assert float(requests[0]["value"][1]) >= 12
    finally:
        prometheus.stop()


def test_metrics_port_is_separate_and_serves_only_metrics(gw):
    assert http.request("GET", gw.url + "/metrics").status == 404
    assert http.request("GET", f"http://127.0.0.1:{gw.metrics_port}/metrics").status == 200




def chat_total(gw: GatewayProcess) -> float:
    return settled(gw.metrics_url).total("llm_edge_requests_total", endpoint=CHAT, status="200")


def test_sighup_reload_keeps_counters_and_the_metrics_folder(start_gateway, upstream):
    gw = start_gateway()
    for i in range(4):
        assert chat(gw, f"before reload {i}").status == 200
    before = chat_total(gw)
    assert before == 4
    old = set(gw.worker_pids())
    gw.signal(signal.SIGHUP)  # gunicorn re-reads gunicorn.conf.py and replaces every worker
    wait_until(lambda: not old & set(gw.worker_pids()) and len(gw.worker_pids()) == 2, timeout=30,
               what="new workers after SIGHUP")
    assert chat_total(gw) == before
    assert chat(gw, "after reload").status == 200
    assert chat_total(gw) == before + 1
    served = [line for line in gw.logs().splitlines() if '"metrics on http' in line]
    assert len(served) == 1  # one metrics server, one folder, for the master's whole life


def test_two_gateways_on_one_host_neither_share_nor_wipe_metrics(start_gateway, upstream, tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    a = start_gateway(env)
    for i in range(3):
        assert chat(a, f"to a {i}").status == 200
    b = start_gateway(env)
    assert len(list(tmp_path.glob("llm-edge-multiproc-*"))) == 2
    assert chat_total(a) == 3 and chat_total(b) == 0
    assert chat(b, "to b").status == 200
    assert chat_total(a) == 3 and chat_total(b) == 1
    b.stop()
    assert chat_total(a) == 3
    assert len(list(tmp_path.glob("llm-edge-multiproc-*"))) == 1


def test_a_cache_hit_counts_its_savings_and_costs_nothing(gw, upstream):
    one_worker = urllib3.HTTPConnectionPool("127.0.0.1", gw.port, maxsize=1, block=True, retries=False)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"save {uuid.uuid4()}"}]})
    first = one_worker.request("POST", CHAT, body=body, headers={"content-type": "application/json"})
    usage = json.loads(first.data)["usage"]
    price = PRICES.cost_cents("openai", "gpt-4o-mini", Usage(usage["prompt_tokens"], usage["completion_tokens"]))
    before = scrape(gw.metrics_url)
    second = one_worker.request("POST", CHAT, body=body, headers={"content-type": "application/json"})
    assert second.headers["x-llm-edge-cache"] == "hit-l1"
    after = scrape(gw.metrics_url)
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    saved = after.total("llm_edge_cache_savings_total_cents", **labels) - before.total(
        "llm_edge_cache_savings_total_cents", **labels)
    assert price > 0 and saved == pytest.approx(price)
    assert after.total("llm_edge_cost_total_cents", **labels) == before.total("llm_edge_cost_total_cents", **labels)
    request_id = second.headers["x-request-id"]
    wait_until(lambda: request_id in gw.logs(), timeout=5, what="the hit's access line")
    line = next(e for e in access_lines(gw) if e["request_id"] == request_id)
    assert line["cost_cents"] == 0 and line["cache"] == "hit-l1" and line["provider"] == "cache"


def test_client_spend_reaches_redis_from_every_worker(start_gateway, upstream, redis_server):
    gw = start_gateway({"REDIS_URL": redis_server.url})
    usages = []
    with ThreadPoolExecutor(4) as pool:
        for resp in pool.map(lambda i: chat(gw, f"spend {i} {uuid.uuid4()}"), range(12)):
            assert resp.status == 200
            usage = json.loads(resp.data)["usage"]
            usages.append(Usage(usage["prompt_tokens"], usage["completion_tokens"]))
    expected = sum(PRICES.cost_cents("openai", "gpt-4o-mini", u) for u in usages)
    raw = redis.Redis.from_url(redis_server.url)
    key = f"llm-edge:spend:{{anonymous}}:month:{period_bucket('month', time.time())}"

    def spent() -> float:
        value = raw.get(key)
        return float(value) if value else 0.0

    # Each worker's flusher sends its tally within about a second.
    wait_until(lambda: abs(spent() - expected) < 1e-9, timeout=10, what=f"{expected} cents in Redis")


def test_labeled_series_exist_at_zero_before_any_traffic(start_gateway):
    """Dashboards and alerts read 0, not "No data", before the first error, stream or disconnect."""
    from app.errors import ERROR_TYPES

    fresh = start_gateway()
    page = settled(fresh.metrics_url)
    present = {(name, tuple(sorted(labels.items()))) for name, labels, _ in page.samples}
    for provider in ("openai", "anthropic"):
        for error_type in ERROR_TYPES:
            assert ("llm_edge_provider_errors_total", (("error_type", error_type), ("provider", provider))) \
                in present, (provider, error_type)
        assert page.total("llm_edge_time_to_first_token_seconds_count", provider=provider) == 0
        assert any(n == "llm_edge_time_to_first_token_seconds_count" and lab.get("provider") == provider
                   for n, lab, _ in page.samples), provider
    for endpoint in ("/v1/chat/completions", "/v1/messages"):
        assert ("llm_edge_client_disconnects_total", (("endpoint", endpoint),)) in present, endpoint


# Anthropic's usage for an answer that read 2,000 prompt tokens from its prompt cache, wrote 1,500
# (1,000 with a one-hour lifetime) and searched the web twice (https://docs.anthropic.com/en/api/messages).
ANTHROPIC_CACHE_USAGE = {"cache_read_input_tokens": 2000, "cache_creation_input_tokens": 1500,
                         "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
                         "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0}}


def money(gw: GatewayProcess, provider: str, model: str) -> tuple[float, float]:
    metrics = settled(gw.metrics_url)
    return (metrics.total("llm_edge_cost_total_cents", provider=provider, model=model),
            metrics.total("llm_edge_prompt_cache_savings_cents", provider=provider, model=model))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_cache_heavy_claude_answer_costs_its_bill(gw, upstream, stream):
    """An OpenAI caller, a Claude model whose answer reports cache reads, 5m and 1h cache writes and web
    searches: the caller's usage counts them as OpenAI does, and the cost metric is Anthropic's bill."""
    model = "claude-sonnet-4-5"
    upstream.push_faults(Fault(usage=ANTHROPIC_CACHE_USAGE), path="/v1/messages")
    cost_before, saved_before = money(gw, "anthropic", model)
    client = openai.OpenAI(api_key="unused", base_url=gw.url + "/v1", max_retries=0)
    question = [{"role": "user", "content": f"bill me {uuid.uuid4()}"}]
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=question, stream=True,
                                                     stream_options={"include_usage": True},
                                                     extra_headers={"cache-control": "no-store"}))
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model=model, messages=question,
                                               extra_headers={"cache-control": "no-store"}).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    plain = usage.prompt_tokens - 3500
    assert plain > 0 and usage.prompt_tokens_details.cached_tokens == 2000
    bill_dollars = (plain * 3.00 + 2000 * 0.30 + 500 * 3.75 + 1000 * 6.00 + usage.completion_tokens * 15.00) / 1e6 \
        + 2 * 10.00 / 1000
    billed = Usage(usage.prompt_tokens, usage.completion_tokens, cache_read_tokens=2000, cache_write_tokens=1500,
                   cache_write_1h_tokens=1000, web_search_requests=2)
    assert PRICES.cost_cents("anthropic", model, billed) == pytest.approx(bill_dollars * 100)
    cost_after, saved_after = money(gw, "anthropic", model)
    assert cost_after - cost_before == pytest.approx(bill_dollars * 100)
    assert saved_after - saved_before == pytest.approx(2000 * (3.00 - 0.30) / 1e6 * 100)


def test_cached_openai_tokens_reach_an_anthropic_caller_and_the_bill(gw, upstream):
    """An Anthropic caller, an OpenAI model whose answer reports cached prompt tokens: input_tokens
    excludes them, cache_read_input_tokens holds them, and they are billed at the cached price."""
    import anthropic

    model = "gpt-4o"
    upstream.push_faults(Fault(usage={"prompt_tokens_details": {"cached_tokens": 32}}), path="/v1/chat/completions")
    cost_before, saved_before = money(gw, "openai", model)
    client = anthropic.Anthropic(api_key="unused", base_url=gw.url, max_retries=0)
    words = " ".join(f"w{i}" for i in range(60))
    answer = client.messages.create(model=model, max_tokens=50, extra_headers={"cache-control": "no-store"},
                                    messages=[{"role": "user", "content": f"{words} {uuid.uuid4()}"}])
    assert answer.usage.cache_read_input_tokens == 32 and answer.usage.cache_creation_input_tokens == 0
    prompt = answer.usage.input_tokens + 32
    bill_dollars = (answer.usage.input_tokens * 2.50 + 32 * 1.25 + answer.usage.output_tokens * 10.00) / 1e6
    cost_after, saved_after = money(gw, "openai", model)
    assert prompt > 32 and cost_after - cost_before == pytest.approx(bill_dollars * 100)
    assert saved_after - saved_before == pytest.approx(32 * (2.50 - 1.25) / 1e6 * 100)


def test_embeddings_and_model_lookups_are_counted_under_their_own_endpoint(gw, upstream):
    """``endpoint`` stays bounded: /v1/embeddings is its own value, any /v1/models/<id> is its template."""
    before = scrape(gw.metrics_url)
    body = {"model": "text-embedding-3-small", "input": [f"metrics {uuid.uuid4().hex}", "two words"]}
    resp = http.request("POST", gw.url + "/v1/embeddings", body=json.dumps(body).encode(),
                        headers={"content-type": "application/json", "cache-control": "no-store"})
    assert resp.status == 200
    tokens = json.loads(resp.data)["usage"]["prompt_tokens"]
    for model_id in ("gpt-4o", "openai/gpt-4o", f"nothing-{uuid.uuid4().hex[:6]}"):
        http.request("GET", f"{gw.url}/v1/models/{model_id}")
    after = settled(gw.metrics_url)

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("llm_edge_requests_total", endpoint="/v1/embeddings", provider="openai",
                model="text-embedding-3-small", status="200") == 1
    assert grew("llm_edge_request_duration_seconds_count", endpoint="/v1/embeddings", cache="bypass") == 1
    assert grew("llm_edge_tokens_total", provider="openai", model="text-embedding-3-small", type="prompt") == tokens
    assert grew("llm_edge_cost_total_cents", provider="openai", model="text-embedding-3-small") == pytest.approx(
        PRICES.cost_cents("openai", "text-embedding-3-small", Usage(tokens, 0)))
    assert grew("llm_edge_requests_total", endpoint="/v1/models/{id}", status="200") == 2
    assert grew("llm_edge_requests_total", endpoint="/v1/models/{id}", status="404") == 1
    assert not [labels for name, labels, _ in after.samples if name == "llm_edge_requests_total"
                and labels.get("endpoint", "").startswith("/v1/models/") and labels["endpoint"] != "/v1/models/{id}"]

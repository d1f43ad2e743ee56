"""A model spread over three Azure deployments (weights 1:1:2) on a real 2-worker gunicorn gateway.

It balances as configured, and it survives one deployment answering 429 (with ``retry-after``) and another
being killed mid-load without a single failed caller request: a 429 or an unreachable deployment moves the
attempt to the next deployment and cools the failed one down. /health and the metrics name each deployment
(and never its key). Azure's URL and key: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import time

import openai
import pytest
import urllib3

from tests.conftest import UNCACHED, Fault, emulator_module
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(180)

KEY_ONE = "azure-deploy-key-one-0123456789"
KEY_TWO = "azure-deploy-key-two-0123456789"
WEIGHTS = {"dep-a": 1, "dep-b": 1, "dep-c": 2}


def models_yaml(east_url: str, west_url: str) -> str:
    return f"""
providers:
  az-east:
    type: azure
    base_url: {east_url}
    api_key_env: AZ_KEY_ONE
  az-west:
    type: azure
    base_url: {west_url}
    api_key_env: AZ_KEY_ONE
models:
  gpt-spread:
    deployments:
      - {{name: dep-a, provider: az-east, model: dep-a, weight: 1}}
      - {{name: dep-b, provider: az-west, model: dep-b, weight: 1}}
      - {{name: dep-c, provider: az-east, model: dep-c, weight: 2, api_key_env: AZ_KEY_TWO}}
"""


@pytest.fixture
def east():
    # dep-a and dep-c live here; dep-c with a second key: the emulator accepts the one it is given, so the
    # test gives each deployment the key its own requests carry (checked below).
    emu = emulator_module.Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def west():
    emu = emulator_module.Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def gateway(east, west, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(models_yaml(east.url, west.url))
    gw = GatewayProcess({**UNCACHED, "MODELS_FILE": str(models), "AZ_KEY_ONE": KEY_ONE, "AZ_KEY_TWO": KEY_TWO,
                         "DEPLOYMENT_COOLDOWN": "1", "RETRY_BACKOFF_BASE": "0.01", "REQUEST_TIMEOUT": "20"},
                        threads=8).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    """One SDK client shared by the test's threads (it is thread-safe), with no retries of its own."""
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client", max_retries=0, timeout=20)


def ask(client: openai.OpenAI, i: int) -> str:
    messages = [{"role": "user", "content": f"request {i}"}]
    if i % 3 == 0:
        chunks = list(client.chat.completions.create(model="gpt-spread", messages=messages, stream=True))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model="gpt-spread", messages=messages).choices[0].message.content


def served_by(east, west) -> collections.Counter:
    """Answered (200) requests per deployment, from what the two fakes recorded."""
    counts: collections.Counter = collections.Counter()
    for rec in [*east.requests, *west.requests]:
        if rec.status == 200:
            counts[rec.path.split("/")[3]] += 1
    return counts


def test_three_deployments_share_the_load_one_one_two(client, east, west):
    n = 400
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(client, i), range(n)))
    assert answers == [f"Echo: request {i}" for i in range(n)]
    counts = served_by(east, west)
    assert sum(counts.values()) == n
    for name, weight in WEIGHTS.items():
        assert counts[name] / n == pytest.approx(weight / 4, abs=0.07), counts
    # Each deployment sends its own key, to its own URL with the api-version Azure requires.
    for rec in [*east.requests, *west.requests]:
        dep = rec.path.split("/")[3]
        assert rec.headers["api-key"] == (KEY_TWO if dep == "dep-c" else KEY_ONE)
        assert rec.query.startswith("api-version=")


def test_the_answer_and_the_access_line_name_the_deployment_that_answered(gateway, east, west):
    """``x-llm-edge-provider`` names the provider (two deployments share az-east); ``x-llm-edge-deployment`` and
    the access line's ``deployment`` say which deployment answered, streamed or not."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client", max_retries=0, timeout=20)
    named = []
    for i in range(12):
        messages = [{"role": "user", "content": f"which one {i}"}]
        if i % 2:
            with client.chat.completions.with_streaming_response.create(model="gpt-spread", messages=messages,
                                                                        stream=True) as response:
                headers = response.headers
                assert "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        else:
            headers = client.chat.completions.with_raw_response.create(model="gpt-spread", messages=messages).headers
        answered = [r for r in [*east.requests, *west.requests] if f"which one {i}" in json.dumps(r.body)]
        assert len(answered) == 1
        deployment = answered[0].path.split("/")[3]  # /openai/deployments/<name>/chat/completions
        assert headers["x-llm-edge-deployment"] == deployment
        assert headers["x-llm-edge-provider"] == ("az-west" if deployment == "dep-b" else "az-east")
        named.append((headers["x-request-id"], deployment))
    lines = {}
    for _ in range(50):  # an access line is written just after its answer
        lines = {line["request_id"]: line for line in map(json.loads, gateway.logs().splitlines())
                 if line.get("logger") == "llm_edge.access"}
        if all(rid in lines for rid, _ in named):
            break
        time.sleep(0.1)
    assert [lines[rid]["deployment"] for rid, _ in named] == [dep for _, dep in named]
    assert len({dep for _, dep in named}) > 1  # 12 draws over weights 1:1:2 (all on one: under 0.1%)


def test_no_request_fails_through_429s_on_one_deployment_and_another_killed_mid_load(gateway, client, east,
                                                                                      west):
    east.set_default_fault(Fault(status=429, retry_after=1), path="/openai/deployments/dep-a/")
    n = 300
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, client, i) for i in range(n)]
        futures[n // 3].result()
        west.stop()  # dep-b gone mid-load: refused connections from here on
        answers = [f.result() for f in futures]
    assert answers == [f"Echo: request {i}" for i in range(n)]
    counts = served_by(east, west)
    assert counts["dep-a"] == 0  # every answer it gave was a 429
    assert counts["dep-c"] > n / 2
    # dep-a was cooled down by its retry-after: far fewer attempts than its share of the picks.
    tried_a = sum(1 for r in east.requests if r.path.startswith("/openai/deployments/dep-a/"))
    assert 0 < tried_a < n / 4

    http = urllib3.PoolManager()
    health = json.loads(http.request("GET", gateway.url + "/health").data)
    deployments = health["checks"]["deployments"]["detail"]["models"]["gpt-spread"]["deployments"]
    assert set(deployments) == {"dep-a", "dep-b", "dep-c"}
    assert deployments["dep-c"]["weight"] == 2.0
    assert set(health["checks"]["circuit_breakers"]["detail"]["providers"]) >= {"dep-a", "dep-b", "dep-c"}
    metrics = http.request("GET", gateway.metrics_url).data.decode()
    failed_b = [line for line in metrics.splitlines()
                if line.startswith('llm_edge_deployment_attempts_total{deployment="dep-b",outcome="failed"}')]
    assert failed_b and float(failed_b[0].split()[-1]) > 0
    assert 'llm_edge_deployment_cooldown_until_seconds{deployment="dep-a"}' in metrics
    for text in (json.dumps(health), metrics, gateway.logs()):
        assert KEY_ONE not in text and KEY_TWO not in text


def test_retries_move_across_deployments_before_the_fallback_model(start_gateway, upstream, east, tmp_path):
    """dep-x and dep-y both fail with 500: one attempt at the first in the order, the full retries at the last,
    then the fallback answers; the next request skips both (cooling down) and goes straight to the fallback."""
    models = tmp_path / "models.yaml"
    models.write_text(f"""
providers:
  az:
    type: azure
    base_url: {east.url}
    api_key_env: AZ_KEY_ONE
models:
  gpt-pair:
    deployments:
      - {{name: dep-x, provider: az, model: dep-x}}
      - {{name: dep-y, provider: az, model: dep-y}}
    fallbacks: [gpt-4o-mini]
  gpt-alone:
    deployments:
      - {{name: dep-z, provider: az, model: dep-z}}
""")
    east.set_default_fault(Fault(status=500), path="/openai/deployments/")
    gw = start_gateway({**UNCACHED, "MODELS_FILE": str(models), "AZ_KEY_ONE": KEY_ONE, "WEB_CONCURRENCY": "1",
                        "RETRY_ATTEMPTS": "3", "RETRY_BACKOFF_BASE": "0.01", "DEPLOYMENT_COOLDOWN": "60"},
                       workers=1)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client", max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(model="gpt-pair",
                                                          messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "Echo: hi"
    assert raw.headers["x-llm-edge-provider"] == "openai"  # the fallback model's provider
    tried = [r.path.split("/")[3] for r in east.requests]
    assert sorted(set(tried)) == ["dep-x", "dep-y"]
    assert tried[0] != tried[1]  # the retry went to the other deployment, not the same one again
    assert tried[1:] == [tried[1]] * 3  # the last in the order keeps the full RETRY_ATTEMPTS
    assert upstream.count("/v1/chat/completions") == 1

    raw = client.chat.completions.with_raw_response.create(model="gpt-pair",
                                                          messages=[{"role": "user", "content": "again"}])
    assert raw.headers["x-llm-edge-provider"] == "openai"
    assert len(east.requests) == 4  # both deployments cooling down: not tried

    # With no fallback, a model whose every deployment is cooling down is a 503 with the wait as retry-after.
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-alone", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-alone", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and info.value.code == "no_healthy_provider"
    assert 50 <= int(info.value.response.headers["retry-after"]) <= 60
    assert "dep-z" in info.value.message


def test_each_deployment_has_its_own_circuit_breaker(start_gateway, east, tmp_path):
    """With millisecond cooldowns, dep-x's failures open dep-x's breaker alone; dep-y serves every request."""
    models = tmp_path / "models.yaml"
    models.write_text(f"""
providers:
  az:
    type: azure
    base_url: {east.url}
    api_key_env: AZ_KEY_ONE
models:
  gpt-pair:
    deployments:
      - {{name: dep-x, provider: az, model: dep-x}}
      - {{name: dep-y, provider: az, model: dep-y}}
""")
    east.set_default_fault(Fault(status=500), path="/openai/deployments/dep-x/")
    gw = start_gateway({**UNCACHED, "MODELS_FILE": str(models), "AZ_KEY_ONE": KEY_ONE, "DEPLOYMENT_COOLDOWN": "0.001",
                        "BREAKER_FAILURE_THRESHOLD": "2", "BREAKER_COOLDOWN": "60"}, workers=1)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client", max_retries=0, timeout=20)
    for i in range(30):
        answer = client.chat.completions.create(model="gpt-pair", messages=[{"role": "user", "content": f"r{i}"}])
        assert answer.choices[0].message.content == f"Echo: r{i}"
    tried_x = sum(1 for r in east.requests if r.path.startswith("/openai/deployments/dep-x/"))
    assert tried_x == 2  # then its breaker is open: skipped without a call
    http = urllib3.PoolManager()
    breakers = json.loads(http.request("GET", gw.url + "/health").data)["checks"]["circuit_breakers"]["detail"]
    assert breakers["providers"]["dep-x"]["state"] == "open"
    assert breakers["providers"]["dep-y"]["state"] == "closed" and breakers["providers"]["az"]["state"] == "closed"
    metrics = http.request("GET", gw.metrics_url).data.decode()
    assert 'llm_edge_circuit_breaker_state{provider="dep-x"} 2.0' in metrics

"""The budget hold is for what a request can really be billed (in process, real Redis, emulator upstream).

An OpenAI caller's ``reasoning_effort`` to a Claude model becomes a thinking budget, and the upstream
``max_tokens`` rises to budget + the caller's limit (docs/api.md, "Reasoning"); thinking is billed as output
tokens (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#pricing), so the hold covers
the raised limit, not the caller's.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import falcon.testing
import pytest
import yaml

from app.config.settings import Settings
from app.factory import create_gateway
from app.formats.reasoning import EFFORT_BUDGETS
from tests.conftest import UNCACHED, Fault, provider_env
from tests.support.processes import wait_until

pytestmark = pytest.mark.timeout(60)

KEY = "sk-edge-holding-client-key-00000007"
BUDGET = 1000.0  # cents a day; output costs 1 cent a token, input nothing
MODELS = """
models:
  gpt-then-claude:
    provider: openai
    model: gpt-4o-mini
    fallbacks: [claude-sonnet-4-5]
"""


@pytest.fixture
def client(tmp_path, upstream, redis_server) -> falcon.testing.TestClient:
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "holder", "tier": "pro", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
         "budget_cents_per_day": BUDGET}]}))
    (tmp_path / "pricing.yaml").write_text(yaml.safe_dump({"models": {
        "claude-sonnet-4-5": {"input": 0, "output": 10_000}, "gpt-4o-mini": {"input": 0, "output": 0}}}))
    (tmp_path / "models.yaml").write_text(MODELS)
    environ = {**provider_env(upstream), **UNCACHED, "REDIS_URL": redis_server.url, "ENABLE_TRACING": "false",
               "CLIENTS_FILE": str(tmp_path / "clients.yaml"), "PRICING_FILE": str(tmp_path / "pricing.yaml"),
               "MODELS_FILE": str(tmp_path / "models.yaml"), "RETRY_ATTEMPTS": "1"}
    return falcon.testing.TestClient(create_gateway(Settings.from_env(environ), environ).app)


def post(client: falcon.testing.TestClient, body: dict) -> falcon.testing.Result:
    return client.simulate_post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})


def while_in_flight(client: falcon.testing.TestClient, upstream, slow: dict, path: str) -> tuple[int, int]:
    """``slow`` held upstream for a second; meanwhile a cheap request of the same client: both statuses.

    A request is admitted while its client's spend and the holds of its requests in flight are under the
    budget (``app/limits/budgets.py``): what ``slow`` holds decides whether the cheap one gets in.
    """
    upstream.push_faults(Fault(delay=1.5), path=path)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, slow)
        wait_until(lambda: upstream.count() >= 1 or first.done(), timeout=10, what="the slow request upstream")
        cheap = post(client, {"model": "gpt-4o-mini", "max_tokens": 5,
                              "messages": [{"role": "user", "content": "meanwhile"}]})
        assert cheap.status_code in (200, 429), cheap.text
        if cheap.status_code == 429:
            assert cheap.json["error"]["code"] == "insufficient_quota"
        return first.result().status_code, cheap.status_code


def test_reasoning_effort_to_a_claude_model_holds_the_thinking_budget_too(client, upstream):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "think"}]}
    # No effort: 10 cents held of 1000, the other request gets in.
    assert while_in_flight(client, upstream, body, "/v1/messages") == (200, 200)
    assert upstream.requests[0].body["max_tokens"] == 10
    upstream.reset()
    # "minimal": thinking budget 1024, upstream max_tokens 1034: 1034 cents could be billed, the whole budget.
    assert while_in_flight(client, upstream, {**body, "reasoning_effort": "minimal"}, "/v1/messages") == (200, 429)
    assert upstream.requests[0].body["max_tokens"] == EFFORT_BUDGETS["minimal"] + 10 > BUDGET
    assert post(client, body).status_code == 200, "settled to its real cost at its end: the budget is free again"


def test_a_relayed_request_holds_for_its_translated_fallbacks_thinking(client, upstream):
    """The primary (gpt-4o-mini, free) relays; its fallback Claude would get the raised ``max_tokens``."""
    body = {"model": "gpt-then-claude", "max_tokens": 10, "messages": [{"role": "user", "content": "fall back"}]}
    assert while_in_flight(client, upstream, body, "/v1/chat/completions") == (200, 200)
    upstream.reset()
    assert while_in_flight(client, upstream, {**body, "reasoning_effort": "low"}, "/v1/chat/completions") == (200,
                                                                                                           429)

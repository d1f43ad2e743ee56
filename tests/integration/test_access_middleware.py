"""Auth and limits in the app, in process: who may call, in which dialect they are refused, the headers."""

from __future__ import annotations

import hashlib

import falcon
import falcon.testing
import pytest
import yaml
from prometheus_client import REGISTRY

from app.config.settings import Settings
from app.factory import create_gateway
from app.http import error_handlers
from app.http.app import GatewayApp
from app.http.middleware import RequestContextMiddleware
from app.limits.budgets import Budgets
from app.limits.clients import parse_clients
from app.limits.middleware import AccessMiddleware
from app.limits.policy import parse_policy
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard
from tests.conftest import provider_env

pytestmark = pytest.mark.timeout(60)

PRO_KEY, TOK_KEY = "sk-edge-pro-client-key-0001", "sk-edge-token-client-key-0002"
LIMITS = {"rate_limiting": {"global": {"requests_per_second": 1000}, "per_client": {
    "tier_pro": 3, "tier_tok": {"requests_per_second": 100, "tokens_per_minute": 1000}}}}
CLIENTS = {"clients": [
    {"id": "pro-co", "tier": "pro", "key_sha256": hashlib.sha256(PRO_KEY.encode()).hexdigest()},
    {"id": "tok-co", "tier": "tok", "key_sha256": hashlib.sha256(TOK_KEY.encode()).hexdigest()}]}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count my tokens please"}]}
MESSAGES = {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
            "messages": [{"role": "user", "content": "count my tokens please"}]}


@pytest.fixture
def client(tmp_path, upstream, redis_server) -> falcon.testing.TestClient:
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump(CLIENTS))
    (tmp_path / "limits.yaml").write_text(yaml.safe_dump(LIMITS))
    environ = {**provider_env(upstream), "REDIS_URL": redis_server.url, "ENABLE_TRACING": "false",
               "CLIENTS_FILE": str(tmp_path / "clients.yaml"), "RATE_LIMITS_FILE": str(tmp_path / "limits.yaml")}
    return falcon.testing.TestClient(create_gateway(Settings.from_env(environ), environ).app)


def limited(tier: str, limit: str) -> float:
    return REGISTRY.get_sample_value("llm_edge_rate_limited_total", {"tier": tier, "limit": limit}) or 0.0


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_health_needs_no_key_and_is_never_limited(client, path):
    for _ in range(5):
        resp = client.simulate_get(path)
        assert resp.status_code == 200 and "x-ratelimit-limit-requests" not in resp.headers


def test_missing_and_wrong_keys_are_401_in_the_callers_dialect(client):
    for headers in ({}, {"authorization": "Bearer sk-wrong"}, {"x-api-key": "sk-wrong"},
                    {"authorization": f"Basic {PRO_KEY}"}, {"authorization": PRO_KEY}):
        resp = client.simulate_post("/v1/chat/completions", json=CHAT, headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json["error"]["type"] == "authentication_error"
        assert resp.json["error"]["code"] == "invalid_api_key"
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert "x-ratelimit-limit-requests" not in resp.headers
        resp = client.simulate_post("/v1/messages", json=MESSAGES, headers=headers)
        assert resp.status_code == 401
        assert resp.json == {"type": "error", "error": {"type": "authentication_error",
                                                        "message": resp.json["error"]["message"]}}
    assert "Missing API key" in client.simulate_get("/v1/models").json["error"]["message"]
    assert "Invalid API key" in client.simulate_get("/v1/models", headers={"x-api-key": "x"}).json["error"]["message"]


def test_unknown_paths_do_not_tell_strangers_what_exists(client):
    assert client.simulate_get("/v2/secret-admin").status_code == 401
    assert client.simulate_get("/v2/secret-admin", headers={"x-api-key": PRO_KEY}).status_code == 404


def test_either_header_works_and_every_api_answer_has_the_limit_headers(client, upstream):
    resp = client.simulate_get("/v1/models", headers={"authorization": f"Bearer {PRO_KEY}"})
    assert resp.status_code == 200
    assert resp.headers["x-ratelimit-limit-requests"] == "3"
    assert resp.headers["x-ratelimit-remaining-requests"] == "2"
    assert resp.headers["x-ratelimit-reset-requests"].endswith("ms")
    resp = client.simulate_post("/v1/messages", json=MESSAGES, headers={"x-api-key": PRO_KEY})
    assert resp.status_code == 200 and resp.headers["x-ratelimit-remaining-requests"] == "1"
    resp = client.simulate_post("/v1/chat/completions", json={**CHAT, "model": "no-such-model"},
                                headers={"x-api-key": PRO_KEY})
    assert resp.status_code == 404 and resp.headers["x-ratelimit-remaining-requests"] == "0"
    # The client's key never goes upstream: the provider sees the gateway's own key.
    sent = upstream.requests[-1].headers
    assert PRO_KEY not in str(sent) and sent["x-api-key"] != PRO_KEY


def test_over_the_limit_is_429_in_the_callers_dialect_with_retry_after(client):
    before = limited("pro", "requests")
    for _ in range(3):
        assert client.simulate_get("/v1/models", headers={"x-api-key": PRO_KEY}).status_code == 200
    resp = client.simulate_post("/v1/messages", json=MESSAGES, headers={"x-api-key": PRO_KEY})
    assert resp.status_code == 429
    assert resp.json["type"] == "error" and resp.json["error"]["type"] == "rate_limit_error"
    assert "3 requests per second" in resp.json["error"]["message"] and "pro-co" in resp.json["error"]["message"]
    assert resp.headers["retry-after"] == "1" and 0 < int(resp.headers["retry-after-ms"]) <= 334
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    resp = client.simulate_post("/v1/chat/completions", json=CHAT, headers={"x-api-key": PRO_KEY})
    assert resp.status_code == 429 and resp.json["error"]["code"] == "rate_limit_exceeded"
    assert limited("pro", "requests") == before + 2


def test_tokens_are_counted_after_plain_and_streamed_answers(client):
    headers = {"x-api-key": TOK_KEY}
    first = client.simulate_post("/v1/chat/completions", json=CHAT, headers=headers)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "1000"
    used = first.json["usage"]["total_tokens"]
    long_prompt = [{"role": "user", "content": "word " * 100}]
    second = client.simulate_post("/v1/messages", json={**MESSAGES, "messages": long_prompt, "stream": True},
                                  headers=headers)
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-tokens"] == str(1000 - used)
    assert "message_stop" in second.text  # consumed: the stream's tokens count now
    third = client.simulate_get("/v1/models", headers=headers)
    remaining = int(third.headers["x-ratelimit-remaining-tokens"])
    assert remaining < 1000 - used - 90, "the streamed answer's 100+ tokens were counted too"
    assert third.headers["x-ratelimit-limit-tokens"] == "1000"


def test_a_spent_token_allowance_is_429_naming_tokens(client):
    headers = {"x-api-key": TOK_KEY}
    big = {**CHAT, "messages": [{"role": "user", "content": "word " * 1200}]}
    assert client.simulate_post("/v1/chat/completions", json=big, headers=headers).status_code == 200
    before = limited("tok", "tokens")
    resp = client.simulate_post("/v1/messages", json=MESSAGES, headers=headers)
    assert resp.status_code == 429 and "1000 tokens per minute" in resp.json["error"]["message"]
    assert resp.headers["x-ratelimit-remaining-tokens"] == "0" and int(resp.headers["retry-after"]) >= 1
    assert limited("tok", "tokens") == before + 1


def _app(spent: dict[str, float]) -> falcon.testing.TestClient:
    policy = parse_policy(LIMITS)
    clients = parse_clients({"clients": [{**CLIENTS["clients"][0], "budget_cents_per_day": 100}]},
                            policy.tiers, "pro")
    limiter = RateLimiter(policy, RedisGuard(None), 1)
    app = GatewayApp(middleware=[RequestContextMiddleware(), AccessMiddleware(
        clients, policy, limiter, Budgets(lambda cid, period: spent.get(cid, 0.0)))])

    class Ok:
        def on_get(self, req, resp):
            resp.media = {"ok": True}

    app.add_route("/v1/models", Ok())
    error_handlers.install(app)
    return falcon.testing.TestClient(app)


def test_a_used_up_spend_budget_is_429_insufficient_quota():
    spent = {"pro-co": 99.5}
    app = _app(spent)
    assert app.simulate_get("/v1/models", headers={"x-api-key": PRO_KEY}).status_code == 200
    spent["pro-co"] = 100.0
    before = limited("pro", "budget")
    resp = app.simulate_get("/v1/models", headers={"x-api-key": PRO_KEY})
    assert resp.status_code == 429 and resp.json["error"]["code"] == "insufficient_quota"
    assert "Spend budget exhausted" in resp.json["error"]["message"] and "100 cents" in resp.json["error"]["message"]
    assert int(resp.headers["retry-after"]) <= 86400 and "x-ratelimit-limit-requests" in resp.headers
    assert limited("pro", "budget") == before + 1


def test_without_redis_the_app_limits_in_process():
    app = _app({})
    codes = [app.simulate_get("/v1/models", headers={"x-api-key": PRO_KEY}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]

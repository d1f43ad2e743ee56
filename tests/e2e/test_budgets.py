"""Spend budgets end to end: the cost accounting's ledger, shared through Redis, refuses a spent client."""

from __future__ import annotations

import hashlib
import json

import pytest
import urllib3
import yaml

from tests.conftest import provider_env
from tests.support.processes import ROOT, GatewayProcess, RedisServer, wait_until

pytestmark = pytest.mark.timeout(90)

THRIFTY, FREE_SPENDER = "sk-edge-thrifty-client-key-0000001", "sk-edge-spender-client-key-0000002"


@pytest.fixture(scope="module")
def gw(emulator, tmp_path_factory):
    d = tmp_path_factory.mktemp("budgets")
    # One emulator answer to gpt-4o-mini costs about 0.0003 cents: the first one uses the thrifty budget up.
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "thrifty", "tier": "pro", "key_sha256": hashlib.sha256(THRIFTY.encode()).hexdigest(),
         "budget_cents_per_day": 0.0001},
        {"id": "spender", "tier": "pro", "key_sha256": hashlib.sha256(FREE_SPENDER.encode()).hexdigest(),
         "budget_cents_per_month": 1000}]}))
    redis_server = RedisServer().start()
    gateway = GatewayProcess({**provider_env(emulator), "REDIS_URL": redis_server.url,
                              "CLIENTS_FILE": str(d / "clients.yaml"),
                              "PRICING_FILE": str(ROOT / "config" / "pricing.yaml")}).start()
    yield gateway
    gateway.stop()
    redis_server.close()


def test_a_spent_daily_budget_is_429_insufficient_quota_in_both_dialects(gw, upstream):
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "spend a little"}]}
    msgs = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "spend a little"}]}

    def post(path: str, body: dict, key: str) -> urllib3.BaseHTTPResponse:
        return http.request("POST", gw.url + path, body=json.dumps(body).encode(),
                            headers={"content-type": "application/json", "x-api-key": key})

    assert post("/v1/chat/completions", chat, THRIFTY).status == 200, "under budget: the first answer runs"
    # The spend reaches every worker through Redis within the ledger's flush interval.
    wait_until(lambda: all(post("/v1/chat/completions", chat, THRIFTY).status == 429 for _ in range(4)),
               timeout=10, interval=0.2, what="the budget to be enforced by every worker")
    resp = post("/v1/chat/completions", chat, THRIFTY)
    body = json.loads(resp.data)
    assert resp.status == 429 and body["error"]["code"] == "insufficient_quota"
    assert "Spend budget exhausted" in body["error"]["message"] and "UTC day" in body["error"]["message"]
    assert 0 < int(resp.headers["retry-after"]) <= 86400 and "x-ratelimit-remaining-requests" in resp.headers
    resp = post("/v1/messages", msgs, THRIFTY)
    body = json.loads(resp.data)
    assert resp.status == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "Spend budget exhausted" in body["error"]["message"]
    before = upstream.count()
    for _ in range(3):
        assert post("/v1/chat/completions", chat, THRIFTY).status == 429
    assert upstream.count() == before, "a refused request never reaches a provider"

    assert post("/v1/chat/completions", chat, FREE_SPENDER).status == 200, "another client's budget is its own"
    metrics = http.request("GET", gw.metrics_url).data.decode()
    assert any(line.startswith('llm_edge_rate_limited_total{limit="budget",tier="pro"}')
               and float(line.split()[-1]) >= 5 for line in metrics.splitlines())

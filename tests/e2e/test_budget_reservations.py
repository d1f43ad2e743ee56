"""Budgets hold under concurrency: 50 requests at once against TWO gateway replicas sharing one real Redis.

Each request holds its worst-case cost before it goes upstream (max_tokens x output price + input estimated
from the body's bytes / 4), atomically in Redis; it settles to the real cost at its end. Here the worst case
is the real cost (input is free and every answer uses its whole max_tokens), so with 80 of 100 cents spent
exactly two more requests fit. Before reservations, all 50 were admitted while the provider took 1 s
(580 of 100 cents), and sequential requests overshot too (the ledger reaches Redis a second late).
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import urllib3
import yaml

from tests.conftest import UNCACHED, Fault

pytestmark = pytest.mark.timeout(120)

KEY = "sk-edge-reserve-client-key-0000042"
BUDGET, PER_REQUEST = 100.0, 10.0  # cents per day; one answer: 10 output tokens at 1 cent each


def test_fifty_concurrent_requests_on_two_replicas_never_overshoot_the_budget(
        start_gateway, redis_server, upstream, tmp_path):
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "reserver", "tier": "enterprise", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
         "budget_cents_per_day": BUDGET}]}))
    (tmp_path / "pricing.yaml").write_text(yaml.safe_dump({"models": {
        "gpt-4o-mini": {"input": 0, "output": 10_000}}}))  # dollars per million tokens: 1 cent a token
    env = {**UNCACHED, "REDIS_URL": redis_server.url, "CLIENTS_FILE": str(tmp_path / "clients.yaml"),
           "PRICING_FILE": str(tmp_path / "pricing.yaml"), "ENABLE_TRACING": "false", "REQUEST_TIMEOUT": "20"}
    replicas = [start_gateway(env), start_gateway(env)]
    http = urllib3.PoolManager(maxsize=60, retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    r = redis.Redis.from_url(redis_server.url)
    day_key = f"llm-edge:spend:{{reserver}}:day:{time.strftime('%Y-%m-%d', time.gmtime())}"

    def post(i: int) -> int:
        words = " ".join(f"w{i}x{j}" for j in range(20))  # 20 words: the emulator's answer is cut at max_tokens
        body = {"model": "gpt-4o-mini", "max_tokens": 10, "stream": i % 2 == 1,
                "messages": [{"role": "user", "content": words}]}
        resp = http.request("POST", replicas[i % 2].url + "/v1/chat/completions", body=json.dumps(body).encode(),
                            headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"})
        return resp.status

    for i in range(8):  # sequentially to 80% of the budget, alternating replicas
        assert post(i) == 200
    assert float(r.get(day_key)) == pytest.approx(8 * PER_REQUEST), "settled in Redis at once, no lag"

    upstream.set_default_fault(Fault(delay=1.0))
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(post, range(100, 150)))
    spent = float(r.get(day_key))
    assert statuses.count(200) == 2 and statuses.count(429) == 48, statuses
    assert spent <= BUDGET + 1e-6, f"overshoot: {spent} of {BUDGET} cents"
    assert spent == pytest.approx(BUDGET)
    assert not r.hgetall("llm-edge:spend:{reserver}:holds"), "every hold ended"

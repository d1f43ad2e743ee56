"""Circuit breakers in a real 2-worker gateway: open on a dead provider, answer at once, stay per provider,
show in the gauge and /health, and close again when the provider heals.

Breakers are per worker, so the test pins one keep-alive connection to each
worker and drives both.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import UNCACHED, Fault
from tests.support.metrics import scrape
from tests.support.workers import pinned_connections

pytestmark = pytest.mark.timeout(60)

ANTHROPIC_PATH, OPENAI_PATH = "/v1/messages", "/v1/chat/completions"
COOLDOWN = 3.0


def chat(conn, model: str):
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    started = time.monotonic()
    resp = conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})
    return resp, time.monotonic() - started


def breaker_detail(conn) -> dict:
    return json.loads(conn.request("GET", "/health").data)


def test_a_dead_provider_opens_its_breaker_the_other_keeps_working_and_it_recovers(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "BREAKER_FAILURE_THRESHOLD": "3", "BREAKER_FAILURE_RATE": "0",
                        "BREAKER_COOLDOWN": str(COOLDOWN), "RETRY_BACKOFF_BASE": "0.01", "RETRY_BACKOFF_MAX": "0.02"})
    workers = pinned_connections(gw.port)
    upstream.set_default_fault(Fault(status=500), path=ANTHROPIC_PATH)

    # Each worker: one request, three failed attempts -> its breaker opens.
    for conn in workers.values():
        resp, _ = chat(conn, "claude-3-5-haiku-latest")
        assert resp.status == 502
    opened_at = time.monotonic()
    reached = upstream.count(ANTHROPIC_PATH)
    assert reached == 6

    # Open: answered at once with 503 + retry-after, without reaching the provider.
    for conn in workers.values():
        for _ in range(3):
            resp, took = chat(conn, "claude-3-5-haiku-latest")
            assert resp.status == 503 and took < 0.2
            assert 1 <= int(resp.headers["retry-after"]) <= COOLDOWN
            assert json.loads(resp.data)["error"]["code"] == "no_healthy_provider"
    assert upstream.count(ANTHROPIC_PATH) == reached

    # The other provider's traffic is untouched, and the alias falls back without trying the open one.
    for conn in workers.values():
        resp, _ = chat(conn, "gpt-4o-mini")
        assert resp.status == 200 and resp.headers["x-llm-edge-provider"] == "openai"
        resp, took = chat(conn, "fast")
        assert resp.status == 200 and took < 0.2
        assert (resp.headers["x-llm-edge-provider"], resp.headers["x-llm-edge-model"]) == ("openai", "gpt-4o-mini")
    assert upstream.count(ANTHROPIC_PATH) == reached

    metrics = scrape(gw.metrics_url)
    assert metrics.total("llm_edge_circuit_breaker_state", provider="anthropic") == 2
    assert metrics.total("llm_edge_circuit_breaker_state", provider="openai") == 0
    for pid, conn in workers.items():
        health = breaker_detail(conn)
        detail = health["checks"]["circuit_breakers"]["detail"]
        assert health["status"] == "degraded" and detail["worker_pid"] == pid
        assert detail["providers"]["anthropic"]["state"] == "open"
        assert detail["providers"]["openai"]["state"] == "closed"
    assert time.monotonic() - opened_at < COOLDOWN  # all of the above happened while it was open

    # The provider heals; after the cooldown one probe per worker goes through and closes the breaker.
    upstream.set_default_fault(None, path=ANTHROPIC_PATH)
    time.sleep(max(0.0, opened_at + COOLDOWN + 0.1 - time.monotonic()))
    for conn in workers.values():
        resp, _ = chat(conn, "claude-3-5-haiku-latest")
        assert resp.status == 200 and resp.headers["x-llm-edge-provider"] == "anthropic"
    assert upstream.count(ANTHROPIC_PATH) == reached + 2
    for conn in workers.values():
        assert breaker_detail(conn)["checks"]["circuit_breakers"]["detail"]["providers"]["anthropic"]["state"] \
            == "closed"
    assert scrape(gw.metrics_url).total("llm_edge_circuit_breaker_state", provider="anthropic") == 0


def test_a_failed_probe_opens_it_again(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "BREAKER_FAILURE_THRESHOLD": "2", "BREAKER_FAILURE_RATE": "0",
                        "BREAKER_COOLDOWN": "1", "RETRY_ATTEMPTS": "1", "WEB_CONCURRENCY": "1"}, workers=1)
    (conn,) = pinned_connections(gw.port, workers=1).values()
    upstream.set_default_fault(Fault(status=503), path=OPENAI_PATH)
    assert chat(conn, "gpt-4o-mini")[0].status == 502
    assert chat(conn, "gpt-4o-mini")[0].status == 502
    assert chat(conn, "gpt-4o-mini")[0].status == 503  # open
    time.sleep(1.1)
    assert chat(conn, "gpt-4o-mini")[0].status == 502  # the probe, still failing
    assert upstream.count(OPENAI_PATH) == 3
    resp, took = chat(conn, "gpt-4o-mini")
    assert resp.status == 503 and took < 0.2  # open again for another cooldown
    assert upstream.count(OPENAI_PATH) == 3
    detail = breaker_detail(conn)["checks"]["circuit_breakers"]["detail"]["providers"]["openai"]
    assert detail["state"] == "open" and detail["times_opened"] == 2

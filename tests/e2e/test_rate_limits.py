"""Rate limits across processes: two 2-worker gateways sharing one real Redis, then Redis killed."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
import urllib3
import yaml

from tests.conftest import provider_env
from tests.support.processes import GatewayProcess, RedisServer

pytestmark = pytest.mark.timeout(120)

KEY = "sk-edge-hammer-client-key-00000001"
SLOW_KEY = "sk-edge-slow-client-key-000000002"
FAST_KEY = "sk-edge-fast-client-key-000000003"
RATE = 5
FAST_RATE = 60  # with RATE_LIMIT_LEASE_MS=200: batches of up to 12 admissions per worker


@pytest.fixture(scope="module")
def setup(emulator, tmp_path_factory):
    d: Path = tmp_path_factory.mktemp("limits")
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "hammer", "tier": "five", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()},
        {"id": "slow", "tier": "slow", "key_sha256": hashlib.sha256(SLOW_KEY.encode()).hexdigest()},
        {"id": "fast", "tier": "fast", "key_sha256": hashlib.sha256(FAST_KEY.encode()).hexdigest()}]}))
    (d / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {
        "global": {"requests_per_second": 1000},
        # "slow" refills one request per second: a sequence of requests sees the count, not the refill.
        "per_client": {"tier_five": RATE, "tier_slow": {"requests_per_second": 1, "burst": 5},
                       "tier_fast": FAST_RATE}}}))
    redis_server = RedisServer().start()
    env = {**provider_env(emulator), "REDIS_URL": redis_server.url, "CLIENTS_FILE": str(d / "clients.yaml"),
           "RATE_LIMITS_FILE": str(d / "limits.yaml"),
           # Two replicas of two workers: with Redis gone each worker keeps a quarter of each limit.
           "RATE_LIMIT_REPLICAS": "2", "RATE_LIMIT_LEASE_MS": "200"}
    gateways = [GatewayProcess(env).start(), GatewayProcess(env).start()]
    yield gateways, redis_server
    for gw in gateways:
        gw.stop()
    redis_server.close()


def hammer(urls: list[str], seconds: float, threads_per_url: int = 3,
           headers: dict[str, str] | None = None, key: str = KEY) -> list[tuple[float, int, float]]:
    """(finished at, status, latency) of every request sent by several threads per gateway for ``seconds``."""
    results: list[tuple[float, int, float]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run(url: str) -> None:
        pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=5))
        while time.monotonic() < stop_at:
            started = time.monotonic()
            status = pool.request("GET", url + "/v1/models", headers={"x-api-key": key, **(headers or {})}).status
            now = time.monotonic()
            with lock:
                results.append((now, status, now - started))
            time.sleep(0.003)  # a hard-pressing client, without starving the 2-core machine

    workers = [threading.Thread(target=run, args=(u,)) for u in urls for _ in range(threads_per_url)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 10)
    return results


def test_two_gateways_hold_five_per_second_together(setup):
    gateways, _ = setup
    started = time.monotonic()
    results = hammer([gw.url for gw in gateways], seconds=4.5)
    window_start, window_end = started + 1.5, started + 4.5  # the first 1.5 s spend the one-second burst
    in_window = [status for at, status, _ in results if window_start <= at < window_end]
    admitted = in_window.count(200)
    assert set(in_window) <= {200, 429}
    assert len(in_window) > 4 * admitted, "the gateways were offered far more than the limit"
    expected = RATE * (window_end - window_start)
    assert abs(admitted - expected) <= 0.2 * expected, (admitted, expected)


def test_a_fast_client_admitted_in_leased_batches_gets_its_limit_across_gateways(setup):
    """60/s is above the lease threshold: each worker admits in batches, yet the four hold 60/s together."""
    gateways, _ = setup
    started = time.monotonic()
    results = hammer([gw.url for gw in gateways], seconds=4.5, threads_per_url=4, key=FAST_KEY)
    window_start, window_end = started + 1.5, started + 4.5
    in_window = [status for at, status, _ in results if window_start <= at < window_end]
    admitted = in_window.count(200)
    assert set(in_window) <= {200, 429}
    assert len(in_window) > 2 * admitted, "the gateways were offered far more than the limit"
    expected = FAST_RATE * (window_end - window_start)
    assert abs(admitted - expected) <= 0.2 * expected, (admitted, expected, len(in_window))


def test_every_api_answer_carries_the_limit_headers(setup):
    gateways, _ = setup
    pool = urllib3.PoolManager(retries=False)
    seen = []
    for i in range(7):
        resp = pool.request("GET", gateways[i % 2].url + "/v1/models", headers={"x-api-key": SLOW_KEY})
        seen.append((resp.status, resp.headers["x-ratelimit-limit-requests"],
                     int(resp.headers["x-ratelimit-remaining-requests"]), resp.headers["x-ratelimit-reset-requests"],
                     resp.headers.get("retry-after")))
    assert [s[0] for s in seen] == [200] * 5 + [429] * 2
    assert all(s[1] == "5" for s in seen)
    assert seen[0][3].endswith("s") and seen[-1][3] != "0s"
    assert [s[2] for s in seen][:5] == [4, 3, 2, 1, 0], "one count across both gateways and all four workers"
    assert seen[-1][4] == "1" and seen[0][4] is None
    body = json.loads(pool.request("GET", gateways[0].url + "/v1/models", headers={"x-api-key": SLOW_KEY}).data)
    assert body["error"]["type"] == "rate_limit_error" and "1 request per second" in body["error"]["message"]
    metrics = pool.request("GET", gateways[0].metrics_url).data.decode()
    assert 'llm_edge_rate_limited_total{limit="requests",tier="slow"}' in metrics


def test_with_redis_killed_requests_are_still_limited_quickly_and_health_says_so(setup):
    gateways, redis_server = setup
    redis_server.stop()
    started = time.monotonic()
    # A new connection per request, so every worker of both gateways gets some of the traffic.
    results = hammer([gw.url for gw in gateways], seconds=4.0, threads_per_url=2, headers={"connection": "close"})
    elapsed = time.monotonic() - started
    statuses = [status for _, status, _ in results]
    assert set(statuses) <= {200, 429} and statuses.count(429) > 100, "never unlimited"
    # Four workers, each at a quarter of 5/s with a burst of at least one: at most ~5/s plus four bursts.
    assert statuses.count(200) <= RATE * elapsed + 4 + 4
    assert statuses.count(200) >= 4, "still serving, not failing closed"
    assert max(latency for _, _, latency in results) < 1.0, "a dead Redis never hangs a request"
    pool = urllib3.PoolManager(retries=False)
    for _ in range(6):  # whichever worker answers: each has tried Redis and is limiting locally
        health = json.loads(pool.request("GET", gateways[0].url + "/health", headers={"connection": "close"}).data)
        assert health["status"] == "degraded"
        assert health["checks"]["rate_limits"]["detail"]["mode"] == "local"
    resp = pool.request("GET", gateways[1].url + "/v1/models", headers={"x-api-key": KEY})
    assert resp.headers["x-ratelimit-limit-requests"] == "1", "the share in force is what the headers say"
    metrics = pool.request("GET", gateways[0].metrics_url).data.decode()
    assert 'llm_edge_redis_errors_total{operation="ratelimit"' in metrics

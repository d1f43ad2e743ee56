"""Three gateway replicas as one gateway, on a real Redis Cluster and behind real Sentinels, through failovers.

Real processes only: three gunicorn gateways (one worker each, as three pods
of one), a 3-primary Redis Cluster with a replica per primary, and separately a
primary + replica + 3 Sentinels (tests/support/redis_topologies.py). The figures
these tests hold are the ones docs/scaling.md states ("During a Redis fault").
References: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/
(failover, hash tags) and https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import urllib3
import yaml

from tests.conftest import provider_env
from tests.support.processes import GatewayProcess, wait_until
from tests.support.redis_topologies import ClusterProcesses, SentinelProcesses

pytestmark = pytest.mark.timeout(180)

KEY = "sk-edge-replicas-client-key-0000001"
RATE = 30  # requests per second for the whole client, whichever replica it reaches
CALM = 10  # below the limit (and below each worker's local share): every request should be answered 200
REPLICAS = 3
# What a failover may cost a request: the calls that reached the dead node before each worker's breaker
# opened (3 per worker), each a socket or connect timeout at most, plus a slot-map refresh.
SLOW = 1.0
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10), maxsize=16)


def files(d: Path) -> dict[str, str]:
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "replicated", "tier": "shared", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}))
    (d / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {
        "global": {"requests_per_second": 100000}, "per_client": {"tier_shared": RATE}}}))
    return {"CLIENTS_FILE": str(d / "clients.yaml"), "RATE_LIMITS_FILE": str(d / "limits.yaml")}


def replicas(emulator, d: Path, redis_url: str) -> list[GatewayProcess]:
    env = {**provider_env(emulator), **files(d), "REDIS_URL": redis_url, "ENABLE_L2_CACHE": "true",
           "L1_CACHE_SIZE": "0",  # every repeated request asks L2, so what L2 does is what the client sees
           "RATE_LIMIT_REPLICAS": str(REPLICAS), "REQUEST_TIMEOUT": "10"}
    return [GatewayProcess(env, workers=1, threads=8).start() for _ in range(REPLICAS)]


@pytest.fixture(scope="module")
def cluster_gateways(emulator, tmp_path_factory) -> Iterator[tuple[ClusterProcesses, list[GatewayProcess]]]:
    cluster = ClusterProcesses(primaries=3, replicas=1).start()
    gateways = replicas(emulator, tmp_path_factory.mktemp("cluster"), cluster.url)
    yield cluster, gateways
    for gw in gateways:
        gw.stop()
    cluster.close()


def send(urls: list[str], seconds: float, per_second: float | None, threads_per_url: int = 2,
         path: str = "/v1/models") -> list[tuple[float, int, float]]:
    """(finished at, status, latency) of requests spread round the replicas for ``seconds``: as fast as the
    threads go, or paced to ``per_second`` in all."""
    results: list[tuple[float, int, float]] = []
    lock = threading.Lock()
    started = time.monotonic()
    threads = len(urls) * threads_per_url
    gap = threads / per_second if per_second else 0.003

    def run(url: str, offset: float) -> None:
        time.sleep(offset)
        while time.monotonic() - started < seconds:
            t = time.monotonic()
            try:
                status = http.request("GET", url + path, headers={"x-api-key": KEY}).status
            except urllib3.exceptions.HTTPError:
                status = 0
            now = time.monotonic()
            with lock:
                results.append((now - started, status, now - t))
            time.sleep(max(0.0, gap - (time.monotonic() - t)))

    workers = [threading.Thread(target=run, args=(u, i * gap / threads))
               for i, (u, _) in enumerate((u, n) for u in urls for n in range(threads_per_url))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 15)
    return results


def admitted_rate(results: list[tuple[float, int, float]], start: float, end: float) -> float:
    in_window = [status for at, status, _ in results if start <= at < end]
    assert set(in_window) <= {200, 429}, sorted(set(in_window))
    return in_window.count(200) / (end - start)


def test_one_clients_limit_holds_within_5_percent_across_the_replicas(cluster_gateways):
    _, gateways = cluster_gateways
    results = send([gw.url for gw in gateways], seconds=7.0, per_second=None)
    offered = len([r for r in results if r[0] >= 2.0]) / 5.0
    rate = admitted_rate(results, 2.0, 7.0)  # the first second spends the one-second burst
    assert offered > 2 * RATE, f"offered only {offered:.0f}/s: not a test of the limit"
    assert abs(rate - RATE) <= 0.05 * RATE, (rate, RATE, offered)


def chat(gw: GatewayProcess, text: str) -> urllib3.BaseHTTPResponse:
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    return http.request("POST", gw.url + "/v1/chat/completions", body=orjson.dumps(body),
                        headers={"content-type": "application/json", "x-api-key": KEY})


def cache_keys(cluster: ClusterProcesses) -> int:
    from redis.cluster import RedisCluster
    return len(cluster.client().keys("llm-edge:cache:v2:*", target_nodes=RedisCluster.PRIMARIES))


def test_an_answer_cached_through_one_replica_is_an_l2_hit_on_the_others(cluster_gateways, upstream):
    cluster, gateways = cluster_gateways
    time.sleep(1.1)  # the client's limit refills after the previous test's load
    text = f"cached once, read everywhere {uuid.uuid4().hex[:8]}"
    before = cache_keys(cluster)
    miss = chat(gateways[0], text)
    assert miss.status == 200 and miss.headers["x-llm-edge-cache"] == "miss"
    wait_until(lambda: cache_keys(cluster) > before, timeout=5, interval=0.01, what="the L2 fill")
    for gw in gateways[1:]:
        hit = chat(gw, text)
        assert hit.status == 200 and hit.headers["x-llm-edge-cache"] == "hit-l2"
        assert hit.data == miss.data
    assert upstream.count() == 1


def test_killing_the_limiters_primary_fails_no_request_and_heals_by_itself(cluster_gateways, upstream):
    """Every limiter key shares one hash slot: kill the primary that holds it under a steady load. Requests are
    limited locally meanwhile (fail-open), none fails, none waits past SLOW, cached answers are hits or misses
    but never another answer, and the replicas count in Redis again once the replica has taken over."""
    cluster, gateways = cluster_gateways
    time.sleep(1.1)
    texts = [f"answer {i} {uuid.uuid4().hex[:8]}" for i in range(12)]
    expected = {t: orjson.loads(chat(gateways[0], t).data)["choices"][0]["message"]["content"] for t in texts}
    victim = cluster.primary_of("llm-edge:ratelimit:{llm-edge-limits}:global")
    stop = threading.Event()
    wrong: list[str] = []

    def read_cached() -> None:  # the cached answers, asked again and again through every replica
        i = 0
        while not stop.is_set():
            text = texts[i % len(texts)]
            resp = chat(gateways[i % REPLICAS], text)
            if resp.status == 200 and orjson.loads(resp.data)["choices"][0]["message"]["content"] != expected[text]:
                wrong.append(text)
            i += 1
            time.sleep(0.05)

    reader = threading.Thread(target=read_cached)
    reader.start()
    killed_at = time.monotonic()
    threading.Timer(1.0, victim.kill).start()
    results = send([gw.url for gw in gateways], seconds=14.0, per_second=CALM)
    stop.set()
    reader.join(15)
    failed = [r for r in results if r[1] != 200]
    assert not failed and not wrong, (failed[:5], wrong[:5])
    assert max(latency for _, _, latency in results) < SLOW
    assert cluster.primary_of("llm-edge:ratelimit:{llm-edge-limits}:global").port != victim.port
    shared = [ok_health(gw) for gw in gateways]
    assert all(shared), f"not back on Redis {time.monotonic() - killed_at:.1f} s after the kill"
    victim.start()
    cluster.wait_healthy()


def ok_health(gw: GatewayProcess) -> bool:
    """The replica's worker counts in Redis again: /health's rate_limits check says mode redis."""
    def shared() -> bool:
        body = orjson.loads(http.request("GET", gw.url + "/health").data)
        return body["checks"]["rate_limits"]["detail"]["mode"] == "redis"
    try:
        wait_until(shared, timeout=10, interval=0.2, what="rate limits back in Redis")
    except TimeoutError:
        return False
    return True


def test_killing_the_sentinel_primary_fails_no_request_and_heals_by_itself(emulator, tmp_path):
    sentinels = SentinelProcesses().start()
    gateways = replicas(emulator, tmp_path, sentinels.url)
    try:
        old = sentinels.primary_port()
        threading.Timer(1.0, sentinels.primary.kill).start()
        results = send([gw.url for gw in gateways], seconds=12.0, per_second=CALM)
        failed = [r for r in results if r[1] != 200]
        assert not failed, failed[:5]
        assert max(latency for _, _, latency in results) < SLOW
        assert sentinels.primary_port() != old
        assert all(ok_health(gw) for gw in gateways)
    finally:
        for gw in gateways:
            gw.stop()
        sentinels.close()


def test_fail_closed_refuses_in_the_callers_format_while_redis_is_unreachable(start_gateway, tmp_path):
    """RATE_LIMIT_WITHOUT_REDIS=refuse with nothing listening at REDIS_URL: a 503 with Retry-After, never an
    uncounted admission; both dialects' error bodies (https://platform.openai.com/docs/guides/error-codes,
    https://docs.anthropic.com/en/api/errors)."""
    gw = start_gateway({**files(tmp_path), "RATE_LIMIT_WITHOUT_REDIS": "refuse"}, workers=1, threads=4)
    for _ in range(4):  # failing calls, then the open breaker: refused either way
        models = http.request("GET", gw.url + "/v1/models", headers={"x-api-key": KEY})
        assert models.status == 503 and models.headers["retry-after"] == "5"
        assert orjson.loads(models.data)["error"]["code"] == "rate_limiter_unavailable"
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    message = http.request("POST", gw.url + "/v1/messages", body=orjson.dumps(body),
                           headers={"content-type": "application/json", "x-api-key": KEY,
                                    "anthropic-version": "2023-06-01"})
    assert message.status == 503 and orjson.loads(message.data)["type"] == "error"
    assert "Rate limits cannot be checked" in orjson.loads(message.data)["error"]["message"]
    health = orjson.loads(http.request("GET", gw.url + "/health").data)
    assert health["checks"]["rate_limits"]["detail"]["mode"] == "refuse"

"""The response cache end to end: two 2-worker gateways sharing a real redis-server, the official
OpenAI SDK as client, the emulator as upstream; tenant isolation with real client keys."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import orjson
import pytest
import redis
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Fault, provider_env
from tests.support.processes import GatewayProcess, RedisServer, wait_until

pytestmark = pytest.mark.timeout(90)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pair(emulator, shared_redis) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway instances (2 workers each) sharing one Redis, as two replicas would."""
    env = {**provider_env(emulator), "ENABLE_L2_CACHE": "true", "REDIS_URL": shared_redis.url,
           "REQUEST_TIMEOUT": "10"}
    first, second = GatewayProcess(env).start(), GatewayProcess(env).start()
    yield first, second
    first.stop()
    second.stop()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def post(gw: GatewayProcess, text: str, headers: dict[str, str] | None = None, **extra) -> urllib3.BaseHTTPResponse:
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}
    return http.request("POST", gw.url + "/v1/chat/completions", body=orjson.dumps(body),
                        headers={"content-type": "application/json", **(headers or {})})


def filled(redis_url: str, entries: int) -> None:
    """Wait until Redis holds ``entries`` cache entries: a fill is sent just after the answer's last byte
    (app/http/app.py, ``Exchange.finish``), so another replica finds it microseconds to milliseconds after the
    client has the answer; on a loaded machine the client's next request can be quicker."""
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: len(client.keys("llm-edge:cache:v2:*")) >= entries, timeout=2, interval=0.002,
                   what=f"{entries} cache entries in Redis")
    finally:
        client.close()


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    """A metric summed over the gateway's workers, as Prometheus would scrape it."""
    text = http.request("GET", gw.metrics_url).data.decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def sdk(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="any", max_retries=0, timeout=10)


def test_an_answer_cached_by_one_instance_is_an_l2_hit_on_the_other(pair, upstream, shared_redis):
    first, second = pair
    text = unique("shared across replicas")
    hits_before = metric(second, "llm_edge_cache_hits_total", tier="l2")
    stored = len(redis.Redis.from_url(shared_redis.url).keys("llm-edge:cache:v2:*"))
    miss = post(first, text)
    assert miss.status == 200 and miss.headers["x-llm-edge-cache"] == "miss"
    filled(shared_redis.url, stored + 1)
    hit = post(second, text)
    assert hit.status == 200 and hit.headers["x-llm-edge-cache"] == "hit-l2"
    assert hit.headers["x-llm-edge-provider"] == "cache" and hit.headers["x-llm-edge-model"] == "gpt-4o-mini"
    assert orjson.loads(hit.data)["choices"] == orjson.loads(miss.data)["choices"]
    assert orjson.loads(hit.data)["usage"] == orjson.loads(miss.data)["usage"]
    assert hit.data == miss.data  # relayed: the provider's bytes, through Redis and back
    assert upstream.count() == 1
    assert metric(second, "llm_edge_cache_hits_total", tier="l2") == hits_before + 1


def test_a_hit_names_the_fields_its_translation_leaves_out(pair, upstream, shared_redis):
    """A translated miss names the fields it left out; a hit of its entry answers the same translation (the
    dropped fields are not in the key), so it names them too: the caller learns it whichever answered."""
    first, second = pair
    messages = [{"role": "user", "content": unique("named"), "name": "alice"}]
    stored = len(redis.Redis.from_url(shared_redis.url).keys("llm-edge:cache:v2:*"))
    miss = post(first, "", model="claude-3-5-haiku-latest", messages=messages)
    assert miss.status == 200 and miss.headers["x-llm-edge-cache"] == "miss"
    assert miss.headers["x-llm-edge-dropped-fields"] == "messages[0].name"
    filled(shared_redis.url, stored + 1)
    hit = post(second, "", model="claude-3-5-haiku-latest", messages=messages)
    assert hit.status == 200 and hit.headers["x-llm-edge-cache"] == "hit-l2"
    assert hit.headers["x-llm-edge-dropped-fields"] == "messages[0].name"
    plain = post(second, "", model="claude-3-5-haiku-latest", messages=[{k: v for k, v in messages[0].items()
                                                                          if k != "name"}])
    assert plain.headers["x-llm-edge-cache"].startswith("hit")
    assert "x-llm-edge-dropped-fields" not in plain.headers  # the same entry, asked without a name
    assert upstream.count() == 1


def test_openai_sdk_streamed_miss_then_streamed_hit_then_json_is_its_own_entry(pair, upstream):
    """Relayed (OpenAI caller, OpenAI model): the stream's bytes are the entry, replayed as they came; a JSON
    request is another entry (docs/cache.md: stream is in a relayed request's key), then a hit on the other
    instance (L2)."""
    first, second = pair
    client = sdk(first)
    text = unique("one two three")

    def streamed() -> tuple[str, str, object]:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": text}], stream=True,
            stream_options={"include_usage": True})
        chunks = list(raw.parse())
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return raw.headers["x-llm-edge-cache"], content, chunks[-1].usage

    state, content, usage = streamed()
    assert state == "miss" and content == f"Echo: {text}" and usage.completion_tokens == 5
    state, again, hit_usage = streamed()
    assert state in ("hit-l1", "hit-l2") and again == content and hit_usage == usage

    def as_json(gw) -> tuple[str, object]:
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": text}])
        return raw.headers["x-llm-edge-cache"], raw.parse()

    state, completion = as_json(first)
    assert state == "miss" and completion.choices[0].message.content == content
    state, hit = as_json(second)
    assert state == "hit-l2" and hit.id == completion.id and hit.choices[0].finish_reason == "stop"
    assert (hit.usage.prompt_tokens, hit.usage.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert upstream.count() == 2


def test_an_entry_expires_after_its_ttl_in_both_tiers(pair, upstream, shared_redis):
    first, second = pair
    text = unique("short lived")
    stored = len(redis.Redis.from_url(shared_redis.url).keys("llm-edge:cache:v2:*"))
    assert post(first, text, {"x-llm-edge-cache-ttl": "1"}).headers["x-llm-edge-cache"] == "miss"
    filled(shared_redis.url, stored + 1)
    assert post(second, text).headers["x-llm-edge-cache"] == "hit-l2"
    time.sleep(1.2)
    assert post(first, text).headers["x-llm-edge-cache"] == "miss"
    filled(shared_redis.url, stored + 1)
    assert post(second, text).headers["x-llm-edge-cache"] == "hit-l2"  # stored again, with the default TTL
    assert upstream.count() == 2


def test_no_store_and_no_cache(pair, upstream, shared_redis):
    first, second = pair
    text = unique("controls")
    for _ in range(2):
        assert post(first, text, {"cache-control": "no-store"}).headers["x-llm-edge-cache"] == "bypass"
    assert post(second, text).headers["x-llm-edge-cache"] == "miss"  # no-store kept nothing anywhere
    fresh = post(first, text, {"cache-control": "no-cache"})  # stored above, yet asked upstream again
    assert fresh.headers["x-llm-edge-cache"] == "bypass" and fresh.headers["x-llm-edge-provider"] == "openai"
    other = unique("no-cache still stores")
    stored = len(redis.Redis.from_url(shared_redis.url).keys("llm-edge:cache:v2:*"))
    answer = post(first, other, {"cache-control": "no-cache"})
    filled(shared_redis.url, stored + 1)
    hit = post(second, other)
    assert hit.headers["x-llm-edge-cache"] == "hit-l2"
    assert orjson.loads(hit.data)["id"] == orjson.loads(answer.data)["id"]
    assert upstream.count() == 5


def test_identical_slow_requests_share_one_upstream_call_per_worker(pair, upstream):
    first, _ = pair
    upstream.set_default_fault(Fault(delay=0.5))
    coalesced = metric(first, "llm_edge_cache_coalesced_total")
    text = unique("slow and popular")
    client = sdk(first)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": text}]), range(8)))
    assert {a.choices[0].message.content for a in answers} == {f"Echo: {text}"}
    calls = upstream.count()
    assert 1 <= calls <= 2  # one per worker at most: coalescing is per process
    assert metric(first, "llm_edge_cache_coalesced_total") == coalesced + 8 - calls


def test_redis_dying_and_returning(start_gateway, redis_server, upstream):
    gw = start_gateway({"ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url})
    stored = unique("stored before the outage")
    assert post(gw, stored).headers["x-llm-edge-cache"] == "miss"
    direct = redis.Redis.from_url(redis_server.url)
    # The fill is sent just after the answer's last byte (app/http/app.py): microseconds later.
    wait_until(lambda: len(direct.keys("llm-edge:cache:v2:*")) == 1, timeout=2, interval=0.005,
               what="the fill in Redis")
    direct.close()

    os.kill(redis_server.proc.pid, signal.SIGSTOP)  # hung first: sockets open, nothing answers
    timings = []
    for i in range(16):
        started = time.perf_counter()
        resp = post(gw, unique(f"during the outage {i}"))
        timings.append(time.perf_counter() - started)
        assert resp.status == 200 and resp.headers["x-llm-edge-cache"] == "miss"
    # Before a worker's breaker opens, a request can wait for two short socket timeouts;
    # after it opens (three failures, so at most two requests per worker), Redis is skipped.
    assert sum(t > 0.2 for t in timings) <= 4, timings
    assert sorted(timings)[len(timings) // 2] < 0.2, timings

    def degraded() -> bool:
        health = orjson.loads(http.request("GET", gw.url + "/health").data)
        return health["status"] == "degraded" and "redis unreachable" in health["checks"]["redis"]["detail"]["reason"]

    wait_until(lambda: post(gw, unique("more")).status == 200 and degraded(), timeout=10, what="/health degraded")

    redis_server.stop()  # then dead: connections refused
    for i in range(6):
        assert post(gw, unique(f"redis dead {i}")).status == 200
    assert post(gw, stored).status == 200

    redis_server.start()  # back, empty: answers land in L2 again once the breaker probes (5 s cooldown)
    direct = redis.Redis.from_url(redis_server.url)

    def l2_used_again() -> bool:
        post(gw, unique("after the outage"))
        return len(direct.keys("llm-edge:cache:v2:*")) > 0

    wait_until(l2_used_again, timeout=20, interval=0.3, what="answers stored in Redis again")
    wait_until(lambda: orjson.loads(http.request("GET", gw.url + "/health").data)["status"] == "ok"
               and post(gw, unique("both workers")).status == 200, timeout=20, interval=0.3, what="/health ok")
    direct.close()


def test_clients_never_get_each_others_cached_answers(start_gateway, redis_server, upstream, tmp_path):
    keys = {"acme": "sk-edge-test-acme-0123456789", "globex": "sk-edge-test-globex-0123456789"}
    clients = tmp_path / "clients.yaml"
    clients.write_text("clients:\n" + "".join(
        f"  - id: {cid}\n    tier: pro\n    key_sha256: {hashlib.sha256(key.encode()).hexdigest()}\n"
        for cid, key in keys.items()))
    gw = start_gateway({"ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url, "CLIENTS_FILE": str(clients)})
    question = unique("tenant question")

    def ask(client: str) -> str:
        resp = post(gw, question, headers={"authorization": f"Bearer {keys[client]}"})
        assert resp.status == 200
        return resp.headers["x-llm-edge-cache"]

    assert ask("acme") == "miss"
    assert ask("acme") in ("hit-l1", "hit-l2")
    assert ask("globex") == "miss"  # same question, other tenant: never acme's answer
    assert upstream.count("/v1/chat/completions") == 2
    # With a shared namespace configured on purpose, tenants do share.
    gw2 = start_gateway({"ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url, "CLIENTS_FILE": str(clients),
                         "CACHE_NAMESPACE": "team"})
    question2 = unique("shared question")
    assert post(gw2, question2, headers={"x-api-key": keys["acme"]}).headers["x-llm-edge-cache"] == "miss"
    assert post(gw2, question2, headers={"x-api-key": keys["globex"]}).headers["x-llm-edge-cache"] in (
        "hit-l1", "hit-l2")


def limit_checks(client: redis.Redis) -> int:
    """The limiter's scripts run by a Redis so far (RATE_LIMIT_LEASE_MS=0: one per request)."""
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_a_separate_cache_redis_holds_the_cache_and_can_die_alone(start_gateway, redis_server, upstream):
    """CACHE_REDIS_URL: answers go to the cache's Redis, limits stay in REDIS_URL's; a dead cache Redis costs L2
    only (limits keep counting in the other Redis, /health names the cache's Redis)."""
    cache_server = RedisServer().start()
    try:
        gw = start_gateway({"ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url,
                            "CACHE_REDIS_URL": cache_server.url, "RATE_LIMIT_LEASE_MS": "0"})
        main, cache = redis.Redis.from_url(redis_server.url), redis.Redis.from_url(cache_server.url)
        assert post(gw, unique("cached apart")).headers["x-llm-edge-cache"] == "miss"
        wait_until(lambda: len(cache.keys("llm-edge:cache:*")) == 1, timeout=2, interval=0.005,
                   what="the fill in the cache's Redis")
        assert main.keys("llm-edge:cache:*") == [] and limit_checks(main) >= 1
        health = orjson.loads(http.request("GET", gw.url + "/health").data)
        assert health["checks"]["cache_redis"]["status"] == "ok" and health["checks"]["redis"]["status"] == "ok"

        cache_server.stop()
        checked = limit_checks(main)
        for i in range(6):
            assert post(gw, unique(f"cache redis dead {i}")).status == 200
        assert limit_checks(main) >= checked + 6  # limits still checked in REDIS_URL's Redis

        def cache_degraded() -> bool:
            post(gw, unique("probe"))
            checks = orjson.loads(http.request("GET", gw.url + "/health").data)["checks"]
            return (checks["cache_redis"]["status"] == "degraded" and checks["redis"]["status"] == "ok"
                    and "using the L1 cache" in checks["cache_redis"]["detail"]["reason"])

        wait_until(cache_degraded, timeout=15, interval=0.2, what="/health: only the cache's Redis degraded")
        main.close()
        cache.close()
    finally:
        cache_server.close()

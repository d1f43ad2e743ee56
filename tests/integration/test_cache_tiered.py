"""L1 + L2 against a real redis-server: fills, TTLs, L2 filling L1, counters, and Redis going away."""

from __future__ import annotations

import time

import pytest

from app.cache.entry import CachedAnswer, encode
from app.cache.l1 import L1Cache
from app.cache.l2 import EXPIRY_TAG, L2Cache
from app.cache.tiered import TieredCache
from app.config.settings import Settings
from app.formats.canonical import ChatResponse, TextBlock, Usage
from app.observability import metrics
from app.resilience.redis_guard import RedisGuard, make_redis
from tests.support.processes import RedisServer

pytestmark = pytest.mark.timeout(30)

ANSWER = CachedAnswer(ChatResponse("chatcmpl-1", "gpt-4o-mini-2024", (TextBlock("Paris."),), "end_turn",
                                   usage=Usage(12, 3)), "openai", "gpt-4o-mini")


@pytest.fixture(scope="module")
def server():
    srv = RedisServer().start()
    yield srv
    srv.close()


@pytest.fixture
def guard(server):
    if server.proc is None:
        server.start()
    client = make_redis(Settings.from_env({"REDIS_URL": server.url}))
    client.flushall()
    yield RedisGuard(client)
    client.close()


def tiers(guard: RedisGuard, l2_ttl: int = 3600, l1_ttl: float = 300) -> TieredCache:
    return TieredCache(L1Cache(100, 1 << 20, l1_ttl), L2Cache(guard, l2_ttl))


def count(counter, tier: str) -> float:
    return counter.labels(tier)._value.get()


def test_a_fill_lands_in_both_tiers_and_a_second_worker_finds_it_in_l2(guard):
    first, second = tiers(guard), tiers(guard)  # two workers: own L1, shared Redis
    first.put("k1", ANSWER)
    hits_l1, hits_l2 = count(metrics.CACHE_HITS, "l1"), count(metrics.CACHE_HITS, "l2")
    misses_l1 = count(metrics.CACHE_MISSES, "l1")
    assert first.get("k1") == (ANSWER, "hit-l1")
    assert second.get("k1") == (ANSWER, "hit-l2")
    assert second.get("k1") == (ANSWER, "hit-l1")  # the L2 hit filled its L1
    assert count(metrics.CACHE_HITS, "l1") == hits_l1 + 2 and count(metrics.CACHE_HITS, "l2") == hits_l2 + 1
    assert count(metrics.CACHE_MISSES, "l1") == misses_l1  # one event per lookup: the L2 hit


def test_a_miss_counts_once_at_the_last_tier_asked(guard):
    cache = tiers(guard)
    misses_l1, misses_l2 = count(metrics.CACHE_MISSES, "l1"), count(metrics.CACHE_MISSES, "l2")
    assert cache.get("absent") is None
    assert count(metrics.CACHE_MISSES, "l1") == misses_l1
    assert count(metrics.CACHE_MISSES, "l2") == misses_l2 + 1
    l1_only = TieredCache(L1Cache(10, 1 << 20, 60), None)
    assert l1_only.get("absent") is None
    assert count(metrics.CACHE_MISSES, "l1") == misses_l1 + 1 and count(metrics.CACHE_MISSES, "l2") == misses_l2 + 1


def test_l2_entries_expire_with_their_ttl_and_l1_copies_never_outlive_them(guard):
    cache = tiers(guard)
    cache.put("short", ANSWER, ttl=1)
    assert 0 < guard.client.ttl("short") <= 1
    other = tiers(guard)
    assert other.get("short") == (ANSWER, "hit-l2")
    time.sleep(1.1)
    assert other.get("short") is None  # its L1 copy got the remaining lifetime, under a second
    assert guard.client.get("short") is None


def test_default_l2_ttl_is_the_setting_and_zero_stores_nothing(guard):
    tiers(guard, l2_ttl=3600).put("default", ANSWER)
    assert 3590 < guard.client.ttl("default") <= 3600
    tiers(guard, l2_ttl=0).put("never", ANSWER)
    assert guard.client.exists("never") == 0


def test_an_l2_lookup_is_one_get_and_knows_the_entry_s_remaining_lifetime(guard):
    cache = tiers(guard)
    cache.put("plain", ANSWER, ttl=100)
    l2 = cache.l2
    assert l2 is not None
    before = guard.client.info("commandstats")
    data, seconds = l2.get("plain")
    after = guard.client.info("commandstats")
    grown = {k for k in after if after[k]["calls"] != before.get(k, {}).get("calls")}
    assert grown - {"cmdstat_info"} == {"cmdstat_get"}  # no script, no PTTL: the lifetime comes with the value
    assert data == encode(ANSWER)[0] and 99 < seconds <= 100
    assert l2.get("absent") is None


def test_an_unreadable_l2_value_is_a_miss(guard):
    guard.client.set("garbage", b"\x00not an entry")
    assert tiers(guard).get("garbage") is None
    guard.client.set("cut", EXPIRY_TAG + b"\x00\x01")  # a tag and half an expiry
    assert tiers(guard).get("cut") is None


def test_l2_stores_the_expiry_then_the_compact_bytes(guard):
    started = time.time()
    tiers(guard).put("bytes", ANSWER)
    stored = guard.client.get("bytes")
    assert stored[:1] == EXPIRY_TAG and stored[9:] == encode(ANSWER)[0]
    expires = int.from_bytes(stored[1:9], "big") / 1000
    assert started + 3600 <= expires + 0.001 and expires <= time.time() + 3600  # tiers(): 3600 s


def test_a_value_without_the_expiry_tag_is_a_miss(guard):
    guard.client.set("untagged", encode(ANSWER)[0], ex=40)  # a valid entry, but not an L2 value
    assert tiers(guard).get("untagged") is None


def test_a_writer_clock_ahead_or_behind_only_shortens_or_lengthens_the_l1_copy(guard):
    fast_writer = L2Cache(guard, 60, clock=lambda: time.time() + 30)
    slow_writer = L2Cache(guard, 60, clock=lambda: time.time() - 120)
    fast_writer.put("ahead", encode(ANSWER)[0], 10)
    slow_writer.put("behind", encode(ANSWER)[0], 10)  # already past its expiry on this reader's clock
    reader = tiers(guard)
    assert 39 < reader.l2.get("ahead")[1] <= 40
    assert reader.get("behind") == (ANSWER, "hit-l2")  # Redis still has it: served
    assert reader.l2.get("behind")[1] == 0.0
    assert reader.l1.get("behind") is None  # but not copied into L1: no lifetime left


def test_with_redis_gone_l1_still_serves_and_redis_is_skipped_after_a_few_failures(server, guard):
    cache = tiers(guard)
    cache.put("kept", ANSWER)
    server.stop()
    skipped = metrics.REDIS_ERRORS.labels("cache_get", "skipped")._value.get()
    timings = []
    for i in range(10):
        started = time.perf_counter()
        assert cache.get(f"lost-{i}") is None
        cache.put(f"new-{i}", ANSWER)
        timings.append(time.perf_counter() - started)
    assert cache.get("kept") == (ANSWER, "hit-l1")
    assert guard.open and guard.health().status == "degraded"
    assert "redis unreachable" in guard.health().detail["reason"]
    assert metrics.REDIS_ERRORS.labels("cache_get", "skipped")._value.get() > skipped
    assert max(timings[3:]) < 0.2  # generous: once open, Redis is not even tried
    server.start()
    guard.cooldown = 0.0
    deadline = time.monotonic() + 5
    while guard.open and time.monotonic() < deadline:
        cache.get("probe")
        time.sleep(0.05)
    assert not guard.open and guard.health().status == "ok"
    cache.put("after", ANSWER)
    assert tiers(guard).get("after") == (ANSWER, "hit-l2")


def test_l2_disabled_means_l1_only():
    cache = TieredCache(L1Cache(10, 1 << 20, 60), L2Cache(RedisGuard(None), 60))
    assert cache.l2 is None and cache.enabled
    cache.put("k", ANSWER)
    assert cache.get("k") == (ANSWER, "hit-l1")
    assert cache.get("other") is None
    off = TieredCache(L1Cache(0, 1 << 20, 60), None)
    assert not off.enabled


def test_a_redis_error_is_a_miss_not_a_failure(guard):
    guard.client.rpush("a-list", "x")  # GET on a list: Redis answers WRONGTYPE
    failed = metrics.REDIS_ERRORS.labels("cache_get", "failed")._value.get()
    assert tiers(guard).get("a-list") is None
    assert metrics.REDIS_ERRORS.labels("cache_get", "failed")._value.get() == failed + 1

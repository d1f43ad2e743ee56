"""L2 write-behind against a real redis-server: synchronous when alone, batched when fills overlap,
bounded, and harmless when Redis is gone."""

from __future__ import annotations

import time

import pytest

from app.cache.fill_writer import FillWriter
from app.cache.l2 import L2Cache
from app.config.settings import ConfigError, Settings
from app.factory import make_cache
from app.observability import metrics
from app.resilience.redis_guard import RedisGuard, make_redis

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server(redis_server):
    return redis_server


@pytest.fixture
def client(server):
    c = make_redis(Settings.from_env({"REDIS_URL": server.url}))
    c.flushall()
    yield c
    c.close()


class CountingGuard(RedisGuard):
    """A real guard that remembers how many Redis calls (round trips) went through it."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        super().__init__(client)
        self.calls = 0

    def call(self, operation, fn, fallback):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().call(operation, fn, fallback)


def test_a_lone_fill_is_sent_by_the_request_thread_itself_without_a_writer_thread(client):
    writer = FillWriter(RedisGuard(client))
    assert writer.submit("alone", b"answer", 60)
    assert writer._thread is None and writer._in_flight == 0
    deadline = time.monotonic() + 2  # sent, not waited for: another connection sees it a moment later
    while client.get("alone") is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert client.get("alone") == b"answer" and 55 < client.ttl("alone") <= 60


def test_fills_that_overlap_one_in_flight_are_queued_and_written_in_one_pipeline(client):
    guard = CountingGuard(client)
    writer = FillWriter(guard)
    writer._in_flight = 1  # another request's fill is on its way to Redis
    for n in range(5):
        assert writer.submit(f"queued-{n}", f"v{n}".encode(), 30)
    with writer._lock:
        writer._in_flight -= 1
    assert writer.flush(5)
    assert [client.get(f"queued-{n}") for n in range(5)] == [f"v{n}".encode() for n in range(5)]
    assert all(0 < client.ttl(f"queued-{n}") <= 30 for n in range(5))
    assert guard.calls <= 2  # one pipeline for the five (two if the thread woke after the first)


def test_a_full_queue_drops_fills_and_counts_them(client):
    writer = FillWriter(RedisGuard(client), max_pending=2)
    writer._in_flight = 1
    writer._thread = object()  # type: ignore[assignment]  # no writer thread: the queue only fills
    dropped = metrics.REDIS_ERRORS.labels("cache_set", "dropped")
    before = dropped._value.get()
    assert writer.submit("a", b"1", 10) and writer.submit("b", b"2", 10)
    assert not writer.submit("c", b"3", 10)
    assert dropped._value.get() == before + 1


def test_fills_while_redis_is_down_are_given_up_and_flush_still_returns(server, client):
    guard = RedisGuard(client)
    writer = FillWriter(guard)
    server.stop()
    try:
        writer._in_flight = 1
        writer.submit("lost", b"x", 10)
        with writer._lock:
            writer._in_flight -= 1
        assert writer.flush(5)
        assert writer.submit("lost-too", b"y", 10)  # written in this thread, fails, falls back quietly
        assert guard.last_error is not None
    finally:
        server.start()


def test_l2_cache_uses_the_writer_only_when_asked(client):
    assert L2Cache(RedisGuard(client), 60).writer is None
    behind = L2Cache(RedisGuard(client), 60, write_behind=True)
    assert behind.writer is not None
    assert behind.put("via-l2", b"data") and client.get("via-l2")[9:] == b"data"  # after its expiry
    assert not behind.put("never", b"data", ttl=0) and client.exists("never") == 0
    assert L2Cache(RedisGuard(None), 60, write_behind=True).writer is None  # no Redis, nothing to write


def test_the_setting_defaults_on_and_reaches_the_cache(client):
    assert Settings.from_env({}).l2_write_behind is True
    on = Settings.from_env({"ENABLE_L2_CACHE": "true"})
    assert make_cache(on, RedisGuard(make_redis(on))).tiers.l2.writer is not None
    off = Settings.from_env({"ENABLE_L2_CACHE": "true", "L2_WRITE_BEHIND": "false"})
    assert make_cache(off, RedisGuard(make_redis(off))).tiers.l2.writer is None
    with pytest.raises(ConfigError, match="L2_WRITE_BEHIND"):
        Settings.from_env({"L2_WRITE_BEHIND": "maybe"})

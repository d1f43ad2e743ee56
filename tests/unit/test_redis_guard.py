"""RedisGuard against a real redis-server: fallbacks, the breaker, and what /health says."""

from __future__ import annotations

import redis

from app.redis_guard import RedisGuard
from tests.support.clock import Clock
from tests.support.processes import free_port


def dead_client() -> redis.Redis:
    """Configured as make_redis configures it: no retries, so a dead Redis fails at once."""
    return redis.Redis(port=free_port(), socket_timeout=0.05, socket_connect_timeout=0.05, retry=None)


def test_calls_pass_through_when_redis_answers(redis_server):
    guard = RedisGuard(redis.Redis.from_url(redis_server.url))
    assert guard.call("set", lambda c: c.set("k", "v"), False) is True
    assert guard.call("get", lambda c: c.get("k"), None) == b"v"
    assert guard.health().status == "ok"


def test_idle_guard_health_asks_redis_itself():
    guard = RedisGuard(dead_client())
    check = guard.health()
    assert check.status == "degraded" and "ConnectionError" in check.detail["error"]


def test_breaker_skips_redis_then_probes_after_cooldown(redis_server):
    clock = Clock()
    server_port = redis_server.port
    guard = RedisGuard(redis.Redis(port=server_port, socket_timeout=0.05, socket_connect_timeout=0.05, retry=None),
                       failure_threshold=3, cooldown=5.0, clock=clock)
    redis_server.stop()
    calls = []

    def get(client):
        calls.append(1)
        return client.get("k")

    for _ in range(3):
        assert guard.call("get", get, "fallback") == "fallback"
    assert len(calls) == 3 and guard.open and guard.health().status == "degraded"
    assert guard.call("get", get, "fallback") == "fallback"
    assert len(calls) == 3  # skipped while open: no socket, no wait
    redis_server.start()
    clock.now += 6
    assert guard.call("get", get, "fallback") is None  # the probe reaches Redis and closes the breaker
    assert not guard.open and guard.health().status == "ok"


def test_disabled_guard_is_ok_and_always_falls_back():
    guard = RedisGuard(None)
    assert guard.call("get", lambda c: c.get("k"), "fb") == "fb"
    assert guard.health().status == "ok" and guard.health().detail == {"enabled": False}

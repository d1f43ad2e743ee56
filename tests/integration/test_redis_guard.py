"""RedisGuard against a real redis-server: fallbacks, the breaker, and what /health says."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import redis
from redis.connection import Encoder, PythonRespSerializer

from app.resilience.own_connection import packed
from app.resilience.redis_guard import RedisGuard
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


def own_connections(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def test_commands_share_a_few_connections_made_with_the_clients_settings(redis_server):
    client = redis.Redis.from_url(redis_server.url, client_name="guard-own", db=3)
    guard = RedisGuard(client)
    assert guard.command("set", None, "SET", "k", b"v", "EX", 30) == b"OK"
    assert guard.command("get", None, "GET", "k") == b"v"
    assert client.get("k") == b"v" and 0 < client.ttl("k") <= 30  # same database as the client's
    for i in range(3):  # one after another from three threads: the same idle connection each time
        t = threading.Thread(target=lambda i=i: guard.command("set", None, "SET", f"t{i}", i))
        t.start()
        t.join()
    assert own_connections(client, "guard-own") == 1 + 1  # the guard's one, and the client's pool's


def test_calls_at_the_same_time_get_a_connection_each_and_leave_them_for_the_next(redis_server):
    client = redis.Redis.from_url(redis_server.url, client_name="guard-busy")
    guard = RedisGuard(client)
    started = threading.Barrier(4)

    def slow_call() -> None:
        started.wait()
        guard.command("blpop", None, "BLPOP", "never", 0.2)  # holds its connection for 0.2 s

    threads = [threading.Thread(target=slow_call) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait()
    for t in threads:
        t.join()
    assert len(guard._idle) == 3 and own_connections(client, "guard-busy") == 3 + 1
    for _ in range(10):
        guard.command("ping", None, "PING")
    assert len(guard._idle) == 3  # reused, none added


def test_an_error_reply_is_a_failure_and_the_connection_stays_usable(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    guard = RedisGuard(client)
    client.rpush("a-list", "x")
    assert guard.command("get", "fallback", "GET", "a-list") == "fallback"  # WRONGTYPE
    assert guard.last_error is not None and "WRONGTYPE" in guard.last_error
    assert guard.command("llen", None, "LLEN", "a-list") == 1 and guard.last_error is None


def test_a_script_runs_by_sha_and_is_loaded_again_when_redis_forgot_it(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    guard = RedisGuard(client)
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    client.script_flush()
    assert guard.script("s", None, script, ("key",), ("arg",)) == [b"key", b"arg"]
    assert client.script_exists(script.sha) == [True]
    assert guard.script("s", None, script, ("k2",), (7,)) == [b"k2", b"7"]


def test_a_connection_lost_with_redis_is_made_again_when_redis_is_back(redis_server):
    clock = Clock()
    guard = RedisGuard(redis.Redis(port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                                   retry=None), failure_threshold=1, cooldown=1.0, clock=clock)
    assert guard.command("ping", None, "PING") in (b"PONG", True)
    redis_server.stop()
    assert guard.command("ping", "fallback", "PING") == "fallback" and guard.open
    redis_server.start()
    clock.now += 2
    assert guard.command("set", None, "SET", "back", 1) == b"OK" and not guard.open


def test_sent_commands_are_not_waited_for_and_their_replies_never_answer_a_later_command(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    guard = RedisGuard(client)
    for i in range(20):
        guard.send("cache_set", "SET", f"sent-{i}", i, "EX", 30)
    assert guard.command("get", None, "GET", "sent-7") == b"7"  # the twenty +OK were read first, in order
    assert [client.get(f"sent-{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
    assert all(own.unread == [] for own in guard._idle)


def test_an_error_reply_to_a_sent_command_is_counted_against_it_when_read(redis_server):
    from app.observability import metrics

    client = redis.Redis.from_url(redis_server.url)
    guard = RedisGuard(client)
    failed = metrics.REDIS_ERRORS.labels("cache_set", "failed")
    before = failed._value.get()
    guard.send("cache_set", "SET", "bad", 1, "EX", -5)  # Redis refuses a negative expiry
    assert failed._value.get() == before  # its reply is not read yet
    guard.send("cache_set", "SET", "good", 1, "EX", 30)  # reads it first
    assert failed._value.get() == before + 1
    assert guard.command("get", None, "GET", "good") == b"1" and not guard.open
    assert failed._value.get() == before + 1 and client.exists("bad") == 0


def test_replies_lost_with_the_connection_are_dropped_and_the_next_connection_starts_clean(redis_server):
    clock = Clock()
    guard = RedisGuard(redis.Redis(port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                                   retry=None), failure_threshold=1, cooldown=1.0, clock=clock)
    guard.send("cache_set", "SET", "before", 1)
    redis_server.stop()
    assert guard.command("get", "fallback", "GET", "before") == "fallback" and guard.open
    redis_server.start()
    clock.now += 2
    assert guard.command("set", None, "SET", "after", 2) == b"OK"
    assert guard.command("get", None, "GET", "after") == b"2" and all(own.unread == [] for own in guard._idle)


def test_commands_go_out_in_the_bytes_redis_py_would_send():
    """``packed`` skips redis-py's packer; the wire must not notice (names, keys, values, numbers, UTF-8)."""
    reference = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    for args in [("SET", "llm-edge:cache:k", b"\x00j[1,2]\xff", "EX", 3600),
                 ("EVALSHA", "a" * 40, 1, "key-é", 2.5), ("GET", b"raw key"), ("PING",)]:
        assert packed(args) == b"".join(reference.pack(*args))


def test_an_argument_redis_cannot_take_is_a_data_error_and_the_fallback(redis_server):
    guard = RedisGuard(redis.Redis.from_url(redis_server.url))
    with pytest.raises(redis.DataError):
        packed(("SET", "k", object()))
    assert guard.command("cache_set", "fell back", "SET", "k", object()) == "fell back"
    assert guard.command("cache_set", None, "SET", "k", "v") == b"OK"  # the connection is still fine


def test_a_reply_longer_than_one_receive_is_read_whole_and_the_next_one_after_it(redis_server):
    """Replies come through our own Reader in receives of the buffer's size: a large L2 entry takes many."""
    guard = RedisGuard(redis.Redis.from_url(redis_server.url))
    big = bytes(range(256)) * 4000  # ~1 MB, dozens of receives
    guard.send("cache_set", "SET", "big", big)  # its +OK read before the next command
    assert guard.command("get", None, "GET", "big") == big
    assert guard.command("get", None, "GET", "missing") is None
    assert len(guard._idle) == 1 and len(big) > 10 * len(guard._idle[0].buffer or b"")


def test_own_connections_leave_their_timeout_to_the_kernel_and_a_silent_redis_times_out():
    """A plain socket: blocking, SO_RCVTIMEO/SO_SNDTIMEO set to REDIS_SOCKET_TIMEOUT (no poll before each
    call); a server that accepts and never answers fails the command in about that time, as before."""
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    try:
        client = redis.Redis(port=listener.getsockname()[1], socket_timeout=0.2, socket_connect_timeout=0.5,
                             retry=None)
        guard = RedisGuard(client)
        started = time.monotonic()
        assert guard.command("get", "fallback", "GET", "k") == "fallback"
        took = time.monotonic() - started
        assert 0.15 <= took < 1.0, took
        assert "Timeout reading from socket" in (guard.last_error or "")
    finally:
        listener.close()


def test_a_connected_own_connection_is_blocking_with_kernel_timeouts(redis_server):
    guard = RedisGuard(redis.Redis.from_url(redis_server.url, socket_timeout=0.25))
    assert guard.command("set", None, "SET", "k", "v") == b"OK"
    (own,) = guard._idle
    assert own.sock.gettimeout() is None
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):  # the kernel keeps it in ticks (4 ms at HZ=250)
        sec, usec = struct.unpack("ll", own.sock.getsockopt(socket.SOL_SOCKET, option, 16))
        assert sec == 0 and abs(usec - 250_000) <= 10_000, (option, sec, usec)
    assert guard.command("get", None, "GET", "k") == b"v"

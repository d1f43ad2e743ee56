"""The worker's one Redis client, behind a breaker shared by the cache and the limiter.

A slow or dead Redis must never add more than a few milliseconds to a
request: sockets time out in tens of milliseconds, and after a few
consecutive failures Redis is skipped entirely for a cooldown, after which
one caller probes it. Callers pass a fallback and get it whenever Redis is
skipped or fails, so they degrade (L1 only, local limits) instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from app.health import Check
from app.observability import metrics
from app.resilience.breaker import CLOSED, BreakerPolicy, CircuitBreaker
from app.resilience.own_connection import OwnConnection
from app.resilience.redis_clients import make_redis

__all__ = ["RedisGuard", "make_redis"]

T = TypeVar("T")

# /health pings Redis itself when no call has succeeded for this many seconds.
HEALTH_PING_AFTER = 5.0


def _as_sent(reply: Any) -> Any:
    """Redis's own reply where ``RedisCluster`` made a bool of it (``SET``'s ``+OK``)."""
    return b"OK" if reply is True else reply


def _run_script(own: OwnConnection, script_and_evalsha: tuple[Script, tuple[Any, ...]]) -> Any:
    """A script by its SHA, loaded first if Redis has forgotten it (a restart, a flush)."""
    script, evalsha = script_and_evalsha
    try:
        return own.execute(evalsha)
    except redis.exceptions.NoScriptError:
        own.execute(("SCRIPT", "LOAD", script.script))
        return own.execute(evalsha)


class RedisGuard:
    """The Redis client behind a ``CircuitBreaker`` (the same one providers have, with its own policy)."""

    def __init__(self, client: redis.Redis | RedisCluster | None, *, failure_threshold: int = 3, cooldown: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 serves: str = "using L1 cache and local rate limits") -> None:
        self.client = client
        self.serves = serves  # what the gateway does while this Redis is unreachable, for /health
        self._breaker = CircuitBreaker("redis", BreakerPolicy(failure_threshold=failure_threshold, failure_rate=0.0,
                                                              cooldown=cooldown), clock=clock,
                                       count_successes=False)
        self.last_error: str | None = None
        self._clock = clock
        self._last_ok = float("-inf")
        self._idle: list[OwnConnection] = []  # connections for command(), send() and script(), last used last
        # A cluster's commands go through its client, which picks the node by key slot and follows MOVED/ASK.
        self.cluster = isinstance(client, RedisCluster)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def cooldown(self) -> float:
        return self._breaker.policy.cooldown

    @cooldown.setter
    def cooldown(self, seconds: float) -> None:
        self._breaker.policy = replace(self._breaker.policy, cooldown=seconds)

    @property
    def open(self) -> bool:
        """Skipping Redis: open, or half-open with the probe to be (or being) made."""
        return self._breaker.state != CLOSED

    def call(self, operation: str, fn: Callable[[redis.Redis], T], fallback: T) -> T:
        """``fn(client)``, or ``fallback`` when Redis is disabled, skipped or failing."""
        if self.client is None:
            return fallback
        permit = self._breaker.allow()
        if permit is None:
            metrics.REDIS_ERRORS.labels(operation, "skipped").inc()
            return fallback
        try:
            result = fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._breaker.record(permit, False)
            self._failed(operation, exc)
            return fallback
        except BaseException:
            self._breaker.record(permit, None)
            raise
        self._breaker.record(permit, True)
        self.last_error = None
        self._last_ok = self._clock()
        return result

    def command(self, operation: str, fallback: T, *args: Any) -> Any:
        """One Redis command, through the breaker like ``call``, on one of the guard's own connections.

        Why not the client: redis-py's ``Redis`` checks a connection out of its pool and back in, wraps
        the call in its retry and instrumentation layers and runs response callbacks, about 30 us of
        CPU per command here (half of it); the hot path's commands need none of that. The reply is
        Redis's own (``b"OK"``, not ``True``). A cluster's commands go through ``RedisCluster``, which
        knows which node holds a key's slot.
        """
        if self.cluster:
            return self.call(operation, lambda client: _as_sent(client.execute_command(*args)), fallback)
        return self._on_own(operation, fallback, OwnConnection.execute, args)

    def send(self, operation: str, *args: Any) -> None:
        """A command whose reply nobody waits for (a cache fill): sent now, on one of the guard's own connections.

        Its reply is read before the next command on that connection, when it has long arrived, so
        the request that sent it does not wait a round trip. An error reply is counted
        against ``operation`` then (``llm_edge_redis_errors_total``); a lost connection loses it.
        """
        if self.cluster:  # RedisCluster reads every reply before it returns
            self.call(operation, lambda client: client.execute_command(*args), None)
            return
        self._on_own(operation, None, lambda own, sent: own.send(operation, sent), args)

    def script(self, operation: str, fallback: T, script: Script, keys: Sequence[str],
               args: Sequence[Any] = ()) -> Any:
        """``EVALSHA`` of a registered script, as ``command``; loaded again if Redis forgot it (restart, flush)."""
        if self.cluster:  # redis-py's Script: EVALSHA on the keys' node, SCRIPT LOAD there on NOSCRIPT
            return self.call(operation, lambda client: script(keys=keys, args=args, client=client), fallback)
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        return self._on_own(operation, fallback, _run_script, (script, evalsha))

    def _on_own(self, operation: str, fallback: T, use: Callable[[OwnConnection, Any], T], args: Any) -> T:
        """``use(own, args)`` on one of the guard's own connections, through the breaker as ``call``.

        ``call``'s steps and the choice of a connection in one frame, without closures: every hot-path
        command comes this way (through ``call`` and two closures an EVALSHA cost ~3,400 instructions more).
        Connections: the most recently used idle one, or a new one; as many as calls run at once, not
        one per thread: a worker has hundreds of threads, and connections kept per thread cost Redis a
        client each and this worker ~40 KiB each.
        """
        client = self.client
        if client is None:
            return fallback
        breaker = self._breaker
        permit = breaker.allow()
        if permit is None:
            metrics.REDIS_ERRORS.labels(operation, "skipped").inc()
            return fallback
        idle = self._idle
        own = None
        if idle:
            try:
                own = idle.pop()  # list.pop and append are atomic: no lock needed
            except IndexError:
                pass  # another thread took the last one just now
        if own is None:  # made with the client's settings (address, timeouts, auth, database)
            pool = client.connection_pool
            own = OwnConnection(pool.connection_class(**pool.connection_kwargs), self._failed)
        try:
            result = use(own, args)
        except (redis.RedisError, OSError) as exc:
            breaker.record(permit, False)
            self._failed(operation, exc)
            return fallback
        except BaseException:
            breaker.record(permit, None)
            raise
        finally:
            idle.append(own)
        breaker.record(permit, True)
        self.last_error = None
        self._last_ok = self._clock()
        return result

    def _failed(self, operation: str, exc: Exception) -> None:
        """A failed operation: counted, and kept for /health (an error reply to a sent command, read late, too)."""
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        metrics.REDIS_ERRORS.labels(operation, "failed").inc()

    def health(self) -> Check:
        if self.client is None:
            return Check("ok", {"enabled": False})
        if not self.open and self._clock() - self._last_ok > HEALTH_PING_AFTER:
            # An idle worker knows nothing of Redis yet: ask, once per interval, through the breaker.
            self.call("health_ping", lambda client: client.ping(), None)
        if self.open or self.last_error:
            return Check("degraded", {"enabled": True, "reason": f"redis unreachable; {self.serves}",
                                      "error": self.last_error})
        return Check("ok", {"enabled": True})

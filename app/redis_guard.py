"""The worker's one Redis client, behind a breaker shared by the cache and the limiter.

A slow or dead Redis must never add more than a few milliseconds to a
request: sockets time out in tens of milliseconds, and after a few
consecutive failures Redis is skipped entirely for a cooldown, after which
one caller probes it. Callers pass a fallback and get it whenever Redis is
skipped or fails, so they degrade (L1 only, local limits) instead of failing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from app.observability import metrics
from app.resources.health import Check
from app.settings import Settings

T = TypeVar("T")


def make_redis(settings: Settings) -> redis.Redis:
    """A client whose pool holds a connection per worker thread and never blocks long."""
    return redis.Redis.from_url(
        settings.redis_url,
        max_connections=max(10, settings.gunicorn_threads + 2),
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=30,
        retry=None,
    )


class RedisGuard:
    def __init__(self, client: redis.Redis | None, *, failure_threshold: int = 3, cooldown: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def _allow(self) -> bool:
        """Closed: yes. Open: no, until the cooldown ends; then exactly one probe at a time."""
        with self._lock:
            if self._failures < self.failure_threshold:
                return True
            if self._clock() < self._open_until or self._probing:
                return False
            self._probing = True
            return True

    def _succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._probing = False
            self.last_error = None

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if self._failures >= self.failure_threshold:
                self._open_until = self._clock() + self.cooldown

    @property
    def open(self) -> bool:
        with self._lock:
            return self._failures >= self.failure_threshold

    def call(self, operation: str, fn: Callable[[redis.Redis], T], fallback: T) -> T:
        """``fn(client)``, or ``fallback`` when Redis is disabled, skipped or failing."""
        if self.client is None:
            return fallback
        if not self._allow():
            metrics.REDIS_ERRORS.labels(operation, "skipped").inc()
            return fallback
        try:
            result = fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            metrics.REDIS_ERRORS.labels(operation, "failed").inc()
            return fallback
        self._succeeded()
        return result

    def health(self) -> Check:
        if self.client is None:
            return Check("ok", {"enabled": False})
        if self.open:
            return Check("degraded", {"enabled": True, "reason": "redis unreachable; using L1 cache and "
                                      "local rate limits", "error": self.last_error})
        return Check("ok", {"enabled": True})

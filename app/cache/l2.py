"""L2: answers shared by every worker and replica through Redis.

Exactly one Redis round trip per operation: a lookup pipelines ``GET`` and
``PTTL`` (so an L2 hit fills L1 for no longer than the entry has left), a
fill is one ``SET ... EX``, or with ``write_behind`` a queued ``SET`` that a
background thread pipelines with other fills (``app/cache/fill_writer.py``). Every call goes through the worker's
``RedisGuard``: a slow or dead Redis costs at most one short socket timeout
per call until the breaker opens, and then nothing at all; lookups then miss
and fills are dropped.
"""

from __future__ import annotations

from app.cache.fill_writer import FillWriter
from app.redis_guard import RedisGuard


class L2Cache:
    def __init__(self, guard: RedisGuard, ttl: int, *, write_behind: bool = False) -> None:
        self.guard = guard
        self.ttl = ttl
        self.writer = FillWriter(guard) if write_behind and guard.enabled else None

    @property
    def enabled(self) -> bool:
        return self.guard.enabled

    def get(self, key: str) -> tuple[bytes, float] | None:
        """The stored bytes and their remaining lifetime in seconds, or ``None``."""
        def lookup(client) -> tuple[bytes, float] | None:  # type: ignore[no-untyped-def]
            pipe = client.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            data, pttl = pipe.execute()
            if data is None:
                return None
            return data, (pttl / 1000.0 if pttl > 0 else float(self.ttl))

        return self.guard.call("cache_get", lookup, None)

    def put(self, key: str, data: bytes, ttl: int | None = None) -> bool:
        """Store for ``ttl`` seconds (``L2_TTL_SECONDS`` when not given); ``False`` if skipped or failed.

        Written behind, ``True`` means queued: the write itself is counted in the Redis metrics.
        """
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            return False
        if self.writer is not None:
            return self.writer.submit(key, data, seconds)
        return self.guard.call("cache_set", lambda client: bool(client.set(key, data, ex=seconds)), False)

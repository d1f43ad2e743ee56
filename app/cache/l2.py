"""L2: answers shared by every worker and replica through Redis.

Exactly one Redis round trip per operation, on one of the guard's own
connections (``RedisGuard.script`` / ``command``): a lookup is one small Lua script
that returns ``GET`` and ``PTTL`` together (so an L2 hit fills L1 for no
longer than the entry has left; one ``EVALSHA`` costs less than a
two-command pipeline), a fill is one ``SET ... EX``, or with ``write_behind`` a queued ``SET`` that a
background thread pipelines with other fills (``app/cache/fill_writer.py``). Every call goes through the worker's
``RedisGuard``: a slow or dead Redis costs at most one short socket timeout
per call until the breaker opens, and then nothing at all; lookups then miss
and fills are dropped.
"""

from __future__ import annotations

from app.cache.fill_writer import FillWriter
from app.redis_guard import RedisGuard

LOOKUP_SCRIPT = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"


class L2Cache:
    def __init__(self, guard: RedisGuard, ttl: int, *, write_behind: bool = False) -> None:
        self.guard = guard
        self.ttl = ttl
        self.writer = FillWriter(guard) if write_behind and guard.enabled else None
        # Called by SHA; redis-py loads it again on NOSCRIPT (a restarted or flushed Redis).
        self._lookup = guard.client.register_script(LOOKUP_SCRIPT) if guard.client is not None else None

    @property
    def enabled(self) -> bool:
        return self.guard.enabled

    def get(self, key: str) -> tuple[bytes, float] | None:
        """The stored bytes and their remaining lifetime in seconds, or ``None``."""
        script = self._lookup
        if script is None:
            return None
        reply = self.guard.script("cache_get", None, script, (key,))
        if reply is None or reply[0] is None:
            return None
        data, pttl = reply
        return data, (pttl / 1000.0 if pttl > 0 else float(self.ttl))

    def put(self, key: str, data: bytes, ttl: int | None = None) -> bool:
        """Store for ``ttl`` seconds (``L2_TTL_SECONDS`` when not given); ``False`` if skipped or failed.

        Written behind, ``True`` means queued: the write itself is counted in the Redis metrics.
        """
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            return False
        if self.writer is not None:
            return self.writer.submit(key, data, seconds)
        return self.guard.command("cache_set", None, "SET", key, data, "EX", seconds) == b"OK"

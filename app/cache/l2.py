"""L2: answers shared by every worker and replica through Redis.

Exactly one Redis round trip per operation, on one of the guard's own
connections (``RedisGuard.command``): a lookup is one ``GET``, a fill is one
``SET ... EX``, or with ``write_behind`` a queued ``SET`` that a background
thread pipelines with other fills (``app/cache/fill_writer.py``).

Each stored value starts with the entry's expiry time (``EXPIRY_TAG``, then
Unix milliseconds, 8 bytes big-endian), then the entry's bytes
(``app/cache/entry.py``), so an L2 hit fills L1 for no longer than the entry
has left without asking Redis for its ``PTTL``: a miss at c=1 took ~30 µs
less with a plain ``GET`` than with the Lua script that returned both (paired
runs, when it was made); Redis's time is on the request's critical path.
The expiry is the writer's clock; with clocks in step (NTP) an L1 copy can
outlive its L2 entry by the skew at most, and never by more than
``L1_TTL_SECONDS``. A value without the tag is unreadable, a miss (the layout
came with key version ``v2``: ``app/cache/keys.py``).

Every call goes through the worker's ``RedisGuard``: a slow or dead Redis
costs at most one short socket timeout per call until the breaker opens, and
then nothing at all; lookups then miss and fills are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.cache.fill_writer import FillWriter
from app.resilience.redis_guard import RedisGuard

EXPIRY_TAG = b"x"  # not a first byte of any entry (app/cache/entry.py uses "j" and "z")
_HEADER = len(EXPIRY_TAG) + 8


def stored_value(data: bytes, seconds: float, now: float) -> bytes:
    """What Redis keeps for ``data`` living ``seconds`` from ``now``: the expiry, then the entry."""
    return EXPIRY_TAG + int((now + seconds) * 1000).to_bytes(8, "big") + data


class L2Cache:
    def __init__(self, guard: RedisGuard, ttl: int, *, write_behind: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.ttl = ttl
        self.writer = FillWriter(guard) if write_behind and guard.enabled else None
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self.guard.enabled

    def get(self, key: str) -> tuple[bytes, float] | None:
        """The stored entry's bytes and their remaining lifetime in seconds, or ``None``."""
        stored = self.guard.command("cache_get", None, "GET", key)
        if stored is None:
            return None
        if stored[:1] != EXPIRY_TAG or len(stored) <= _HEADER:
            return None  # not ours, or cut short: a miss, never an error
        expires = int.from_bytes(stored[1:_HEADER], "big") / 1000.0
        return stored[_HEADER:], max(0.0, expires - self._clock())

    def put(self, key: str, data: bytes, ttl: int | None = None) -> bool:
        """Store for ``ttl`` seconds (``L2_TTL_SECONDS`` when not given); ``False`` if skipped or failed.

        Written behind, ``True`` means queued: the write itself is counted in the Redis metrics.
        """
        seconds = self.ttl if ttl is None else ttl
        if seconds <= 0:
            return False
        value = stored_value(data, seconds, self._clock())
        if self.writer is not None:
            return self.writer.submit(key, value, seconds)
        return self.guard.command("cache_set", None, "SET", key, value, "EX", seconds) == b"OK"

"""L1: this worker's in-memory LRU of answers, bounded by entries, bytes and time.

``lru-dict`` gives an O(1) C LRU; one lock around it makes it safe under
gthread's threads (and keeps the byte count exact, which lru-dict's eviction
callback alone cannot: it is not called on overwrite or delete). The byte
budget stops a few huge answers from eating the worker's memory: no single
entry may take more than a quarter of it, and inserts evict the least
recently used entries until the total fits. Entries expire lazily, on read.

Built after fork (in ``create_gateway``): lru-dict knows nothing about fork.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from lru import LRU

V = TypeVar("V")


class L1Cache(Generic[V]):
    def __init__(self, max_entries: int, max_bytes: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 4
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._bytes = 0
        # Fixed at construction (an attribute, not a property: every lookup asks).
        self.enabled = max_entries > 0 and max_bytes > 0 and ttl > 0
        self._lru: LRU | None = LRU(max_entries, callback=self._evicted) if self.enabled else None

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return 0 if self._lru is None else len(self._lru)

    def _evicted(self, key: Hashable, item: tuple[float, int, V]) -> None:
        self._bytes -= item[1]  # called by lru-dict inside __setitem__, so under our lock

    def get(self, key: Hashable) -> V | None:
        if self._lru is None:
            return None
        with self._lock:
            item = self._lru.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._lru[key]
                self._bytes -= item[1]
                return None
            return item[2]

    def put(self, key: Hashable, value: V, size: int, ttl: float | None = None) -> bool:
        """Store for ``min(ttl, L1_TTL_SECONDS)``; ``False`` if it is too big or not worth keeping."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if self._lru is None or lifetime <= 0 or size > self.max_entry_bytes:
            return False
        with self._lock:
            old = self._lru.get(key)
            if old is not None:
                self._bytes -= old[1]
            self._lru[key] = (self._clock() + lifetime, size, value)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._lru.popitem(least_recent=True)
                self._bytes -= evicted[1]
        return True

    def clear(self) -> None:
        if self._lru is not None:
            with self._lock:
                self._lru.clear()
                self._bytes = 0

"""L1: this worker's in-memory LRU of answers, bounded by entries, bytes and time.

``lru-dict`` gives an O(1) C LRU. Reads take no lock: a read is one call
into lru-dict, whole under the GIL (keys are str or bytes, hashed and
compared in C) as long as lru-dict never calls back into Python, so the LRU
never evicts on its own: ``put`` makes room itself, under a lock writers
share (which keeps the byte count exact too). Only a read that finds an
expired entry takes the lock, to remove it. A lock taken and given back
costs ~2,000 instructions, and an L1 hit reads twice (the parsed body, the
answer). The byte budget stops a few huge answers from eating the worker's
memory: no single entry may take more than a quarter of it, and inserts
evict the least recently used entries until the total fits. Entries expire
lazily, on read.

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
        # No eviction callback, and never over ``max_entries`` (put evicts first): lru-dict never runs Python code.
        self._lru: LRU | None = LRU(max_entries) if self.enabled else None

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return 0 if self._lru is None else len(self._lru)

    def get(self, key: Hashable) -> V | None:
        lru = self._lru
        if lru is None:
            return None
        item = lru.get(key)  # one C call, whole under the GIL: no lock (the module docstring says why)
        if item is None:
            return None
        if item[0] > self._clock():
            return item[2]
        with self._lock:
            if lru.get(key) is item:  # still the expired entry, not one put since
                del lru[key]
                self._bytes -= item[1]
        return None

    def put(self, key: Hashable, value: V, size: int, ttl: float | None = None) -> bool:
        """Store for ``min(ttl, L1_TTL_SECONDS)``; ``False`` if it is too big or not worth keeping."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if self._lru is None or lifetime <= 0 or size > self.max_entry_bytes:
            return False
        with self._lock:
            lru = self._lru
            old = lru.get(key)
            if old is not None:
                self._bytes -= old[1]
            elif len(lru) >= self.max_entries:  # room made here: lru-dict's own eviction would call back
                self._bytes -= _evict_oldest(lru)
            lru[key] = (self._clock() + lifetime, size, value)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= _evict_oldest(lru)
        return True

    def clear(self) -> None:
        if self._lru is not None:
            with self._lock:
                self._lru.clear()
                self._bytes = 0


def _evict_oldest(lru: LRU) -> int:
    """Drop the least recently used entry; its size. Not ``popitem``: lru-dict 1.4.1's keeps a reference to
    the value it returns, so every answer evicted that way stayed in memory (~3 KB per eviction: 313 MiB
    after 100,000 puts into a 1,000-entry cache, tests/unit/test_cache_l1.py)."""
    key, item = lru.peek_last_item()
    del lru[key]
    return int(item[1])

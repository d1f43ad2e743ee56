"""L1 in front of L2: look up in order, fill both, count hits and misses per tier.

Counting: every lookup records exactly one event, so hits + misses = lookups
and the hit rate is plainly ``sum(hits) / (sum(hits) + sum(misses))`` (the
shipped ``llm_edge_cache_hit_rate`` rule): ``hit{l1}``, ``hit{l2}``,
``miss{l2}`` (missed both tiers; a skipped or failed Redis counts as an L2
miss), or ``miss{l1}`` (missed L1 and L2 was not asked: L2 disabled, or the
request followed an identical one in flight).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from app.cache.entry import CachedAnswer, decode, pack, serialize
from app.cache.l1 import L1Cache
from app.cache.l2 import L2Cache
from app.context import Step
from app.observability import metrics

_L1_HITS = metrics.counter_step(metrics.CACHE_HITS, "l1")
_L1_MISSES = metrics.counter_step(metrics.CACHE_MISSES, "l1")
_L2_HITS = metrics.counter_step(metrics.CACHE_HITS, "l2")
_L2_MISSES = metrics.counter_step(metrics.CACHE_MISSES, "l2")


class TieredCache:
    def __init__(self, l1: L1Cache[CachedAnswer], l2: L2Cache | None) -> None:
        self.l1 = l1
        self.l2 = l2 if l2 is not None and l2.enabled else None
        self.enabled = self.l1.enabled or self.l2 is not None  # fixed at construction; every lookup asks

    def get_l1(self, key: str) -> CachedAnswer | None:
        if not self.l1.enabled:
            return None
        found = self.l1.get(key)
        if found is not None:
            _L1_HITS()
        elif self.l2 is None:
            _L1_MISSES()  # the last tier asked; with L2, get_l2 records this lookup's outcome
        return found

    def missed_l1_only(self) -> None:
        """Record a lookup that missed L1 and will not ask L2 (it follows a request in flight)."""
        if self.l2 is not None:
            _L1_MISSES()

    def peek_l1(self, key: str) -> CachedAnswer | None:
        """L1 without counting: a second look by the same request."""
        return self.l1.get(key)

    def get_l2(self, key: str) -> CachedAnswer | None:
        """The L2 entry, copied into L1 for no longer than it has left in Redis."""
        if self.l2 is None:
            return None
        stored = self.l2.get(key)
        entry = decode(stored[0]) if stored is not None else None
        if stored is None or entry is None:
            _L2_MISSES()
            return None
        _L2_HITS()
        answer, size = entry
        self.l1.put(key, answer, size, ttl=stored[1])
        return answer

    def get(self, key: str) -> tuple[CachedAnswer, str] | None:
        """The answer and the tier that had it (``hit-l1`` / ``hit-l2``), or ``None``."""
        answer = self.get_l1(key)
        if answer is not None:
            return answer, "hit-l1"
        answer = self.get_l2(key)
        return (answer, "hit-l2") if answer is not None else None

    def put(self, key: str, answer: CachedAnswer, ttl: int | None = None, *,
            later: Callable[[Step], None] | None = None) -> None:
        """Store in both tiers: L1 for at most ``L1_TTL_SECONDS``, L2 for ``ttl`` or ``L2_TTL_SECONDS``.

        L1 at once (this worker's next identical request must find it); L2 through ``later`` when
        given, which sends the fill once the response is out (``app/http/app.py``). The L2 bytes are
        made there too: joining and compressing a big answer (100 float embeddings, 3 MB) takes tens of
        milliseconds the client need not wait for.
        """
        head, raw = serialize(answer)
        size = len(head) if raw is None else len(head) + 1 + len(raw)
        self.l1.put(key, answer, size, ttl=ttl)
        if self.l2 is not None:
            if later is None:
                self._fill(key, head, raw, ttl)
            else:
                later(partial(self._fill, key, head, raw, ttl))

    def _fill(self, key: str, head: bytes, raw: bytes | None, ttl: int | None) -> None:
        assert self.l2 is not None
        self.l2.put(key, pack(head if raw is None else head + b"\n" + raw), ttl)

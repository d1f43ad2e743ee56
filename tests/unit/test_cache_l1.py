"""L1: entry count, byte budget, TTL, exact byte accounting, and many threads at once."""

from __future__ import annotations

import random
import threading
import weakref

import pytest

from app.cache.l1 import L1Cache
from tests.support.clock import Clock

pytestmark = pytest.mark.timeout(30)


def test_least_recently_used_entry_goes_first():
    l1 = L1Cache(max_entries=2, max_bytes=1000, ttl=60)
    l1.put("a", "A", 10)
    l1.put("b", "B", 10)
    assert l1.get("a") == "A"  # a is now the most recent
    l1.put("c", "C", 10)
    assert (l1.get("a"), l1.get("b"), l1.get("c")) == ("A", None, "C")
    assert l1.bytes_used == 20 and len(l1) == 2


def test_byte_budget_evicts_until_the_total_fits():
    l1 = L1Cache(max_entries=100, max_bytes=400, ttl=60)
    for key in "abcd":
        assert l1.put(key, key, 100)
    assert l1.bytes_used == 400
    l1.put("e", "e", 100)
    assert l1.get("a") is None and l1.get("e") == "e"
    assert l1.bytes_used == 400 and len(l1) == 4


def test_an_entry_over_a_quarter_of_the_budget_is_not_kept():
    l1 = L1Cache(max_entries=100, max_bytes=400, ttl=60)
    l1.put("small", "s", 100)
    assert not l1.put("huge", "h", 101)
    assert l1.get("huge") is None and l1.get("small") == "s"


def test_overwrite_and_expiry_keep_the_byte_count_exact():
    clock = Clock()
    l1 = L1Cache(max_entries=10, max_bytes=10_000, ttl=60, clock=clock)
    l1.put("a", "old", 100)
    l1.put("a", "new", 30)
    assert l1.bytes_used == 30 and l1.get("a") == "new"
    clock.now += 59.9
    assert l1.get("a") == "new"
    clock.now += 0.2
    assert l1.get("a") is None and l1.bytes_used == 0 and len(l1) == 0


def test_ttl_is_the_shorter_of_the_request_and_the_setting():
    clock = Clock()
    l1 = L1Cache(max_entries=10, max_bytes=10_000, ttl=60, clock=clock)
    l1.put("short", 1, 1, ttl=5)
    l1.put("long", 2, 1, ttl=3600)
    clock.now += 6
    assert l1.get("short") is None and l1.get("long") == 2
    clock.now += 60
    assert l1.get("long") is None
    assert not l1.put("zero", 3, 1, ttl=0)


@pytest.mark.parametrize("entries,max_bytes,ttl", [(0, 100, 60), (10, 0, 60), (10, 100, 0)])
def test_a_zero_setting_turns_l1_off(entries, max_bytes, ttl):
    l1 = L1Cache(max_entries=entries, max_bytes=max_bytes, ttl=ttl)
    assert not l1.enabled
    assert not l1.put("a", 1, 1)
    assert l1.get("a") is None and len(l1) == 0


def test_many_threads_never_break_the_accounting():
    l1 = L1Cache(max_entries=50, max_bytes=4000, ttl=60)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(3000):
                key = f"k{rnd.randrange(200)}"
                if rnd.random() < 0.5:
                    l1.put(key, key, rnd.randrange(1, 200))
                else:
                    value = l1.get(key)
                    assert value is None or value == key
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(l1) <= 50 and 0 < l1.bytes_used <= 4000
    sizes = sum(item[1] for item in l1._lru.values())
    assert sizes == l1.bytes_used
    l1.clear()
    assert l1.bytes_used == 0 and len(l1) == 0


class _Answer:
    """A cached value that can be watched (bytes cannot take a weak reference)."""


@pytest.mark.parametrize("by", ["entries", "bytes"])
def test_an_evicted_answer_is_freed(by):
    """lru-dict 1.4.1's popitem keeps a reference to the value it hands back: evicting with it kept every
    answer ever cached in memory. Evicted by the entry count or by the byte budget, an answer must go."""
    cache: L1Cache[_Answer] = L1Cache(4 if by == "entries" else 1000, 400 if by == "bytes" else 10**9, ttl=60)
    first = _Answer()
    gone = weakref.ref(first)
    cache.put("first", first, 100)
    del first
    for i in range(10):
        cache.put(f"k{i}", _Answer(), 100)
    assert cache.get("first") is None and len(cache) == 4 and cache.bytes_used == 400
    assert gone() is None, "the evicted answer is still referenced"

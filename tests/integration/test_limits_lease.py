"""Leased admissions for fast clients, against a real redis-server: fewer round trips, limits still held."""

from __future__ import annotations

import threading
import time

import pytest

from app.limits.decision import REQUESTS, TOKENS, Decision
from app.limits.lease import Lease
from app.limits.policy import parse_policy
from app.limits.ratelimit import lease_cap
from tests.integration.test_limits_redis import make
from tests.support.clock import Clock

pytestmark = pytest.mark.timeout(30)

POLICY = parse_policy({"rate_limiting": {
    "global": {"requests_per_second": 100_000},
    "per_client": {"tier_slow": 10, "tier_fast": 400,
                   "tier_small": {"requests_per_second": 100, "burst": 5},
                   "tier_refill": {"requests_per_second": 100, "burst": 100},
                   "tier_tok": {"requests_per_second": 1000, "tokens_per_minute": 600}}}})


def evalsha_calls(r) -> int:
    return r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_the_cap_is_the_window_of_the_tier_or_global_rate():
    assert lease_cap(POLICY, POLICY.tier("slow"), 0.05) == 1, "10 requests/s: checked one by one"
    assert lease_cap(POLICY, POLICY.tier("fast"), 0.05) == 20
    assert lease_cap(POLICY, POLICY.tier("fast"), 0.0) == 1, "RATE_LIMIT_LEASE_MS=0 turns leases off"
    tight = parse_policy({"rate_limiting": {"global": {"requests_per_second": 100},
                                            "per_client": {"tier_fast": 10_000}}})
    assert lease_cap(tight, tight.tier("fast"), 0.05) == 5, "the global limit bounds a lease too"


STATE = Decision(allowed=True, refused_by=None, limit=100, remaining=50, reset=0.5, retry_after=0.0)


def test_batches_grow_while_spent_and_shrink_to_what_was_used():
    lease, cap = Lease(), 16
    assert lease.renewal(cap) == (1, 0), "a new client starts with the exact check"
    sizes = []
    for _ in range(6):
        asked, refund = lease.renewal(cap)
        sizes.append(asked)
        assert refund == 0
        lease.grant(asked, asked, STATE, now=0.0, window=1.0)
        while lease.take(0.5):
            pass
    assert sizes == [1, 2, 4, 8, 16, 16]
    lease.grant(16, 16, STATE, now=0.0, window=1.0)
    for _ in range(3):
        assert lease.take(0.1)
    d = lease.decision(0.1)
    assert (d.remaining, round(d.reset, 3)) == (50 + 12, 0.4), "the batch's unused part counts as remaining"
    assert not lease.take(1.0), "expired"
    assert lease.renewal(cap) == (4, 12), "asks for what it used (3 + the one taken at grant), hands back 12"


def test_a_fast_client_costs_a_round_trip_per_batch_not_per_request(redis_server):
    lim, r = make(redis_server, POLICY, lease_window=0.05)
    tier = POLICY.tier("fast")
    before = evalsha_calls(r)
    decisions = [lim.check("acme", tier) for _ in range(200)]
    calls = evalsha_calls(r) - before
    assert all(d.allowed and d.shared for d in decisions)
    assert calls <= 40, f"{calls} round trips for 200 requests"
    remaining = [d.remaining for d in decisions]
    assert remaining[0] == 399 and 180 <= remaining[-1] <= 230, remaining[-1]


def test_a_slow_tier_is_still_checked_request_by_request(redis_server):
    lim, r = make(redis_server, POLICY, lease_window=0.05)
    before = evalsha_calls(r)
    decisions = [lim.check("acme", POLICY.tier("slow")) for _ in range(11)]
    assert evalsha_calls(r) - before == 11
    assert [d.allowed for d in decisions] == [True] * 10 + [False]


def test_the_burst_edge_is_exact_with_leases(redis_server):
    """Batches of 1, 2, then 4 asked with 2 left: Redis grants 2, then refuses."""
    lim, _ = make(redis_server, POLICY, lease_window=0.5)
    decisions = [lim.check("acme", POLICY.tier("small")) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[-1].refused_by == REQUESTS and decisions[-1].retry_after > 0


def test_workers_leasing_together_never_exceed_the_limit(redis_server):
    tier = POLICY.tier("refill")  # 100/s, burst 100; window 0.2 s: batches of up to 20
    workers = [make(redis_server, POLICY, lease_window=0.2)[0] for _ in range(3)]
    started = time.monotonic()
    admitted = 0
    while time.monotonic() - started < 1.5:
        for lim in workers:
            admitted += lim.check("acme", tier).allowed
    elapsed = time.monotonic() - started
    most = 100 + 100 * elapsed
    assert admitted <= most + 1, (admitted, most)
    # What can be missing: the batches the three workers still hold (at most 20 each).
    assert admitted >= most - 3 * 20 - 5, (admitted, most)


def test_an_expired_batch_is_handed_back_to_the_other_workers(redis_server):
    clock = Clock()
    lim, _ = make(redis_server, POLICY, lease_window=0.5, clock=clock)
    other, _ = make(redis_server, POLICY)  # no leases: it sees the shared count exactly
    tier = POLICY.tier("refill")  # cap 50
    for _ in range(32):  # batches 1, 2, 4, 8, 16 spent, then 32 leased with 31 unused
        assert lim.check("acme", tier).allowed
    held = other.check("acme", tier).remaining
    assert held <= 100 - 63 - 1 + 2, held  # 63 leased, 1 by `other` (plus a little refill)
    clock.now += 1.0  # the batch expires unused
    assert lim.check("acme", tier).allowed  # the renewal hands 31 back and asks for 1
    after = other.check("acme", tier).remaining
    assert after >= held + 31 - 1 - 1, (held, after)


def test_a_spent_token_allowance_ends_the_batch(redis_server):
    lim, _ = make(redis_server, POLICY, lease_window=0.5)
    tier = POLICY.tier("tok")
    for _ in range(4):
        first = lim.check("acme", tier)
    assert first.allowed and first.token_remaining == 600
    lim.debit_tokens("acme", tier, 250)
    d = lim.check("acme", tier)
    assert d.allowed and d.token_remaining == 350 and 24.9 < d.token_reset <= 25.0
    lim.debit_tokens("acme", tier, 400)
    refused = lim.check("acme", tier)
    assert not refused.allowed and refused.refused_by == TOKENS


def test_redis_gone_mid_batch_falls_back_to_local_limits(redis_server):
    lim, _ = make(redis_server, POLICY, parts=4, cooldown=5.0, lease_window=0.05)
    tier = POLICY.tier("fast")
    for _ in range(10):
        assert lim.check("acme", tier).shared
    redis_server.stop()
    time.sleep(0.06)  # the batch expires; its renewal finds Redis gone
    decisions = [lim.check("acme", tier) for _ in range(5)]
    assert all(d.allowed for d in decisions) and not decisions[-1].shared
    assert decisions[-1].limit == 100, "the worker's quarter of the 400 burst"


def test_threads_taking_from_one_batch_without_a_lock_never_exceed_the_limit(redis_server):
    """Admissions are taken lock-free; renewals hand back what is left. Together: never above the limit."""
    lim, _ = make(redis_server, POLICY, lease_window=0.2)
    tier = POLICY.tier("refill")  # 100/s, burst 100: batches of up to 20
    admitted = [0] * 8
    started = time.monotonic()

    def run(n: int) -> None:
        while time.monotonic() - started < 1.0:
            admitted[n] += lim.check("acme", tier).allowed

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    most = 100 + 100 * elapsed
    assert most - 20 - 5 <= sum(admitted) <= most + 1, (sum(admitted), most)


def test_a_renewal_holds_no_lock_across_its_redis_check_and_waiters_share_its_batch(redis_server):
    """While one thread's renewal waits for Redis, the lease's lock is free (a token debit goes through),
    and threads arriving meanwhile wait for that renewal's batch instead of each asking Redis."""
    lim, r = make(redis_server, POLICY, lease_window=1.0)
    tier = POLICY.tier("fast")
    assert lim.check("acme", tier).allowed  # the first batch (of 1): the next check renews, asking for 2
    in_check = threading.Event()
    slow_check = lim._run_check

    def held_check(*args):  # type: ignore[no-untyped-def]
        in_check.set()
        time.sleep(0.3)
        return slow_check(*args)

    lim._run_check = held_check
    before = evalsha_calls(r)
    decisions = []
    renewer = threading.Thread(target=lambda: decisions.append(lim.check("acme", tier)))
    renewer.start()
    assert in_check.wait(5)
    lease = lim._leases["acme"]
    assert lease.lock.acquire(timeout=0.1), "the lease's lock was held across the Redis check"
    lease.lock.release()
    waiter = threading.Thread(target=lambda: decisions.append(lim.check("acme", tier)))
    waiter.start()
    renewer.join()
    waiter.join()
    assert [d.allowed for d in decisions] == [True, True]
    assert evalsha_calls(r) - before == 1, "the waiter took from the renewal's batch"

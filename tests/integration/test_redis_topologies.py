"""Every Redis use of the gateway on a real Redis Cluster and behind real Sentinels, and what a failover costs.

The cluster has three primaries with a replica each (``cluster-node-timeout``
1 s), the Sentinel group a primary, a replica and three Sentinels (quorum 2,
``down-after-milliseconds`` 1 s): tests/support/redis_topologies.py. References:
https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/ (hash tags,
MOVED/ASK, CROSSSLOT) and https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from redis.cluster import RedisCluster

from app.accounting.spend import SpendLedger
from app.cache.keys import KEY_PREFIX
from app.cache.l2 import L2Cache
from app.config.settings import Settings
from app.limits.budgets import BudgetReservations
from app.limits.policy import parse_policy
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard, make_redis
from tests.support.redis_topologies import ClusterProcesses, SentinelProcesses

pytestmark = pytest.mark.timeout(120)

POLICY = parse_policy({"rate_limiting": {"global": {"requests_per_second": 1000},
                                         "per_client": {"tier_t": 5}}})
# The most a single guarded call may take while a node is dead: one connect (or read) timeout, then, on a
# cluster, one slot-map refresh from a live node (another connect at most), and scheduling on a loaded machine.
CALL_BUDGET = 0.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcesses]:
    processes = ClusterProcesses(primaries=3, replicas=1).start()
    yield processes
    processes.close()


@pytest.fixture
def sentinels() -> Iterator[SentinelProcesses]:
    processes = SentinelProcesses().start()
    yield processes
    processes.close()


def guard_for(url: str, cooldown: float = 5.0) -> RedisGuard:
    return RedisGuard(make_redis(Settings.from_env({"REDIS_URL": url})), cooldown=cooldown)


def test_urls_select_the_client(cluster):
    assert isinstance(guard_for(cluster.url).client, RedisCluster) and guard_for(cluster.url).cluster


def test_l2_entries_spread_over_every_primary_and_read_back(cluster):
    guard = guard_for(cluster.url)
    l2 = L2Cache(guard, ttl=60)
    keys = [f"{KEY_PREFIX}client:acme:{i:064x}" for i in range(60)]
    for i, key in enumerate(keys):
        assert l2.put(key, f"entry {i}".encode())
    assert [l2.get(key)[0] for key in keys] == [f"entry {i}".encode() for i in range(60)]  # type: ignore[index]
    owners = {cluster.primary_of(key).port for key in keys}
    assert owners == cluster.primary_ports(), "cache keys carry no hash tag: every shard holds some"
    assert guard.last_error is None


def test_write_behind_batches_cross_slots_in_one_call(cluster):
    """The fill writer pipelines SETs of many slots: RedisCluster splits the pipeline per node."""
    guard = guard_for(cluster.url)
    l2 = L2Cache(guard, ttl=60, write_behind=True)
    assert l2.writer is not None
    keys = [f"{KEY_PREFIX}client:batch:{i:064x}" for i in range(40)]
    for key in keys:
        assert l2.put(key, b"batched")
    assert l2.writer.flush(5)
    assert all(l2.get(key) is not None for key in keys) and guard.last_error is None


def test_the_limiter_scripts_run_on_the_shard_of_their_hash_tag(cluster):
    guard = guard_for(cluster.url)
    limiter = RateLimiter(POLICY, guard, local_parts=2)
    limiter.load_scripts()
    tier = POLICY.tier("t")
    decisions = [limiter.check("cluster-client", tier) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert all(d.shared for d in decisions), "counted in Redis, not locally"
    assert len({cluster.primary_of(k).port for k in limiter.keys("cluster-client")}) == 1
    assert guard.last_error is None


def test_spend_and_budget_holds_keep_each_clients_keys_together(cluster):
    guard = guard_for(cluster.url)
    ledger = SpendLedger(guard, max_age=0)
    clients = [f"spender-{i}" for i in range(8)]
    for i, client_id in enumerate(clients):
        ledger.add(client_id, 10.0 + i)
    assert ledger.flush(), guard.last_error  # one pipeline over many slots
    assert [ledger.spent(c, "day") for c in clients] == [10.0 + i for i in range(8)]
    holds = BudgetReservations(guard, ledger.key, ledger.add, ledger.spent, hold_seconds=60)
    first = holds.reserve("spender-0", {"day": 20.0}, 15.0)
    assert first.shared
    with pytest.raises(Exception, match="Spend budget exhausted"):
        holds.reserve("spender-0", {"day": 20.0}, 1.0)  # 10 spent + 15 held: over the budget
    first.settle(2.0)
    assert ledger.spent("spender-0", "day") == 12.0 and guard.last_error is None


def outage(call: Callable[[], object], ok: Callable[[object], bool], seconds: float) -> list[tuple[float, float, bool]]:
    """(started, took, succeeded) of a call made every 20 ms until it has succeeded for 1 s, or ``seconds``."""
    seen: list[tuple[float, float, bool]] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        t = time.monotonic()
        good = ok(call())
        seen.append((t - started, time.monotonic() - t, good))
        recent = [s for s in seen if s[0] > seen[-1][0] - 1.0]
        if good and seen[-1][0] > 1.0 and all(s[2] for s in recent):
            break
        time.sleep(0.02)
    return seen


def test_a_dead_primary_costs_bounded_calls_and_the_client_follows_the_failover(cluster):
    """Kill the primary that owns the limiter's slot: every call stays within the budget, the breaker skips
    Redis meanwhile, and the same client finds the promoted replica by itself (MOVED / slot-map refresh)."""
    guard = guard_for(cluster.url, cooldown=1.0)
    limiter = RateLimiter(POLICY, guard, local_parts=2)
    key = limiter.keys("failover")[0]
    assert guard.command("set", None, "SET", key, "before") == b"OK"
    victim = cluster.primary_of(key)
    victim.kill()
    seen = outage(lambda: guard.command("get", None, "GET", key), lambda v: v == b"before", seconds=40)
    assert seen[-1][2], f"never recovered: {seen[-5:]} ({guard.last_error})"
    assert max(took for _, took, _ in seen) < CALL_BUDGET, max(seen, key=lambda s: s[1])
    recovered = next(at for at, _, good in seen if good)
    assert recovered < 20, recovered
    assert cluster.primary_of(key).port != victim.port
    victim.start()  # back as a replica of the promoted node; the module's later tests see a whole cluster
    cluster.wait_healthy()


def test_sentinel_primary_is_discovered_and_a_failover_followed_without_restart(sentinels):
    guard = guard_for(sentinels.url, cooldown=1.0)
    assert not guard.cluster
    assert guard.command("set", None, "SET", "llm-edge:k", "v") == b"OK"
    old = sentinels.primary_port()
    sentinels.primary.kill()
    seen = outage(lambda: guard.command("set", None, "SET", "llm-edge:k", "after"), lambda v: v == b"OK",
                  seconds=40)
    assert seen[-1][2], f"never recovered: {seen[-5:]} ({guard.last_error})"
    assert max(took for _, took, _ in seen) < CALL_BUDGET, max(seen, key=lambda s: s[1])
    assert sentinels.primary_port() != old == sentinels.primary.port
    assert guard.health().status == "ok"

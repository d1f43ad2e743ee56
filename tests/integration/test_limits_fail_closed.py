"""RATE_LIMIT_WITHOUT_REDIS=refuse: with Redis gone a request is refused (503), never admitted uncounted."""

from __future__ import annotations

import time

import pytest

from app.config.settings import Settings
from app.errors import LimiterUnavailable
from app.limits.policy import parse_policy
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard, make_redis

pytestmark = pytest.mark.timeout(30)

POLICY = parse_policy({"rate_limiting": {"per_client": {"tier_slow": 2, "tier_fast": 500}}})


@pytest.mark.parametrize("tier, lease", [("slow", 0.0), ("fast", 0.05)])  # one script per request; leased batches
def test_refuses_while_redis_is_down_and_counts_again_when_it_is_back(redis_server, tier, lease):
    guard = RedisGuard(make_redis(Settings.from_env({"REDIS_URL": redis_server.url})), cooldown=0.2)
    limiter = RateLimiter(POLICY, guard, 2, lease_window=lease, refuse_without_redis=True)
    limiter.load_scripts()
    assert limiter.check("acme", POLICY.tier(tier)).shared
    redis_server.stop()
    limiter._leases.clear()  # a lease granted before the outage may still admit; start from none
    for _ in range(5):  # failing calls, then the open breaker: refused either way
        with pytest.raises(LimiterUnavailable) as refused:
            limiter.check("acme", POLICY.tier(tier))
        assert refused.value.status == 503 and refused.value.retry_after == 0.2
    assert limiter.health().detail["mode"] == "refuse"
    redis_server.start()
    time.sleep(0.3)  # the breaker's cooldown: then one probe, which finds Redis back
    assert limiter.check("other", POLICY.tier(tier)).shared

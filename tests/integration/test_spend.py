"""Per-client spend against a real redis-server: shared totals, outages, periods, the flusher."""

from __future__ import annotations

import calendar

import pytest
import redis

from app.accounting.spend import SpendLedger, period_bucket
from app.config.settings import Settings
from app.resilience.redis_guard import RedisGuard, make_redis
from tests.support.clock import Clock
from tests.support.processes import wait_until

pytestmark = pytest.mark.timeout(60)

NOV_26 = calendar.timegm((2026, 11, 26, 12, 0, 0))


def guard_for(url: str) -> RedisGuard:
    return RedisGuard(make_redis(Settings(redis_url=url)), cooldown=0.2)


def test_buckets_are_utc_days_and_months() -> None:
    assert period_bucket("day", NOV_26) == "2026-11-26"
    assert period_bucket("month", NOV_26) == "2026-11"
    with pytest.raises(ValueError):
        period_bucket("year", NOV_26)  # type: ignore[arg-type]


def test_buckets_turn_over_at_utc_midnight_and_month_end() -> None:
    """Buckets are remembered per UTC day: each call must still name the day its time falls in."""
    last_second = calendar.timegm((2026, 11, 30, 23, 59, 59))
    for now, day, month in [(last_second, "2026-11-30", "2026-11"), (last_second + 1, "2026-12-01", "2026-12"),
                            (last_second + 0.999, "2026-11-30", "2026-11"), (NOV_26, "2026-11-26", "2026-11"),
                            (calendar.timegm((2024, 2, 29, 0, 0, 0)), "2024-02-29", "2024-02"),
                            (last_second + 1, "2026-12-01", "2026-12")]:
        assert (period_bucket("day", now), period_bucket("month", now)) == (day, month)


def test_two_workers_see_one_total_after_flushing(redis_server) -> None:
    clock = Clock(NOV_26)
    a = SpendLedger(guard_for(redis_server.url), clock=clock, max_age=0)
    b = SpendLedger(guard_for(redis_server.url), clock=clock, max_age=0)
    a.add("acme", 1.5)
    b.add("acme", 2.25)
    b.add("other", 7.0)
    assert a.spent("acme") == pytest.approx(1.5)  # b's share is still in b's tally
    assert a.flush() and b.flush()
    assert a.spent("acme") == pytest.approx(3.75)
    assert b.spent("acme", "day") == pytest.approx(3.75)
    assert a.spent("other") == pytest.approx(7.0)
    raw = redis.Redis.from_url(redis_server.url)
    key = a.key("acme", "month")
    assert key == "llm-edge:spend:{acme}:month:2026-11"
    assert float(raw.get(key)) == pytest.approx(3.75)
    assert 0 < raw.ttl(key) <= 40 * 86400
    assert 0 < raw.ttl(a.key("acme", "day")) <= 3 * 86400


def test_a_new_day_starts_from_zero_but_the_month_goes_on(redis_server) -> None:
    clock = Clock(NOV_26)
    ledger = SpendLedger(guard_for(redis_server.url), clock=clock, max_age=0)
    ledger.add("acme", 10)
    ledger.flush()
    clock.now += 86400
    ledger.add("acme", 1)
    ledger.flush()
    assert ledger.spent("acme", "day") == pytest.approx(1)
    assert ledger.spent("acme", "month") == pytest.approx(11)


def test_spend_during_a_redis_outage_is_delayed_not_lost(redis_server) -> None:
    clock = Clock(NOV_26)
    ledger = SpendLedger(guard_for(redis_server.url), clock=clock, max_age=0)
    ledger.add("acme", 5)
    assert ledger.flush()
    assert ledger.spent("acme") == pytest.approx(5)
    redis_server.stop()
    ledger.add("acme", 3)
    assert not ledger.flush()
    assert ledger.spent("acme") == pytest.approx(8)  # last known total + what is waiting
    redis_server.start()
    clock.now += 1
    wait_until(ledger.flush, timeout=10, what="flush after Redis is back")
    raw = redis.Redis.from_url(redis_server.url)
    assert float(raw.get(ledger.key("acme", "month"))) == pytest.approx(3)  # the restarted Redis lost the 5
    assert ledger.spent("acme") == pytest.approx(3)


def test_without_redis_the_tally_is_local() -> None:
    ledger = SpendLedger(RedisGuard(None), clock=Clock(NOV_26))
    ledger.add("acme", 2)
    ledger.add("acme", 0)
    ledger.add("acme", -1)
    assert not ledger.flush()
    assert ledger.spent("acme") == pytest.approx(2)
    assert ledger.spent("nobody") == 0.0


def test_reads_are_cached_for_max_age(redis_server) -> None:
    clock = Clock(NOV_26)
    reader = SpendLedger(guard_for(redis_server.url), clock=clock, max_age=5)
    writer = SpendLedger(guard_for(redis_server.url), clock=clock)
    assert reader.spent("acme") == 0.0
    writer.add("acme", 4)
    writer.flush()
    assert reader.spent("acme") == 0.0  # read less than max_age ago
    clock.now += 5
    assert reader.spent("acme") == pytest.approx(4)


def test_the_flusher_thread_sends_the_tally_by_itself(redis_server) -> None:
    ledger = SpendLedger(guard_for(redis_server.url), flush_interval=0.05)
    ledger.add("acme", 1.25)
    raw = redis.Redis.from_url(redis_server.url)
    key = ledger.key("acme", "month")
    wait_until(lambda: raw.get(key) is not None, timeout=5, what="flusher")
    assert float(raw.get(key)) == pytest.approx(1.25)
    ledger.close()

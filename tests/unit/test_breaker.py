"""CircuitBreaker: both opening rules, refusing while open, one half-open probe, closing; Breakers registry."""

from __future__ import annotations

import threading

import pytest

from app.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, Breakers, CircuitBreaker
from tests.support.clock import Clock

pytestmark = pytest.mark.timeout(10)


def make(**policy) -> tuple[CircuitBreaker, Clock, list[tuple[str, int]]]:
    clock, seen = Clock(), []
    defaults = {"failure_threshold": 3, "failure_rate": 0.0, "cooldown": 10.0}
    breaker = CircuitBreaker("anthropic", BreakerPolicy(**{**defaults, **policy}), clock=clock,
                             publish=lambda name, state: seen.append((name, state)))
    return breaker, clock, seen


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.allow()
        assert permit is not None
        breaker.record(permit, False)


def succeed(breaker: CircuitBreaker) -> None:
    permit = breaker.allow()
    assert permit is not None
    breaker.record(permit, True)


def test_consecutive_failures_open_it_and_a_success_resets_the_count():
    breaker, _, seen = make()
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state == CLOSED and seen == []
    fail(breaker)
    assert breaker.state == OPEN and seen == [("anthropic", OPEN)]
    assert breaker.allow() is None
    assert breaker.retry_after() == pytest.approx(10.0)


def test_failure_rate_over_the_window_opens_it_once_enough_attempts_are_in():
    breaker, _, _ = make(failure_threshold=0, failure_rate=0.5, min_requests=10, window=60.0)
    for _ in range(4):
        succeed(breaker)
        fail(breaker)
    assert breaker.state == CLOSED  # 8 attempts: under min_requests
    succeed(breaker)
    fail(breaker)
    assert breaker.state == OPEN  # 5 of 10 failed


def test_the_window_forgets_old_attempts():
    breaker, clock, _ = make(failure_threshold=0, failure_rate=0.5, min_requests=4, window=10.0)
    fail(breaker, 3)
    clock.now += 11.0
    succeed(breaker)
    succeed(breaker)
    succeed(breaker)
    fail(breaker)
    assert breaker.state == CLOSED  # 1 of 4 in the window
    snap = breaker.snapshot()
    assert snap["window"] == {"attempts": 4, "failures": 1} and snap["state"] == "closed"


def test_half_open_lets_exactly_one_probe_through_and_success_closes():
    breaker, clock, seen = make()
    fail(breaker, 3)
    clock.now += 9.9
    assert breaker.allow() is None
    clock.now += 0.2
    probe = breaker.allow()
    assert probe is not None and breaker.state == HALF_OPEN
    assert breaker.allow() is None  # the probe is out: everyone else still falls back
    breaker.record(probe, True)
    assert breaker.state == CLOSED and breaker.allow() is not None
    assert seen == [("anthropic", OPEN), ("anthropic", HALF_OPEN), ("anthropic", CLOSED)]
    fail(breaker, 2)
    assert breaker.state == CLOSED  # the count started again


def test_a_failed_probe_opens_it_for_another_cooldown():
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.now += 10.0
    probe = breaker.allow()
    breaker.record(probe, False)
    assert breaker.state == OPEN and breaker.retry_after() == pytest.approx(10.0)
    assert breaker.snapshot()["times_opened"] == 2


def test_a_probe_that_says_nothing_frees_the_slot():
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.now += 10.0
    probe = breaker.allow()
    breaker.record(probe, None)  # e.g. the provider answered 429
    assert breaker.state == HALF_OPEN
    assert breaker.allow() is not None


def test_outcomes_from_before_a_change_of_state_are_ignored():
    breaker, clock, _ = make()
    early = [breaker.allow() for _ in range(5)]
    fail(breaker, 3)
    clock.now += 10.0
    probe = breaker.allow()
    for permit in early:  # slow attempts let through while it was closed, failing now
        breaker.record(permit, False)
    assert breaker.state == HALF_OPEN
    breaker.record(probe, True)
    assert breaker.state == CLOSED


def test_the_state_reads_half_open_once_the_cooldown_is_over():
    breaker, clock, seen = make()
    fail(breaker, 3)
    clock.now += 10.0
    assert breaker.state == HALF_OPEN and seen[-1] == ("anthropic", HALF_OPEN)
    assert breaker.retry_after() == 0.0


def test_disabled_rules_never_open():
    breaker, _, _ = make(failure_threshold=0, failure_rate=0.0)
    fail(breaker, 100)
    assert breaker.state == CLOSED


def test_only_one_probe_under_contention():
    breaker, clock, _ = make()
    fail(breaker, 3)
    clock.now += 10.0
    permits: list[int | None] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        permits.append(breaker.allow())

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(p is not None for p in permits) == 1


def test_breakers_are_independent_and_published_from_the_start():
    seen: list[tuple[str, int]] = []
    clock = Clock()
    breakers = Breakers(["openai", "anthropic"], BreakerPolicy(failure_threshold=2, cooldown=5.0), clock=clock,
                        publish=lambda name, state: seen.append((name, state)))
    assert sorted(seen) == [("anthropic", CLOSED), ("openai", CLOSED)]
    fail(breakers["anthropic"], 2)
    assert breakers["anthropic"].state == OPEN and breakers["openai"].state == CLOSED
    assert breakers["openai"].allow() is not None
    health = breakers.health()
    assert health.status == "degraded"
    assert health.detail["providers"]["anthropic"]["state"] == "open"
    assert health.detail["providers"]["anthropic"]["retry_in"] == pytest.approx(5.0)
    assert health.detail["providers"]["openai"]["state"] == "closed"
    assert breakers["local"] is breakers["local"] and ("local", CLOSED) in seen
    clock.now += 5.0
    probe = breakers["anthropic"].allow()
    breakers["anthropic"].record(probe, True)
    assert breakers.health().status == "ok"

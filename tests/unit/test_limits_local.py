"""The per-worker limiter used while Redis is away: GCRA on an injected clock."""

from __future__ import annotations

import pytest

from app.limits.decision import GLOBAL, REQUESTS, TOKENS, Decision, duration
from app.limits.local import LocalLimiter
from app.limits.policy import parse_policy
from tests.support.clock import Clock


def limiter(per_client: dict, global_rps: float | None = None, parts: int = 1) -> tuple[LocalLimiter, Clock]:
    section: dict = {"per_client": per_client}
    if global_rps:
        section["global"] = {"requests_per_second": global_rps}
    clock = Clock()
    return LocalLimiter(parse_policy({"rate_limiting": section}), parts, clock=clock), clock


def test_a_burst_then_exactly_the_rate():
    lim, clock = limiter({"tier_t": 5})
    first = [lim.check("c", "t") for _ in range(6)]
    assert [d.allowed for d in first] == [True] * 5 + [False]
    assert [d.remaining for d in first] == [4, 3, 2, 1, 0, 0]
    refused = first[-1]
    assert refused.refused_by == REQUESTS and refused.retry_after == pytest.approx(0.2)
    assert not refused.shared and refused.limit == 5
    clock.now += 0.2
    assert lim.check("c", "t").allowed and not lim.check("c", "t").allowed
    admitted = 0
    for _ in range(100):  # 10 s at 10 offers per second
        clock.now += 0.1
        admitted += lim.check("c", "t").allowed
    assert admitted == 50


def test_a_refused_request_costs_nothing():
    lim, clock = limiter({"tier_t": 1})
    assert lim.check("c", "t").allowed
    for _ in range(50):
        assert not lim.check("c", "t").allowed
    clock.now += 1.0
    assert lim.check("c", "t").allowed


def test_clients_are_limited_separately_and_globally_together():
    lim, _ = limiter({"tier_t": 2}, global_rps=3)
    results = [(c, lim.check(c, "t")) for c in ("a", "a", "b", "b")]
    assert [d.allowed for _, d in results] == [True, True, True, False]
    assert results[-1][1].refused_by == GLOBAL and results[-1][1].remaining == 1


def test_the_share_divides_every_limit():
    lim, _ = limiter({"tier_t": {"requests_per_second": 8, "tokens_per_minute": 600}}, parts=4)
    decisions = [lim.check("c", "t") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[0].limit == 2 and decisions[0].token_limit == 150


def test_tokens_per_minute_admits_until_the_last_minute_is_spent():
    lim, clock = limiter({"tier_t": {"requests_per_second": 100, "tokens_per_minute": 600}})
    d = lim.check("c", "t")
    assert d.allowed and (d.token_limit, d.token_remaining, d.token_reset) == (600, 600, 0.0)
    lim.debit("c", "t", 450)
    d = lim.check("c", "t")
    assert d.allowed and d.token_remaining == 150 and d.token_reset == pytest.approx(45.0)
    lim.debit("c", "t", 400)  # one answer may overshoot: tokens are known only afterwards
    d = lim.check("c", "t")
    assert not d.allowed and d.refused_by == TOKENS and d.token_remaining == 0
    assert d.retry_after == pytest.approx(85 - 60 + 0.1)
    clock.now += d.retry_after
    assert lim.check("c", "t").allowed


def test_debit_without_a_token_limit_is_ignored():
    lim, _ = limiter({"tier_t": 1})
    lim.debit("c", "t", 10**9)
    d = lim.check("c", "t")
    assert d.allowed and d.token_limit is None


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (-1, "0s"), (0.0004, "1ms"), (0.12, "120ms"), (1, "1s"), (1.5, "1.5s"), (8.642, "8.642s"),
    (60, "1m0s"), (90.5, "1m30.5s"), (360, "6m0s"), (3725, "1h2m5s"),
])
def test_reset_durations_read_like_openais(seconds, text):
    assert duration(seconds) == text


def test_headers_carry_tokens_only_when_the_tier_limits_them():
    d = Decision(True, None, 10, 9, 0.1, 0.0)
    assert dict(d.headers()) == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                                 "x-ratelimit-reset-requests": "100ms"}
    d = Decision(True, None, 10, 9, 0.1, 0.0, token_limit=600, token_remaining=100, token_reset=50.0)
    assert dict(d.headers())["x-ratelimit-reset-tokens"] == "50s"

"""RetryPolicy: what is retried, full-jitter backoff, retry-after and its cap, the deadline; RETRY_ON parsing."""

from __future__ import annotations

import pytest

from app.config.settings import DEFAULT_RETRY_ON, ConfigError, Settings, parse_retry_on
from app.errors import (
    CONNECT_FAILURE,
    DEADLINE,
    RESET,
    FailureKind,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    classify,
)
from app.resilience.retry import RetryPolicy

pytestmark = pytest.mark.timeout(10)


def upstream_status(status: int, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(f"HTTP {status}", retry_after=retry_after, upstream_status=status)


def failed(word: FailureKind) -> UpstreamError:
    return UpstreamError(word, failure=word)


def failure_of(err: GatewayError) -> str | int | None:
    return classify(err).retry_on


def test_failure_of_names_statuses_and_words():
    assert failure_of(upstream_status(503)) == 503
    assert failure_of(UpstreamRejected("slow down", status=429)) == 429
    assert failure_of(failed(RESET)) == RESET
    assert failure_of(UpstreamTimeout("slow")) == "timeout"
    assert failure_of(InvalidRequest("bad")) is None


@pytest.mark.parametrize("err", [upstream_status(500), upstream_status(502), upstream_status(503),
                                 upstream_status(504), upstream_status(529),
                                 UpstreamRejected("rate", status=429), failed(CONNECT_FAILURE), failed(RESET)])
def test_the_defaults_retry_provider_trouble(err):
    assert RetryPolicy().pause(1, err, 10.0, rng=lambda: 0.5) is not None


@pytest.mark.parametrize("err", [upstream_status(501), UpstreamRejected("bad", status=400),
                                 UpstreamTimeout("read timed out"), failed("bad-response"),
                                 InvalidRequest("bad field")])
def test_the_defaults_leave_the_rest_alone(err):
    assert RetryPolicy().pause(1, err, 10.0) is None


def test_a_deadline_is_never_retried_even_when_timeouts_are():
    err = UpstreamTimeout("deadline", failure=DEADLINE)
    policy = RetryPolicy(retry_on=parse_retry_on("timeout"))
    assert policy.pause(1, err, 10.0) is None
    assert policy.pause(1, UpstreamTimeout("read"), 10.0) is not None


def test_attempts_count_the_first_one():
    policy = RetryPolicy(attempts=3)
    err = upstream_status(500)
    assert policy.pause(1, err, 10.0) is not None
    assert policy.pause(2, err, 10.0) is not None
    assert policy.pause(3, err, 10.0) is None
    assert RetryPolicy(attempts=1).pause(1, err, 10.0) is None


def test_backoff_is_full_jitter_and_doubles_up_to_the_cap():
    policy = RetryPolicy(attempts=10, backoff_base=0.1, backoff_max=0.5)
    err = upstream_status(502)
    assert policy.pause(1, err, 10.0, rng=lambda: 0.0) == 0.0
    assert policy.pause(1, err, 10.0, rng=lambda: 1.0) == pytest.approx(0.1)
    assert policy.pause(2, err, 10.0, rng=lambda: 1.0) == pytest.approx(0.2)
    assert policy.pause(3, err, 10.0, rng=lambda: 1.0) == pytest.approx(0.4)
    assert policy.pause(4, err, 10.0, rng=lambda: 1.0) == pytest.approx(0.5)
    assert policy.pause(9, err, 10.0, rng=lambda: 0.5) == pytest.approx(0.25)


def test_retry_after_is_honoured_up_to_the_cap_then_ends_the_retries():
    policy = RetryPolicy(retry_after_max=5.0)
    assert policy.pause(1, UpstreamRejected("rate", status=429, retry_after=2), 10.0, rng=lambda: 0.0) == 2.0
    assert policy.pause(1, upstream_status(503, retry_after=5), 10.0) == 5.0
    assert policy.pause(1, UpstreamRejected("rate", status=429, retry_after=7), 60.0) is None


def test_no_wait_that_would_use_up_the_deadline():
    policy = RetryPolicy(backoff_base=1.0)
    err = UpstreamRejected("rate", status=429, retry_after=3)
    assert policy.pause(1, err, 3.5) == 3.0
    assert policy.pause(1, err, 2.9) is None
    assert policy.pause(1, upstream_status(500), 0.4, rng=lambda: 0.5) is None


def test_parse_retry_on():
    assert parse_retry_on("connect-failure, reset ,429") == {CONNECT_FAILURE, RESET, 429}
    assert parse_retry_on("5xx") == frozenset(range(500, 600))
    assert parse_retry_on("") == frozenset()
    for bad in ("sometimes", "200", "99", "6xx"):
        with pytest.raises(ValueError):
            parse_retry_on(f"reset,{bad}")


def test_settings_read_the_retry_and_breaker_variables():
    s = Settings.from_env({})
    assert s.retry_attempts == 3 and s.retry_on == DEFAULT_RETRY_ON
    assert (s.breaker_failure_threshold, s.breaker_failure_rate, s.breaker_cooldown) == (5, 0.5, 30.0)
    s = Settings.from_env({"RETRY_ATTEMPTS": "1", "RETRY_ON": "503", "BREAKER_FAILURE_RATE": "0",
                           "BREAKER_FAILURE_THRESHOLD": "0", "BREAKER_COOLDOWN": "0.5"})
    assert s.retry_attempts == 1 and s.retry_on == {503}
    assert (s.breaker_failure_threshold, s.breaker_failure_rate, s.breaker_cooldown) == (0, 0.0, 0.5)


@pytest.mark.parametrize("name,value", [
    ("RETRY_ATTEMPTS", "0"), ("RETRY_ATTEMPTS", "eleven"), ("RETRY_ON", "reset,always"),
    ("RETRY_BACKOFF_BASE", "-1"), ("RETRY_AFTER_MAX", "0"), ("BREAKER_FAILURE_RATE", "1.5"),
    ("BREAKER_FAILURE_THRESHOLD", "-2"), ("BREAKER_MIN_REQUESTS", "0"), ("BREAKER_WINDOW", "0"),
    ("BREAKER_COOLDOWN", "later"),
])
def test_a_bad_resilience_value_names_its_variable(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(name) and repr(value) in str(info.value)

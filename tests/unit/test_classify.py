"""classify: the one reading of a failed attempt (fallback, breaker verdict, metric label; retry tokens are
covered in test_retry_policy.py)."""

from __future__ import annotations

import pytest

from app.errors import (
    BAD_RESPONSE,
    CONNECT_FAILURE,
    DEADLINE,
    RESET,
    InvalidRequest,
    NoHealthyProvider,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    classify,
)

pytestmark = pytest.mark.timeout(10)

AUTH = UpstreamError("bad key", code="upstream_auth_failed")


@pytest.mark.parametrize(("err", "fall_back", "breaker", "error_type"), [
    (UpstreamRejected("bad", status=400), False, True, "rejected"),
    (UpstreamRejected("slow down", status=429), True, None, "rate_limited"),
    (AUTH, True, None, "auth"),
    (UpstreamError("HTTP 503", upstream_status=503), True, False, "http_5xx"),
    (UpstreamError("HTTP 418", upstream_status=418), True, False, "bad_response"),
    (UpstreamError("refused", failure=CONNECT_FAILURE), True, False, "connection"),
    (UpstreamError("cut", failure=RESET), True, False, "connection"),
    (UpstreamError("garbage", failure=BAD_RESPONSE), True, False, "bad_response"),
    (UpstreamTimeout("slow"), True, False, "timeout"),
    (UpstreamTimeout("connect", failure=CONNECT_FAILURE), True, False, "timeout"),
    (UpstreamTimeout("deadline", failure=DEADLINE), True, False, "timeout"),
    (NoHealthyProvider("all open"), True, None, "bad_response"),
    (InvalidRequest("bad field"), False, None, "bad_response"),
])
def test_one_verdict_answers_fallback_breaker_and_label(err, fall_back, breaker, error_type):
    verdict = classify(err)
    assert (verdict.may_fall_back, verdict.breaker, verdict.error_type) == (fall_back, breaker, error_type)


def test_the_kind_is_set_where_the_error_is_made():
    assert UpstreamError("cut", failure=RESET).failure is RESET
    assert UpstreamError("plain").failure is None
    assert UpstreamTimeout("slow").failure == "timeout"
    assert classify(UpstreamTimeout("connect", failure=CONNECT_FAILURE)).retry_on == "connect-failure"

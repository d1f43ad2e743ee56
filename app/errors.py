"""Every error the gateway answers with, and the one place that renders them.

The tree::

    GatewayError                      status, code, message, param
    ├── InvalidRequest                400  a field of the body is wrong (param names it)
    ├── Unauthorized                  401  missing or unknown client key
    ├── NotFound                      404  unknown path; ModelNotFound for models
    │   └── ModelNotFound
    ├── MethodNotAllowed              405
    ├── PayloadTooLarge               413  body over MAX_REQUEST_BYTES
    ├── UnsupportedMediaType          415  body is not JSON
    ├── RateLimited                   429  our own limits (retry_after set)
    ├── UpstreamError                 502  provider failed or answered garbage
    │   └── UpstreamRejected          4xx passed back (the provider refused the request)
    ├── NoHealthyProvider             503  nothing to route to (retry_after set)
    └── UpstreamTimeout               504

Lower layers (urllib3, codecs) raise these at exactly one boundary each,
``raise UpstreamTimeout(...) from exc``; resources never build error JSON.
Messages never contain a provider or client key.

An upstream error says how the exchange failed where it is made: the
provider's HTTP status (``upstream_status``, or a rejection's own status), or
a ``FailureKind`` passed to its constructor when no status came back.
``classify`` reads both and answers every question the pipeline asks of a
failed attempt (retry it? fall back? what does it say about the provider's
health? which metric label?) in one ``Verdict``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

# Anthropic's error.type for each HTTP status we answer with.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


class FailureKind(StrEnum):
    """What went wrong upstream when no HTTP status came back: the words RETRY_ON accepts besides statuses."""

    CONNECT_FAILURE = "connect-failure"  # no connection (refused, DNS, TLS handshake, connect timeout): never sent
    RESET = "reset"  # the connection broke before the answer was complete (or before a stream's first event)
    TIMEOUT = "timeout"  # a read limit ran out (UPSTREAM_READ_TIMEOUT, STREAM_FIRST_BYTE_TIMEOUT)
    DEADLINE = "deadline"  # REQUEST_TIMEOUT ran out: never retried, nothing is left to retry in
    BAD_RESPONSE = "bad-response"  # the provider answered something unreadable


CONNECT_FAILURE = FailureKind.CONNECT_FAILURE
RESET = FailureKind.RESET
TIMEOUT = FailureKind.TIMEOUT
DEADLINE = FailureKind.DEADLINE
BAD_RESPONSE = FailureKind.BAD_RESPONSE

RETRYABLE_WORDS = frozenset({CONNECT_FAILURE, RESET, TIMEOUT})


class GatewayError(Exception):
    """Base of every error answered to a client."""

    status: int = 500
    openai_type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after

    @property
    def anthropic_type(self) -> str:
        return _ANTHROPIC_TYPES.get(self.status, "api_error")

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}

    def body_for(self, fmt: str) -> dict[str, Any]:
        """The error JSON in the caller's dialect (``openai`` or ``anthropic``)."""
        return self.anthropic_body() if fmt == "anthropic" else self.openai_body()


class InvalidRequest(GatewayError):
    status = 400
    openai_type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    openai_type = "authentication_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    openai_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    openai_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    openai_type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    openai_type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    openai_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status = 502
    openai_type = "server_error"
    code = "upstream_error"
    upstream_status: int | None = None  # the provider's HTTP status, when it sent one
    # How the exchange failed when no status says it: connect-failure, reset, bad-response.
    failure: FailureKind | None = None
    # A relayed stream's own error event already went to the caller: no second one is written.
    event_sent: bool = False

    def __init__(self, message: str, *, failure: FailureKind | None = None, upstream_status: int | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        if failure is not None:
            self.failure = failure
        if upstream_status is not None:
            self.upstream_status = upstream_status


class UpstreamRejected(UpstreamError):
    """The provider refused the request with a 4xx that is the caller's to fix.

    ``status`` is the provider's (400, 404, 413, 422, 429); the message is the
    provider's own message, so the caller sees why.
    """

    openai_type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, *, status: int, **kw: Any) -> None:
        super().__init__(message, status=status, **kw)
        if status == 429:
            self.openai_type = "rate_limit_error"
            self.code = "upstream_rate_limited"


class NoHealthyProvider(GatewayError):
    status = 503
    openai_type = "server_error"
    code = "no_healthy_provider"


class LimiterUnavailable(GatewayError):
    """RATE_LIMIT_WITHOUT_REDIS=refuse and the shared limits' Redis cannot be asked: fail closed."""

    status = 503
    openai_type = "server_error"
    code = "rate_limiter_unavailable"


class ShuttingDown(GatewayError):
    """This worker is stopping and its drain time ran out: a stream still running ends with this error."""

    status = 503  # overloaded_error in the Anthropic format
    openai_type = "server_error"
    code = "server_shutting_down"


class UpstreamTimeout(GatewayError):
    status = 504
    openai_type = "server_error"
    code = "upstream_timeout"
    # timeout (a read limit), connect-failure (connecting timed out) or deadline (REQUEST_TIMEOUT ran out).
    failure: FailureKind = FailureKind.TIMEOUT

    def __init__(self, message: str, *, failure: FailureKind = FailureKind.TIMEOUT, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.failure = failure


class Verdict(NamedTuple):
    """What a failed upstream attempt means, for every party that asks (``classify``)."""

    retry_on: str | int | None  # the RETRY_ON token: the provider's status, else a FailureKind; None if not upstream
    may_fall_back: bool  # provider trouble (5xx, timeouts, unreachable, rate limited) moves on; caller mistakes not
    breaker: bool | None  # what it says about the provider's health: False unhealthy, True healthy, None nothing
    error_type: str  # the bounded ``error_type`` label of llm_edge_provider_errors_total


_AUTH_FAILED = "upstream_auth_failed"


# Every ``Verdict.error_type`` classify() gives: llm_edge_provider_errors_total{error_type} exports each at 0
# from the start (app/observability/metrics.py), so dashboards show 0 rather than "No data".
ERROR_TYPES = ("rate_limited", "rejected", "timeout", "auth", "http_5xx", "connection", "bad_response")


def classify(err: GatewayError) -> Verdict:
    """The one reading of a failed attempt: retry token, fallback, breaker verdict and metric label.

    A 4xx is the caller's mistake from a healthy provider; a 429 or a rejected
    key says nothing about whether the provider is up. Errors that are not
    upstream ones fall back only when they are a 503 (nothing to route to).
    """
    if isinstance(err, UpstreamRejected):
        limited = err.status == 429
        return Verdict(err.status, limited, None if limited else True, "rate_limited" if limited else "rejected")
    if isinstance(err, UpstreamTimeout):
        return Verdict(err.failure, True, None if err.code == _AUTH_FAILED else False, "timeout")
    if isinstance(err, UpstreamError):
        status = err.upstream_status
        if err.code == _AUTH_FAILED:
            return Verdict(status or err.failure, True, None, "auth")
        if status and status >= 500:
            kind = f"http_{status // 100}xx"
        else:
            kind = "connection" if err.failure in (CONNECT_FAILURE, RESET) else "bad_response"
        return Verdict(int(status) if status else err.failure, True, False, kind)
    return Verdict(None, err.status == 503, None, "bad_response")

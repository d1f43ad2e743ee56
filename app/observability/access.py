"""The end of every request: one access log line and the request metrics.

Called exactly once per request: by the middleware for plain answers, or by
the stream generator's ``finally`` for SSE (Falcon runs ``process_response``
before a streamed body is read, so the middleware cannot know a stream's end).
"""

from __future__ import annotations

import logging

from app.context import RequestContext
from app.observability import metrics

log = logging.getLogger("llm_edge.access")


def request_started(ctx: RequestContext) -> None:
    metrics.IN_FLIGHT.inc()


def request_finished(ctx: RequestContext) -> None:
    duration = ctx.elapsed()
    metrics.IN_FLIGHT.dec()
    provider = ctx.provider or "none"
    metrics.REQUESTS.labels(ctx.endpoint, provider, ctx.model or ctx.requested_model or "none",
                            str(ctx.status)).inc()
    metrics.REQUEST_DURATION.labels(ctx.endpoint, provider, ctx.cache).observe(duration)
    if ctx.first_token_at is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(provider).observe(ctx.first_token_at - ctx.started)
    if log.isEnabledFor(logging.INFO):
        usage = ctx.usage
        log.info("request", extra={"fields": {
            "request_id": ctx.request_id,
            "client_id": ctx.client_id,
            "endpoint": ctx.endpoint,
            "provider": ctx.provider,
            "model": ctx.model or ctx.requested_model,
            "status": ctx.status,
            "cache": ctx.cache,
            "stream": ctx.stream,
            "duration_ms": round(duration * 1000, 3),
            "prompt_tokens": usage.input_tokens if usage else 0,
            "completion_tokens": usage.output_tokens if usage else 0,
            "cost_cents": round(ctx.cost_cents, 6),
            "attempts": ctx.attempts,
            "error_type": ctx.error_type,
        }})

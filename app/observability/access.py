"""The end of every request: one access log line, the request metrics, the request span.

Run exactly once per request, after its last byte, by the request's one
ending, ``Exchange.finish`` (``app/http/app.py``), whatever the ending was
(Falcon runs ``process_response`` before a streamed body is read, so no
middleware can know a stream's end).
"""

from __future__ import annotations

import logging

from app.context import RequestContext
from app.formats.canonical import ChatRequest, TextBlock, ToolResultBlock
from app.formats.common import shown_model
from app.observability import metrics
from app.observability.logging import log_fields, redact
from app.observability.tracing import Tracing

log = logging.getLogger("llm_edge.access")

# LOG_PROMPTS is for debugging; a log line is no place for a whole document.
PROMPT_LOG_LIMIT = 8192


_IN_FLIGHT_UP = metrics.counter_step(metrics.IN_FLIGHT)


def request_started(ctx: RequestContext) -> None:
    _IN_FLIGHT_UP()


def request_finished(ctx: RequestContext) -> None:
    duration = ctx.elapsed()
    provider = ctx.provider or "none"
    model = metrics.MODEL_LABELS(ctx.model or ctx.requested_model)
    if ctx.first_token_at is not None:
        metrics.observer(metrics.TIME_TO_FIRST_TOKEN, provider)(ctx.first_token_at - ctx.started)
    # The request count, its duration, then in-flight down (last: a scrape that finds nothing in flight finds
    # every answered request counted).
    metrics.request_ended(ctx.endpoint, provider, model, str(ctx.status), ctx.cache)(duration)
    if ctx.span is not None:
        Tracing.end_request(ctx)
    if log.isEnabledFor(logging.INFO):
        usage = ctx.usage
        fields = {
            "request_id": ctx.request_id,
            "client_id": ctx.client_id,
            "client_addr": ctx.client_addr,
            "endpoint": ctx.endpoint,
            "provider": ctx.provider,
            # A model name the gateway did not route is client text: scrubbed of anything key-like, capped.
            "model": ctx.model or (shown_model(redact(ctx.requested_model), 128) if ctx.requested_model else None),
            "status": ctx.status,
            "cache": ctx.cache,
            "stream": ctx.stream,
            "duration_ms": round(duration * 1000, 3),
            "prompt_tokens": usage.input_tokens if usage else 0,
            "completion_tokens": usage.output_tokens if usage else 0,
            "cost_cents": round(ctx.cost_cents, 6) if ctx.cost_cents else ctx.cost_cents,  # a hit: 0.0 as it is
            "attempts": ctx.attempts,
            "error_type": ctx.error_type,
        }
        if ctx.deployment is not None:  # which of a model's deployments answered (the provider alone does not say)
            fields["deployment"] = ctx.deployment
        if ctx.prompt is not None:
            fields["prompt"] = ctx.prompt
        log_fields(log, logging.INFO, "request", fields)


def prompt_text(req: ChatRequest) -> str:
    """The prompt's text for the access line (LOG_PROMPTS=true): role-prefixed, redacted, capped."""
    parts = [f"system: {block.text}" for block in req.system]
    for message in req.messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                parts.append(f"{message.role}: {block.text}")
            elif isinstance(block, ToolResultBlock):
                parts.extend(f"tool: {b.text}" for b in block.content if isinstance(b, TextBlock))
    return redact("\n".join(parts)[:PROMPT_LOG_LIMIT])

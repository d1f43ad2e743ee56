"""The ordered stages every chat request goes through, whatever its dialect.

    route (model -> targets)  ->  cache lookup (L1, L2, in-flight twin) -- hit --> answer
                              ->  upstream attempt per target, in order
    (fallback on failure)     ->  usage accounting (tokens, cost, client spend),
                                  cache fill (complete answers only)

The cache lookup and each attempt get their own span (when tracing is on);
an attempt's span context is what goes upstream as ``traceparent``.

Streams are decided before the first byte goes to the client: the provider's
headers and first event are awaited inside the fallback loop, so a provider
that fails early is replaced silently; after that, a failure becomes an error
event in the stream. The caller (a resource) only renders what comes back.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.cache.control import DEFAULT as CACHE_DEFAULT
from app.cache.control import CacheControl
from app.cache.stage import NO_TICKET, CacheStage, Ticket
from app.canonical import ChatRequest, ChatResponse, StreamEnd, StreamEvent
from app.context import RequestContext
from app.errors import GatewayError, UpstreamError, UpstreamRejected, UpstreamTimeout
from app.formats.stream import StreamAccumulator
from app.observability import cost, metrics
from app.observability.access import prompt_text
from app.observability.accounting import Accounting
from app.observability.tracing import Tracing
from app.routing import Router, Target
from app.upstream import UpstreamCaller, deadline_from


def should_fall_back(err: GatewayError) -> bool:
    """Provider trouble (5xx, timeouts, unreachable, rate limited) moves on; caller mistakes do not."""
    if isinstance(err, UpstreamRejected):
        return err.status == 429
    return isinstance(err, (UpstreamError, UpstreamTimeout)) or err.status == 503


def error_kind(err: GatewayError) -> str:
    """A bounded label for provider errors."""
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    status = getattr(err, "upstream_status", None) or err.status
    if isinstance(err, UpstreamRejected):
        return "rate_limited" if status == 429 else "rejected"
    if err.code == "upstream_auth_failed":
        return "auth"
    if status and status >= 500 and getattr(err, "upstream_status", None):
        return f"http_{status // 100}xx"
    return "bad_response" if "answered" in err.message or "cut" in err.message else "connection"


@dataclass(slots=True)
class Outcome:
    """What the pipeline hands back: a response, or canonical stream events."""

    response: ChatResponse | None = None
    events: Iterator[StreamEvent] | None = None
    close: Callable[[], None] = field(default=lambda: None)


class Pipeline:
    def __init__(self, router: Router, caller: UpstreamCaller, request_timeout: float,
                 cache: CacheStage | None = None, *, accounting: Accounting | None = None,
                 tracing: Tracing | None = None, log_prompts: bool = False) -> None:
        self.router = router
        self.caller = caller
        self.request_timeout = request_timeout
        self.cache = cache
        self.accounting = accounting or Accounting(cost.installed())
        self.tracing = tracing or Tracing()
        self.log_prompts = log_prompts

    def run(self, ctx: RequestContext, req: ChatRequest, cache_control: CacheControl = CACHE_DEFAULT) -> Outcome:
        ctx.requested_model = req.model
        if self.log_prompts:
            ctx.prompt = prompt_text(req)
        targets = self.router.resolve(req.model)
        deadline = deadline_from(self.request_timeout)
        served, ticket = None, NO_TICKET
        if self.cache is not None:
            with self.tracing.cache_lookup(ctx) as span:
                served, ticket = self.cache.begin(ctx, req, targets[0], cache_control, deadline)
                if span is not None:
                    span.set_attribute("llm_edge.cache", ctx.cache)
        if served is not None:
            return Outcome(response=served.response, events=served.events)
        try:
            return self._call_upstream(ctx, req, targets, deadline, ticket)
        except BaseException:
            ticket.abandon()  # nothing to store; followers of this request go upstream themselves
            raise

    def _call_upstream(self, ctx: RequestContext, req: ChatRequest, targets: list[Target], deadline: float,
                       ticket: Ticket) -> Outcome:
        failure: GatewayError | None = None
        for target in targets:
            ctx.attempts += 1
            headers = {"x-request-id": ctx.request_id}
            span = self.tracing.start_attempt(ctx, target, req, headers)
            started = time.monotonic()
            try:
                outcome = self._attempt(ctx, target, req, headers, deadline, ticket, span)
            except GatewayError as err:
                kind = error_kind(err)
                metrics.PROVIDER_ERRORS.labels(target.provider.name, kind).inc()
                metrics.PROVIDER_DURATION.labels(target.provider.name, metrics.MODEL_LABELS(target.model)).observe(
                    time.monotonic() - started)
                Tracing.end_attempt(span, target, error=kind)
                if not should_fall_back(err):
                    raise
                failure = err
                continue
            except BaseException:
                Tracing.end_attempt(span, target, error="internal")
                raise
            if target is not targets[0]:
                metrics.FALLBACKS.labels(targets[0].provider.name, target.provider.name).inc()
            ctx.provider, ctx.model = target.provider.name, target.model
            if outcome.response is not None:
                metrics.PROVIDER_DURATION.labels(target.provider.name, metrics.MODEL_LABELS(target.model)).observe(
                    time.monotonic() - started)
                self.accounting.upstream(ctx, target.provider.name, target.model, outcome.response.usage)
                Tracing.end_attempt(span, target, outcome.response)
                ticket.store(target, outcome.response)
            return outcome
        assert failure is not None
        raise failure

    def _attempt(self, ctx: RequestContext, target: Target, req: ChatRequest, headers: dict[str, str],
                 deadline: float, ticket: Ticket, span: Any) -> Outcome:
        if not req.stream:
            resp = self.caller.complete(target, req, headers, deadline)
            return Outcome(response=resp)
        stream = self.caller.stream(target, req, headers, deadline)
        try:
            first = next(stream)  # headers and first event in: from here on we are committed
        except StopIteration:
            stream.close()
            raise UpstreamError(f"Provider {target.provider.name} sent an empty stream") from None
        except BaseException:
            stream.close()
            raise
        watched = WatchedStream(self.accounting, ctx, target, first, stream, ticket, span)
        return Outcome(events=watched, close=watched.close)


class WatchedStream:
    """A committed upstream stream: passes events through (and on to coalesced followers), accounts
    and caches a complete answer before its last event goes out, and ends the attempt exactly once.

    ``close()`` (called by the resource when the response is done, whether the
    stream finished, failed or the client left) stops the upstream connection,
    gives up the cache ticket if nothing was stored (a cut stream is never
    cached), records the attempt's duration and ends its span, even if
    iteration never started.
    """

    def __init__(self, accounting: Accounting, ctx: RequestContext, target: Target, first: StreamEvent,
                 stream: Any, ticket: Ticket, span: Any) -> None:
        self._accounting = accounting
        self._ctx = ctx
        self._target = target
        self._events = itertools.chain([first], stream)
        self._stream = stream
        self._ticket = ticket
        self._span = span
        self._acc = StreamAccumulator()
        self._started = time.monotonic()
        self._complete: ChatResponse | None = None
        self._error: str | None = None
        self._closed = False
        ticket.streaming_from(target)

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        try:
            ev = next(self._events)
        except GatewayError as err:
            self._error = error_kind(err)
            metrics.PROVIDER_ERRORS.labels(self._target.provider.name, self._error).inc()
            raise
        self._acc.feed(ev)
        whole = self._acc.response() if isinstance(ev, StreamEnd) else None
        self._ticket.publish(ev)
        if whole is not None:  # before the client sees the end: a client gone now still pays
            self._complete = whole
            self._accounting.upstream(self._ctx, self._target.provider.name, self._target.model, whole.usage)
            self._ticket.store(self._target, whole)
        return ev

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        self._ticket.abandon()
        target = self._target
        metrics.PROVIDER_DURATION.labels(target.provider.name, metrics.MODEL_LABELS(target.model)).observe(
            time.monotonic() - self._started)
        error = None if self._complete is not None else (self._error or "incomplete")
        Tracing.end_attempt(self._span, target, self._complete, error=error)

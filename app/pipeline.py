"""The ordered stages every chat request goes through, whatever its dialect.

    route (model -> targets)  ->  cache lookup (L1, L2, in-flight twin) -- hit --> answer
                              ->  upstream attempt per target, in order
    (fallback on failure)     ->  usage accounting, cache fill (complete answers only)

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

from app.cache.control import DEFAULT as CACHE_DEFAULT
from app.cache.control import CacheControl
from app.cache.stage import NO_TICKET, CacheStage, Ticket
from app.canonical import ChatRequest, ChatResponse, StreamEnd, StreamEvent
from app.context import RequestContext
from app.errors import GatewayError, UpstreamError, UpstreamRejected, UpstreamTimeout
from app.formats.stream import StreamAccumulator
from app.observability import metrics
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
                 cache: CacheStage | None = None) -> None:
        self.router = router
        self.caller = caller
        self.request_timeout = request_timeout
        self.cache = cache

    def run(self, ctx: RequestContext, req: ChatRequest, cache_control: CacheControl = CACHE_DEFAULT) -> Outcome:
        ctx.requested_model = req.model
        targets = self.router.resolve(req.model)
        deadline = deadline_from(self.request_timeout)
        served, ticket = (None, NO_TICKET) if self.cache is None else self.cache.begin(
            ctx, req, targets[0], cache_control, deadline)
        if served is not None:
            return Outcome(response=served.response, events=served.events)
        try:
            return self._call_upstream(ctx, req, targets, deadline, ticket)
        except BaseException:
            ticket.abandon()  # nothing to store; followers of this request go upstream themselves
            raise

    def _call_upstream(self, ctx: RequestContext, req: ChatRequest, targets: list[Target], deadline: float,
                       ticket: Ticket) -> Outcome:
        headers = {"x-request-id": ctx.request_id}
        if ctx.traceparent:
            headers["traceparent"] = ctx.traceparent
        failure: GatewayError | None = None
        for target in targets:
            ctx.attempts += 1
            started = time.monotonic()
            try:
                outcome = self._attempt(ctx, target, req, headers, deadline, ticket)
            except GatewayError as err:
                metrics.PROVIDER_ERRORS.labels(target.provider.name, error_kind(err)).inc()
                metrics.PROVIDER_DURATION.labels(target.provider.name, target.model).observe(
                    time.monotonic() - started)
                if not should_fall_back(err):
                    raise
                failure = err
                continue
            if target is not targets[0]:
                metrics.FALLBACKS.labels(targets[0].provider.name, target.provider.name).inc()
            ctx.provider, ctx.model = target.provider.name, target.model
            if outcome.response is not None:
                metrics.PROVIDER_DURATION.labels(target.provider.name, target.model).observe(
                    time.monotonic() - started)
                self._account(ctx, target, outcome.response)
                ticket.store(target, outcome.response)
            return outcome
        assert failure is not None
        raise failure

    def _attempt(self, ctx: RequestContext, target: Target, req: ChatRequest, headers: dict[str, str],
                 deadline: float, ticket: Ticket) -> Outcome:
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
        events = self._watch(ctx, target, itertools.chain([first], stream), ticket)

        def close() -> None:
            stream.close()
            ticket.abandon()

        return Outcome(events=events, close=close)

    def _watch(self, ctx: RequestContext, target: Target, events: Iterator[StreamEvent],
               ticket: Ticket) -> Iterator[StreamEvent]:
        """Pass events through (and on to coalesced followers), assembling the answer so a
        complete stream is accounted and cached before its last event goes out; a cut one is not."""
        acc = StreamAccumulator()
        started = time.monotonic()
        ticket.streaming_from(target)
        try:
            for ev in events:
                acc.feed(ev)
                whole = acc.response() if isinstance(ev, StreamEnd) else None
                ticket.publish(ev)
                if whole is not None:
                    self._account(ctx, target, whole)
                    ticket.store(target, whole)
                yield ev
        except GatewayError as err:
            metrics.PROVIDER_ERRORS.labels(target.provider.name, error_kind(err)).inc()
            raise
        finally:
            ticket.abandon()
            metrics.PROVIDER_DURATION.labels(target.provider.name, target.model).observe(
                time.monotonic() - started)

    def _account(self, ctx: RequestContext, target: Target, resp: ChatResponse) -> None:
        ctx.usage = resp.usage
        name, model = target.provider.name, target.model
        metrics.TOKENS.labels(name, model, "prompt").inc(resp.usage.input_tokens)
        metrics.TOKENS.labels(name, model, "completion").inc(resp.usage.output_tokens)

"""The ordered stages every chat request goes through, whatever its dialect.

    route (model -> targets)  ->  cache lookup (L1, L2, in-flight twin) -- hit --> answer
                              ->  upstream attempts per target, in order
    (retries, then fallback)  ->  usage accounting (tokens, cost, client spend),
                                  cache fill (complete answers only)

Each target is tried while its provider's circuit breaker lets attempts
through; a failed attempt is retried on the same target as the retry policy
says (backoff, ``retry-after``, all inside ``REQUEST_TIMEOUT``), then the next
target takes over. A request whose every target is behind an open breaker is
answered 503 at once, with ``retry-after``.

The cache lookup and each attempt get their own span (when tracing is on);
an attempt's span context is what goes upstream as ``traceparent``.

Streams are decided before the first byte goes to the client: the provider's
headers and first event are awaited inside the attempt, so a provider that
fails early is retried or replaced silently; after that, a failure becomes an
error event in the stream. The caller (a resource) only renders what comes back.

From the cache miss until the answer is in (a stream: its first event), the
client's socket is watched (``DisconnectWatcher``): a client that hangs up
cuts the attempt in progress (``UpstreamAbort``) and the request ends with
``ClientGone``; no retry, fallback, breaker failure or provider error follows.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from app.accounting.cost import PriceTable
from app.accounting.usage import Accounting
from app.cache.control import DEFAULT as CACHE_DEFAULT
from app.cache.control import CacheControl
from app.cache.entry import Relayed
from app.cache.stage import NO_TICKET, CacheStage, Ticket
from app.context import RequestContext
from app.errors import (
    RESET,
    GatewayError,
    InvalidRequest,
    NoHealthyProvider,
    UpstreamError,
    UpstreamTimeout,
    classify,
)
from app.formats.canonical import ChatRequest, ChatResponse, StreamEnd, StreamEvent
from app.formats.reasoning import billable_max_tokens
from app.formats.relay import CallerBody, RelayedEvent
from app.formats.stream import StreamAccumulator
from app.limits.budgets import BudgetReservations, Reservation
from app.observability import metrics
from app.observability.access import prompt_text
from app.observability.tracing import Tracing
from app.providers.balancer import Balancer
from app.providers.http import UpstreamAbort
from app.providers.routing import Router, Target
from app.providers.upstream import UpstreamCaller, deadline_from
from app.resilience.breaker import BreakerPolicy, Breakers, CircuitBreaker, Permit
from app.resilience.disconnects import CLIENT_GONE, ClientGone, DisconnectWatcher
from app.resilience.retry import RetryPolicy


def observe_attempt(target: Target, started: float) -> None:
    """One upstream attempt's time, failed or not, into llm_edge_provider_duration_seconds."""
    metrics.observer(metrics.PROVIDER_DURATION, target.provider.name, metrics.MODEL_LABELS(target.model))(
        time.monotonic() - started)


@dataclass(slots=True)
class Answered:
    """The attempt that answered: what its call returned, its span, its start (``attempt_target``)."""

    result: Any
    span: Any
    started: float


def unanswered(failure: GatewayError | None, deadline: float, timed_out: str, waits: Iterable[float],
               paused: str) -> GatewayError:
    """Why no target answered (chat, count_tokens, embeddings): the last failure; else the deadline passed
    (``timed_out``); else every breaker or cooldown held the targets back (``paused``, with a ``retry-after``
    of the soonest of ``waits``, at least a second)."""
    if failure is not None:
        return failure
    if time.monotonic() >= deadline:
        return UpstreamTimeout(timed_out)
    wait = max(1.0, min(waits))
    return NoHealthyProvider(f"{paused}; try again in {round(wait)}s", retry_after=wait)


def attempt_target(ctx: RequestContext, target: Target, breaker: CircuitBreaker, deadline: float,
                   retry: RetryPolicy, sleep: Callable[[float], None], tracing: Tracing, req: ChatRequest,
                   headers: Mapping[str, str], call: Callable[[dict[str, str], Any, Permit], Any],
                   abort: UpstreamAbort | None = None) -> tuple[Answered | None, GatewayError | None]:
    """Attempts at one target while its breaker allows and the retry policy says so (chat and count_tokens).

    Each attempt gets its own span and a copy of ``headers`` (with its ``traceparent``) for ``call(headers,
    span, permit)``, is recorded by the breaker, and a failed one by the error metric and its duration. Gives
    the attempt that answered, or None and the last failure (None if the breaker let none through); an
    error that is the caller's to fix is raised at once (no other target would answer otherwise). An attempt
    cut by ``abort`` (the client hung up) raises ``ClientGone`` and counts as nothing against the provider.
    """
    failure: GatewayError | None = None
    attempt = 0
    while time.monotonic() < deadline and (permit := breaker.allow()) is not None:
        attempt += 1
        ctx.attempts += 1
        sent = dict(headers)
        span = tracing.start_attempt(ctx, target, req, sent)
        started = time.monotonic()
        try:
            result = call(sent, span, permit)
        except ClientGone:
            _cut(span, target, breaker, permit)
        except GatewayError as err:
            if abort is not None and abort.gone:  # the failure is the cut, not the provider's
                _cut(span, target, breaker, permit)
            verdict = classify(err)
            breaker.record(permit, verdict.breaker)
            metrics.PROVIDER_ERRORS.labels(target.provider.name, verdict.error_type).inc()
            observe_attempt(target, started)
            Tracing.end_attempt(span, target, error=verdict.error_type)
            if not verdict.may_fall_back:
                raise
            failure = err
            pause = retry.pause(attempt, err, deadline - time.monotonic())
            if pause is None:
                break  # on to the next target
            metrics.RETRIES.labels(target.provider.name).inc()
            sleep(pause)
            continue
        except BaseException:
            breaker.record(permit, None)
            Tracing.end_attempt(span, target, error="internal")
            raise
        breaker.record(permit, True)
        return Answered(result, span, started), None
    return None, failure


class BudgetHolds:
    """Before a request goes upstream, hold its worst-case cost against its client's spend budgets.

    Worst case: the output allowance plus the input estimated from the upstream body's size
    (``PriceTable.worst_case_cents``), at the dearest target. The allowance is what each target
    may really bill: ``max_tokens`` (else ``DEFAULT_MAX_TOKENS``), raised for a Claude target by the
    thinking budget an OpenAI caller's ``reasoning_effort`` becomes (``billable_max_tokens``).
    """

    def __init__(self, reservations: BudgetReservations, prices: PriceTable,
                 budgets_of: Callable[[str], Mapping[str, float]], default_max_tokens: int) -> None:
        self.reservations = reservations
        self.prices = prices
        self.budgets_of = budgets_of
        self.default_max_tokens = default_max_tokens

    def reserve(self, ctx: RequestContext, req: ChatRequest, targets: tuple[Target, ...],
                body: bytes, source: CallerBody | None = None) -> Reservation | None:
        """The hold (None for a client without budgets); 429 ``insufficient_quota`` when a budget is used up."""
        budgets = self.budgets_of(ctx.client_id)
        if not budgets:
            return None
        limit = req.max_tokens or self.default_max_tokens
        effort = None
        if req.source_format == "openai":  # read from the body: a relayed request's summary has no extra
            effort = source.body.get("reasoning_effort") if source is not None else req.extra.get("reasoning_effort")
        cents = max((self.prices.worst_case_cents(
            [(t.provider.name, t.model)],
            billable_max_tokens(effort, limit) if effort is not None and t.provider.type == "anthropic" else limit,
            len(body)) for t in targets), default=0.0)
        return self.reservations.reserve(ctx.client_id, budgets, cents)


@dataclass(slots=True)
class Outcome:
    """What the pipeline hands back: a response, or stream events (canonical, or ``RelayedEvent``s).

    ``raw``: a relayed answer's JSON bytes as the provider sent them (``response`` is what they say).
    """

    response: ChatResponse | None = None
    events: Iterator[StreamEvent | RelayedEvent] | None = None
    raw: bytes | None = None
    close: Callable[[], None] = field(default=lambda: None)
    abort: Callable[[], None] = field(default=lambda: None)  # any thread: stop the upstream read now


class Pipeline:
    def __init__(self, router: Router, caller: UpstreamCaller, request_timeout: float,
                 cache: CacheStage | None = None, *, accounting: Accounting,
                 tracing: Tracing | None = None, log_prompts: bool = False, retry: RetryPolicy | None = None,
                 breakers: Breakers | None = None, sleep: Callable[[float], None] = time.sleep,
                 holds: BudgetHolds | None = None, watcher: DisconnectWatcher | None = None,
                 balancer: Balancer | None = None) -> None:
        self.router = router
        self.caller = caller
        self.request_timeout = request_timeout
        self.cache = cache
        self.accounting = accounting
        self.tracing = tracing or Tracing()
        self.log_prompts = log_prompts
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or Breakers(router.providers, BreakerPolicy())
        self.sleep = sleep
        self.holds = holds
        self.watcher = watcher or DisconnectWatcher()
        self.balancer = balancer or Balancer(router.groups())
        # A deployment that is not its group's last gets one attempt: a retry goes to the next deployment.
        self._one_try = dataclasses.replace(self.retry, attempts=1)

    def run(self, ctx: RequestContext, req: ChatRequest, cache_control: CacheControl = CACHE_DEFAULT,
            client: Any = None, source: CallerBody | None = None) -> Outcome:
        """The answer, or its stream; ``client``: the caller's socket, watched while upstream is awaited;
        ``source``: the caller's body as it came, relayed to the targets that speak its dialect (``req`` is
        then its summary, and its canonical request is parsed only if a target translates).

        Raises ``ClientGone`` when the client hung up before the answer was in.
        """
        ctx.requested_model = req.model
        if self.log_prompts:
            ctx.prompt = prompt_text(req if source is None else source.parsed_if_possible())
        targets = self.router.resolve(req.model)
        relayed = source if source is not None and targets[0].provider.speaks(source.dialect) else None
        first_body: bytes | None = None
        if relayed is None:
            if source is not None:
                req = source.canonical()  # parsed now, and only now: the primary translates
            # Translated before the cache and the attempts: a request the primary's format cannot
            # express is the caller's 400, never a cache miss, an attempt or a provider error.
            # (A relayed body was checked when it was read; its bytes are made for its first attempt.)
            first_body = self.caller.payload(targets[0], req, source)
        deadline = deadline_from(self.request_timeout)
        served, ticket = None, NO_TICKET
        if self.cache is not None and ctx.span is None:  # not traced: no span to open (nor its context manager)
            served, ticket = self.cache.begin(ctx, req, targets[0], cache_control, deadline, relayed)
        elif self.cache is not None:
            with self.tracing.cache_lookup(ctx) as span:
                served, ticket = self.cache.begin(ctx, req, targets[0], cache_control, deadline, relayed)
                if span is not None:
                    span.set_attribute("llm_edge.cache", ctx.cache)
        if served is not None:
            if relayed is None:  # the entry answers this request's translation: it left out the same fields
                ctx.dropped = req.dropped_by(targets[0].provider.type)
            return Outcome(response=served.response, events=served.events, raw=served.raw)
        hold: Reservation | None = None
        abort = UpstreamAbort()
        stop_watching = self.watcher.watch(client, abort.abort)
        try:
            try:
                if first_body is None:
                    first_body = self.caller.payload(targets[0], req, source)
                if self.holds is not None:
                    hold = self.holds.reserve(ctx, req, targets, first_body, source)
                outcome = self._call_upstream(ctx, req, self.balancer.order(targets), deadline, ticket, first_body,
                                              hold, abort, source, targets)
            finally:
                stop_watching()
                gone = abort.finish()
            if gone and outcome.events is not None:  # its connection may be cut: the client left as it began
                outcome.close()
                raise ClientGone()
            return outcome
        except BaseException:
            ticket.abandon()  # nothing to store; followers of this request go upstream themselves
            if hold is not None:
                hold.release()  # no answer: nothing is spent (a no-op when it was settled)
            raise

    def _call_upstream(self, ctx: RequestContext, req: ChatRequest, targets: tuple[Target, ...], deadline: float,
                       ticket: Ticket, first_body: bytes, hold: Reservation | None = None,
                       abort: UpstreamAbort | None = None, source: CallerBody | None = None,
                       configured: tuple[Target, ...] = ()) -> Outcome:
        """``targets``: in the order tried (deployments ordered, cooled-down ones left out); ``configured``: as
        resolved (``first_body`` is the first of these's; the answer's cache entry and the metrics' primary)."""
        configured = configured or targets
        failure: GatewayError | None = None
        for n, target in enumerate(targets):
            try:  # each target relays or translates by its own wire format
                body = first_body if target is configured[0] else self.caller.payload(target, req, source)
            except InvalidRequest as err:  # a fallback that cannot express the request is skipped
                failure = failure or err
                continue
            relay = source.dialect if source is not None and target.provider.speaks(source.dialect) else None
            breaker = self.breakers[target.breaker_name]
            headers = {"x-request-id": ctx.request_id}
            if ctx.forward is not None:
                headers.update(ctx.forward.get(target.provider.type, ()))

            def call(headers: dict[str, str], span: Any, permit: Permit, target: Target = target,
                     body: bytes = body, breaker: CircuitBreaker = breaker, relay: str | None = relay) -> Outcome:
                def attempt() -> Outcome:
                    return self._attempt(ctx, target, req, body, headers, deadline, ticket, span, breaker, permit,
                                         hold, abort, relay)

                return attempt() if target.group is None else self.balancer.track(target, attempt)

            more_deployments = target.group is not None and n + 1 < len(targets) and \
                targets[n + 1].group == target.group
            retry = self._one_try if more_deployments else self.retry
            answered, err = attempt_target(ctx, target, breaker, deadline, retry, self.sleep, self.tracing,
                                           req, headers, call, abort)
            failure = err or failure
            if answered is None:
                continue
            outcome: Outcome = answered.result
            if target.group != configured[0].group or (target.group is None and target is not configured[0]):
                metrics.FALLBACKS.labels(configured[0].provider.name, target.provider.name).inc()
            ctx.provider, ctx.model, ctx.deployment = target.provider.name, target.model, target.deployment
            if relay is None:  # translated: what it left out of the caller's body (a relay leaves out nothing)
                ctx.dropped = (req if source is None else source.canonical()).dropped_by(target.provider.type)
            if outcome.response is not None:
                observe_attempt(target, answered.started)
                self.accounting.upstream(ctx, target.provider.name, target.model, outcome.response.usage, hold)
                Tracing.end_attempt(answered.span, target, outcome.response)
                kept = None if relay is None or outcome.raw is None else Relayed(relay, False, outcome.raw)
                ticket.store(target, outcome.response, kept)
            return outcome
        waits = [self.breakers[t.breaker_name].retry_after() for t in targets]
        if len(targets) < len(configured):  # deployments cooling down were left out
            waits.append(self.balancer.retry_after(t for t in configured if t not in targets))
        providers = ", ".join(dict.fromkeys(t.breaker_name for t in configured))
        raise unanswered(failure, deadline, f"No provider answered for model '{req.model}' within REQUEST_TIMEOUT",
                         waits, f"Every provider for model '{req.model}' is failing and paused by its circuit "
                                f"breaker or cooldown ({providers})")

    def _attempt(self, ctx: RequestContext, target: Target, req: ChatRequest, body: bytes,
                 headers: dict[str, str], deadline: float, ticket: Ticket, span: Any, breaker: CircuitBreaker,
                 permit: Permit, hold: Reservation | None = None, abort: UpstreamAbort | None = None,
                 relay: str | None = None) -> Outcome:
        note = ctx.note_upstream_headers
        if not req.stream:
            if relay is None:
                return Outcome(response=self.caller.complete(target, req, headers, deadline, body, abort, note))
            resp, raw = self.caller.complete_raw(target, req, headers, deadline, body, abort, note, relay)
            return Outcome(response=resp, raw=raw)
        stream = self.caller.stream(target, req, headers, deadline, body, abort, note, relay)
        try:
            first = next(stream)  # headers and first event in: from here on we are committed
        except StopIteration:
            stream.close()
            raise UpstreamError(f"Provider {target.provider.name} sent an empty stream", failure=RESET) from None
        except BaseException:
            stream.close()
            raise
        watched = WatchedStream(self.accounting, ctx, target, first, stream, ticket, span, breaker, permit, hold,
                                relay)
        return Outcome(events=watched, close=watched.close, abort=stream.abort)


def _cut(span: Any, target: Target, breaker: CircuitBreaker, permit: Permit) -> NoReturn:
    """An attempt cut because its client hung up: the breaker hears nothing, no provider error is counted."""
    breaker.record(permit, None)
    Tracing.end_attempt(span, target, error=CLIENT_GONE)
    raise ClientGone() from None


class WatchedStream:
    """A committed upstream stream: passes events through (and on to coalesced followers), accounts
    and caches a complete answer before its last event goes out, and ends the attempt exactly once.

    A relayed stream's items are ``RelayedEvent``s (the canonical events the observer read in each are
    accounted) and ``bytes`` (reads it did not need to look into); the provider's bytes are what the cache
    keeps (``relay``: their dialect).

    ``close()`` (called by the resource when the response is done, whether the
    stream finished, failed or the client left) stops the upstream connection,
    gives up the cache ticket if nothing was stored (a cut stream is never
    cached), records the attempt's duration and ends its span, even if
    iteration never started. A provider that breaks the stream counts against
    its breaker. The budget hold settles to the answer's cost at its end, or is released by ``close()``.
    """

    def __init__(self, accounting: Accounting, ctx: RequestContext, target: Target, first: StreamEvent,
                 stream: Any, ticket: Ticket, span: Any, breaker: CircuitBreaker, permit: Permit,
                 hold: Reservation | None = None, relay: str | None = None) -> None:
        self._accounting = accounting
        self._ctx = ctx
        self._target = target
        self._events = itertools.chain([first], stream)
        self._stream = stream
        self._ticket = ticket
        self._span = span
        self._breaker = breaker
        self._permit = permit
        self._hold = hold
        self._relay = relay
        self._raw: list[bytes] = []
        self._acc = StreamAccumulator()
        self._started = time.monotonic()
        self._complete: ChatResponse | None = None
        self._error: str | None = None
        self._closed = False
        ticket.streaming_from(target)

    def __iter__(self) -> Iterator[bytes | StreamEvent | RelayedEvent]:
        """One generator over the attempt's events: text passed on unread (``bytes``) costs a list append,
        and a publish when the request has a flight."""
        flight = self._ticket.flight
        keep = self._raw.append
        publish = None if flight is None else flight.add
        try:
            for ev in self._events:
                if type(ev) is bytes:  # a relayed read the observer had no need to look into
                    keep(ev)
                    if publish is not None:  # Flight.publish, written out
                        publish(ev)
                        if flight.waiting:
                            flight.wake()
                else:
                    self._observe(ev)
                yield ev
        except GatewayError as err:
            verdict = classify(err)
            self._breaker.record(self._permit, verdict.breaker)
            self._error = verdict.error_type
            metrics.PROVIDER_ERRORS.labels(self._target.provider.name, self._error).inc()
            raise

    def _observe(self, ev: StreamEvent | RelayedEvent) -> None:
        """Account what the observer read; the complete answer is accounted and cached before its end goes out
        (a client gone now still pays)."""
        whole = None
        if isinstance(ev, RelayedEvent):
            self._raw.append(ev.raw)
            for inner in ev.events:
                self._acc.feed(inner)
                if isinstance(inner, StreamEnd):
                    whole = self._acc.response()
        else:
            self._acc.feed(ev)
            whole = self._acc.response() if isinstance(ev, StreamEnd) else None
        self._ticket.publish(ev)
        if whole is not None:
            self._complete = whole
            self._accounting.upstream(self._ctx, self._target.provider.name, self._target.model, whole.usage,
                                      self._hold)
            kept = None if self._relay is None else Relayed(self._relay, True, b"".join(self._raw))
            self._ticket.store(self._target, whole, kept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        self._ticket.abandon()
        if self._hold is not None:
            self._hold.release()  # cut, failed or the client left before the end: a no-op once settled
        target = self._target
        observe_attempt(target, self._started)
        error = None if self._complete is not None else (self._error or "incomplete")
        Tracing.end_attempt(self._span, target, self._complete, error=error)

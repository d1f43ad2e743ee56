"""The cache as a pipeline stage: look up before the upstream call, store after it.

``CacheStage.begin`` runs after route resolution (the key needs the resolved
target) and either *serves* the request (an L1 or L2 hit, or the answer of an
identical request in progress in this worker) or hands back a ``Ticket``. The
pipeline then calls upstream and, with the ticket, publishes stream events to
followers, stores the answer once it is complete (``store``), or gives up on
it (``abandon``, on any failure or cut stream). Nothing incomplete is stored.

A served request is answered by provider ``cache`` with the original usage,
costs nothing, and its saving is recorded against the provider and model
that produced the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from app.cache.coalesce import Coalescer, Flight
from app.cache.control import CacheControl
from app.cache.entry import CachedAnswer, Relayed
from app.cache.keys import cache_key, cache_scope, relay_key
from app.cache.tiered import TieredCache
from app.context import RequestContext, Step, defer
from app.formats.canonical import ChatRequest, ChatResponse, StreamEnd, StreamEvent, Usage
from app.formats.relay import CallerBody, RelayedEvent, replay_stream
from app.formats.stream import events_from_response
from app.observability import metrics
from app.providers.routing import Target

# Counts what a served answer saved: (ctx, provider, model, usage) -> US cents. The observability
# layer's ``Accounting.cache_hit`` has this shape; it prices the usage and adds the savings metric.
SavingsHook = Callable[[RequestContext, str, str, Usage], float]


@dataclass(slots=True)
class Served:
    """An answer that needs no upstream call: a response (``raw``: its relayed bytes), or events for a stream."""

    response: ChatResponse | None = None
    events: Iterator[bytes | StreamEvent | RelayedEvent] | None = None
    raw: bytes | None = None


class Ticket:
    """A request's business with the cache after a miss; every method is safe to call twice."""

    __slots__ = ("_later", "_open", "_tiers", "control", "flight", "key")

    def __init__(self, tiers: TieredCache | None, key: str | None, control: CacheControl,
                 flight: Flight | None, later: Callable[[Step], None] | None = None) -> None:
        self._tiers = tiers
        self.key = key
        self.control = control
        self.flight = flight
        self._later = later  # runs the L2 fill once the response is out (app/http/app.py)
        self._open = True

    def streaming_from(self, target: Target) -> None:
        """The upstream stream has started: followers may tail it (and name its provider)."""
        if self.flight is not None:
            self.flight.origin = (target.provider.name, target.model)

    def publish(self, event: bytes | StreamEvent | RelayedEvent) -> None:
        if self.flight is not None:
            self.flight.publish(event)

    def store(self, target: Target, response: ChatResponse, relayed: Relayed | None = None) -> None:
        """The complete answer (``relayed``: with the provider's bytes): into the cache (unless ``no-store``),
        and to any followers."""
        if not self._open:
            return
        self._open = False
        answer = CachedAnswer(response, target.provider.name, target.model, relayed)
        if self._tiers is not None and self.key is not None and self.control.store:
            self._tiers.put(self.key, answer, self.control.ttl, later=self._later)
        if self.flight is not None:
            self.flight.finish(answer)

    def abandon(self) -> None:
        if self._open:
            self._open = False
            if self.flight is not None:
                self.flight.fail()


NO_TICKET = Ticket(None, None, CacheControl(store=False), None)


class CacheStage:
    def __init__(self, tiers: TieredCache, *, namespace: str | None = None, coalescer: Coalescer | None = None,
                 savings: SavingsHook | None = None) -> None:
        self.tiers = tiers
        self.namespace = namespace
        self.coalescer = coalescer
        self.savings = savings

    def begin(self, ctx: RequestContext, req: ChatRequest, target: Target, control: CacheControl,
              deadline: float, relayed: CallerBody | None = None) -> tuple[Served | None, Ticket]:
        """Serve the request from the cache, or return the ticket for its upstream call.

        ``relayed``: the caller's body, when ``target`` relays it; the key is then the body's own.
        """
        if not self.tiers.enabled or (not control.store and not control.lookup):
            return None, NO_TICKET  # ctx.cache stays "bypass"
        key = self._key(ctx, req, target, relayed)
        if not control.lookup:  # no-cache: fresh answer, stored
            return None, self._ticket(ctx, key, control, None)
        answer = self.tiers.get_l1(key)
        if answer is not None:
            return self._serve(ctx, req, answer, "hit-l1"), NO_TICKET
        if self.coalescer is None:
            return self._lookup_l2(ctx, req, key, control, None)
        flight, leader = self.coalescer.join(key)
        if leader:
            try:
                answer = self.tiers.peek_l1(key)  # a flight for this key may have ended just now
                if answer is not None:
                    flight.finish(answer, "hit-l1")
                    return self._serve(ctx, req, answer, "hit-l1"), NO_TICKET
                return self._lookup_l2(ctx, req, key, control, flight)
            except BaseException:
                flight.fail()
                raise
        self.tiers.missed_l1_only()
        served = self._follow(ctx, req, flight, deadline)
        if served is not None:
            return served, NO_TICKET
        ctx.cache = "miss"  # the leader failed: this request calls upstream on its own
        return None, self._ticket(ctx, key, control, None)

    def _ticket(self, ctx: RequestContext, key: str, control: CacheControl, flight: Flight | None) -> Ticket:
        """A miss's ticket, whose L2 fill waits until the response is out (``app/http/app.py``)."""
        return Ticket(self.tiers, key, control, flight, partial(defer, ctx))

    def _key(self, ctx: RequestContext, req: ChatRequest, target: Target, relayed: CallerBody | None) -> str:
        """The cache key, remembered with the parsed body when this exact body was seen before."""
        scope = cache_scope(ctx.client_id, self.namespace)
        if relayed is not None:
            def derive() -> str:
                return relay_key(relayed.body, relayed.dialect, target, scope)
        else:
            def derive() -> str:
                return cache_key(req, target, scope)
        parsed = ctx.parsed
        if parsed is None or not parsed.owns(req):
            return derive()
        return parsed.cache_key(scope, target.provider.name, target.model, derive)

    def _lookup_l2(self, ctx: RequestContext, req: ChatRequest, key: str, control: CacheControl,
                   flight: Flight | None) -> tuple[Served | None, Ticket]:
        answer = self.tiers.get_l2(key)
        if answer is not None:
            if flight is not None:
                flight.finish(answer, "hit-l2")
            return self._serve(ctx, req, answer, "hit-l2"), NO_TICKET
        ctx.cache = "miss"
        return None, self._ticket(ctx, key, control, flight)

    def _serve(self, ctx: RequestContext, req: ChatRequest, answer: CachedAnswer, tier: str) -> Served:
        ctx.cache = tier
        ctx.provider = "cache" if tier != "miss" else answer.provider
        ctx.model = answer.model
        ctx.usage = answer.response.usage
        ctx.cost_cents = 0.0
        if self.savings is not None:
            self.savings(ctx, answer.provider, answer.model, answer.response.usage)
        relayed = answer.relayed
        if relayed is not None and relayed.dialect == ctx.dialect and relayed.stream == req.stream:
            if req.stream:  # the provider's events byte for byte, observed again (first token, usage)
                return Served(events=replay_stream(relayed.raw, relayed.dialect))
            return Served(response=answer.response, raw=relayed.raw)
        if req.stream:
            return Served(events=iter(events_from_response(answer.response)))
        return Served(response=answer.response)

    def _follow(self, ctx: RequestContext, req: ChatRequest, flight: Flight, deadline: float) -> Served | None:
        """The leader's answer or live stream; ``None`` when the leader failed before it had one."""
        if req.stream and flight.wait_started(deadline) == "live":
            metrics.CACHE_COALESCED.inc()
            ctx.cache = "miss"
            ctx.provider, ctx.model = flight.origin or (None, None)
            ctx.cost_cents = 0.0
            return Served(events=self._tail(ctx, flight, deadline))
        answer = flight.wait_answer(deadline)
        if answer is None:
            return None
        metrics.CACHE_COALESCED.inc()
        return self._serve(ctx, req, answer, flight.tier)

    def _tail(self, ctx: RequestContext, flight: Flight,
              deadline: float) -> Iterator[bytes | StreamEvent | RelayedEvent]:
        """A live follower's stream (the leader's own items: relayed bytes stay bytes); its usage and saving
        are known at the end."""
        for item in flight.follow(deadline):
            if type(item) is bytes:  # relayed text the leader's observer did not look into
                yield item
                continue
            for event in item.events if isinstance(item, RelayedEvent) else (item,):
                if isinstance(event, StreamEnd):
                    ctx.usage = event.usage
                    if self.savings is not None:
                        self.savings(ctx, ctx.provider or "", ctx.model or "", event.usage)
            yield item

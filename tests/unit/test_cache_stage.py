"""The cache stage: hits, misses, controls, tenant scope, savings and coalescing, with real tiers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.cache.coalesce import Coalescer
from app.cache.control import CacheControl
from app.cache.l1 import L1Cache
from app.cache.stage import NO_TICKET, CacheStage
from app.cache.tiered import TieredCache
from app.context import RequestContext
from app.formats.canonical import (
    ChatRequest,
    ChatResponse,
    Message,
    StreamEnd,
    StreamStart,
    TextBlock,
    TextDelta,
    Usage,
)
from app.formats.stream import events_from_response
from app.observability import metrics
from app.providers.routing import Provider, Target

pytestmark = pytest.mark.timeout(20)

TARGET = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "gpt-4o-mini")
REQUEST = ChatRequest(model="mini", messages=(Message("user", (TextBlock("capital of France?"),)),))
STREAM_REQUEST = ChatRequest(model="mini", messages=REQUEST.messages, stream=True)
RESPONSE = ChatResponse("chatcmpl-1", "gpt-4o-mini-2024", (TextBlock("Paris."),), "end_turn", usage=Usage(7, 2))
NORMAL = CacheControl()


def stage(**kw) -> CacheStage:
    return CacheStage(TieredCache(L1Cache(100, 1 << 20, 300), None), **kw)


def ctx(client: str = "anonymous") -> RequestContext:
    return RequestContext(request_id="r", endpoint="/v1/chat/completions", dialect="openai", client_id=client)


def later(seconds: float = 5) -> float:
    return time.monotonic() + seconds


def fill(cache: CacheStage, client: str = "anonymous", control: CacheControl = NORMAL) -> RequestContext:
    c = ctx(client)
    served, ticket = cache.begin(c, REQUEST, TARGET, control, later())
    assert served is None
    ticket.store(TARGET, RESPONSE)
    return c


def test_a_stored_answer_is_served_with_its_usage_at_no_cost():
    saved: list = []
    cache = stage(savings=lambda ctx, provider, model, usage: saved.append((ctx.request_id, provider, model, usage)))
    first = fill(cache)
    assert first.cache == "miss" and saved == []
    c = ctx()
    served, ticket = cache.begin(c, REQUEST, TARGET, NORMAL, later())
    assert served is not None and served.response == RESPONSE and ticket is NO_TICKET
    assert (c.cache, c.provider, c.model, c.usage, c.cost_cents) == ("hit-l1", "cache", "gpt-4o-mini", Usage(7, 2), 0)
    assert saved == [("r", "openai", "gpt-4o-mini", Usage(7, 2))]


def test_a_streaming_request_gets_the_answer_replayed_as_events():
    cache = stage()
    fill(cache)
    served, _ = cache.begin(ctx(), STREAM_REQUEST, TARGET, NORMAL, later())
    assert served is not None and served.response is None
    assert list(served.events) == events_from_response(RESPONSE)


def test_clients_never_see_each_others_answers_unless_a_namespace_is_shared():
    cache = stage()
    fill(cache, "acme")
    served, _ = cache.begin(ctx("globex"), REQUEST, TARGET, NORMAL, later())
    assert served is None
    assert cache.begin(ctx("acme"), REQUEST, TARGET, NORMAL, later())[0] is not None
    shared = stage(namespace="research")
    fill(shared, "acme")
    assert shared.begin(ctx("globex"), REQUEST, TARGET, NORMAL, later())[0] is not None


def test_no_store_neither_looks_up_nor_stores():
    cache = stage()
    fill(cache)
    c = ctx()
    served, ticket = cache.begin(c, REQUEST, TARGET, CacheControl(lookup=False, store=False), later())
    assert served is None and ticket is NO_TICKET and c.cache == "bypass"
    other = stage()
    fill(other, control=CacheControl(lookup=False, store=False))
    assert other.begin(ctx(), REQUEST, TARGET, NORMAL, later())[0] is None


def test_no_cache_skips_the_lookup_but_stores_the_fresh_answer():
    cache = stage()
    fill(cache)
    c = ctx()
    served, ticket = cache.begin(c, REQUEST, TARGET, CacheControl(lookup=False), later())
    assert served is None and c.cache == "bypass"
    fresh = ChatResponse("chatcmpl-2", "gpt-4o-mini-2024", (TextBlock("Paris!"),), "end_turn", usage=Usage(7, 2))
    ticket.store(TARGET, fresh)
    assert cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())[0].response == fresh


def test_an_abandoned_ticket_stores_nothing():
    cache = stage()
    _, ticket = cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())
    ticket.abandon()
    ticket.store(TARGET, RESPONSE)  # too late: a failed attempt stays failed
    assert cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())[0] is None


def test_with_both_tiers_off_everything_is_a_bypass():
    cache = CacheStage(TieredCache(L1Cache(0, 0, 0), None), coalescer=Coalescer())
    c = ctx()
    assert cache.begin(c, REQUEST, TARGET, NORMAL, later()) == (None, NO_TICKET) and c.cache == "bypass"


class CountingCoalescer(Coalescer):
    """A Coalescer that lets a test wait, without sleeping, until N followers have joined a flight."""

    def __init__(self) -> None:
        super().__init__()
        self.followers = threading.Semaphore(0)

    def join(self, key: str):
        flight, leads = super().join(key)
        if not leads:
            self.followers.release()
        return flight, leads

    def wait_followers(self, n: int) -> None:
        for _ in range(n):
            assert self.followers.acquire(timeout=5), "a follower never joined the flight"


def test_identical_concurrent_misses_wait_for_one_leader():
    coalescer = CountingCoalescer()
    cache = stage(coalescer=coalescer)
    leader_ctx = ctx()
    _, ticket = cache.begin(leader_ctx, REQUEST, TARGET, NORMAL, later())
    assert leader_ctx.cache == "miss" and ticket.flight is not None
    coalesced = metrics.CACHE_COALESCED._value.get()
    followers = [ctx() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(cache.begin, c, REQUEST, TARGET, NORMAL, later()) for c in followers]
        coalescer.wait_followers(4)
        assert not any(w.done() for w in waiting)
        ticket.store(TARGET, RESPONSE)
        results = [w.result(timeout=5) for w in waiting]
    assert all(served.response == RESPONSE and t is NO_TICKET for served, t in results)
    assert all((c.cache, c.provider, c.cost_cents) == ("miss", "openai", 0) for c in followers)
    assert metrics.CACHE_COALESCED._value.get() == coalesced + 4


def test_followers_of_a_failed_leader_go_upstream_themselves():
    coalescer = CountingCoalescer()
    cache = stage(coalescer=coalescer)
    _, ticket = cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())
    follower = ctx()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cache.begin, follower, REQUEST, TARGET, NORMAL, later())
        coalescer.wait_followers(1)
        ticket.abandon()
        served, own = waiting.result(timeout=5)
    assert served is None and own.flight is None and own.key == ticket.key and follower.cache == "miss"
    own.store(TARGET, RESPONSE)  # the follower's own answer is still stored
    assert cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())[0] is not None


def test_a_streaming_follower_tails_the_leaders_stream_live():
    saved: list = []
    cache = stage(coalescer=Coalescer(), savings=lambda ctx, provider, model, usage: saved.append(usage))
    _, ticket = cache.begin(ctx(), STREAM_REQUEST, TARGET, NORMAL, later())
    ticket.streaming_from(TARGET)
    events = [StreamStart("chatcmpl-1", "gpt-4o-mini-2024"), TextDelta(0, "Paris."),
              StreamEnd("end_turn", usage=Usage(7, 2))]
    ticket.publish(events[0])
    follower = ctx()
    served, _ = cache.begin(follower, STREAM_REQUEST, TARGET, NORMAL, later())
    assert served is not None and (follower.cache, follower.provider, follower.model) == (
        "miss", "openai", "gpt-4o-mini")
    received: list = []
    reader = threading.Thread(target=lambda: received.extend(served.events))
    reader.start()
    ticket.publish(events[1])
    ticket.publish(events[2])
    ticket.store(TARGET, RESPONSE)
    reader.join(5)
    assert received == events and follower.usage == Usage(7, 2) and saved == [Usage(7, 2)]


def test_a_json_follower_of_a_stream_gets_the_whole_answer():
    coalescer = CountingCoalescer()
    cache = stage(coalescer=coalescer)
    _, ticket = cache.begin(ctx(), STREAM_REQUEST, TARGET, NORMAL, later())
    ticket.streaming_from(TARGET)
    ticket.publish(StreamStart("chatcmpl-1", "gpt-4o-mini-2024"))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cache.begin, ctx(), REQUEST, TARGET, NORMAL, later())
        coalescer.wait_followers(1)
        assert not waiting.done()
        ticket.store(TARGET, RESPONSE)
        assert waiting.result(timeout=5)[0].response == RESPONSE


def test_a_late_streaming_follower_of_a_json_leader_gets_a_replay():
    coalescer = CountingCoalescer()
    cache = stage(coalescer=coalescer)
    _, ticket = cache.begin(ctx(), REQUEST, TARGET, NORMAL, later())
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cache.begin, ctx(), STREAM_REQUEST, TARGET, NORMAL, later())
        coalescer.wait_followers(1)
        ticket.store(TARGET, RESPONSE)
        served, _ = waiting.result(timeout=5)
    assert list(served.events) == events_from_response(RESPONSE)

"""The parse memo: a repeated body is parsed once (a big one kept as its summary), errors are never remembered,
keys stay per scope and target."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from app.cache.control import CacheControl
from app.cache.keys import cache_key, cache_scope, relay_key
from app.cache.l1 import L1Cache
from app.cache.stage import CacheStage
from app.cache.tiered import TieredCache
from app.context import RequestContext
from app.errors import InvalidRequest
from app.formats import openai as openai_codec
from app.formats.canonical import ChatRequest, ChatResponse, TextBlock, Usage
from app.formats.common import json_object
from app.formats.relay import CallerBody, RecalledBody, check_body
from app.http.resources.parse_memo import MAX_KEYS_PER_BODY, SUMMARY_BYTES, ParsedBody, ParseMemo, Summary
from app.providers.routing import Provider, Target
from tests.support.processes import ROOT

TARGET = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "gpt-4o-mini")
OTHER_TARGET = Target(Provider("vllm", "openai", "http://y", None, "", False), "llama")


def body(prompt: str = "capital of France?", **extra) -> bytes:
    return orjson.dumps({"model": "mini", "messages": [{"role": "user", "content": prompt}], **extra})


class CountingParse:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> ChatRequest:
        self.calls += 1
        return openai_codec.parse_request(json_object(raw))


def test_a_body_is_kept_the_second_time_it_is_seen_and_then_never_parsed_again():
    parse = CountingParse()
    memo = ParseMemo(parse)
    first, second = memo.parse(body()), memo.parse(body())
    assert parse.calls == 2 and len(memo) == 1
    assert first.request == second.request == openai_codec.parse_request(orjson.loads(body()))
    for _ in range(5):
        assert memo.parse(body()) is second
    assert parse.calls == 2


def test_different_bytes_are_different_entries_even_when_they_mean_the_same():
    parse = CountingParse()
    memo = ParseMemo(parse)
    spaced = b'{"model": "mini",  "messages": [{"role": "user", "content": "capital of France?"}]}'
    for raw in (body(), body(), spaced, spaced):
        memo.parse(raw)
    assert len(memo) == 2 and memo.parse(spaced).request == memo.parse(body()).request


def test_a_body_that_fails_raises_the_same_error_every_time_and_is_never_kept():
    parse = CountingParse()
    memo = ParseMemo(parse)
    for raw, message in ((b'{"model": "mini"', "not valid JSON"), (b"[1]", "must be a JSON object"),
                         (body(n=2), "'n' must be 1")):
        for _ in range(3):
            with pytest.raises(InvalidRequest, match=message):
                memo.parse(raw)
    assert parse.calls == 9 and len(memo) == 0


def test_the_memo_is_bounded_by_entries_and_evicts_the_least_recently_used():
    memo = ParseMemo(CountingParse(), max_entries=3)
    for i in range(5):
        memo.parse(body(f"q{i}"))
        memo.parse(body(f"q{i}"))
    assert len(memo) == 3
    parse = CountingParse()
    memo = ParseMemo(parse, max_entries=3)
    for raw in (body("a"), body("a"), body("b"), body("b"), body("a"), body("c"), body("c"), body("d"), body("d")):
        memo.parse(raw)
    calls = parse.calls
    memo.parse(body("a"))  # used recently, so "b" went first
    assert parse.calls == calls
    memo.parse(body("b"))
    assert parse.calls == calls + 1


def test_the_memo_is_bounded_by_bytes():
    parse = CountingParse()
    memo = ParseMemo(parse, max_bytes=64 * 1024)
    for i in range(8):  # each counted at four times its ~3 KB: at most five fit in 64 KiB
        raw = body(f"{i}" + "x" * 3000)
        memo.parse(raw)
        memo.parse(raw)
    assert len(memo) == 5
    too_big = body("y" * 8000)  # counted at ~32 KB, over a quarter of the budget: never kept
    calls = parse.calls
    for _ in range(3):
        memo.parse(too_big)
    assert parse.calls == calls + 3 and len(memo) == 5


def test_with_no_entries_allowed_every_body_is_parsed():
    parse = CountingParse()
    memo = ParseMemo(parse, max_entries=0)
    for _ in range(3):
        memo.parse(body())
    assert parse.calls == 3 and len(memo) == 0


def test_cache_keys_are_remembered_per_scope_and_target_and_match_the_derived_ones():
    memo = ParseMemo(CountingParse())
    memo.parse(body())
    parsed = memo.parse(body())
    derived: list[str] = []

    def key(scope: str, target: Target) -> str:
        def derive() -> str:
            derived.append(scope)
            return cache_key(parsed.request, target, scope)
        return parsed.cache_key(scope, target.provider.name, target.model, derive)

    a, b = cache_scope("alice", None), cache_scope("bob", None)
    assert key(a, TARGET) == key(a, TARGET) == cache_key(parsed.request, TARGET, a)
    assert key(b, TARGET) == cache_key(parsed.request, TARGET, b) != key(a, TARGET)
    assert key(a, OTHER_TARGET) == cache_key(parsed.request, OTHER_TARGET, a) != key(a, TARGET)
    assert derived == [a, b, a]


def test_past_the_key_limit_keys_are_derived_each_time_and_stay_right():
    memo = ParseMemo(CountingParse())
    parsed = memo.parse(body())
    scopes = [cache_scope(f"client-{i}", None) for i in range(MAX_KEYS_PER_BODY + 4)]
    for scope in scopes * 2:
        got = parsed.cache_key(scope, "openai", "gpt-4o-mini", lambda s=scope: cache_key(parsed.request, TARGET, s))
        assert got == cache_key(parsed.request, TARGET, scope)
    assert len(parsed.cache_keys) == MAX_KEYS_PER_BODY


def test_through_the_cache_stage_two_clients_with_the_same_body_never_share_an_answer():
    memo = ParseMemo(CountingParse())
    stage = CacheStage(TieredCache(L1Cache(100, 1 << 20, 300), None))
    answer = ChatResponse("chatcmpl-1", "gpt-4o-mini", (TextBlock("Paris."),), "end_turn", usage=Usage(7, 2))

    def ask(client: str) -> RequestContext:
        parsed = memo.parse(body())
        ctx = RequestContext(request_id="r", endpoint="/v1/chat/completions", dialect="openai", client_id=client,
                             parsed=parsed)
        served, ticket = stage.begin(ctx, parsed.request, TARGET, CacheControl(), time.monotonic() + 5)
        if served is None:
            ticket.store(TARGET, answer)
        return ctx

    assert [ask(c).cache for c in ("alice", "alice", "bob", "bob", "alice")] == [
        "miss", "hit-l1", "miss", "hit-l1", "hit-l1"]


def test_threads_parsing_the_same_bodies_all_get_the_right_request():
    memo = ParseMemo(CountingParse(), max_entries=8)
    raws = [body(f"question {i}") for i in range(16)]

    def work(i: int) -> bool:
        raw = raws[i % len(raws)]
        return memo.parse(raw).request.messages[0].content[0].text == f"question {i % len(raws)}"

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(4000)))
    assert len(memo) <= 8


class RelayParse:
    """What the chat resource's parse gives a relayable body: its summary and the body as it came."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> ParsedBody:
        self.calls += 1
        body = json_object(raw)
        check_body(body, "openai")
        source = CallerBody("openai", body, raw)
        return ParsedBody(source.request, source=source)


BIG_MEMO = 128 * 1024  # a quarter: 32 KiB per entry; a parsed 10 KB body counts 40 KB, its summary 10 KB + 8 KiB


def test_a_body_too_big_to_keep_parsed_is_kept_as_its_summary_and_never_parsed_again():
    parse = RelayParse()
    memo = ParseMemo(parse, max_bytes=BIG_MEMO)
    raw = body("x" * 10_000, stop=["END"])
    first, second = memo.parse(raw), memo.parse(raw)
    assert parse.calls == 2 and len(memo) == 1
    assert memo.bytes_used == len(raw) + SUMMARY_BYTES + len("mini") + len("END")
    hits = [memo.parse(raw) for _ in range(3)]
    assert parse.calls == 2
    for hit in hits:
        assert isinstance(hit.source, RecalledBody) and hit.source.raw is raw
        assert hit.request is second.request and hit.cache_keys is second.cache_keys and hit.owns(hit.request)
        assert hit.source.body == first.source.body and hit.source.canonical() == first.source.canonical()


def test_a_summarised_body_keeps_its_keys_per_scope_and_target():
    memo = ParseMemo(RelayParse(), max_bytes=BIG_MEMO)
    raw = body("x" * 10_000)
    memo.parse(raw)
    memo.parse(raw)
    derived: list[str] = []

    def key(scope: str, target: Target) -> str:
        parsed = memo.parse(raw)

        def derive() -> str:
            derived.append(scope)
            return relay_key(parsed.source.body, "openai", target, scope)
        return parsed.cache_key(scope, target.provider.name, target.model, derive)

    a, b = cache_scope("alice", None), cache_scope("bob", None)
    assert key(a, TARGET) == key(a, TARGET) != key(b, TARGET) == key(b, TARGET) != key(a, OTHER_TARGET)
    assert derived == [a, b, a]


def test_a_summarised_body_is_a_cache_hit_without_reading_its_bytes():
    memo = ParseMemo(RelayParse(), max_bytes=BIG_MEMO)
    stage = CacheStage(TieredCache(L1Cache(100, 1 << 20, 300), None))
    answer = ChatResponse("chatcmpl-1", "gpt-4o-mini", (TextBlock("Paris."),), "end_turn", usage=Usage(7, 2))
    raw = body("y" * 10_000)

    def ask() -> tuple[str, ParsedBody]:
        parsed = memo.parse(raw)
        ctx = RequestContext(request_id="r", endpoint="/v1/chat/completions", dialect="openai", client_id="c",
                             parsed=parsed)
        served, ticket = stage.begin(ctx, parsed.request, TARGET, CacheControl(), time.monotonic() + 5, parsed.source)
        if served is None:
            ticket.store(TARGET, answer)
        return ctx.cache, parsed

    assert [ask()[0] for _ in range(3)] == ["miss", "hit-l1", "hit-l1"]
    cache, parsed = ask()
    assert cache == "hit-l1" and isinstance(parsed.source, RecalledBody)
    with pytest.raises(AttributeError):  # its body slot was never filled: nothing parsed the bytes
        CallerBody.body.__get__(parsed.source, CallerBody)


def test_summaries_count_their_bytes_within_the_budget_and_the_biggest_are_not_kept():
    parse = RelayParse()
    memo = ParseMemo(parse, max_bytes=BIG_MEMO)
    raws = [body(f"{i} " + "x" * 10_000) for i in range(12)]
    for raw in raws:
        memo.parse(raw)
        memo.parse(raw)
    assert 0 < len(memo) < len(raws) and memo.bytes_used <= BIG_MEMO
    kept = raws[-len(memo):]  # the least recently used went first
    assert memo.bytes_used == sum(len(raw) + SUMMARY_BYTES + len("mini") for raw in kept)
    calls = parse.calls
    for raw in kept:
        memo.parse(raw)
    assert parse.calls == calls
    too_big = body("z" * 30_000)  # 30 KB + 8 KiB is over a quarter of the budget
    calls = parse.calls
    for _ in range(3):
        memo.parse(too_big)
    assert parse.calls == calls + 3


def test_a_request_that_is_its_whole_parse_is_not_summarised():
    memo = ParseMemo(CountingParse(), max_bytes=BIG_MEMO)  # a ChatRequest with its messages: no summary
    raw = body("x" * 10_000)
    for _ in range(3):
        memo.parse(raw)
    assert len(memo) == 0


def measure_summary() -> tuple[int, int]:
    """(bytes a summary with all its keys takes by tracemalloc, the bytes it is counted as), in this process."""
    raw = body("x" * 10_000)  # made before counting: the entry's key, counted apart as its length
    target = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "m" * 64)

    def summary_with_all_keys(client: str) -> Summary:
        summary = Summary.of(RelayParse()(raw))
        assert summary is not None
        for i in range(MAX_KEYS_PER_BODY):  # scopes of the longest client ids
            scope = cache_scope(f"{i:04d}" + client * 60, None)
            summary.cache_keys[(scope, target.provider.name, target.model)] = relay_key(
                {"model": "mini"}, "openai", target, scope)
        return summary

    summary_with_all_keys("d")  # first-use allocations (caches, interned names) are not the summary's
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        summary = summary_with_all_keys("c")
        gc.collect()
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return taken, summary.size


def test_a_summary_with_all_its_keys_takes_less_than_it_is_counted():
    """Counted in a fresh interpreter: tracemalloc sees every thread's allocations, and threads other tests
    left running added up to 15 KiB to the count inside the whole suite."""
    out = subprocess.run([sys.executable, "-c", "from tests.unit.test_parse_memo import measure_summary as m; "
                          "print(*m())"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    taken, counted = int(out[0]), int(out[1])
    assert 6 * 1024 < taken < counted

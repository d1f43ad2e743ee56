"""The parse memo: a repeated body is parsed once, errors are never remembered, keys stay per scope and target."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from app.cache.control import CacheControl
from app.cache.keys import cache_key, cache_scope
from app.cache.l1 import L1Cache
from app.cache.stage import CacheStage
from app.cache.tiered import TieredCache
from app.context import RequestContext
from app.errors import InvalidRequest
from app.formats import openai as openai_codec
from app.formats.canonical import ChatRequest, ChatResponse, TextBlock, Usage
from app.formats.common import json_object
from app.http.resources.parse_memo import MAX_KEYS_PER_BODY, ParseMemo
from app.providers.routing import Provider, Target

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

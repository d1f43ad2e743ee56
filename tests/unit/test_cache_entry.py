"""Stored answers: byte round trip (small and compressed), relayed bytes with full usage and thinking,
entries of the earlier layouts still read, and garbage read as a miss."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cache.entry import COMPRESS_MIN_BYTES, CachedAnswer, Relayed, decode, encode, pack, serialize
from app.formats.canonical import ChatResponse, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock, Usage

json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
blocks = st.one_of(
    st.builds(TextBlock, st.text(max_size=3000)),
    st.builds(ToolUseBlock, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20),
              st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
)
responses = st.builds(
    ChatResponse,
    id=st.text(min_size=1, max_size=30),
    model=st.text(min_size=1, max_size=30),
    content=st.lists(blocks, max_size=4).map(tuple),
    stop_reason=st.sampled_from([None, "end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]),
    stop_sequence=st.none() | st.text(max_size=10),
    usage=st.builds(Usage, st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7)),
    created=st.integers(0, 2**32),
)


@given(responses, st.sampled_from(["openai", "anthropic", "local"]), st.text(min_size=1, max_size=40))
def test_an_answer_comes_back_exactly(response, provider, model):
    answer = CachedAnswer(response, provider, model)
    data, size = encode(answer)
    decoded = decode(data)
    assert decoded is not None
    assert decoded[0] == answer and decoded[1] == size


def test_large_answers_are_compressed_and_small_ones_are_not():
    small = CachedAnswer(ChatResponse("id", "m", (TextBlock("hi"),), "end_turn"), "openai", "m")
    big = CachedAnswer(ChatResponse("id", "m", (TextBlock("word " * 2000),), "end_turn"), "openai", "m")
    small_data, _ = encode(small)
    big_data, big_size = encode(big)
    assert small_data[:1] == b"j"
    assert big_data[:1] == b"z" and big_size > COMPRESS_MIN_BYTES and len(big_data) < big_size / 5
    assert decode(big_data)[0] == big


FULL_USAGE = Usage(3550, 300, cache_read_tokens=2000, cache_write_tokens=1500, cache_write_1h_tokens=500,
                   reasoning_tokens=120, web_search_requests=2, web_fetch_requests=1)
THOUGHTFUL = ChatResponse("msg_1", "claude", (ThinkingBlock("hmm", "sig=="), RedactedThinkingBlock("opaque"),
                                              TextBlock("4")), "end_turn", usage=FULL_USAGE, created=7)


@pytest.mark.parametrize("raw", [b"", b'{"id": "msg_1"}', b"event: ping\ndata: {}\n\n" * 200])
@pytest.mark.parametrize("stream", [False, True])
def test_a_relayed_entry_keeps_full_usage_thinking_and_the_providers_bytes(raw, stream):
    answer = CachedAnswer(THOUGHTFUL, "anthropic", "claude", Relayed("anthropic", stream, raw))
    assert decode(encode(answer)[0])[0] == answer


@pytest.mark.parametrize("relayed", [False, True])
def test_entries_of_the_earlier_layouts_still_read(relayed):
    """Written before usage held every count: three counts (input, output, cache reads), text and tool use;
    a relayed one with its dialect, delivery, newline and bytes."""
    head = b'["openai","gpt","id","gpt",5,"stop",null,[12,3,2],[["t","hi"],["u","c1","f",{"a":1}]]'
    data = b"j" + head + (b',"openai",false]\n{"raw":1}' if relayed else b"]")
    answer, _ = decode(data)
    assert answer.response.usage == Usage(12, 3, cache_read_tokens=2)
    assert answer.response.content == (TextBlock("hi"), ToolUseBlock("c1", "f", {"a": 1}))
    assert answer.relayed == (Relayed("openai", False, b'{"raw":1}') if relayed else None)


@pytest.mark.parametrize("data", [b"", b"x{}", b"j", b"j[1,2]", b"jnot json", b"z" + b"garbage",
                                  b"z" + zlib.compress(b"[1]"), b'j["p","m","id","m",0,null,null,[1],[]]',
                                  b'j["p","m","id","m",0,null,null,[1,2,3],[]]\nraw',
                                  b'j["p","m","id","m",0,null,null,[1,2,3,4,5,6,7,8,9],[]]'])
def test_bytes_that_are_not_an_entry_are_a_miss(data):
    assert decode(data) is None


@pytest.mark.parametrize("raw", [None, b"", b'{"object": "list", "data": []}', b"x" * 5000])
def test_the_size_known_before_the_response_is_the_stored_entrys(raw):
    """TieredCache.put counts an entry's L1 size from ``serialize`` and leaves joining and compressing for the
    deferred L2 fill: both must agree with ``encode``, which is what the fill stores."""
    answer = CachedAnswer(THOUGHTFUL, "openai", "m", None if raw is None else Relayed("openai", False, raw))
    head, body = serialize(answer)
    size = len(head) if body is None else len(head) + 1 + len(body)
    data, encoded_size = encode(answer)
    assert size == encoded_size
    assert pack(head if body is None else head + b"\n" + body) == data

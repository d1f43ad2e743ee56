"""The relay's pieces: event splitting at any chunk boundary, the observer, the usage the gateway added,
the upstream body, the body-based cache key and relayed cache entries."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cache.entry import CachedAnswer, Relayed, decode, encode
from app.cache.keys import relay_key
from app.errors import InvalidRequest, UpstreamError
from app.formats.canonical import ChatResponse, StreamEnd, TextBlock, TextDelta, Usage
from app.formats.relay import (
    CallerBody,
    EventSplitter,
    ProviderErrorEvent,
    observe_stream,
    split_events,
    strip_added_usage,
    upstream_body,
)
from app.providers.routing import Provider, Target
from tests.support import provider_payloads as pp

TARGET = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "gpt-4o-mini")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]


@given(st.lists(st.integers(0, 10_000), max_size=40), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_events_split_anywhere_come_out_whole_and_byte_exact(cuts, newline):
    data = pp.ANTHROPIC_STREAM.replace(b"\n", newline)
    splitter = EventSplitter()
    events = [e for chunk in chunked(data, cuts) for e in splitter.feed(chunk)]
    rest = splitter.flush()  # a lone \r at the very end may still become \r\n: the last event waits for EOF
    assert rest == b"" or newline == b"\r"
    events += [rest] if rest else []
    assert b"".join(events) == data
    assert events == split_events(data)
    assert all(e.endswith(newline * 2) for e in events)


@given(st.lists(st.integers(0, 10_000), max_size=20))
def test_the_observer_reads_text_and_usage_and_passes_every_byte(cuts):
    relayed = list(observe_stream(chunked(pp.ANTHROPIC_STREAM, cuts), "anthropic"))
    assert b"".join(r.raw for r in relayed) == pp.ANTHROPIC_STREAM
    canonical = [ev for r in relayed for ev in r.events]
    assert "".join(ev.text for ev in canonical if isinstance(ev, TextDelta)) == pp.ANTHROPIC_STREAM_TEXT
    end = canonical[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "end_turn"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (pp.ANTHROPIC_STREAM_INPUT,
                                                                pp.ANTHROPIC_STREAM_OUTPUT)


def test_a_provider_error_event_is_handed_over_with_its_bytes():
    with pytest.raises(ProviderErrorEvent) as caught:
        list(observe_stream([pp.ANTHROPIC_ERROR_STREAM], "anthropic"))
    assert caught.value.event.raw.startswith(b"event: error\n") and "Overloaded" in caught.value.error.message


def test_a_cut_stream_is_an_upstream_error():
    with pytest.raises(UpstreamError, match="cut"):
        list(observe_stream([b"".join(split_events(pp.ANTHROPIC_STREAM)[:5])], "anthropic"))
    with pytest.raises(UpstreamError, match="not JSON"):
        list(observe_stream([pp.ANTHROPIC_STREAM[:200]], "anthropic"))


def test_only_what_the_gateway_added_is_taken_out_of_an_openai_stream():
    kept = b"".join(strip_added_usage(e) for e in split_events(pp.openai_stream(True)))
    assert kept == pp.openai_stream(False)
    spaced = b'data: {"id": "x", "choices": [{"index": 0, "delta": {}}], "usage": null}\n\n'
    assert strip_added_usage(spaced) == b'data: {"id": "x", "choices": [{"index": 0, "delta": {}}]}\n\n'
    inline = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}\n\n'
    assert orjson.loads(strip_added_usage(inline)[6:]) == {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    text = b'data: {"choices":[{"index":0,"delta":{"content":"say \\"usage\\":null"}}]}\n\n'
    assert strip_added_usage(text) == text


def test_the_upstream_body_is_the_callers_bytes_unless_something_must_change():
    raw = b'{"model": "gpt-4o-mini", "messages": [{"role": "developer", "content": "x"}], "x_new": 1}'
    source = CallerBody("openai", orjson.loads(raw), raw)
    assert upstream_body(source, "gpt-4o-mini") is raw
    assert orjson.loads(upstream_body(source, "gpt-4o")) == {**orjson.loads(raw), "model": "gpt-4o"}
    streamed = {**orjson.loads(raw), "stream": True, "stream_options": {"include_obfuscation": False}}
    sent = orjson.loads(upstream_body(CallerBody("openai", streamed, orjson.dumps(streamed)), "gpt-4o-mini"))
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_every_field_counts_in_a_relayed_key_but_delivery_details_and_who_asked():
    body = {"model": "a", "messages": [{"role": "user", "content": [{"type": "text", "text": "x",
                                                                      "cache_control": {"type": "ephemeral"}}]}]}
    key = relay_key(body, "anthropic", TARGET, "client:c")
    same = [{**body, "model": "b"}, {**body, "metadata": {"user_id": "u"}}, {"messages": body["messages"]},
            {**body, "stream_options": {"include_usage": True}}]
    assert all(relay_key(b, "anthropic", TARGET, "client:c") == key for b in same)
    other = [{**body, "x_unknown": 1}, {**body, "stream": True}, {"model": "a", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "x"}]}]}]
    assert all(relay_key(b, "anthropic", TARGET, "client:c") != key for b in other)
    assert relay_key(body, "openai", TARGET, "client:c") != key
    assert relay_key(body, "anthropic", TARGET, "client:d") != key
    assert relay_key({**body, "temperature": 1.0}, "anthropic", TARGET, "client:c") == relay_key(
        {**body, "temperature": 1}, "anthropic", TARGET, "client:c")


@pytest.mark.parametrize("raw", [pp.OPENAI_JSON, pp.ANTHROPIC_STREAM, b"", b"\n\n\x00\xff"])
def test_a_relayed_entry_keeps_the_providers_bytes(raw):
    response = ChatResponse("id", "m", (TextBlock("hi " * 500),), "end_turn", usage=Usage(3, 4, 1))
    answer = CachedAnswer(response, "openai", "m", Relayed("openai", True, raw))
    decoded, _ = decode(encode(answer)[0])
    assert decoded == answer
    plain = CachedAnswer(response, "openai", "m")
    assert decode(encode(plain)[0])[0] == plain


# --- The caller's body, read lazily --------------------------------------------------------------------------

OPENAI_BODY = {"model": "gpt-4o-mini", "max_completion_tokens": 40, "temperature": 0.3, "top_p": 0.9,
               "stop": ["END"], "stream": True, "stream_options": {"include_usage": True},
               "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "temperature": 0.5, "stop_sequences": ["Z"],
                  "messages": [{"role": "user", "content": "hi"}]}
_SUMMARY_FIELDS = ("model", "max_tokens", "temperature", "top_p", "stop", "stream", "include_usage", "source_format")


@pytest.mark.parametrize(("dialect", "body"), [("openai", OPENAI_BODY), ("anthropic", ANTHROPIC_BODY),
                                               ("openai", {**OPENAI_BODY, "stop": "END", "stream": False}),
                                               ("anthropic", {**ANTHROPIC_BODY, "stream": True})])
def test_the_summary_says_what_the_codecs_parse_says_on_every_field_it_carries(dialect, body):
    """What the pipeline, the trace and the budget hold read of a relayed body, without parsing it
    (https://platform.openai.com/docs/api-reference/chat/create,
    https://docs.anthropic.com/en/api/messages)."""
    source = CallerBody(dialect, body, orjson.dumps(body))
    parsed = source.canonical()
    assert source.request is not parsed and source.request.messages == ()
    for name in _SUMMARY_FIELDS:
        assert getattr(source.request, name) == getattr(parsed, name), name


def test_the_canonical_request_is_parsed_once_on_first_use_and_a_refusal_is_fresh_each_time():
    source = CallerBody("openai", OPENAI_BODY, orjson.dumps(OPENAI_BODY))
    assert source.owns(source.request) and source._parsed is None  # nothing parsed yet
    first = source.canonical()
    assert source.canonical() is first and source.owns(first) and first.messages
    two = {**OPENAI_BODY, "n": 2}  # relayable, not translatable
    untranslatable = CallerBody("openai", two, orjson.dumps(two))
    errors = []
    for _ in range(2):
        with pytest.raises(InvalidRequest) as caught:
            untranslatable.canonical()
        errors.append(caught.value)
    assert errors[0] is not errors[1] and errors[1].param == "n"
    assert untranslatable.parsed_if_possible() is untranslatable.request


def test_a_translation_is_built_once_per_wire_format_and_model():
    source = CallerBody("openai", OPENAI_BODY, orjson.dumps(OPENAI_BODY))
    built = []

    def build(req):
        built.append(req)
        return orjson.dumps({"n": len(built)})

    assert source.translation("anthropic", "claude-a", build) == b'{"n":1}'
    assert source.translation("anthropic", "claude-a", build) == b'{"n":1}'
    assert source.translation("anthropic", "claude-b", build) == b'{"n":2}'
    assert built == [source.canonical()] * 2

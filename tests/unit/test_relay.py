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
from app.formats.canonical import ChatResponse, StreamEnd, StreamStart, TextBlock, Usage
from app.formats.relay import (
    _NEEDS_READING,
    _PLAIN,
    CallerBody,
    EventSplitter,
    ProviderErrorEvent,
    RecalledBody,
    RelayedEvent,
    observe_stream,
    split_events,
    strip_added_usage,
    upstream_body,
)
from app.providers.routing import Provider, Target
from tests.support import provider_payloads as pp

TARGET = Target(Provider("openai", "openai", "http://x", "k", "OPENAI_API_KEY", True), "gpt-4o-mini")


def _raw(item: bytes | RelayedEvent) -> bytes:
    return item if isinstance(item, bytes) else item.raw


def _events(item: bytes | RelayedEvent) -> tuple:
    return () if isinstance(item, bytes) else item.events


def _first(item: bytes | RelayedEvent) -> bool:
    return not isinstance(item, bytes) and item.first_token


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
def test_the_observer_reads_the_start_end_and_first_token_and_passes_every_byte(cuts):
    relayed = list(observe_stream(chunked(pp.ANTHROPIC_STREAM, cuts), "anthropic"))
    assert b"".join(_raw(r) for r in relayed) == pp.ANTHROPIC_STREAM
    canonical = [ev for r in relayed for ev in _events(r)]
    assert [type(ev) for ev in canonical] == [StreamStart, StreamEnd]  # the text goes on unread
    start, end = canonical
    assert start.id == "msg_01ThinkAndSearch" and end.stop_reason == "end_turn"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (pp.ANTHROPIC_STREAM_INPUT,
                                                                pp.ANTHROPIC_STREAM_OUTPUT)
    first = [r for r in relayed if _first(r)]
    assert len(first) == 1  # the read that brought the first text delta, not the thinking before it
    assert b'"text_delta"' in _raw(first[0])
    assert b'"text_delta"' not in b"".join(_raw(r) for r in relayed[:relayed.index(first[0])])


def test_the_events_of_one_read_go_on_together():
    relayed = list(observe_stream([pp.ANTHROPIC_STREAM], "anthropic"))
    assert relayed[0].raw == pp.ANTHROPIC_STREAM and relayed[0].first_token
    assert [type(ev) for ev in relayed[0].events] == [StreamStart, StreamEnd]


def _anthropic_text_stream(*deltas: bytes) -> bytes:
    """message_start, a text block holding ``deltas`` (raw content_block_delta events), the end."""
    head, *_ = split_events(pp.ANTHROPIC_ERROR_STREAM)
    return b"".join([head, pp.sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                          "content_block": {"type": "text", "text": ""}}),
                     *deltas,
                     pp.sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                     pp.sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                              "usage": {"output_tokens": 7}}),
                     pp.sse("message_stop", {"type": "message_stop"})])


def _text_delta(text: str) -> bytes:
    return pp.sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": text}})


def test_text_after_the_first_token_is_not_read_but_tool_input_and_the_end_are():
    """Proof by what is not read: an unreadable text delta passes once the first token was seen, and
    only then; unreadable tool input is still read (and refused)."""
    garbage = b"event: content_block_delta\ndata: {not json\n\n"
    events = split_events(_anthropic_text_stream(_text_delta("Hi"), garbage))
    relayed = list(observe_stream(events, "anthropic"))  # each event its own read
    assert b"".join(_raw(r) for r in relayed) == b"".join(events)
    assert relayed[-1].events[-1].stop_reason == "max_tokens"
    with pytest.raises(UpstreamError, match="not JSON"):
        list(observe_stream(split_events(_anthropic_text_stream(garbage, _text_delta("Hi"))), "anthropic"))
    tool_garbage = b'event: content_block_delta\ndata: {"delta": "input_json_delta", \n\n'
    with pytest.raises(UpstreamError, match="not JSON"):
        list(observe_stream(split_events(_anthropic_text_stream(_text_delta("Hi"), tool_garbage)), "anthropic"))


@pytest.mark.parametrize("finish", [b'"finish_reason":"length"', b'"finish_reason" : "length"'])
def test_an_openai_finish_and_usage_are_read_whatever_their_spacing(finish):
    stream = pp.openai_stream(True).replace(b'"finish_reason":"stop"', finish)
    relayed = list(observe_stream(split_events(stream), "openai"))
    assert b"".join(_raw(r) for r in relayed) == stream
    end = [ev for r in relayed for ev in _events(r)][-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "max_tokens"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (9, 2)
    assert [_first(r) for r in relayed].count(True) == 1


def test_an_error_event_after_others_of_the_same_read_comes_after_them():
    with pytest.raises(ProviderErrorEvent) as caught:
        for relayed in observe_stream([pp.ANTHROPIC_ERROR_STREAM], "anthropic"):
            assert b"event: error" not in relayed.raw and relayed.raw.endswith(b"Partial\"}}\n\n")
    assert caught.value.event.raw.startswith(b"event: error\n")


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
    assert strip_added_usage(pp.openai_stream(True)) == kept  # the events of one read, together
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


def test_a_recalled_body_reads_its_bytes_only_when_asked_and_then_is_the_callers_body():
    streamed = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": True}
    raw = orjson.dumps(streamed)
    first = CallerBody("openai", streamed, raw)
    recalled = RecalledBody("openai", raw, first.request)
    with pytest.raises(AttributeError):
        CallerBody.body.__get__(recalled, CallerBody)  # not read yet
    assert recalled.request is first.request and recalled.owns(first.request)
    assert upstream_body(recalled, "gpt-4o") == upstream_body(first, "gpt-4o")
    assert recalled.body == streamed and CallerBody.body.__get__(recalled, CallerBody) is recalled.body
    assert recalled.canonical() == first.canonical() and recalled.owns(recalled.canonical())
    with pytest.raises(AttributeError):
        recalled.no_such_field  # noqa: B018

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


# --- Text passed on without a look (``_PLAIN``) -----------------------------------------------------------

def _responses_event(name: str, data: dict) -> bytes:
    return pp.sse(name, {"type": name, **data})


_STREAMS = {
    "openai": [pp.openai_stream(True), pp.openai_stream(False)],
    "anthropic": [pp.ANTHROPIC_STREAM, pp.ANTHROPIC_ERROR_STREAM,
                  _anthropic_text_stream(_text_delta("Hi"), pp.sse("content_block_delta", {
                      "type": "content_block_delta", "index": 0,
                      "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1"}}))],
    "responses": [b"".join([
        _responses_event("response.created", {"response": {"id": "resp_1", "status": "in_progress"}}),
        _responses_event("response.output_text.delta", {"item_id": "msg_1", "delta": "Hi"}),
        _responses_event("response.reasoning_text.delta", {"item_id": "rs_1", "delta": "hmm"}),
        _responses_event("error", {"code": "server_error", "message": "boom"}),
        _responses_event("response.completed", {"response": {"id": "resp_1", "status": "completed"}}),
    ])],
}


@pytest.mark.parametrize("dialect", sorted(_STREAMS))
def test_what_passes_unlooked_is_only_what_the_event_by_event_check_would_not_read(dialect):
    """The whole-read check may say no to text, never yes to an event the full check reads: over every
    run of consecutive events of each stream (one read may bring several)."""
    plain, needs_reading = _PLAIN[dialect], _NEEDS_READING[dialect]
    seen_plain = 0
    for stream in _STREAMS[dialect]:
        events = split_events(stream)
        for i in range(len(events)):
            for j in range(i + 1, len(events) + 1):
                read = b"".join(events[i:j])
                if plain(read):
                    seen_plain += 1
                    assert not any(needs_reading(e) for e in events[i:j]), read
    assert seen_plain  # the usual text event of each dialect is recognised


@pytest.mark.parametrize("variant", [
    b'"finish_reason": "length"', b'"finish_reason" :"length"', b'"finish_reason":"length"'])
def test_an_openai_finish_in_any_spacing_is_not_passed_unlooked(variant):
    event = pp.sse(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": None}]}).replace(
        b'"finish_reason":null', variant)
    assert not _PLAIN["openai"](event)
    spaced_usage = pp.sse(None, {"choices": [], "usage": None}).replace(b'"usage":null', b'"usage": {"x": 1}')
    assert not _PLAIN["openai"](spaced_usage)


def test_an_openai_read_with_one_null_and_one_other_of_a_key_is_not_passed_unlooked():
    """Each of finish_reason, usage and refusal must be null wherever it is: one null does not vouch for
    another of the same read."""
    text = pp.sse(None, {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
                         "usage": None})
    assert _PLAIN["openai"](text) and _PLAIN["openai"](text + text)
    for other in (pp.sse(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
                  pp.sse(None, {"choices": [], "usage": {"prompt_tokens": 9}}),
                  pp.sse(None, {"choices": [{"index": 0, "delta": {"refusal": "No."}, "finish_reason": None}]})):
        assert not _PLAIN["openai"](text + other) and not _PLAIN["openai"](other + text)


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_read_that_is_not_utf8_or_not_one_whole_event_is_split_and_checked(dialect):
    """The whole-read check decodes the read: bytes that are not UTF-8 go the event-by-event way, and on
    as they came."""
    if dialect == "openai":
        event = pp.sse(None, {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]})
        stream = split_events(pp.openai_stream(False))
        stream[2:2] = [event.replace(b"Hi", b"H\xffi")]
    else:
        event = _text_delta("Hi")
        stream = split_events(_anthropic_text_stream(_text_delta("Hi"), _text_delta("Hi").replace(b"Hi", b"H\xffi")))
        assert not _PLAIN[dialect](event + b"\n")  # the read's first blank line is not its end
    assert _PLAIN[dialect](event) and not _PLAIN[dialect](event.replace(b"Hi", b"H\xffi"))
    relayed = list(observe_stream(stream, dialect))
    assert b"".join(_raw(r) for r in relayed) == b"".join(stream)
    assert any(b"H\xffi" in r for r in relayed if isinstance(r, bytes))  # not read by the observer either
    assert relayed[-1].events[-1].__class__ is StreamEnd


def test_a_stream_of_text_reads_goes_on_as_bytes_after_the_first_token():
    """One read per event, as a provider sends them: after the first token the text reads are handed on as
    the bytes that came (nothing made per read), the start and the end still read."""
    events = split_events(_anthropic_text_stream(*[_text_delta(f"w{i} ") for i in range(5)]))
    relayed = list(observe_stream(events, "anthropic"))
    assert b"".join(_raw(r) for r in relayed) == b"".join(events)
    assert sum(isinstance(r, bytes) for r in relayed) == 4  # the deltas after the first
    assert [type(ev) for r in relayed for ev in _events(r)] == [StreamStart, StreamEnd]

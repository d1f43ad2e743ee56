"""Property tests: translating keeps meaning, for any conversation and any answer.

Each format can say some things in only one way (OpenAI has no ``is_error``,
Anthropic no image ``detail``; both merge consecutive turns), so every
comparison goes through ``meaning(...)``: the canonical value reduced to
what the format under test can carry. Everything else must survive exactly.
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.formats import anthropic, openai
from app.formats.canonical import (
    Block,
    ChatRequest,
    ChatResponse,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from app.formats.reasoning import EFFORT_BUDGETS, effort_for_budget, effort_to_thinking, thinking_to_effort
from app.formats.stream import StreamAccumulator, decode_sse, events_from_response
from tests.support.codecs import split_at

CODECS = {"openai": openai, "anthropic": anthropic}
DEFAULT_MAX = 777

settings.register_profile("translation", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("translation")

# --- strategies -----------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
ids = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
images = st.one_of(
    st.builds(ImageBlock, media_type=st.sampled_from(["image/png", "image/jpeg", "image/webp"]),
              data=st.from_regex(r"[A-Za-z0-9+/]{4,24}={0,2}", fullmatch=True),
              detail=st.sampled_from([None, "low", "high", "auto"])),
    st.builds(ImageBlock, url=names.map(lambda n: f"https://img.example/{n}.png"),
              detail=st.sampled_from([None, "low", "high"])),
)
user_parts = st.lists(st.one_of(texts.map(TextBlock), images), min_size=1, max_size=3)


@st.composite
def conversations(draw: st.DrawFn, tool_result_images: bool = False) -> tuple[Message, ...]:
    """A well-formed conversation: every tool call of a turn is answered at the start of the next user turn."""
    messages: list[Message] = [Message("user", tuple(draw(user_parts)))]
    for _ in range(draw(st.integers(0, 3))):
        said = [TextBlock(t) for t in draw(st.lists(texts, max_size=2))]
        calls = [ToolUseBlock(i, draw(names), draw(json_objects))
                 for i in draw(st.lists(ids, max_size=3, unique=True))]
        if not said and not calls:
            said = [TextBlock(draw(texts))]
        messages.append(Message("assistant", (*said, *calls)))
        item = st.one_of(texts.map(TextBlock), images) if tool_result_images else texts.map(TextBlock)
        results = [ToolResultBlock(c.id, tuple(draw(st.lists(item, max_size=2))), draw(st.booleans()))
                   for c in calls]
        rest = draw(user_parts) if not results or draw(st.booleans()) else []
        messages.append(Message("user", (*results, *rest)))
    if draw(st.booleans()):
        messages.append(Message("assistant", (TextBlock(draw(texts)),)))
    return tuple(messages)


tools_st = st.lists(
    st.builds(Tool, name=names, description=st.none() | texts,
              parameters=st.fixed_dictionaries({"type": st.just("object"),
                                                "properties": st.dictionaries(names, st.just({"type": "string"}),
                                                                              max_size=2)}),
              strict=st.sampled_from([None, True, False])),
    max_size=3, unique_by=lambda t: t.name,
)


@st.composite
def requests(draw: st.DrawFn, source: str, tool_result_images: bool = False) -> ChatRequest:
    tools = tuple(draw(tools_st))
    choice = None
    if tools and draw(st.booleans()):
        kind = draw(st.sampled_from(["auto", "none", "any", "tool"]))
        choice = ToolChoice(kind, name=tools[0].name if kind == "tool" else None,  # type: ignore[arg-type]
                            disable_parallel=draw(st.booleans()))
    stream = draw(st.booleans())
    return ChatRequest(
        model="caller-model",
        messages=draw(conversations(tool_result_images)),
        system=tuple(TextBlock(t) for t in draw(st.lists(texts, max_size=2))),
        max_tokens=draw(st.none() | st.integers(1, 100_000)),
        temperature=draw(st.none() | st.floats(0, 1)),
        top_p=draw(st.none() | st.floats(0, 1)),
        stop=tuple(draw(st.lists(texts, max_size=3))),
        tools=tools,
        tool_choice=choice,
        stream=stream,
        include_usage=stream and draw(st.booleans()),
        user=draw(st.none() | ids),
        source_format=source,  # type: ignore[arg-type]
    )


usages = st.builds(lambda i, o, c: Usage(i, o, min(c, i)), st.integers(0, 10**6), st.integers(0, 10**6),
                   st.integers(0, 10**6))
tool_uses = st.builds(ToolUseBlock, ids, names, json_objects)


@st.composite
def responses(draw: st.DrawFn, shape: str) -> ChatResponse:
    """Answers as each provider shapes them: OpenAI gives one text then tool calls; Anthropic any sequence."""
    if shape == "openai":
        content: list[TextBlock | ToolUseBlock] = [TextBlock(t) for t in draw(st.lists(texts, max_size=1))]
        content += draw(st.lists(tool_uses, max_size=3, unique_by=lambda b: b.id))
    else:
        content = draw(st.lists(st.one_of(texts.map(TextBlock), tool_uses), max_size=4))
    has_calls = any(isinstance(b, ToolUseBlock) for b in content)
    if has_calls:
        stop = draw(st.sampled_from(["tool_use", "max_tokens"]))
    else:
        stop = draw(st.sampled_from(["end_turn", "max_tokens", "refusal"]
                                    + (["stop_sequence"] if shape == "anthropic" else [])))
    return ChatResponse(
        id=draw(ids), model=draw(names), content=tuple(content), stop_reason=stop,
        stop_sequence=draw(texts) if stop == "stop_sequence" else None,
        usage=draw(usages), created=draw(st.integers(1, 2**31)) if shape == "openai" else 0,
    )


# --- what each format can carry -----------------------------------------------


def _merged(messages: tuple[Message, ...]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        blocks = tuple(b for b in m.content if not (isinstance(b, TextBlock) and not b.text))
        if not blocks:
            continue
        if out and out[-1].role == m.role:
            out[-1] = Message(m.role, out[-1].content + blocks)
        else:
            out.append(Message(m.role, blocks))
    return [
        Message(m.role, tuple(sorted(m.content, key=lambda b: not isinstance(b, ToolResultBlock))))
        if m.role == "user" else m
        for m in out
    ]


def _as_openai(block: Block) -> Block:
    if isinstance(block, ToolResultBlock) and block.is_error:
        items = [b.text for b in block.content if isinstance(b, TextBlock)]
        items = [f"Error: {items[0]}" if items else "Error", *items[1:]]
        return ToolResultBlock(block.tool_use_id, tuple(TextBlock(t) for t in items))
    return block


def _as_anthropic(block: Block) -> Block:
    if isinstance(block, ImageBlock):
        return replace(block, detail=None)
    if isinstance(block, ToolResultBlock):
        return replace(block, content=tuple(_as_anthropic(b) for b in block.content))  # type: ignore[misc]
    return block


def meaning(req: ChatRequest, fmt: str) -> dict[str, Any]:
    """The part of a request that a trip through ``fmt`` must keep exactly."""
    convert = _as_openai if fmt == "openai" else _as_anthropic
    messages = [Message(m.role, tuple(convert(b) for b in m.content)) for m in _merged(req.messages)]
    choice = req.tool_choice if req.tools else None
    if choice is not None and choice.type == "none":
        choice = replace(choice, disable_parallel=False)
    tools = req.tools
    if fmt == "anthropic" and req.source_format != "anthropic":
        tools = tuple(replace(t, strict=None) for t in tools)
    return {
        "system": tuple(b for b in req.system if b.text),
        "messages": messages,
        "max_tokens": req.max_tokens if fmt == "openai" or req.max_tokens is not None else DEFAULT_MAX,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop,
        "tools": tools,
        "tool_choice": choice,
        "stream": req.stream,
        "user": req.user,
    }


def answer_meaning(resp: ChatResponse, fmt: str) -> ChatResponse:
    """What an answer in ``fmt`` can carry: OpenAI has one text before the tool calls and no stop sequence."""
    if fmt == "anthropic":
        return replace(resp, created=0)
    text = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
    calls = tuple(b for b in resp.content if isinstance(b, ToolUseBlock))
    stop = "end_turn" if resp.stop_reason == "stop_sequence" else resp.stop_reason
    return replace(resp, content=((TextBlock(text),) if text else ()) + calls, stop_reason=stop, stop_sequence=None)


def through_stream(resp: ChatResponse, fmt: str, cuts: list[int]) -> ChatResponse:
    """Replay ``resp`` as ``fmt`` SSE, cut the bytes where told, decode and accumulate."""
    codec: ModuleType = CODECS[fmt]
    encoder = codec.StreamEncoder(include_usage=True)
    raw = b"".join(encoder.encode(ev) for ev in events_from_response(resp))
    acc = StreamAccumulator()
    for ev in decode_sse(split_at(raw, [c % (len(raw) + 1) for c in cuts]), codec.StreamDecoder()):
        acc.feed(ev)
    assert acc.complete
    return acc.response()


# --- requests -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@given(data=st.data())
def test_request_round_trip_through_each_format_keeps_meaning(fmt: str, data: st.DataObject) -> None:
    codec = CODECS[fmt]
    req = data.draw(requests(source=fmt, tool_result_images=fmt == "anthropic"))
    body = codec.build_request(req, "upstream-model", default_max_tokens=DEFAULT_MAX)
    back = codec.parse_request(body)
    assert back.model == "upstream-model" and back.source_format == fmt
    assert meaning(back, fmt) == meaning(req, fmt)
    if fmt == "openai":
        assert back.include_usage == req.stream  # the gateway always asks for usage upstream


@given(data=st.data())
def test_openai_in_anthropic_out_keeps_the_conversation(data: st.DataObject) -> None:
    caller_body = openai.build_request(data.draw(requests(source="openai")), "claude-x", default_max_tokens=1)
    from_caller = openai.parse_request(caller_body)
    sent = anthropic.build_request(from_caller, "claude-x", default_max_tokens=DEFAULT_MAX)
    seen_by_anthropic = anthropic.parse_request(sent)
    assert meaning(seen_by_anthropic, "anthropic") == meaning(from_caller, "anthropic")


@given(data=st.data())
def test_anthropic_in_openai_out_keeps_the_conversation(data: st.DataObject) -> None:
    caller_body = anthropic.build_request(data.draw(requests(source="anthropic")), "gpt-x", default_max_tokens=99)
    from_caller = anthropic.parse_request(caller_body)
    sent = openai.build_request(from_caller, "gpt-4o", default_max_tokens=DEFAULT_MAX)
    seen_by_openai = openai.parse_request(sent)
    assert meaning(seen_by_openai, "openai") == meaning(from_caller, "openai")


# --- answers --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@given(data=st.data())
def test_response_round_trip_keeps_meaning(fmt: str, data: st.DataObject) -> None:
    codec = CODECS[fmt]
    resp = data.draw(responses(shape=data.draw(st.sampled_from(["openai", "anthropic"]))))
    back = codec.parse_response(codec.render_response(resp))
    if fmt == "openai" and resp.created == 0:  # OpenAI answers always carry a time: rendering stamps one
        assert back.created > 0
        back = replace(back, created=0)
    assert back == answer_meaning(resp, fmt)


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@given(data=st.data())
def test_stream_and_json_paths_give_the_same_answer(fmt: str, data: st.DataObject) -> None:
    """The provider streamed what it would have answered as JSON: both paths give one ChatResponse."""
    codec = CODECS[fmt]
    resp = data.draw(responses(shape=fmt))
    cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=8))
    json_path = codec.parse_response(codec.render_response(resp))
    stream_path = through_stream(resp, fmt, cuts)
    assert stream_path == json_path
    assert stream_path == answer_meaning(resp, fmt)  # and a replay decodes back to the response itself


@given(data=st.data())
def test_anthropic_stream_replayed_to_an_openai_caller_keeps_the_answer(data: st.DataObject) -> None:
    resp = data.draw(responses(shape="openai"))
    anthropic_events = events_from_response(replace(resp, created=0))
    acc = StreamAccumulator()
    for ev in anthropic_events:
        acc.feed(ev)
    replayed = replace(acc.response(), created=resp.created)
    assert through_stream(replayed, "openai", data.draw(st.lists(st.integers(0, 10**6), max_size=5))) == resp


@given(resp=responses(shape="anthropic"))
def test_accumulating_a_replay_is_the_identity(resp: ChatResponse) -> None:
    acc = StreamAccumulator()
    for ev in events_from_response(resp):
        assert not acc.complete
        acc.feed(ev)
    assert acc.complete and acc.response() == resp and acc.usage == resp.usage


# --- usage, thinking and reasoning effort -------------------------------------------------


@st.composite
def full_usages(draw: st.DrawFn) -> Usage:
    """Every counter a provider reports, consistent as the providers keep them (parts never exceed wholes)."""
    plain, read, write = (draw(st.integers(0, 10**6)) for _ in range(3))
    output = draw(st.integers(0, 10**6))
    return Usage(input_tokens=plain + read + write, output_tokens=output, cache_read_tokens=read,
                 cache_write_tokens=write, cache_write_1h_tokens=draw(st.integers(0, write)),
                 reasoning_tokens=draw(st.integers(0, output)), web_search_requests=draw(st.integers(0, 50)),
                 web_fetch_requests=draw(st.integers(0, 50)))


def usage_meaning(usage: Usage, fmt: str) -> Usage:
    """OpenAI's usage has no cache-write lifetimes and no server tool counts; Anthropic's has everything."""
    if fmt == "anthropic":
        return usage
    return replace(usage, cache_write_1h_tokens=0, web_search_requests=0, web_fetch_requests=0)


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@given(usage=full_usages(), cuts=st.lists(st.integers(0, 10**6), max_size=5))
def test_usage_survives_each_format_json_and_streamed(fmt: str, usage: Usage, cuts: list[int]) -> None:
    """A provider's usage, rendered in ``fmt`` and read back (as the other dialect's caller's answer would be
    made from it), keeps every counter ``fmt`` can carry: the bill is the same on both sides."""
    codec = CODECS[fmt]
    resp = ChatResponse("id-1", "m", (TextBlock("x"),), "end_turn", usage=usage, created=1)
    assert codec.parse_response(codec.render_response(resp)).usage == usage_meaning(usage, fmt)
    assert through_stream(resp, fmt, cuts).usage == usage_meaning(usage, fmt)


@given(thinking=st.lists(st.tuples(texts, ids), min_size=1, max_size=3), answer=texts)
def test_thinking_text_reaches_openai_callers_whole(thinking: list[tuple[str, str]], answer: str) -> None:
    blocks = tuple(ThinkingBlock(t, s) for t, s in thinking)
    resp = ChatResponse("id-1", "m", (*blocks, TextBlock(answer)), "end_turn", created=1)
    message = openai.render_response(resp)["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(t for t, _ in thinking) and message["content"] == answer
    assert through_stream(resp, "anthropic", []) == replace(resp, created=0)  # Anthropic callers: every block


@given(effort=st.sampled_from(["low", "medium", "high"]), limit=st.integers(1, 200_000))
def test_reasoning_effort_survives_a_round_trip_through_thinking(effort: str, limit: int) -> None:
    thinking, max_tokens = effort_to_thinking(effort, limit)
    assert thinking is not None and thinking["budget_tokens"] < max_tokens  # as Anthropic requires
    assert thinking_to_effort(thinking, "o3") == effort


@given(budget=st.integers(1024, 200_000))
def test_budget_to_effort_to_budget_is_stable(budget: int) -> None:
    effort = effort_for_budget(budget)
    assert effort_for_budget(EFFORT_BUDGETS[effort]) == effort

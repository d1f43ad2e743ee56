"""The OpenAI codec: strict ingress, faithful egress, lying providers, both stream directions.

Where it matters the official ``openai`` SDK is the judge: it builds the
request bodies we parse and consumes the JSON and SSE we render (over an
in-memory transport, no network).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidRequest, NoHealthyProvider, UpstreamError
from app.formats import openai as codec
from app.formats.canonical import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImageBlock,
    Message,
    StreamEnd,
    StreamStart,
    TextBlock,
    TextDelta,
    ThinkingDelta,
    Tool,
    ToolChoice,
    ToolInputDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStart,
    Usage,
)
from app.formats.sse import SSEEvent, SSEParser
from app.formats.stream import StreamAccumulator, decode_sse, events_from_response
from tests.support.codecs import split_at

# --- helpers ------------------------------------------------------------------


def body(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    base.update(over)
    return base


def bad(payload: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        codec.parse_request(payload)
    return info.value


def canonical(**over: Any) -> ChatRequest:
    base: dict[str, Any] = {"model": "m", "messages": (Message("user", (TextBlock("Hi"),)),)}
    base.update(over)
    return ChatRequest(**base)


def build(req: ChatRequest, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return codec.build_request(req, model, default_max_tokens=4096)


def decode(raw: bytes, cuts: list[int] | None = None) -> list[Any]:
    """Upstream SSE bytes (cut where told) through the parser and the decoder, finish() included."""
    return list(decode_sse(split_at(raw, cuts or []), codec.StreamDecoder()))


def sse(*payloads: Any) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    out = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1717000000, "model": "gpt-4o-mini",
           "system_fingerprint": "fp_1",
           "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
           "usage": None}
    out.update(extra)
    return out


USAGE_CHUNK = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1717000000, "model": "gpt-4o-mini",
               "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                                        "prompt_tokens_details": {"cached_tokens": 10}}}

# A real-looking answer: text, then two tool calls whose arguments arrive in fragments.
TRANSCRIPT = sse(
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Let me "}),
    chunk({"content": "check ☀️."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                           "function": {"name": "weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Par'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                           "function": {"name": "time", "arguments": "{}"}}]}),
    chunk({}, "tool_calls"),
    USAGE_CHUNK,
    b"[DONE]",
)
EXPECTED = [
    StreamStart(id="chatcmpl-9", model="gpt-4o-mini", created=1717000000),
    TextDelta(0, "Let me "),
    TextDelta(0, "check ☀️."),
    BlockStop(0),
    ToolUseStart(1, "call_a", "weather"),
    ToolInputDelta(1, '{"ci'),
    ToolInputDelta(1, 'ty": "Par'),
    ToolInputDelta(1, 'is"}'),
    BlockStop(1),
    ToolUseStart(2, "call_b", "time"),
    ToolInputDelta(2, "{}"),
    BlockStop(2),
    StreamEnd(stop_reason="tool_use", usage=Usage(30, 12, 10)),
]


def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1",
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)


def answering(content: bytes, content_type: str, captured: list[dict[str, Any]] | None = None) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if captured is not None:
            captured.append(orjson.loads(request.content))
        return httpx2.Response(200, content=content, headers={"content-type": content_type})

    return sdk_client(handler)


# --- ingress: what callers send -----------------------------------------------


def test_minimal_request() -> None:
    req = codec.parse_request(body())
    assert req == ChatRequest(model="gpt-4o-mini", messages=(Message("user", (TextBlock("Hi"),)),),
                              source_format="openai")


def test_system_and_developer_messages_become_system() -> None:
    req = codec.parse_request(body(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "Hi"},
    ]))
    assert req.system == (TextBlock("Be brief."), TextBlock("Use French."))
    assert req.messages == (Message("user", (TextBlock("Hi"),)),)


def test_images_data_and_http_with_detail() -> None:
    req = codec.parse_request(body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]))
    assert req.messages[0].content == (
        TextBlock("What is this?"),
        ImageBlock(media_type="image/png", data="iVBORw0KGgo=", detail="low"),
        ImageBlock(url="https://example.com/cat.jpg"),
    )


def test_tool_round_trip_conversation_merges_tool_results_and_following_user_text() -> None:
    req = codec.parse_request(body(messages=[
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "Thanks, and tomorrow?"},
        {"role": "user", "content": "Separate message."},
    ]))
    assert req.messages == (
        Message("user", (TextBlock("Weather in Paris and the time?"),)),
        Message("assistant", (ToolUseBlock("call_a", "weather", {"city": "Paris"}),
                              ToolUseBlock("call_b", "time", {}))),
        Message("user", (ToolResultBlock("call_a", (TextBlock("18C"),)),
                         ToolResultBlock("call_b", (TextBlock("12:00"),)),
                         TextBlock("Thanks, and tomorrow?"))),
        Message("user", (TextBlock("Separate message."),)),
    )


def test_assistant_text_refusal_parts() -> None:
    req = codec.parse_request(body(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}]},
    ]))
    assert req.messages[1] == Message("assistant", (TextBlock("a"), TextBlock("no")))


def test_generation_parameters_and_extras() -> None:
    req = codec.parse_request(body(
        max_completion_tokens=300, max_tokens=50, temperature=1.5, top_p=0.9, stop="END", n=1, stream=True,
        stream_options={"include_usage": True}, user="u-1", metadata={"k": "v"}, seed=7, frequency_penalty=0.5,
        response_format={"type": "json_object"}, logprobs=True, top_logprobs=2, reasoning_effort="low",
        service_tier="auto", logit_bias={"50256": -100}, presence_penalty=None,
    ))
    assert req.max_tokens == 300
    assert req.temperature == 1.5 and req.top_p == 0.9
    assert req.stop == ("END",)
    assert req.stream and req.include_usage
    assert req.user == "u-1" and req.metadata == {"k": "v"}
    assert req.extra == {"max_completion_tokens": 300, "seed": 7, "frequency_penalty": 0.5,
                         "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 2,
                         "reasoning_effort": "low", "service_tier": "auto", "logit_bias": {"50256": -100}}


def test_stop_list_and_nulls_mean_absent() -> None:
    req = codec.parse_request(body(stop=["a", "b"], temperature=None, max_tokens=None, tools=None))
    assert req.stop == ("a", "b") and req.temperature is None and req.max_tokens is None


def test_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {}}},
                                               "strict": True}},
             {"type": "function", "function": {"name": "noargs"}}]
    req = codec.parse_request(body(tools=tools, tool_choice="required", parallel_tool_calls=False))
    assert req.tools == (
        Tool("weather", "Weather now", {"type": "object", "properties": {"city": {}}}, strict=True),
        Tool("noargs", None, {"type": "object", "properties": {}}),
    )
    assert req.tool_choice == ToolChoice("any", disable_parallel=True)
    named = codec.parse_request(body(tools=tools, tool_choice={"type": "function", "function": {"name": "weather"}}))
    assert named.tool_choice == ToolChoice("tool", name="weather")
    assert codec.parse_request(body(tools=tools, tool_choice="none")).tool_choice == ToolChoice("none")
    assert codec.parse_request(body(tools=tools, parallel_tool_calls=False)).tool_choice == ToolChoice(
        "auto", disable_parallel=True)
    assert codec.parse_request(body(tools=tools, parallel_tool_calls=True)).tool_choice is None


def msg(*messages: Any) -> dict[str, Any]:
    return body(messages=list(messages))


USER = {"role": "user", "content": "hi"}

# Every 400 path: the payload and the param the error must name.
INVALID: list[tuple[Any, str]] = [
    ([], "body"),
    ({"messages": [USER]}, "model"),
    (body(model=5), "model"),
    (body(model=""), "model"),
    ({"model": "m"}, "messages"),
    (body(messages="hi"), "messages"),
    (body(messages=[]), "messages"),
    (msg("hi"), "messages[0]"),
    (msg({"content": "x"}), "messages[0].role"),
    (msg({"role": 1, "content": "x"}), "messages[0].role"),
    (msg({"role": "robot", "content": "x"}), "messages[0].role"),
    (msg({"role": "function", "name": "f", "content": "x"}), "messages[0].role"),
    (msg({"role": "user"}), "messages[0].content"),
    (msg({"role": "user", "content": 5}), "messages[0].content"),
    (msg({"role": "user", "content": []}), "messages[0].content"),
    (msg({"role": "user", "content": ["x"]}), "messages[0].content[0]"),
    (msg({"role": "user", "content": [{"text": "x"}]}), "messages[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "video"}]}), "messages[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}), "messages[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "file", "file": {}}]}), "messages[0].content[0].file.file_data"),
    (msg({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}),
     "messages[0].content[0].file.file_id"),
    (msg({"role": "user", "content": [{"type": "file", "file": {"file_data": "data:text/plain;base64,eA=="}}]}),
     "messages[0].content[0].file.file_data"),
    (msg({"role": "user", "content": [{"type": "file", "file": {"file_data": "JVBERi0x"}}]}),
     "messages[0].content[0].file.file_data"),
    (msg({"role": "user", "content": [{"type": "text"}]}), "messages[0].content[0].text"),
    (msg({"role": "user", "content": [{"type": "text", "text": 3}]}), "messages[0].content[0].text"),
    (msg(USER, USER, {"role": "user", "content": [{"type": "image_url", "image_url": "http://x/a.png"}]}),
     "messages[2].content[0].image_url"),
    (msg({"role": "user", "content": [{"type": "image_url"}]}), "messages[0].content[0].image_url"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}),
     "messages[0].content[0].image_url.url"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}),
     "messages[0].content[0].image_url.url"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}),
     "messages[0].content[0].image_url.url"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:;base64,abc"}}]}),
     "messages[0].content[0].image_url.url"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x", "detail": "max"}}]}),
     "messages[0].content[0].image_url.detail"),
    (msg({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}, USER),
     "messages[0].content[0].type"),
    (msg({"role": "system"}, USER), "messages[0].content"),
    (msg(USER, {"role": "assistant"}), "messages[1].content"),
    (msg(USER, {"role": "assistant", "content": None, "tool_calls": []}), "messages[1].content"),
    (msg(USER, {"role": "assistant", "content": [{"type": "image_url"}]}), "messages[1].content[0].type"),
    (msg(USER, {"role": "assistant", "content": 7}), "messages[1].content"),
    (msg(USER, {"role": "assistant", "tool_calls": {}}), "messages[1].tool_calls"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}), "messages[1].tool_calls[0].id"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "custom", "function": {"name": "f", "arguments": "{}"}}]}),
     "messages[1].tool_calls[0].type"),
    (msg(USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}),
     "messages[1].tool_calls[0].function"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"arguments": "{}"}}]}), "messages[1].tool_calls[0].function.name"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}),
     "messages[1].tool_calls[0].function.arguments"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}),
     "messages[1].tool_calls[0].function.arguments"),
    (msg(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}),
     "messages[1].tool_calls[0].function.arguments"),
    (msg(USER, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}),
     "messages[1].function_call"),
    (msg(USER, {"role": "tool", "content": "x"}), "messages[1].tool_call_id"),
    (msg(USER, {"role": "tool", "tool_call_id": "c"}), "messages[1].content"),
    (msg(USER, {"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url"}]}),
     "messages[1].content[0].type"),
    (body(functions=[{"name": "f"}]), "functions"),
    (body(function_call="auto"), "function_call"),
    (body(n=2), "n"),
    (body(n="1"), "n"),
    (body(max_tokens=0), "max_tokens"),
    (body(max_tokens="10"), "max_tokens"),
    (body(max_tokens=True), "max_tokens"),
    (body(max_tokens=10.5), "max_tokens"),
    (body(max_completion_tokens=-1), "max_completion_tokens"),
    (body(temperature=2.5), "temperature"),
    (body(temperature="hot"), "temperature"),
    (body(top_p=1.5), "top_p"),
    (body(stop=5), "stop"),
    (body(stop=["a", 1]), "stop[1]"),
    (body(stream="yes"), "stream"),
    (body(stream=True, stream_options="usage"), "stream_options"),
    (body(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (body(tools={}), "tools"),
    (body(tools=["f"]), "tools[0]"),
    (body(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0].type"),
    (body(tools=[{"type": "function"}]), "tools[0].function"),
    (body(tools=[{"type": "function", "function": {"description": "d"}}]), "tools[0].function.name"),
    (body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
     "tools[0].function.parameters"),
    (body(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]), "tools[0].function.strict"),
    (body(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]),
     "tools[0].function.description"),
    (body(tool_choice="sometimes"), "tool_choice"),
    (body(tool_choice=3), "tool_choice"),
    (body(tool_choice={"type": "allowed_tools"}), "tool_choice.type"),
    (body(tool_choice={"type": "function", "function": {}}), "tool_choice.function.name"),
    (body(parallel_tool_calls="no"), "parallel_tool_calls"),
    (body(user=5), "user"),
    (body(metadata="x"), "metadata"),
]


@pytest.mark.parametrize(("payload", "param"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_requests_are_400_naming_the_field(payload: Any, param: str) -> None:
    err = bad(payload)
    assert err.status == 400
    assert err.param == param
    assert param in err.message


def test_sdk_built_bodies_parse() -> None:
    captured: list[dict[str, Any]] = []
    client = answering(orjson.dumps(codec.render_response(ChatResponse("c", "m", (TextBlock("ok"),), "end_turn"))),
                       "application/json", captured)
    client.chat.completions.create(
        model="gpt-4o", max_completion_tokens=64, temperature=0.2, stop=["x"], seed=3,
        messages=[
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "https://e.x/a.png"}}]},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                  "function": {"name": "f", "arguments": '{"a": [1, 2]}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
    )
    req = codec.parse_request(captured[0])
    assert req.system == (TextBlock("Be terse."),)
    assert req.messages[1] == Message("assistant", (ToolUseBlock("call_1", "f", {"a": [1, 2]}),))
    assert req.messages[2] == Message("user", (ToolResultBlock("call_1", (TextBlock("done"),)),))
    assert req.max_tokens == 64 and req.extra == {"max_completion_tokens": 64, "seed": 3}
    assert req.tool_choice == ToolChoice("tool", name="f")


# --- egress: what providers get -----------------------------------------------


def test_build_full_conversation() -> None:
    req = canonical(
        system=(TextBlock("Be brief."),),
        messages=(
            Message("user", (TextBlock("Look"), ImageBlock(media_type="image/png", data="AAA", detail="high"),
                             ImageBlock(url="https://e.x/b.jpg"))),
            Message("assistant", (TextBlock("Checking."), ToolUseBlock("toolu_1", "weather", {"city": "Paris"}))),
            Message("user", (TextBlock("also this"), ToolResultBlock("toolu_1", (TextBlock("18C"),)))),
            Message("assistant", (ToolUseBlock("toolu_2", "time", {}),)),
            Message("user", (ToolResultBlock("toolu_2", (TextBlock("boom"),), is_error=True),)),
        ),
        max_tokens=100, temperature=0.5, top_p=0.9, stop=("END",), user="u1",
    )
    assert build(req) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://e.x/b.jpg"}},
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "also this"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        ],
        "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "user": "u1",
    }


def test_several_system_blocks_and_texts_become_parts() -> None:
    out = build(canonical(system=(TextBlock("a"), TextBlock("b")),
                          messages=(Message("user", (TextBlock("x"), TextBlock("y"))),)))
    assert out["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
    ]


def test_max_completion_tokens_is_remembered_for_openai_callers() -> None:
    req = codec.parse_request(body(max_completion_tokens=77))
    out = build(req)
    assert out["max_completion_tokens"] == 77 and "max_tokens" not in out
    plain = build(codec.parse_request(body(max_tokens=77)), model="o3-mini")
    assert plain["max_tokens"] == 77 and "max_completion_tokens" not in plain  # the caller's choice stands


@pytest.mark.parametrize(("model", "field"), [("gpt-4o", "max_tokens"), ("o3-mini", "max_completion_tokens"),
                                              ("o1", "max_completion_tokens"), ("gpt-5-mini", "max_completion_tokens"),
                                              ("llama3", "max_tokens")])
def test_anthropic_callers_get_the_limit_field_the_model_takes(model: str, field: str) -> None:
    out = build(canonical(max_tokens=99, source_format="anthropic"), model=model)
    assert out[field] == 99
    assert len({"max_tokens", "max_completion_tokens"} & out.keys()) == 1


def test_default_max_tokens_is_not_applied_to_openai() -> None:
    assert "max_tokens" not in codec.build_request(canonical(source_format="anthropic"), "gpt-4o",
                                                   default_max_tokens=1024)


@pytest.mark.parametrize("include_usage", [False, True])
def test_streams_always_ask_for_usage(include_usage: bool) -> None:
    out = build(canonical(stream=True, include_usage=include_usage))
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


TOOLS = (Tool("f", "does f", {"type": "object", "properties": {}}, strict=True),)


@pytest.mark.parametrize(("choice", "expected"), [
    (ToolChoice("auto"), {"tool_choice": "auto"}),
    (ToolChoice("none"), {"tool_choice": "none"}),
    (ToolChoice("any"), {"tool_choice": "required"}),
    (ToolChoice("tool", name="f"), {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    (ToolChoice("any", disable_parallel=True), {"tool_choice": "required", "parallel_tool_calls": False}),
    (ToolChoice("auto", disable_parallel=True), {"tool_choice": "auto", "parallel_tool_calls": False}),
])
def test_tool_choice_mapping(choice: ToolChoice, expected: dict[str, Any]) -> None:
    out = build(canonical(tools=TOOLS, tool_choice=choice))
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "description": "does f",
                                                              "parameters": {"type": "object", "properties": {}},
                                                              "strict": True}}]
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in build(canonical(tool_choice=ToolChoice("auto", disable_parallel=True)))
    with pytest.raises(InvalidRequest) as info:
        build(canonical(tool_choice=ToolChoice("any")))
    assert info.value.param == "tool_choice"


def test_own_extras_pass_through() -> None:
    req = codec.parse_request(body(seed=1, logit_bias={"1": 2}, response_format={"type": "json_object"},
                                   metadata={"a": "b"}, store=True))
    out = build(req)
    assert out["seed"] == 1 and out["logit_bias"] == {"1": 2} and out["response_format"] == {"type": "json_object"}
    assert out["metadata"] == {"a": "b"} and out["store"] is True


@pytest.mark.parametrize(("extra", "param"), [
    ({"top_k": 5}, "top_k"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"container": "c1"}, "container"),
])
def test_anthropic_only_parameters_are_refused(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build(canonical(extra=extra, source_format="anthropic"))
    assert info.value.param == param and param in info.value.message


def test_anthropic_no_op_parameters_are_dropped() -> None:
    out = build(canonical(extra={"thinking": {"type": "disabled"}, "service_tier": "auto"},
                          metadata={"user_id": "x"}, user="x", source_format="anthropic"))
    assert "thinking" not in out and "service_tier" not in out and "metadata" not in out
    assert out["user"] == "x"


@pytest.mark.parametrize(("message", "param"), [
    (Message("user", (ToolResultBlock("t", (ImageBlock(url="https://x/y.png"),)),)),
     "messages[1].content[0].content[0]"),
    (Message("user", (ToolUseBlock("t", "f", {}),)), "messages[1].content[0]"),
    (Message("assistant", (ImageBlock(url="https://x/y.png"),)), "messages[1].content[0]"),
    (Message("user", (ImageBlock(data="AAA"),)), "messages[1].content[0]"),
])
def test_inexpressible_content_is_refused(message: Message, param: str) -> None:
    req = canonical(messages=(Message("assistant", (ToolUseBlock("t", "f", {}),)), message))
    with pytest.raises(InvalidRequest) as info:
        build(req)
    assert info.value.param == param


def test_tool_result_shapes() -> None:
    req = canonical(messages=(
        Message("assistant", (ToolUseBlock("a", "f", {}), ToolUseBlock("b", "f", {}), ToolUseBlock("c", "f", {}))),
        Message("user", (ToolResultBlock("a", ()), ToolResultBlock("b", (TextBlock("1"), TextBlock("2"))),
                         ToolResultBlock("c", (), is_error=True))),
    ))
    assert build(req)["messages"][1:] == [
        {"role": "tool", "tool_call_id": "a", "content": ""},
        {"role": "tool", "tool_call_id": "b",
         "content": [{"type": "text", "text": "1"}, {"type": "text", "text": "2"}]},
        {"role": "tool", "tool_call_id": "c", "content": "Error"},
    ]


# --- answers: JSON --------------------------------------------------------------


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    out = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1717000000, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", **message}, "logprobs": None,
                        "finish_reason": finish}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
                     "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
                     "completion_tokens_details": {"reasoning_tokens": 0}},
           "system_fingerprint": "fp_x"}
    out.update(extra)
    return out


def test_parse_text_answer() -> None:
    resp = codec.parse_response(completion({"content": "Hello", "refusal": None}))
    assert resp == ChatResponse(id="chatcmpl-1", model="gpt-4o-mini", content=(TextBlock("Hello"),),
                                stop_reason="end_turn", usage=Usage(20, 5, 4), created=1717000000)


def test_parse_tool_answer() -> None:
    resp = codec.parse_response(completion({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]}, "tool_calls"))
    assert resp.content == (ToolUseBlock("call_1", "f", {"x": 1}), ToolUseBlock("call_2", "g", {}))
    assert resp.stop_reason == "tool_use"


@pytest.mark.parametrize(("finish", "calls", "expected"), [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("content_filter", False, "refusal"),
    ("tool_calls", False, "end_turn"), ("function_call", False, "end_turn"), (None, False, "end_turn"),
    ("eos", False, "end_turn"), ("stop", True, "tool_use"), ("tool_calls", True, "tool_use"),
    ("content_filter", True, "tool_use"), ("length", True, "max_tokens"),
])
def test_finish_reasons(finish: str | None, calls: bool, expected: str) -> None:
    message: dict[str, Any] = {"content": "x"}
    if calls:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert codec.parse_response(completion(message, finish)).stop_reason == expected


def test_refusal_answer() -> None:
    resp = codec.parse_response(completion({"content": None, "refusal": "I can't help with that."}))
    assert resp.content == (TextBlock("I can't help with that."),) and resp.stop_reason == "refusal"


def test_tool_call_cut_by_length_is_dropped() -> None:
    resp = codec.parse_response(completion({"content": "a", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": "unfini'}}]}, "length"))
    assert resp.content == (TextBlock("a"),) and resp.stop_reason == "max_tokens"


def test_content_parts_from_compatible_servers() -> None:
    resp = codec.parse_response(completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}))
    assert resp.content == (TextBlock("ab"),)


def test_minimal_compatible_server_answer() -> None:
    resp = codec.parse_response({"choices": [{"message": {"content": "hi"}}]})
    assert resp.content == (TextBlock("hi"),) and resp.usage == Usage() and resp.id.startswith("chatcmpl-")


LIES: list[Any] = [
    [],
    "text",
    {},
    {"choices": None},
    {"choices": []},
    {"choices": {}},
    {"choices": ["x"]},
    {"choices": [{}]},
    {"choices": [{"message": "hi"}]},
    {"choices": [{"message": {"content": 5}}]},
    {"choices": [{"message": {"content": [5]}}]},
    {"choices": [{"message": {"content": "x", "tool_calls": {}}}]},
    {"choices": [{"message": {"tool_calls": ["x"]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c"}]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{bad"}}]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "7"}}]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": 5, "function": {"name": "f", "arguments": "{}"}}]}}]},
    {"choices": [{"message": {"content": "x"}, "finish_reason": 3}]},
    {"choices": [{"message": {"content": "x"}}], "usage": "lots"},
    {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "5"}},
    {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": -5}},
    {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens_details": {"cached_tokens": "a"}}},
    {"choices": [{"message": {"content": "x"}}], "id": 5},
    {"choices": [{"message": {"content": "x"}}], "created": "now"},
    {"error": {"message": "model overloaded", "type": "server_error"}},
]


@pytest.mark.parametrize("lie", LIES, ids=[str(i) for i in range(len(LIES))])
def test_lying_provider_is_upstream_error(lie: Any) -> None:
    with pytest.raises(UpstreamError) as info:
        codec.parse_response(lie)
    assert info.value.status == 502


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "choices", "message", "content", "tool_calls", "function", "name", "arguments",
                         "usage", "finish_reason", "index", "delta", "prompt_tokens", "type", "error"]),
        inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_fuzzed_bodies_never_crash(value: Any) -> None:
    try:
        codec.parse_response(value)
    except UpstreamError:
        pass


def test_render_text_response_exactly() -> None:
    resp = ChatResponse("chatcmpl-1", "gpt-4o-mini", (TextBlock("Hel"), TextBlock("lo")), "end_turn",
                        usage=Usage(20, 5, 4), created=1717000000)
    assert codec.render_response(resp) == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1717000000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
                  "prompt_tokens_details": {"cached_tokens": 4}},
    }


def test_render_tool_only_response_has_null_content() -> None:
    resp = ChatResponse("msg_1", "claude", (ToolUseBlock("toolu_1", "f", {"a": [1, {"b": None}]}),), "tool_use")
    out = codec.render_response(resp)
    assert out["created"] > 0
    assert out["choices"][0]["message"] == {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "f", "arguments": '{"a":[1,{"b":null}]}'}}],
    }
    assert out["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), (None, "stop"),
])
def test_render_finish_reasons(stop: Any, finish: str) -> None:
    out = codec.render_response(ChatResponse("i", "m", (TextBlock("x"),), stop, created=1))
    assert out["choices"][0]["finish_reason"] == finish


def test_sdk_reads_rendered_json() -> None:
    resp = ChatResponse("msg_1", "claude-x", (TextBlock("Hi"), ToolUseBlock("toolu_1", "f", {"q": "é"})), "tool_use",
                        usage=Usage(11, 7, 2), created=5)
    got = answering(orjson.dumps(codec.render_response(resp)), "application/json").chat.completions.create(
        model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert got.choices[0].message.content == "Hi"
    assert got.choices[0].message.tool_calls[0].function.arguments == '{"q":"é"}'
    assert got.choices[0].finish_reason == "tool_calls"
    assert got.usage.prompt_tokens == 11 and got.usage.prompt_tokens_details.cached_tokens == 2


# --- error bodies ---------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}',
     "Rate limit reached"),
    (b'{"error": "plain string error"}', "plain string error"),
    (b'{"detail": "Not Found"}', "Not Found"),
    (b'{"message": "upstream says no"}', "upstream says no"),
    (b'[{"error": {"message": "wrapped"}}]', "wrapped"),
    (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', "Overloaded"),
    (b"Bad gateway from proxy", "Bad gateway from proxy"),
])
def test_error_message_extraction(raw: bytes, expected: str) -> None:
    assert codec.error_message(400, raw) == expected


@pytest.mark.parametrize("raw", [b"", b"<html><body>502</body></html>", b"{}", b'{"error": {}}', b"\xff\xfe", b"null"])
def test_error_message_fallback(raw: bytes) -> None:
    assert codec.error_message(503, raw) == "the provider answered HTTP 503 without a readable error message"


def test_error_message_is_short_and_masks_keys() -> None:
    message = "Incorrect API key provided: sk-proj-abcdEFGH1234****wxyz. " + "x" * 2000
    raw = orjson.dumps({"error": {"message": message}})
    text = codec.error_message(401, raw)
    assert len(text) <= 500 and "abcdEFGH" not in text and "[redacted]" in text


@given(st.binary(max_size=200))
def test_error_message_never_raises(raw: bytes) -> None:
    assert isinstance(codec.error_message(500, raw), str)


# --- answers: upstream SSE ----------------------------------------------------


def test_decode_real_transcript() -> None:
    assert decode(TRANSCRIPT) == EXPECTED


@pytest.mark.parametrize("step", [1, 2, 3, 7, 13, 64])
def test_decode_transcript_in_awkward_chunks(step: int) -> None:
    assert decode(TRANSCRIPT, list(range(step, len(TRANSCRIPT), step))) == EXPECTED


def test_decode_with_crlf_line_ends() -> None:
    assert decode(TRANSCRIPT.replace(b"\n", b"\r\n"), [5, 333, 334, 700]) == EXPECTED


@given(st.lists(st.integers(0, len(TRANSCRIPT)), max_size=20))
def test_decode_any_chunking(cuts: list[int]) -> None:
    assert decode(TRANSCRIPT, cuts) == EXPECTED


def test_decode_text_answer_with_stop_and_no_usage() -> None:
    events = decode(sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop"),
                        b"[DONE]"))
    assert events == [StreamStart("chatcmpl-9", "gpt-4o-mini", created=1717000000), TextDelta(0, "Hi"), BlockStop(0),
                      StreamEnd("end_turn", usage=Usage())]


def test_decode_tool_calls_with_finish_stop_is_tool_use() -> None:
    events = decode(sse(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                        chunk({}, "stop"), b"[DONE]"))
    assert events[-1] == StreamEnd("tool_use")


def test_decode_all_tools_in_one_chunk_and_missing_index() -> None:
    events = decode(sse(chunk({"tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]}), chunk({}, "tool_calls"), b"[DONE]"))
    assert events[1:] == [ToolUseStart(0, "c1", "f"), ToolInputDelta(0, '{"a":1}'), BlockStop(0),
                          ToolUseStart(1, "c2", "g"), ToolInputDelta(1, "{}"), BlockStop(1), StreamEnd("tool_use")]


def test_decode_refusal_and_reasoning_fields() -> None:
    events = decode(sse(chunk({"reasoning_content": "hmm"}), chunk({"refusal": "No."}), chunk({}, "stop"), b"[DONE]"))
    assert events[1:] == [ThinkingDelta(0, "hmm"), BlockStop(0), TextDelta(1, "No."), BlockStop(1),
                          StreamEnd("refusal")]  # reasoning_content (vLLM, DeepSeek): a thinking block


def test_decode_skips_azure_prefilter_chunk() -> None:
    events = decode(sse({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                         "prompt_filter_results": []},
                        chunk({"content": "x"}), chunk({}, "stop"), b"[DONE]"))
    assert events[0] == StreamStart("chatcmpl-9", "gpt-4o-mini", created=1717000000)


def test_decode_cut_tool_call_with_length_ends_with_max_tokens() -> None:
    events = decode(sse(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a'}}]}),
                        chunk({}, "length"), b"[DONE]"))
    assert events[-1] == StreamEnd("max_tokens")


@pytest.mark.parametrize("raw", [
    TRANSCRIPT[: TRANSCRIPT.index(b"[DONE]")],                      # usage came, [DONE] never did
    TRANSCRIPT[: TRANSCRIPT.index(b'"finish_reason":"tool_calls"')],  # cut inside a chunk
    TRANSCRIPT[:200],
    b"",
])
def test_cut_stream_never_looks_complete(raw: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        decode(raw)
    assert info.value.status == 502


def test_cut_stream_reports_cut() -> None:
    decoder = codec.StreamDecoder()
    decoder.feed(SSEEvent(None, orjson.dumps(chunk({"content": "x"})).decode()))
    with pytest.raises(UpstreamError, match="cut"):
        decoder.finish()


@pytest.mark.parametrize("raw", [
    sse(chunk({"content": "x"}), {"error": {"message": "The server had an error", "type": "server_error"}}),
    sse(b"not json"),
    sse(b"[1, 2]"),
    sse(chunk({"content": 5})),
    sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),  # no name
    sse(chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})),  # interleaved
    sse(chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{nope"}}]}),
        chunk({}, "tool_calls"), b"[DONE]"),  # arguments that are not JSON
    sse(chunk({"content": "x"}, usage={"prompt_tokens": "many"})),
    sse(b"[DONE]"),  # nothing before the end
])
def test_lying_streams_are_upstream_errors(raw: bytes) -> None:
    with pytest.raises(UpstreamError):
        decode(raw)


def test_error_chunk_message_reaches_the_error() -> None:
    with pytest.raises(UpstreamError, match="The server had an error"):
        decode(sse({"error": {"message": "The server had an error", "type": "server_error"}}))


def test_events_after_done_are_ignored() -> None:
    decoder = codec.StreamDecoder()
    for p in (chunk({"content": "x"}), chunk({}, "stop")):
        decoder.feed(SSEEvent(None, orjson.dumps(p).decode()))
    assert decoder.feed(SSEEvent(None, "[DONE]"))[-1] == StreamEnd("end_turn")
    assert decoder.feed(SSEEvent(None, "garbage")) == []
    assert decoder.finish() == []


@settings(max_examples=300)
@given(st.lists(json_values, max_size=5))
def test_fuzzed_stream_events_only_raise_upstream_errors(payloads: list[Any]) -> None:
    decoder = codec.StreamDecoder()
    try:
        for p in payloads:
            decoder.feed(SSEEvent(None, orjson.dumps(p).decode()))
        decoder.feed(SSEEvent(None, "[DONE]"))
    except UpstreamError:
        pass


# --- answers: our SSE to callers ----------------------------------------------


def chunks_of(raw: bytes) -> list[Any]:
    parser = SSEParser()
    events = parser.feed(raw) + parser.flush()
    assert all(e.event is None for e in events)
    return [e.data if e.data == "[DONE]" else orjson.loads(e.data) for e in events]


STREAM = [
    StreamStart("chatcmpl-7", "gpt-4o", created=1700000000),
    TextDelta(0, "Hi"),
    BlockStop(0),
    ToolUseStart(1, "call_a", "f"),
    ToolInputDelta(1, '{"a":'),
    ToolInputDelta(1, "1}"),
    BlockStop(1),
    ToolUseStart(2, "call_b", "g"),
    ToolInputDelta(2, "{}"),
    BlockStop(2),
    StreamEnd("tool_use", usage=Usage(9, 4, 1)),
]


def head(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def test_encode_exact_chunks_without_usage() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    raw = b"".join(enc.encode(ev) for ev in STREAM)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert chunks_of(raw) == [
        head({"role": "assistant", "content": ""}),
        head({"content": "Hi"}),
        head({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                              "function": {"name": "f", "arguments": ""}}]}),
        head({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        head({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        head({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                              "function": {"name": "g", "arguments": ""}}]}),
        head({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        head({}, "tool_calls"),
        "[DONE]",
    ]


def test_encode_with_usage_adds_usage_chunk_before_done() -> None:
    enc = codec.StreamEncoder(include_usage=True)
    out = chunks_of(b"".join(enc.encode(ev) for ev in STREAM))
    assert all(c["usage"] is None for c in out[:-2])
    assert out[-2] == {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
                       "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
                                                "prompt_tokens_details": {"cached_tokens": 1}}}
    assert out[-1] == "[DONE]"


def test_encode_block_stop_is_silent_and_created_defaults_to_now() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    first = chunks_of(enc.encode(StreamStart("msg_1", "claude")))[0]
    assert first["created"] > 1_600_000_000
    assert enc.encode(BlockStop(0)) == b""
    assert enc.encode(TextDelta(0, "")) == b""


def test_encode_requires_start() -> None:
    with pytest.raises(ValueError):
        codec.StreamEncoder(include_usage=False).encode(TextDelta(0, "x"))


def test_encode_error_event() -> None:
    raw = codec.StreamEncoder(include_usage=True).error(NoHealthyProvider("all providers are down"))
    assert chunks_of(raw) == [{"error": {"message": "all providers are down", "type": "server_error", "param": None,
                                         "code": "no_healthy_provider"}}]


def test_sdk_reads_our_stream_and_assembles_tool_calls() -> None:
    enc = codec.StreamEncoder(include_usage=True)
    client = answering(b"".join(enc.encode(ev) for ev in STREAM), "text/event-stream")
    with client.chat.completions.stream(model="gpt-4o", messages=[{"role": "user", "content": "x"}]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Hi" and choice.finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in choice.message.tool_calls] == [
        ("call_a", "f", '{"a":1}'), ("call_b", "g", "{}")]
    assert final.usage.prompt_tokens == 9 and final.usage.completion_tokens == 4


def test_sdk_raises_on_our_error_event() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    raw = enc.encode(STREAM[0]) + enc.encode(STREAM[1]) + enc.error(UpstreamError("provider died"))
    chunks = []
    with pytest.raises(openai.APIError, match="provider died"):
        for c in answering(raw, "text/event-stream").chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True):
            chunks.append(c)
    assert chunks[-1].choices[0].delta.content == "Hi"


def test_stream_and_json_paths_agree_on_the_transcript() -> None:
    acc = StreamAccumulator()
    for ev in decode(TRANSCRIPT):
        acc.feed(ev)
    assert acc.complete
    streamed = acc.response()
    plain = codec.parse_response(completion({"content": "Let me check ☀️.", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
    ]}, "tool_calls", id="chatcmpl-9", usage=copy.deepcopy(USAGE_CHUNK["usage"])))
    assert streamed == plain


def test_replay_of_a_response_decodes_back() -> None:
    resp = ChatResponse("chatcmpl-3", "gpt-4o", (TextBlock("x"), ToolUseBlock("c", "f", {"k": [1]})), "tool_use",
                        usage=Usage(3, 2, 1), created=42)
    enc = codec.StreamEncoder(include_usage=True)
    acc = StreamAccumulator()
    for ev in decode(b"".join(enc.encode(ev) for ev in events_from_response(resp)), [1, 50, 51, 300]):
        acc.feed(ev)
    assert acc.response() == resp

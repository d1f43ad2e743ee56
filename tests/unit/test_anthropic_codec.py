"""The Anthropic codec: strict ingress, faithful egress, lying providers, both stream directions.

The official ``anthropic`` SDK is the judge where it matters: it builds the
bodies we parse and consumes the JSON and named SSE events we render
(over an in-memory transport, no network).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidRequest, RateLimited, UpstreamError
from app.formats import anthropic as codec
from app.formats.canonical import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImageBlock,
    Message,
    SignatureDelta,
    StreamEnd,
    StreamStart,
    TextBlock,
    TextDelta,
    ThinkingBlock,
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
    base: dict[str, Any] = {"model": "claude-3-5-haiku-latest", "max_tokens": 256,
                            "messages": [{"role": "user", "content": "Hi"}]}
    base.update(over)
    return base


def msg(*messages: Any) -> dict[str, Any]:
    return body(messages=list(messages))


def canonical(**over: Any) -> ChatRequest:
    base: dict[str, Any] = {"model": "m", "messages": (Message("user", (TextBlock("Hi"),)),),
                            "source_format": "anthropic", "max_tokens": 100}
    base.update(over)
    return ChatRequest(**base)


def build(req: ChatRequest, default_max_tokens: int = 4096) -> dict[str, Any]:
    return codec.build_request(req, "claude-x", default_max_tokens=default_max_tokens)


def named(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def decode(raw: bytes, cuts: list[int] | None = None) -> list[Any]:
    return list(decode_sse(split_at(raw, cuts or []), codec.StreamDecoder()))


def start(usage: dict[str, int] | None = None) -> bytes:
    return named("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": None, "stop_sequence": None,
        "usage": usage or {"input_tokens": 25, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 10,
                           "output_tokens": 1}}})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return named("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, d: dict[str, Any]) -> bytes:
    return named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})


def block_stop(index: int) -> bytes:
    return named("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop: str, output: int = 40, stop_sequence: str | None = None) -> bytes:
    return named("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop,
                                                                      "stop_sequence": stop_sequence},
                                   "usage": {"output_tokens": output}})


STOP = named("message_stop", {"type": "message_stop"})
PING = named("ping", {"type": "ping"})

# A real-looking answer (docs.anthropic.com/en/docs/build-with-claude/streaming): thinking, text,
# two tool calls with input in fragments.
TRANSCRIPT = b"".join([
    start(),
    PING,
    block_start(0, {"type": "thinking", "thinking": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "The user wants weather."}),
    delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAh=="}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Let me "}),
    delta(1, {"type": "text_delta", "text": "check ☀️."}),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": ""}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"city": "Pa'}),
    delta(2, {"type": "input_json_delta", "partial_json": 'ris"}'}),
    block_stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}),
    delta(3, {"type": "input_json_delta", "partial_json": "{}"}),
    block_stop(3),
    message_delta("tool_use"),
    STOP,
])
EXPECTED = [
    StreamStart(id="msg_01", model="claude-sonnet-4-5", usage=Usage(40, 1, 10, 5)),
    ThinkingDelta(0, ""),
    ThinkingDelta(0, "The user wants weather."),
    SignatureDelta(0, "EqQBCgIYAh=="),
    BlockStop(0),
    TextDelta(1, "Let me "),
    TextDelta(1, "check ☀️."),
    BlockStop(1),
    ToolUseStart(2, "toolu_a", "weather"),
    ToolInputDelta(2, '{"city": "Pa'),
    ToolInputDelta(2, 'ris"}'),
    BlockStop(2),
    ToolUseStart(3, "toolu_b", "time"),
    ToolInputDelta(3, "{}"),
    BlockStop(3),
    StreamEnd(stop_reason="tool_use", usage=Usage(40, 40, 10, 5)),
]


def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url="http://gateway.test",
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)


def answering(content: bytes, content_type: str, captured: list[dict[str, Any]] | None = None) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if captured is not None:
            captured.append(orjson.loads(request.content))
        return httpx2.Response(200, content=content, headers={"content-type": content_type})

    return sdk_client(handler)


# --- ingress ------------------------------------------------------------------


def test_minimal_request() -> None:
    assert codec.parse_request(body()) == ChatRequest(
        model="claude-3-5-haiku-latest", messages=(Message("user", (TextBlock("Hi"),)),), max_tokens=256,
        source_format="anthropic")


def test_full_request() -> None:
    req = codec.parse_request(body(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Use French."}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "image", "source": {"type": "url", "url": "https://e.x/cat.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": [
                    {"type": "text", "text": "failed"},
                    {"type": "image", "source": {"type": "url", "url": "https://e.x/err.png"}}]},
                {"type": "tool_result", "tool_use_id": "toolu_3"},
                {"type": "text", "text": "thanks"},
            ]},
        ],
        temperature=0.3, top_p=0.8, top_k=40, stop_sequences=["END"], stream=True,
        tools=[{"name": "weather", "description": "Weather now",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
               {"type": "custom", "name": "time", "input_schema": {"type": "object"}, "strict": True}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        metadata={"user_id": "user-42"},
        thinking={"type": "enabled", "budget_tokens": 2048},
    ))
    assert req.system == (TextBlock("Be brief."), TextBlock("Use French."))
    assert req.messages == (
        Message("user", (TextBlock("What is this?"), ImageBlock(media_type="image/png", data="iVBO"),
                         ImageBlock(url="https://e.x/cat.jpg"))),
        Message("assistant", (ThinkingBlock("hm", "s"), TextBlock("Checking."),
                              ToolUseBlock("toolu_1", "weather", {"city": "Paris"}))),
        Message("user", (ToolResultBlock("toolu_1", (TextBlock("18C"),)),
                         ToolResultBlock("toolu_2", (TextBlock("failed"), ImageBlock(url="https://e.x/err.png")),
                                         is_error=True),
                         ToolResultBlock("toolu_3", ()),
                         TextBlock("thanks"))),
    )
    assert req.tools == (
        Tool("weather", "Weather now", {"type": "object", "properties": {"city": {"type": "string"}}}),
        Tool("time", None, {"type": "object"}, strict=True),
    )
    assert req.tool_choice == ToolChoice("any", disable_parallel=True)
    assert (req.temperature, req.top_p, req.stop, req.stream) == (0.3, 0.8, ("END",), True)
    assert req.user == "user-42" and req.metadata == {"user_id": "user-42"}
    assert req.extra == {"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert req.source_format == "anthropic"


def test_system_string_and_final_empty_assistant() -> None:
    req = codec.parse_request(body(system="Be brief.", messages=[{"role": "user", "content": "x"},
                                                                 {"role": "assistant", "content": ""}]))
    assert req.system == (TextBlock("Be brief."),)
    assert req.messages[-1] == Message("assistant", ())


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, ToolChoice("auto")),
    ({"type": "none"}, ToolChoice("none")),
    ({"type": "tool", "name": "f"}, ToolChoice("tool", name="f")),
    ({"type": "auto", "disable_parallel_tool_use": True}, ToolChoice("auto", disable_parallel=True)),
])
def test_tool_choice(choice: dict[str, Any], expected: ToolChoice) -> None:
    assert codec.parse_request(body(tool_choice=choice)).tool_choice == expected


USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "ok"}

INVALID: list[tuple[Any, str]] = [
    ("x", "body"),
    ({"max_tokens": 5, "messages": [USER]}, "model"),
    (body(model=["m"]), "model"),
    ({"model": "m", "max_tokens": 5}, "messages"),
    (body(messages={}), "messages"),
    (body(messages=[]), "messages"),
    ({"model": "m", "messages": [USER]}, "max_tokens"),
    (body(max_tokens=0), "max_tokens"),
    (body(max_tokens="100"), "max_tokens"),
    (body(max_tokens=None), "max_tokens"),
    (msg(5), "messages[0]"),
    (msg({"content": "x"}), "messages[0].role"),
    (msg({"role": "system", "content": "x"}), "messages[0].role"),
    (msg({"role": "user"}), "messages[0].content"),
    (msg({"role": "user", "content": 5}), "messages[0].content"),
    (msg({"role": "user", "content": ""}), "messages[0].content"),
    (msg({"role": "user", "content": []}), "messages[0].content"),
    (msg({"role": "assistant", "content": []}, USER), "messages[0].content"),
    (msg({"role": "user", "content": ["x"]}), "messages[0].content[0]"),
    (msg({"role": "user", "content": [{"text": "x"}]}), "messages[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "document", "source": {}}]}), "messages[0].content[0].source.type"),
    (msg({"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                      "data": "x"}}]}),
     "messages[0].content[0].source.type"),
    (msg({"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "x"}}]}),
     "messages[0].content[0].source.media_type"),
    (msg({"role": "user", "content": [{"type": "text", "text": None}]}), "messages[0].content[0].text"),
    (msg({"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
     "messages[0].content[0].type"),
    (msg(USER, {"role": "assistant", "content": [{"type": "image", "source": {}}]}), "messages[1].content[0].type"),
    (msg(USER, {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}),
     "messages[1].content[0].type"),
    (msg({"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}), "messages[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "image"}]}), "messages[0].content[0].source"),
    (msg({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
     "messages[0].content[0].source.type"),
    (msg({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AA"}}]}),
     "messages[0].content[0].source.media_type"),
    (msg({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}),
     "messages[0].content[0].source.data"),
    (msg({"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "file:///etc/x"}}]}),
     "messages[0].content[0].source.url"),
    (msg(USER, {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}),
     "messages[1].content[0].id"),
    (msg(USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}),
     "messages[1].content[0].name"),
    (msg(USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}),
     "messages[1].content[0].input"),
    (msg(USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}),
     "messages[1].content[0].input"),
    (msg({"role": "user", "content": [{"type": "tool_result"}]}), "messages[0].content[0].tool_use_id"),
    (msg({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}),
     "messages[0].content[0].content"),
    (msg({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                       "content": [{"type": "tool_use"}]}]}),
     "messages[0].content[0].content[0].type"),
    (msg({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]}),
     "messages[0].content[0].is_error"),
    (body(system=5), "system"),
    (body(system=[{"type": "image"}]), "system[0].type"),
    (body(system=[{"type": "text"}]), "system[0].text"),
    (body(temperature=1.5), "temperature"),
    (body(top_p=-0.1), "top_p"),
    (body(stop_sequences="END"), "stop_sequences"),
    (body(stop_sequences=["a", None]), "stop_sequences[1]"),
    (body(stream=1), "stream"),
    (body(tools={"name": "f"}), "tools"),
    (body(tools=[{"name": "f"}]), "tools[0].input_schema"),
    (body(tools=[{"input_schema": {}}]), "tools[0].name"),
    (body(tools=[{"type": "web_search_20250305"}]), "tools[0].name"),
    (body(tools=[{"name": "f", "input_schema": []}]), "tools[0].input_schema"),
    (body(tool_choice="auto"), "tool_choice"),
    (body(tool_choice={"type": "required"}), "tool_choice.type"),
    (body(tool_choice={"type": "tool"}), "tool_choice.name"),
    (body(tool_choice={"type": "any", "disable_parallel_tool_use": "yes"}), "tool_choice.disable_parallel_tool_use"),
    (body(metadata="u"), "metadata"),
    (body(metadata={"user_id": 5}), "metadata.user_id"),
]


@pytest.mark.parametrize(("payload", "param"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_requests_are_400_naming_the_field(payload: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        codec.parse_request(payload)
    assert info.value.status == 400
    assert info.value.param == param
    assert param in info.value.message


def test_sdk_built_bodies_parse() -> None:
    captured: list[dict[str, Any]] = []
    reply = codec.render_response(ChatResponse("msg_1", "claude-x", (TextBlock("ok"),), "end_turn"))
    answering(orjson.dumps(reply), "application/json", captured).messages.create(
        model="claude-x", max_tokens=64, system="Be brief.", stop_sequences=["x"], extra_body={"top_k": 5},
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "f"},
        metadata={"user_id": "u1"},
    )
    req = codec.parse_request(captured[0])
    assert req.messages[1] == Message("assistant", (ToolUseBlock("toolu_1", "f", {"a": 1}),))
    assert req.messages[2] == Message("user", (ToolResultBlock("toolu_1", (TextBlock("sunny"),)),))
    assert req.extra == {"top_k": 5} and req.user == "u1" and req.tool_choice == ToolChoice("tool", name="f")


# --- egress -------------------------------------------------------------------


def test_build_full_conversation() -> None:
    req = canonical(
        system=(TextBlock("Be brief."),),
        messages=(
            Message("user", (TextBlock("Look"), ImageBlock(media_type="image/png", data="AAA", detail="high"))),
            Message("user", (ImageBlock(url="https://e.x/b.jpg"),)),
            Message("assistant", (TextBlock("Checking."), ToolUseBlock("call_1", "weather", {"city": "Paris"}))),
            Message("user", (TextBlock("and this"), ToolResultBlock("call_1", (TextBlock("18C"),), is_error=True))),
        ),
        temperature=0.5, top_p=0.9, stop=("END",), user="u1", stream=True,
    )
    assert build(req) == {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://e.x/b.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}],
                 "is_error": True},
                {"type": "text", "text": "and this"},
            ]},
        ],
        "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"], "stream": True,
        "metadata": {"user_id": "u1"},
    }


def test_default_max_tokens_applies_only_when_absent() -> None:
    assert build(canonical(max_tokens=None, source_format="openai"), default_max_tokens=1234)["max_tokens"] == 1234
    assert build(canonical(max_tokens=7), default_max_tokens=1234)["max_tokens"] == 7


def test_several_system_blocks_and_empty_texts() -> None:
    out = build(canonical(system=(TextBlock("a"), TextBlock(""), TextBlock("b")),
                          messages=(Message("user", (TextBlock(""), TextBlock("x"))),
                                    Message("assistant", (TextBlock(""),)),
                                    Message("user", (TextBlock("y"),)))))
    assert out["system"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                            {"type": "text", "text": "y"}]}]


def test_nothing_to_send_is_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        build(canonical(messages=(Message("user", (TextBlock(""),)),)))
    assert info.value.param == "messages"


def test_tool_ids_are_rewritten_consistently() -> None:
    out = build(canonical(messages=(
        Message("assistant", (ToolUseBlock("call:1/x", "f", {}),)),
        Message("user", (ToolResultBlock("call:1/x", ()),)),
    )))
    assert out["messages"][0]["content"][0]["id"] == "call_1_x"
    assert out["messages"][1]["content"] == [{"type": "tool_result", "tool_use_id": "call_1_x"}]


@pytest.mark.parametrize("messages", [
    (Message("user", (ToolResultBlock("t1", ()),)),),
    (Message("assistant", (ToolUseBlock("t1", "f", {}),)), Message("user", (ToolResultBlock("t2", ()),))),
    (Message("assistant", (ToolUseBlock("t1", "f", {}),)), Message("user", (TextBlock("x"),)),
     Message("assistant", (TextBlock("y"),)), Message("user", (ToolResultBlock("t1", ()),))),
])
def test_tool_result_must_answer_the_assistant_turn_just_before(messages: tuple[Message, ...]) -> None:
    with pytest.raises(InvalidRequest) as info:
        build(canonical(messages=messages))
    bad_index = len(messages) - 1
    assert info.value.param == f"messages[{bad_index}]"
    assert f"messages[{bad_index}]" in info.value.message


def test_tool_results_may_be_split_over_merged_user_messages() -> None:
    out = build(canonical(messages=(
        Message("assistant", (ToolUseBlock("a", "f", {}), ToolUseBlock("b", "f", {}))),
        Message("user", (ToolResultBlock("a", (TextBlock("1"),)),)),
        Message("user", (TextBlock("hi"), ToolResultBlock("b", (TextBlock("2"),)))),
    )))
    assert [b.get("tool_use_id", b.get("text")) for b in out["messages"][1]["content"]] == ["a", "b", "hi"]


@pytest.mark.parametrize(("choice", "expected"), [
    (ToolChoice("auto"), {"type": "auto"}),
    (ToolChoice("none"), {"type": "none"}),
    (ToolChoice("any", disable_parallel=True), {"type": "any", "disable_parallel_tool_use": True}),
    (ToolChoice("tool", name="f"), {"type": "tool", "name": "f"}),
])
def test_tool_choice_and_tools(choice: ToolChoice, expected: dict[str, Any]) -> None:
    out = build(canonical(tools=(Tool("f", "d", {"properties": {}}, strict=True),), tool_choice=choice))
    assert out["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}},
                             "strict": True}]
    assert out["tool_choice"] == expected


def test_openai_strict_flag_is_not_forwarded() -> None:
    out = build(canonical(tools=(Tool("f", None, {"type": "object"}, strict=True),), source_format="openai"))
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in build(canonical(tool_choice=ToolChoice("none")))
    with pytest.raises(InvalidRequest) as info:
        build(canonical(tool_choice=ToolChoice("tool", name="f")))
    assert info.value.param == "tool_choice"


def test_temperature_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        build(canonical(temperature=1.5, source_format="openai"))
    assert info.value.param == "temperature"


@pytest.mark.parametrize(("extra", "param"), [
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": -1}, "presence_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"seed": 42}, "seed"),
    ({"logprobs": True}, "logprobs"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"some_unknown_param": 1}, "some_unknown_param"),
])
def test_openai_only_parameters_are_refused(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build(canonical(extra=extra, source_format="openai"))
    assert info.value.param == param and param in info.value.message


def test_openai_defaults_are_dropped_silently() -> None:
    req = codec.parse_request(body())  # only to be sure nothing leaks from an Anthropic body
    assert req.extra == {}
    out = build(canonical(source_format="openai", max_tokens=50, metadata={"tag": "x"}, extra={
        "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": False, "logit_bias": {},
        "response_format": {"type": "text"}, "max_completion_tokens": 50, "store": True, "service_tier": "auto"}))
    assert set(out) == {"model", "max_tokens", "messages"}


def test_own_extras_pass_through() -> None:
    req = codec.parse_request(body(top_k=5, thinking={"type": "enabled", "budget_tokens": 1024},
                                   metadata={"user_id": "u"}))
    out = build(req)
    assert out["top_k"] == 5 and out["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert out["metadata"] == {"user_id": "u"}


@pytest.mark.parametrize(("message", "param"), [
    (Message("assistant", (ImageBlock(url="https://x/y.png"),)), "messages[1].content[0]"),
    (Message("assistant", (ToolResultBlock("t", ()),)), "messages[1].content[0]"),
    (Message("user", (ToolUseBlock("t", "f", {}),)), "messages[1].content[0]"),
    (Message("user", (ImageBlock(data="AAA"),)), "messages[1].content[0]"),
    (Message("user", (ImageBlock(),)), "messages[1].content[0]"),
])
def test_inexpressible_content_is_refused(message: Message, param: str) -> None:
    first = Message("user", (TextBlock("x"),)) if message.role == "assistant" else Message("assistant", (
        TextBlock("x"),))
    with pytest.raises(InvalidRequest) as info:
        build(canonical(messages=(first, message)))
    assert info.value.param == param


# --- answers: JSON --------------------------------------------------------------


def message_body(content: list[dict[str, Any]], stop: str | None = "end_turn", **extra: Any) -> dict[str, Any]:
    out = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content,
           "stop_reason": stop, "stop_sequence": None,
           "usage": {"input_tokens": 25, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 10,
                     "output_tokens": 40, "service_tier": "standard"}}
    out.update(extra)
    return out


def test_parse_answer_with_thinking_text_and_tools() -> None:
    resp = codec.parse_response(message_body([
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "text", "text": "Let me check ☀️."},
        {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
    ], "tool_use"))
    assert resp == ChatResponse(
        id="msg_01", model="claude-sonnet-4-5",
        content=(ThinkingBlock("hm", "s"), TextBlock("Let me check ☀️."),
                 ToolUseBlock("toolu_a", "weather", {"city": "Paris"}), ToolUseBlock("toolu_b", "time", {})),
        stop_reason="tool_use", usage=Usage(40, 40, 10, 5))


@pytest.mark.parametrize(("stop", "tools", "expected"), [
    ("end_turn", False, "end_turn"), ("max_tokens", False, "max_tokens"), ("stop_sequence", False, "stop_sequence"),
    ("refusal", False, "refusal"), ("pause_turn", False, "end_turn"), ("tool_use", False, "end_turn"),
    ("model_context_window_exceeded", False, "max_tokens"), (None, False, "end_turn"),
    ("new_reason", False, "end_turn"),
    ("end_turn", True, "tool_use"), ("max_tokens", True, "max_tokens"),
])
def test_stop_reasons(stop: str | None, tools: bool, expected: str) -> None:
    content: list[dict[str, Any]] = [{"type": "text", "text": "x"}]
    if tools:
        content.append({"type": "tool_use", "id": "t", "name": "f", "input": {}})
    assert codec.parse_response(message_body(content, stop)).stop_reason == expected


def test_stop_sequence_is_kept() -> None:
    resp = codec.parse_response(message_body([{"type": "text", "text": "x"}], "stop_sequence", stop_sequence="END"))
    assert resp.stop_sequence == "END"


LIES: list[Any] = [
    None,
    [],
    {},
    {"type": "message", "id": "m"},
    {"id": "m", "content": {}},
    {"id": "m", "content": ["x"]},
    {"id": "m", "content": [{}]},
    {"id": "m", "content": [{"type": "text"}]},
    {"id": "m", "content": [{"type": "text", "text": 5}]},
    {"id": "m", "content": [{"type": "tool_use", "name": "f", "input": {}}]},
    {"id": "m", "content": [{"type": "tool_use", "id": "t", "input": {}}]},
    {"id": "m", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]},
    {"id": "m", "content": [], "stop_reason": 1},
    {"id": "m", "content": [], "usage": []},
    {"id": "m", "content": [], "usage": {"input_tokens": "10"}},
    {"id": "m", "content": [], "usage": {"output_tokens": -1}},
    {"id": 5, "content": []},
    {"content": []},
    {"type": "completion", "id": "m", "content": []},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
]


@pytest.mark.parametrize("lie", LIES, ids=[str(i) for i in range(len(LIES))])
def test_lying_provider_is_upstream_error(lie: Any) -> None:
    with pytest.raises(UpstreamError) as info:
        codec.parse_response(lie)
    assert info.value.status == 502


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "type", "content", "text", "name", "input", "usage", "stop_reason", "index",
                         "delta", "message", "content_block", "partial_json", "input_tokens", "output_tokens"]),
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


def test_render_response_exactly() -> None:
    resp = ChatResponse("chatcmpl-1", "gpt-4o", (TextBlock("Hi"), ToolUseBlock("call_1", "f", {"a": 1})), "tool_use",
                        usage=Usage(40, 7, 10), created=123)
    assert codec.render_response(resp) == {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
        "content": [{"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 10,
                  "cache_creation_input_tokens": 0,
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}},
    }


def test_render_stop_sequence_and_missing_reason() -> None:
    out = codec.render_response(ChatResponse("i", "m", (), "stop_sequence", stop_sequence="END"))
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    out = codec.render_response(ChatResponse("i", "m", (), None))
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


def test_sdk_reads_rendered_json() -> None:
    resp = ChatResponse("chatcmpl-1", "gpt-4o", (TextBlock("Hi"), ToolUseBlock("call_1", "f", {"a": 1})), "tool_use",
                        usage=Usage(40, 7, 10))
    got = answering(orjson.dumps(codec.render_response(resp)), "application/json").messages.create(
        model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert got.content[0].text == "Hi" and got.content[1].input == {"a": 1} and got.stop_reason == "tool_use"
    assert got.usage.input_tokens == 30 and got.usage.cache_read_input_tokens == 10


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}',
     "max_tokens: Field required"),
    (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
     "Overloaded"),
    (b"upstream connect error or disconnect/reset before headers", "upstream connect error or disconnect/reset "
                                                                     "before headers"),
])
def test_error_message_extraction(raw: bytes, expected: str) -> None:
    assert codec.error_message(400, raw) == expected


@pytest.mark.parametrize("raw", [b"", b"<!DOCTYPE html><html>", b'{"type":"error"}', b"[]"])
def test_error_message_fallback(raw: bytes) -> None:
    assert codec.error_message(529, raw) == "the provider answered HTTP 529 without a readable error message"


def test_error_message_is_short_and_masks_keys() -> None:
    message = "invalid x-api-key sk-ant-api03-SECRETSECRET " + "y" * 900
    raw = orjson.dumps({"type": "error", "error": {"type": "authentication_error", "message": message}})
    text = codec.error_message(401, raw)
    assert len(text) <= 500 and "SECRET" not in text


@given(st.binary(max_size=200))
def test_error_message_never_raises(raw: bytes) -> None:
    assert isinstance(codec.error_message(500, raw), str)


# --- answers: upstream SSE ----------------------------------------------------


def test_decode_real_transcript() -> None:
    assert decode(TRANSCRIPT) == EXPECTED


@pytest.mark.parametrize("step", [1, 2, 5, 11, 64, 333])
def test_decode_transcript_in_awkward_chunks(step: int) -> None:
    assert decode(TRANSCRIPT, list(range(step, len(TRANSCRIPT), step))) == EXPECTED


def test_decode_with_crlf_line_ends() -> None:
    assert decode(TRANSCRIPT.replace(b"\n", b"\r\n"), [1, 2, 3, 500, 501]) == EXPECTED


@given(st.lists(st.integers(0, len(TRANSCRIPT)), max_size=20))
def test_decode_any_chunking(cuts: list[int]) -> None:
    assert decode(TRANSCRIPT, cuts) == EXPECTED


def test_decode_text_only_with_stop_sequence_and_message_delta_usage() -> None:
    raw = b"".join([
        start({"input_tokens": 12, "output_tokens": 1}),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Hello"}),
        block_stop(0),
        named("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                                "usage": {"output_tokens": 6, "input_tokens": 14, "cache_read_input_tokens": 2}}),
        STOP,
    ])
    assert decode(raw) == [StreamStart("msg_01", "claude-sonnet-4-5", usage=Usage(12, 1, 0)), TextDelta(0, "Hello"),
                           BlockStop(0), StreamEnd("stop_sequence", "END", Usage(16, 6, 2))]


def test_decode_empty_text_block_takes_no_index() -> None:
    raw = b"".join([start(), block_start(0, {"type": "text", "text": ""}), block_stop(0),
                    block_start(1, {"type": "tool_use", "id": "t", "name": "f", "input": {}}), block_stop(1),
                    message_delta("tool_use"), STOP])
    assert decode(raw)[1:] == [ToolUseStart(0, "t", "f"), BlockStop(0),
                               StreamEnd("tool_use", usage=Usage(40, 40, 10, 5))]


def test_decode_without_block_stops_still_closes_blocks() -> None:
    raw = b"".join([start(), block_start(0, {"type": "text", "text": "a"}),
                    block_start(1, {"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}}),
                    message_delta("end_turn"), STOP])
    assert decode(raw)[1:] == [TextDelta(0, "a"), BlockStop(0), ToolUseStart(1, "t", "f"), ToolInputDelta(1, '{"x":1}'),
                               BlockStop(1), StreamEnd("tool_use", usage=Usage(40, 40, 10, 5))]


def test_decode_cut_tool_input_at_max_tokens() -> None:
    raw = b"".join([start(), block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
                    delta(0, {"type": "input_json_delta", "partial_json": '{"a": "unfin'}), block_stop(0),
                    message_delta("max_tokens"), STOP])
    events = decode(raw)
    assert events[-1].stop_reason == "max_tokens"
    acc = StreamAccumulator()
    for ev in events:
        acc.feed(ev)
    assert acc.response().content == ()


@pytest.mark.parametrize("raw", [
    TRANSCRIPT[: TRANSCRIPT.index(b"event: message_stop")],
    TRANSCRIPT[: TRANSCRIPT.index(b"event: message_stop") + 30],
    TRANSCRIPT[:300],
    b"",
])
def test_cut_stream_never_looks_complete(raw: bytes) -> None:
    with pytest.raises(UpstreamError):
        decode(raw)


def test_cut_stream_says_cut() -> None:
    decoder = codec.StreamDecoder()
    parser = SSEParser()
    for ev in parser.feed(start() + PING):
        decoder.feed(ev)
    with pytest.raises(UpstreamError, match="cut"):
        decoder.finish()


@pytest.mark.parametrize("raw", [
    start() + named("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    block_start(0, {"type": "text", "text": ""}),  # before message_start
    start() + start(),
    start() + b"event: content_block_start\ndata: {not json\n\n",
    start() + b"data: [1]\n\n",
    start() + delta(0, {"type": "text_delta", "text": "x"}),  # block never started
    start() + block_start(0, {"type": "text", "text": ""}) + block_start(0, {"type": "text", "text": ""}),
    start() + block_start(0, {"type": "text", "text": ""}) + delta(0, {"type": "input_json_delta",
                                                                      "partial_json": "{}"}),
    start() + block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}) + delta(
        0, {"type": "text_delta", "text": "x"}),
    start() + block_start(0, {"type": "tool_use", "id": "t", "input": {}}),
    start() + block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}) + delta(
        0, {"type": "input_json_delta", "partial_json": "{nope"}) + block_stop(0) + message_delta("tool_use") + STOP,
    start() + block_start(0, {"type": "text", "text": ""}) + delta(0, {"type": "text_delta", "text": "a"}) + block_stop(
        0) + delta(0, {"type": "text_delta", "text": "b"}),
    start() + named("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": "x"}}),
    named("message_start", {"type": "message_start", "message": {"model": "m"}}),
])
def test_lying_streams_are_upstream_errors(raw: bytes) -> None:
    with pytest.raises(UpstreamError):
        decode(raw)


def test_error_event_message_reaches_the_error() -> None:
    with pytest.raises(UpstreamError, match="Overloaded"):
        decode(start() + named("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                    "message": "Overloaded"}}))


def test_unknown_events_and_deltas_are_ignored() -> None:
    raw = b"".join([start(), named("future_event", {"type": "future_event"}),
                    block_start(0, {"type": "text", "text": ""}),
                    delta(0, {"type": "citations_delta", "citation": {}}),
                    delta(0, {"type": "text_delta", "text": "x"}), block_stop(0),
                    block_start(1, {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}),
                    delta(1, {"type": "input_json_delta", "partial_json": "{}"}), block_stop(1),
                    message_delta("end_turn"), STOP, named("ping", {"type": "ping"})])
    assert decode(raw)[1:] == [TextDelta(0, "x"), BlockStop(0), StreamEnd("end_turn", usage=Usage(40, 40, 10, 5))]


@settings(max_examples=300)
@given(st.lists(json_values, max_size=6))
def test_fuzzed_stream_events_only_raise_upstream_errors(payloads: list[Any]) -> None:
    decoder = codec.StreamDecoder()
    try:
        decoder.feed(SSEEvent("message_start", orjson.dumps(
            {"type": "message_start", "message": {"id": "m", "model": "x", "usage": {}}}).decode()))
        for p in payloads:
            decoder.feed(SSEEvent(None, orjson.dumps(p).decode()))
        decoder.finish()
    except UpstreamError:
        pass


# --- answers: our SSE to callers ----------------------------------------------


STREAM = [
    StreamStart("chatcmpl-7", "gpt-4o", usage=Usage(0, 0, 0), created=5),
    TextDelta(0, "Hi"),
    TextDelta(0, " there"),
    BlockStop(0),
    ToolUseStart(1, "call_a", "f"),
    ToolInputDelta(1, '{"a":'),
    ToolInputDelta(1, "1}"),
    BlockStop(1),
    StreamEnd("tool_use", usage=Usage(30, 4, 10)),
]


def events_of(raw: bytes) -> list[tuple[str | None, Any]]:
    parser = SSEParser()
    return [(e.event, orjson.loads(e.data)) for e in parser.feed(raw) + parser.flush()]


def test_encode_exact_events() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    assert events_of(b"".join(enc.encode(ev) for ev in STREAM)) == [
        ("message_start", {"type": "message_start", "message": {
            "id": "chatcmpl-7", "type": "message", "role": "assistant", "model": "gpt-4o", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": " there"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 4, "input_tokens": 20, "cache_read_input_tokens": 10,
                                     "cache_creation_input_tokens": 0}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_every_event_has_an_event_line() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    raw = b"".join(enc.encode(ev) for ev in STREAM)
    assert raw.count(b"event: ") == raw.count(b"data: ") == 11


def test_encode_closes_blocks_left_open_and_stop_sequence() -> None:
    enc = codec.StreamEncoder(include_usage=True)
    raw = b"".join(enc.encode(ev) for ev in [StreamStart("m", "x"), TextDelta(0, "a"),
                                             StreamEnd("stop_sequence", "END", Usage(1, 1))])
    names = [name for name, _ in events_of(raw)]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert events_of(raw)[4][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_encode_requires_start() -> None:
    with pytest.raises(ValueError):
        codec.StreamEncoder(include_usage=False).encode(TextDelta(0, "x"))


def test_encode_error_event() -> None:
    raw = codec.StreamEncoder(include_usage=False).error(RateLimited("slow down"))
    assert events_of(raw) == [("error", {"type": "error", "error": {"type": "rate_limit_error",
                                                                    "message": "slow down"}})]


def test_sdk_reads_our_stream() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    client = answering(b"".join(enc.encode(ev) for ev in STREAM), "text/event-stream")
    with client.messages.stream(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Hi", " there"]
    assert final.content[0].text == "Hi there"
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == ("call_a", "f", {"a": 1})
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (20, 4, 10)


def test_sdk_raises_on_our_error_event() -> None:
    enc = codec.StreamEncoder(include_usage=False)
    raw = enc.encode(STREAM[0]) + enc.encode(STREAM[1]) + enc.error(UpstreamError("provider died"))
    client = answering(raw, "text/event-stream")
    with pytest.raises(anthropic.APIError, match="provider died"):
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
            for _ in stream:
                pass


def test_stream_and_json_paths_agree_on_the_transcript() -> None:
    acc = StreamAccumulator()
    for ev in decode(TRANSCRIPT):
        acc.feed(ev)
    plain = codec.parse_response(message_body([
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAh=="},
        {"type": "text", "text": "Let me check ☀️."},
        {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
    ], "tool_use"))
    assert acc.complete and acc.response() == plain


def test_replay_of_a_response_decodes_back() -> None:
    resp = ChatResponse("msg_9", "claude-x", (TextBlock("a"), ToolUseBlock("t", "f", {"k": [1]}), TextBlock("b")),
                        "tool_use", usage=Usage(30, 2, 10))
    enc = codec.StreamEncoder(include_usage=True)
    acc = StreamAccumulator()
    for ev in decode(b"".join(enc.encode(ev) for ev in events_from_response(resp)), [3, 100, 101, 555]):
        acc.feed(ev)
    assert acc.response() == resp

"""The emulator speaking OpenAI Chat Completions: answers, streams, tools, validation, auth, and the SDK.

Why: every gateway test trusts these wire formats; if they drift from the real API (or the official SDK
stops parsing them) those tests prove nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.emulator_support import (
    ANTHROPIC_KEY,
    FILLED,
    OA,
    OPENAI_KEY,
    PNG_B64,
    Fault,
    call,
    cleared,
    oa,
    oa_body,
    oa_tool,
    parse_sse,
    serving,
)

pytestmark = pytest.mark.timeout(30)

emu_server = pytest.fixture(scope="module")(serving)
emu = pytest.fixture(cleared)


# -------------------------------------------------------------------------------------- OpenAI format


def test_openai_json_answer_has_real_shape_and_counts(emu: Any) -> None:
    body = oa_body()
    body["messages"].insert(0, {"role": "system", "content": "be brief"})
    status, headers, raw = oa(emu, body)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    data = json.loads(raw)
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert abs(data["created"] - time.time()) < 60
    assert data["model"] == "gpt-4o-mini"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Echo: hello big world",
        "refusal": None,
        "annotations": [],
    }
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    usage = data["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (5, 4, 9)


def test_openai_text_parts_are_joined_and_images_accepted(emu: Any) -> None:
    content = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "text", "text": "this"},
    ]
    status, _, raw = oa(emu, {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
    assert status == 200, raw
    data = json.loads(raw)
    assert data["choices"][0]["message"]["content"] == "Echo: look at this"
    assert data["usage"]["prompt_tokens"] == 3


def test_openai_stream_event_sequence(emu: Any) -> None:
    status, headers, raw = oa(emu, oa_body(stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers.get("transfer-encoding") == "chunked"
    events = parse_sse(raw)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o-mini" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks]
    assert "".join(pieces) == "Echo: hello big world"
    assert len([p for p in pieces if p]) == 4  # word-sized deltas
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)


def test_openai_stream_include_usage_sends_final_usage_chunk(emu: Any) -> None:
    _, _, raw = oa(emu, oa_body(stream=True, stream_options={"include_usage": True}))
    events = parse_sse(raw)
    assert events[-1][1] == "[DONE]"
    usage_chunk = json.loads(events[-2][1])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 3 and usage_chunk["usage"]["completion_tokens"] == 4
    assert all(json.loads(d)["usage"] is None for _, d in events[:-2])


def test_openai_tool_call_fills_required_properties(emu: Any) -> None:
    status, _, raw = oa(emu, oa_body("weather in Paris?", tools=[oa_tool(), oa_tool("other")]))
    assert status == 200, raw
    data = json.loads(raw)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert data["usage"]["completion_tokens"] == 1 + len(FILLED)  # documented: 1 + number of arguments
    assert choice["message"]["content"] is None
    (call_,) = choice["message"]["tool_calls"]
    assert call_["id"].startswith("call_") and call_["type"] == "function"
    assert call_["function"]["name"] == "get_weather"
    assert json.loads(call_["function"]["arguments"]) == FILLED


def test_openai_tool_choice_forced_and_none(emu: Any) -> None:
    tools = [
        oa_tool(),
        oa_tool("second", {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
    ]
    forced = {"type": "function", "function": {"name": "second"}}
    _, _, raw = oa(emu, oa_body(tools=tools, tool_choice=forced))
    call_ = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]
    assert call_["function"]["name"] == "second" and json.loads(call_["function"]["arguments"]) == {
        "q": "test"
    }
    _, _, raw = oa(emu, oa_body(tools=tools, tool_choice="none"))
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == "Echo: hello big world"


def test_openai_tool_result_is_answered_in_text(emu: Any) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "and sunny"}]},
    ]
    status, _, raw = oa(emu, {"model": "gpt-4o", "messages": messages, "tools": [oa_tool()]})
    assert status == 200, raw
    choice = json.loads(raw)["choices"][0]
    assert choice["message"]["content"] == "Tool said: 22 degrees and sunny"
    assert choice["finish_reason"] == "stop"


def test_openai_tool_call_stream_deltas(emu: Any) -> None:
    _, _, raw = oa(emu, oa_body(stream=True, tools=[oa_tool()]))
    events = parse_sse(raw)
    chunks = [json.loads(d) for _, d in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    head = first["tool_calls"][0]
    assert head["index"] == 0 and head["id"].startswith("call_") and head["type"] == "function"
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1]]
    assert len(fragments) >= 3
    assert all("id" not in c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1])
    assert json.loads("".join(fragments)) == FILLED
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("extra", "content", "finish", "tokens"),
    [
        ({"max_tokens": 2}, "Echo: hello", "length", 2),
        ({"max_completion_tokens": 3, "max_tokens": 1}, "Echo: hello big", "length", 3),
        ({"max_tokens": 4}, "Echo: hello big world", "stop", 4),
        ({"stop": "big"}, "Echo: hello ", "stop", 2),
        ({"stop": ["world", "hello"]}, "Echo: ", "stop", 1),
        ({"stop": ["big"], "max_tokens": 1}, "Echo:", "length", 1),
    ],
)
def test_openai_truncation(emu: Any, extra: dict, content: str, finish: str, tokens: int) -> None:
    _, _, raw = oa(emu, oa_body(**extra))
    data = json.loads(raw)
    assert data["choices"][0]["message"]["content"] == content
    assert data["choices"][0]["finish_reason"] == finish
    assert data["usage"]["completion_tokens"] == tokens


def test_openai_stream_truncation_finish_reason(emu: Any) -> None:
    _, _, raw = oa(emu, oa_body(stream=True, max_tokens=2))
    chunks = [json.loads(d) for _, d in parse_sse(raw)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Echo: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def _oa_messages(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages)}


_TOOL_CALL = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "gpt-4o"}, "Missing required parameter: 'messages'"),
        ({"model": "gpt-4o", "messages": []}, "empty array"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model parameter"),
        (_oa_messages({"role": "human", "content": "x"}), "Invalid value: 'human'"),
        (_oa_messages({"role": "user"}), "messages[0].content"),
        (
            _oa_messages(
                {"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_1", "content": "r"}
            ),
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            _oa_messages(
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [_TOOL_CALL]},
                {"role": "user", "content": "y"},
            ),
            "did not have response messages: call_9",
        ),
        (
            _oa_messages(
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [{**_TOOL_CALL, "function": {"name": "f", "arguments": {}}}],
                },
            ),
            "expected a string",
        ),
        (
            _oa_messages({"role": "user", "content": [{"type": "image", "source": {}}]}),
            "Invalid value: 'image'",
        ),
        (
            _oa_messages(
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
            ),
            "Invalid value: 'image_url'",
        ),
        (
            _oa_messages(
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not-base64"}}
                    ],
                }
            ),
            "base64",
        ),
        ({**oa_body(), "system": "be brief"}, "Unrecognized request argument supplied: system"),
        ({**oa_body(), "stop_sequences": ["x"]}, "Unrecognized request argument supplied: stop_sequences"),
        ({**oa_body(), "stream_options": {"include_usage": True}}, "only allowed when 'stream' is enabled"),
        ({**oa_body(), "tool_choice": "auto"}, "only allowed when 'tools' are specified"),
        ({**oa_body(), "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, "'tools[0].type'"),
        (
            {
                **oa_body(),
                "tools": [oa_tool()],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "not one of the provided tools",
        ),
        ({**oa_body(), "max_tokens": 0}, "Expected a value >= 1"),
        ({**oa_body(), "temperature": 2.5}, "'temperature'"),
        ({**oa_body(), "stop": ["a", "b", "c", "d", "e"]}, "maximum length 4"),
    ],
)
def test_openai_validation_errors(emu: Any, body: dict[str, Any], needle: str) -> None:
    status, headers, raw = oa(emu, body)
    assert status == 400, raw
    data = json.loads(raw)
    assert set(data) == {"error"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert data["error"]["type"] == "invalid_request_error"
    assert needle in data["error"]["message"]
    assert headers["x-request-id"].startswith("req_")


def test_openai_rejects_claude_model_with_404(emu: Any) -> None:
    status, _, raw = oa(emu, {**oa_body(), "model": "claude-3-5-haiku-latest"})
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "model_not_found"


def test_openai_invalid_json_body(emu: Any) -> None:
    status, _, raw = oa(emu, b"{not json")
    assert status == 400
    assert "could not parse the JSON body" in json.loads(raw)["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, None),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"x-api-key": OPENAI_KEY}, None),  # OpenAI only reads Bearer auth
    ],
)
def test_openai_auth_errors(emu: Any, headers: dict[str, str], code: str | None) -> None:
    status, _, raw = oa(emu, oa_body(), headers=headers)
    assert status == 401
    error = json.loads(raw)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert OPENAI_KEY not in raw.decode()


def test_openai_model_list(emu: Any) -> None:
    status, _, raw = call(emu, "GET", "/v1/models", headers=OA)
    assert status == 200
    data = json.loads(raw)
    assert data["object"] == "list"
    ids = [m["id"] for m in data["data"]]
    assert "gpt-4o-mini" in ids and not any(i.startswith("claude") for i in ids)
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in data["data"])
    status, _, raw = call(
        emu, "GET", "/v1/models", headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    )
    assert status == 200
    anthropic_ids = [m["id"] for m in json.loads(raw)["data"]]
    assert anthropic_ids and all(i.startswith("claude") for i in anthropic_ids)


# ----------------------------------------------------------------------------------- official SDKs


def _openai_client(emu: Any) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=emu.openai_base_url, api_key=OPENAI_KEY, max_retries=0, timeout=10)



def test_openai_sdk_plain_stream_and_tools(emu: Any) -> None:
    client = _openai_client(emu)
    msgs = [{"role": "user", "content": "hello sdk"}]
    done = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert done.choices[0].message.content == "Echo: hello sdk"
    assert done.usage is not None and done.usage.total_tokens == 2 + 3

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello sdk"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3

    tooled = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=[oa_tool()])
    call_ = tooled.choices[0].message.tool_calls[0]
    assert tooled.choices[0].finish_reason == "tool_calls" and json.loads(call_.function.arguments) == FILLED

    with client.chat.completions.stream(model="gpt-4o-mini", messages=msgs, tools=[oa_tool()]) as stream:
        final = stream.get_final_completion()
    streamed_call = final.choices[0].message.tool_calls[0]
    assert streamed_call.function.name == "get_weather"
    assert json.loads(streamed_call.function.arguments) == FILLED


def test_openai_sdk_maps_fault_to_error(emu: Any) -> None:
    openai = pytest.importorskip("openai")
    emu.push_faults(Fault(status=429, retry_after=1))
    with pytest.raises(openai.RateLimitError) as info:
        _openai_client(emu).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == "rate_limit_exceeded"

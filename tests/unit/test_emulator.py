"""Tests for scripts/emulator/, the fake OpenAI/Anthropic upstream, over real HTTP.

Why: every gateway test trusts the emulator's wire formats, validation and faults; if it drifts from
the real APIs (or the official SDKs stop parsing it) those tests prove nothing.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import emulator_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "emulator"


em = emulator_module  # loaded once by tests/conftest.py, so both share one Fault class
Emulator, Fault = em.Emulator, em.Fault

pytestmark = pytest.mark.timeout(30)

OPENAI_KEY = "sk-emu-test-openai"
ANTHROPIC_KEY = "sk-ant-emu-test"
OA = {"Authorization": f"Bearer {OPENAI_KEY}", "Content-Type": "application/json"}
AN = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "s": {"type": "string"},
        "n": {"type": "number"},
        "i": {"type": "integer"},
        "b": {"type": "boolean"},
        "a": {"type": "array", "items": {"type": "string"}},
        "o": {"type": "object"},
        "optional": {"type": "string"},
    },
    "required": ["s", "n", "i", "b", "a", "o"],
}
FILLED = {"s": "test", "n": 1, "i": 1, "b": True, "a": [], "o": {}}
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg=="


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emu_server() -> Iterator[Any]:
    with Emulator(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY) as emu:
        yield emu


@pytest.fixture
def emu(emu_server: Any) -> Iterator[Any]:
    """The module's emulator with recordings and faults cleared around each test."""
    emu_server.reset()
    yield emu_server
    emu_server.reset()


# -------------------------------------------------------------------------------------------- helpers


def call(
    emu: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=timeout)
    try:
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def oa(emu: Any, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict, bytes]:
    return call(emu, "POST", "/v1/chat/completions", body, OA if headers is None else headers, **kw)


def an(emu: Any, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict, bytes]:
    return call(emu, "POST", "/v1/messages", body, AN if headers is None else headers, **kw)


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event, asserting the framing is clean."""
    events: list[tuple[str | None, str]] = []
    text = raw.decode()
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        events.append((name, "\n".join(data)))
    return events


def oa_body(text: str = "hello big world", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def an_body(text: str = "hello big world", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def oa_tool(name: str = "get_weather", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": schema or WEATHER_TOOL_SCHEMA}}


def an_tool(name: str = "get_weather", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "description": "weather", "input_schema": schema or WEATHER_TOOL_SCHEMA}


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


def test_unknown_path_and_wrong_method(emu: Any) -> None:
    status, _, raw = call(emu, "POST", "/v1/v1/chat/completions", oa_body(), OA)
    assert status == 404 and "Invalid URL" in json.loads(raw)["error"]["message"]
    status, _, raw = call(emu, "GET", "/v1/chat/completions", headers=OA)
    assert status == 405
    status, _, raw = call(emu, "GET", "/v1/messages", headers=AN)
    assert status == 405 and json.loads(raw)["type"] == "error"


# ----------------------------------------------------------------------------------- Anthropic format


def test_anthropic_json_answer_has_real_shape_and_counts(emu: Any) -> None:
    status, headers, raw = an(emu, an_body(system="be brief please"))
    assert status == 200, raw
    assert int(headers["content-length"]) == len(raw)
    assert headers["request-id"].startswith("req_")
    data = json.loads(raw)
    assert data["id"].startswith("msg_")
    assert (data["type"], data["role"], data["model"]) == ("message", "assistant", "claude-3-5-haiku-latest")
    assert data["content"] == [{"type": "text", "text": "Echo: hello big world"}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    assert (data["usage"]["input_tokens"], data["usage"]["output_tokens"]) == (6, 4)


def test_anthropic_blocks_joined_and_system_blocks_counted(emu: Any) -> None:
    body = an_body()
    body["system"] = [{"type": "text", "text": "one two"}, {"type": "text", "text": "three"}]
    body["messages"] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                {"type": "text", "text": "this"},
            ],
        }
    ]
    status, _, raw = an(emu, body)
    assert status == 200, raw
    data = json.loads(raw)
    assert data["content"][0]["text"] == "Echo: look at this"
    assert data["usage"]["input_tokens"] == 6


def test_anthropic_stream_event_sequence(emu: Any) -> None:
    status, headers, raw = an(emu, an_body(stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    names = [name for name, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert all(name == d["type"] for name, d in zip(names, datas, strict=True))
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = datas[0]["message"]
    assert message["content"] == [] and message["id"].startswith("msg_")
    assert message["usage"]["input_tokens"] == 3 and "output_tokens" in message["usage"]
    assert datas[1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == "Echo: hello big world"
    delta = datas[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 4


def test_anthropic_tool_use_json(emu: Any) -> None:
    status, _, raw = an(emu, an_body(tools=[an_tool(), an_tool("other")]))
    assert status == 200, raw
    data = json.loads(raw)
    assert data["stop_reason"] == "tool_use"
    assert data["usage"]["output_tokens"] == 1 + len(FILLED)
    (block,) = data["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "get_weather" and block["input"] == FILLED


def test_anthropic_tool_choice_forced_and_none(emu: Any) -> None:
    tools = [
        an_tool(),
        an_tool("second", {"type": "object", "properties": {"k": {"type": "boolean"}}, "required": ["k"]}),
    ]
    _, _, raw = an(emu, an_body(tools=tools, tool_choice={"type": "tool", "name": "second"}))
    block = json.loads(raw)["content"][0]
    assert block["name"] == "second" and block["input"] == {"k": True}
    _, _, raw = an(emu, an_body(tools=tools, tool_choice={"type": "none"}))
    data = json.loads(raw)
    assert data["stop_reason"] == "end_turn" and data["content"][0]["type"] == "text"


def test_anthropic_tool_use_stream_uses_input_json_delta(emu: Any) -> None:
    _, _, raw = an(emu, an_body(stream=True, tools=[an_tool()]))
    datas = [json.loads(d) for _, d in parse_sse(raw)]
    start = datas[1]["content_block"]
    assert start["type"] == "tool_use" and start["input"] == {} and start["id"].startswith("toolu_")
    deltas = [d["delta"] for d in datas if d["type"] == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas) and len(deltas) >= 3
    assert json.loads("".join(d["partial_json"] for d in deltas)) == FILLED
    assert datas[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_tool_result_is_answered_in_text(emu: Any) -> None:
    body = an_body(tools=[an_tool()])
    body["messages"] += [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "22 degrees"}],
                }
            ],
        },
    ]
    status, _, raw = an(emu, body)
    assert status == 200, raw
    data = json.loads(raw)
    assert data["content"] == [{"type": "text", "text": "Tool said: 22 degrees"}]
    assert data["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("extra", "text", "reason", "sequence", "tokens"),
    [
        ({"max_tokens": 2}, "Echo: hello", "max_tokens", None, 2),
        ({"stop_sequences": ["big"]}, "Echo: hello ", "stop_sequence", "big", 2),
        ({"stop_sequences": ["world", "hello"]}, "Echo: ", "stop_sequence", "hello", 1),
    ],
)
def test_anthropic_truncation(
    emu: Any, extra: dict, text: str, reason: str, sequence: str | None, tokens: int
) -> None:
    _, _, raw = an(emu, {**an_body(), **extra})
    data = json.loads(raw)
    assert data["content"][0]["text"] == text
    assert (data["stop_reason"], data["stop_sequence"], data["usage"]["output_tokens"]) == (
        reason,
        sequence,
        tokens,
    )
    _, _, raw = an(emu, {**an_body(), **extra, "stream": True})
    datas = [json.loads(d) for _, d in parse_sse(raw)]
    assert "".join(d["delta"].get("text", "") for d in datas if d["type"] == "content_block_delta") == text
    assert datas[-2]["delta"] == {"stop_reason": reason, "stop_sequence": sequence}


def _an_messages(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-3-5-haiku-latest", "max_tokens": 10, "messages": list(messages), **extra}


_USER = {"role": "user", "content": "hi"}
_TOOL_USE = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "claude-3-5-haiku-latest", "messages": [_USER]}, "max_tokens: Field required"),
        (_an_messages(), "at least one message"),
        (_an_messages({"role": "assistant", "content": "hi"}), 'first message must use the "user" role'),
        (_an_messages({"role": "system", "content": "x"}, _USER), "messages.0.role"),
        (_an_messages(_USER, {"role": "system", "content": "x"}), "messages.1.role"),
        (_an_messages({"role": "user", "content": ""}), "non-empty content"),
        (_an_messages({"role": "user", "content": [{"type": "text", "text": ""}]}), "must be non-empty"),
        (
            _an_messages(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}],
                }
            ),
            "unexpected `tool_use_id`",
        ),
        (_an_messages(_USER, _TOOL_USE, _USER), "without `tool_result` blocks immediately after"),
        (
            _an_messages(
                _USER,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": "{}"}],
                },
            ),
            "valid dictionary",
        ),
        (
            _an_messages(
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
            ),
            "Input tag 'image_url'",
        ),
        (
            _an_messages(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": f"data:image/png;base64,{PNG_B64}",
                            },
                        }
                    ],
                }
            ),
            "not valid base64",
        ),
        (_an_messages(_USER, stop=["x"]), "stop: Extra inputs are not permitted"),
        (_an_messages(_USER, temperature=1.5), "temperature"),
        (_an_messages(_USER, tools=[oa_tool()]), "Input tag 'function'"),
        (_an_messages(_USER, tools=[{"name": "f"}]), "input_schema: Field required"),
        (_an_messages(_USER, tool_choice={"type": "auto"}), "while providing tools"),
        (_an_messages(_USER, tools=[an_tool()], tool_choice={"type": "tool", "name": "nope"}), "not found"),
        (_an_messages(_USER, stop_sequences=[" "]), "non-whitespace"),
    ],
)
def test_anthropic_validation_errors(emu: Any, body: dict[str, Any], needle: str) -> None:
    status, _, raw = an(emu, body)
    assert status == 400, raw
    data = json.loads(raw)
    assert data["type"] == "error" and set(data["error"]) == {"type", "message"}
    assert data["error"]["type"] == "invalid_request_error"
    assert needle in data["error"]["message"]


def test_anthropic_requires_version_header(emu: Any) -> None:
    status, _, raw = an(emu, an_body(), headers={"x-api-key": ANTHROPIC_KEY})
    assert status == 400
    assert json.loads(raw)["error"]["message"] == "anthropic-version: header is required"


def test_anthropic_rejects_gpt_model_with_404(emu: Any) -> None:
    status, _, raw = an(emu, {**an_body(), "model": "gpt-4o"})
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
        ({"anthropic-version": "2023-06-01", "x-api-key": "wrong"}, 401, "invalid x-api-key"),
        ({"anthropic-version": "2023-06-01", "Authorization": "Bearer wrong"}, 401, "invalid x-api-key"),
        ({"anthropic-version": "2023-06-01", "x-api-key": ANTHROPIC_KEY}, 200, None),
        ({"anthropic-version": "2023-06-01", "Authorization": f"Bearer {ANTHROPIC_KEY}"}, 200, None),
    ],
)
def test_anthropic_auth(emu: Any, headers: dict[str, str], status: int, message: str | None) -> None:
    got, _, raw = an(emu, an_body(), headers=headers)
    assert got == status, raw
    if message:
        assert json.loads(raw) == {
            "type": "error",
            "error": {"type": "authentication_error", "message": message},
        }


def test_anthropic_count_tokens(emu: Any) -> None:
    body = an_body(system="s t")
    del body["max_tokens"]
    status, _, raw = call(emu, "POST", "/v1/messages/count_tokens", body, AN)
    assert status == 200 and json.loads(raw) == {"input_tokens": 5}


# --------------------------------------------------------------------------------------------- faults


def test_status_fault_in_openai_shape_with_retry_after_then_recovers(emu: Any) -> None:
    emu.push_faults(Fault(status=429, retry_after=2))
    status, headers, raw = oa(emu, oa_body())
    assert status == 429 and headers["retry-after"] == "2"
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "rate_limit_exceeded"
    assert oa(emu, oa_body())[0] == 200


def test_status_fault_in_anthropic_shape(emu: Any) -> None:
    emu.push_faults(Fault(status=529, message="busy"))
    status, _, raw = an(emu, an_body())
    assert status == 529
    assert json.loads(raw) == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_faults_are_fifo_one_per_request(emu: Any) -> None:
    emu.push_faults(Fault(status=500), Fault(status=503))
    assert [oa(emu, oa_body())[0] for _ in range(3)] == [500, 503, 200]


def test_path_scoped_fault_skips_other_paths(emu: Any) -> None:
    emu.push_faults(Fault(status=500), path="/v1/messages")
    assert oa(emu, oa_body())[0] == 200
    assert an(emu, an_body())[0] == 500
    assert an(emu, an_body())[0] == 200


def test_default_fault_is_permanent_until_cleared(emu: Any) -> None:
    emu.set_default_fault(Fault(status=500), path="/v1/chat")
    assert [oa(emu, oa_body())[0] for _ in range(3)] == [500, 500, 500]
    assert an(emu, an_body())[0] == 200
    emu.push_faults(Fault(status=429))  # a queued fault wins over the default
    assert oa(emu, oa_body())[0] == 429
    emu.set_default_fault(None, path="/v1/chat")
    assert oa(emu, oa_body())[0] == 200


def test_fault_body_and_headers_override(emu: Any) -> None:
    emu.push_faults(Fault(status=502, body="<html>bad gateway</html>", headers={"x-extra": "1"}))
    status, headers, raw = oa(emu, oa_body())
    assert (status, raw, headers["x-extra"]) == (502, b"<html>bad gateway</html>", "1")


@pytest.mark.parametrize(
    ("kind", "ctype"),
    [("text", "application/json"), (True, "application/json"), ("html", "text/html; charset=utf-8")],
)
def test_garbage_fault_non_json(emu: Any, kind: Any, ctype: str) -> None:
    emu.push_faults(Fault(garbage=kind))
    status, headers, raw = oa(emu, oa_body())
    assert status == 200 and headers["content-type"] == ctype
    with pytest.raises(ValueError):
        json.loads(raw)


def test_garbage_fault_wrong_shape_json_and_stream(emu: Any) -> None:
    emu.push_faults(Fault(garbage="json"), Fault(garbage="text"))
    status, _, raw = an(emu, an_body())
    assert status == 200 and "content" not in json.loads(raw)
    status, headers, raw = an(emu, an_body(stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    assert events and all(name == "message_start" for name, _ in events)
    with pytest.raises(ValueError):
        json.loads(events[0][1])


def test_delay_fault_slows_first_byte(emu: Any) -> None:
    emu.push_faults(Fault(delay=0.3))
    started = time.monotonic()
    status, _, _ = oa(emu, oa_body())
    assert status == 200 and time.monotonic() - started >= 0.3
    with pytest.raises(TimeoutError):
        emu.push_faults(Fault(delay=1.0))
        oa(emu, oa_body(), timeout=0.2)


def test_drip_fault_spaces_stream_events(emu: Any) -> None:
    emu.push_faults(Fault(drip=0.05))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/messages", json.dumps(an_body(stream=True)), AN)
    started = time.monotonic()
    resp = conn.getresponse()
    first_byte = time.monotonic() - started
    raw = resp.read()
    elapsed = time.monotonic() - started
    conn.close()
    events = parse_sse(raw)
    assert events[-1][0] == "message_stop"
    assert first_byte < 0.5 * (len(events) - 1) * 0.05
    assert elapsed >= (len(events) - 1) * 0.05


def test_drip_fault_on_json_body(emu: Any) -> None:
    emu.push_faults(Fault(drip=0.1))
    started = time.monotonic()
    status, _, raw = oa(emu, oa_body())
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "Echo: hello big world"
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("cut", [0, 2, 5])
def test_cut_after_stream_closes_without_terminal_event(emu: Any, cut: int) -> None:
    emu.push_faults(Fault(cut_after=cut))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", json.dumps(oa_body(stream=True)), OA)
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    conn.close()
    events = parse_sse(info.value.partial)
    assert len(events) == cut
    assert all(data != "[DONE]" for _, data in events)


def test_cut_after_json_sends_partial_body(emu: Any) -> None:
    emu.push_faults(Fault(cut_after=10))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/messages", json.dumps(an_body()), AN)
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("content-length")) > 10
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    conn.close()
    assert len(info.value.partial) == 10


def test_error_after_ends_stream_with_error_event(emu: Any) -> None:
    emu.push_faults(Fault(error_after=3), Fault(error_after=2, message="boom"))
    _, _, raw = an(emu, an_body(stream=True))
    events = parse_sse(raw)
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"
    _, _, raw = oa(emu, oa_body(stream=True))
    events = parse_sse(raw)
    assert len(events) == 3 and json.loads(events[-1][1])["error"]["message"] == "boom"


def test_hang_fault_never_answers_until_stopped() -> None:
    emu = Emulator().start()
    try:
        emu.push_faults(Fault(hang=True))
        with pytest.raises(TimeoutError):
            oa(emu, oa_body(), headers={}, timeout=0.3)
        assert emu.count("/v1/chat/completions") == 1
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        emu.push_faults(Fault(hang=True))
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), {})
        result: list[BaseException | int] = []

        def read() -> None:
            try:
                result.append(conn.getresponse().status)
            except BaseException as exc:  # the connection is closed by stop()
                result.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.2)
        assert result == []
        started = time.monotonic()
        emu.stop()
        reader.join(3)
        assert time.monotonic() - started < 3
        assert len(result) == 1 and isinstance(result[0], (http.client.RemoteDisconnected, ConnectionError))
    finally:
        emu.stop()


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(garbage="nope")
    with pytest.raises(ValueError):
        Fault(delay=-1)
    with pytest.raises(ValueError, match="stauts"):
        Fault.from_dict({"stauts": 500})
    assert Fault.from_dict({"status": 500, "retry_after": 1}).to_dict() == {"status": 500, "retry_after": 1}


# ---------------------------------------------------------------------------------------- control API


def test_control_api_faults_requests_and_reset(emu: Any) -> None:
    status, _, raw = call(
        emu,
        "POST",
        "/_emulator/faults?path=/v1/messages",
        [{"status": 500}, {"status": 503, "retry_after": 1}],
    )
    assert status == 200 and json.loads(raw) == {"queued": 2}
    assert oa(emu, oa_body())[0] == 200
    assert an(emu, an_body())[0] == 500
    _, _, raw = call(emu, "GET", "/_emulator/faults")
    assert json.loads(raw)["queued"] == [{"path": "/v1/messages", "fault": {"status": 503, "retry_after": 1}}]
    status, _, _ = call(emu, "DELETE", "/_emulator/faults")
    assert status == 200 and an(emu, an_body())[0] == 200

    _, _, raw = call(emu, "GET", "/_emulator/requests")
    listed = json.loads(raw)
    assert listed["count"] == 3 and len(listed["requests"]) == 3
    first = listed["requests"][0]
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["body"]["messages"][0]["content"] == "hello big world"
    assert first["headers"]["authorization"] == f"Bearer {OPENAI_KEY}" and first["status"] == 200
    assert listed["requests"][1]["status"] == 500 and listed["requests"][1]["fault"] == {"status": 500}
    _, _, raw = call(emu, "GET", "/_emulator/requests?path=/v1/messages")
    assert json.loads(raw)["count"] == 2

    status, _, _ = call(emu, "POST", "/_emulator/reset")
    assert status == 200 and emu.count() == 0 and emu.requests == []


def test_control_api_default_fault_object_form(emu: Any) -> None:
    status, _, _ = call(emu, "POST", "/_emulator/faults", {"default": {"status": 500}, "path": "/v1/chat"})
    assert status == 200
    assert [oa(emu, oa_body())[0] for _ in range(2)] == [500, 500]
    assert an(emu, an_body())[0] == 200
    call(emu, "DELETE", "/_emulator/faults")
    assert oa(emu, oa_body())[0] == 200


@pytest.mark.parametrize("payload", [[{"stauts": 500}], {"faultz": []}, "nope", [{"garbage": "maybe"}]])
def test_control_api_rejects_bad_faults(emu: Any, payload: Any) -> None:
    status, _, raw = call(emu, "POST", "/_emulator/faults", payload)
    assert status == 400 and "error" in json.loads(raw)
    assert emu.fault_state() == {"queued": [], "defaults": []}


def test_control_requests_are_not_recorded_or_faulted(emu: Any) -> None:
    emu.set_default_fault(Fault(status=500))
    assert call(emu, "GET", "/_emulator/health")[0] == 200
    assert emu.count() == 0


# ------------------------------------------------------------------------------ recording and transport


def test_recording_captures_method_path_headers_body(emu: Any) -> None:
    an(emu, an_body("recorded"), headers={**AN, "traceparent": "00-abc-def-01"})
    rec = emu.last("/v1/messages")
    assert rec is not None and rec is emu.requests[-1]
    assert (rec.method, rec.path, rec["method"]) == ("POST", "/v1/messages", "POST")
    assert rec.headers["traceparent"] == "00-abc-def-01" and rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.body["messages"][0]["content"] == "recorded" and rec.status == 200
    assert emu.count("/v1/messages") == 1 and emu.count("/v1/chat") == 0


def test_record_false_keeps_counts_only() -> None:
    with Emulator(record=False) as emu:
        assert oa(emu, oa_body(), headers={})[0] == 200
        assert emu.requests == [] and emu.count() == 1


def test_keep_alive_serves_two_requests_on_one_connection(emu: Any) -> None:
    before = emu.connections
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), OA)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
        sock = conn.sock
        conn.request("POST", "/v1/messages", json.dumps(an_body(stream=True)), AN)
        resp = conn.getresponse()
        assert resp.status == 200 and parse_sse(resp.read())[-1][0] == "message_stop"
        assert conn.sock is sock
        conn.request("GET", "/v1/models", headers=OA)
        assert conn.getresponse().read()
        assert conn.sock is sock
    finally:
        conn.close()
    assert emu.connections - before == 1


def test_chunked_request_body_is_accepted(emu: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        data = json.dumps(oa_body("chunked body")).encode()
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=iter([data[:10], data[10:]]),
            headers={**OA, "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == "Echo: chunked body"
    finally:
        conn.close()


def test_restart_on_same_port_and_stop_closes_idle_connections() -> None:
    emu = Emulator().start()
    port = emu.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().read()
    emu.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    emu.start()
    try:
        assert emu.port == port and oa(emu, oa_body(), headers={})[0] == 200
    finally:
        emu.stop()
        conn.close()


def test_cli_prints_url_serves_and_exits_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", "0", "--openai-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(10)
        assert line and line[0].startswith("EMULATOR LISTENING http://127.0.0.1:"), line
        port = int(line[0].strip().rsplit(":", 1)[1])
        assert port > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), {"Authorization": "Bearer k"})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


# ----------------------------------------------------------------------------------- official SDKs


def _openai_client(emu: Any) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=emu.openai_base_url, api_key=OPENAI_KEY, max_retries=0, timeout=10)


def _anthropic_client(emu: Any) -> Any:
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(
        base_url=emu.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10
    )


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


def test_anthropic_sdk_plain_stream_and_helper(emu: Any) -> None:
    client = _anthropic_client(emu)
    msgs = [{"role": "user", "content": "hello sdk"}]
    message = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=msgs)
    assert message.content[0].text == "Echo: hello sdk" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 3)

    events = list(
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=msgs, stream=True)
    )
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop" and "ping" not in types
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Echo: hello sdk"

    with client.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=50, messages=msgs, system="be brief"
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: hello sdk"
    assert final.content[0].text == "Echo: hello sdk" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 3)

    with client.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=50, messages=msgs, tools=[an_tool()]
    ) as stream:
        tool_final = stream.get_final_message()
    assert tool_final.stop_reason == "tool_use"
    assert tool_final.content[0].type == "tool_use" and tool_final.content[0].input == FILLED


def test_anthropic_sdk_maps_errors(emu: Any) -> None:
    anthropic = pytest.importorskip("anthropic")
    bad = anthropic.Anthropic(base_url=emu.anthropic_base_url, api_key="wrong", max_retries=0, timeout=10)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    emu.push_faults(Fault(status=529), path="/v1/messages")
    with pytest.raises(anthropic.APIStatusError) as info:
        _anthropic_client(emu).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 529

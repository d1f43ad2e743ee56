"""The emulator speaking Anthropic Messages: answers, streams, tools, validation, auth, count_tokens, the SDK.

Why, as for the OpenAI side (test_emulator_openai.py): the gateway's tests trust this format as the real one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.emulator_support import (
    AN,
    ANTHROPIC_KEY,
    FILLED,
    PNG_B64,
    Fault,
    an,
    an_body,
    an_tool,
    call,
    cleared,
    oa_tool,
    parse_sse,
    serving,
)

pytestmark = pytest.mark.timeout(30)

emu_server = pytest.fixture(scope="module")(serving)
emu = pytest.fixture(cleared)


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



# ----------------------------------------------------------------------------------- official SDKs


def _anthropic_client(emu: Any) -> Any:
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(
        base_url=emu.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10
    )



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

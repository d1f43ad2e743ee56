"""The Responses API translator (app/formats/responses.py) on real-shaped payloads.

The request and response bodies are those of OpenAI's API reference and guides:
https://platform.openai.com/docs/api-reference/responses/create (the example request and response object),
https://platform.openai.com/docs/guides/function-calling (function tools, function_call, function_call_output),
https://platform.openai.com/docs/guides/images-vision (input_image),
https://platform.openai.com/docs/api-reference/responses-streaming (the streamed events).
The stream is checked by the official SDK's own accumulator (``ResponseStreamState``, what
``client.responses.stream(...)`` runs).
"""

from __future__ import annotations

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from app.errors import InvalidRequest, UpstreamError
from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.formats import responses as codec
from app.formats.canonical import (
    BlockStop,
    ChatResponse,
    ImageBlock,
    StreamEnd,
    StreamStart,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolInputDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStart,
    Usage,
)
from app.formats.reasoning import EFFORT_BUDGETS
from app.formats.sse import SSEParser

# The API reference's example (responses/create): request and response.
REFERENCE_REQUEST = {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}
REFERENCE_RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response", "created_at": 1741476542,
    "status": "completed", "error": None, "incomplete_details": None, "instructions": None,
    "max_output_tokens": None, "model": "gpt-4.1-2025-04-14",
    "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon...",
                             "annotations": []}]}],
    "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
    "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
    "top_p": 1.0, "truncation": "disabled",
    "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123},
    "user": None, "metadata": {},
}
# The function-calling guide's tool, call and round trip.
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Get current temperature for a given location.",
    "parameters": {"type": "object",
                   "properties": {"location": {"type": "string",
                                               "description": "City and country e.g. Bogotá, Colombia"}},
                   "required": ["location"], "additionalProperties": False},
    "strict": True,
}
CALL = {"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz", "name": "get_weather",
        "arguments": "{\"location\":\"Paris, France\"}"}
ROUND_TRIP = {
    "model": "claude-sonnet-4-20250514", "tools": [WEATHER_TOOL],
    "input": [{"role": "user", "content": "What is the weather like in Paris today?"}, CALL,
              {"type": "function_call_output", "call_id": "call_12345xyz", "output": "14"}],
}


def test_reference_request_becomes_one_user_message():
    req = codec.parse_request(REFERENCE_REQUEST)
    assert [m.role for m in req.messages] == ["user"]
    assert req.messages[0].content == (TextBlock("Tell me a three sentence bedtime story about a unicorn."),)
    assert req.system == () and req.stream is False


def test_instructions_become_the_system_prompt_and_fields_map():
    req = codec.parse_request({**REFERENCE_REQUEST, "instructions": "Talk like a pirate.", "max_output_tokens": 50,
                               "temperature": 0.5, "top_p": 0.9, "parallel_tool_calls": False,
                               "tools": [WEATHER_TOOL], "tool_choice": "required"})
    assert req.system == (TextBlock("Talk like a pirate."),)
    assert (req.max_tokens, req.temperature, req.top_p) == (50, 0.5, 0.9)
    assert req.tool_choice is not None and req.tool_choice.type == "any" and req.tool_choice.disable_parallel
    body = anthropic_codec.build_request(req, "claude-sonnet-4-20250514", default_max_tokens=4096)
    assert body["system"] == "Talk like a pirate."
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tools"][0]["input_schema"] == WEATHER_TOOL["parameters"]


def test_function_call_round_trip_becomes_tool_use_and_tool_result():
    req = codec.parse_request(ROUND_TRIP)
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[1].content == (ToolUseBlock("call_12345xyz", "get_weather", {"location": "Paris, France"}),)
    assert req.messages[2].content == (ToolResultBlock("call_12345xyz", (TextBlock("14"),)),)
    body = anthropic_codec.build_request(req, "claude-sonnet-4-20250514", default_max_tokens=4096)
    assert body["messages"][1]["content"][0] == {"type": "tool_use", "id": "call_12345xyz", "name": "get_weather",
                                                 "input": {"location": "Paris, France"}}
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_12345xyz"
    chat = openai_codec.build_request(req, "llama-3", default_max_tokens=4096)
    assert chat["messages"][1]["tool_calls"][0]["id"] == "call_12345xyz"
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "call_12345xyz", "content": "14"}


def test_history_of_a_previous_response_comes_before_the_input():
    history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
               {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "Echo: hi", "annotations": []}]}]
    req = codec.parse_request({"model": "claude-3-5-haiku-latest", "input": "again"}, history)
    assert [(m.role, m.content) for m in req.messages] == [
        ("user", (TextBlock("hi"),)), ("assistant", (TextBlock("Echo: hi"),)), ("user", (TextBlock("again"),))]


def test_input_image_by_url_and_data_url():
    url = ("https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/"
           "2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg")
    req = codec.parse_request({"model": "claude-3-5-haiku-latest", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what's in this image?"},
        {"type": "input_image", "image_url": url},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}]}]})
    content = req.messages[0].content
    assert content[1] == ImageBlock(url=url)
    assert content[2] == ImageBlock(media_type="image/png", data="iVBORw0KGgo=", detail="low")


def test_reasoning_effort_uses_the_chat_table():
    req = codec.parse_request({**REFERENCE_REQUEST, "model": "claude-sonnet-4-20250514",
                               "reasoning": {"effort": "medium"}, "max_output_tokens": 1000})
    body = anthropic_codec.build_request(req, "claude-sonnet-4-20250514", default_max_tokens=4096)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": EFFORT_BUDGETS["medium"]}
    assert body["max_tokens"] == EFFORT_BUDGETS["medium"] + 1000


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "web_search_preview"}]}, "tools[0].type"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}, "text.format"),
    ({"background": True}, "background"),
    ({"include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"truncation": "auto"}, "truncation"),
    ({"max_tool_calls": 3}, "max_tool_calls"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"}]}, "input[0]"),
    ({"input": 5}, "input"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    # Malformed input: the 400 names the field (never a 5xx).
    ({"input": [{"type": "message"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": [5]}, "input[0]"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"input": [{**CALL, "arguments": "[1]"}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]},
     "input[0].content[0].image_url"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"previous_response_id": 5}, "previous_response_id"),
    ({"text": {"format": "json"}}, "text.format"),
    ({"store": "yes"}, "store"),
])
def test_what_a_translation_cannot_carry_is_a_400_naming_the_field(extra, param):
    with pytest.raises(InvalidRequest) as info:
        codec.parse_request({**REFERENCE_REQUEST, **extra})
    assert info.value.param == param


def test_thinking_round_trips_as_a_reasoning_item():
    items = codec.output_items((ThinkingBlock("Let me think.", signature="sig=="), TextBlock("42")))
    assert items[0]["type"] == "reasoning" and items[0]["encrypted_content"] == "sig=="
    req = codec.parse_request({"model": "claude-sonnet-4-20250514", "input": [
        {"role": "user", "content": "q"}, items[0], {**items[1], "role": "assistant"},
        {"role": "user", "content": "and?"}]})
    assert req.messages[1].content == (ThinkingBlock("Let me think.", signature="sig=="), TextBlock("42"))


def test_render_response_has_the_reference_shape():
    answer = ChatResponse(id="msg_x", model="claude-sonnet-4-20250514", stop_reason="tool_use",
                          content=(TextBlock("Checking."),
                                   ToolUseBlock("toolu_1", "get_weather", {"location": "Paris"})),
                          usage=Usage(input_tokens=36, output_tokens=87, cache_read_tokens=6, reasoning_tokens=5))
    obj = codec.render_response(answer, "resp_abc", "claude-sonnet-4-20250514", codec.echo(REFERENCE_REQUEST))
    assert set(REFERENCE_RESPONSE) <= set(obj)
    assert obj["id"] == "resp_abc" and obj["object"] == "response" and obj["status"] == "completed"
    assert obj["output"][0]["content"][0] == {"type": "output_text", "text": "Checking.", "annotations": [],
                                              "logprobs": []}
    call = obj["output"][1]
    assert (call["type"], call["call_id"], call["name"], orjson.loads(call["arguments"])) == (
        "function_call", "toolu_1", "get_weather", {"location": "Paris"})
    assert obj["usage"] == {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
                            "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 5},
                            "total_tokens": 123}
    cut = codec.render_response(ChatResponse(id="m", model="c", content=(TextBlock("a"),), stop_reason="max_tokens"),
                                "resp_b", "c", codec.echo(REFERENCE_REQUEST))
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}


def _sdk_events(raw: bytes) -> list:
    adapter = TypeAdapter(ResponseStreamEvent)
    return [adapter.validate_python(orjson.loads(ev.data)) for ev in SSEParser().feed(raw)]


def test_stream_is_the_lifecycle_the_sdk_accumulates():
    stored = []
    enc = codec.StreamEncoder("resp_s", "claude-3-5-haiku-latest", codec.echo(REFERENCE_REQUEST), stored.append)
    events = [StreamStart(id="msg_1", model="claude-3-5-haiku-latest"), TextDelta(0, "Let me "), TextDelta(0, "check."),
              BlockStop(0), ToolUseStart(1, "toolu_1", "get_weather"), ToolInputDelta(1, '{"location":'),
              ToolInputDelta(1, '"Paris"}'), BlockStop(1),
              StreamEnd("tool_use", usage=Usage(input_tokens=10, output_tokens=7))]
    raw = b"".join(enc.encode(ev) for ev in events)
    parsed = _sdk_events(raw)
    assert [e.type for e in parsed] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    state = ResponseStreamState(input_tools=[WEATHER_TOOL], text_format=omit)
    for e in parsed:
        state.handle_event(e)
    final = parsed[-1].response
    assert final.output_text == "Let me check."
    assert final.output[1].arguments == '{"location":"Paris"}' and final.output[1].call_id == "toolu_1"
    assert final.usage.total_tokens == 17
    assert stored and stored[0]["id"] == "resp_s" and stored[0]["output"][1]["arguments"] == '{"location":"Paris"}'


def test_a_failure_ends_the_stream_with_response_failed_or_error():
    enc = codec.StreamEncoder("resp_e", "m", codec.echo(REFERENCE_REQUEST), None)
    (event,) = _sdk_events(enc.error(InvalidRequest("bad", param="input")))  # nothing announced yet
    assert event.type == "error" and event.message == "bad" and event.param == "input" and event.sequence_number == 0
    enc.encode(StreamStart(id="x", model="m"))
    enc.encode(TextDelta(0, "partial"))
    (event,) = _sdk_events(enc.error(UpstreamError("Provider anthropic failed with HTTP 529")))
    assert event.type == "response.failed" and event.sequence_number == 6  # after created ... the delta
    assert event.response.status == "failed" and event.response.error.code == "server_error"
    assert "529" in event.response.error.message and event.response.output[0].type == "message"


def test_relay_observer_reads_the_reference_response():
    resp = codec.parse_response(REFERENCE_RESPONSE)
    assert resp.usage == Usage(input_tokens=36, output_tokens=87)
    assert resp.content == (TextBlock("In a peaceful grove beneath a silver moon..."),)
    assert resp.stop_reason == "end_turn"


def test_relay_observer_reads_a_stream_into_canonical_events():
    enc = codec.StreamEncoder("resp_s", "gpt-4.1", {}, None)
    raw = b"".join(enc.encode(ev) for ev in [
        StreamStart(id="x", model="gpt-4.1"), ToolUseStart(0, "call_1", "get_weather"), ToolInputDelta(0, "{}"),
        BlockStop(0), StreamEnd("tool_use", usage=Usage(input_tokens=3, output_tokens=2))])
    decoder = codec.StreamDecoder()
    out = [ev for sse in SSEParser().feed(raw) for ev in decoder.feed(sse)]
    assert isinstance(out[0], StreamStart) and out[0].id == "resp_s"
    assert ToolUseStart(0, "call_1", "get_weather") in out and ToolInputDelta(0, "{}") in out
    assert out[-1] == StreamEnd("tool_use", usage=Usage(input_tokens=3, output_tokens=2))
    assert decoder.finish() == []
    with pytest.raises(UpstreamError):
        codec.StreamDecoder().finish()  # a stream cut before response.completed

"""The official OpenAI SDK against a 2-worker gateway, to both providers."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="any-client-key", max_retries=0, timeout=10)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("model,provider", [("gpt-4o-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic")])
def test_plain_completion_reaches_the_right_provider(client, upstream, model, provider):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "hello there"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 4  # "Be brief." + "hello there"
    assert completion.usage.completion_tokens == 3
    assert raw.headers["x-llm-edge-provider"] == provider
    assert raw.headers["x-llm-edge-model"] == model
    assert raw.headers["x-request-id"]
    sent = upstream.requests[-1]
    if provider == "anthropic":
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == ANTHROPIC_KEY
        assert sent.headers["anthropic-version"]
        assert sent.body["system"] == "Be brief." or sent.body["system"][0]["text"] == "Be brief."
        assert sent.body["max_tokens"] == 4096  # the documented default
    else:
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    # The client's own key never travels upstream.
    assert "any-client-key" not in json.dumps(sent.headers)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-haiku-latest"])
def test_stream_with_usage(client, upstream, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "one two three four"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_stream_without_include_usage_sends_no_usage_chunk(client, upstream):
    chunks = list(client.chat.completions.create(
        model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-haiku-latest"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(client, upstream, model, stream):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                                    stream=True):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                    entry["id"] = tc.id or entry["id"]
                    if tc.function and tc.function.name:
                        entry["name"] = tc.function.name
                    if tc.function and tc.function.arguments:
                        entry["arguments"] += tc.function.arguments
        assert finish == "tool_calls"
        call = calls[0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        completion = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
        assert completion.choices[0].finish_reason == "tool_calls"
        tc = completion.choices[0].message.tool_calls[0]
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
    assert name == "get_weather" and json.loads(arguments) == {"city": "test"}
    follow = client.chat.completions.create(model=model, tools=[WEATHER_TOOL], messages=[
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ])
    assert follow.choices[0].message.content == "Tool said: sunny, 21C"
    assert follow.choices[0].finish_reason == "stop"


def test_images_are_translated_for_anthropic(client, upstream):
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    client.chat.completions.create(model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}])
    blocks = upstream.requests[-1].body["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": pixel}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.png"}


def test_stop_and_max_tokens_map_to_finish_reasons(client, upstream):
    c = client.chat.completions.create(model="claude-3-5-haiku-latest", max_tokens=2,
                                       messages=[{"role": "user", "content": "a b c d e"}])
    assert c.choices[0].finish_reason == "length" and c.choices[0].message.content == "Echo: a"
    c = client.chat.completions.create(model="claude-3-5-haiku-latest", stop=["d"],
                                       messages=[{"role": "user", "content": "a b c d e"}])
    assert c.choices[0].finish_reason == "stop" and c.choices[0].message.content.startswith("Echo: a b")
    assert upstream.requests[-1].body["stop_sequences"] == ["d"]


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "claude-3-5-haiku-latest", "fast"} <= ids


def test_relayed_fields_reach_the_sdk_json_and_streamed(client, upstream):
    """logprobs, system_fingerprint, service_tier, annotations and usage.completion_tokens_details pass
    through the relay (payloads: tests/support/provider_payloads.py, after
    https://platform.openai.com/docs/api-reference/chat/object)."""
    from tests.conftest import Fault
    from tests.support import provider_payloads as pp

    upstream.push_faults(Fault(script=pp.OPENAI_JSON))
    done = client.chat.completions.create(model="gpt-4o-mini", logprobs=True, top_logprobs=2,
                                          messages=[{"role": "developer", "content": "Be kind."},
                                                    {"role": "user", "content": "Hello relay"}])
    assert done.system_fingerprint == "fp_3b5d4b7a26" and done.service_tier == "default"
    assert done.choices[0].logprobs.content[0].top_logprobs[1].token == "Hi"
    assert done.choices[0].message.annotations[0].url_citation.url == "https://example.com/"
    assert done.usage.completion_tokens_details.reasoning_tokens == 0
    assert upstream.requests[-1].body["messages"][0]["role"] == "developer"
    upstream.push_faults(Fault(script=pp.openai_stream(True)))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", logprobs=True, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Hello relay stream"}]))
    assert chunks[1].choices[0].logprobs.content[0].token == "Hello"
    assert chunks[1].system_fingerprint == "fp_44709d6fcb"
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 0


def test_fields_a_claude_translation_drops_are_named_in_a_header(client, upstream):
    """A message ``name`` and a tool's ``strict`` (https://platform.openai.com/docs/api-reference/chat/create)
    have no place in a Messages body: the answer says so in ``x-llm-edge-dropped-fields``."""
    raw = client.chat.completions.with_raw_response.create(
        model="claude-3-5-haiku-latest",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "hello there", "name": "alice"}],
        tools=[{**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "strict": True}}])
    assert raw.parse().choices[0].message.tool_calls[0].function.name == "get_weather"  # the fake calls a tool
    assert raw.headers["x-llm-edge-provider"] == "anthropic"
    assert raw.headers["x-llm-edge-dropped-fields"] == "messages[1].name, tools[0].function.strict"
    sent = upstream.requests[-1].body
    assert "strict" not in sent["tools"][0] and "name" not in sent["messages"][0]


def test_a_translated_stream_names_its_dropped_fields_before_the_first_event(client, upstream):
    with client.chat.completions.with_streaming_response.create(
            model="claude-3-5-haiku-latest", stream=True,
            messages=[{"role": "user", "content": "hi", "name": "alice"}]) as response:
        assert response.headers["x-llm-edge-dropped-fields"] == "messages[0].name"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "Echo: hi"


@pytest.mark.parametrize("model,name", [("gpt-4o-mini", "alice"), ("claude-3-5-haiku-latest", None)])
def test_no_dropped_fields_header_when_relayed_or_nothing_is_dropped(client, upstream, model, name):
    """Relayed to OpenAI, ``name`` travels as it came; translated with nothing left out, no header."""
    message = {"role": "user", "content": "hello there", **({"name": name} if name else {})}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[message],
        tools=[{**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "strict": name is not None}}])
    assert raw.parse().choices[0].finish_reason in ("stop", "tool_calls")  # an answer came
    assert raw.headers["x-llm-edge-provider"] == ("openai" if model == "gpt-4o-mini" else "anthropic")
    assert "x-llm-edge-dropped-fields" not in raw.headers
    if name:
        sent = upstream.requests[-1].body
        assert sent["messages"][0]["name"] == "alice" and sent["tools"][0]["function"]["strict"] is True

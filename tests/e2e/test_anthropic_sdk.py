"""The official Anthropic SDK against a 2-worker gateway, to both providers."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from tests.conftest import OPENAI_KEY, Fault

pytestmark = pytest.mark.timeout(60)

MODELS = [("claude-3-5-haiku-latest", "anthropic"), ("gpt-4o-mini", "openai")]
WEATHER_TOOL = {"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


@pytest.fixture
def client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="any-client-key", max_retries=0, timeout=10)


@pytest.mark.parametrize("model,provider", MODELS)
def test_plain_message(client, upstream, model, provider):
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hello there"}])
    message = raw.parse()
    assert message.content[0].text == "Echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 3
    assert raw.headers["x-llm-edge-provider"] == provider
    if provider == "openai":
        sent = upstream.requests[-1]
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent.body["max_tokens"] == 100


@pytest.mark.parametrize("model,provider", MODELS)
def test_raw_stream_events(client, upstream, model, provider):
    events = list(client.messages.create(model=model, max_tokens=100, stream=True,
                                         messages=[{"role": "user", "content": "one two three"}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Echo: one two three"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 4


@pytest.mark.parametrize("model,provider", MODELS)
def test_stream_helper_final_message(client, upstream, model, provider):
    with client.messages.stream(model=model, max_tokens=100,
                                messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream me"
    assert final.content[0].text == "Echo: stream me"
    assert final.usage.output_tokens == 3


@pytest.mark.parametrize("model,provider", MODELS)
def test_tools_with_stream_helper_and_tool_result(client, upstream, model, provider):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    with client.messages.stream(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_use = next(b for b in final.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "test"}
    follow = client.messages.create(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=[
        *messages,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rainy"}]},
    ])
    assert follow.content[0].text == "Tool said: rainy"
    if provider == "openai":
        sent = upstream.requests[-1].body["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": tool_use.id, "content": "rainy"}


def test_tool_choice_forced(client, upstream):
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=50, tools=[WEATHER_TOOL],
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.stop_reason == "tool_use"
    assert upstream.requests[-1].body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_multi_turn_tool_use_with_extended_thinking(client, upstream):
    """The assistant turn [thinking(signature), tool_use] goes back as it came: the emulator enforces
    Anthropic's rule (a tool-use loop's assistant turn must start with a thinking block whose signature is
    intact), which a translated history broke with a 400
    (https://docs.claude.com/en/docs/build-with-claude/extended-thinking)."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(model="claude-opus-4-1", max_tokens=2048, thinking=thinking,
                                   tools=[WEATHER_TOOL], messages=messages,
                                   extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert [b.type for b in first.content] == ["thinking", "tool_use"] and first.content[0].signature
    assert upstream.requests[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    call = first.content[1]
    messages += [{"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    with client.messages.stream(model="claude-opus-4-1", max_tokens=2048, thinking=thinking, tools=[WEATHER_TOOL],
                                messages=messages) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"] and final.content[1].text == "Tool said: sunny"
    sent = upstream.requests[-1].body["messages"][1]["content"]
    assert sent[0]["type"] == "thinking" and sent[0]["signature"] == first.content[0].signature
    # What the translation used to send (the thinking block dropped) is what the API refuses:
    broken = [messages[0], {"role": "assistant", "content": [first.content[1]]}, messages[2]]
    with pytest.raises(anthropic.BadRequestError, match="Expected `thinking` or `redacted_thinking`"):
        client.messages.create(model="claude-opus-4-1", max_tokens=2048, thinking=thinking, tools=[WEATHER_TOOL],
                               messages=broken)


@pytest.mark.parametrize("model,provider", MODELS)
@pytest.mark.parametrize("header", ["anthropic-beta", "anthropic-version"])
def test_a_malformed_anthropic_header_is_a_400_in_anthropics_shape_before_any_attempt(client, upstream, model,
                                                                                      provider, header):
    """``anthropic-beta`` / ``anthropic-version`` are checked as count_tokens checks them (1-1024 printable
    ASCII), whichever provider serves the model (https://docs.anthropic.com/en/api/beta-headers,
    https://docs.anthropic.com/en/api/errors for the error shape)."""
    before = upstream.count()
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               extra_headers={header: "x" * 1025})
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert header in caught.value.body["error"]["message"]
    assert upstream.count() == before
    fine = client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                  extra_headers={header: "x" * 1024 if header == "anthropic-beta" else "2023-06-01"})
    assert fine.content[0].text == "Echo: hi"


def _vllm_chunk(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def test_reasoning_content_of_an_openai_compatible_server_is_a_thinking_block(client, upstream):
    """vLLM / DeepSeek answer with ``reasoning_content`` beside ``content``
    (https://docs.vllm.ai/en/latest/features/reasoning_outputs.html,
    https://api-docs.deepseek.com/guides/reasoning_model): the SDK gets a thinking block first, without a
    signature, in a whole answer and in a stream; sent back, the block is not sent on to the OpenAI-format
    model (Chat Completions takes no reasoning input)."""
    answer = {"id": "chatcmpl-r1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "reasoning_content": "Think first.", "content": "42"}}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}
    upstream.push_faults(Fault(script=orjson.dumps(answer)))
    messages: list = [{"role": "user", "content": "the answer, reasoned"}]
    message = client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=messages)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Think first." and message.content[0].signature == ""
    stream = b"".join([_vllm_chunk({"role": "assistant", "reasoning_content": "Think"}),
                       _vllm_chunk({"reasoning_content": " twice."}), _vllm_chunk({"content": "43"}),
                       _vllm_chunk({}, "stop"), b"data: [DONE]\n\n"])
    upstream.push_faults(Fault(script=stream))
    with client.messages.stream(model="gpt-4o-mini", max_tokens=50,
                                messages=[{"role": "user", "content": "the answer, streamed"}]) as events:
        final = events.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Think twice." and final.content[1].text == "43"
    messages += [{"role": "assistant", "content": message.content}, {"role": "user", "content": "and again?"}]
    again = client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=messages)
    assert again.content[-1].type == "text"
    sent = upstream.requests[-1].body["messages"]
    assert sent[1] == {"role": "assistant", "content": "42"}, sent

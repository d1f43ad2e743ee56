"""Cross-dialect translation carries what both APIs can say: usage with prompt-cache reads and
writes and reasoning tokens, reasoning effort and thinking, thinking text, documents; and refuses
(400 naming the field) what the target cannot say. Payloads are shaped after the providers'
references:

* Anthropic Messages: https://docs.anthropic.com/en/api/messages (usage, ``cache_creation``,
  ``server_tool_use``, ``output_tokens_details``), streaming
  https://docs.anthropic.com/en/docs/build-with-claude/streaming, extended thinking
  https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking, PDF support
  https://docs.anthropic.com/en/docs/build-with-claude/pdf-support, prompt caching
  https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching.
* OpenAI Chat Completions: https://platform.openai.com/docs/api-reference/chat/object (usage,
  ``prompt_tokens_details``, ``completion_tokens_details``), streaming usage chunk
  https://platform.openai.com/docs/api-reference/chat-streaming, ``reasoning_effort``
  https://platform.openai.com/docs/api-reference/chat/create, PDF file inputs
  https://platform.openai.com/docs/guides/pdf-files.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.errors import InvalidRequest
from app.formats import anthropic, openai
from app.formats.canonical import ChatResponse, DocumentBlock, TextBlock, ThinkingBlock, Usage
from app.formats.reasoning import EFFORT_BUDGETS
from app.formats.sse import SSEParser, encode_event
from app.formats.stream import StreamAccumulator, decode_sse

DEFAULT_MAX = 4096
PDF = "JVBERi0xLjQKJcfsj6IK"  # the first bytes of a PDF, base64

# --- payloads ---------------------------------------------------------------------

# An Anthropic answer that read 2,000 tokens from the prompt cache, wrote 1,500 (1,000 of them with a
# one-hour lifetime), thought, and searched the web twice (Messages API reference, "usage").
ANTHROPIC_ANSWER = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "The user asks for 2+2.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT"},
        {"type": "text", "text": "4"},
    ],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 2000,
              "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
              "output_tokens": 300, "output_tokens_details": {"thinking_tokens": 120},
              "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0}, "service_tier": "standard"},
}
ANTHROPIC_USAGE = Usage(input_tokens=3550, output_tokens=300, cache_read_tokens=2000, cache_write_tokens=1500,
                        cache_write_1h_tokens=1000, reasoning_tokens=120, web_search_requests=2)

# An OpenAI reasoning model's answer with 1,024 cached prompt tokens (Chat Completions object reference).
OPENAI_ANSWER = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
    "model": "o3-2025-04-16",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 32, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": None,
}


def named(event: str, payload: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(payload), event)


def data(payload: dict[str, Any] | str) -> bytes:
    return encode_event(payload.encode() if isinstance(payload, str) else orjson.dumps(payload))


ANTHROPIC_STREAM = b"".join([
    named("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 2000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
                  "output_tokens": 1}}}),
    named("content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "thinking_delta", "thinking": "The user asks for 2+2."}}),
    named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}}),
    named("content_block_stop", {"type": "content_block_stop", "index": 0}),
    named("content_block_start", {"type": "content_block_start", "index": 1,
                                  "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"}}),
    named("content_block_stop", {"type": "content_block_stop", "index": 1}),
    named("content_block_start", {"type": "content_block_start", "index": 2,
                                  "content_block": {"type": "text", "text": ""}}),
    named("content_block_delta", {"type": "content_block_delta", "index": 2,
                                  "delta": {"type": "text_delta", "text": "4"}}),
    named("content_block_stop", {"type": "content_block_stop", "index": 2}),
    named("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1500,
                                      "cache_read_input_tokens": 2000, "output_tokens": 300,
                                      "output_tokens_details": {"thinking_tokens": 120},
                                      "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0}}}),
    named("message_stop", {"type": "message_stop"}),
])

OPENAI_STREAM = b"".join([
    data({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "o3", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], "usage": None}),
    data({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "o3", "choices": [
        {"index": 0, "delta": {"content": "4"}, "finish_reason": None}], "usage": None}),
    data({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "o3", "choices": [
        {"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
    data({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "o3", "choices": [],
          "usage": OPENAI_ANSWER["usage"]}),
    data("[DONE]"),
])


def sse(raw: bytes) -> list[tuple[str | None, Any]]:
    parser = SSEParser()
    return [(e.event, e.data if e.data == "[DONE]" else orjson.loads(e.data))
            for e in parser.feed(raw) + parser.flush()]


def relay(raw: bytes, decoder: Any, encoder: Any) -> tuple[bytes, StreamAccumulator]:
    acc = StreamAccumulator()
    out = b""
    for ev in decode_sse([raw], decoder):
        acc.feed(ev)
        out += encoder.encode(ev)
    return out, acc


# --- usage: Anthropic answers to OpenAI callers -------------------------------------


def test_anthropic_usage_is_read_whole() -> None:
    assert anthropic.parse_response(ANTHROPIC_ANSWER).usage == ANTHROPIC_USAGE


def test_anthropic_usage_to_openai_caller() -> None:
    """prompt_tokens = input + cache read + cache write (OpenAI counts cached tokens inside it);
    cached_tokens = cache read; reasoning_tokens from Anthropic's thinking_tokens."""
    out = openai.render_response(anthropic.parse_response(ANTHROPIC_ANSWER))
    assert out["usage"] == {
        "prompt_tokens": 3550, "completion_tokens": 300, "total_tokens": 3850,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 1500},
        "completion_tokens_details": {"reasoning_tokens": 120},
    }


def test_anthropic_stream_usage_to_openai_caller() -> None:
    out, acc = relay(ANTHROPIC_STREAM, anthropic.StreamDecoder(), openai.StreamEncoder(include_usage=True))
    chunks = [payload for _, payload in sse(out)]
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == {
        "prompt_tokens": 3550, "completion_tokens": 300, "total_tokens": 3850,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 1500},
        "completion_tokens_details": {"reasoning_tokens": 120},
    }
    assert acc.usage == ANTHROPIC_USAGE  # what the gateway bills


# --- usage: OpenAI answers to Anthropic callers -------------------------------------


def test_openai_usage_is_read_whole() -> None:
    assert openai.parse_response(OPENAI_ANSWER).usage == Usage(1117, 46, cache_read_tokens=1024, reasoning_tokens=32)


def test_openai_usage_to_anthropic_caller() -> None:
    """input_tokens = prompt - cached; cache_read_input_tokens = cached; no cache writes; reasoning is output."""
    out = anthropic.render_response(openai.parse_response(OPENAI_ANSWER))
    assert out["usage"] == {
        "input_tokens": 93, "output_tokens": 46, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens_details": {"thinking_tokens": 32},
    }


def test_openai_stream_usage_to_anthropic_caller() -> None:
    out, acc = relay(OPENAI_STREAM, openai.StreamDecoder(), anthropic.StreamEncoder())
    events = sse(out)
    delta = next(payload for name, payload in events if name == "message_delta")
    assert delta["usage"] == {"input_tokens": 93, "output_tokens": 46, "cache_read_input_tokens": 1024,
                              "cache_creation_input_tokens": 0, "output_tokens_details": {"thinking_tokens": 32}}
    assert acc.usage == Usage(1117, 46, cache_read_tokens=1024, reasoning_tokens=32)


def test_openai_reported_cache_writes_are_cache_creation() -> None:
    body = {**OPENAI_ANSWER, "usage": {"prompt_tokens": 3000, "completion_tokens": 5, "total_tokens": 3005,
                                       "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1800}}}
    usage = anthropic.render_response(openai.parse_response(body))["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (
        200, 1000, 1800)


def test_anthropic_usage_survives_to_anthropic_callers() -> None:
    """A translated answer rendered back in Anthropic's shape (e.g. a cache hit) keeps every counter."""
    out = anthropic.render_response(anthropic.parse_response(ANTHROPIC_ANSWER))["usage"]
    assert out == {k: v for k, v in ANTHROPIC_ANSWER["usage"].items() if k != "service_tier"}


# --- thinking in answers -------------------------------------------------------------


def test_thinking_reaches_openai_callers_as_reasoning_content() -> None:
    """Thinking text: the ``reasoning_content`` extension field; redacted thinking and signatures: dropped."""
    message = openai.render_response(anthropic.parse_response(ANTHROPIC_ANSWER))["choices"][0]["message"]
    assert message["content"] == "4"
    assert message["reasoning_content"] == "The user asks for 2+2."
    assert "EqQB" not in orjson.dumps(message).decode() and "EmwK" not in orjson.dumps(message).decode()


def test_streamed_thinking_reaches_openai_callers_as_reasoning_content_deltas() -> None:
    out, acc = relay(ANTHROPIC_STREAM, anthropic.StreamDecoder(), openai.StreamEncoder(include_usage=False))
    deltas = [p["choices"][0]["delta"] for _, p in sse(out) if p != "[DONE]" and p["choices"]]
    assert [d for d in deltas if "reasoning_content" in d] == [{"reasoning_content": "The user asks for 2+2."}]
    assert "".join(d.get("content") or "" for d in deltas) == "4"
    assert b"EqQB" not in out and b"EmwK" not in out
    assert acc.response().content[0] == ThinkingBlock("The user asks for 2+2.", "EqQBCgIYAhIM1gbcDa9GJwZA")


def test_streamed_thinking_survives_to_anthropic_callers() -> None:
    out, _ = relay(ANTHROPIC_STREAM, anthropic.StreamDecoder(), anthropic.StreamEncoder())
    starts = [p["content_block"] for name, p in sse(out) if name == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "redacted_thinking", "text"]
    deltas = [p["delta"] for name, p in sse(out) if name == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"} in deltas


def test_openai_sdk_reads_reasoning_content() -> None:
    import openai as sdk

    completion = sdk.types.chat.ChatCompletion.model_validate(
        openai.render_response(anthropic.parse_response(ANTHROPIC_ANSWER)))
    assert completion.choices[0].message.reasoning_content == "The user asks for 2+2."  # type: ignore[attr-defined]
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2000


# --- reasoning effort <-> thinking ------------------------------------------------------


def openai_request(**over: Any) -> Any:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "2+2?"}], **over}
    return openai.parse_request(body)


def anthropic_request(**over: Any) -> Any:
    body = {"model": "o3", "max_tokens": 20000, "messages": [{"role": "user", "content": "2+2?"}], **over}
    return anthropic.parse_request(body)


@pytest.mark.parametrize(("effort", "budget"), sorted(EFFORT_BUDGETS.items()))
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    out = anthropic.build_request(openai_request(reasoning_effort=effort, max_completion_tokens=100_000),
                                  "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == 100_000 and "reasoning_effort" not in out


def test_max_tokens_is_raised_above_the_budget() -> None:
    """Anthropic requires budget_tokens < max_tokens: the caller's limit is kept for the answer."""
    out = anthropic.build_request(openai_request(reasoning_effort="high", max_tokens=1000), "claude-sonnet-4-5",
                                  default_max_tokens=DEFAULT_MAX)
    assert out["thinking"]["budget_tokens"] == 16384 and out["max_tokens"] == 16384 + 1000
    out = anthropic.build_request(openai_request(reasoning_effort="low"), "claude-sonnet-4-5",
                                  default_max_tokens=DEFAULT_MAX)
    assert out["thinking"]["budget_tokens"] == 2048 and out["max_tokens"] == DEFAULT_MAX


def test_reasoning_effort_none_sends_no_thinking() -> None:
    out = anthropic.build_request(openai_request(reasoning_effort="none"), "claude-sonnet-4-5",
                                  default_max_tokens=DEFAULT_MAX)
    assert "thinking" not in out and "reasoning_effort" not in out


@pytest.mark.parametrize(("over", "param"), [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": "high", "temperature": 0.2}, "temperature"),
    ({"reasoning_effort": "high", "top_p": 0.5}, "top_p"),
    ({"reasoning_effort": "high", "tool_choice": "required",
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tool_choice"),
])
def test_reasoning_effort_conflicts_are_400_naming_the_field(over: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        anthropic.build_request(openai_request(**over), "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert info.value.param == param


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (4095, "low"), (4096, "medium"), (12287, "medium"),
                                                (12288, "high"), (32000, "high")])
def test_thinking_budget_becomes_reasoning_effort(budget: int, effort: str) -> None:
    out = openai.build_request(anthropic_request(thinking={"type": "enabled", "budget_tokens": budget}), "o3",
                               default_max_tokens=DEFAULT_MAX)
    assert out["reasoning_effort"] == effort and "thinking" not in out
    assert out["max_completion_tokens"] == 20000


def test_adaptive_and_disabled_thinking_send_no_effort() -> None:
    for thinking in ({"type": "adaptive"}, {"type": "disabled"}):
        out = openai.build_request(anthropic_request(thinking=thinking), "o4-mini", default_max_tokens=DEFAULT_MAX)
        assert "reasoning_effort" not in out and "thinking" not in out


def test_thinking_to_a_model_that_does_not_reason_is_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as info:
        openai.build_request(anthropic_request(model="gpt-4o", thinking={"type": "enabled", "budget_tokens": 2048}),
                             "gpt-4o", default_max_tokens=DEFAULT_MAX)
    assert info.value.param == "thinking" and "reasoning model" in info.value.message
    out = openai.build_request(anthropic_request(model="gpt-4o", thinking={"type": "disabled"}), "gpt-4o",
                               default_max_tokens=DEFAULT_MAX)
    assert "thinking" not in out and "reasoning_effort" not in out


THINKING_HISTORY = [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "easy", "signature": "sig"},
                                      {"type": "redacted_thinking", "data": "EmwK"},
                                      {"type": "text", "text": "4"}]},
    {"role": "user", "content": "and 3+3?"},
]


def test_thinking_in_history_is_not_sent_to_openai() -> None:
    out = openai.build_request(anthropic_request(messages=THINKING_HISTORY), "o3", default_max_tokens=DEFAULT_MAX)
    assert out["messages"][1] == {"role": "assistant", "content": "4"}


def test_thinking_in_history_goes_back_to_anthropic_with_its_signature() -> None:
    req = anthropic_request(model="claude-sonnet-4-5", messages=THINKING_HISTORY)
    out = anthropic.build_request(req, "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert out["messages"][1]["content"][:2] == THINKING_HISTORY[1]["content"][:2]


# --- cache_control, documents, server tools, developer messages ----------------------------


def test_cache_control_is_dropped_toward_openai() -> None:
    req = anthropic_request(model="gpt-4o",
                            system=[{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}],
                            messages=[{"role": "user", "content": [
                                {"type": "text", "text": "2+2?",
                                 "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
                            tools=[{"name": "f", "input_schema": {"type": "object"},
                                    "cache_control": {"type": "ephemeral"}}])
    out = openai.build_request(req, "gpt-4o", default_max_tokens=DEFAULT_MAX)
    assert "cache_control" not in orjson.dumps(out).decode()
    assert out["messages"][0] == {"role": "system", "content": "Long rules."}


def test_pdf_document_becomes_an_openai_file_part_and_back() -> None:
    req = anthropic_request(model="gpt-4o", messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
         "title": "report.pdf", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Summarise."}]}])
    out = openai.build_request(req, "gpt-4o", default_max_tokens=DEFAULT_MAX)
    assert out["messages"][0]["content"][0] == {
        "type": "file", "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}}
    back = openai.parse_request({"model": "claude-sonnet-4-5", "messages": out["messages"]})
    assert back.messages[0].content[0] == DocumentBlock(PDF, title="report.pdf")
    to_claude = anthropic.build_request(back, "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert to_claude["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "report.pdf"}


@pytest.mark.parametrize(("extra", "param"), [({"context": "Q3 figures"}, "messages[0].content[0].context"),
                                               ({"citations": {"enabled": True}}, "messages[0].content[0].citations")])
def test_anthropic_only_document_fields_are_400_toward_openai(extra: dict[str, Any], param: str) -> None:
    req = anthropic_request(model="gpt-4o", messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}, **extra}]}])
    with pytest.raises(InvalidRequest) as info:
        openai.build_request(req, "gpt-4o", default_max_tokens=DEFAULT_MAX)
    assert info.value.param == param


def test_server_tools_are_400_toward_openai_and_relayed_to_anthropic() -> None:
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    req = anthropic_request(model="gpt-4o", tools=[{"name": "f", "input_schema": {"type": "object"}}, tool])
    with pytest.raises(InvalidRequest) as info:
        openai.build_request(req, "gpt-4o", default_max_tokens=DEFAULT_MAX)
    assert info.value.param == "tools[1]" and "web_search_20250305" in info.value.message
    out = anthropic.build_request(req, "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert out["tools"][1] == tool


def test_developer_message_is_system_for_claude() -> None:
    req = openai.parse_request({"model": "claude-sonnet-4-5", "messages": [
        {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "2+2?"}]})
    out = anthropic.build_request(req, "claude-sonnet-4-5", default_max_tokens=DEFAULT_MAX)
    assert out["system"] == "Answer in French." and out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "2+2?"}]}]


def test_answer_without_thinking_has_no_reasoning_content() -> None:
    out = openai.render_response(ChatResponse("m", "claude", (TextBlock("4"),), "end_turn", usage=Usage(5, 1)))
    message = out["choices"][0]["message"]
    assert "reasoning_content" not in message and "completion_tokens_details" not in out["usage"]


# --- docs/api.md's per-direction tables: what is dropped, what is refused ----------------------------------

_OA_MESSAGES = [{"role": "user", "content": "hi"}]
_AN_MESSAGES = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "yo",
                                                   "citations": [{"type": "char_location", "cited_text": "x"}]}]},
                {"role": "user", "content": "more"}]


def _to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    return anthropic.build_request(openai.parse_request(body), "claude-sonnet-4-5", default_max_tokens=100)


def _to_openai(body: dict[str, Any]) -> dict[str, Any]:
    return openai.build_request(anthropic.parse_request(body), "gpt-4o", default_max_tokens=100)


def test_what_the_openai_to_anthropic_table_lists_as_dropped_is_dropped_and_nothing_else_is_lost():
    quiet = {"store": True, "metadata": {"k": "v"}, "service_tier": "flex", "prompt_cache_key": "k",
             "safety_identifier": "s", "frequency_penalty": 0, "logprobs": False, "top_logprobs": 0,
             "logit_bias": {}, "response_format": {"type": "text"}, "modalities": ["text"], "reasoning_effort": "none"}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}}
    messages = [{"role": "user", "name": "bob", "content": [{"type": "text", "text": "hi"}, image]}]
    sent = _to_anthropic({"model": "x", "messages": messages, "user": "u", **quiet})
    assert sent == {"model": "claude-sonnet-4-5", "max_tokens": 100, "metadata": {"user_id": "u"},
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}


@pytest.mark.parametrize(("field", "value"), [
    ("verbosity", "low"), ("modalities", ["text", "audio"]), ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}), ("top_logprobs", 2), ("audio", {"voice": "alloy", "format": "mp3"}),
    ("seed", 1), ("logit_bias", {"50256": -100}), ("presence_penalty", 0.5)])
def test_what_the_openai_to_anthropic_table_lists_as_refused_is_a_400_naming_it(field, value):
    with pytest.raises(InvalidRequest) as caught:
        _to_anthropic({"model": "x", "messages": _OA_MESSAGES, field: value})
    assert caught.value.param == field


def test_what_the_anthropic_to_openai_table_lists_as_dropped_is_dropped_and_nothing_else_is_lost():
    sent = _to_openai({"model": "x", "max_tokens": 5, "messages": _AN_MESSAGES, "service_tier": "auto",
                       "metadata": {"user_id": "u"}, "thinking": {"type": "disabled"}})
    assert sent == {"model": "gpt-4o", "max_tokens": 5, "user": "u", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}]}


@pytest.mark.parametrize(("field", "value"), [
    ("container", "container_1"), ("mcp_servers", [{"type": "url", "url": "https://example.com", "name": "m"}]),
    ("context_management", {"edits": []}), ("top_k", 5)])
def test_what_the_anthropic_to_openai_table_lists_as_refused_is_a_400_naming_it(field, value):
    with pytest.raises(InvalidRequest) as caught:
        _to_openai({"model": "x", "max_tokens": 5, "messages": _AN_MESSAGES, field: value})
    assert caught.value.param == field


# --- reasoning_content from OpenAI-compatible providers (vLLM, DeepSeek) to Anthropic callers ---------------
# https://docs.vllm.ai/en/latest/features/reasoning_outputs.html and
# https://api-docs.deepseek.com/guides/reasoning_model: the reasoning text is ``message.reasoning_content``
# in an answer and ``delta.reasoning_content`` in stream chunks, before the answer's content.

VLLM_ANSWER = {
    "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
    "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "2 and 2 make 4.",
                                         "content": "4"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22,
              "completion_tokens_details": {"reasoning_tokens": 7}},
}
_VLLM_HEAD = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner"}
VLLM_STREAM = b"".join([
    data({**_VLLM_HEAD, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                             "reasoning_content": "2 and 2"}}]}),
    data({**_VLLM_HEAD, "choices": [{"index": 0, "delta": {"reasoning_content": " make 4."}}]}),
    data({**_VLLM_HEAD, "choices": [{"index": 0, "delta": {"content": "4", "reasoning_content": None}}]}),
    data({**_VLLM_HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    data({**_VLLM_HEAD, "choices": [], "usage": VLLM_ANSWER["usage"]}),
    data("[DONE]"),
])


def test_a_providers_reasoning_content_is_a_thinking_block_without_signature_for_anthropic_callers() -> None:
    resp = openai.parse_response(VLLM_ANSWER)
    assert resp.content == (ThinkingBlock("2 and 2 make 4.", None), TextBlock("4"))
    rendered = anthropic.render_response(resp)
    assert rendered["content"] == [{"type": "thinking", "thinking": "2 and 2 make 4.", "signature": ""},
                                   {"type": "text", "text": "4"}]
    assert rendered["usage"]["output_tokens_details"] == {"thinking_tokens": 7}
    import anthropic as sdk

    message = sdk.types.Message.model_validate(rendered)
    assert message.content[0].type == "thinking" and message.content[0].thinking == "2 and 2 make 4."


def test_a_providers_streamed_reasoning_content_is_a_thinking_block_before_the_text() -> None:
    out, acc = relay(VLLM_STREAM, openai.StreamDecoder(), anthropic.StreamEncoder())
    starts = [(p["index"], p["content_block"]) for name, p in sse(out) if name == "content_block_start"]
    assert starts == [(0, {"type": "thinking", "thinking": "", "signature": ""}), (1, {"type": "text", "text": ""})]
    deltas = [p["delta"] for name, p in sse(out) if name == "content_block_delta"]
    assert deltas == [{"type": "thinking_delta", "thinking": "2 and 2"},
                      {"type": "thinking_delta", "thinking": " make 4."}, {"type": "text_delta", "text": "4"}]
    assert [name for name, _ in sse(out)].count("content_block_stop") == 2
    assert acc.response().content == (ThinkingBlock("2 and 2 make 4.", None), TextBlock("4"))


def test_openai_callers_of_such_a_provider_get_it_back_as_reasoning_content() -> None:
    assert openai.render_response(openai.parse_response(VLLM_ANSWER))["choices"][0]["message"][
        "reasoning_content"] == "2 and 2 make 4."
    out, _ = relay(VLLM_STREAM, openai.StreamDecoder(), openai.StreamEncoder(include_usage=False))
    texts = [p["choices"][0]["delta"].get("reasoning_content") for name, p in sse(out)
             if p != "[DONE]" and p.get("choices")]
    assert "".join(t for t in texts if t) == "2 and 2 make 4."


# --- Anthropic output_config.effort to OpenAI reasoning models ------------------------------------------------
# https://docs.claude.com/en/docs/build-with-claude/effort (low, medium, high, xhigh, max) and
# https://platform.openai.com/docs/api-reference/chat/create (reasoning_effort: none ... xhigh).

@pytest.mark.parametrize(("effort", "sent"), [("low", "low"), ("medium", "medium"), ("high", "high"),
                                              ("xhigh", "xhigh"), ("max", "xhigh")])
def test_output_config_effort_becomes_reasoning_effort(effort: str, sent: str) -> None:
    body = openai.build_request(anthropic_request(output_config={"effort": effort}), "o3", default_max_tokens=1)
    assert body["reasoning_effort"] == sent and "output_config" not in body


def test_output_config_effort_wins_over_a_thinking_budgets_range() -> None:
    req = anthropic_request(thinking={"type": "enabled", "budget_tokens": 20000}, output_config={"effort": "low"})
    assert openai.build_request(req, "gpt-5", default_max_tokens=1)["reasoning_effort"] == "low"
    adaptive = anthropic_request(thinking={"type": "adaptive"}, output_config={"effort": "medium"})
    assert openai.build_request(adaptive, "o4-mini", default_max_tokens=1)["reasoning_effort"] == "medium"
    assert "reasoning_effort" not in openai.build_request(anthropic_request(output_config={}), "o3",
                                                          default_max_tokens=1)


@pytest.mark.parametrize(("config", "model", "param"), [
    ({"effort": "low"}, "gpt-4o", "output_config.effort"),       # a model that does not reason
    ({"effort": "extreme"}, "o3", "output_config.effort"),
    ({"format": {"type": "json_schema", "schema": {}}}, "o3", "output_config.format"),
    ("low", "o3", "output_config"),
])
def test_what_output_config_cannot_say_to_openai_is_a_400_naming_it(config: Any, model: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        openai.build_request(anthropic_request(output_config=config), model, default_max_tokens=1)
    assert caught.value.param == param


def test_output_config_is_relayed_to_anthropic_as_it_came() -> None:
    req = anthropic_request(output_config={"effort": "max"})
    assert anthropic.build_request(req, "claude-opus-4-5", default_max_tokens=1)["output_config"] == {"effort": "max"}

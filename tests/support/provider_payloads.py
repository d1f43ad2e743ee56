"""Provider answers and requests shaped as the providers' API references show them, for the relay tests.

Shapes follow (field names, nesting, event order):

* Anthropic Messages, streaming with extended thinking, web search and citations:
  https://docs.anthropic.com/en/docs/build-with-claude/streaming ("Streaming request with thinking",
  "Web search tool"), https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking,
  https://docs.anthropic.com/en/docs/build-with-claude/citations, and the SDK's types
  (anthropic-sdk-python ``types/web_search_tool_result_block.py``, ``citations_delta.py``,
  ``signature_delta.py``, ``server_tool_use_block.py``).
* OpenAI Chat Completions object and chunk object, with logprobs, ``system_fingerprint``, ``service_tier``,
  ``annotations``, ``refusal`` and ``usage.completion_tokens_details``:
  https://platform.openai.com/docs/api-reference/chat/object,
  https://platform.openai.com/docs/api-reference/chat-streaming/streaming,
  and openai-python ``types/chat/chat_completion.py``, ``completion_usage.py``.

The values are made up; the shapes are not.
"""

from __future__ import annotations

import orjson


def sse(event: str | None, data: dict) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"

ANTHROPIC_STREAM = b"".join([
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01ThinkAndSearch", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 2679, "cache_creation_input_tokens": 1200, "cache_read_input_tokens": 300,
                  "output_tokens": 3, "service_tier": "standard"}}}),
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    sse("ping", {"type": "ping"}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "thinking_delta", "thinking": "I should search for this."}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse("content_block_start", {"type": "content_block_start", "index": 1,
                                "content_block": {"type": "redacted_thinking", "data": REDACTED}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    sse("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "server_tool_use", "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB", "name": "web_search", "input": {}}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"weather NYC\"}"}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    sse("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
        "type": "web_search_tool_result", "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
        "content": [{"type": "web_search_result", "title": "Weather in New York City",
                     "url": "https://weather.example/nyc", "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4",
                     "page_age": "January 14, 2025"}]}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 3}),
    sse("content_block_start", {"type": "content_block_start", "index": 4,
                                "content_block": {"type": "text", "text": "", "citations": []}}),
    b": keep-alive comment\n\n",
    sse("content_block_delta", {"type": "content_block_delta", "index": 4,
                                "delta": {"type": "text_delta", "text": "It is sunny"}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 4, "delta": {
        "type": "citations_delta", "citation": {
            "type": "web_search_result_location", "cited_text": "Sunny, 21C",
            "url": "https://weather.example/nyc", "title": "Weather in New York City",
            "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0"}}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 4,
                                "delta": {"type": "text_delta", "text": " in New York."}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 4}),
    sse("ping", {"type": "ping"}),
    sse("message_delta", {"type": "message_delta",
                          "delta": {"stop_reason": "end_turn", "stop_sequence": None, "container": None},
                          "usage": {"output_tokens": 510, "server_tool_use": {"web_search_requests": 1}}}),
    sse("message_stop", {"type": "message_stop"}),
])
ANTHROPIC_STREAM_TEXT = "It is sunny in New York."
# input_tokens + cache writes + cache reads, as the canonical usage counts them
ANTHROPIC_STREAM_INPUT, ANTHROPIC_STREAM_OUTPUT = 2679 + 1200 + 300, 510

ANTHROPIC_ERROR_STREAM = b"".join([
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01Overloaded", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": "Partial"}}),
    sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
])

OPENAI_JSON = orjson.dumps({
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": None,
                    "annotations": [{"type": "url_citation", "url_citation": {
                        "end_index": 10, "start_index": 0, "title": "Greeting", "url": "https://example.com/"}}]},
        "logprobs": {"content": [
            {"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111],
             "top_logprobs": [{"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111]},
                              {"token": "Hi", "logprob": -1.3190403, "bytes": [72, 105]}]}],
            "refusal": None},
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default",
    "system_fingerprint": "fp_3b5d4b7a26",
})

_HEAD = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
         "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_44709d6fcb"}


def _chunk(delta: dict, finish: str | None = None, logprobs: dict | None = None) -> dict:
    return {**_HEAD, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def _logprob(token: str) -> dict:
    return {"content": [{"token": token, "logprob": -0.1, "bytes": list(token.encode()), "top_logprobs": []}],
            "refusal": None}


_OPENAI_CHUNKS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"content": "Hello"}, logprobs=_logprob("Hello")),
    _chunk({"content": " there"}, logprobs=_logprob(" there")),
    _chunk({}, "stop"),
]
_OPENAI_USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def openai_stream(with_usage: bool) -> bytes:
    """The chunks as OpenAI sends them: with ``include_usage`` every chunk has ``"usage": null`` and a
    usage-only chunk (``"choices": []``) comes last before ``[DONE]``; without it neither is there."""
    if with_usage:
        chunks = [{**c, "usage": None} for c in _OPENAI_CHUNKS] + [{**_HEAD, "choices": [], "usage": _OPENAI_USAGE}]
    else:
        chunks = _OPENAI_CHUNKS
    return b"".join(sse(None, c) for c in chunks) + b"data: [DONE]\n\n"

"""The fixed upstream answers and the request bodies the benchmark sends.

One definition serves nginx (baked into its config), the slow drip server and
the sanity checks, so every upstream answers exactly the same bytes.
"""

from __future__ import annotations

import base64
import json
import struct

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_DIMENSIONS = 512  # the request asks for them; 1536 would not fit in one nginx string (4 KB)
SLOW_MODEL = "bench-slow/drip"  # routed to the slow drip provider by the generated models file
WORDS = ("Hello", " from", " the", " benchmark", " upstream", ": a", " fixed", " answer", ".")
TEXT = "".join(WORDS)
USAGE_IN, USAGE_OUT = 14, len(WORDS)
CREATED = 1_700_000_000


def repeated_words(n: int) -> tuple[str, ...]:
    """``n`` words of the fixed answer, repeated as needed (a stream of a chosen length)."""
    return tuple(WORDS[i % len(WORDS)] for i in range(n))


def _j(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def openai_json(model: str = OPENAI_MODEL) -> bytes:
    return _j({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT,
                  "total_tokens": USAGE_IN + USAGE_OUT},
    }).encode()


def _openai_chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    chunk: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage
    return b"data: " + _j(chunk).encode() + b"\n\n"


def openai_sse_events(model: str = OPENAI_MODEL, words: tuple[str, ...] = WORDS) -> list[bytes]:
    """The OpenAI stream as separate SSE events (the drip server sends them one by one), one per word."""
    events = [_openai_chunk(model, {"role": "assistant", "content": ""})]
    events += [_openai_chunk(model, {"content": w}) for w in words]
    events.append(_openai_chunk(model, {}, "stop"))
    events.append(_openai_chunk(model, {}, usage={"prompt_tokens": USAGE_IN, "completion_tokens": len(words),
                                                  "total_tokens": USAGE_IN + len(words)}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_json(model: str = ANTHROPIC_MODEL) -> bytes:
    return _j({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
    }).encode()


def _anthropic_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {_j(data)}\n\n".encode()


def anthropic_sse_events(model: str = ANTHROPIC_MODEL, words: tuple[str, ...] = WORDS) -> list[bytes]:
    events = [_anthropic_event("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": USAGE_IN, "output_tokens": 1}}}),
        _anthropic_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})]
    events += [_anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "text_delta", "text": w}})
               for w in words]
    events += [
        _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _anthropic_event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                           "usage": {"output_tokens": len(words)}}),
        _anthropic_event("message_stop", {"type": "message_stop"}),
    ]
    return events


def openai_request(prompt: str, model: str = OPENAI_MODEL, stream: bool = False) -> bytes:
    """A typical small chat request in OpenAI format (what most gateway traffic looks like)."""
    body: dict = {"model": model, "max_tokens": 64, "temperature": 0.2, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return _j(body).encode()


def anthropic_request(prompt: str, model: str = ANTHROPIC_MODEL, stream: bool = False) -> bytes:
    body: dict = {"model": model, "max_tokens": 64, "temperature": 0.2, "system": "You are a terse assistant.",
                  "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return _j(body).encode()


def embeddings_json(model: str = EMBEDDING_MODEL) -> bytes:
    """One vector of 512 float32 values in base64 (the OpenAI SDK's default encoding), the answer to a RAG
    query's embedding with ``dimensions: 512``."""
    values = [((i * 37) % 101 - 50) / 1000 for i in range(EMBEDDING_DIMENSIONS)]
    vector = base64.b64encode(struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *values)).decode()
    return _j({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
               "model": model, "usage": {"prompt_tokens": USAGE_IN, "total_tokens": USAGE_IN}}).encode()


def embeddings_request(text: str, model: str = EMBEDDING_MODEL) -> bytes:
    """One input, base64 answer: what ``client.embeddings.create(model=..., input=text, dimensions=512)`` sends."""
    return _j({"model": model, "input": text, "dimensions": EMBEDDING_DIMENSIONS,
               "encoding_format": "base64"}).encode()


PROMPT_MARK = "@@PROMPT@@"


def template(build, **kw) -> tuple[str, str]:
    """A request body split around its prompt, for load generators that vary the prompt per request."""
    whole = build(PROMPT_MARK, **kw).decode()
    head, tail = whole.split(PROMPT_MARK)
    return head, tail

"""What the cache stores for one answer, and its compact byte form for Redis.

An entry is the canonical ``ChatResponse`` (so a hit can be rendered in
either dialect, as JSON or as SSE) plus the provider and upstream model that
produced it (for the ``x-llm-edge-model`` header and the savings metric).
A relayed answer also keeps the provider's bytes (``Relayed``: the JSON body,
or the whole SSE body as received), replayed byte for byte to a request of the
same dialect and delivery; any other request gets the canonical rendering.

Bytes: one format byte, then the entry as a compact orjson array (a relayed
entry: the array names the dialect and delivery, then a newline, which compact
JSON never holds, then the provider's bytes); above ``COMPRESS_MIN_BYTES`` it is zlib-compressed (level 1: answers are
text and shrink 3-5x at a fraction of the cost of higher levels). Anything
that does not decode is treated as a miss, never as an error.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from app.formats.canonical import ChatResponse, TextBlock, ToolUseBlock, Usage

COMPRESS_MIN_BYTES = 1024
_RAW = b"j"
_ZLIB = b"z"


@dataclass(frozen=True, slots=True)
class Relayed:
    """A relayed answer as the provider sent it: ``dialect`` (its wire format), ``stream`` (SSE or JSON)."""

    dialect: str
    stream: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    response: ChatResponse
    provider: str
    model: str
    relayed: Relayed | None = None


def _block(block: TextBlock | ToolUseBlock) -> list[Any]:
    if isinstance(block, TextBlock):
        return ["t", block.text]
    return ["u", block.id, block.name, block.input]


def encode(answer: CachedAnswer) -> tuple[bytes, int]:
    """The stored bytes, and the uncompressed size (the L1 byte budget counts that)."""
    r = answer.response
    u = r.usage
    fields = [answer.provider, answer.model, r.id, r.model, r.created, r.stop_reason,
              r.stop_sequence, [u.input_tokens, u.output_tokens, u.cached_input_tokens],
              [_block(b) for b in r.content]]
    relayed = answer.relayed
    if relayed is None:
        body = orjson.dumps(fields)
    else:
        body = orjson.dumps([*fields, relayed.dialect, relayed.stream]) + b"\n" + relayed.raw
    if len(body) < COMPRESS_MIN_BYTES:
        return _RAW + body, len(body)
    return _ZLIB + zlib.compress(body, 1), len(body)


def decode(data: bytes) -> tuple[CachedAnswer, int] | None:
    """The entry and its uncompressed size, or ``None`` when the bytes are not an entry."""
    try:
        kind, body = data[:1], data[1:]
        if kind == _ZLIB:
            body = zlib.decompress(body)
        elif kind != _RAW:
            return None
        head, newline, raw = body.partition(b"\n")
        fields = orjson.loads(head)
        relayed = None
        if newline:
            dialect, stream = fields[9:11]
            relayed = Relayed(dialect, stream, raw)
        provider, model, rid, rmodel, created, stop, stop_seq, (used_in, used_out, used_cached), blocks = fields[:9]
        content = tuple(TextBlock(b[1]) if b[0] == "t" else ToolUseBlock(b[1], b[2], b[3]) for b in blocks)
        response = ChatResponse(id=rid, model=rmodel, content=content, stop_reason=stop,
                                stop_sequence=stop_seq, usage=Usage(used_in, used_out, used_cached), created=created)
        return CachedAnswer(response, provider, model, relayed), len(body)
    except (ValueError, TypeError, IndexError, zlib.error):
        return None

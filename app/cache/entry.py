"""What the cache stores for one answer, and its compact byte form for Redis.

An entry is the canonical ``ChatResponse`` (so a hit can be rendered in
either dialect, as JSON or as SSE) plus the provider and upstream model that
produced it (for the ``x-llm-edge-model`` header and the savings metric).
A relayed answer also keeps the provider's bytes (``Relayed``: the JSON body,
or the whole SSE body as received), replayed byte for byte to a request of the
same dialect and delivery; any other request gets the canonical rendering.

Bytes: one format byte, then the entry as a compact orjson array (a relayed
entry: the array names the dialect and delivery, then a newline, which compact
JSON never holds, then the provider's bytes); above ``COMPRESS_MIN_BYTES`` it
is zlib-compressed (level 1: answers are text and shrink 3-5x at a fraction of
the cost of higher levels). The usage array holds every ``Usage`` count in
field order; entries written before it grew (input, output, cache reads) still
decode, as do relayed entries of either layout. Anything that does not decode
is treated as a miss, never as an error.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import orjson

from app.formats.canonical import (
    AnswerBlock,
    ChatResponse,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    Usage,
)

COMPRESS_MIN_BYTES = 1024
# Every Usage count in field order, as ``dataclasses.astuple`` gives them (ints: nothing to copy deeply).
_usage_counts = attrgetter(*(f.name for f in fields(Usage)))
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


def _block(block: AnswerBlock) -> list[Any]:
    if isinstance(block, TextBlock):
        return ["t", block.text]
    if isinstance(block, ThinkingBlock):
        return ["k", block.thinking, block.signature]
    if isinstance(block, RedactedThinkingBlock):
        return ["r", block.data]
    return ["u", block.id, block.name, block.input]


def _unblock(b: list[Any]) -> AnswerBlock:
    if b[0] == "t":
        return TextBlock(b[1])
    if b[0] == "k":
        return ThinkingBlock(b[1], b[2])
    if b[0] == "r":
        return RedactedThinkingBlock(b[1])
    return ToolUseBlock(b[1], b[2], b[3])


def encode(answer: CachedAnswer) -> tuple[bytes, int]:
    """The stored bytes, and the uncompressed size (the L1 byte budget counts that)."""
    head, raw = serialize(answer)
    body = head if raw is None else head + b"\n" + raw
    return pack(body), len(body)


def serialize(answer: CachedAnswer) -> tuple[bytes, bytes | None]:
    """The entry's JSON head and a relayed answer's bytes: ``len(head) + 1 + len(raw)`` is its size, known
    before anything is joined or compressed (``TieredCache.put`` leaves that for after the response)."""
    r = answer.response
    u = r.usage
    head = [answer.provider, answer.model, r.id, r.model, r.created, r.stop_reason,
            r.stop_sequence, list(_usage_counts(u)), [_block(b) for b in r.content]]
    relayed = answer.relayed
    if relayed is None:
        return orjson.dumps(head), None
    return orjson.dumps([*head, relayed.dialect, relayed.stream]), relayed.raw


def pack(body: bytes) -> bytes:
    """The stored bytes of an uncompressed entry body: as it is when small, else zlib-compressed."""
    if len(body) < COMPRESS_MIN_BYTES:
        return _RAW + body
    return _ZLIB + zlib.compress(body, 1)


def decode(data: bytes) -> tuple[CachedAnswer, int] | None:
    """The entry and its uncompressed size, or ``None`` when the bytes are not an entry."""
    try:
        kind, body = data[:1], data[1:]
        if kind == _ZLIB:
            body = zlib.decompress(body)
        elif kind != _RAW:
            return None
        head, newline, raw = body.partition(b"\n")
        items = orjson.loads(head)
        relayed = None
        if newline:
            dialect, stream = items[9:11]
            relayed = Relayed(dialect, stream, raw)
        provider, model, rid, rmodel, created, stop, stop_seq, used, blocks = items[:9]
        if not 3 <= len(used) <= len(fields(Usage)):
            return None
        content = tuple(_unblock(b) for b in blocks)
        response = ChatResponse(id=rid, model=rmodel, content=content, stop_reason=stop,
                                stop_sequence=stop_seq, usage=Usage(*used), created=created)
        return CachedAnswer(response, provider, model, relayed), len(body)
    except (ValueError, TypeError, IndexError, zlib.error):
        return None

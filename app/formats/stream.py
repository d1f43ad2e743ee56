"""Format-free stream helpers: assemble canonical events into a response, and back.

The pipeline feeds every event it passes to the caller into a
``StreamAccumulator`` to count usage and fill the cache with the whole
answer; a cache hit on a streaming request is replayed through
``events_from_response``. Both sides speak only canonical types, so one
implementation serves every pair of formats.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from app.errors import UpstreamError
from app.formats.canonical import (
    AnswerBlock,
    BlockStop,
    ChatResponse,
    RedactedThinking,
    RedactedThinkingBlock,
    SignatureDelta,
    StopReason,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolInputDelta,
    ToolUseBlock,
    ToolUseStart,
    Usage,
)
from app.formats.common import dumps, loads_object
from app.formats.sse import SSEEvent, SSEParser


class StreamDecoder(Protocol):
    """What each codec's ``StreamDecoder`` offers: SSE events in, canonical events out."""

    def feed(self, ev: SSEEvent) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


def decode_sse(chunks: Iterable[bytes], decoder: StreamDecoder) -> Iterator[StreamEvent]:
    """A provider's SSE bytes, split anywhere, as canonical events, ending with ``decoder.finish()``."""
    parser = SSEParser()
    for chunk in chunks:
        for sse in parser.feed(chunk):
            yield from decoder.feed(sse)
    for sse in parser.flush():
        yield from decoder.feed(sse)
    yield from decoder.finish()


@dataclass(slots=True)
class _Part:
    kind: str  # "text", "tool_use", "thinking" or "redacted_thinking"
    chunks: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""
    signature: str | None = None  # thinking; the data of redacted thinking


class StreamAccumulator:
    """Collects a canonical stream into the ``ChatResponse`` it amounts to.

    ``complete`` turns true at ``StreamEnd``; before that ``response()``
    raises, because a partial answer must never be cached or look whole.
    ``usage`` is the best count so far, also for a stream that was cut.
    """

    def __init__(self) -> None:
        self.complete = False
        self._id = ""
        self._model = ""
        self._created = 0
        self._parts: dict[int, _Part] = {}
        self._start_usage = Usage()
        self._end: StreamEnd | None = None

    @property
    def usage(self) -> Usage:
        return self._end.usage if self._end is not None else self._start_usage

    @property
    def stop_reason(self) -> StopReason | None:
        return self._end.stop_reason if self._end is not None else None

    def feed(self, ev: StreamEvent) -> None:
        if isinstance(ev, StreamStart):
            self._id, self._model, self._created, self._start_usage = ev.id, ev.model, ev.created, ev.usage
        elif isinstance(ev, TextDelta):
            part = self._parts.setdefault(ev.index, _Part("text"))
            if part.kind != "text":
                raise ValueError(f"text delta for block {ev.index}, which is a tool call")
            part.chunks.append(ev.text)
        elif isinstance(ev, ThinkingDelta):
            part = self._parts.setdefault(ev.index, _Part("thinking"))
            if part.kind != "thinking":
                raise ValueError(f"thinking delta for block {ev.index}, which is a {part.kind} block")
            part.chunks.append(ev.thinking)
        elif isinstance(ev, SignatureDelta):
            part = self._parts.setdefault(ev.index, _Part("thinking"))
            if part.kind != "thinking":
                raise ValueError(f"signature for block {ev.index}, which is a {part.kind} block")
            part.signature = (part.signature or "") + ev.signature
        elif isinstance(ev, RedactedThinking):
            if ev.index in self._parts:
                raise ValueError(f"block {ev.index} started twice")
            self._parts[ev.index] = _Part("redacted_thinking", signature=ev.data)
        elif isinstance(ev, ToolUseStart):
            if ev.index in self._parts:
                raise ValueError(f"block {ev.index} started twice")
            self._parts[ev.index] = _Part("tool_use", id=ev.id, name=ev.name)
        elif isinstance(ev, ToolInputDelta):
            part = self._parts.get(ev.index)
            if part is None or part.kind != "tool_use":
                raise ValueError(f"tool input delta for block {ev.index}, which is not a tool call")
            part.chunks.append(ev.partial_json)
        elif isinstance(ev, StreamEnd):
            self._end = ev
            self.complete = True
        elif not isinstance(ev, BlockStop):
            raise TypeError(f"not a stream event: {ev!r}")

    def response(self) -> ChatResponse:
        """The whole answer; a tool call whose input is not JSON counts only when cut by ``max_tokens``."""
        if self._end is None:
            raise UpstreamError("the stream is not complete: no answer to assemble")
        blocks: list[AnswerBlock] = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if part.kind == "text":
                text = "".join(part.chunks)
                if text:
                    blocks.append(TextBlock(text))
                continue
            if part.kind == "thinking":
                blocks.append(ThinkingBlock("".join(part.chunks), part.signature))
                continue
            if part.kind == "redacted_thinking":
                blocks.append(RedactedThinkingBlock(part.signature or ""))
                continue
            arguments = loads_object("".join(part.chunks))
            if arguments is None:
                if self._end.stop_reason == "max_tokens":
                    continue  # cut by the token limit, as the JSON path drops it
                raise UpstreamError("a streamed tool call's input is not a JSON object")
            blocks.append(ToolUseBlock(id=part.id, name=part.name, input=arguments))
        return ChatResponse(
            id=self._id,
            model=self._model,
            content=tuple(blocks),
            stop_reason=self._end.stop_reason,
            stop_sequence=self._end.stop_sequence,
            usage=self._end.usage,
            created=self._created,
        )


def events_from_response(resp: ChatResponse) -> list[StreamEvent]:
    """A whole answer as the canonical stream that would have produced it (for cache replays)."""
    events: list[StreamEvent] = [StreamStart(
        id=resp.id,
        model=resp.model,
        usage=replace(resp.usage, output_tokens=0, reasoning_tokens=0, web_search_requests=0, web_fetch_requests=0),
        created=resp.created,
    )]
    for index, block in enumerate(resp.content):
        if isinstance(block, TextBlock):
            events.append(TextDelta(index, block.text))
        elif isinstance(block, ThinkingBlock):
            events.append(ThinkingDelta(index, block.thinking))
            if block.signature is not None:
                events.append(SignatureDelta(index, block.signature))
        elif isinstance(block, RedactedThinkingBlock):
            events.append(RedactedThinking(index, block.data))
        else:
            events.append(ToolUseStart(index, block.id, block.name))
            events.append(ToolInputDelta(index, dumps(block.input)))
        events.append(BlockStop(index))
    events.append(StreamEnd(stop_reason=resp.stop_reason, stop_sequence=resp.stop_sequence, usage=resp.usage))
    return events

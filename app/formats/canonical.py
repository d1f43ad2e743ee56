"""The one internal shape of a chat request, response and stream.

OpenAI and Anthropic are two codecs at the edges (``app/formats``); everything
between them (cache, routing, accounting) speaks only these types. The model
follows Anthropic's block structure because it is the more expressive of the
two: an OpenAI ``tool`` message becomes a ``ToolResultBlock`` inside a user
message, and OpenAI ``tool_calls`` become ``ToolUseBlock``s of the assistant.

Everything here is plain data: frozen dataclasses, no I/O, cheap to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]

# Canonical stop reasons are Anthropic's names; the OpenAI codec maps them:
# end_turn<->stop, max_tokens<->length, tool_use<->tool_calls,
# stop_sequence<->stop, refusal<->content_filter.
StopReason = Literal["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ImageBlock:
    """An image either inline (``data`` base64 + ``media_type``) or by ``url``."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None  # OpenAI's "low" / "high" / "auto"; Anthropic drops it
    type: Literal["image"] = "image"


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    """An assistant's call of a tool. ``input`` is the parsed JSON arguments."""

    id: str
    name: str
    input: dict[str, Any]
    type: Literal["tool_use"] = "tool_use"


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    """The answer to a ``ToolUseBlock``; travels in a user message."""

    tool_use_id: str
    content: tuple[TextBlock | ImageBlock, ...]
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


@dataclass(frozen=True, slots=True)
class DocumentBlock:
    """A PDF given inline (base64 ``data``): Anthropic's ``document`` block with a base64 source,
    OpenAI's ``file`` content part with ``file_data``. ``title`` is Anthropic's title and OpenAI's
    ``filename``; ``context`` and ``citations`` exist only in Anthropic's format."""

    data: str
    media_type: str = "application/pdf"
    title: str | None = None
    context: str | None = None
    citations: bool | None = None
    type: Literal["document"] = "document"


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    """An assistant's reasoning text (Anthropic ``thinking``; to OpenAI callers ``reasoning_content``).
    ``signature`` is Anthropic's proof of origin; ``None`` when the provider gives none."""

    thinking: str
    signature: str | None = None
    type: Literal["thinking"] = "thinking"


@dataclass(frozen=True, slots=True)
class RedactedThinkingBlock:
    """Anthropic's encrypted reasoning: opaque ``data``, only meaningful to Anthropic."""

    data: str
    type: Literal["redacted_thinking"] = "redacted_thinking"


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
AnswerBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]  # JSON schema of the arguments
    strict: bool | None = None  # OpenAI's strict schema adherence; None when the caller did not say
    # A provider-defined tool (Anthropic's web_search_20250305, code_execution...): the caller's whole tool
    # object, sent as it is to Anthropic and refused by other formats; ``parameters`` is then empty.
    server: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto`` (model decides), ``none``, ``any`` (must call one) or ``tool`` (``name``)."""

    type: Literal["auto", "none", "any", "tool"]
    name: str | None = None
    disable_parallel: bool = False


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat request, independent of the dialect it arrived in.

    ``extra`` holds format-specific generation parameters the canonical model
    does not name (``frequency_penalty``, ``top_k``, ``seed``...), keyed by the
    ingress format's field name; the egress codec passes through the ones its
    format can express and rejects the rest with a 400 naming the field.
    """

    model: str
    messages: tuple[Message, ...]
    system: tuple[TextBlock, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    user: str | None = None  # end-user id; never part of the cache key
    metadata: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source_format: Literal["openai", "anthropic"] = "openai"
    # Caller fields (JSON paths) the other dialect's providers have no place for, left out when this request
    # is translated (a chat caller's request is translated only for the other dialect); never in the cache
    # key, shown to the caller in ``x-llm-edge-dropped-fields``.
    dropped: tuple[str, ...] = ()
    # A Responses caller's request is translated for either wire format: the fields only its translation for
    # an Anthropic-format provider leaves out, besides ``dropped`` (an image's detail, a tool's strict).
    dropped_for_anthropic: tuple[str, ...] = ()

    def dropped_by(self, wire_format: str) -> tuple[str, ...]:
        """The caller fields this request's translation for a provider of ``wire_format`` leaves out."""
        return self.dropped + self.dropped_for_anthropic if wire_format == "anthropic" else self.dropped


@dataclass(frozen=True, slots=True)
class Usage:
    """What a provider counted for one answer (what its bill is made of).

    ``input_tokens`` counts every prompt token, cache reads and writes included
    (OpenAI's ``prompt_tokens``; Anthropic's ``input_tokens`` + ``cache_read_input_tokens``
    + ``cache_creation_input_tokens``). Parts of it:

    * ``cache_read_tokens``: read from the provider's prompt cache (OpenAI
      ``prompt_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens``);
    * ``cache_write_tokens``: written to it (Anthropic ``cache_creation_input_tokens``,
      OpenAI ``prompt_tokens_details.cache_write_tokens`` where reported), of which
      ``cache_write_1h_tokens`` with a one-hour lifetime (Anthropic
      ``cache_creation.ephemeral_1h_input_tokens``); the rest lives 5 minutes.

    ``output_tokens`` counts every generated token; ``reasoning_tokens`` is the part
    of it spent reasoning (OpenAI ``completion_tokens_details.reasoning_tokens``,
    Anthropic ``output_tokens_details.thinking_tokens``), 0 when not reported.
    ``web_search_requests`` and ``web_fetch_requests`` are Anthropic's server tool
    calls (``usage.server_tool_use``); web searches are billed per request.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0

    @property
    def cached_input_tokens(self) -> int:
        """The former name of ``cache_read_tokens`` (read-only)."""
        return self.cache_read_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Prompt tokens neither read from nor written to the prompt cache (never below 0)."""
        return max(self.input_tokens - self.cache_read_tokens - self.cache_write_tokens, 0)


@dataclass(frozen=True, slots=True)
class ChatResponse:
    id: str
    model: str
    content: tuple[AnswerBlock, ...]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = Usage()
    created: int = 0  # unix seconds


# --- Streaming -------------------------------------------------------------
# Upstream decoders turn a provider's SSE into these events; ingress encoders
# turn them into the caller's SSE. Block indexes are the canonical content
# indexes (0, 1, 2...) in emission order.


@dataclass(frozen=True, slots=True)
class StreamStart:
    id: str
    model: str
    usage: Usage = Usage()  # Anthropic reports input tokens at the start
    created: int = 0


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Reasoning text; the first delta of an index opens a ``ThinkingBlock``."""

    index: int
    thinking: str


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    """The signature of the open ``ThinkingBlock`` at ``index`` (Anthropic sends it last)."""

    index: int
    signature: str


@dataclass(frozen=True, slots=True)
class RedactedThinking:
    """A whole ``RedactedThinkingBlock`` at ``index`` (it comes in one piece)."""

    index: int
    data: str


@dataclass(frozen=True, slots=True)
class ToolUseStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta:
    index: int
    partial_json: str


@dataclass(frozen=True, slots=True)
class BlockStop:
    index: int


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Last event of a complete stream: the final stop reason and total usage."""

    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = Usage()


StreamEvent = (StreamStart | TextDelta | ThinkingDelta | SignatureDelta | RedactedThinking | ToolUseStart
               | ToolInputDelta | BlockStop | StreamEnd)

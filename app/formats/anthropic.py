"""The Anthropic Messages codec: caller bodies in, provider bodies out, and back.

Same public API as ``app.formats.openai``. Decisions a caller should know:

* ``max_tokens`` is required from callers (as the real API requires it); for
  requests from OpenAI callers without one, ``build_request`` sends
  ``default_max_tokens``.
* ``metadata.user_id`` becomes ``ChatRequest.user``; the whole ``metadata``
  object is kept in ``ChatRequest.metadata`` and only sent back to Anthropic.
* Egress merges consecutive same-role messages, puts a user turn's tool
  results first, drops empty text blocks (Anthropic refuses them), rewrites
  tool ids to Anthropic's ``[A-Za-z0-9_-]`` alphabet (consistently on calls
  and results), and refuses a tool result that does not answer a call of the
  assistant turn just before it.
* Thinking and redacted thinking blocks, in answers and in a caller's
  history, are canonical blocks (with their signatures); server tool blocks
  in answers have no canonical place and are skipped.
* ``cache_control`` markers are accepted and not forwarded by this codec
  (same-dialect traffic is relayed with them; OpenAI caches automatically).
* Usage: canonical ``input_tokens`` includes cache reads and cache writes;
  rendering gives back ``input_tokens`` without either, and
  ``cache_read_input_tokens``, ``cache_creation_input_tokens`` (split by
  lifetime in ``cache_creation``) beside it.
* ``reasoning_effort`` from OpenAI callers becomes ``thinking`` (table in
  ``app/formats/reasoning.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.errors import GatewayError, InvalidRequest, UpstreamError
from app.formats.canonical import (
    AnswerBlock,
    Block,
    BlockStop,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    ImageBlock,
    Message,
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
    Tool,
    ToolChoice,
    ToolInputDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStart,
    Usage,
)
from app.formats.common import (
    INT32_MAX,
    as_int,
    as_list,
    as_model,
    as_obj,
    as_str,
    check_foreign_extras,
    dump_bytes,
    dumps,
    final_stop_reason,
    invalid,
    loads_event,
    loads_object,
    opt_bool,
    opt_int,
    opt_number,
    opt_obj,
    opt_str,
    provider_error_message,
    required,
    str_list,
    unreadable,
)
from app.formats.reasoning import effort_to_thinking
from app.formats.sse import SSEEvent, encode_event

FORMAT = "anthropic"
_WHO = "Anthropic-format provider"

_MAPPED = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "tools",
    "tool_choice", "stream", "metadata",
})
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_ID_ALPHABET = re.compile(r"[^A-Za-z0-9_-]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "refusal",
    "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens",
}

# OpenAI parameters this format can take without a change of meaning: defaults are dropped.
_OPENAI_NO_OP = {
    "frequency_penalty": lambda v: v == 0,
    "presence_penalty": lambda v: v == 0,
    "logprobs": lambda v: v is False,
    "top_logprobs": lambda v: v == 0,
    "logit_bias": lambda v: v == {},
    "response_format": lambda v: v == {"type": "text"},
    "modalities": lambda v: v == ["text"],
}
# Represented elsewhere (max_completion_tokens is max_tokens) or not about the answer.
_OPENAI_SKIP = ("max_completion_tokens", "store", "service_tier", "prompt_cache_key", "safety_identifier")


# --- Ingress ------------------------------------------------------------------


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """A caller's Messages body as a canonical request (400 naming the field if wrong)."""
    body = as_obj(body, "body")
    model = as_model(body.get("model"))
    raw_messages = as_list(required(body, "messages", "messages"), "messages", nonempty=True)
    max_tokens = as_int(required(body, "max_tokens", "max_tokens"), "max_tokens", minimum=1, maximum=INT32_MAX)
    _check_sampling(body)
    messages = _parse_messages(raw_messages)
    metadata = opt_obj(body, "metadata", "metadata")
    user = opt_str(metadata, "user_id", "metadata.user_id") if metadata is not None else None
    stops = body.get("stop_sequences")
    return ChatRequest(
        model=model,
        messages=messages,
        system=_parse_system(body.get("system")),
        max_tokens=max_tokens,
        temperature=opt_number(body, "temperature", "temperature", low=0, high=1),
        top_p=opt_number(body, "top_p", "top_p", low=0, high=1),
        stop=() if stops is None else str_list(stops, "stop_sequences"),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        stream=bool(opt_bool(body, "stream", "stream")),
        include_usage=False,
        user=user,
        metadata=metadata,
        extra={k: v for k, v in body.items() if k not in _MAPPED and v is not None},
        source_format="anthropic",
        dropped=_dropped_for_openai(body),
    )


def _dropped_for_openai(body: dict[str, Any]) -> tuple[str, ...]:
    """The paths of a valid body that its translation for an OpenAI-format provider leaves out: ``citations``
    on text blocks (Chat Completions takes none; the text stays), ``metadata`` keys other than ``user_id``
    (Anthropic defines none) and ``service_tier`` (a capacity choice)."""
    out: list[str] = []
    for i, m in enumerate(body["messages"]):
        content = m["content"]
        if isinstance(content, list):
            out.extend(f"messages[{i}].content[{j}].citations" for j, block in enumerate(content)
                       if block["type"] == "text" and block.get("citations"))
    metadata = body.get("metadata") or {}
    others = [key for key in metadata if key != "user_id" and metadata[key] is not None]
    # A key is the caller's text: named only when it is safe in a header, else the object is.
    out.extend(f"metadata.{key}" for key in others if _PLAIN_KEY.fullmatch(key))
    if any(not _PLAIN_KEY.fullmatch(key) for key in others):
        out.append("metadata")
    if body.get("service_tier") is not None:
        out.append("service_tier")
    return tuple(out)


def _check_sampling(body: dict[str, Any]) -> None:
    """The numeric parameters relayed as they are, within the bounds of Anthropic's API reference
    (https://docs.anthropic.com/en/api/messages): ``top_k`` >= 0, a thinking budget >= 1024 tokens."""
    opt_int(body, "top_k", "top_k", minimum=0, maximum=INT32_MAX)
    thinking = opt_obj(body, "thinking", "thinking")
    if thinking is not None:
        opt_int(thinking, "budget_tokens", "thinking.budget_tokens", minimum=1024, maximum=INT32_MAX)


def _parse_system(raw: Any) -> tuple[TextBlock, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (TextBlock(raw),) if raw else ()
    out = []
    for i, item in enumerate(as_list(raw, "system")):
        p = f"system[{i}]"
        item = as_obj(item, p)
        kind = as_str(required(item, "type", f"{p}.type"), f"{p}.type")
        if kind != "text":
            raise invalid(f"{p}.type", "'text'", kind)
        out.append(TextBlock(as_str(required(item, "text", f"{p}.text"), f"{p}.text")))
    return tuple(out)


def _parse_messages(raw: list[Any]) -> tuple[Message, ...]:
    out = []
    last = len(raw) - 1
    for i, item in enumerate(raw):
        p = f"messages[{i}]"
        m = as_obj(item, p)
        role = as_str(required(m, "role", f"{p}.role"), f"{p}.role")
        if role not in ("user", "assistant"):
            raise invalid(f"{p}.role", "'user' or 'assistant'", role)
        content = required(m, "content", f"{p}.content")
        if isinstance(content, str):
            blocks: tuple[Block, ...] = (TextBlock(content),) if content else ()
            empty = not content
        else:
            blocks = _parse_blocks(as_list(content, f"{p}.content"), role, f"{p}.content")
            empty = not content
        if empty and not (i == last and role == "assistant"):
            raise InvalidRequest(f"'{p}.content' must not be empty (only a final assistant message may be)",
                                 param=f"{p}.content")
        out.append(Message(role, blocks))  # type: ignore[arg-type]
    return tuple(out)


def _parse_blocks(items: list[Any], role: str, p: str) -> tuple[Block, ...]:
    out: list[Block] = []
    for j, item in enumerate(items):
        pb = f"{p}[{j}]"
        item = as_obj(item, pb)
        kind = as_str(required(item, "type", f"{pb}.type"), f"{pb}.type")
        if kind == "text":
            out.append(TextBlock(as_str(required(item, "text", f"{pb}.text"), f"{pb}.text")))
        elif kind == "image" and role == "user":
            out.append(_parse_image(item, pb))
        elif kind == "tool_use" and role == "assistant":
            out.append(ToolUseBlock(
                id=as_str(required(item, "id", f"{pb}.id"), f"{pb}.id", nonempty=True),
                name=as_str(required(item, "name", f"{pb}.name"), f"{pb}.name", nonempty=True),
                input=as_obj(required(item, "input", f"{pb}.input"), f"{pb}.input"),
            ))
        elif kind == "tool_result" and role == "user":
            out.append(_parse_tool_result(item, pb))
        elif kind == "document" and role == "user":
            out.append(_parse_document(item, pb))
        elif kind == "thinking" and role == "assistant":
            out.append(ThinkingBlock(as_str(required(item, "thinking", f"{pb}.thinking"), f"{pb}.thinking"),
                                     opt_str(item, "signature", f"{pb}.signature")))
        elif kind == "redacted_thinking" and role == "assistant":
            out.append(RedactedThinkingBlock(as_str(required(item, "data", f"{pb}.data"), f"{pb}.data")))
        elif kind in ("image", "document", "tool_use", "tool_result", *_THINKING_BLOCKS):
            raise InvalidRequest(f"'{pb}.type': '{kind}' blocks cannot be part of {role} messages", param=f"{pb}.type")
        else:
            expected = ("'text', 'image', 'document' or 'tool_result'" if role == "user"
                        else "'text', 'tool_use', 'thinking' or 'redacted_thinking'")
            raise invalid(f"{pb}.type", f"{expected} (other block types are not supported by the gateway)", kind)
    return tuple(out)


def _parse_image(item: dict[str, Any], pb: str) -> ImageBlock:
    source = as_obj(required(item, "source", f"{pb}.source"), f"{pb}.source")
    kind = as_str(required(source, "type", f"{pb}.source.type"), f"{pb}.source.type")
    if kind == "base64":
        return ImageBlock(
            media_type=as_str(required(source, "media_type", f"{pb}.source.media_type"),
                              f"{pb}.source.media_type", nonempty=True),
            data=as_str(required(source, "data", f"{pb}.source.data"), f"{pb}.source.data", nonempty=True),
        )
    if kind == "url":
        url = as_str(required(source, "url", f"{pb}.source.url"), f"{pb}.source.url", nonempty=True)
        if not url.startswith(("https://", "http://")):
            raise invalid(f"{pb}.source.url", "an http(s) URL")
        return ImageBlock(url=url)
    raise invalid(f"{pb}.source.type", "'base64' or 'url'", kind)


def _parse_document(item: dict[str, Any], pb: str) -> DocumentBlock:
    """A ``document`` block with a base64 PDF source (https://docs.anthropic.com/en/docs/build-with-claude/pdf-support).
    Text, content and URL sources have no counterpart in OpenAI's format and are not supported by the gateway."""
    source = as_obj(required(item, "source", f"{pb}.source"), f"{pb}.source")
    kind = as_str(required(source, "type", f"{pb}.source.type"), f"{pb}.source.type")
    if kind != "base64":
        raise invalid(f"{pb}.source.type", "'base64' (other document sources are not supported by the gateway)", kind)
    media_type = as_str(required(source, "media_type", f"{pb}.source.media_type"), f"{pb}.source.media_type")
    if media_type != "application/pdf":
        raise invalid(f"{pb}.source.media_type", "'application/pdf'", media_type)
    citations = opt_obj(item, "citations", f"{pb}.citations")
    return DocumentBlock(
        data=as_str(required(source, "data", f"{pb}.source.data"), f"{pb}.source.data", nonempty=True),
        media_type=media_type,
        title=opt_str(item, "title", f"{pb}.title"),
        context=opt_str(item, "context", f"{pb}.context"),
        citations=None if citations is None else bool(opt_bool(citations, "enabled", f"{pb}.citations.enabled")),
    )


def _parse_tool_result(item: dict[str, Any], pb: str) -> ToolResultBlock:
    call_id = as_str(required(item, "tool_use_id", f"{pb}.tool_use_id"), f"{pb}.tool_use_id", nonempty=True)
    raw = item.get("content")
    content: list[TextBlock | ImageBlock] = []
    if isinstance(raw, str):
        if raw:
            content.append(TextBlock(raw))
    elif raw is not None:
        for k, part in enumerate(as_list(raw, f"{pb}.content")):
            pp = f"{pb}.content[{k}]"
            part = as_obj(part, pp)
            kind = as_str(required(part, "type", f"{pp}.type"), f"{pp}.type")
            if kind == "text":
                content.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
            elif kind == "image":
                content.append(_parse_image(part, pp))
            else:
                raise invalid(f"{pp}.type", "'text' or 'image'", kind)
    return ToolResultBlock(tool_use_id=call_id, content=tuple(content),
                           is_error=bool(opt_bool(item, "is_error", f"{pb}.is_error")))


def _parse_tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    out = []
    for i, item in enumerate(as_list(raw, "tools")):
        p = f"tools[{i}]"
        item = as_obj(item, p)
        kind = opt_str(item, "type", f"{p}.type")
        if kind not in (None, "custom"):  # a server tool (web_search_20250305...): Anthropic runs it
            name = as_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True)
            out.append(Tool(name=name, description=None, parameters={}, server=item))
            continue
        out.append(Tool(
            name=as_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True),
            description=opt_str(item, "description", f"{p}.description"),
            parameters=as_obj(required(item, "input_schema", f"{p}.input_schema"), f"{p}.input_schema"),
            strict=opt_bool(item, "strict", f"{p}.strict"),
        ))
    return tuple(out)


def _parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    choice = as_obj(raw, "tool_choice")
    kind = as_str(required(choice, "type", "tool_choice.type"), "tool_choice.type")
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type", "'auto', 'any', 'tool' or 'none'", kind)
    name = None
    if kind == "tool":
        name = as_str(required(choice, "name", "tool_choice.name"), "tool_choice.name", nonempty=True)
    disable = bool(opt_bool(choice, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use"))
    return ToolChoice(kind, name=name, disable_parallel=disable)  # type: ignore[arg-type]


# --- Egress -------------------------------------------------------------------


def build_request(req: ChatRequest, upstream_model: str, *, default_max_tokens: int) -> dict[str, Any]:
    """The Messages body for the provider; 400 naming any field Anthropic cannot express."""
    own = req.source_format == FORMAT
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": req.max_tokens if req.max_tokens is not None else default_max_tokens,
        "messages": _render_messages(req.messages),
    }
    system = [b.text for b in req.system if b.text]
    if len(system) == 1:
        body["system"] = system[0]
    elif system:
        body["system"] = [{"type": "text", "text": t} for t in system]
    if req.temperature is not None:
        if req.temperature > 1:
            raise InvalidRequest(
                f"'temperature' {req.temperature:g} is above 1, the most Anthropic models accept", param="temperature")
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.tools:
        body["tools"] = [_render_tool(t, own) for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _render_tool_choice(req.tool_choice)
    elif req.tool_choice is not None and req.tool_choice.type in ("any", "tool"):
        raise InvalidRequest("'tool_choice' requires tools, and the request has none", param="tool_choice")
    if req.stream:
        body["stream"] = True
    metadata = dict(req.metadata) if own and req.metadata else {}
    if req.user is not None:
        metadata["user_id"] = req.user
    if metadata:
        body["metadata"] = metadata
    if own:
        for key, value in req.extra.items():
            body.setdefault(key, value)
    else:
        extra = dict(req.extra)
        effort = extra.pop("reasoning_effort", None)
        if effort is not None:
            thinking, body["max_tokens"] = effort_to_thinking(effort, body["max_tokens"])
            if thinking is not None:
                _check_thinking_compatible(req)
                body["thinking"] = thinking
        check_foreign_extras(extra, source=req.source_format, target="an Anthropic-format provider",
                             no_op=_OPENAI_NO_OP, skip=_OPENAI_SKIP)
    return body


def _check_thinking_compatible(req: ChatRequest) -> None:
    """What Anthropic refuses beside thinking (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
    #feature-compatibility), as a 400 naming the caller's field rather than the provider's."""
    if req.temperature is not None and req.temperature != 1:
        raise InvalidRequest("'temperature' cannot be set with 'reasoning_effort' for Anthropic models (thinking "
                             "requires the default temperature)", param="temperature")
    if req.top_p is not None and req.top_p < 0.95:
        raise InvalidRequest("'top_p' must be from 0.95 to 1 with 'reasoning_effort' for Anthropic models",
                             param="top_p")
    if req.tool_choice is not None and req.tool_choice.type in ("any", "tool"):
        raise InvalidRequest("'tool_choice' cannot force a tool call with 'reasoning_effort' for Anthropic models; "
                             "use 'auto' or 'none'", param="tool_choice")


def _tool_id(value: str) -> str:
    return _ID_ALPHABET.sub("_", value) or "_"


@dataclass(slots=True)
class _Turn:
    role: str
    blocks: list[tuple[Block, str, int]]  # block, its param path, its canonical message index


def _render_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[_Turn] = []
    for i, message in enumerate(messages):
        blocks = [(b, f"messages[{i}].content[{j}]", i) for j, b in enumerate(message.content)
                  if not (isinstance(b, TextBlock) and not b.text)]
        if not blocks:
            continue  # nothing to say; Anthropic refuses empty messages
        if turns and turns[-1].role == message.role:
            turns[-1].blocks.extend(blocks)
        else:
            turns.append(_Turn(message.role, blocks))
    if not turns:
        raise InvalidRequest("'messages' must hold at least one message with content for Anthropic models",
                             param="messages")
    out: list[dict[str, Any]] = []
    answerable: set[str] = set()  # tool ids called by the assistant turn just before
    for turn in turns:
        if turn.role == "assistant":
            out.append({"role": "assistant", "content": [_render_assistant_block(b, p) for b, p, _ in turn.blocks]})
            answerable = {_tool_id(b.id) for b, _, _ in turn.blocks if isinstance(b, ToolUseBlock)}
            continue
        ordered = sorted(turn.blocks, key=lambda item: not isinstance(item[0], ToolResultBlock))
        content = []
        for block, p, i in ordered:
            if isinstance(block, ToolResultBlock) and _tool_id(block.tool_use_id) not in answerable:
                raise InvalidRequest(
                    f"'messages[{i}]': the tool result for '{block.tool_use_id}' does not answer a tool call "
                    "of the assistant message just before it", param=f"messages[{i}]")
            content.append(_render_user_block(block, p))
        out.append({"role": "user", "content": content})
        answerable = set()
    return out


def _render_image(block: ImageBlock, p: str) -> dict[str, Any]:
    if block.data is not None:
        if not block.media_type:
            raise InvalidRequest(f"'{p}' is an inline image without a media type", param=p)
        source = {"type": "base64", "media_type": block.media_type, "data": block.data}
    elif block.url:
        source = {"type": "url", "url": block.url}
    else:
        raise InvalidRequest(f"'{p}' is an image with neither data nor url", param=p)
    return {"type": "image", "source": source}


def _render_document(block: DocumentBlock) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "document",
                           "source": {"type": "base64", "media_type": block.media_type, "data": block.data}}
    if block.title is not None:
        out["title"] = block.title
    if block.context is not None:
        out["context"] = block.context
    if block.citations is not None:
        out["citations"] = {"enabled": block.citations}
    return out


def _render_user_block(block: Block, p: str) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        return _render_image(block, p)
    if isinstance(block, DocumentBlock):
        return _render_document(block)
    if isinstance(block, ToolResultBlock):
        out: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(block.tool_use_id)}
        content = [
            {"type": "text", "text": item.text} if isinstance(item, TextBlock)
            else _render_image(item, f"{p}.content[{k}]")
            for k, item in enumerate(block.content)
            if not (isinstance(item, TextBlock) and not item.text)
        ]
        if content:
            out["content"] = content
        if block.is_error:
            out["is_error"] = True
        return out
    raise InvalidRequest(f"'{p}': a tool call cannot be part of a user message", param=p)


def _render_assistant_block(block: Block, p: str) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": _tool_id(block.id), "name": block.name, "input": block.input}
    if isinstance(block, (ThinkingBlock, RedactedThinkingBlock)):
        return _thinking_json(block)
    raise InvalidRequest(f"'{p}': Anthropic assistant messages can only hold text, thinking and tool calls", param=p)


def _thinking_json(block: ThinkingBlock | RedactedThinkingBlock) -> dict[str, Any]:
    if isinstance(block, RedactedThinkingBlock):
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature or ""}


def _render_tool(tool: Tool, own: bool) -> dict[str, Any]:
    if tool.server is not None:
        return dict(tool.server)
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    schema = tool.parameters
    out["input_schema"] = schema if "type" in schema else {"type": "object", **schema}
    if own and tool.strict is not None:
        out["strict"] = tool.strict  # OpenAI's strict needs an Anthropic beta: not forwarded from OpenAI callers
    return out


def _render_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {"type": choice.type}
    if choice.type == "tool":
        out["name"] = choice.name
    if choice.disable_parallel and choice.type != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --- Answers: JSON ------------------------------------------------------------


def _map_stop(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "end_turn")


# Anthropic usage counters (https://docs.anthropic.com/en/api/messages#response-usage): canonical field, key path.
# "input_tokens" here is Anthropic's uncached input; the canonical one adds the cache reads and writes.
_USAGE_KEYS = (
    ("input_tokens", ("input_tokens",)),
    ("cache_read_tokens", ("cache_read_input_tokens",)),
    ("cache_write_tokens", ("cache_creation_input_tokens",)),
    ("cache_write_1h_tokens", ("cache_creation", "ephemeral_1h_input_tokens")),
    ("output_tokens", ("output_tokens",)),
    ("reasoning_tokens", ("output_tokens_details", "thinking_tokens")),
    ("web_search_requests", ("server_tool_use", "web_search_requests")),
    ("web_fetch_requests", ("server_tool_use", "web_fetch_requests")),
)


class _Tokens:
    """Anthropic's usage counters, updated by each report (message_start, then the cumulative message_delta)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def update(self, raw: Any, p: str) -> None:
        usage = as_obj(raw, p)
        for name, path in _USAGE_KEYS:
            obj, where = usage, p
            for key in path[:-1]:
                obj = opt_obj(obj, key, f"{where}.{key}") or {}
                where = f"{where}.{key}"
            value = opt_int(obj, path[-1], f"{where}.{path[-1]}", minimum=0)
            if value is not None:
                self.counts[name] = value

    def usage(self) -> Usage:
        c = self.counts
        write = c.get("cache_write_tokens", 0)
        total = c.get("input_tokens", 0) + c.get("cache_read_tokens", 0) + write
        return Usage(**{**c, "input_tokens": total,
                        "cache_write_1h_tokens": min(c.get("cache_write_1h_tokens", 0), write)})


def _usage_json(usage: Usage) -> dict[str, Any]:
    """Canonical usage as Anthropic reports it: ``input_tokens`` without cache reads and writes (for an
    OpenAI answer: ``prompt_tokens`` - ``cached_tokens`` - cache writes, which OpenAI mostly does not report)."""
    one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    out: dict[str, Any] = {
        "input_tokens": usage.uncached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens - one_hour,
                           "ephemeral_1h_input_tokens": one_hour},
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    if usage.web_search_requests or usage.web_fetch_requests:
        out["server_tool_use"] = {"web_search_requests": usage.web_search_requests,
                                  "web_fetch_requests": usage.web_fetch_requests}
    return out


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A provider's Messages answer in canonical form; garbage is a 502, never a crash."""
    try:
        return _parse_response(body)
    except InvalidRequest as err:
        raise unreadable(_WHO, err) from None


def _parse_response(body: Any) -> ChatResponse:
    body = as_obj(body, "body")
    kind = opt_str(body, "type", "type")
    if kind == "error":
        raise UpstreamError(f"{_WHO} answered an error: {provider_error_message(502, dump_bytes(body))}")
    if kind not in (None, "message"):
        raise invalid("type", "'message'", kind)
    blocks: list[AnswerBlock] = []
    for j, item in enumerate(as_list(required(body, "content", "content"), "content")):
        p = f"content[{j}]"
        item = as_obj(item, p)
        block_kind = as_str(required(item, "type", f"{p}.type"), f"{p}.type")
        if block_kind == "text":
            text = as_str(required(item, "text", f"{p}.text"), f"{p}.text")
            if text:
                blocks.append(TextBlock(text))
        elif block_kind == "tool_use":
            blocks.append(ToolUseBlock(
                id=as_str(required(item, "id", f"{p}.id"), f"{p}.id", nonempty=True),
                name=as_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True),
                input=as_obj(item.get("input", {}), f"{p}.input"),
            ))
        elif block_kind == "thinking":
            blocks.append(ThinkingBlock(as_str(required(item, "thinking", f"{p}.thinking"), f"{p}.thinking"),
                                        opt_str(item, "signature", f"{p}.signature")))
        elif block_kind == "redacted_thinking":
            blocks.append(RedactedThinkingBlock(as_str(required(item, "data", f"{p}.data"), f"{p}.data")))
        # server tool blocks have no canonical place: skipped, as in streams
    tokens = _Tokens()
    if body.get("usage") is not None:
        tokens.update(body["usage"], "usage")
    stop = final_stop_reason(_map_stop(opt_str(body, "stop_reason", "stop_reason")),
                             any(isinstance(b, ToolUseBlock) for b in blocks))
    return ChatResponse(
        id=as_str(required(body, "id", "id"), "id"),
        model=opt_str(body, "model", "model") or "",
        content=tuple(blocks),
        stop_reason=stop,
        stop_sequence=opt_str(body, "stop_sequence", "stop_sequence") if stop == "stop_sequence" else None,
        usage=tokens.usage(),
    )


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """A canonical answer exactly as the Messages API returns one."""
    content: list[dict[str, Any]] = []
    for block in resp.content:
        if isinstance(block, TextBlock):
            content.append({"type": "text", "text": block.text})
        elif isinstance(block, (ThinkingBlock, RedactedThinkingBlock)):
            content.append(_thinking_json(block))
        else:
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    stop = resp.stop_reason or "end_turn"
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": resp.stop_sequence if stop == "stop_sequence" else None,
        "usage": _usage_json(resp.usage),
    }


def error_message(status: int, body: bytes) -> str:
    """The provider's own words from an Anthropic-format error body (short, keys masked; never raises)."""
    return provider_error_message(status, body)


# --- Answers: streams ---------------------------------------------------------


@dataclass(slots=True)
class _Block:
    kind: str  # "text", "tool_use", "thinking", "redacted_thinking" or "skip"
    index: int | None = None  # canonical index once opened
    arguments: list[str] = field(default_factory=list)
    closed: bool = False


class StreamDecoder:
    """An Anthropic-format SSE answer as canonical stream events.

    Upstream block indexes are renumbered: skipped blocks (thinking, server
    tools) take no canonical index, and a text block gets its index only
    when it has text, so canonical indexes stay 0, 1, 2... in emission order.
    """

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._blocks: dict[int, _Block] = {}
        self._open: _Block | None = None
        self._next_index = 0
        self._tokens = _Tokens()
        self._stop: StopReason | None = None
        self._stop_sequence: str | None = None
        self._tool_calls: list[_Block] = []

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        if self._done or not ev.data.strip():
            return []
        data = loads_event(ev.data, _WHO)
        kind = data.get("type") or ev.event
        if kind == "error" or ev.event == "error":
            raise UpstreamError(f"{_WHO} failed mid-stream: {provider_error_message(502, dump_bytes(data))}")
        try:
            return self._event(kind, data)
        except InvalidRequest as err:
            raise unreadable(_WHO, err) from None

    def finish(self) -> list[StreamEvent]:
        """At EOF: nothing if ``message_stop`` came, else the stream was cut."""
        if not self._done:
            raise UpstreamError(f"{_WHO} stream cut before its end (message_stop never came)")
        return []

    def _event(self, kind: Any, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "message_start":
            if self._started:
                raise UpstreamError(f"{_WHO} sent message_start twice")
            message = as_obj(required(data, "message", "message"), "message")
            if message.get("usage") is not None:
                self._tokens.update(message["usage"], "message.usage")
            self._started = True
            return [StreamStart(id=as_str(required(message, "id", "message.id"), "message.id"),
                                model=opt_str(message, "model", "message.model") or "",
                                usage=self._tokens.usage())]
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta",
                        "message_stop"):
            return []  # ping, and event types added after this was written
        if not self._started:
            raise UpstreamError(f"{_WHO} sent {kind} before message_start")
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            block = self._block(data)
            return self._close() if block is self._open else []
        if kind == "message_delta":
            delta = opt_obj(data, "delta", "delta") or {}
            reason = opt_str(delta, "stop_reason", "delta.stop_reason")
            if reason is not None:
                self._stop = _map_stop(reason)
                self._stop_sequence = opt_str(delta, "stop_sequence", "delta.stop_sequence")
            if data.get("usage") is not None:
                self._tokens.update(data["usage"], "usage")
            return []
        return self._end()

    def _block(self, data: dict[str, Any]) -> _Block:
        index = as_int(required(data, "index", "index"), "index", minimum=0)
        block = self._blocks.get(index)
        if block is None:
            raise UpstreamError(f"{_WHO} streamed into content block {index} before starting it")
        return block

    def _close(self) -> list[StreamEvent]:
        block, self._open = self._open, None
        if block is None or block.index is None:
            return []
        block.closed = True
        return [BlockStop(block.index)]

    def _open_block(self, block: _Block) -> list[StreamEvent]:
        out = self._close()
        block.index = self._next_index
        self._next_index += 1
        self._open = block
        return out

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        index = as_int(required(data, "index", "index"), "index", minimum=0)
        if index in self._blocks:
            raise UpstreamError(f"{_WHO} started content block {index} twice")
        start = as_obj(required(data, "content_block", "content_block"), "content_block")
        kind = as_str(required(start, "type", "content_block.type"), "content_block.type")
        out: list[StreamEvent] = []
        if kind == "text":
            block = self._blocks[index] = _Block("text")
            text = opt_str(start, "text", "content_block.text")
            if text:
                out.extend(self._text(block, text))
        elif kind == "tool_use":
            block = self._blocks[index] = _Block("tool_use")
            call_id = as_str(required(start, "id", "content_block.id"), "content_block.id", nonempty=True)
            name = as_str(required(start, "name", "content_block.name"), "content_block.name", nonempty=True)
            out.extend(self._open_block(block))
            assert block.index is not None
            self._tool_calls.append(block)
            out.append(ToolUseStart(block.index, call_id, name))
            initial = opt_obj(start, "input", "content_block.input")
            if initial:
                text = dumps(initial)
                block.arguments.append(text)
                out.append(ToolInputDelta(block.index, text))
        elif kind == "thinking":
            block = self._blocks[index] = _Block("thinking")
            out.extend(self._open_block(block))
            assert block.index is not None
            out.append(ThinkingDelta(block.index, opt_str(start, "thinking", "content_block.thinking") or ""))
        elif kind == "redacted_thinking":
            block = self._blocks[index] = _Block("redacted_thinking")
            out.extend(self._open_block(block))
            assert block.index is not None
            out.append(RedactedThinking(block.index, as_str(required(start, "data", "content_block.data"),
                                                            "content_block.data")))
        else:
            self._blocks[index] = _Block("skip")  # server tools: no canonical place
        return out

    def _text(self, block: _Block, text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if block.index is None:
            out.extend(self._open_block(block))
        elif block.closed:
            raise UpstreamError(f"{_WHO} streamed text into a closed content block")
        assert block.index is not None
        out.append(TextDelta(block.index, text))
        return out

    def _block_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = self._block(data)
        delta = as_obj(required(data, "delta", "delta"), "delta")
        kind = as_str(required(delta, "type", "delta.type"), "delta.type")
        if block.kind == "skip":
            return []
        if kind == "text_delta":
            if block.kind != "text":
                raise UpstreamError(f"{_WHO} streamed text into a {block.kind} block")
            text = as_str(required(delta, "text", "delta.text"), "delta.text")
            return self._text(block, text) if text else []
        if kind in ("thinking_delta", "signature_delta"):
            if block.kind != "thinking" or block.closed:
                raise UpstreamError(f"{_WHO} streamed {kind} into a {block.kind} block")
            assert block.index is not None
            if kind == "thinking_delta":
                text = as_str(required(delta, "thinking", "delta.thinking"), "delta.thinking")
                return [ThinkingDelta(block.index, text)] if text else []
            return [SignatureDelta(block.index, as_str(required(delta, "signature", "delta.signature"),
                                                       "delta.signature"))]
        if kind == "input_json_delta":
            if block.kind != "tool_use":
                raise UpstreamError(f"{_WHO} streamed tool input into a {block.kind} block")
            if block.closed:
                raise UpstreamError(f"{_WHO} streamed tool input into a closed content block")
            partial = as_str(required(delta, "partial_json", "delta.partial_json"), "delta.partial_json")
            if not partial:
                return []
            assert block.index is not None
            block.arguments.append(partial)
            return [ToolInputDelta(block.index, partial)]
        return []  # citations and other annotations have no canonical place

    def _end(self) -> list[StreamEvent]:
        out = self._close()
        stop = final_stop_reason(self._stop, bool(self._tool_calls))
        if stop != "max_tokens":
            for block in self._tool_calls:
                if loads_object("".join(block.arguments)) is None:
                    raise UpstreamError(f"{_WHO} streamed tool input that is not a JSON object")
        self._done = True
        out.append(StreamEnd(stop_reason=stop, stop_sequence=self._stop_sequence if stop == "stop_sequence" else None,
                             usage=self._tokens.usage()))
        return out


class StreamEncoder:
    """Canonical stream events as the Messages SSE the Anthropic SDK expects (named events)."""

    def __init__(self, include_usage: bool = True) -> None:
        self.include_usage = include_usage  # Anthropic streams always carry usage; kept for one codec API
        self._started = False
        self._open: int | None = None

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, StreamStart):
            self._started = True
            usage = _usage_json(ev.usage)
            return _event("message_start", {"type": "message_start", "message": {
                "id": ev.id, "type": "message", "role": "assistant", "model": ev.model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": usage}})
        if not self._started:
            raise ValueError("StreamStart must be the first event of a stream")
        if isinstance(ev, TextDelta):
            return self._into(ev.index, {"type": "text", "text": ""},
                              {"type": "text_delta", "text": ev.text} if ev.text else None)
        if isinstance(ev, ThinkingDelta):
            return self._into(ev.index, {"type": "thinking", "thinking": "", "signature": ""},
                              {"type": "thinking_delta", "thinking": ev.thinking} if ev.thinking else None)
        if isinstance(ev, SignatureDelta):
            return _event("content_block_delta", {"type": "content_block_delta", "index": ev.index,
                                                  "delta": {"type": "signature_delta", "signature": ev.signature}})
        if isinstance(ev, RedactedThinking):
            out = self._stop_open() + _event("content_block_start", {
                "type": "content_block_start", "index": ev.index,
                "content_block": {"type": "redacted_thinking", "data": ev.data}})
            self._open = ev.index
            return out
        if isinstance(ev, ToolUseStart):
            out = self._stop_open() + _event("content_block_start", {
                "type": "content_block_start", "index": ev.index,
                "content_block": {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}})
            self._open = ev.index
            return out
        if isinstance(ev, ToolInputDelta):
            if not ev.partial_json:
                return b""
            delta = {"type": "input_json_delta", "partial_json": ev.partial_json}
            return _event("content_block_delta", {"type": "content_block_delta", "index": ev.index, "delta": delta})
        if isinstance(ev, BlockStop):
            return self._stop_open() if self._open == ev.index else b""
        if isinstance(ev, StreamEnd):
            stop = ev.stop_reason or "end_turn"
            usage = _usage_json(ev.usage)
            usage.pop("cache_creation")  # message_delta's usage has no TTL split (MessageDeltaUsage)
            return self._stop_open() + _event("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": ev.stop_sequence if stop == "stop_sequence" else None},
                "usage": usage,
            }) + _event("message_stop", {"type": "message_stop"})
        return b""

    def error(self, err: GatewayError) -> bytes:
        """The ``event: error`` the Anthropic SDK raises on; the stream ends after it."""
        return _event("error", err.anthropic_body())

    def _into(self, index: int, block: dict[str, Any], delta: dict[str, Any] | None) -> bytes:
        """A delta of the block at ``index``, started (as ``block``) if it is not the open one."""
        out = b""
        if self._open != index:
            out = self._stop_open() + _event("content_block_start", {
                "type": "content_block_start", "index": index, "content_block": block})
            self._open = index
        if delta is not None:
            out += _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        return out

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_event(dump_bytes(payload), name)

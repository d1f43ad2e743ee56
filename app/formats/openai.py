"""The OpenAI Chat Completions codec: caller bodies in, provider bodies out, and back.

Ingress (``parse_request``) validates strictly and names the failing field;
egress (``build_request``) refuses what OpenAI cannot express rather than
dropping it. The same module reads OpenAI answers (JSON and SSE) into
canonical form and writes canonical answers as OpenAI would.

Decisions a caller should know:

* ``max_completion_tokens`` from a caller is kept in ``extra`` (its value is
  also ``max_tokens``), so the same field name goes upstream. Requests from
  Anthropic callers use ``max_tokens``, or ``max_completion_tokens`` for the
  reasoning models (``o1``/``o3``/``o4``/``gpt-5``) that refuse ``max_tokens``.
  ``default_max_tokens`` is not applied: OpenAI has no required limit.
* ``parallel_tool_calls`` becomes ``ToolChoice.disable_parallel``.
* System and developer messages, wherever they stand, become ``system``.
* A tool result marked ``is_error`` has no OpenAI field: its text is
  prefixed with ``Error: `` so the model still learns the call failed.
* Thinking in answers is rendered as ``reasoning_content`` (the extension
  field vLLM/DeepSeek clients read); redacted thinking and signatures have no
  OpenAI field and are not rendered. Thinking in a history is not sent.
  A provider's own ``reasoning_content`` (vLLM, DeepSeek) is read as a
  thinking block without a signature, in JSON and in streams.
* Anthropic ``thinking`` and ``output_config.effort`` become ``reasoning_effort``
  for reasoning models (``app/formats/reasoning.py``), and are a 400 for others; server tools are a
  400; a base64 PDF ``document`` becomes a ``file`` part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.errors import GatewayError, InvalidRequest, UpstreamError
from app.formats.canonical import (
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
    INT64_MAX,
    INT64_MIN,
    as_bool,
    as_list,
    as_model,
    as_number,
    as_obj,
    as_str,
    check_foreign_extras,
    dump_bytes,
    dumps,
    final_stop_reason,
    invalid,
    loads_event,
    loads_object,
    new_id,
    now,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_obj,
    opt_str,
    provider_error_message,
    required,
    str_list,
    unreadable,
)
from app.formats.reasoning import is_reasoning_model, output_config_effort, thinking_to_effort
from app.formats.sse import SSEEvent, encode_event

FORMAT = "openai"
_WHO = "OpenAI-format provider"

# Body fields parse_request maps onto canonical fields; every other non-null field goes to ``extra``.
_MAPPED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "parallel_tool_calls", "stream", "stream_options", "n", "user", "metadata",
})
_DEPRECATED = {
    "functions": "'functions' is deprecated and not supported; use 'tools'",
    "function_call": "'function_call' is deprecated and not supported; use 'tool_choice'",
}
_DATA_URL = re.compile(r"data:(?P<type>[^;,]+)(?:;[^;,]*)*?;base64,(?P<data>.*)", re.DOTALL)
_DETAILS = ("auto", "low", "high")

_FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic parameters this format can take without a change of meaning.
_ANTHROPIC_NO_OP = {"thinking": lambda v: isinstance(v, dict) and v.get("type") == "disabled"}
_ANTHROPIC_SKIP = ("service_tier",)  # capacity choice, not the answer


# --- Ingress ------------------------------------------------------------------


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """A caller's Chat Completions body as a canonical request (400 naming the field if wrong)."""
    body = as_obj(body, "body")
    model = as_model(body.get("model"))
    raw_messages = as_list(required(body, "messages", "messages"), "messages", nonempty=True)
    for key, message in _DEPRECATED.items():
        if body.get(key) is not None:
            raise InvalidRequest(message, param=key)
    n = opt_int(body, "n", "n", maximum=INT32_MAX)
    if n is not None and n != 1:
        raise InvalidRequest("The gateway returns exactly one choice: 'n' must be 1", param="n")
    system, messages = _parse_messages(raw_messages)

    extra: dict[str, Any] = {}
    max_tokens = opt_int(body, "max_tokens", "max_tokens", minimum=1, maximum=INT32_MAX)
    completion_tokens = opt_int(body, "max_completion_tokens", "max_completion_tokens", minimum=1, maximum=INT32_MAX)
    _check_sampling(body)
    if completion_tokens is not None:
        extra["max_completion_tokens"] = completion_tokens  # remembered: the same name goes upstream
        max_tokens = completion_tokens
    stream = bool(opt_bool(body, "stream", "stream"))
    options = opt_obj(body, "stream_options", "stream_options") or {}
    wants_usage = bool(opt_bool(options, "include_usage", "stream_options.include_usage"))
    include_usage = stream and wants_usage  # only a stream has a usage chunk to include
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    else:
        stops = str_list(stop, "stop")
    metadata = opt_obj(body, "metadata", "metadata")
    for key, value in body.items():
        if key not in _MAPPED and value is not None:
            extra[key] = value
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        max_tokens=max_tokens,
        temperature=opt_number(body, "temperature", "temperature", low=0, high=2),
        top_p=opt_number(body, "top_p", "top_p", low=0, high=1),
        stop=stops,
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")),
        stream=stream,
        include_usage=include_usage,
        user=opt_str(body, "user", "user"),
        metadata=metadata,
        extra=extra,
        source_format="openai",
        dropped=_dropped_for_anthropic(body),
    )


# Top-level fields an Anthropic-format provider has no place for and that do not change the answer.
_BOOKKEEPING = ("store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier")


def _dropped_for_anthropic(body: dict[str, Any]) -> tuple[str, ...]:
    """The paths of a valid body that its translation for an Anthropic-format provider leaves out: a message's
    ``name``, an image's ``detail`` other than ``auto``, a tool's ``strict: true`` (Anthropic's needs a beta
    header), and OpenAI's bookkeeping fields (``_BOOKKEEPING``); defaults that change nothing are not listed."""
    out: list[str] = []
    for i, m in enumerate(body["messages"]):
        if m.get("name") is not None:
            out.append(f"messages[{i}].name")
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, list):
            for j, part in enumerate(content):
                if part.get("type") == "image_url" and part["image_url"].get("detail") not in (None, "auto"):
                    out.append(f"messages[{i}].content[{j}].image_url.detail")
    for i, tool in enumerate(body.get("tools") or ()):
        if tool["function"].get("strict") is True:
            out.append(f"tools[{i}].function.strict")
    out.extend(key for key in _BOOKKEEPING if body.get(key) not in (None, {}))
    return tuple(out)


_SAMPLING_KEYS = frozenset({"seed", "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty",
                            "logit_bias"})


def _check_sampling(body: dict[str, Any]) -> None:
    """The numeric parameters relayed as they are, within the bounds of OpenAI's API reference
    (https://platform.openai.com/docs/api-reference/chat/create).

    Most bodies set none of them: one C call says so (six helper calls cost a miss ~6,000 instructions).
    """
    if _SAMPLING_KEYS.isdisjoint(body):
        return
    opt_int(body, "seed", "seed", minimum=INT64_MIN)
    opt_bool(body, "logprobs", "logprobs")
    opt_int(body, "top_logprobs", "top_logprobs", minimum=0, maximum=20)
    for key in ("frequency_penalty", "presence_penalty"):
        opt_number(body, key, key, low=-2, high=2)
    bias = opt_obj(body, "logit_bias", "logit_bias") or {}
    for token, value in bias.items():
        as_number(value, f"logit_bias.{token}", low=-100, high=100)


def _parse_messages(raw: list[Any]) -> tuple[tuple[TextBlock, ...], tuple[Message, ...]]:
    system: list[TextBlock] = []
    out: list[Message] = []
    tool_turn_open = False  # out[-1] is a user turn begun by tool results that a user text may join
    for i, item in enumerate(raw):
        p = f"messages[{i}]"
        m = as_obj(item, p)
        role = as_str(required(m, "role", f"{p}.role"), f"{p}.role")
        if m.get("function_call") is not None:
            raise InvalidRequest(f"'{p}.function_call' is deprecated and not supported; use 'tool_calls'",
                                 param=f"{p}.function_call")
        if role in ("system", "developer"):
            system.extend(_text_content(required(m, "content", f"{p}.content"), f"{p}.content"))
        elif role == "user":
            blocks = _user_content(required(m, "content", f"{p}.content"), f"{p}.content")
            if tool_turn_open:
                out[-1] = Message("user", out[-1].content + blocks)
            else:
                out.append(Message("user", blocks))
            tool_turn_open = False
        elif role == "assistant":
            out.append(Message("assistant", _assistant_content(m, p)))
            tool_turn_open = False
        elif role == "tool":
            result = _tool_result(m, p)
            if tool_turn_open:
                out[-1] = Message("user", (*out[-1].content, result))
            else:
                out.append(Message("user", (result,)))
                tool_turn_open = True
        elif role == "function":
            raise InvalidRequest(f"Role 'function' in '{p}.role' is deprecated and not supported; use 'tool'",
                                 param=f"{p}.role")
        else:
            raise invalid(f"{p}.role", "one of 'system', 'developer', 'user', 'assistant', 'tool'", role)
    return tuple(system), tuple(out)


def _text_content(content: Any, p: str) -> tuple[TextBlock, ...]:
    """A string, or an array of text parts (system, developer and tool messages)."""
    if isinstance(content, str):
        return (TextBlock(content),) if content else ()
    parts = as_list(content, p)
    out = []
    for j, part in enumerate(parts):
        pp = f"{p}[{j}]"
        part = as_obj(part, pp)
        kind = as_str(required(part, "type", f"{pp}.type"), f"{pp}.type")
        if kind != "text":
            raise invalid(f"{pp}.type", "'text' (only text parts are allowed here)", kind)
        out.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
    return tuple(out)


def _user_content(content: Any, p: str) -> tuple[Block, ...]:
    if isinstance(content, str):
        return (TextBlock(content),)
    parts = as_list(content, p, nonempty=True)
    out: list[Block] = []
    for j, part in enumerate(parts):
        pp = f"{p}[{j}]"
        part = as_obj(part, pp)
        kind = as_str(required(part, "type", f"{pp}.type"), f"{pp}.type")
        if kind == "text":
            out.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
        elif kind == "image_url":
            out.append(_image(part, pp))
        elif kind == "file":
            out.append(_file(part, pp))
        elif kind == "input_audio":
            raise InvalidRequest(f"'{pp}.type': content parts of type '{kind}' are not supported by the gateway",
                                 param=f"{pp}.type")
        else:
            raise invalid(f"{pp}.type", "'text', 'image_url' or 'file'", kind)
    return tuple(out)


def _file(part: dict[str, Any], pp: str) -> DocumentBlock:
    """A ``file`` part with inline ``file_data`` (a base64 data URL of a PDF, as OpenAI's PDF guide sends it:
    https://platform.openai.com/docs/guides/pdf-files). Uploaded files (``file_id``) live at OpenAI only."""
    spec = as_obj(required(part, "file", f"{pp}.file"), f"{pp}.file")
    if spec.get("file_id") is not None:
        raise InvalidRequest(f"'{pp}.file.file_id': uploaded files are not supported by the gateway; "
                             "send the file inline as 'file_data'", param=f"{pp}.file.file_id")
    data = as_str(required(spec, "file_data", f"{pp}.file.file_data"), f"{pp}.file.file_data", nonempty=True)
    match = _DATA_URL.fullmatch(data)
    if match is None or not match["data"]:
        raise invalid(f"{pp}.file.file_data", "a base64 data URL (data:application/pdf;base64,<data>)")
    media_type = match["type"].strip().lower()
    if media_type != "application/pdf":
        raise invalid(f"{pp}.file.file_data", "a PDF (data:application/pdf;base64,...)", media_type)
    title = opt_str(spec, "filename", f"{pp}.file.filename")
    return DocumentBlock(data=match["data"], media_type=media_type, title=title)


def _image(part: dict[str, Any], pp: str) -> ImageBlock:
    spec = as_obj(required(part, "image_url", f"{pp}.image_url"), f"{pp}.image_url")
    url = as_str(required(spec, "url", f"{pp}.image_url.url"), f"{pp}.image_url.url", nonempty=True)
    detail = opt_str(spec, "detail", f"{pp}.image_url.detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(f"{pp}.image_url.detail", "one of 'auto', 'low', 'high'", detail)
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or not match["data"]:
            raise invalid(f"{pp}.image_url.url", "a base64 data URL (data:<media type>;base64,<data>)")
        return ImageBlock(media_type=match["type"].strip().lower(), data=match["data"], detail=detail)
    if not url.startswith(("https://", "http://")):
        raise invalid(f"{pp}.image_url.url", "an http(s) URL or a base64 data URL")
    return ImageBlock(url=url, detail=detail)


def _assistant_content(m: dict[str, Any], p: str) -> tuple[Block, ...]:
    blocks: list[Block] = []
    content = m.get("content")
    if isinstance(content, str):
        blocks.append(TextBlock(content))
    elif content is not None:
        for j, part in enumerate(as_list(content, f"{p}.content")):
            pp = f"{p}.content[{j}]"
            part = as_obj(part, pp)
            kind = as_str(required(part, "type", f"{pp}.type"), f"{pp}.type")
            if kind == "text":
                blocks.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
            elif kind == "refusal":
                blocks.append(TextBlock(as_str(required(part, "refusal", f"{pp}.refusal"), f"{pp}.refusal")))
            else:
                raise invalid(f"{pp}.type", "'text' or 'refusal'", kind)
    refusal = opt_str(m, "refusal", f"{p}.refusal")
    if refusal:
        blocks.append(TextBlock(refusal))
    calls = opt_list(m, "tool_calls", f"{p}.tool_calls") or []
    for k, call in enumerate(calls):
        pc = f"{p}.tool_calls[{k}]"
        call = as_obj(call, pc)
        kind = as_str(required(call, "type", f"{pc}.type"), f"{pc}.type")
        if kind != "function":
            raise invalid(f"{pc}.type", "'function'", kind)
        fn = as_obj(required(call, "function", f"{pc}.function"), f"{pc}.function")
        arguments = as_str(required(fn, "arguments", f"{pc}.function.arguments"), f"{pc}.function.arguments")
        parsed = loads_object(arguments)
        if parsed is None:
            raise InvalidRequest(f"'{pc}.function.arguments' must be a JSON object encoded as a string",
                                 param=f"{pc}.function.arguments")
        blocks.append(ToolUseBlock(
            id=as_str(required(call, "id", f"{pc}.id"), f"{pc}.id", nonempty=True),
            name=as_str(required(fn, "name", f"{pc}.function.name"), f"{pc}.function.name", nonempty=True),
            input=parsed,
        ))
    if content is None and not calls and not refusal:
        raise InvalidRequest(f"'{p}.content' is required unless 'tool_calls' is set", param=f"{p}.content")
    return tuple(blocks)


def _tool_result(m: dict[str, Any], p: str) -> ToolResultBlock:
    call_id = as_str(required(m, "tool_call_id", f"{p}.tool_call_id"), f"{p}.tool_call_id", nonempty=True)
    content = _text_content(required(m, "content", f"{p}.content"), f"{p}.content")
    return ToolResultBlock(tool_use_id=call_id, content=content)


def _parse_tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    tools = []
    for i, item in enumerate(as_list(raw, "tools")):
        p = f"tools[{i}]"
        item = as_obj(item, p)
        kind = as_str(required(item, "type", f"{p}.type"), f"{p}.type")
        if kind != "function":
            raise invalid(f"{p}.type", "'function' (other tool types are not supported)", kind)
        fn = as_obj(required(item, "function", f"{p}.function"), f"{p}.function")
        parameters = opt_obj(fn, "parameters", f"{p}.function.parameters")
        tools.append(Tool(
            name=as_str(required(fn, "name", f"{p}.function.name"), f"{p}.function.name", nonempty=True),
            description=opt_str(fn, "description", f"{p}.function.description"),
            parameters=parameters if parameters is not None else {"type": "object", "properties": {}},
            strict=opt_bool(fn, "strict", f"{p}.function.strict"),
        ))
    return tuple(tools)


def _parse_tool_choice(raw: Any, parallel: Any) -> ToolChoice | None:
    disable = parallel is not None and not as_bool(parallel, "parallel_tool_calls")
    if raw is None:
        return ToolChoice("auto", disable_parallel=True) if disable else None
    if isinstance(raw, str):
        kinds = {"auto": "auto", "none": "none", "required": "any"}
        if raw not in kinds:
            raise invalid("tool_choice", "'auto', 'none', 'required' or a function object", raw)
        return ToolChoice(kinds[raw], disable_parallel=disable)  # type: ignore[arg-type]
    choice = as_obj(raw, "tool_choice")
    kind = as_str(required(choice, "type", "tool_choice.type"), "tool_choice.type")
    if kind != "function":
        raise invalid("tool_choice.type", "'function'", kind)
    fn = as_obj(required(choice, "function", "tool_choice.function"), "tool_choice.function")
    name = as_str(required(fn, "name", "tool_choice.function.name"), "tool_choice.function.name", nonempty=True)
    return ToolChoice("tool", name=name, disable_parallel=disable)


# --- Egress -------------------------------------------------------------------


def build_request(req: ChatRequest, upstream_model: str, *, default_max_tokens: int) -> dict[str, Any]:
    """The Chat Completions body for the provider; 400 naming any field OpenAI cannot express.

    ``default_max_tokens`` is accepted for a uniform codec API and not used:
    an OpenAI request without a limit means "up to the model's maximum".
    """
    del default_max_tokens
    own = req.source_format == FORMAT
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": _text_payload(req.system)})
    for i, message in enumerate(req.messages):
        messages.extend(_render_message(message, f"messages[{i}]"))
    body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if req.max_tokens is not None:
        if own:
            use_new = "max_completion_tokens" in req.extra
        else:
            use_new = is_reasoning_model(upstream_model)  # they refuse max_tokens
        body["max_completion_tokens" if use_new else "max_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.tools:
        body["tools"] = [_render_tool(t) for t in req.tools]
        choice = req.tool_choice
        if choice is not None:
            body["tool_choice"] = _render_tool_choice(choice)
            if choice.disable_parallel and choice.type != "none":
                body["parallel_tool_calls"] = False
    elif req.tool_choice is not None and req.tool_choice.type in ("any", "tool"):
        raise InvalidRequest("'tool_choice' requires tools, and the request has none", param="tool_choice")
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # the gateway counts tokens from it
    if req.user is not None:
        body["user"] = req.user
    if own:
        if req.metadata is not None:
            body["metadata"] = req.metadata
        for key, value in req.extra.items():
            if key != "max_completion_tokens":
                body.setdefault(key, value)
    else:
        extra = dict(req.extra)
        thinking = extra.pop("thinking", None)
        if thinking is not None:
            effort = thinking_to_effort(thinking, upstream_model)
            if effort is not None:
                body["reasoning_effort"] = effort
        output_config = extra.pop("output_config", None)
        if output_config is not None:
            effort = output_config_effort(output_config, upstream_model)
            if effort is not None:
                body["reasoning_effort"] = effort  # the caller's own word wins over a budget's range
        for i, tool in enumerate(req.tools):
            if tool.server is not None:
                raise InvalidRequest(
                    f"'tools[{i}]': server tool '{tool.server.get('type')}' runs at Anthropic only and cannot be "
                    "served by an OpenAI-format provider", param=f"tools[{i}]")
        check_foreign_extras(extra, source=req.source_format, target="an OpenAI-format provider",
                             no_op=_ANTHROPIC_NO_OP, skip=_ANTHROPIC_SKIP)
    return body


def _text_payload(blocks: tuple[TextBlock, ...]) -> str | list[dict[str, Any]]:
    """One text as a plain string (what every OpenAI-compatible server reads), several as parts."""
    if len(blocks) == 1:
        return blocks[0].text
    return [{"type": "text", "text": b.text} for b in blocks]


def _image_part(block: ImageBlock, p: str) -> dict[str, Any]:
    if block.data is not None:
        if not block.media_type:
            raise InvalidRequest(f"'{p}' is an inline image without a media type", param=p)
        url = f"data:{block.media_type};base64,{block.data}"
    elif block.url:
        url = block.url
    else:
        raise InvalidRequest(f"'{p}' is an image with neither data nor url", param=p)
    spec: dict[str, Any] = {"url": url}
    if block.detail is not None:
        spec["detail"] = block.detail
    return {"type": "image_url", "image_url": spec}


def _file_part(block: DocumentBlock, p: str) -> dict[str, Any]:
    """A base64 PDF as a ``file`` part: OpenAI reads a PDF's text and page images as Anthropic does, so
    the model sees the same document. Anthropic-only ``context`` and ``citations`` are a 400."""
    if block.context is not None:
        raise InvalidRequest(f"'{p}.context': document context cannot be expressed to an OpenAI-format provider",
                             param=f"{p}.context")
    if block.citations:
        raise InvalidRequest(f"'{p}.citations': citations cannot be expressed to an OpenAI-format provider",
                             param=f"{p}.citations")
    spec = {"filename": block.title or "document.pdf", "file_data": f"data:{block.media_type};base64,{block.data}"}
    return {"type": "file", "file": spec}


def _render_message(message: Message, p: str) -> list[dict[str, Any]]:
    if message.role == "assistant":
        return [_render_assistant(message, p)]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        pb = f"{p}.content[{j}]"
        if isinstance(block, ToolResultBlock):
            tool_messages.append(_render_tool_result(block, pb))
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block, pb))
        elif isinstance(block, DocumentBlock):
            parts.append(_file_part(block, pb))
        else:
            raise InvalidRequest(f"'{pb}': a tool call cannot be part of a user message", param=pb)
    out = tool_messages  # tool results first: they answer the assistant turn just before
    if parts:
        if len(parts) == 1 and parts[0]["type"] == "text":
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})
    elif not tool_messages:
        out.append({"role": "user", "content": ""})
    return out


def _render_tool_result(block: ToolResultBlock, p: str) -> dict[str, Any]:
    texts: list[str] = []
    for k, item in enumerate(block.content):
        if not isinstance(item, TextBlock):
            raise InvalidRequest(
                f"'{p}.content[{k}]': OpenAI tool results can only hold text, not images", param=f"{p}.content[{k}]")
        texts.append(item.text)
    if block.is_error:
        texts = [f"Error: {texts[0]}" if texts else "Error", *texts[1:]]
    content: str | list[dict[str, Any]]
    if len(texts) == 1:
        content = texts[0]
    elif not texts:
        content = ""
    else:
        content = [{"type": "text", "text": t} for t in texts]
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}


def _render_assistant(message: Message, p: str) -> dict[str, Any]:
    texts: list[TextBlock] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        pb = f"{p}.content[{j}]"
        if isinstance(block, TextBlock):
            texts.append(block)
        elif isinstance(block, (ThinkingBlock, RedactedThinkingBlock)):
            continue  # Chat Completions takes no reasoning input; OpenAI models reason afresh each turn
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": dumps(block.input)}})
        else:
            raise InvalidRequest(f"'{pb}': OpenAI assistant messages can only hold text and tool calls", param=pb)
    out: dict[str, Any] = {"role": "assistant", "content": _text_payload(tuple(texts)) if texts else None}
    if calls:
        out["tool_calls"] = calls
    elif not texts:
        out["content"] = ""
    return out


def _render_tool(tool: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        fn["description"] = tool.description
    fn["parameters"] = tool.parameters
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


def _render_tool_choice(choice: ToolChoice) -> Any:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "none": "none", "any": "required"}[choice.type]


# --- Answers: JSON ------------------------------------------------------------


def _map_finish(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return _FINISH_TO_STOP.get(reason, "end_turn")  # unknown reasons of compatible servers: a normal end


def _count(obj: dict[str, Any], key: str, param: str) -> int:
    """A token count (``opt_int(..., minimum=0) or 0``): a plain int in range is taken as it is, anything
    else goes through ``opt_int`` (which accepts ``14.0`` and names ``param`` in the 502)."""
    value = obj.get(key)
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    return opt_int(obj, key, param, minimum=0) or 0


def _parse_usage(raw: Any) -> Usage:
    """OpenAI's ``usage`` (https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage):
    cached and cache-written tokens are parts of ``prompt_tokens``, reasoning tokens of ``completion_tokens``.

    Every miss reads one: the paths are constants and counts plain ints are taken without ``as_int``'s
    keyword call (the usage cost ~33,000 instructions of a ~76,000 answer parse).
    """
    usage = as_obj(raw, "usage")
    prompt = opt_obj(usage, "prompt_tokens_details", "usage.prompt_tokens_details")
    completion = opt_obj(usage, "completion_tokens_details", "usage.completion_tokens_details")
    return Usage(
        input_tokens=_count(usage, "prompt_tokens", "usage.prompt_tokens"),
        output_tokens=_count(usage, "completion_tokens", "usage.completion_tokens"),
        cache_read_tokens=_count(prompt, "cached_tokens", "usage.prompt_tokens_details.cached_tokens")
        if prompt else 0,
        cache_write_tokens=_count(prompt, "cache_write_tokens", "usage.prompt_tokens_details.cache_write_tokens")
        if prompt else 0,
        reasoning_tokens=_count(completion, "reasoning_tokens", "usage.completion_tokens_details.reasoning_tokens")
        if completion else 0,
    )


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A provider's Chat Completions answer in canonical form; garbage is a 502, never a crash."""
    try:
        return _parse_response(body)
    except InvalidRequest as err:
        raise unreadable(_WHO, err) from None


def _parse_response(body: Any) -> ChatResponse:
    body = as_obj(body, "body")
    if body.get("error") is not None:
        raise UpstreamError(f"{_WHO} answered an error: {provider_error_message(502, dump_bytes(body))}")
    choices = as_list(required(body, "choices", "choices"), "choices", nonempty=True)
    choice = as_obj(choices[0], "choices[0]")
    message = as_obj(required(choice, "message", "choices[0].message"), "choices[0].message")
    finish = _map_finish(opt_str(choice, "finish_reason", "choices[0].finish_reason"))
    blocks: list[TextBlock | ToolUseBlock | ThinkingBlock] = []
    reasoning = opt_str(message, "reasoning_content", "choices[0].message.reasoning_content")
    if reasoning:  # vLLM's and DeepSeek's reasoning text: a thinking block without a signature
        blocks.append(ThinkingBlock(reasoning))
    content = message.get("content")
    if isinstance(content, list):  # some compatible servers answer with text parts
        content = "".join(
            as_str(as_obj(part, f"choices[0].message.content[{j}]").get("text", ""),
                   f"choices[0].message.content[{j}].text")
            for j, part in enumerate(content))
    elif content is not None:
        content = as_str(content, "choices[0].message.content")
    if content:
        blocks.append(TextBlock(content))
    refusal = opt_str(message, "refusal", "choices[0].message.refusal")
    if refusal:
        blocks.append(TextBlock(refusal))
        finish = "refusal"
    has_calls = False
    for k, call in enumerate(opt_list(message, "tool_calls", "choices[0].message.tool_calls") or []):
        p = f"choices[0].message.tool_calls[{k}]"
        call = as_obj(call, p)
        fn = as_obj(required(call, "function", f"{p}.function"), f"{p}.function")
        arguments = opt_str(fn, "arguments", f"{p}.function.arguments") or ""
        parsed = loads_object(arguments)
        if parsed is None:
            if finish == "max_tokens":
                continue  # cut by the token limit: a call that must not be run
            raise UpstreamError(f"{_WHO} answered an unreadable body: {p}.function.arguments is not a JSON object")
        call_id = opt_str(call, "id", f"{p}.id") or new_id("call_")
        name = as_str(required(fn, "name", f"{p}.function.name"), f"{p}.function.name", nonempty=True)
        blocks.append(ToolUseBlock(id=call_id, name=name, input=parsed))
        has_calls = True
    usage_raw = body.get("usage")
    return ChatResponse(
        id=opt_str(body, "id", "id") or new_id("chatcmpl-"),
        model=opt_str(body, "model", "model") or "",
        content=tuple(blocks),
        stop_reason=final_stop_reason(finish, has_calls),
        usage=_parse_usage(usage_raw) if usage_raw is not None else Usage(),
        created=opt_int(body, "created", "created", minimum=0) or 0,
    )


def _usage_json(usage: Usage) -> dict[str, Any]:
    """Canonical usage as OpenAI reports it: ``prompt_tokens`` holds cache reads and writes (for an
    Anthropic answer: input + cache read + cache creation), ``cached_tokens`` the reads. Cache writes
    and reasoning tokens are reported when there are some (Anthropic reports thinking tokens only
    in ``output_tokens_details``; without it they are unknown, not 0)."""
    prompt: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        prompt["cache_write_tokens"] = usage.cache_write_tokens
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": prompt,
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """A canonical answer exactly as the Chat Completions API returns one."""
    text = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
    reasoning = "".join(b.thinking for b in resp.content if isinstance(b, ThinkingBlock))
    calls = [
        {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": dumps(b.input)}}
        for b in resp.content
        if isinstance(b, ToolUseBlock)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning  # the extension field vLLM and DeepSeek clients read
    if calls:
        message["tool_calls"] = calls
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created or now(),
        "model": resp.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": _STOP_TO_FINISH.get(resp.stop_reason or "end_turn", "stop"),
        }],
        "usage": _usage_json(resp.usage),
    }


def error_message(status: int, body: bytes) -> str:
    """The provider's own words from an OpenAI-format error body (short, keys masked; never raises)."""
    return provider_error_message(status, body)


# --- Answers: streams ---------------------------------------------------------


@dataclass(slots=True)
class _ToolCall:
    index: int  # canonical block index
    id: str
    arguments: list[str] = field(default_factory=list)


class StreamDecoder:
    """An OpenAI-format SSE answer as canonical stream events.

    Chunks carry no block boundaries, so the decoder opens a block when the
    kind of delta changes (text, or a new tool call index) and closes the
    previous one first. ``StreamEnd`` comes at ``[DONE]``, after the
    trailing usage chunk; a stream that ends before ``[DONE]`` was cut.
    """

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._next_index = 0
        self._open: int | None = None
        self._open_kind: str | None = None  # "text", "thinking" or "tool"
        self._tools: dict[int, _ToolCall] = {}  # by OpenAI tool index
        self._current_tool: int | None = None
        self._finish: StopReason | None = None
        self._refused = False
        self._usage = Usage()

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = ev.data.strip()
        if data == "[DONE]":
            return self._end()
        if not data:
            return []
        chunk = loads_event(data, _WHO)
        if chunk.get("error") is not None or ev.event == "error":
            raise UpstreamError(f"{_WHO} failed mid-stream: {provider_error_message(502, dump_bytes(chunk))}")
        try:
            return self._chunk(chunk)
        except InvalidRequest as err:
            raise unreadable(_WHO, err) from None

    def finish(self) -> list[StreamEvent]:
        """At EOF: nothing if ``[DONE]`` came, else the stream was cut."""
        if not self._done:
            raise UpstreamError(f"{_WHO} stream cut before its end ([DONE] never came)")
        return []

    def _chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        choices = opt_list(chunk, "choices", "choices") or []
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = _parse_usage(usage)
        if not self._started and (choices or usage is not None):
            self._started = True
            out.append(StreamStart(
                id=opt_str(chunk, "id", "id") or new_id("chatcmpl-"),
                model=opt_str(chunk, "model", "model") or "",
                created=opt_int(chunk, "created", "created", minimum=0) or 0,
            ))
        for i, raw in enumerate(choices):
            p = f"choices[{i}]"
            choice = as_obj(raw, p)
            if opt_int(choice, "index", f"{p}.index") not in (None, 0):
                continue  # the gateway asks for one choice
            delta = opt_obj(choice, "delta", f"{p}.delta") or {}
            reasoning = delta.get("reasoning_content")
            if reasoning:
                out.extend(self._text(as_str(reasoning, f"{p}.delta.reasoning_content"), "thinking"))
            text = opt_str(delta, "content", f"{p}.delta.content")
            if text:
                out.extend(self._text(text))
            refusal = opt_str(delta, "refusal", f"{p}.delta.refusal")
            if refusal:
                self._refused = True
                out.extend(self._text(refusal))
            for k, frag in enumerate(opt_list(delta, "tool_calls", f"{p}.delta.tool_calls") or []):
                out.extend(self._tool_fragment(as_obj(frag, f"{p}.delta.tool_calls[{k}]"),
                                               f"{p}.delta.tool_calls[{k}]"))
            finish = opt_str(choice, "finish_reason", f"{p}.finish_reason")
            if finish is not None:
                self._finish = _map_finish(finish)
                out.extend(self._close())
        return out

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index, self._open, self._current_tool = self._open, None, None
        return [BlockStop(index)]

    def _text(self, text: str, kind: str = "text") -> list[StreamEvent]:
        """Answer text, or (``kind`` "thinking") a vLLM/DeepSeek ``reasoning_content`` fragment."""
        out: list[StreamEvent] = []
        if self._open is None or self._open_kind != kind:
            out.extend(self._close())
            self._open, self._open_kind = self._next_index, kind
            self._next_index += 1
        out.append(TextDelta(self._open, text) if kind == "text" else ThinkingDelta(self._open, text))
        return out

    def _tool_fragment(self, frag: dict[str, Any], p: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        call_id = opt_str(frag, "id", f"{p}.id")
        fn = opt_obj(frag, "function", f"{p}.function") or {}
        key = opt_int(frag, "index", f"{p}.index")
        if key is None:  # some servers omit it: a fragment with a new id starts the next call
            known = [k for k, c in self._tools.items() if c.id == call_id]
            if known:
                key = known[0]
            else:
                key = len(self._tools) if call_id or self._current_tool is None else self._current_tool
        call = self._tools.get(key)
        if call is None:
            name = as_str(required(fn, "name", f"{p}.function.name"), f"{p}.function.name", nonempty=True)
            out.extend(self._close())
            call = self._tools[key] = _ToolCall(self._next_index, call_id or new_id("call_"))
            self._next_index += 1
            self._open, self._open_kind, self._current_tool = call.index, "tool", key
            out.append(ToolUseStart(call.index, call.id, name))
        elif self._current_tool != key:
            raise UpstreamError(f"{_WHO} interleaved the deltas of two tool calls")
        arguments = opt_str(fn, "arguments", f"{p}.function.arguments")
        if arguments:
            call.arguments.append(arguments)
            out.append(ToolInputDelta(call.index, arguments))
        return out

    def _end(self) -> list[StreamEvent]:
        if not self._started:
            raise UpstreamError(f"{_WHO} ended its stream without sending an answer")
        out = self._close()
        said: StopReason | None = "refusal" if self._refused else self._finish
        stop = final_stop_reason(said, bool(self._tools))
        if stop != "max_tokens":
            for call in self._tools.values():
                if loads_object("".join(call.arguments)) is None:
                    raise UpstreamError(f"{_WHO} streamed tool call arguments that are not a JSON object")
        self._done = True
        out.append(StreamEnd(stop_reason=stop, usage=self._usage))
        return out


class StreamEncoder:
    """Canonical stream events as the Chat Completions SSE a caller's SDK expects."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self._head: dict[str, Any] | None = None
        self._tool_index: dict[int, int] = {}  # canonical block index -> OpenAI tool call index

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, StreamStart):
            self._head = {"id": ev.id, "object": "chat.completion.chunk", "created": ev.created or now(),
                          "model": ev.model}
            return self._chunk({"role": "assistant", "content": ""})
        if self._head is None:
            raise ValueError("StreamStart must be the first event of a stream")
        if isinstance(ev, TextDelta):
            return self._chunk({"content": ev.text}) if ev.text else b""
        if isinstance(ev, ThinkingDelta):
            return self._chunk({"reasoning_content": ev.thinking}) if ev.thinking else b""
        if isinstance(ev, (SignatureDelta, RedactedThinking)):
            return b""  # Anthropic-only: no OpenAI field can carry them
        if isinstance(ev, ToolUseStart):
            n = self._tool_index[ev.index] = len(self._tool_index)
            return self._chunk({"tool_calls": [{"index": n, "id": ev.id, "type": "function",
                                                "function": {"name": ev.name, "arguments": ""}}]})
        if isinstance(ev, ToolInputDelta):
            if not ev.partial_json:
                return b""
            n = self._tool_index[ev.index]
            return self._chunk({"tool_calls": [{"index": n, "function": {"arguments": ev.partial_json}}]})
        if isinstance(ev, StreamEnd):
            finish = _STOP_TO_FINISH.get(ev.stop_reason or "end_turn", "stop")
            out = self._chunk({}, finish)
            if self.include_usage:
                out += encode_event(dump_bytes({**self._head, "choices": [], "usage": _usage_json(ev.usage)}))
            return out + b"data: [DONE]\n\n"
        return b""  # BlockStop: OpenAI chunks have no block boundaries

    def error(self, err: GatewayError) -> bytes:
        """The in-stream error chunk the OpenAI SDK raises on; the stream ends after it."""
        return encode_event(dump_bytes(err.openai_body()))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        assert self._head is not None
        body = {**self._head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            body["usage"] = None  # as OpenAI does: null on every chunk but the usage chunk
        return encode_event(dump_bytes(body))

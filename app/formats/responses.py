"""OpenAI's Responses API (``POST /v1/responses``) as a third dialect beside Chat Completions and Messages.

Reference: https://platform.openai.com/docs/api-reference/responses (request, response object,
streaming events); the SDK's types: openai-python ``src/openai/types/responses/``.

Two roles:

* **ingress translation** (the target has no Responses API: Anthropic, vLLM...): ``parse_request`` reads a
  body (and the stored items of its ``previous_response_id``) into a canonical ``ChatRequest``;
  ``render_response`` and ``StreamEncoder`` turn the canonical answer into a ``response`` object and the
  event lifecycle the SDK's stream helpers accumulate (``response.created`` ... ``response.completed``,
  each with an increasing ``sequence_number``). What the canonical model cannot carry (built-in tools,
  ``text.format`` other than text, ``background``...) is the 400 naming the field.
* **relay observer** (the target serves the Responses API itself): ``parse_response`` and
  ``StreamDecoder`` read the provider's answer into canonical form for accounting, tracing and the cache,
  while the caller gets the provider's bytes.

Claude's thinking travels as a ``reasoning`` item: its text as ``content`` (``reasoning_text``) and its
signature as ``encrypted_content``, so a later turn gives it back to Claude as it came.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
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
    as_bool,
    as_list,
    as_model,
    as_obj,
    as_str,
    dump_bytes,
    dumps,
    invalid,
    loads_event,
    loads_object,
    now,
    opt_bool,
    opt_int,
    opt_number,
    opt_obj,
    opt_str,
    provider_error_message,
    required,
)
from app.formats.reasoning import EFFORTS
from app.formats.sse import SSEEvent

FORMAT = "responses"

# encrypted_content of a reasoning item that holds Anthropic's redacted thinking, not a signature.
REDACTED_PREFIX = "anthropic-redacted:"

# Fields the gateway itself acts on (the resource), never part of the canonical request.
GATEWAY_FIELDS = frozenset({"store", "previous_response_id", "metadata", "stream_options"})
_MAPPED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                     "max_output_tokens", "temperature", "top_p", "reasoning", "stream", "user", "text",
                     "include", "truncation", "background", "service_tier", "safety_identifier",
                     "prompt_cache_key"})
_DATA_URL = re.compile(r"data:(?P<type>[^;,]+);base64,(?P<data>.*)", re.DOTALL)
_DETAILS = ("auto", "low", "high")


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _item_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_hex(24)


# --- Ingress: request -----------------------------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message), each a JSON object."""
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    items = as_list(raw, "input")
    return [as_obj(item, f"input[{i}]") for i, item in enumerate(items)]


def parse_request(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> ChatRequest:
    """A Responses body as a canonical request; ``history``: the stored items of ``previous_response_id``
    (earlier inputs and outputs), which come before this request's ``input``."""
    body = as_obj(body, "body")
    model = as_model(body.get("model"))
    check_body(body)
    for key, value in body.items():
        if key not in _MAPPED and key not in GATEWAY_FIELDS and value is not None:
            raise InvalidRequest(f"'{key}' is not supported when the model is served by a provider without the "
                                 "Responses API; remove it or choose another model", param=key)
    if body.get("background") is True:
        raise InvalidRequest("'background' responses are only served by providers with the Responses API",
                             param="background")
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise InvalidRequest("'truncation' must be 'disabled' when the model is served by a provider without the "
                             "Responses API", param="truncation")
    include = as_list(body.get("include") or [], "include")
    for i, value in enumerate(include):
        if value != "reasoning.encrypted_content":  # always there: it carries Claude's thinking signature
            raise InvalidRequest(f"'include[{i}]': '{value}' cannot be served by a provider without the "
                                 "Responses API", param=f"include[{i}]")
    _check_text(body.get("text"))
    system: list[TextBlock] = []
    instructions = opt_str(body, "instructions", "instructions")
    prior = [(item, f"previous_response_id[{i}]") for i, item in enumerate(history or ())]
    items = prior + [(item, f"input[{i}]") for i, item in enumerate(input_items(body))]
    messages = _messages(items, system)
    if instructions:
        system.insert(0, TextBlock(instructions))
    if not messages:
        raise InvalidRequest("'input' must hold at least one message", param="input")
    extra: dict[str, Any] = {}
    reasoning = opt_obj(body, "reasoning", "reasoning") or {}
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise invalid("reasoning.effort", "one of " + ", ".join(EFFORTS), effort)
        extra["reasoning_effort"] = effort
    for key in reasoning:
        if key not in ("effort", "summary", "generate_summary"):
            raise InvalidRequest(f"'reasoning.{key}' is not supported by the gateway", param=f"reasoning.{key}")
    user = opt_str(body, "user", "user") or opt_str(body, "safety_identifier", "safety_identifier")
    tools = _tools(body.get("tools"))
    return ChatRequest(
        model=model,
        messages=messages,
        system=tuple(system),
        max_tokens=opt_int(body, "max_output_tokens", "max_output_tokens", minimum=1, maximum=INT32_MAX),
        temperature=opt_number(body, "temperature", "temperature", low=0, high=2),
        top_p=opt_number(body, "top_p", "top_p", low=0, high=1),
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")),
        stream=bool(opt_bool(body, "stream", "stream")),
        include_usage=True,
        user=user,
        extra=extra,
        source_format="openai",  # its extras (reasoning_effort) are Chat Completions' names
        dropped=_dropped(body),
        dropped_for_anthropic=_dropped_for_anthropic(body),
    )


# Top-level fields no translation sends (Chat Completions and Messages have no place for them, or the gateway
# does not pass them on) and that do not change the answer; listed as chat's translation lists them.
_NOT_SENT = ("service_tier", "prompt_cache_key")


def _dropped(body: dict[str, Any]) -> tuple[str, ...]:
    """The paths of a valid body that every translation leaves out: ``service_tier``, ``prompt_cache_key``, and
    ``safety_identifier`` beside a ``user`` (it stands for ``user`` only when there is none). What the gateway
    acts on itself (``store``, ``metadata``, ``previous_response_id``...) is not left out."""
    out = [key for key in _NOT_SENT if body.get(key) is not None]
    if body.get("safety_identifier") is not None and body.get("user"):
        out.append("safety_identifier")
    return tuple(out)


def _dropped_for_anthropic(body: dict[str, Any]) -> tuple[str, ...]:
    """The paths of a valid body that only its translation for an Anthropic-format provider leaves out (Chat
    Completions takes both): an ``input_image``'s ``detail`` other than ``auto``, in a message or a tool's
    output, and a function tool's ``strict: true`` (Anthropic's needs a beta header, as on chat)."""
    out: list[str] = []
    holders = {"message": "content", "function_call_output": "output"}  # the items whose parts may be images
    for i, item in enumerate(input_items(body)):
        key = holders.get(item.get("type", "message"))
        parts = item.get(key) if key else None
        if isinstance(parts, list):
            out.extend(f"input[{i}].{key}[{j}].detail" for j, part in enumerate(parts)
                       if part.get("type") == "input_image" and part.get("detail") not in (None, "auto"))
    out.extend(f"tools[{i}].strict" for i, tool in enumerate(body.get("tools") or ()) if tool.get("strict") is True)
    return tuple(out)


def check_body(body: dict[str, Any]) -> None:
    """What the gateway needs of any Responses body, relayed or translated (400 naming the field)."""
    as_model(body.get("model"))
    opt_bool(body, "stream", "stream")
    opt_bool(body, "store", "store")
    opt_bool(body, "background", "background")
    opt_int(body, "max_output_tokens", "max_output_tokens", minimum=1, maximum=INT32_MAX)
    opt_number(body, "temperature", "temperature", low=0, high=2)
    opt_number(body, "top_p", "top_p", low=0, high=1)
    opt_str(body, "previous_response_id", "previous_response_id")
    opt_str(body, "instructions", "instructions")
    opt_obj(body, "metadata", "metadata")
    raw = body.get("input")
    if raw is not None and not isinstance(raw, (str, list)):
        raise invalid("input", "a string or an array of items", raw)


def _check_text(text: Any) -> None:
    if text is None:
        return
    text = as_obj(text, "text")
    for key, value in text.items():
        if key == "format":
            kind = as_obj(value, "text.format").get("type")
            if kind != "text":
                raise InvalidRequest(f"'text.format' of type '{kind}' cannot be served faithfully by a provider "
                                     "without the Responses API; remove it or choose another model",
                                     param="text.format")
        elif value is not None:
            raise InvalidRequest(f"'text.{key}' cannot be served by a provider without the Responses API",
                                 param=f"text.{key}")


def _messages(items: list[tuple[dict[str, Any], str]], system: list[TextBlock]) -> tuple[Message, ...]:
    """Items in order as alternating canonical messages (consecutive same-role turns merged)."""
    out: list[tuple[str, list[Block]]] = []

    def add(role: str, blocks: list[Block]) -> None:
        if out and out[-1][0] == role:
            out[-1][1].extend(blocks)
        else:
            out.append((role, list(blocks)))

    for item, p in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = as_str(required(item, "role", f"{p}.role"), f"{p}.role")
            content = required(item, "content", f"{p}.content")
            if role in ("system", "developer"):
                system.extend(_text_parts(content, p, "input_text"))
            elif role == "user":
                add("user", _user_parts(content, p))
            elif role == "assistant":
                add("assistant", list(_text_parts(content, p, "output_text")))
            else:
                raise invalid(f"{p}.role", "'user', 'assistant', 'system' or 'developer'", role)
        elif kind == "function_call":
            arguments = as_str(required(item, "arguments", f"{p}.arguments"), f"{p}.arguments")
            parsed = loads_object(arguments) if arguments.strip() else {}
            if parsed is None:
                raise invalid(f"{p}.arguments", "a JSON object")
            add("assistant", [ToolUseBlock(
                id=as_str(required(item, "call_id", f"{p}.call_id"), f"{p}.call_id", nonempty=True),
                name=as_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True), input=parsed)])
        elif kind == "function_call_output":
            output = required(item, "output", f"{p}.output")
            call_id = as_str(required(item, "call_id", f"{p}.call_id"), f"{p}.call_id", nonempty=True)
            content: tuple[TextBlock | ImageBlock, ...]
            if isinstance(output, str):
                content = (TextBlock(output),) if output else ()
            else:
                content = tuple(b for b in _user_parts(output, f"{p}.output")
                                if isinstance(b, (TextBlock, ImageBlock)))
            add("user", [ToolResultBlock(tool_use_id=call_id, content=content)])
        elif kind == "reasoning":
            add("assistant", [_reasoning_block(item, p)])
        else:
            raise InvalidRequest(f"'{p}.type': items of type '{kind}' cannot be sent to a provider without the "
                                 "Responses API", param=f"{p}.type")
    return tuple(Message(role=role, content=tuple(blocks)) for role, blocks in out)  # type: ignore[arg-type]


def _text_parts(content: Any, p: str, kind: str) -> tuple[TextBlock, ...]:
    if isinstance(content, str):
        return (TextBlock(content),)
    if not isinstance(content, list):
        raise invalid(f"{p}.content", "a string or an array of content parts", content)
    out = []
    for j, part in enumerate(content):
        pp = f"{p}.content[{j}]"
        part = as_obj(part, pp)
        ptype = part.get("type")
        if ptype not in (kind, "input_text", "output_text"):
            raise invalid(f"{pp}.type", f"'{kind}'", ptype)
        out.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
    return tuple(out)


def _user_parts(content: Any, p: str) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(content)]
    where = p if p.endswith(".output") else f"{p}.content"
    if not isinstance(content, list):
        raise invalid(where, "a string or an array of content parts", content)
    out: list[Block] = []
    for j, part in enumerate(content):
        pp = f"{where}[{j}]"
        part = as_obj(part, pp)
        ptype = part.get("type")
        if ptype == "input_text":
            out.append(TextBlock(as_str(required(part, "text", f"{pp}.text"), f"{pp}.text")))
        elif ptype == "input_image":
            out.append(_image(part, pp))
        elif ptype == "input_file":
            out.append(_file(part, pp))
        else:
            raise invalid(f"{pp}.type", "'input_text', 'input_image' or 'input_file'", ptype)
    return out


def _image(part: dict[str, Any], pp: str) -> ImageBlock:
    if part.get("file_id") is not None:
        raise InvalidRequest(f"'{pp}.file_id': uploaded files live at OpenAI only; send 'image_url'",
                             param=f"{pp}.file_id")
    url = as_str(required(part, "image_url", f"{pp}.image_url"), f"{pp}.image_url", nonempty=True)
    detail = opt_str(part, "detail", f"{pp}.detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(f"{pp}.detail", "one of 'auto', 'low', 'high'", detail)
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or not match["data"]:
            raise invalid(f"{pp}.image_url", "a base64 data URL (data:<media type>;base64,<data>)")
        return ImageBlock(media_type=match["type"].strip().lower(), data=match["data"], detail=detail)
    if not url.startswith(("https://", "http://")):
        raise invalid(f"{pp}.image_url", "an http(s) URL or a base64 data URL")
    return ImageBlock(url=url, detail=detail)


def _file(part: dict[str, Any], pp: str) -> DocumentBlock:
    if part.get("file_id") is not None or part.get("file_url") is not None:
        key = "file_id" if part.get("file_id") is not None else "file_url"
        raise InvalidRequest(f"'{pp}.{key}': only inline 'file_data' can be sent to a provider without the "
                             "Responses API", param=f"{pp}.{key}")
    data = as_str(required(part, "file_data", f"{pp}.file_data"), f"{pp}.file_data", nonempty=True)
    match = _DATA_URL.fullmatch(data)
    if match is None or match["type"].strip().lower() != "application/pdf" or not match["data"]:
        raise invalid(f"{pp}.file_data", "a PDF as a base64 data URL (data:application/pdf;base64,...)")
    return DocumentBlock(data=match["data"], title=opt_str(part, "filename", f"{pp}.filename"))


def _reasoning_block(item: dict[str, Any], p: str) -> ThinkingBlock | RedactedThinkingBlock:
    """A reasoning item this gateway made from Claude's thinking (text + signature), given back."""
    encrypted = opt_str(item, "encrypted_content", f"{p}.encrypted_content")
    if encrypted is not None and encrypted.startswith(REDACTED_PREFIX):
        return RedactedThinkingBlock(encrypted[len(REDACTED_PREFIX):])
    content = item.get("content")
    if not content or encrypted is None:
        raise InvalidRequest(f"'{p}': reasoning items from a Responses API model cannot be sent to a provider "
                             "without the Responses API", param=p)
    text = "".join(t.text for t in _text_parts(content, p, "reasoning_text"))
    return ThinkingBlock(text, signature=encrypted)


def _tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    tools = []
    for i, item in enumerate(as_list(raw, "tools")):
        p = f"tools[{i}]"
        item = as_obj(item, p)
        kind = item.get("type")
        if kind != "function":
            raise InvalidRequest(f"'{p}.type': '{kind}' tools run at OpenAI only and cannot be served by a "
                                 "provider without the Responses API", param=f"{p}.type")
        parameters = opt_obj(item, "parameters", f"{p}.parameters")
        tools.append(Tool(
            name=as_str(required(item, "name", f"{p}.name"), f"{p}.name", nonempty=True),
            description=opt_str(item, "description", f"{p}.description"),
            parameters=parameters if parameters is not None else {"type": "object", "properties": {}},
            strict=opt_bool(item, "strict", f"{p}.strict"),
        ))
    return tuple(tools)


def _tool_choice(raw: Any, parallel: Any) -> ToolChoice | None:
    disable = parallel is not None and not as_bool(parallel, "parallel_tool_calls")
    if raw is None:
        return ToolChoice("auto", disable_parallel=True) if disable else None
    if isinstance(raw, str):
        kinds = {"auto": "auto", "none": "none", "required": "any"}
        if raw not in kinds:
            raise invalid("tool_choice", "'auto', 'none', 'required' or a function object", raw)
        return ToolChoice(kinds[raw], disable_parallel=disable)  # type: ignore[arg-type]
    choice = as_obj(raw, "tool_choice")
    if choice.get("type") != "function":
        raise InvalidRequest(f"'tool_choice.type': '{choice.get('type')}' cannot be served by a provider without "
                             "the Responses API", param="tool_choice.type")
    name = as_str(required(choice, "name", "tool_choice.name"), "tool_choice.name", nonempty=True)
    return ToolChoice("tool", name=name, disable_parallel=disable)


# --- Ingress: the answer --------------------------------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens,
                                 "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _status(stop: StopReason | None) -> tuple[str, dict[str, Any] | None]:
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """The request fields a response object repeats (as OpenAI's does), with its defaults."""
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
    }


def response_object(resp_id: str, model: str, created: int, status: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, echoed: dict[str, Any],
                    incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": resp_id, "object": "response", "created_at": created, "status": status, "background": False,
            "error": error, "incomplete_details": incomplete, "model": model, "output": output,
            "usage": usage, **echoed}


def output_items(content: tuple[AnswerBlock, ...]) -> list[dict[str, Any]]:
    """Canonical answer blocks as Responses output items: each text block a message, each call a function_call."""
    out: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, TextBlock):
            out.append(_message_item(_item_id("msg"), block.text, "completed"))
        elif isinstance(block, ToolUseBlock):
            out.append(_call_item(_item_id("fc"), block.id, block.name, dumps(block.input), "completed"))
        elif isinstance(block, ThinkingBlock):
            out.append(_reasoning_item(_item_id("rs"), block.thinking, block.signature))
        elif isinstance(block, RedactedThinkingBlock):
            out.append({"type": "reasoning", "id": _item_id("rs"), "summary": [],
                        "encrypted_content": REDACTED_PREFIX + block.data})
    return out


def _message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": [],
                            "content": [{"type": "reasoning_text", "text": text}]}
    if signature is not None:
        item["encrypted_content"] = signature
    return item


def render_response(resp: ChatResponse, resp_id: str, model: str, echoed: dict[str, Any]) -> dict[str, Any]:
    """A whole canonical answer as a ``response`` object (``model``: the name the caller asked for)."""
    status, incomplete = _status(resp.stop_reason)
    return response_object(resp_id, model, resp.created or now(), status, output_items(resp.content),
                           usage_json(resp.usage), echoed, incomplete)


class StreamEncoder:
    """Canonical stream events as the Responses event lifecycle.

    ``response.created`` and ``response.in_progress`` open it; each canonical block is an output item
    (``output_item.added``, its deltas, ``.done`` events, ``output_item.done``); ``response.completed``
    (or ``response.incomplete``) carries the whole response, which ``on_complete`` also receives (to store it);
    ``response.failed`` ends a stream that breaks after it started.
    """

    def __init__(self, resp_id: str, model: str, echoed: dict[str, Any],
                 on_complete: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.resp_id = resp_id
        self.model = model
        self.echoed = echoed
        self.on_complete = on_complete
        self._seq = 0
        self._created = 0
        self._output: list[dict[str, Any]] = []
        self._open: dict[int, int] = {}  # canonical block index -> output index, while open
        self._texts: dict[int, list[str]] = {}  # output index -> text pieces

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        # orjson's compact JSON has no line break, so the event is one data line (encode_event's split is not needed)
        return b"event: " + kind.encode() + b"\ndata: " + dump_bytes(payload) + b"\n\n"

    def _snapshot(self, status: str, usage: dict[str, Any] | None = None,
                  incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self.resp_id, self.model, self._created, status, list(self._output), usage,
                               self.echoed, incomplete, error)

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, StreamStart):
            self._created = ev.created or now()
            snap = self._snapshot("in_progress")
            return (self._event("response.created", response=snap)
                    + self._event("response.in_progress", response=snap))
        if isinstance(ev, TextDelta):
            out = self._open_block(ev.index, "message")
            n = self._open[ev.index]
            if ev.text:
                self._texts[n].append(ev.text)
                out += self._event("response.output_text.delta", item_id=self._output[n]["id"], output_index=n,
                                   content_index=0, delta=ev.text, logprobs=[])
            return out
        if isinstance(ev, ThinkingDelta):
            out = self._open_block(ev.index, "reasoning")
            n = self._open[ev.index]
            if ev.thinking:
                self._texts[n].append(ev.thinking)
                out += self._event("response.reasoning_text.delta", item_id=self._output[n]["id"], output_index=n,
                                   content_index=0, delta=ev.thinking)
            return out
        if isinstance(ev, SignatureDelta):
            out = self._open_block(ev.index, "reasoning")
            item = self._output[self._open[ev.index]]
            item["encrypted_content"] = item.get("encrypted_content", "") + ev.signature
            return out
        if isinstance(ev, RedactedThinking):
            out = self._open_block(ev.index, "reasoning")
            self._output[self._open[ev.index]]["encrypted_content"] = REDACTED_PREFIX + ev.data
            return out
        if isinstance(ev, ToolUseStart):
            n = len(self._output)
            self._open[ev.index] = n
            self._texts[n] = []
            self._output.append(_call_item(_item_id("fc"), ev.id, ev.name, "", "in_progress"))
            return self._event("response.output_item.added", output_index=n, item=dict(self._output[n]))
        if isinstance(ev, ToolInputDelta):
            n = self._open[ev.index]
            if not ev.partial_json:
                return b""
            self._texts[n].append(ev.partial_json)
            return self._event("response.function_call_arguments.delta", item_id=self._output[n]["id"],
                               output_index=n, delta=ev.partial_json)
        if isinstance(ev, BlockStop):
            return self._close(ev.index)
        if isinstance(ev, StreamEnd):
            out = b"".join(self._close(index) for index in list(self._open))
            status, incomplete = _status(ev.stop_reason)
            final = self._snapshot(status, usage_json(ev.usage), incomplete)
            if self.on_complete is not None:
                self.on_complete(final)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return out + self._event(kind, response=final)
        return b""

    def _open_block(self, index: int, kind: str) -> bytes:
        if index in self._open:
            return b""
        n = len(self._output)
        self._open[index] = n
        self._texts[n] = []
        if kind == "message":
            self._output.append(_message_item(_item_id("msg"), None, "in_progress"))
            item_id = self._output[n]["id"]
            return (self._event("response.output_item.added", output_index=n, item=dict(self._output[n]))
                    + self._event("response.content_part.added", item_id=item_id, output_index=n, content_index=0,
                                  part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
        self._output.append({"type": "reasoning", "id": _item_id("rs"), "summary": [], "content": []})
        return self._event("response.output_item.added", output_index=n, item=dict(self._output[n]))

    def _close(self, index: int) -> bytes:
        n = self._open.pop(index, None)
        if n is None:
            return b""
        item = self._output[n]
        text = "".join(self._texts.pop(n))
        item_id = item["id"]
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._output[n] = _message_item(item_id, text, "completed")
            out = (self._event("response.output_text.done", item_id=item_id, output_index=n, content_index=0,
                               text=text, logprobs=[])
                   + self._event("response.content_part.done", item_id=item_id, output_index=n, content_index=0,
                                 part=part))
        elif item["type"] == "function_call":
            self._output[n] = _call_item(item_id, item["call_id"], item["name"], text, "completed")
            out = self._event("response.function_call_arguments.done", item_id=item_id, output_index=n,
                              name=item["name"], arguments=text)
        else:
            encrypted = item.get("encrypted_content")
            if encrypted is not None and encrypted.startswith(REDACTED_PREFIX):
                self._output[n] = {**item, "content": []}
                out = b""
            else:
                self._output[n] = _reasoning_item(item_id, text, encrypted)
                out = self._event("response.reasoning_text.done", item_id=item_id, output_index=n,
                                  content_index=0, text=text)
        return out + self._event("response.output_item.done", output_index=n, item=self._output[n])

    def error(self, err: GatewayError) -> bytes:
        """The stream's last event on a failure: ``response.failed`` (the response so far, status ``failed``,
        with its ``error``) once the response was announced, else the bare ``error`` event."""
        body = err.openai_body()["error"]
        if self._created:
            code = "rate_limit_exceeded" if err.status == 429 else "server_error"
            failed = self._snapshot("failed", error={"code": code, "message": body["message"]})
            return self._event("response.failed", response=failed)
        return self._event("error", code=body["code"], message=body["message"], param=body["param"])


# --- Relay observer: a Responses API provider's answer read as canonical -------------------------------

_WHO = "The provider's Responses answer"


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    ins = raw.get("input_tokens_details") if isinstance(raw.get("input_tokens_details"), dict) else {}
    outs = raw.get("output_tokens_details") if isinstance(raw.get("output_tokens_details"), dict) else {}

    def num(obj: dict[str, Any], key: str) -> int:
        value = obj.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return Usage(input_tokens=num(raw, "input_tokens"), output_tokens=num(raw, "output_tokens"),
                 cache_read_tokens=num(ins, "cached_tokens"), cache_write_tokens=num(ins, "cache_write_tokens"),
                 reasoning_tokens=num(outs, "reasoning_tokens"))


def _stop(body: dict[str, Any], has_calls: bool) -> StopReason:
    details = body.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if body.get("status") == "incomplete":
        return "refusal" if reason == "content_filter" else "max_tokens"
    return "tool_use" if has_calls else "end_turn"


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A provider's ``response`` object, read for accounting (text and function calls; the rest is in its bytes)."""
    if not isinstance(body.get("id"), str):
        raise UpstreamError(f"{_WHO} has no id")
    content: list[AnswerBlock] = []
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    content.append(TextBlock(part["text"]))
        elif item.get("type") == "function_call":
            args = loads_object(item.get("arguments") or "{}") or {}
            content.append(ToolUseBlock(id=str(item.get("call_id", "")), name=str(item.get("name", "")), input=args))
    has_calls = any(isinstance(b, ToolUseBlock) for b in content)
    created = body.get("created_at")
    return ChatResponse(id=body["id"], model=str(body.get("model", "")), content=tuple(content),
                        stop_reason=_stop(body, has_calls), usage=_usage(body.get("usage")),
                        created=int(created) if isinstance(created, (int, float)) else 0)


def error_message(status: int, body: bytes) -> str:
    return provider_error_message(status, body)


class StreamDecoder:
    """A Responses API stream read as canonical events: text, function calls, the end and its usage."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[int, int], int] = {}  # (output index, content index) -> canonical index
        self._calls: set[int] = set()
        self._done = False

    def _index(self, key: tuple[int, int]) -> int:
        return self._blocks.setdefault(key, len(self._blocks))

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        if not ev.data or ev.data == "[DONE]":
            return []
        data = loads_event(ev.data, _WHO)
        kind = data.get("type") or ev.event
        if kind == "error" or (kind is None and isinstance(data.get("error"), dict)):
            said = data.get("message") or (data.get("error") or {}).get("message")
            raise UpstreamError(f"Provider stream error: {said or 'unknown error'}")
        if kind == "response.failed":
            error = (data.get("response") or {}).get("error") or {}
            raise UpstreamError(f"Provider response failed: {error.get('message') or 'unknown error'}")
        if kind == "response.created":
            resp = data.get("response") or {}
            created = resp.get("created_at")
            return [StreamStart(id=str(resp.get("id", "")), model=str(resp.get("model", "")),
                                created=int(created) if isinstance(created, (int, float)) else 0)]
        n = data.get("output_index")
        if kind == "response.output_text.delta" and isinstance(n, int):
            return [TextDelta(self._index((n, int(data.get("content_index") or 0))), str(data.get("delta", "")))]
        if kind == "response.output_item.added" and isinstance(n, int):
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                self._calls.add(n)
                return [ToolUseStart(self._index((n, 0)), str(item.get("call_id", "")), str(item.get("name", "")))]
        if kind == "response.function_call_arguments.delta" and isinstance(n, int):
            return [ToolInputDelta(self._index((n, 0)), str(data.get("delta", "")))]
        if kind == "response.output_item.done" and isinstance(n, int):
            return [BlockStop(i) for (o, _), i in self._blocks.items() if o == n]
        if kind in ("response.completed", "response.incomplete"):
            self._done = True
            resp = data.get("response") or {}
            return [StreamEnd(stop_reason=_stop(resp, bool(self._calls)), usage=_usage(resp.get("usage")))]
        return []

    def finish(self) -> list[StreamEvent]:
        if not self._done:
            raise UpstreamError(f"{_WHO} stream ended before response.completed")
        return []

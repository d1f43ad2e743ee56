"""The Anthropic Messages API: its validation table, the answer, JSON and streamed replies, errors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from .answers import Answer, make_answer, text_of, words
from .openai import MODEL_PREFIXES as OPENAI_MODEL_PREFIXES
from .validation import Dialect, Rule, check, check_unknown, check_value, nested, tname
from .wire import ApiError, bearer, dumps, fragments, loads, named_event, new_id, word_pieces

ID_HEADER = "request-id"

# --------------------------------------------------------------------------------------------- errors

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str, etype: str | None = None) -> dict[str, Any]:
    """An error body as the API sends it for ``status`` (injected faults, stream error events)."""
    default_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": etype or default_type, "message": message}}


def render_error(err: ApiError) -> dict[str, Any]:
    return error_body(err.status, err.message, err.etype)


def invalid(message: str) -> ApiError:
    return ApiError(message, 400, "invalid_request_error")


def tag_error(path: str, tag: Any, expected: str) -> ApiError:
    return invalid(f"{path}: Input tag '{tag}' found using 'type' does not match any of the expected tags: {expected}")


def _quoted(values: tuple[Any, ...], last: str = ", ") -> str:
    """``'a', 'b'`` + ``last`` + ``'c'``: how the API lists the values it expects."""
    items = [f"'{v}'" for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


NAMES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "list",
    "object": "dictionary",
    "strings": "list of strings",
    "string_or_array": "string or list",
}


class AnthropicDialect(Dialect):
    reasons = {
        "missing": lambda rule, path, value: invalid(f"{path}: Field required"),
        "type": lambda rule, path, value: invalid(f"{path}: Input should be a valid {NAMES[rule.kind]}"),
        "too_few": lambda rule, path, value: invalid(f"{path}: List should have at least {rule.min_items} item(s)"),
        "too_many": lambda rule, path, value: invalid(f"{path}: List should have at most {rule.max_items} item(s)"),
        "below": lambda rule, path, value: invalid(f"{path}: Input should be greater than or equal to {rule.low}"),
        "above": lambda rule, path, value: invalid(f"{path}: Input should be less than or equal to {rule.high}"),
        "not_allowed": lambda rule, path, value: invalid(f"{path}: Input should be {_quoted(rule.allowed, ' or ')}"),
        "pattern": lambda rule, path, value: invalid(
            f"{path}: String should match pattern '{rule.pattern.pattern}'"
        ),
        "needs": lambda rule, path, value: invalid(f"{path} may only be specified while providing {rule.needs}."),
    }

    def worded(self, message: str, rule: Rule, path: str) -> ApiError:
        return invalid(message)

    def unknown(self, name: str) -> ApiError:
        return invalid(f"{name}: Extra inputs are not permitted")


DIALECT = AnthropicDialect()

# ----------------------------------------------------------------------------------------- validation

PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_format",
        "output_config",
        "inference_geo",
    }
)
BLOCKS = {
    "user": ("text", "image", "document", "tool_result", "search_result"),
    "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
}
RESULT_BLOCKS = ("text", "image", "document", "search_result")  # what a tool_result's content may hold
MEDIA = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_USE_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
SERVER_TOOL_RE = re.compile(r"^[a-z_]+_\d{8}$")  # e.g. web_search_20250305, bash_20250124
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

ITEM = Rule("item", "object", required=True, report_as="type")  # an array's item must be an object
LIST = Rule("list", "array", required=True, report_as="type")
TEXT = Rule(
    "text",
    "string",
    required=True,
    min_items=1,
    wording={"type": "{path}: Field required", "too_few": "messages: text content blocks must be non-empty"},
)


def _check_base64(data: str, source: dict[str, Any], path: str) -> None:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{path}: The image data is not valid base64.") from None


IMAGE_SOURCES = {
    "base64": (
        Rule("media_type", required=True, allowed=MEDIA, report_as="not_allowed"),
        Rule("data", "string", required=True, report_as="missing", then=_check_base64),
    ),
    "url": (Rule("url", "string", required=True, report_as="missing"),),
}


def _check_image(block: dict[str, Any], path: str) -> None:
    check(block, (Rule("source", "object", required=True, report_as="missing"),), DIALECT, f"{path}.image")
    stype = block["source"].get("type")
    rules = IMAGE_SOURCES.get(stype) if isinstance(stype, str) else None
    if rules is None:
        raise tag_error(f"{path}.image.source", stype, "'base64', 'url'")
    check(block["source"], rules, DIALECT, f"{path}.image.source.{stype}")


def _check_text_blocks(blocks: Any, path: str, allowed: tuple[str, ...]) -> None:
    """A system prompt or a tool result's content: a string, or a list of blocks of the ``allowed`` types."""
    if isinstance(blocks, str):
        return
    check_value(LIST, blocks, path, DIALECT)
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") not in allowed:
            tag = block.get("type") if isinstance(block, dict) else tname(block)
            raise tag_error(f"{path}.{j}", tag, _quoted(allowed))
        if block["type"] == "text":
            check(block, (TEXT,), DIALECT, f"{path}.{j}")
        elif block["type"] == "image":
            _check_image(block, f"{path}.{j}")


@dataclass
class _Turn:
    """The tool_use ids of the previous message, and the ids this message uses and answers."""

    previous: list[str]
    uses: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)


TOOL_USE = (
    Rule("id", "string", required=True, pattern=TOOL_USE_ID_RE, report_as="pattern"),
    Rule("name", "string", required=True, report_as="missing"),
    Rule("input", "object", required=True, report_as="type"),
)
TOOL_RESULT = (
    Rule("tool_use_id", "string", required=True, report_as="missing"),
    Rule("content", then=lambda content, block, path: _check_text_blocks(content, path, RESULT_BLOCKS)),
)


def _check_tool_use(block: dict[str, Any], path: str, turn: _Turn) -> None:
    check(block, TOOL_USE, DIALECT, f"{path}.tool_use")
    turn.uses.append(block["id"])


def _check_tool_result(block: dict[str, Any], path: str, turn: _Turn) -> None:
    check(block, TOOL_RESULT, DIALECT, f"{path}.tool_result")
    tid = block["tool_use_id"]
    if tid not in turn.previous:
        raise invalid(
            f"{path}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. Each `tool_result` block "
            "must have a corresponding `tool_use` block in the previous message."
        )
    turn.results.append(tid)


BLOCK_CHECKS = {
    "text": lambda block, path, turn: check(block, (TEXT,), DIALECT, f"{path}.text"),
    "image": lambda block, path, turn: _check_image(block, path),
    "tool_use": _check_tool_use,
    "tool_result": _check_tool_result,
}
ROLE = Rule("role", required=True, allowed=("user", "assistant"), report_as="not_allowed")
CONTENT = Rule("content", "string_or_array", required=True, null_is_value=True)


def _check_message(i: int, msg: Any, last: bool, previous: list[str]) -> list[str]:
    """Check one message; return its tool_use ids, which the next message must answer."""
    path = f"messages.{i}"
    check_value(ITEM, msg, path, DIALECT)
    check(msg, (ROLE,), DIALECT, path)
    role = msg["role"]
    if i == 0 and role != "user":
        raise invalid('messages: first message must use the "user" role')
    check(msg, (CONTENT,), DIALECT, path)
    content = msg["content"]
    if (content == "" or content == []) and not (role == "assistant" and last):
        raise invalid(
            f"{path}: all messages must have non-empty content except for the optional final assistant message"
        )
    turn = _Turn(previous)
    for j, block in enumerate(content if isinstance(content, list) else []):
        block_path = f"{path}.content.{j}"
        btype = block.get("type") if isinstance(block, dict) else None
        if btype not in BLOCKS[role]:
            raise tag_error(block_path, btype, _quoted(BLOCKS[role]))
        if btype in BLOCK_CHECKS:
            BLOCK_CHECKS[btype](block, block_path, turn)
    unanswered = [t for t in previous if t not in turn.results]
    if unanswered:
        raise invalid(
            f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(unanswered)}. Each `tool_use` block must have a corresponding `tool_result` block in "
            "the next message."
        )
    return turn.uses


def _check_messages(messages: list[Any], body: dict[str, Any], path: str) -> None:
    previous: list[str] = []
    for i, msg in enumerate(messages):
        previous = _check_message(i, msg, i == len(messages) - 1, previous)


TOOL_NAME = Rule("name", "string", required=True, report_as="missing")
CUSTOM_TOOL = (
    Rule("name", pattern=TOOL_NAME_RE),
    Rule(
        "input_schema",
        "object",
        required=True,
        report_as="missing",
        then=nested((Rule("type", required=True, allowed=("object",), report_as="not_allowed"),), DIALECT),
    ),
)


def _check_tools(tools: list[Any], body: dict[str, Any], path: str) -> None:
    names: list[str] = []
    for k, tool in enumerate(tools):
        tool_path = f"tools.{k}"
        check_value(ITEM, tool, tool_path, DIALECT)
        ttype = tool.get("type")
        custom = ttype in (None, "custom")
        if not custom and not SERVER_TOOL_RE.match(str(ttype)):
            raise tag_error(tool_path, ttype, "'custom' or a server tool type such as 'web_search_20250305'")
        check(tool, (TOOL_NAME, *(CUSTOM_TOOL if custom else ())), DIALECT, f"{tool_path}.custom")
        if tool["name"] in names:
            raise invalid("tools: Tool names must be unique.")
        names.append(tool["name"])


CHOICE_TYPES = ("auto", "any", "tool", "none")


def _check_tool_choice(choice: Any, body: dict[str, Any], path: str) -> None:
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype not in CHOICE_TYPES:
        raise tag_error("tool_choice", ctype, _quoted(CHOICE_TYPES))
    if ctype != "none" and not body.get("tools"):
        raise invalid("tool_choice may only be specified while providing tools.")
    if ctype == "tool":
        check(choice, (TOOL_NAME,), DIALECT, "tool_choice.tool")
        if choice["name"] not in [tool["name"] for tool in body["tools"]]:
            raise invalid(f"Tool '{choice['name']}' not found in provided tools")


def _not_an_openai_model(model: str, body: dict[str, Any], path: str) -> None:
    if model.startswith(OPENAI_MODEL_PREFIXES):
        raise ApiError(f"model: {model}", 404, "not_found_error")


def _nonblank(stops: list[str], body: dict[str, Any], path: str) -> None:
    if any(not s.strip() for s in stops):
        raise invalid("stop_sequences: each stop sequence must contain non-whitespace")


# The request body's fields, checked in this order (the first failure is the answer).
RULES = (
    Rule("model", "string", required=True, min_items=1, wording={"*": "model: Field required"},
         then=_not_an_openai_model),
    Rule("max_tokens", "integer", required=True, low=1),
    Rule("messages", "array", required=True, min_items=1,
         wording={"too_few": "messages: at least one message is required"}),
    Rule("system", then=lambda system, body, path: _check_text_blocks(system, path, ("text",))),
    Rule("messages", then=_check_messages),  # after the system prompt, as the real API checks them
    Rule("stop_sequences", "strings", then=_nonblank),
    Rule("temperature", "number", low=0, high=1),
    Rule("top_p", "number", low=0, high=1),
    Rule("top_k", "integer", low=0, wording={"*": "{path}: Input should be a non-negative integer"}),
    Rule("stream", "boolean"),
    Rule("tools", "array", then=_check_tools),
    Rule("tool_choice", then=_check_tool_choice),
)
COUNT_RULES = tuple(rule for rule in RULES if rule.field != "max_tokens")  # count_tokens takes no max_tokens


def validate(body: Any, count_only: bool = False) -> None:
    """Reject what the real Messages API rejects (the parts a gateway can get wrong)."""
    if not isinstance(body, dict):
        raise invalid("Input should be a valid dictionary")
    check_unknown(body, PARAMS, DIALECT)
    check(body, COUNT_RULES if count_only else RULES, DIALECT)


# ------------------------------------------------------------------------------------ request framing


def check_request(headers: dict[str, str], key: str | None) -> None:
    """``x-api-key`` (or Bearer) auth when the emulator has a key for this API; the version header."""
    if key is not None:
        given, token = headers.get("x-api-key"), bearer(headers)
        if given is None and token is None:
            raise ApiError("x-api-key header is required", 401, "authentication_error")
        if given != key and token != key:
            raise ApiError("invalid x-api-key", 401, "authentication_error")
    if "anthropic-version" not in headers:
        raise invalid("anthropic-version: header is required")


def not_found(method: str, path: str) -> ApiError:
    return ApiError(f"Not found: {path}", 404, None, None, None)


def bad_json() -> ApiError:
    return invalid("There was an error parsing the body of your request as JSON")


def no_body() -> ApiError:
    return invalid("messages: Field required")


# ------------------------------------------------------------------------------------------- answers


def count(body: dict[str, Any]) -> int:
    """Input tokens: words of the system prompt, the messages' text and their tool results."""
    total = words(text_of(body.get("system")))
    for msg in body["messages"]:
        content = msg["content"]
        total += words(text_of(content))
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_result":
                    total += words(text_of(block.get("content")))
    return total


def _tool_to_call(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    callable_tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {}
    if body["messages"][-1]["role"] != "user" or not callable_tools or choice.get("type") == "none":
        return None
    wanted = choice.get("name") if choice.get("type") == "tool" else None
    found = next((t for t in callable_tools if wanted is None or t["name"] == wanted), None)
    return None if found is None else (found["name"], found.get("input_schema") or {})


def answer(body: dict[str, Any]) -> Answer:
    messages = body["messages"]
    last = messages[-1]
    content = last["content"]
    results = [b for b in content if b.get("type") == "tool_result"] if isinstance(content, list) else []
    tool: tuple[str, dict[str, Any]] | None = None
    if last["role"] == "user" and results:
        prompt = "Tool said: " + " ".join(text_of(b.get("content")) for b in results)
    else:
        user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        prompt = "Echo: " + (text_of(user["content"]) if user else "")
        tool = _tool_to_call(body)
    return make_answer(prompt, count(body), tool, body["max_tokens"], body.get("stop_sequences") or [])


STOP = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool": "tool_use"}


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def _message(model: str, content: list[dict[str, Any]], stop_reason: str | None, stop_sequence: str | None,
             usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def message(ans: Answer, model: str) -> dict[str, Any]:
    if ans.tool_name is not None:
        content = [{"type": "tool_use", "id": new_id("toolu_"), "name": ans.tool_name, "input": ans.tool_args}]
    else:
        content = [{"type": "text", "text": ans.text}]
    return _message(model, content, STOP[ans.finish], ans.stop_sequence, _usage(ans.input_tokens, ans.output_tokens))


def _block_and_deltas(ans: Answer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if ans.tool_name is None:
        return {"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in word_pieces(ans.text)]
    block = {"type": "tool_use", "id": new_id("toolu_"), "name": ans.tool_name, "input": {}}
    return block, [{"type": "input_json_delta", "partial_json": ""}] + [
        {"type": "input_json_delta", "partial_json": f} for f in fragments(dumps(ans.tool_args).decode())
    ]


def events(ans: Answer, model: str) -> list[bytes]:
    start = _message(model, [], None, None, _usage(ans.input_tokens, 1))
    block, deltas = _block_and_deltas(ans)
    return [
        named_event("message_start", {"type": "message_start", "message": start}),
        named_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        named_event("ping", {"type": "ping"}),
        *(
            named_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            for delta in deltas
        ),
        named_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": STOP[ans.finish], "stop_sequence": ans.stop_sequence},
                "usage": {"output_tokens": ans.output_tokens},
            },
        ),
        named_event("message_stop", {"type": "message_stop"}),
    ]


# ----------------------------------------------------------------------------------------- endpoints


def messages(body: dict[str, Any], stream: bool) -> dict[str, Any] | list[bytes]:
    """POST /v1/messages: the JSON answer, or the stream's events."""
    validate(body)
    ans = answer(body)
    if thinking_enabled(body):
        check_thinking(body)
        return thinking_events(ans, body["model"]) if stream else thinking_message(ans, body["model"])
    return events(ans, body["model"]) if stream else message(ans, body["model"])


# ------------------------------------------------------------------------------------- extended thinking
# With ``thinking: {"type": "enabled"}`` an answer starts with a thinking block whose signature the API
# checks when it comes back, and a tool-use loop must hand it back: the assistant turn before the last
# tool results must start with a thinking or redacted_thinking block
# (https://docs.claude.com/en/docs/build-with-claude/extended-thinking).

THOUGHT = "Let me think about which tool answers this."


def signature_of(thinking: str) -> str:
    """The emulator's signature of a thinking text (the real one is opaque; this one is checkable)."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def check_thinking(body: dict[str, Any]) -> None:
    """Signatures of thinking blocks handed back, and the thinking block a tool-use loop must keep."""
    messages_ = body["messages"]
    for i, msg in enumerate(messages_):
        content = msg["content"]
        if msg["role"] != "assistant" or not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if block.get("type") == "thinking" and block.get("signature") != signature_of(str(block.get("thinking"))):
                raise invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    last = messages_[-1]
    results = isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"])
    if last["role"] != "user" or not results or len(messages_) < 2:
        return
    i = len(messages_) - 2
    content = messages_[i]["content"]
    first = content[0].get("type") if isinstance(content, list) and content else "text"
    if first not in ("thinking", "redacted_thinking"):
        raise invalid(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
            "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
            "previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        )


def thinking_message(ans: Answer, model: str) -> dict[str, Any]:
    out = message(ans, model)
    out["content"] = [{"type": "thinking", "thinking": THOUGHT, "signature": signature_of(THOUGHT)}, *out["content"]]
    return out


def thinking_events(ans: Answer, model: str) -> list[bytes]:
    """The stream of ``events`` with a thinking block first (thinking_delta, signature_delta): the answer's
    own block moves to index 1."""
    out: list[bytes] = []
    for raw in events(ans, model):
        head, _, data = raw.partition(b"\ndata: ")
        payload = loads(data)
        if "index" in payload:
            payload["index"] += 1
        out.append(named_event(head[len(b"event: "):].decode(), payload))
        if payload["type"] == "message_start":
            out.extend(_thinking_block())
    return out


def _thinking_block() -> list[bytes]:
    def at(kind: str, **data: Any) -> bytes:
        return named_event(kind, {"type": kind, "index": 0, **data})

    return [
        at("content_block_start", content_block={"type": "thinking", "thinking": "", "signature": ""}),
        *(at("content_block_delta", delta={"type": "thinking_delta", "thinking": piece})
          for piece in word_pieces(THOUGHT)),
        at("content_block_delta", delta={"type": "signature_delta", "signature": signature_of(THOUGHT)}),
        at("content_block_stop"),
    ]



def count_tokens(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """POST /v1/messages/count_tokens."""
    validate(body, count_only=True)
    return {"input_tokens": count(body)}


def stream_error(message: str | None) -> bytes:
    """The event that ends a stream with an error (``Fault.error_after``)."""
    return named_event("error", error_body(529, message or "Overloaded"))


def garbage_stream(data: bytes) -> list[bytes]:
    return [b"event: message_start\ndata: " + data + b"\n\n"] * 3


def model_card(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}


def model_list(ids: list[str]) -> dict[str, Any]:
    data = [model_card(m) for m in ids]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }

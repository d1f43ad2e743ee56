"""The OpenAI Responses API (https://platform.openai.com/docs/api-reference/responses): create (JSON and
streamed), retrieve, delete and list input items, with the checks the real API makes that a gateway can
get wrong: unknown parameters, the item shapes, function tools, a ``previous_response_id`` it never issued,
a function call left without its output. Stored responses live in the emulator process (``store``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .answers import Answer, make_answer, words
from .openai import invalid, missing
from .wire import ApiError, dumps, fragments, named_event, new_id, word_pieces

PATH = "/v1/responses"
PARAMS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "reasoning", "stream", "stream_options", "store", "previous_response_id", "include",
    "metadata", "user", "text", "truncation", "background", "service_tier", "safety_identifier",
    "prompt_cache_key", "max_tool_calls", "top_logprobs", "prompt", "conversation",
})
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
ROLES = ("user", "assistant", "system", "developer")

_lock = threading.Lock()
_stored: dict[str, dict[str, Any]] = {}  # response id -> {"response", "input", "conversation"}


def _not_found(rid: str) -> ApiError:
    return ApiError(f"Response with id '{rid}' not found.", 404, "invalid_request_error", None, None)


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'input': expected one of a string or array of input items.", "input",
                      "invalid_type")
    for i, item in enumerate(raw):
        p = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"Invalid type for '{p}': expected an object.", p, "invalid_type")
        kind = item.get("type", "message")
        if kind not in ITEM_TYPES:
            raise invalid(f"Invalid value: '{kind}'. Supported values are: " + ", ".join(ITEM_TYPES), f"{p}.type",
                          "invalid_value")
        if kind == "message":
            if item.get("role") not in ROLES:
                raise invalid(f"Invalid value: '{item.get('role')}'.", f"{p}.role", "invalid_value")
            if "content" not in item:
                raise missing(f"{p}.content")
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise missing(f"{p}.{key}")
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise missing(f"{p}.call_id")
            if "output" not in item:
                raise missing(f"{p}.output")
    return raw


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
    return ""


def _check_calls(conversation: list[dict[str, Any]]) -> None:
    """Every function call answered by a function_call_output before the next message (as the API requires)."""
    pending: dict[str, int] = {}
    for i, item in enumerate(conversation):
        kind = item.get("type", "message")
        if kind == "function_call":
            pending[item["call_id"]] = i
        elif kind == "function_call_output":
            if item["call_id"] not in pending:
                raise invalid(f"No tool call found for function call output with call_id {item['call_id']}.",
                              "input")
            pending.pop(item["call_id"])
    if pending:
        raise invalid(f"No tool output found for function call {next(iter(pending))}.", "input")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") is None:
            raise missing(f"tools[{i}].type")
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise missing(f"tools[{i}].name")
        if "function" in tool:  # the Chat Completions shape, which this API refuses
            raise invalid(f"Unknown parameter: 'tools[{i}].function'.", f"tools[{i}].function", "unknown_parameter")


def validate(body: Any) -> list[dict[str, Any]]:
    """The request's whole conversation (stored history, then this input), or the API's 400."""
    if not isinstance(body, dict):
        raise invalid("We could not parse the JSON body of your request.")
    for key in body:
        if key not in PARAMS:
            raise invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise missing("model")
    if body["model"].startswith("claude"):
        raise ApiError(f"The model `{body['model']}` does not exist or you do not have access to it.", 404,
                       "invalid_request_error", "model", "model_not_found")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < 16):
        raise invalid(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got "
                      f"{limit} instead.", "max_output_tokens", "integer_below_min_value")
    _check_tools(body)
    items = _items(body)
    history: list[dict[str, Any]] = []
    prev = body.get("previous_response_id")
    if prev is not None:
        with _lock:
            stored = _stored.get(prev)
        if stored is None:
            raise invalid(f"Previous response with id '{prev}' not found.", "previous_response_id",
                          "previous_response_not_found")
        history = stored["conversation"]
    if not items and not history:
        raise missing("input")
    conversation = history + items
    _check_calls(conversation)
    return conversation


def _answer(body: dict[str, Any], conversation: list[dict[str, Any]]) -> Answer:
    input_tokens = sum(words(_text(i)) for i in conversation if i.get("type", "message") == "message")
    input_tokens += words(body.get("instructions") or "")
    last = conversation[-1]
    tool = None
    if last.get("type") == "function_call_output":
        outputs = []
        for item in reversed(conversation):
            if item.get("type") != "function_call_output":
                break
            outputs.append(item["output"] if isinstance(item["output"], str) else _text({"content": item["output"]}))
        prompt = "Tool said: " + " ".join(reversed(outputs))
    else:
        user = next((i for i in reversed(conversation) if i.get("role") == "user"), {})
        prompt = "Echo: " + _text(user)
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        choice = body.get("tool_choice")
        if tools and choice != "none":
            wanted = choice.get("name") if isinstance(choice, dict) else None
            fn = next(t for t in tools if wanted is None or t["name"] == wanted)
            tool = (fn["name"], fn.get("parameters") or {})
    return make_answer(prompt, input_tokens, tool, body.get("max_output_tokens"), [])


def _usage(ans: Answer) -> dict[str, Any]:
    return {"input_tokens": ans.input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": ans.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": ans.input_tokens + ans.output_tokens}


def _output(ans: Answer) -> list[dict[str, Any]]:
    if ans.tool_name is not None:
        return [{"type": "function_call", "id": new_id("fc_", 48), "call_id": new_id("call_"),
                 "name": ans.tool_name, "arguments": dumps(ans.tool_args).decode(), "status": "completed"}]
    return [{"type": "message", "id": new_id("msg_", 48), "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": ans.text, "annotations": [], "logprobs": []}]}]


def _response(body: dict[str, Any], ans: Answer | None, status: str) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if ans is not None and ans.finish == "length" else None
    return {
        "id": new_id("resp_", 48), "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status, "background": bool(body.get("background")),
        "error": None, "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body["model"] + "-2025-04-14",
        "output": _output(ans) if ans is not None else [], "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": _usage(ans) if ans is not None else None, "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _keep(body: dict[str, Any], resp: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
    if body.get("store", True) is False:
        return
    inputs = [{"id": new_id("msg_", 48), **i} if "id" not in i else i for i in _items(body)]
    with _lock:
        _stored[resp["id"]] = {"response": resp, "input": inputs, "conversation": conversation + resp["output"]}


def _events(resp: dict[str, Any]) -> list[bytes]:
    seq = iter(range(10**6))

    def ev(kind: str, **fields: Any) -> bytes:
        return named_event(kind, {"type": kind, "sequence_number": next(seq), **fields})

    start = {**resp, "status": "in_progress", "output": [], "usage": None}
    out = [ev("response.created", response=start), ev("response.in_progress", response=start)]
    for n, item in enumerate(resp["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            out.append(ev("response.output_item.added", output_index=n,
                          item={**item, "status": "in_progress", "content": []}))
            out.append(ev("response.content_part.added", item_id=item["id"], output_index=n, content_index=0,
                          part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
            for piece in word_pieces(text):
                out.append(ev("response.output_text.delta", item_id=item["id"], output_index=n, content_index=0,
                              delta=piece, logprobs=[]))
            out.append(ev("response.output_text.done", item_id=item["id"], output_index=n, content_index=0,
                          text=text, logprobs=[]))
            out.append(ev("response.content_part.done", item_id=item["id"], output_index=n, content_index=0,
                          part=item["content"][0]))
        else:
            out.append(ev("response.output_item.added", output_index=n,
                          item={**item, "status": "in_progress", "arguments": ""}))
            for frag in fragments(item["arguments"]):
                out.append(ev("response.function_call_arguments.delta", item_id=item["id"], output_index=n,
                              delta=frag))
            out.append(ev("response.function_call_arguments.done", item_id=item["id"], output_index=n,
                          name=item["name"], arguments=item["arguments"]))
        out.append(ev("response.output_item.done", output_index=n, item=item))
    kind = "response.completed" if resp["status"] == "completed" else "response.incomplete"
    out.append(ev(kind, response=resp))
    return out


def create(body: dict[str, Any], stream: bool) -> dict[str, Any] | list[bytes]:
    """POST /v1/responses."""
    conversation = validate(body)
    if body.get("background") is True:
        resp = _response(body, None, "queued")
        _keep(body, resp, conversation)
        return resp
    resp = _response(body, _answer(body, conversation), "completed")
    _keep(body, resp, conversation)
    return _events(resp) if stream else resp


def by_id(method: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
    """GET / DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items."""
    parts = path[len(PATH) + 1:].split("/")
    rid = parts[0]
    with _lock:
        stored = _stored.get(rid)
        if stored is None:
            raise _not_found(rid)
        if len(parts) == 1 and method == "DELETE":
            del _stored[rid]
            return {"id": rid, "object": "response", "deleted": True}
    if len(parts) == 1 and method == "GET":
        return stored["response"]
    if parts[1:] == ["input_items"] and method == "GET":
        items = list(stored["input"])
        if query.get("order", ["desc"])[-1] == "desc":
            items.reverse()
        return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None, "has_more": False}
    raise ApiError(f"Invalid URL ({method} {path})", 404, None, None, "unknown_url")


def stream_error(message: str | None) -> bytes:
    """The ``error`` event that ends a Responses stream (``Fault.error_after``)."""
    return named_event("error", {"type": "error", "code": "server_error", "param": None, "sequence_number": 0,
                                 "message": message or "The server had an error while processing your request."})

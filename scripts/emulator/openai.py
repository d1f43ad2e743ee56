"""The OpenAI Chat Completions API: its validation table, the answer, JSON and streamed replies, errors."""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .answers import Answer, make_answer, text_of, words
from .validation import Dialect, Rule, check, check_items, check_unknown, check_value, nested, tname
from .wire import ApiError, bearer, data_event, dumps, fragments, new_id, word_pieces

ID_HEADER = "x-request-id"
MODEL_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-")  # models this API serves, not Anthropic's

# --------------------------------------------------------------------------------------------- errors

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """An error body as the API sends it for ``status`` (injected faults, stream error events)."""
    default_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": default_type, "param": None, "code": ERROR_CODES.get(status)}}


def render_error(err: ApiError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": err.etype or "invalid_request_error",
            "param": err.param,
            "code": err.code,
        }
    }


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(message, 400, "invalid_request_error", param, code)


def missing(path: str) -> ApiError:
    return invalid(f"Missing required parameter: '{path}'.", path, "missing_required_parameter")


EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "string_or_strings": "one of a string or array of strings",
    "string_or_object": "one of a string or object",
    "string_or_array": "one of a string or array of objects",
}


def _too_few(rule: Rule, path: str, value: Any) -> ApiError:
    return invalid(
        f"Invalid '{path}': empty array. Expected an array with minimum length {rule.min_items}, but got an "
        "empty array instead.",
        path,
        "empty_array",
    )


def _out_of_range(rule: Rule, path: str, value: Any, side: str) -> ApiError:
    bound, sign = (rule.low, ">=") if side == "below" else (rule.high, "<=")
    if rule.kind == "integer":
        return invalid(
            f"Invalid '{path}': integer {side} {'minimum' if side == 'below' else 'maximum'} value. Expected a "
            f"value {sign} {bound}, but got {value} instead.",
            path,
            f"integer_{side}_{'min' if side == 'below' else 'max'}_value",
        )
    return invalid(
        f"Invalid '{path}': {value}. Expected a value between {rule.low} and {rule.high}.",
        path,
        f"decimal_{side}_{'min' if side == 'below' else 'max'}_value",
    )


class OpenAIDialect(Dialect):
    reasons = {
        "missing": lambda rule, path, value: missing(path),
        "type": lambda rule, path, value: invalid(
            f"Invalid type for '{path}': expected {EXPECTED[rule.kind]}, but got {tname(value)} instead.",
            path,
            "invalid_type",
        ),
        "too_few": _too_few,
        "too_many": lambda rule, path, value: invalid(
            f"Invalid '{path}': array too long. Expected an array with maximum length {rule.max_items}, but got "
            f"an array with length {len(value)} instead.",
            path,
            "array_above_max_length",
        ),
        "below": lambda rule, path, value: _out_of_range(rule, path, value, "below"),
        "above": lambda rule, path, value: _out_of_range(rule, path, value, "above"),
        "not_allowed": lambda rule, path, value: invalid(
            f"Invalid value: '{value}'. Supported values are: " + ", ".join(f"'{a}'" for a in rule.allowed) + ".",
            path,
            "invalid_value",
        ),
        "pattern": lambda rule, path, value: invalid(
            f"Invalid '{path}': string does not match pattern. Expected a string that matches the pattern "
            f"'{rule.pattern.pattern}'.",
            path,
            "invalid_value",
        ),
        "needs": lambda rule, path, value: invalid(
            f"Invalid value for '{path}': '{path}' is only allowed when '{rule.needs}' are specified.", path
        ),
    }

    def worded(self, message: str, rule: Rule, path: str) -> ApiError:
        return invalid(message, path, rule.code)

    def unknown(self, name: str) -> ApiError:
        return invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")


DIALECT = OpenAIDialect()

# ----------------------------------------------------------------------------------------- validation

PARAMS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
PART_TYPES = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DATA_URL_RE = re.compile(r"^data:(image/(?:jpeg|png|gif|webp));base64,(.*)$", re.S)

ITEM = Rule("item", "object", required=True, report_as="type")  # an array's item must be an object


def _check_image_part(part: dict[str, Any], path: str) -> None:
    image = part.get("image_url")
    url_path = f"{path}.image_url.url"
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        raise missing(url_path)
    url = image["url"]
    if url.startswith("data:"):
        match = DATA_URL_RE.match(url)
        if not match:
            raise invalid(
                "Invalid image URL: expected a base64 data URL of image/jpeg, image/png, image/gif or image/webp.",
                url_path,
                "invalid_image_url",
            )
        try:
            base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise invalid("Invalid base64 image data.", url_path, "invalid_image_format") from None
    elif not url.startswith(("http://", "https://")):
        raise invalid(f"Invalid 'image_url.url': '{url[:40]}'. Expected a valid URL.", url_path, "invalid_image_url")


# A content part's type, per role; then what each type needs.
PART_TYPE_RULES = {role: (Rule("type", required=True, allowed=types),) for role, types in PART_TYPES.items()}
PART_CHECKS = {
    "text": lambda part, path: check(part, (Rule("text", "string", required=True, report_as="type"),), DIALECT, path),
    "refusal": lambda part, path: check(
        part, (Rule("refusal", "string", required=True, report_as="type"),), DIALECT, path
    ),
    "image_url": _check_image_part,
}
CONTENT_KIND = Rule("content", "string_or_array", required=True, report_as="type")


def _check_content(content: Any, msg: dict[str, Any], path: str) -> None:
    check_value(CONTENT_KIND, content, path, DIALECT)
    if isinstance(content, str):
        return
    for j, part in enumerate(content):
        part_path = f"{path}[{j}]"
        check_value(ITEM, part, part_path, DIALECT)
        check(part, PART_TYPE_RULES[msg["role"]], DIALECT, part_path)
        check_part = PART_CHECKS.get(part["type"])
        if check_part is not None:
            check_part(part, part_path)


@dataclass
class _ToolCalls:
    """The tool calls awaiting their tool messages, while the messages are read in order."""

    pending: dict[str, int] = field(default_factory=dict)  # tool_call_id -> index of the assistant message
    run: set[str] = field(default_factory=set)  # ids of the assistant message the current tool messages answer

    def unanswered(self) -> ApiError:
        return invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            "'tool_call_id'. The following tool_call_ids did not have response messages: "
            + ", ".join(self.pending),
            f"messages.[{min(self.pending.values())}].role",
        )


ROLE = Rule(
    "role",
    required=True,
    allowed=ROLES,
    code="invalid_value",
    wording={
        "not_allowed": "Invalid value: '{value}'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'."
    },
)
CONTENT = Rule("content", required=True, then=_check_content)


def _function(*rules: Rule) -> Rule:
    """The ``function`` object of a tool call or a tool: required, with a name, then ``rules``."""
    name = Rule("name", "string", required=True, report_as="missing")
    return Rule("function", "object", required=True, report_as="missing", then=nested((name, *rules), DIALECT))


TOOL_CALL = (
    Rule("id", "string", required=True, min_items=1, report_as="missing"),
    Rule("type", required=True, null_is_value=True, allowed=("function",)),
    _function(Rule("arguments", "string", required=True, report_as="type")),
)
ASSISTANT = (Rule("content", then=_check_content), Rule("tool_calls", "array"))
TOOL_MESSAGE = (Rule("tool_call_id", "string", required=True, report_as="missing"), CONTENT)


def _check_assistant(i: int, msg: dict[str, Any], path: str, calls: _ToolCalls) -> None:
    if msg.get("content") is None and not msg.get("tool_calls") and not msg.get("function_call"):
        raise invalid("Invalid value for 'content': expected a string, got null.", f"{path}.content")
    check(msg, ASSISTANT, DIALECT, path)
    calls.run = set()
    tool_calls = msg.get("tool_calls") or []
    check_items(tool_calls, ITEM, TOOL_CALL, DIALECT, path + ".tool_calls[{}]")
    for call in tool_calls:
        calls.run.add(call["id"])
        calls.pending[call["id"]] = i


def _check_tool_message(i: int, msg: dict[str, Any], path: str, calls: _ToolCalls) -> None:
    check(msg, TOOL_MESSAGE, DIALECT, path)
    if msg["tool_call_id"] not in calls.run:
        raise invalid(
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            "'tool_calls'.",
            f"messages.[{i}].role",
        )
    calls.pending.pop(msg["tool_call_id"], None)


def _check_other_message(i: int, msg: dict[str, Any], path: str, calls: _ToolCalls) -> None:
    check(msg, (CONTENT,), DIALECT, path)
    calls.run = set()


ROLE_CHECKS = {"assistant": _check_assistant, "tool": _check_tool_message}


def _check_messages(messages: list[Any], body: dict[str, Any], path: str) -> None:
    calls = _ToolCalls()
    for i, msg in enumerate(messages):
        msg_path = f"messages[{i}]"
        check_value(ITEM, msg, msg_path, DIALECT)
        check(msg, (ROLE,), DIALECT, msg_path)
        if msg["role"] != "tool" and calls.pending:
            raise calls.unanswered()
        ROLE_CHECKS.get(msg["role"], _check_other_message)(i, msg, msg_path, calls)
    if calls.pending:
        raise calls.unanswered()


TOOL = (
    Rule(
        "type",
        required=True,
        null_is_value=True,
        allowed=("function",),
        code="invalid_value",
        wording={"not_allowed": "Invalid value: '{value}'. Supported values are: 'function' and 'custom'."},
    ),
    _function(
        Rule(
            "name",
            pattern=TOOL_NAME_RE,
            code="invalid_value",
            wording={
                "pattern": "Invalid '{path}': string does not match pattern. Expected a string that matches the "
                "pattern '^[a-zA-Z0-9_-]+$'."
            },
        ),
        Rule("parameters", "object", null_is_value=True),
    ),
)
CHOICE_VALUE = Rule(
    "tool_choice",
    allowed=("none", "auto", "required"),
    code="invalid_value",
    wording={"not_allowed": "Invalid value: '{value}'. Supported values are: 'none', 'auto', and 'required'."},
)


def _check_tool_choice(choice: Any, body: dict[str, Any], path: str) -> None:
    if isinstance(choice, str):
        check_value(CHOICE_VALUE, choice, path, DIALECT)
        return
    fn = choice.get("function")
    if choice.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise missing("tool_choice.function.name")
    if fn["name"] not in [tool["function"]["name"] for tool in body["tools"]]:
        raise invalid(
            f"Invalid value for 'tool_choice': tool '{fn['name']}' is not one of the provided tools.", "tool_choice"
        )


def _not_an_anthropic_model(model: str, body: dict[str, Any], path: str) -> None:
    if model.startswith("claude"):
        raise ApiError(
            f"The model `{model}` does not exist or you do not have access to it.",
            404,
            "invalid_request_error",
            "model",
            "model_not_found",
        )


# The request body's fields, checked in this order (the first failure is the answer).
RULES = (
    Rule(
        "model", "string", required=True, min_items=1, wording={"*": "you must provide a model parameter"},
        then=_not_an_anthropic_model,
    ),
    Rule("messages", "array", required=True, min_items=1, then=_check_messages),
    Rule("tools", "array", then=lambda tools, body, path: check_items(tools, ITEM, TOOL, DIALECT, "tools[{}]")),
    Rule("tool_choice", "string_or_object", needs="tools", then=_check_tool_choice),
    Rule("max_tokens", "integer", low=1),
    Rule("max_completion_tokens", "integer", low=1),
    Rule("stop", "string_or_strings", max_items=4),
    Rule("temperature", "number", low=0, high=2),
    Rule("top_p", "number", low=0, high=1),
    Rule("frequency_penalty", "number", low=-2, high=2),
    Rule("presence_penalty", "number", low=-2, high=2),
    Rule("stream", "boolean"),
    Rule(
        "stream_options",
        "object",
        needs="stream",
        wording={"needs": "The 'stream_options' parameter is only allowed when 'stream' is enabled."},
    ),
    Rule("n", allowed=(1,), wording={"*": "The emulator supports only n=1."}, code="unsupported_value"),
)


def validate(body: Any) -> None:
    """Reject what the real Chat Completions API rejects (the parts a gateway can get wrong)."""
    if not isinstance(body, dict):
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
    check_unknown(body, PARAMS, DIALECT)
    check(body, RULES, DIALECT)


# ------------------------------------------------------------------------------------ request framing


def check_request(headers: dict[str, str], key: str | None) -> None:
    """Bearer auth, when the emulator has a key for this API."""
    if key is None:
        return
    given = bearer(headers)
    if given is None:
        raise ApiError(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            401,
            "invalid_request_error",
            None,
            None,
        )
    if given != key:
        raise ApiError(
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            401,
            "invalid_request_error",
            None,
            "invalid_api_key",
        )


def not_found(method: str, path: str) -> ApiError:
    return ApiError(f"Invalid URL ({method} {path})", 404, None, None, "unknown_url")


def bad_json() -> ApiError:
    return invalid(
        "We could not parse the JSON body of your request. (HINT: This likely "
        "means you aren't using your HTTP library correctly. The OpenAI API "
        "expects a JSON payload, but what was sent was not valid JSON.)"
    )


def no_body() -> ApiError:
    return missing("messages")


# ------------------------------------------------------------------------------------------- answers


def _tool_to_call(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if body["messages"][-1]["role"] != "user" or not tools or choice == "none":
        return None
    wanted = choice["function"]["name"] if isinstance(choice, dict) else None
    fn = next(t["function"] for t in tools if wanted is None or t["function"]["name"] == wanted)
    return fn["name"], fn.get("parameters") or {}


def answer(body: dict[str, Any]) -> Answer:
    messages = body["messages"]
    input_tokens = sum(words(text_of(m.get("content"))) for m in messages)
    tool: tuple[str, dict[str, Any]] | None = None
    if messages[-1]["role"] == "tool":
        texts: list[str] = []
        for msg in reversed(messages):
            if msg["role"] != "tool":
                break
            texts.append(text_of(msg.get("content")))
        prompt = "Tool said: " + " ".join(reversed(texts))
    else:
        user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        prompt = "Echo: " + (text_of(user.get("content")) if user else "")
        tool = _tool_to_call(body)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop or [])
    return make_answer(prompt, input_tokens, tool, max_tokens, stops)


FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}


def _usage(ans: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": ans.input_tokens,
        "completion_tokens": ans.output_tokens,
        "total_tokens": ans.input_tokens + ans.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(ans: Answer, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if ans.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": ans.tool_name, "arguments": dumps(ans.tool_args).decode()},
            }
        ]
    else:
        message["content"] = ans.text
    return {
        "id": new_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH[ans.finish]}],
        "usage": _usage(ans),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }


def _deltas(ans: Answer) -> list[dict[str, Any]]:
    """The ``delta`` of each chunk before the finishing one."""
    if ans.tool_name is None:
        return [{"role": "assistant", "content": "", "refusal": None}] + [
            {"content": piece} for piece in word_pieces(ans.text)
        ]
    first = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "index": 0,
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": ans.tool_name, "arguments": ""},
            }
        ],
    }
    return [first] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}
        for frag in fragments(dumps(ans.tool_args).decode())
    ]


def events(ans: Answer, model: str, include_usage: bool) -> list[bytes]:
    base = {
        "id": new_id("chatcmpl-", 29),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            obj["usage"] = None
        return data_event(obj)

    out = [chunk(delta) for delta in _deltas(ans)]
    out.append(chunk({}, FINISH[ans.finish]))
    if include_usage:
        out.append(data_event({**base, "choices": [], "usage": _usage(ans)}))
    out.append(b"data: [DONE]\n\n")
    return out


# ----------------------------------------------------------------------------------------- endpoints


def chat(body: dict[str, Any], stream: bool) -> dict[str, Any] | list[bytes]:
    """POST /v1/chat/completions: the JSON answer, or the stream's events."""
    validate(body)
    ans = answer(body)
    if stream:
        return events(ans, body["model"], bool((body.get("stream_options") or {}).get("include_usage")))
    return completion(ans, body["model"])


def stream_error(message: str | None) -> bytes:
    """The event that ends a stream with an error (``Fault.error_after``)."""
    return data_event(error_body(500, message or "The server had an error while processing your request."))


def garbage_stream(data: bytes) -> list[bytes]:
    return [b"data: " + data + b"\n\n"] * 3 + [b"data: [DONE]\n\n"]


CREATED = 1715367049


def model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "system"}


def model_list(ids: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(m) for m in ids]}

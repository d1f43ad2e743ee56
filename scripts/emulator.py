#!/usr/bin/env python3
"""Local OpenAI + Anthropic provider emulator, over real HTTP.

Why it exists: the gateway must run (``scripts/serve``), be tested and be benchmarked on a machine with no
internet and no provider keys. The emulator speaks both wire formats closely enough that the official SDKs
parse its output, validates requests like the real APIs (so gateway translation bugs show up as 400s), and
injects faults (status codes, garbage, slow answers, dripping or cut streams, hangs) on demand.

Deterministic behaviour, so tests can assert on translation:

* answer text = ``"Echo: " + text of the last user message`` (text parts joined with a space); when the
  last message is a tool result (OpenAI trailing ``role: tool`` messages, Anthropic ``tool_result`` blocks)
  it is ``"Tool said: " + their text`` (joined with a space).
* input tokens = whitespace-separated words over all system / message text (text parts and tool results;
  images, tool-call arguments and tool definitions are not counted); output tokens = words of the answer
  (for a tool call: 1 + number of arguments).
* a stop sequence found in the answer cuts the text just before it (``stop`` / ``stop_sequence``);
  ``max_tokens`` smaller than the word count keeps that many words (``length`` / ``max_tokens``).
* when tools are given, tool_choice is not ``none`` and the last message is user text, the answer is one
  call of the first (or forced) tool whose required properties are filled by type: string ``"test"``,
  number/integer ``1``, boolean ``true``, array ``[]``, object ``{}``.

Run ``python scripts/emulator.py --help`` for the CLI; see :class:`Emulator` and :class:`Fault` for the API.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:  # orjson is faster; the stdlib fallback keeps the script usable anywhere.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a runtime dependency of the project
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    _loads = json.loads

__all__ = ["DEFAULT_MODELS", "Emulator", "Fault", "RecordedRequest", "main"]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "o3-mini",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
)
_OPENAI_MODEL_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-")
_CONTROL_PREFIX = "/_emulator/"
_GARBAGE_KINDS = ("text", "json", "html")


# --------------------------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One injected misbehaviour; fields combine (e.g. ``delay`` then ``status``).

    status       answer with this HTTP status and an error body in the provider's shape
    retry_after  ``retry-after`` header value in seconds (sent with any response of this fault)
    message      error message for ``status`` / ``error_after`` (default: a realistic one)
    body         raw body for ``status`` instead of the provider error (str, bytes or JSON-able)
    headers      extra response headers
    garbage      200 with a bad body: ``True``/``"text"`` non-JSON with the expected content type,
                 ``"json"`` valid JSON of the wrong shape, ``"html"`` a text/html proxy page
    delay        seconds to wait before the response headers (slow answer / slow first byte)
    drip         seconds between SSE events (between body pieces for JSON answers)
    cut_after    streams: close abruptly after this many SSE events, without the terminal event;
                 JSON: close after this many body bytes (Content-Length announces the full body)
    error_after  streams only: after this many events send an error event in the stream's format, then end
    hang         read the request, then never answer until the emulator stops or the client goes away
    """

    status: int | None = None
    retry_after: float | str | None = None
    message: str | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    garbage: bool | str = False
    delay: float = 0.0
    drip: float = 0.0
    cut_after: int | None = None
    error_after: int | None = None
    hang: bool = False

    def __post_init__(self) -> None:
        if self.garbage is True:
            self.garbage = "text"
        if self.garbage and self.garbage not in _GARBAGE_KINDS:
            raise ValueError(f"Fault.garbage must be one of {_GARBAGE_KINDS} or a bool, got {self.garbage!r}")
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status!r}")
        for name in ("delay", "drip"):
            if getattr(self, name) < 0:
                raise ValueError(f"Fault.{name} must be >= 0")
        for name in ("cut_after", "error_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Fault.{name} must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from the control API's JSON; unknown keys are an error so typos do not pass silently."""
        if not isinstance(data, dict):
            raise ValueError(f"a fault must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown fault field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults, for readable listings."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value if not isinstance(value, bytes) else value.decode("utf-8", "replace")
        return out


def _as_fault(value: Fault | dict[str, Any]) -> Fault:
    """Accept a Fault, a dict, or a Fault from another import of this file (tests may load it twice)."""
    if isinstance(value, Fault):
        return value
    if type(value).__name__ == "Fault" and hasattr(value, "__dataclass_fields__"):
        return Fault(**{f.name: getattr(value, f.name) for f in fields(Fault)})
    return Fault.from_dict(value)


# ------------------------------------------------------------------------------------------ recording


@dataclass
class RecordedRequest:
    """A request as the emulator saw it; also readable as a dict (``rec["body"]``) for convenience."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    received_at: float = 0.0
    status: int | None = None
    fault: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "received_at": self.received_at,
            "status": self.status,
            "fault": self.fault,
        }


# ------------------------------------------------------------------------------------------- errors


class _ApiError(Exception):
    """A provider error: rendered in OpenAI or Anthropic shape by the handler."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        etype: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.etype = etype
        self.param = param
        self.code = code


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERROR_TYPES = {
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
_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Request too large",
    429: "Rate limit reached, please try again later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "The server is overloaded, please try again later",
    504: "Gateway timeout",
    529: "Overloaded",
}


def _openai_error(
    status: int, message: str, etype: str | None = None, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    default_type = _OPENAI_ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {
        "error": {
            "message": message,
            "type": etype or default_type,
            "param": param,
            "code": code if code is not None else _OPENAI_ERROR_CODES.get(status),
        }
    }


def _anthropic_error(status: int, message: str, etype: str | None = None) -> dict[str, Any]:
    default_type = _ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return {"type": "error", "error": {"type": etype or default_type, "message": message}}


# ------------------------------------------------------------------------------------------- helpers


def _tname(value: Any) -> str:
    """JSON type name, for error messages that read like the real APIs'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _words(text: str) -> int:
    return len(text.split())


_PIECE_RE = re.compile(r"\s*\S+")


def _word_pieces(text: str) -> list[str]:
    """Word-sized stream deltas whose concatenation is exactly ``text``."""
    pieces = _PIECE_RE.findall(text)
    tail = text[sum(map(len, pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces.append(tail)
    return pieces


def _fragments(text: str, parts: int = 4) -> list[str]:
    """Split tool arguments into several partial-JSON fragments, like real streams do."""
    if len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _fill_value(schema: Any) -> Any:
    """Deterministic value by JSON-schema type."""
    stype = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(stype, list):
        stype = next((t for t in stype if t != "null"), "null")
    return {
        "string": "test",
        "number": 1,
        "integer": 1,
        "boolean": True,
        "array": [],
        "object": {},
        "null": None,
    }.get(stype, "test")


def _fill_arguments(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    return {name: _fill_value(props.get(name, {})) for name in required if isinstance(name, str)}


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


@dataclass
class _Answer:
    """Provider-neutral answer, rendered by each format's builders."""

    text: str = ""
    tool_name: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)
    finish: str = "stop"  # stop | length | stop_sequence | tool
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def _make_answer(
    prompt: str,
    input_tokens: int,
    tool: tuple[str, dict[str, Any]] | None,
    max_tokens: int | None,
    stops: Sequence[str],
) -> _Answer:
    if tool is not None:
        name, schema = tool
        args = _fill_arguments(schema)
        return _Answer(
            tool_name=name,
            tool_args=args,
            finish="tool",
            input_tokens=input_tokens,
            output_tokens=1 + len(args),
        )
    text, hit = prompt, None
    best: tuple[int, str] | None = None
    for stop in stops:
        if stop:
            idx = prompt.find(stop)
            if idx >= 0 and (best is None or idx < best[0]):
                best = (idx, stop)
    if best is not None:
        text, hit = prompt[: best[0]], best[1]
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        return _Answer(
            text=" ".join(words[:max_tokens]),
            finish="length",
            input_tokens=input_tokens,
            output_tokens=max_tokens,
        )
    return _Answer(
        text=text,
        finish="stop_sequence" if hit else "stop",
        stop_sequence=hit,
        input_tokens=input_tokens,
        output_tokens=len(words),
    )


# --------------------------------------------------------------------------------------- OpenAI format

_OPENAI_PARAMS = frozenset(
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
_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_OPENAI_PART_TYPES = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DATA_URL_RE = re.compile(r"^data:(image/(?:jpeg|png|gif|webp));base64,(.*)$", re.S)


def _oa_invalid(message: str, param: str | None = None, code: str | None = None) -> _ApiError:
    return _ApiError(message, 400, "invalid_request_error", param, code)


def _oa_missing(param: str) -> _ApiError:
    return _oa_invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _oa_type(param: str, expected: str, value: Any) -> _ApiError:
    return _oa_invalid(
        f"Invalid type for '{param}': expected {expected}, but got {_tname(value)} instead.",
        param,
        "invalid_type",
    )


def _oa_check_content(role: str, content: Any, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _oa_type(param, "one of a string or array of objects", content)
    allowed = _OPENAI_PART_TYPES[role]
    for j, part in enumerate(content):
        pp = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _oa_type(pp, "an object", part)
        ptype = part.get("type")
        if ptype is None:
            raise _oa_missing(f"{pp}.type")
        if ptype not in allowed:
            raise _oa_invalid(
                f"Invalid value: '{ptype}'. Supported values are: "
                + ", ".join(f"'{a}'" for a in allowed)
                + ".",
                f"{pp}.type",
                "invalid_value",
            )
        if ptype in ("text", "refusal"):
            if not isinstance(part.get(ptype), str):
                raise _oa_type(f"{pp}.{ptype}", "a string", part.get(ptype))
        elif ptype == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _oa_missing(f"{pp}.image_url.url")
            url = image["url"]
            if url.startswith("data:"):
                match = _DATA_URL_RE.match(url)
                if not match:
                    raise _oa_invalid(
                        "Invalid image URL: expected a base64 data URL of image/jpeg, image/png, "
                        "image/gif or image/webp.",
                        f"{pp}.image_url.url",
                        "invalid_image_url",
                    )
                try:
                    base64.b64decode(match.group(2), validate=True)
                except (binascii.Error, ValueError):
                    raise _oa_invalid(
                        "Invalid base64 image data.", f"{pp}.image_url.url", "invalid_image_format"
                    ) from None
            elif not url.startswith(("http://", "https://")):
                raise _oa_invalid(
                    f"Invalid 'image_url.url': '{url[:40]}'. Expected a valid URL.",
                    f"{pp}.image_url.url",
                    "invalid_image_url",
                )


def _oa_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _oa_unanswered(index: int, pending: Iterable[str]) -> _ApiError:
    return _oa_invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: " + ", ".join(pending),
        f"messages.[{index}].role",
    )


def _validate_openai(body: Any) -> None:
    """Reject what the real Chat Completions API rejects (the parts a gateway can get wrong)."""
    if not isinstance(body, dict):
        raise _oa_invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        )
    unknown = sorted(set(body) - _OPENAI_PARAMS)
    if unknown:
        raise _oa_invalid(
            f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _oa_invalid("you must provide a model parameter", "model")
    if model.startswith("claude"):
        raise _ApiError(
            f"The model `{model}` does not exist or you do not have access to it.",
            404,
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    messages = body.get("messages")
    if messages is None:
        raise _oa_missing("messages")
    if not isinstance(messages, list):
        raise _oa_type("messages", "an array", messages)
    if not messages:
        raise _oa_invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            "messages",
            "empty_array",
        )
    pending: dict[str, int] = {}  # tool_call_id -> index of the assistant message awaiting its answer
    run_ids: set[str] = set()  # ids of the assistant message the current run of tool messages answers
    for i, msg in enumerate(messages):
        mp = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _oa_type(mp, "an object", msg)
        role = msg.get("role")
        if role is None:
            raise _oa_missing(f"{mp}.role")
        if role not in _OPENAI_ROLES:
            raise _oa_invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                f"{mp}.role",
                "invalid_value",
            )
        if role != "tool" and pending:
            raise _oa_unanswered(min(pending.values()), pending)
        content = msg.get("content")
        if role == "assistant":
            tool_calls = msg.get("tool_calls")
            if content is None and not tool_calls and not msg.get("function_call"):
                raise _oa_invalid(
                    "Invalid value for 'content': expected a string, got null.", f"{mp}.content"
                )
            if content is not None:
                _oa_check_content(role, content, f"{mp}.content")
            run_ids = set()
            if tool_calls is not None:
                if not isinstance(tool_calls, list):
                    raise _oa_type(f"{mp}.tool_calls", "an array", tool_calls)
                for k, call in enumerate(tool_calls):
                    cp = f"{mp}.tool_calls[{k}]"
                    if not isinstance(call, dict):
                        raise _oa_type(cp, "an object", call)
                    if not isinstance(call.get("id"), str) or not call["id"]:
                        raise _oa_missing(f"{cp}.id")
                    if call.get("type") != "function":
                        raise (
                            _oa_missing(f"{cp}.type")
                            if "type" not in call
                            else _oa_invalid(
                                f"Invalid value: '{call.get('type')}'. Supported values are: 'function'.",
                                f"{cp}.type",
                                "invalid_value",
                            )
                        )
                    fn = call.get("function")
                    if not isinstance(fn, dict):
                        raise _oa_missing(f"{cp}.function")
                    if not isinstance(fn.get("name"), str):
                        raise _oa_missing(f"{cp}.function.name")
                    if not isinstance(fn.get("arguments"), str):
                        raise _oa_type(f"{cp}.function.arguments", "a string", fn.get("arguments"))
                    run_ids.add(call["id"])
                    pending[call["id"]] = i
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _oa_missing(f"{mp}.tool_call_id")
            if content is None:
                raise _oa_missing(f"{mp}.content")
            _oa_check_content(role, content, f"{mp}.content")
            if call_id not in run_ids:
                raise _oa_invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.pop(call_id, None)
        else:
            if content is None:
                raise _oa_missing(f"{mp}.content")
            _oa_check_content(role, content, f"{mp}.content")
            run_ids = set()
    if pending:
        raise _oa_unanswered(min(pending.values()), pending)

    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _oa_type("tools", "an array", tools)
        for k, tool in enumerate(tools):
            tp = f"tools[{k}]"
            if not isinstance(tool, dict):
                raise _oa_type(tp, "an object", tool)
            if "type" not in tool:
                raise _oa_missing(f"{tp}.type")
            if tool["type"] != "function":
                raise _oa_invalid(
                    f"Invalid value: '{tool['type']}'. Supported values are: 'function' and 'custom'.",
                    f"{tp}.type",
                    "invalid_value",
                )
            fn = tool.get("function")
            if not isinstance(fn, dict):
                raise _oa_missing(f"{tp}.function")
            name = fn.get("name")
            if not isinstance(name, str):
                raise _oa_missing(f"{tp}.function.name")
            if not _TOOL_NAME_RE.match(name):
                raise _oa_invalid(
                    f"Invalid '{tp}.function.name': string does not match pattern. Expected a "
                    "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                    f"{tp}.function.name",
                    "invalid_value",
                )
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                raise _oa_type(f"{tp}.function.parameters", "an object", fn["parameters"])
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise _oa_invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice",
            )
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise _oa_invalid(
                    f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                    "tool_choice",
                    "invalid_value",
                )
        elif isinstance(choice, dict):
            fn = choice.get("function")
            if (
                choice.get("type") != "function"
                or not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
            ):
                raise _oa_missing("tool_choice.function.name")
            if fn["name"] not in names:
                raise _oa_invalid(
                    f"Invalid value for 'tool_choice': tool '{fn['name']}' is not one of the provided tools.",
                    "tool_choice",
                )
        else:
            raise _oa_type("tool_choice", "one of a string or object", choice)
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None:
            if not _is_int(value):
                raise _oa_type(key, "an integer", value)
            if value < 1:
                raise _oa_invalid(
                    f"Invalid '{key}': integer below minimum value. Expected a value >= 1, but got "
                    f"{value} instead.",
                    key,
                    "integer_below_min_value",
                )
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _oa_type("stop", "one of a string or array of strings", stop)
        if len(stop) > 4:
            raise _oa_invalid(
                f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got "
                f"an array with length {len(stop)} instead.",
                "stop",
                "array_above_max_length",
            )
    for key, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("frequency_penalty", -2, 2),
        ("presence_penalty", -2, 2),
    ):
        value = body.get(key)
        if value is not None:
            if not _is_num(value):
                raise _oa_type(key, "a number", value)
            if not low <= value <= high:
                raise _oa_invalid(
                    f"Invalid '{key}': {value}. Expected a value between {low} and {high}.",
                    key,
                    "decimal_above_max_value" if value > high else "decimal_below_min_value",
                )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _oa_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise _oa_invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
        if not isinstance(options, dict):
            raise _oa_type("stream_options", "an object", options)
    n = body.get("n")
    if n is not None and n != 1:
        raise _oa_invalid("The emulator supports only n=1.", "n", "unsupported_value")


def _openai_answer(body: dict[str, Any]) -> _Answer:
    messages = body["messages"]
    input_tokens = sum(_words(_oa_text(m.get("content"))) for m in messages)
    last = messages[-1]
    tool: tuple[str, dict[str, Any]] | None = None
    if last["role"] == "tool":
        texts: list[str] = []
        for msg in reversed(messages):
            if msg["role"] != "tool":
                break
            texts.append(_oa_text(msg.get("content")))
        prompt = "Tool said: " + " ".join(reversed(texts))
    else:
        user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        prompt = "Echo: " + (_oa_text(user.get("content")) if user else "")
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if last["role"] == "user" and tools and choice != "none":
            wanted = choice["function"]["name"] if isinstance(choice, dict) else None
            fn = next(t["function"] for t in tools if wanted is None or t["function"]["name"] == wanted)
            tool = (fn["name"], fn.get("parameters") or {})
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop or [])
    return _make_answer(prompt, input_tokens, tool, max_tokens, stops)


_OPENAI_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}


def _openai_usage(ans: _Answer) -> dict[str, Any]:
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


def _openai_json(ans: _Answer, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if ans.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": _new_id("call_"),
                "type": "function",
                "function": {"name": ans.tool_name, "arguments": _dumps(ans.tool_args).decode()},
            }
        ]
    else:
        message["content"] = ans.text
    return {
        "id": _new_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _OPENAI_FINISH[ans.finish]}
        ],
        "usage": _openai_usage(ans),
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }


def _openai_events(ans: _Answer, model: str, include_usage: bool) -> list[bytes]:
    base = {
        "id": _new_id("chatcmpl-", 29),
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
        return b"data: " + _dumps(obj) + b"\n\n"

    events: list[bytes] = []
    if ans.tool_name is not None:
        args = _dumps(ans.tool_args).decode()
        events.append(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": _new_id("call_"),
                            "type": "function",
                            "function": {"name": ans.tool_name, "arguments": ""},
                        }
                    ],
                }
            )
        )
        for frag in _fragments(args):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in _word_pieces(ans.text):
            events.append(chunk({"content": piece}))
    events.append(chunk({}, _OPENAI_FINISH[ans.finish]))
    if include_usage:
        events.append(b"data: " + _dumps({**base, "choices": [], "usage": _openai_usage(ans)}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


# ------------------------------------------------------------------------------------ Anthropic format

_ANTHROPIC_PARAMS = frozenset(
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
_ANTHROPIC_BLOCKS = {
    "user": ("text", "image", "document", "tool_result", "search_result"),
    "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
}
_ANTHROPIC_MEDIA = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_USE_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_SERVER_TOOL_RE = re.compile(r"^[a-z_]+_\d{8}$")  # e.g. web_search_20250305, bash_20250124
_AN_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def _an_invalid(message: str) -> _ApiError:
    return _ApiError(message, 400, "invalid_request_error")


def _an_check_image(block: dict[str, Any], bp: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _an_invalid(f"{bp}.image.source: Field required")
    stype = source.get("type")
    if stype == "base64":
        if source.get("media_type") not in _ANTHROPIC_MEDIA:
            raise _an_invalid(
                f"{bp}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'"
            )
        data = source.get("data")
        if not isinstance(data, str):
            raise _an_invalid(f"{bp}.image.source.base64.data: Field required")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _an_invalid(f"{bp}.image.source.base64.data: The image data is not valid base64.") from None
    elif stype == "url":
        if not isinstance(source.get("url"), str):
            raise _an_invalid(f"{bp}.image.source.url.url: Field required")
    else:
        raise _an_invalid(
            f"{bp}.image.source: Input tag '{stype}' found using 'type' does not match any of the "
            "expected tags: 'base64', 'url'"
        )


def _an_check_text_blocks(blocks: Any, bp: str, allowed: Sequence[str] = ("text",)) -> None:
    if isinstance(blocks, str):
        return
    if not isinstance(blocks, list):
        raise _an_invalid(f"{bp}: Input should be a valid list")
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") not in allowed:
            tag = block.get("type") if isinstance(block, dict) else _tname(block)
            raise _an_invalid(
                f"{bp}.{j}: Input tag '{tag}' found using 'type' does not match any of the "
                "expected tags: " + ", ".join(f"'{a}'" for a in allowed)
            )
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                raise _an_invalid(f"{bp}.{j}.text: Field required")
            if not block["text"]:
                raise _an_invalid("messages: text content blocks must be non-empty")
        elif block["type"] == "image":
            _an_check_image(block, f"{bp}.{j}")


def _validate_anthropic(body: Any, count_only: bool = False) -> None:
    """Reject what the real Messages API rejects (the parts a gateway can get wrong)."""
    if not isinstance(body, dict):
        raise _an_invalid("Input should be a valid dictionary")
    unknown = sorted(set(body) - _ANTHROPIC_PARAMS)
    if unknown:
        raise _an_invalid(f"{unknown[0]}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _an_invalid("model: Field required")
    if model.startswith(_OPENAI_MODEL_PREFIXES):
        raise _ApiError(f"model: {model}", 404, "not_found_error")
    if not count_only:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _an_invalid("max_tokens: Field required")
        if not _is_int(max_tokens):
            raise _an_invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise _an_invalid("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if messages is None:
        raise _an_invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _an_invalid("messages: Input should be a valid list")
    if not messages:
        raise _an_invalid("messages: at least one message is required")
    system = body.get("system")
    if system is not None:
        _an_check_text_blocks(system, "system")
    prev_tool_use: list[str] = []
    for i, msg in enumerate(messages):
        mp = f"messages.{i}"
        if not isinstance(msg, dict):
            raise _an_invalid(f"{mp}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise _an_invalid(f"{mp}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _an_invalid('messages: first message must use the "user" role')
        if "content" not in msg:
            raise _an_invalid(f"{mp}.content: Field required")
        content = msg["content"]
        final_assistant = role == "assistant" and i == len(messages) - 1
        if (content == "" or content == []) and not final_assistant:
            raise _an_invalid(
                f"{mp}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        tool_use_ids: list[str] = []
        result_ids: list[str] = []
        if isinstance(content, list):
            allowed = _ANTHROPIC_BLOCKS[role]
            for j, block in enumerate(content):
                bp = f"{mp}.content.{j}"
                btype = block.get("type") if isinstance(block, dict) else None
                if btype not in allowed:
                    raise _an_invalid(
                        f"{bp}: Input tag '{btype}' found using 'type' does not match any of the "
                        "expected tags: " + ", ".join(f"'{a}'" for a in allowed)
                    )
                if btype == "text":
                    if not isinstance(block.get("text"), str):
                        raise _an_invalid(f"{bp}.text.text: Field required")
                    if not block["text"]:
                        raise _an_invalid("messages: text content blocks must be non-empty")
                elif btype == "image":
                    _an_check_image(block, bp)
                elif btype == "tool_use":
                    tid = block.get("id")
                    if not isinstance(tid, str) or not _TOOL_USE_ID_RE.match(tid):
                        raise _an_invalid(f"{bp}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
                    if not isinstance(block.get("name"), str):
                        raise _an_invalid(f"{bp}.tool_use.name: Field required")
                    if not isinstance(block.get("input"), dict):
                        raise _an_invalid(f"{bp}.tool_use.input: Input should be a valid dictionary")
                    tool_use_ids.append(tid)
                elif btype == "tool_result":
                    tid = block.get("tool_use_id")
                    if not isinstance(tid, str):
                        raise _an_invalid(f"{bp}.tool_result.tool_use_id: Field required")
                    if "content" in block and block["content"] is not None:
                        _an_check_text_blocks(
                            block["content"],
                            f"{bp}.tool_result.content",
                            ("text", "image", "document", "search_result"),
                        )
                    if tid not in prev_tool_use:
                        raise _an_invalid(
                            f"{bp}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. "
                            "Each `tool_result` block must have a corresponding `tool_use` block "
                            "in the previous message."
                        )
                    result_ids.append(tid)
        elif not isinstance(content, str):
            raise _an_invalid(f"{mp}.content: Input should be a valid string or list")
        missing = [t for t in prev_tool_use if t not in result_ids]
        if missing:
            raise _an_invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        prev_tool_use = tool_use_ids
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _an_invalid("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise _an_invalid("stop_sequences: each stop sequence must contain non-whitespace")
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not _is_num(value):
                raise _an_invalid(f"{key}: Input should be a valid number")
            if not 0 <= value <= 1:
                raise _an_invalid(
                    f"{key}: Input should be {'less' if value > 1 else 'greater'} than or equal to "
                    f"{1 if value > 1 else 0}"
                )
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise _an_invalid("top_k: Input should be a non-negative integer")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _an_invalid("stream: Input should be a valid boolean")
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _an_invalid("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            tp = f"tools.{k}"
            if not isinstance(tool, dict):
                raise _an_invalid(f"{tp}: Input should be a valid dictionary")
            ttype = tool.get("type")
            if ttype not in (None, "custom") and not _SERVER_TOOL_RE.match(str(ttype)):
                raise _an_invalid(
                    f"{tp}: Input tag '{ttype}' found using 'type' does not match any of the expected tags: "
                    "'custom' or a server tool type such as 'web_search_20250305'"
                )
            name = tool.get("name")
            if not isinstance(name, str):
                raise _an_invalid(f"{tp}.custom.name: Field required")
            if tool.get("type") in (None, "custom"):
                if not _AN_TOOL_NAME_RE.match(name):
                    raise _an_invalid(
                        f"{tp}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                    )
                schema = tool.get("input_schema")
                if not isinstance(schema, dict):
                    raise _an_invalid(f"{tp}.custom.input_schema: Field required")
                if schema.get("type") != "object":
                    raise _an_invalid(f"{tp}.custom.input_schema.type: Input should be 'object'")
            if name in names:
                raise _an_invalid("tools: Tool names must be unique.")
            names.append(name)
    choice = body.get("tool_choice")
    if choice is not None:
        ctype = choice.get("type") if isinstance(choice, dict) else None
        if ctype not in ("auto", "any", "tool", "none"):
            raise _an_invalid(
                f"tool_choice: Input tag '{ctype}' found using 'type' does not match any of the "
                "expected tags: 'auto', 'any', 'tool', 'none'"
            )
        if ctype != "none" and not tools:
            raise _an_invalid("tool_choice may only be specified while providing tools.")
        if ctype == "tool":
            if not isinstance(choice.get("name"), str):
                raise _an_invalid("tool_choice.tool.name: Field required")
            if choice["name"] not in names:
                raise _an_invalid(f"Tool '{choice['name']}' not found in provided tools")


def _an_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _an_count(body: dict[str, Any]) -> int:
    total = _words(_an_text(body.get("system")))
    for msg in body["messages"]:
        content = msg["content"]
        total += _words(_an_text(content))
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_result":
                    total += _words(_an_text(block.get("content")))
    return total


def _anthropic_answer(body: dict[str, Any]) -> _Answer:
    messages = body["messages"]
    input_tokens = _an_count(body)
    last = messages[-1]
    content = last["content"]
    results = [b for b in content if b.get("type") == "tool_result"] if isinstance(content, list) else []
    tool: tuple[str, dict[str, Any]] | None = None
    if last["role"] == "user" and results:
        prompt = "Tool said: " + " ".join(_an_text(b.get("content")) for b in results)
    else:
        user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        prompt = "Echo: " + (_an_text(user["content"]) if user else "")
        callable_tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
        choice = body.get("tool_choice") or {}
        if last["role"] == "user" and callable_tools and choice.get("type") != "none":
            wanted = choice.get("name") if choice.get("type") == "tool" else None
            found = next((t for t in callable_tools if wanted is None or t["name"] == wanted), None)
            if found is not None:
                tool = (found["name"], found.get("input_schema") or {})
    return _make_answer(prompt, input_tokens, tool, body["max_tokens"], body.get("stop_sequences") or [])


_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
}


def _anthropic_json(ans: _Answer, model: str) -> dict[str, Any]:
    if ans.tool_name is not None:
        content = [
            {"type": "tool_use", "id": _new_id("toolu_"), "name": ans.tool_name, "input": ans.tool_args}
        ]
    else:
        content = [{"type": "text", "text": ans.text}]
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP[ans.finish],
        "stop_sequence": ans.stop_sequence,
        "usage": {
            "input_tokens": ans.input_tokens,
            "output_tokens": ans.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def _anthropic_events(ans: _Answer, model: str) -> list[bytes]:
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": ans.input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }
    events = [_sse("message_start", {"type": "message_start", "message": message})]
    if ans.tool_name is not None:
        block = {"type": "tool_use", "id": _new_id("toolu_"), "name": ans.tool_name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [
            {"type": "input_json_delta", "partial_json": f}
            for f in _fragments(_dumps(ans.tool_args).decode())
        ]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _word_pieces(ans.text)]
    events.append(
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    )
    events.append(_sse("ping", {"type": "ping"}))
    for delta in deltas:
        events.append(
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _ANTHROPIC_STOP[ans.finish], "stop_sequence": ans.stop_sequence},
                "usage": {"output_tokens": ans.output_tokens},
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


# ------------------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    """Threaded server with a big backlog (the benchmark opens many connections at once)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024
    emulator: Emulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that stalls on offline machines.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # clients going away are normal, not worth a traceback
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One connection; requests on it are served in turn (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "llm-edge-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server
    _rec: RecordedRequest | None = None

    # ---- connection bookkeeping

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.log:
            sys.stderr.write(f"emulator {self.address_string()} {format % args}\n")

    # ---- dispatch

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        emu = self.server.emulator
        self._rec = None
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        try:
            raw = self._read_body()
        except ValueError:
            self._send(400, _dumps(_openai_error(400, "Invalid request body framing")))
            self.close_connection = True
            return
        if path.startswith(_CONTROL_PREFIX.rstrip("/")):
            self._control(path, split.query, raw)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        body: Any = None
        if raw:
            try:
                body = _loads(raw)
            except ValueError:
                body = None
        self._rec, fault = emu._on_request(self.command, path, split.query, headers, body, raw)
        status = self._serve(path, headers, raw, body, fault)
        if emu.log:
            self.log_message('"%s" %s', self.requestline, status)

    # ---- writing

    def _head(
        self, status: int, ctype: str, length: int | None, extra: Sequence[tuple[str, str]] = ()
    ) -> bytes:
        if self._rec is not None:  # before the first byte goes out, so a client never sees it unset
            self._rec.status = status
        reason = self.responses.get(status, ("Overloaded" if status == 529 else "Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", "Server: llm-edge-emulator"]
        lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in extra]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        extra: Sequence[tuple[str, str]] = (),
        fault: Fault | None = None,
    ) -> int:
        """Write a whole-body response, applying drip / cut_after of the fault."""
        drip = fault.drip if fault else 0.0
        cut = fault.cut_after if fault else None
        head = self._head(status, ctype, len(body), extra)
        if self.command == "HEAD":
            body = b""
        if cut is not None:
            self.close_connection = True
            self.wfile.write(head + body[:cut])
            self._abort()
            return status
        if drip <= 0:
            self.wfile.write(head + body)
            return status
        self.wfile.write(head)
        pieces = _fragments(body.decode("latin-1"), 4)
        for k, piece in enumerate(pieces):
            if k and self._pause(drip):
                self._abort()
                return status
            self.wfile.write(piece.encode("latin-1"))
        return status

    def _send_stream(
        self,
        events: list[bytes],
        extra: Sequence[tuple[str, str]],
        fault: Fault | None,
        error_event: bytes | None,
    ) -> int:
        """Write SSE events as HTTP chunks, applying drip / cut_after / error_after."""
        drip = fault.drip if fault and fault.drip else self.server.emulator.drip
        cut = fault.cut_after if fault else None
        err_after = fault.error_after if fault else None
        if err_after is not None and error_event is not None:
            events = [*events[:err_after], error_event]
        head = self._head(
            200, "text/event-stream; charset=utf-8", None, [("Cache-Control", "no-cache"), *extra]
        )
        if cut is not None:
            events = events[:cut]
        out = [head]
        for k, event in enumerate(events):
            if drip > 0 and k:
                self.wfile.write(b"".join(out))
                out = []
                if self._pause(drip):
                    self._abort()
                    return 200
            out.append(b"%x\r\n%s\r\n" % (len(event), event))
        if cut is not None:
            self.close_connection = True
            self.wfile.write(b"".join(out))
            self._abort()
            return 200
        out.append(b"0\r\n\r\n")
        self.wfile.write(b"".join(out))
        return 200

    def _abort(self) -> None:
        """Close the connection now, without finishing the response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the emulator stops; True means stop now."""
        return self.server.emulator._stopping.wait(seconds)

    # ---- the emulated APIs

    def _serve(self, path: str, headers: dict[str, str], raw: bytes, body: Any, fault: Fault | None) -> int:
        emu = self.server.emulator
        anthropic = path.startswith("/v1/messages") or (
            path.startswith("/v1/models") and "anthropic-version" in headers
        )
        stream = isinstance(body, dict) and body.get("stream") is True
        request_id = _new_id("req_")
        extra: list[tuple[str, str]] = [("request-id" if anthropic else "x-request-id", request_id)]
        if fault is not None:
            if fault.retry_after is not None:
                value = fault.retry_after
                extra.append(
                    (
                        "retry-after",
                        str(int(value)) if isinstance(value, float) and value.is_integer() else str(value),
                    )
                )
            extra += list((fault.headers or {}).items())
            if fault.hang:
                self.close_connection = True
                while not emu._stopping.wait(0.05):
                    if self._client_gone():
                        break
                self._abort()
                return 0
        delay = fault.delay if fault and fault.delay else emu.latency
        if delay > 0 and self._pause(delay):
            self._abort()
            return 0
        if fault is not None and fault.status is not None:
            return self._send_fault_status(fault, anthropic, extra)
        if fault is not None and fault.garbage:
            return self._send_garbage(str(fault.garbage), anthropic, stream, extra, fault)
        try:
            return self._route(path, headers, raw, body, anthropic, stream, extra, fault)
        except _ApiError as err:
            shape = (
                _anthropic_error(err.status, err.message, err.etype)
                if anthropic
                else {
                    "error": {
                        "message": err.message,
                        "type": err.etype or "invalid_request_error",
                        "param": err.param,
                        "code": err.code,
                    }
                }
            )
            return self._send(err.status, _dumps(shape), extra=extra)

    def _send_fault_status(self, fault: Fault, anthropic: bool, extra: list[tuple[str, str]]) -> int:
        status = int(fault.status or 500)
        if fault.body is not None:
            body = fault.body
            payload = (
                body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else _dumps(body)
            )
        else:
            message = fault.message or _DEFAULT_MESSAGES.get(status, f"Error {status}")
            payload = _dumps(
                _anthropic_error(status, message) if anthropic else _openai_error(status, message)
            )
        return self._send(status, payload, extra=extra, fault=fault)

    def _send_garbage(
        self, kind: str, anthropic: bool, stream: bool, extra: list[tuple[str, str]], fault: Fault
    ) -> int:
        if kind == "html":
            page = b"<html><head><title>502</title></head><body>upstream proxy error</body></html>"
            return self._send(200, page, "text/html; charset=utf-8", extra, fault)
        if stream:
            data = b'{"unexpected": "shape", "n": 1}' if kind == "json" else b"this is not json {"
            name = b"event: message_start\n" if anthropic else b""
            events = [name + b"data: " + data + b"\n\n"] * 3
            if not anthropic:
                events.append(b"data: [DONE]\n\n")
            return self._send_stream(events, extra, fault, None)
        payload = (
            b'{"id": "garbage", "object": "unexpected", "data": [1, 2, 3]}'
            if kind == "json"
            else b"this is not json {"
        )
        return self._send(200, payload, extra=extra, fault=fault)

    def _check_auth(self, headers: dict[str, str], anthropic: bool) -> None:
        emu = self.server.emulator
        key = emu.anthropic_key if anthropic else emu.openai_key
        if key is None:
            return
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if anthropic:
            given = headers.get("x-api-key")
            if given is None and bearer is None:
                raise _ApiError("x-api-key header is required", 401, "authentication_error")
            if given != key and bearer != key:
                raise _ApiError("invalid x-api-key", 401, "authentication_error")
        else:
            if bearer is None:
                raise _ApiError(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    401,
                    "invalid_request_error",
                    None,
                    None,
                )
            if bearer != key:
                raise _ApiError(
                    "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    401,
                    "invalid_request_error",
                    None,
                    "invalid_api_key",
                )

    def _route(
        self,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        body: Any,
        anthropic: bool,
        stream: bool,
        extra: list[tuple[str, str]],
        fault: Fault | None,
    ) -> int:
        method = self.command
        emu = self.server.emulator
        known = {
            "/v1/chat/completions": "POST",
            "/v1/messages": "POST",
            "/v1/messages/count_tokens": "POST",
            "/v1/models": "GET",
        }
        expected = known.get(path) or ("GET" if path.startswith("/v1/models/") else None)
        if expected is None:
            raise _ApiError(
                f"Invalid URL ({method} {path})" if not anthropic else f"Not found: {path}",
                404,
                None,
                None,
                "unknown_url" if not anthropic else None,
            )
        if method != expected and not (method == "HEAD" and expected == "GET"):
            raise _ApiError(
                f"Method {method} not allowed for {path}; use {expected}",
                405,
                "invalid_request_error",
                None,
                "method_not_allowed",
            )
        self._check_auth(headers, anthropic)
        if anthropic and "anthropic-version" not in headers:
            raise _an_invalid("anthropic-version: header is required")
        if expected == "POST":
            if raw and body is None:
                raise (
                    _an_invalid("There was an error parsing the body of your request as JSON")
                    if anthropic
                    else _oa_invalid(
                        "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly. The OpenAI API "
                        "expects a JSON payload, but what was sent was not valid JSON.)"
                    )
                )
            if body is None:
                raise (_an_invalid("messages: Field required") if anthropic else _oa_missing("messages"))
        if path == "/v1/chat/completions":
            _validate_openai(body)
            ans = _openai_answer(body)
            model = body["model"]
            if stream:
                options = body.get("stream_options") or {}
                error = (
                    b"data: "
                    + _dumps(
                        _openai_error(
                            500,
                            (fault and fault.message)
                            or "The server had an error while processing your request.",
                        )
                    )
                    + b"\n\n"
                )
                return self._send_stream(
                    _openai_events(ans, model, bool(options.get("include_usage"))), extra, fault, error
                )
            return self._send(200, _dumps(_openai_json(ans, model)), extra=extra, fault=fault)
        if path == "/v1/messages":
            _validate_anthropic(body)
            ans = _anthropic_answer(body)
            if stream:
                error = _sse("error", _anthropic_error(529, (fault and fault.message) or "Overloaded"))
                return self._send_stream(_anthropic_events(ans, body["model"]), extra, fault, error)
            return self._send(200, _dumps(_anthropic_json(ans, body["model"])), extra=extra, fault=fault)
        if path == "/v1/messages/count_tokens":
            _validate_anthropic(body, count_only=True)
            return self._send(200, _dumps({"input_tokens": _an_count(body)}), extra=extra, fault=fault)
        return self._send(200, _dumps(emu._models_payload(path, anthropic)), extra=extra, fault=fault)

    # ---- control API

    def _control(self, path: str, query: str, raw: bytes) -> None:
        emu = self.server.emulator
        method = self.command
        params = parse_qs(query)
        try:
            data = _loads(raw) if raw else None
        except ValueError:
            self._send(400, _dumps({"error": "body is not JSON"}))
            return
        try:
            if path == "/_emulator/health" and method == "GET":
                out: Any = {"status": "ok", "url": emu.url}
            elif path == "/_emulator/faults" and method == "POST":
                qpath = params.get("path", [None])[0]
                if isinstance(data, list):
                    emu.push_faults(*data, path=qpath)
                    out = {"queued": len(data)}
                elif isinstance(data, dict):
                    fpath = data.get("path", qpath)
                    unknown = sorted(set(data) - {"faults", "path", "default"})
                    if unknown:
                        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
                    faults = data.get("faults") or []
                    if not isinstance(faults, list):
                        raise ValueError("'faults' must be a list")
                    emu.push_faults(*faults, path=fpath)
                    if "default" in data:
                        emu.set_default_fault(data["default"], path=fpath)
                    out = {"queued": len(faults)}
                else:
                    raise ValueError("expected a JSON list of faults or an object with 'faults'/'default'")
            elif path == "/_emulator/faults" and method == "DELETE":
                emu.clear_faults()
                out = {"cleared": True}
            elif path == "/_emulator/faults" and method == "GET":
                out = emu.fault_state()
            elif path == "/_emulator/requests" and method == "GET":
                fpath = params.get("path", [None])[0]
                out = {
                    "requests": [
                        r.to_dict() for r in emu.requests if fpath is None or r.path.startswith(fpath)
                    ],
                    "count": emu.count(fpath),
                }
            elif path == "/_emulator/reset" and method == "POST":
                emu.reset()
                out = {"reset": True}
            else:
                self._send(404, _dumps({"error": f"no control endpoint {method} {path}"}))
                return
        except (ValueError, TypeError) as exc:
            self._send(400, _dumps({"error": str(exc)}))
            return
        self._send(200, _dumps(out))


# ------------------------------------------------------------------------------------------ Emulator


class Emulator:
    """The provider emulator: an HTTP server in a background thread, plus recording and fault injection.

    Faults: :meth:`push_faults` queues faults, each used by exactly one later request (FIFO), optionally only
    for requests whose path starts with ``path``; when no queued fault matches, the default fault for the
    longest matching path prefix (see :meth:`set_default_fault`) applies to every request until cleared.
    Control endpoints under ``/_emulator/`` are never faulted, recorded or counted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        openai_key: str | None = None,
        anthropic_key: str | None = None,
        *,
        record: bool = True,
        latency: float = 0.0,
        drip: float = 0.0,
        models: Sequence[str] | None = None,
        log: bool = False,
    ) -> None:
        self.host = host
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.record = record
        self.latency = latency
        self.drip = drip
        self.models = tuple(models) if models else DEFAULT_MODELS
        self.log = log
        self.connections = 0  # connections accepted so far (keep-alive shows as fewer connections)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counts: dict[str, int] = {}
        self._queue: deque[tuple[str | None, Fault]] = deque()
        self._defaults: dict[str | None, Fault] = {}
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None
        self._port = port
        self._bind()

    # ---- lifecycle

    def _bind(self) -> None:
        cls = _Server6 if ":" in self.host else _Server
        self._server = cls((self.host, self._port), _Handler)
        self._server.emulator = self
        self._port = int(self._server.server_address[1])

    def start(self) -> Emulator:
        """Serve in a daemon thread; can be called again after :meth:`stop` (same port)."""
        if self._thread is not None:
            return self
        if self._server is None:
            self._bind()
        self._stopping.clear()
        server = self._server
        assert server is not None
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"emulator-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (hanging and dripping requests end at once)."""
        self._stopping.set()
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._open.add(conn)
                self.connections += 1
            else:
                self._open.discard(conn)

    # ---- addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # ---- recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def last(self, path: str | None = None) -> RecordedRequest | None:
        """The most recent recorded request (optionally under a path prefix)."""
        with self._lock:
            for rec in reversed(self._requests):
                if path is None or rec.path.startswith(path):
                    return rec
        return None

    def count(self, path: str | None = None) -> int:
        """Requests received (recorded or not) whose path starts with ``path``; all when None."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            return sum(n for p, n in self._counts.items() if p.startswith(path))

    def reset(self, faults: bool = True) -> None:
        """Forget recorded requests and counts, and (by default) every queued and default fault."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            if faults:
                self._queue.clear()
                self._defaults.clear()

    # ---- faults

    def push_faults(self, *faults: Fault | dict[str, Any], path: str | None = None) -> None:
        """Queue faults; each is applied to one later request whose path starts with ``path``."""
        parsed = [_as_fault(f) for f in faults]
        with self._lock:
            self._queue.extend((path, f) for f in parsed)

    def set_default_fault(self, fault: Fault | dict[str, Any] | None, path: str | None = None) -> None:
        """Apply ``fault`` to every request under ``path`` (all when None) until set to None or cleared."""
        parsed = None if fault is None else _as_fault(fault)
        with self._lock:
            if parsed is None:
                self._defaults.pop(path, None)
            else:
                self._defaults[path] = parsed

    def clear_faults(self) -> None:
        """Drop every queued and default fault."""
        with self._lock:
            self._queue.clear()
            self._defaults.clear()

    def fault_state(self) -> dict[str, Any]:
        """Queued and default faults, as the control API lists them."""
        with self._lock:
            return {
                "queued": [{"path": p, "fault": f.to_dict()} for p, f in self._queue],
                "defaults": [{"path": p, "fault": f.to_dict()} for p, f in self._defaults.items()],
            }

    def _on_request(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Any, raw: bytes
    ) -> tuple[RecordedRequest | None, Fault | None]:
        """Count, record and pick the fault for one request, atomically."""
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            fault: Fault | None = None
            if self._queue:
                for k, (prefix, queued) in enumerate(self._queue):
                    if prefix is None or path.startswith(prefix):
                        fault = queued
                        del self._queue[k]
                        break
            if fault is None and self._defaults:
                best = -1
                for prefix, default in self._defaults.items():
                    size = 0 if prefix is None else len(prefix)
                    if (prefix is None or path.startswith(prefix)) and size > best:
                        best, fault = size, default
            rec = None
            if self.record:
                rec = RecordedRequest(
                    method,
                    path,
                    query,
                    headers,
                    body,
                    raw,
                    time.time(),
                    None,
                    fault.to_dict() if fault else None,
                )
                self._requests.append(rec)
            return rec, fault

    def _models_payload(self, path: str, anthropic: bool) -> dict[str, Any]:
        openai_ids = [m for m in self.models if not m.startswith("claude")]
        claude_ids = [m for m in self.models if m.startswith("claude")]
        created = 1715367049
        if path.startswith("/v1/models/"):
            model_id = path[len("/v1/models/") :]
            if model_id not in self.models:
                raise _ApiError(
                    f"The model '{model_id}' does not exist", 404, None, "model", "model_not_found"
                )
            if anthropic:
                return {
                    "type": "model",
                    "id": model_id,
                    "display_name": model_id,
                    "created_at": "2025-01-01T00:00:00Z",
                }
            return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}
        if anthropic:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in claude_ids
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "system"} for m in openai_ids
            ],
        }


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; print the listening URL first so a parent process can read the port."""
    parser = argparse.ArgumentParser(description="Local OpenAI + Anthropic provider emulator")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default 0)")
    parser.add_argument(
        "--openai-key",
        default=os.environ.get("EMULATOR_OPENAI_KEY"),
        help="require this Bearer key on OpenAI endpoints (env EMULATOR_OPENAI_KEY)",
    )
    parser.add_argument(
        "--anthropic-key",
        default=os.environ.get("EMULATOR_ANTHROPIC_KEY"),
        help="require this key on Anthropic endpoints (env EMULATOR_ANTHROPIC_KEY)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not keep requests (for benchmarks)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every response's headers")
    parser.add_argument("--drip", type=float, default=0.0, help="seconds between SSE events of every stream")
    parser.add_argument("--models", default=None, help="comma-separated model ids for /v1/models")
    parser.add_argument("--log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    emu = Emulator(
        args.host,
        args.port,
        args.openai_key,
        args.anthropic_key,
        record=not args.no_record,
        latency=args.latency,
        drip=args.drip,
        models=[m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
        log=args.log,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emu.start()
    sys.stdout.write(f"EMULATOR LISTENING {emu.url}\n")
    sys.stdout.flush()
    while not done.wait(1.0):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
